"""Prices and the cost of a call.

Money is counted in integer pico-dollars (10**-12 USD) inside the pipeline: a price in
dollars per million tokens with up to six decimals is a whole number of pico-dollars per
token, so costs add up exactly (no float drift) and a shared ledger (Redis) can keep them
with integer commands.  :func:`to_dollars` turns a count back into a :class:`Decimal`.
"""

from __future__ import annotations

import json
import logging
import re
from decimal import Decimal, InvalidOperation
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Mapping

import attrs

from ..errors import ConfigError
from ..results import Usage

log = logging.getLogger("ipfs_accelerate")

PICO = 10**12  # pico-dollars per dollar
_PER_TOKEN = 10**6  # a price per 1M tokens, in pico-dollars per token: dollars * 10**6


def _money(field: str) -> Callable[[Any], Decimal | None]:
    def convert(value: Any) -> Decimal | None:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float, str, Decimal)):
            raise ConfigError(field, f"must be a price in dollars, got {value!r}")
        try:
            # str() first: a float 0.15 is the price the user wrote, not 0.1499999...
            d = Decimal(str(value).strip())
        except InvalidOperation:
            raise ConfigError(field, f"must be a price in dollars, got {value!r}") from None
        if not d.is_finite() or d < 0:
            raise ConfigError(field, f"must be a finite price >= 0, got {value!r}")
        return d

    return convert


def _dollars(field: str, value: Any) -> Decimal | None:
    return _money(field)(value)


def _required(field: str, value: Any) -> Decimal:
    d = _money(field)(value)
    if d is None:
        raise ConfigError(field, "must be set (dollars per 1M tokens)")
    return d


def _pico(field: str, dollars: Decimal | None, scale: int) -> int | None:
    if dollars is None:
        return None
    units = dollars * scale
    if units != units.to_integral_value():
        raise ConfigError(field, f"{dollars} has more decimals than the ledger counts "
                                 f"(1e-12 dollars per token or per request)")
    return int(units)


@attrs.frozen
class Price:
    """A model's price: dollars per million tokens, and per request.

    ``cached_input`` (prompt-cache reads) and ``cache_write`` (prompt-cache writes) default
    to ``input``; reasoning tokens are billed as ``output``.
    """

    input: Decimal = attrs.field(converter=lambda v: _required("input", v))
    output: Decimal = attrs.field(converter=lambda v: _required("output", v))
    cached_input: Decimal | None = attrs.field(default=None, converter=lambda v: _dollars("cached_input", v))
    cache_write: Decimal | None = attrs.field(default=None, converter=lambda v: _dollars("cache_write", v))
    per_request: Decimal | None = attrs.field(default=None, converter=lambda v: _dollars("per_request", v))
    #: Where the figure came from (shown by ``ipfs-accelerate prices``).
    source: str = attrs.field(default="", eq=False)
    # Pico-dollars per token (per request), computed once.
    rates: tuple[int, int, int, int, int] = attrs.field(init=False, repr=False, eq=False)

    def __attrs_post_init__(self) -> None:
        inp = _pico("input", self.input, _PER_TOKEN)
        object.__setattr__(self, "rates", (
            inp,
            _pico("output", self.output, _PER_TOKEN),
            _pico("cached_input", self.cached_input, _PER_TOKEN) if self.cached_input is not None
            else inp,
            _pico("cache_write", self.cache_write, _PER_TOKEN) if self.cache_write is not None
            else inp,
            _pico("per_request", self.per_request, PICO) or 0))

    @classmethod
    def from_mapping(cls, data: Any, source: str = "") -> Price:
        if isinstance(data, Price):
            return data
        if not isinstance(data, Mapping):
            raise ConfigError("prices", f"a price is a mapping such as "
                                        f'{{"input": "0.15", "output": "0.60"}}, got {data!r}')
        unknown = set(data) - {"input", "output", "cached_input", "cache_write", "per_request"}
        if unknown:
            raise ConfigError("prices", f"unknown price field(s) {sorted(unknown)}")
        if "input" not in data or "output" not in data:
            raise ConfigError("prices", f"a price needs input and output (per 1M tokens), got "
                                        f"{dict(data)!r}")
        return cls(source=source, **data)

    def cost_units(self, usage: Usage) -> int:
        """The cost of ``usage`` in pico-dollars (exact)."""
        inp, out, cached, write, per_request = self.rates
        cached_n, write_n = usage.cached_tokens, usage.cache_write_tokens
        fresh = max(0, usage.prompt_tokens - cached_n - write_n)
        return (fresh * inp + cached_n * cached + write_n * write
                + usage.completion_tokens * out + per_request)

    def worst_case_units(self, input_tokens: int, output_tokens: int) -> int:
        inp, out, _, write, per_request = self.rates
        return input_tokens * max(inp, write) + output_tokens * out + per_request


