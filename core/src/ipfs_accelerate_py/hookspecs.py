"""Hook specifications: the contract between the core and its plugins.

Every plugin is a module (or object) registered under the entry-point group
``ipfs_accelerate`` that implements some of the hooks below with
``@ipfs_accelerate_py.hookimpl``.  A plugin implements only what it needs; the core
ships a default for every hook marked *firstresult* (but ``accelerate_make_observer``:
observers exist only when named), marked ``trylast`` so any plugin's implementation runs
before it (the defaults are registered first, when the plugin manager is made), so it
works with no plugin but a backend.

Hooks that may run for every request (``accelerate_backoff`` and the monitoring hooks) are
called on the pipeline's worker threads: keep them fast and thread-safe.  Each decision
has one way in: a key is chosen by the strategy that ``ClientConfig.strategy`` names among
those ``accelerate_strategies`` registers; breakers and limiters come from the client's
state store (``accelerate_make_state_store``, ``ClientConfig.state_store``); a protocol fake
is registered only under the ``ipfs_accelerate.servers`` entry point (no hook: loading a
backend must load no server code).  A strategy or
``accelerate_backoff`` implementation that raises fails only the request it was called
for, with a :class:`~ipfs_accelerate_py.errors.PluginError` naming it; a monitoring hook
or observer that raises is logged and ignored.  Either way the pipeline keeps serving the others.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

import pluggy

if TYPE_CHECKING:  # pragma: no cover
    import random

    from .backend import Backend
    from .config import ClientConfig, RetryPolicy
    from .costs import BudgetWarning
    from .errors import ProviderError
    from .events import BreakerChanged, RequestFinished, RequestQueued, RequestRetried, RequestStarted
    from .queue import PriorityRequestQueue
    from .request import Request
    from .retry import RetryDecision
    from .state import StateStore

PROJECT = "ipfs_accelerate"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


# ---------------------------------------------------------------- registration
@hookspec
def accelerate_backends() -> Sequence[type[Backend]]:
    """Register backend classes.

    :return: a sequence of :class:`~ipfs_accelerate_py.backend.Backend` subclasses.  Every
        plugin's results are collected; each class's ``name`` must be unique among the
        installed backends (a duplicate name is reported as a plugin error).

    Called once per plugin manager (again after a plugin is registered), the first time a
    backend is looked up by name.
    """


@hookspec
def accelerate_strategies() -> dict[str, Any]:
    """Register key-selection strategies by name: the one way to choose keys.

    :return: a mapping ``name -> factory``; the factory takes no argument and returns an
        object with ``select(request, candidates) -> KeyCandidate | None`` (see
        :class:`~ipfs_accelerate_py.selection.Strategy`).  Results of all plugins are
        merged; a duplicate name is reported as a plugin error.

    Called once per plugin manager (again after a plugin is registered), when a client
    resolves ``ClientConfig.strategy``.  The strategy's ``select`` is called on the
    dispatching thread (a worker, or the caller of ``Client.call``), under the pipeline's
    lock, for every attempt, with the keys that have capacity now: keep it fast.
    """


# ---------------------------------------------------------------- pipeline factories
@hookspec(firstresult=True)
def accelerate_make_queue(config: ClientConfig) -> PriorityRequestQueue | None:
    """Make the client's request queue.

    :param config: the client's configuration (``queue_size`` is the bound).
    :return: an object with the interface of
        :class:`~ipfs_accelerate_py.queue.PriorityRequestQueue`, or None to let the next
        implementation decide.  The first non-None result wins; the core's default is the
        bounded priority heap.

    Called once when a client is constructed.  The pipeline calls the queue under its own
    lock, so a queue need not be thread-safe.
    """


@hookspec(firstresult=True)
def accelerate_make_state_store(url: str | None, config: ClientConfig) -> StateStore | None:
    """Make the store of the client's rate limiters, circuit breakers and named counters.

    Key slots, the queue and the stats stay in the client.

    :param url: the configured store (``ClientConfig.state_store`` or the
        ``IPFS_ACCELERATE_STATE_STORE`` environment variable), or None when none is
        configured.  Answer only for a scheme you own (``redis://``...).
    :param config: the client's configuration.
    :return: a :class:`~ipfs_accelerate_py.state.StateStore`, or None.  First result wins;
        the core's default answers None and ``memory://`` with an in-memory store.  The
        client owns (closes) what this returns unless the store has ``shared = True``.

    Called once when a client is constructed, unless its config holds a store object.
    """


@hookspec(firstresult=True)
def accelerate_make_cache_store(url: str, config: Any) -> Any:
    """Make the response cache's store named by ``CacheConfig.store``.

    :param url: the store's URL; answer only for a scheme you own (``redis://``...).
    :param config: the client's :class:`~ipfs_accelerate_py.caching.CacheConfig`
        (``max_entries``, ``max_bytes``, ``namespace``...).
    :return: a :class:`~ipfs_accelerate_py.caching.CacheStore`, or None.  First result
        wins; the core's default answers ``memory://`` (an LRU store in the process) and
        ``sqlite:///path`` (a file shared by the processes of a host).  The client owns
        (closes) what this returns.

    Called once when a client with a cache is constructed, and by ``ipfs-accelerate
    cache``, on the constructing thread.
    """


@hookspec(firstresult=True)
def accelerate_make_observer(name: str, options: dict[str, Any], config: ClientConfig) -> Any:
    """Make an observer named in ``ClientConfig.observers`` or ``IPFS_ACCELERATE_OBSERVERS``.

    :param name: the observer's name (``"prometheus"``...); answer only for your own.
    :param options: the options given with the name (``("prometheus", {...})``), else {}.
    :param config: the client's configuration.
    :return: an object with some of the methods ``accelerate_on_queued``,
        ``accelerate_on_started``, ``accelerate_on_retried``, ``accelerate_on_finished``,
        ``accelerate_on_breaker_changed`` (each taking one event), or None.  First result
        wins; an unknown name is a :class:`~ipfs_accelerate_py.errors.ConfigError`.

    Called once per named observer when a client is constructed.  The observer receives
    that client's events only; one that raises is logged and ignored.
    """


# ---------------------------------------------------------------- per-request decisions
@hookspec(firstresult=True)
def accelerate_backoff(request: Request, attempt: int, error: ProviderError,
                       policy: RetryPolicy, now: float, deadline: float | None,
                       rng: random.Random) -> RetryDecision | None:
    """Decide whether to retry after a failed attempt, and after how long.

    :param request: the failed request.
    :param attempt: attempts made so far (1 after the first failure).
    :param error: the classified error; its ``retry_after`` and ``should_retry`` carry the
        response's hints (``retry-after(-ms)``, ``x-should-retry``).
    :param policy: the client's retry policy.
    :param now: the current ``time.monotonic()``.
    :param deadline: the request's deadline on the same clock, or None.
    :param rng: the pipeline's random source (seedable, for jitter).
    :return: a :class:`~ipfs_accelerate_py.retry.RetryDecision` (``retry``, ``delay``,
        ``reason``), or None to defer.  First result wins; the core's default is full-jitter
        exponential backoff honouring the hints, the deadline and the retry budget.

    Called after every failed attempt that reached the provider, on the thread that made
    the attempt (a worker, or the caller of ``Client.call``), outside the pipeline's lock.
    """


@hookspec(firstresult=True)
def accelerate_price(backend: str, model: str) -> Any:
    """Supply the price of a model (a self-hosted backend's, a negotiated rate...).

    :param backend: the backend's name (``"openai"``...).
    :param model: the model as the request named it or the provider answered it.
    :return: a :class:`~ipfs_accelerate_py.costs.Price`, or a mapping such as
        ``{"input": "0.15", "output": "0.60", "cached_input": "0.075", "per_request": "0"}``
        (dollars per 1M tokens; per request), or None to defer.  First result wins.  The
        user's overrides (``BackendConfig.options["prices"]``, ``ClientConfig.prices``) come
        before it and the shipped default table after it.

    Called at most once per (backend, model) per client (the answer is remembered), on the
    thread that settles the first result of that model or reserves its budget, outside the
    pipeline's lock.
    """


# ---------------------------------------------------------------- monitoring
# Every monitoring hook receives one frozen event object (ipfs_accelerate_py.events), all
# implementations are called, and a monitor that raises is logged and ignored: a broken
# exporter must not lose or fail work.
@hookspec
def accelerate_on_queued(event: RequestQueued) -> None:
    """A request entered the queue.

    :param event: :class:`~ipfs_accelerate_py.events.RequestQueued` (request id, backend,
        operation, priority, queue depth, time).

    Called once per request, on the submitting thread, after it was queued.
    """


@hookspec
def accelerate_on_started(event: RequestStarted) -> None:
    """An attempt of a request is about to be sent.

    :param event: :class:`~ipfs_accelerate_py.events.RequestStarted` (request id, backend,
        operation, key id, attempt number, seconds spent queued, time).

    Called for every attempt, on the thread that sends it (a worker, or the caller of
    ``Client.call``).
    """


@hookspec
def accelerate_on_retried(event: RequestRetried) -> None:
    """An attempt failed and the request will be tried again.

    :param event: :class:`~ipfs_accelerate_py.events.RequestRetried` (request id, backend,
        key id, attempts so far, error class, HTTP status, delay before the next try, time).

    Called after each failed attempt that is put back in the queue, on the thread that
    made the attempt.
    """


@hookspec
def accelerate_on_finished(event: RequestFinished) -> None:
    """A request completed, with its outcome, latency, key id and attempts.

    :param event: :class:`~ipfs_accelerate_py.events.RequestFinished` (outcome, latency
        from submission, key id, attempts, error class and message, usage, batch size).

    Called exactly once per request, on the thread that resolved it.
    """


@hookspec
def accelerate_on_budget(event: BudgetWarning) -> None:
    """A budget crossed a threshold of its limit, or refused a request.

    :param event: :class:`~ipfs_accelerate_py.costs.BudgetWarning` (budget name, window,
        unit, threshold as a fraction of the limit, settled spend and limit in the
        budget's unit, ``refused``, time).  Each threshold is reported once per window by
        the process whose settlement crossed it; a refusal once per window per client.

    Called on the thread that settled or reserved (a worker, a caller of ``Client.call``,
    or the thread closing a stream), outside the pipeline's lock.
    """


@hookspec
def accelerate_on_breaker_changed(event: BreakerChanged) -> None:
    """An endpoint's circuit breaker changed state (closed / open / half_open).

    :param event: :class:`~ipfs_accelerate_py.events.BreakerChanged` (endpoint, old and
        new state, time).

    Called on every transition, under the pipeline's lock: keep it quick.
    """


# ================================================================ command line
# Hooks of the ``ipfs-accelerate`` command (``ipfs_accelerate_py.cli``), in the spirit of
# pytest's ``pytest_addoption`` and llm's ``register_commands``.  They are called only by
# the command line, never by a ``Client``.
@hookspec
def accelerate_cli_commands(subparsers: Any) -> None:
    """Add commands to ``ipfs-accelerate``.

    :param subparsers: the :mod:`argparse` sub-parsers action of the top-level parser; call
        ``subparsers.add_parser(name, help=...)`` and give the new parser
        ``set_defaults(func=run)``, where ``run(args) -> int`` returns the exit status.  A
        :class:`~ipfs_accelerate_py.jobs.JobError` it raises is shown as one line (exit 2).

    Called once per parser build, on the main thread, after the core's own commands.
    """


@hookspec
def accelerate_cli_options(command: str, parser: Any) -> None:
    """Add options to a command of ``ipfs-accelerate`` (the core's or a plugin's).

    :param command: the command's name (``"batch"``, ``"chat"``, ...).
    :param parser: that command's :class:`argparse.ArgumentParser`; add arguments to it.
        Their values reach the command (for ``batch``, the runner's ``job.options``).

    Called once per command per parser build, on the main thread.
    """


@hookspec(firstresult=True)
def accelerate_cli_run_batch(job: Any) -> int | None:
    """Run a ``batch`` job another way (e.g. distributed through Redis).

    :param job: the :class:`~ipfs_accelerate_py.jobs.BatchJob` (paths, parsed options,
        installed backends, a client factory and a redactor).  The output path is already
        checked: it is writable and is not the input.
    :return: the exit status, or None to leave the job to the next runner (last of all the
        core's own journaled, resumable runner).

    Called once per ``batch`` command, on the main thread, before the core's runner.
    """


@hookspec
def accelerate_cli_client_ready(command: str, args: Any, client: Any, progress: Any) -> Any:
    """Start whatever watches a command's client (a live page) once it is built.

    ``batch`` and ``demo`` call it with the client they run their requests through.

    :param command: the command's name.
    :param args: the parsed options (those added through :func:`accelerate_cli_options`
        included).
    :param client: the :class:`~ipfs_accelerate_py.client.Client`.
    :param progress: the command's progress line (``done``, ``total``, ``failed``).
    :return: an object with ``close()``, called when the command ends, or None.

    Called once per run, on the main thread, before the first request is submitted.
    """


@hookspec(firstresult=True)
def accelerate_serve_dashboard(client: Any, port: int, host: str, token: str | None) -> Any:
    """Serve a live page for ``client`` (:meth:`Client.serve_dashboard`).

    :param client: the :class:`~ipfs_accelerate_py.client.Client` to show.
    :param port: the TCP port (0 picks a free one).
    :param host: the address to bind (loopback unless the caller asked otherwise).
    :param token: the token the page's data needs (required off loopback), or None.
    :return: the running page (an object with ``url`` and ``close()``), or None when this
        plugin does not serve one.

    Called on the thread that called ``Client.serve_dashboard``; the first result wins.
    """

