"""The simulator's settings."""

from __future__ import annotations

from typing import Mapping, Sequence

import attrs

from ipfs_accelerate_py.errors import ConfigError


def _outages(value: Sequence[Sequence[float]] | None) -> tuple[tuple[float, float], ...]:
    out = []
    for item in value or ():
        try:
            start, end = (float(x) for x in item)
        except (TypeError, ValueError):
            raise ConfigError("outages", f"expected (start, end) pairs, got {item!r}") from None
        if not 0 <= start < end:
            raise ConfigError("outages", f"need 0 <= start < end, got {item!r}")
        out.append((start, end))
    return tuple(out)


def _non_negative(instance: object, attribute: attrs.Attribute, value: float | None) -> None:
    if value is not None and value < 0:
        raise ConfigError(attribute.name, f"must be >= 0, got {value!r}")


def _positive(instance: object, attribute: attrs.Attribute, value: float | None) -> None:
    if value is not None and not value > 0:
        raise ConfigError(attribute.name, f"must be > 0, got {value!r}")


def _style(instance: object, attribute: attrs.Attribute, value: str) -> None:
    from .limits import HEADER_STYLES

    if value not in HEADER_STYLES:
        raise ConfigError(attribute.name, f"must be one of {sorted(HEADER_STYLES)}, got {value!r}")


def _rate(instance: object, attribute: attrs.Attribute, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ConfigError(attribute.name, f"must be within [0, 1], got {value!r}")


@attrs.frozen
class SimConfig:
    """How the simulator behaves.

    ``rps``/``burst``: per-key request limit (requests per second, bucket size; None: no
    limit).  The simulator owns the quota: a protocol's own default rate-limit headers are
    removed, and replaced by the configured limits' headers when there are any.  ``header_style``: what the ``limit`` header means (per minute, the bucket's capacity,
    per second, per 10 s, per day).  ``tokens_per_minute``: per-key token limit, charged from the request body
    (``len(body) / 4`` plus ``max_tokens``-like fields).  ``latency`` + uniform(0,
    ``jitter``) seconds before each answer (429s and outage answers are immediate).
    ``error_rate``: share of admitted requests answered with the protocol's 500.
    ``outages``: (start, end) seconds since the simulator started, during which every
    request is answered with the protocol's 503.  Random choices come from ``seed`` (one
    generator per key, so a key's sequence of decisions does not depend on other keys).
    ``backends``: mount only these (None: every installed protocol server).  ``models``:
    extra model names a protocol should accept, besides its own defaults.
    """

    rps: float | None = attrs.field(default=None, validator=_positive)
    burst: float | None = attrs.field(default=None, validator=_positive)
    tokens_per_minute: float | None = attrs.field(default=None, validator=_positive)
    #: What the request ``limit`` header states (see ``sim.limits.HEADER_STYLES``); the
    #: buckets are the same exact token buckets whatever the style.
    header_style: str = attrs.field(default="per_minute", validator=_style)
    latency: float = attrs.field(default=0.0, validator=_non_negative)
    jitter: float = attrs.field(default=0.0, validator=_non_negative)
    error_rate: float = attrs.field(default=0.0, validator=_rate)
    outages: tuple[tuple[float, float], ...] = attrs.field(factory=tuple, converter=_outages)
    seed: int = 0
    backends: tuple[str, ...] | None = attrs.field(
        default=None, converter=lambda v: None if v is None else tuple(v))
    #: Extra model names a protocol should know, per backend ({"openai": ["gpt-3.5-turbo"]}),
    #: for protocol servers that take a ``models`` list of names.
    models: Mapping[str, tuple[str, ...]] = attrs.field(
        factory=dict, converter=lambda m: {k: tuple(v) for k, v in (m or {}).items()})
    host: str = "127.0.0.1"
    port: int = 0