def to_dollars(units: int) -> Decimal:
    """Pico-dollars as an exact Decimal of dollars."""
    return Decimal(units).scaleb(-12)


def dollar_text(units: int) -> str:
    """Pico-dollars as an exact decimal string of dollars (``"0.0000051"``): JSON-safe,
    ``Decimal(text)`` gives the amount back."""
    return format(to_dollars(units).normalize(), "f") if units else "0"


def to_units(dollars: Any, field: str = "usd") -> int:
    """Dollars (a number or string) as pico-dollars, exactly."""
    d = _money(field)(dollars)
    assert d is not None
    return _pico(field, d, PICO) or 0


# A provider answers with a dated snapshot of the model asked for ("gpt-4o-mini-2024-07-18",
# "claude-3-5-sonnet-20241022", "gemini-1.5-flash-002"): the same model at the same price.
# Only such suffixes are stripped; any other unknown name has no price (never a guess).
_SNAPSHOT = re.compile(r"^(?P<base>.+?)(?:-\d{4}-\d{2}-\d{2}|-\d{8}|-\d{4}|-\d{3}|-latest|@\d{8})$")


def model_names(model: str) -> list[str]:
    """The names to look ``model`` up under: itself, then without a snapshot suffix."""
    name = model.strip()
    if name.startswith("models/"):  # Gemini's resource name
        name = name[len("models/"):]
    names = [name]
    while True:
        m = _SNAPSHOT.match(name)
        if m is None:
            return names
        name = m.group("base")
        names.append(name)


@attrs.frozen
class PriceTable:
    """Prices per backend and model, with where they came from."""

    prices: Mapping[str, Mapping[str, Price]]
    as_of: str = ""
    source: str = ""

    def find(self, backend: str, model: str) -> Price | None:
        table = self.prices.get(backend)
        if not table:
            return None
        for name in model_names(model):
            price = table.get(name)
            if price is not None:
                return price
        return None

    @classmethod
    def parse(cls, data: Any, origin: str) -> PriceTable:
        """``{"as_of": ..., "source": ..., "backends": {backend: {model: price}}}`` (or the
        ``backends`` mapping alone)."""
        if not isinstance(data, Mapping):
            raise ConfigError("prices", f"{origin}: expected a JSON object")
        backends = data.get("backends", data if "as_of" not in data else None)
        if not isinstance(backends, Mapping):
            raise ConfigError("prices", f"{origin}: expected a 'backends' object")
        label = origin + (f" (as of {data['as_of']})" if data.get("as_of") else "")
        prices: dict[str, dict[str, Price]] = {}
        for backend, models in backends.items():
            if backend in ("as_of", "source", "unit", "notes"):
                continue
            if not isinstance(models, Mapping):
                raise ConfigError("prices", f"{origin}: {backend!r} must map model names to prices")
            try:
                prices[str(backend)] = {str(m): Price.from_mapping(p, label)
                                        for m, p in models.items()}
            except ConfigError as exc:
                raise ConfigError("prices", f"{origin}: {backend}: {exc}") from None
        return cls(prices, str(data.get("as_of", "")), str(data.get("source", "")))

    @classmethod
    def load(cls, path: str | Path) -> PriceTable:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError("prices", f"cannot read price file {path}: {exc.strerror}") from None
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ConfigError("prices", f"{path} is not valid JSON: {exc}") from None
        return cls.parse(data, str(path))


