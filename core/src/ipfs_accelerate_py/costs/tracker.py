"""The pipeline's cost bookkeeping: price each result, keep spend in the stats, reserve a
request's worst case under its budgets before it is sent and settle it when it ends.

Called from the pipeline stages (never under the scheduling lock: a shared ledger may be a
network round trip):

- :meth:`CostTracker.reserve` by :meth:`Pipeline.run` before an attempt is sent;
- :meth:`CostTracker.price_result` when a result arrives, :meth:`price_stream` when a
  stream ends;
- :meth:`CostTracker.release` when an attempt ends without finishing its request
  (requeued, or returned unsent), :meth:`CostTracker.finished` when a request ends.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping  # isinstance on typing.Mapping is several times slower
from typing import Any, Callable, Sequence

import attrs

from ..errors import StreamError
from ..results import Usage
from .budgets import Budget, BudgetExceeded, MemoryLedger
from .prices import PriceBook, to_dollars
from .stats import CostStats

log = logging.getLogger("ipfs_accelerate")

# Operations that produce no output tokens: their worst case is their input.
NO_OUTPUT_OPS = frozenset({"embed", "embeddings", "rerank", "count_tokens", "tokenize",
                           "models", "model", "list_models"})
_OUTPUT_FIELDS = ("max_tokens", "max_completion_tokens", "max_new_tokens", "maxOutputTokens",
                  "num_predict", "max_output_tokens")
RETRY_RESERVE = 0.05  # seconds: a request blocked only by in-flight reservations tries again
LEDGER_RETRY = 0.5  # seconds: a request whose shared ledger did not answer tries again


@attrs.frozen
class BudgetWarning:
    """A budget's settled spend crossed one of its thresholds in a window, or (``refused``)
    a request was refused or held because it did not fit."""

    budget: str
    window: str
    unit: str  # "usd" or "tokens"
    threshold: float  # fraction of the limit (1.0 when refused)
    spent: Any  # dollars (Decimal) or tokens, settled in this window
    limit: Any
    refused: bool = False
    time: float = 0.0


@attrs.frozen
class Refusal:
    """Why a job was not sent: its error, and (hold) how long to wait before trying again."""

    error: BudgetExceeded
    delay: float | None  # None: fail now


def declared_output(payload: Any) -> int | None:
    """The output cap a payload sets (top level, or Gemini's / Ollama's / TGI's nested one)."""
    if not isinstance(payload, Mapping):
        return None
    places = [payload] + [payload.get(k) for k in ("generationConfig", "options", "parameters")]
    for place in places:
        if isinstance(place, Mapping):
            for f in _OUTPUT_FIELDS:
                v = place.get(f)
                if isinstance(v, int) and not isinstance(v, bool) and v >= 0:
                    return v
    return None


def _top_level_output(payload: Any) -> int:
    # What Backend.estimate_tokens already added to its estimate.
    for k in ("max_tokens", "max_completion_tokens", "max_new_tokens", "maxOutputTokens",
              "num_predict"):
        v = payload.get(k) if isinstance(payload, Mapping) else None
        if isinstance(v, int):
            return v
    return 0


def request_model(job: Any) -> str | None:
    model = job.request.payload.get("model") if isinstance(job.request.payload, Mapping) else None
    if isinstance(model, str) and model:
        return model
    opt = job.bstate.config.options.get("model")
    return opt if isinstance(opt, str) else None


class CostTracker:
    def __init__(self, prices: PriceBook, budgets: Sequence[Budget] = (), ledger: Any = None,
                 wall_clock: Callable[[], float] = time.time, emit: Any = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.prices = prices
        self.budgets = tuple(budgets)
        names = [b.name for b in self.budgets]
        if len(set(names)) != len(names):
            from ..errors import ConfigError

            raise ConfigError("budgets", f"two budgets share a name: {sorted(names)}")
        self.ledger = ledger if ledger is not None else MemoryLedger()
        self.wall_clock = wall_clock
        self.clock = clock
        self.emit = emit  # (hook name, event) -> None, or None
        self.stats = CostStats()
        self._refused_windows: set[tuple[str, str]] = set()

    # ------------------------------------------------------------ prices
    def price_units(self, backend: str, model: str | None, usage: Usage | None) -> int | None:
        if usage is None:
            return None
        price = self.prices.lookup(backend, model)
        return None if price is None else price.cost_units(usage)

    def price_result(self, job: Any, result: Any) -> None:
        """Set ``result.cost`` and remember it for the job's settlement."""
        model = job.cost_model or request_model(job) or result.model
        units = self.price_units(job.bstate.name, result.model or model, result.usage)
        if units is None and result.model and model and model != result.model:
            units = self.price_units(job.bstate.name, model, result.usage)
        job.cost_units, job.cost_model = units, model
        if units is not None:
            object.__setattr__(result, "cost", to_dollars(units))

    def price_stream(self, job: Any, stream: Any, usage: Usage | None) -> None:
        model = request_model(job) or stream.model
        units = self.price_units(job.bstate.name, stream.model or model, usage)
        if units is None and stream.model and model and model != stream.model:
            units = self.price_units(job.bstate.name, model, usage)
        job.cost_units, job.cost_model = units, model
        stream.cost = None if units is None else to_dollars(units)

    # ------------------------------------------------------------ budgets
    def reserve(self, jobs: Sequence[Any], key_id: str) -> list[tuple[Any, Refusal]]:
        """Reserve each job's worst case under every budget it falls under; the jobs that do
        not fit, with why.  A job reserves all its budgets or none."""
        refused: list[tuple[Any, Refusal]] = []
        if not self.budgets:
            return refused
        wall = self.wall_clock()
        windows: dict[str, str] = {}  # window kind -> its id now
        for job in jobs:
            entries = []
            sizes: tuple[int, int | None] | None = None
            for b in self.applicable(job, key_id):
                if sizes is None:
                    sizes = self._sizes(job)
                amount, problem = self._worst_case(job, b, *sizes)
                if problem is not None:
                    refused.append((job, Refusal(self._refusal(job, b, wall, amount, problem), None)))
                    break
                window = windows.get(b.window)
                if window is None:
                    window = windows[b.window] = b.window_id(wall)
                entries.append((b, f"{b.name}|{window}", amount))
            else:
                if not entries:
                    continue
                try:
                    bad = self.ledger.reserve([(k, amount, b.limit) for b, k, amount in entries])
                except Exception as exc:  # a shared ledger that does not answer: wait, retry
                    b = entries[0][0]
                    refused.append((job, Refusal(self._refusal(
                        job, b, wall, entries[0][2],
                        f"the budget ledger is unreachable ({exc}); waiting for it"),
                        LEDGER_RETRY)))
                    continue
                if bad is None:
                    job.reservation = entries
                    continue
                b, k, amount = entries[bad]
                refused.append((job, self._refuse(job, b, k, amount, wall)))
        return refused

    def applicable(self, job: Any, key_id: str | None) -> list[Budget]:
        req = job.request
        model = job.cost_model = job.cost_model or request_model(job)
        return [b for b in self.budgets if b.matches(job.bstate.name, key_id, model, req.tags)]

    @staticmethod
    def _sizes(job: Any) -> tuple[int, int | None]:
        """The request's input estimate and declared output cap (once per attempt)."""
        req = job.request
        # Dispatch already estimated it when the key has a token limit.
        estimate = job.tokens if job.bstate.needs_tokens and job.tokens else \
            job.bstate.backend.estimate_tokens(req)
        return max(0, estimate - _top_level_output(req.payload)), declared_output(req.payload)

    def _worst_case(self, job: Any, b: Budget, input_tokens: int,
                    out: int | None) -> tuple[int, str | None]:
        req = job.request
        if out is None:
            out = 0 if req.operation in NO_OUTPUT_OPS else b.output_tokens
        if b.usd is None:
            return input_tokens + out, None
        model = job.cost_model
        price = self.prices.lookup(job.bstate.name, model)
        if price is None:
            return 0, (f"model {model!r} of backend {job.bstate.name!r} has no price, so the "
                       f"dollar budget cannot bound it (add one: ClientConfig.prices or the "
                       f"backend's options['prices'])")
        return price.worst_case_units(input_tokens, out), None

    def _refuse(self, job: Any, b: Budget, k: str, amount: int, wall: float) -> Refusal:
        try:
            settled, reserved = self.ledger.usage(k)
        except Exception as exc:
            return Refusal(self._refusal(job, b, wall, amount, f"the budget ledger is "
                                         f"unreachable ({exc}); waiting for it"), LEDGER_RETRY)
        err = self._refusal(job, b, wall, amount, None, settled, reserved)
        if settled + amount <= b.limit:
            # Only reservations in flight are in the way: they may settle lower.
            return Refusal(err, RETRY_RESERVE)
        self._warn_refused(b, k, settled)
        if b.on_exceed == "hold":
            return Refusal(err, b.seconds_to_turn(wall))
        return Refusal(err, None)

    def _refusal(self, job: Any, b: Budget, wall: float, amount: int, problem: str | None,
                 settled: int = 0, reserved: int = 0) -> BudgetExceeded:
        window = b.window_id(wall)
        if problem is None:
            problem = (f"needs up to {b.show(amount)} {b.unit} but {b.show(settled)} is spent "
                       f"and {b.show(reserved)} reserved of {b.show(b.limit)}")
        return BudgetExceeded(f"budget {b.name!r} ({window}): {problem}", budget=b.name,
                              window=window, unit=b.unit, limit=b.show(b.limit),
                              spent=b.show(settled), reserved=b.show(reserved),
                              needed=b.show(amount), request_id=job.request.request_id)

    def release(self, job: Any) -> None:
        """Give a job's reservation back (its attempt was not billed, or not sent)."""
        entries = getattr(job, "reservation", None)
        if entries:
            job.reservation = None
            self.ledger.settle([(k, amount, 0) for _, k, amount in entries])

    def _settle(self, job: Any, usage: Usage | None, error: BaseException | None) -> None:
        entries = job.reservation
        job.reservation = None
        # A stream cut after it started was billed for what the provider produced, which
        # we cannot see: keep its worst case.  Other failures were not billed.
        broken_stream = isinstance(error, StreamError) and usage is None
        rows = []
        for b, k, amount in entries:
            if error is not None and not broken_stream and usage is None:
                actual = 0
            elif b.usd is None:
                actual = usage.total_tokens if usage is not None else amount
            else:
                actual = job.cost_units if job.cost_units is not None else amount
            rows.append((k, amount, actual))
        changes = self.ledger.settle(rows)
        if self.emit is None:
            return
        for (b, k, _), (before, after) in zip(entries, changes):
            for t in b.thresholds:
                mark = b.limit * t
                if before < mark <= after:
                    self.emit(BudgetWarning(b.name, k.split("|", 1)[1], b.unit, t,
                                            b.show(after), b.show(b.limit), time=self.clock()))

    def _warn_refused(self, b: Budget, k: str, settled: int) -> None:
        window = k.split("|", 1)[1]
        if self.emit is None or (b.name, window) in self._refused_windows:
            return
        self._refused_windows.add((b.name, window))
        self.emit(BudgetWarning(b.name, window, b.unit, 1.0, b.show(settled), b.show(b.limit),
                                refused=True, time=self.clock()))

    def spend(self) -> dict[str, dict[str, Any]]:
        """Each budget's current window: limit, settled and reserved, in its unit (dollars
        as exact decimal strings, tokens as integers)."""
        wall = self.wall_clock()
        out = {}
        for b in self.budgets:
            window = b.window_id(wall)
            try:
                settled, reserved = self.ledger.usage(f"{b.name}|{window}")
            except Exception as exc:
                out[b.name] = {"unit": b.unit, "window": window, "limit": b.text(b.limit),
                               "error": str(exc)}
                continue
            out[b.name] = {"unit": b.unit, "window": window, "limit": b.text(b.limit),
                           "spent": b.text(settled), "reserved": b.text(reserved)}
        return out

    def annotate(self, snapshot: Any) -> Any:
        """``snapshot`` with spend: under ``"costs"`` of each backend and key, and per model,
        tag, in total and per budget in ``snapshot.costs``."""
        c = self.stats.snapshot()
        for name, d in snapshot.backends.items():
            d["costs"] = c["backends"].get(name)
        for name, d in snapshot.keys.items():
            d["costs"] = c["keys"].get(name)
        costs = {"total": c["total"], "models": c["models"], "tags": c["tags"]}
        if self.budgets:
            costs["budgets"] = self.spend()
        return attrs.evolve(snapshot, costs=costs)

    def close(self) -> None:
        try:
            self.ledger.close()
        except Exception as exc:
            log.warning("ipfs-accelerate: closing the budget ledger failed: %s", exc)

    # ------------------------------------------------------------ the end of a request
    @staticmethod
    def cost_of(job: Any) -> Any:
        return None if job.cost_units is None else to_dollars(job.cost_units)

    def finished(self, job: Any, usage: Usage | None, error: BaseException | None,
                 success: bool) -> None:
        """Book the request's cost in the stats and settle its reservation."""
        if getattr(job, "reservation", None):
            self._settle(job, usage, error)
        if success or job.cost_units is not None:
            self.stats.record(job.bstate.name, job.key_id, job.cost_model or request_model(job),
                              job.request.tags, job.cost_units, usage)


__all__ = ["BudgetWarning", "CostTracker", "Refusal", "declared_output"]