_DEFAULT: PriceTable | None = None


def default_table() -> PriceTable:
    """The dated table shipped with the package (``costs/prices.json``)."""
    global _DEFAULT
    if _DEFAULT is None:
        text = resources.files(__package__).joinpath("prices.json").read_text(encoding="utf-8")
        _DEFAULT = PriceTable.parse(json.loads(text), "default table")
    return _DEFAULT


def user_table(prices: Any) -> PriceTable | None:
    """``ClientConfig.prices``: a path to a JSON file, a mapping, or a PriceTable."""
    if prices is None:
        return None
    if isinstance(prices, PriceTable):
        return prices
    if isinstance(prices, (str, Path)):
        return PriceTable.load(prices)
    return PriceTable.parse(prices, "ClientConfig.prices")


class PriceBook:
    """Finds a model's price, first hit wins: the backend's ``options["prices"]``, the
    client's ``prices`` table, the ``accelerate_price`` hook, the default table.  Answers
    are remembered per (backend, model); an unknown model has no price (None)."""

    def __init__(self, user: PriceTable | None = None, hook: Any = None,
                 backend_prices: Mapping[str, Mapping[str, Price]] | None = None,
                 default: PriceTable | None = None) -> None:
        self.user = user
        self.hook = hook
        self.backend_prices = dict(backend_prices or {})
        self.default = default if default is not None else default_table()
        self._cache: dict[tuple[str, str], Price | None] = {}

    def lookup(self, backend: str, model: str | None) -> Price | None:
        if not model:
            return None
        key = (backend, model)
        try:
            return self._cache[key]
        except KeyError:
            pass
        price = self._find(backend, model)
        if len(self._cache) < 4096:  # bounded: model names come from the provider
            self._cache[key] = price
        return price

    def _find(self, backend: str, model: str) -> Price | None:
        own = self.backend_prices.get(backend)
        if own:
            for name in model_names(model):
                if name in own:
                    return own[name]
        if self.user is not None:
            price = self.user.find(backend, model)
            if price is not None:
                return price
        if self.hook is not None:
            try:
                price = self.hook(backend=backend, model=model)
                if price is not None:
                    return Price.from_mapping(price, "plugin")
            except Exception as exc:  # a broken price plugin must not fail a finished call
                log.warning("ipfs-accelerate: accelerate_price for %s/%s raised %s: %s; "
                            "that model has no price", backend, model, type(exc).__name__, exc)
                return None
        return self.default.find(backend, model)

    def rows(self, backends: Any = None) -> list[tuple[str, str, Price]]:
        """Every known (backend, model, price), overrides first, for display."""
        seen: set[tuple[str, str]] = set()
        out: list[tuple[str, str, Price]] = []
        tables: list[Mapping[str, Mapping[str, Price]]] = [self.backend_prices]
        if self.user is not None:
            tables.append(self.user.prices)
        tables.append(self.default.prices)
        for table in tables:
            for backend, models in table.items():
                if backends and backend not in backends:
                    continue
                for model, price in models.items():
                    if (backend, model) not in seen:
                        seen.add((backend, model))
                        out.append((backend, model, price))
        return sorted(out, key=lambda r: (r[0], r[1]))


def backend_prices(options: Mapping[str, Any], backend: str) -> dict[str, Price]:
    """``BackendConfig.options["prices"]``: ``{model: {"input": ..., "output": ...}}``."""
    raw = options.get("prices") if isinstance(options, Mapping) else None
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise ConfigError("prices", f"backend {backend!r}: options['prices'] must map model "
                                    f"names to prices")
    return {str(m): Price.from_mapping(p, f"{backend} options") for m, p in raw.items()}
