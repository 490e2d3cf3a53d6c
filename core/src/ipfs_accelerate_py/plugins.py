"""Finding plugins: one entry-point group, loaded lazily, in a stable order.

A plugin that fails to import is skipped with a warning naming it (``strict=True`` or
``IPFS_ACCELERATE_STRICT_PLUGINS=1`` makes that an error).  ``IPFS_ACCELERATE_DISABLE_PLUGINS``
(comma-separated entry-point names) blocks plugins by name.
"""

from __future__ import annotations

import os
import threading
import warnings
from importlib import metadata
from typing import TYPE_CHECKING, Any, Iterable

import attrs
import pluggy

from . import hookspecs
from .errors import PluginError, UnknownPluginError

if TYPE_CHECKING:  # pragma: no cover
    from .backend import Backend
    from .server import ProtocolServer

ENTRY_POINT_GROUP = "ipfs_accelerate"
#: Protocol fakes (``name = "module:Class"``): a group of their own so that loading a
#: backend plugin never imports server code; they are imported only when fakes are asked for.
SERVER_ENTRY_POINT_GROUP = "ipfs_accelerate.servers"
DISABLE_ENV = "IPFS_ACCELERATE_DISABLE_PLUGINS"
STRICT_ENV = "IPFS_ACCELERATE_STRICT_PLUGINS"


class PluginLoadWarning(UserWarning):
    """A plugin could not be loaded and was skipped."""


@attrs.frozen
class PluginInfo:
    name: str
    distribution: str | None
    version: str | None
    module: str


def _env_list(name: str) -> set[str]:
    return {p.strip() for p in os.environ.get(name, "").split(",") if p.strip()}


class PluginManager(pluggy.PluginManager):
    """pluggy's manager, plus lazy entry-point loading and typed registries."""

    def __init__(self, *, load_entry_points: bool = True, strict: bool | None = None,
                 disabled: Iterable[str] | None = None) -> None:
        super().__init__(hookspecs.PROJECT)
        self.add_hookspecs(hookspecs)
        self.strict = strict if strict is not None else os.environ.get(STRICT_ENV, "") in ("1", "true", "yes")
        self.disabled = set(disabled) if disabled is not None else _env_list(DISABLE_ENV)
        self._want_entry_points = load_entry_points
        self._loaded = False
        self._lock = threading.RLock()
        self._infos: list[PluginInfo] = []
        self._backends: dict[str, type[Backend]] | None = None
        self._strategies: dict[str, Any] | None = None
        self._servers: dict[str, type[ProtocolServer]] | None = None
        #: Moves on every register/unregister: clients notice hooks added after them.
        self.generation = 0
        from . import defaults

        self.register(defaults, name="ipfs_accelerate_py.defaults")

    # -- loading -------------------------------------------------------------------
    def load(self) -> PluginManager:
        """Load the entry points now (idempotent, thread-safe)."""
        if self._loaded:
            return self
        with self._lock:
            if self._loaded:
                return self
            if self._want_entry_points:
                self._load_entry_points()
            self._loaded = True
        return self

    def _load_entry_points(self) -> None:
        eps = sorted(metadata.entry_points(group=ENTRY_POINT_GROUP),
                     key=lambda ep: (ep.dist.name if ep.dist else "", ep.name))
        seen: set[str] = set()
        for ep in eps:
            if ep.name in self.disabled or ep.name in seen:
                continue
            seen.add(ep.name)
            dist = ep.dist.name if ep.dist else None
            version = ep.dist.version if ep.dist else None
            try:
                plugin = ep.load()
                self.register(plugin, name=ep.name)
            except Exception as exc:
                if self.strict:
                    raise PluginError(ep.name, "load", exc) from exc
                warnings.warn(f"ipfs-accelerate: skipped plugin {ep.name!r} "
                              f"(distribution {dist}): {type(exc).__name__}: {exc}",
                              PluginLoadWarning, stacklevel=3)
                continue
            self._infos.append(PluginInfo(ep.name, dist, version, ep.value))

    def register(self, plugin: Any, name: str | None = None) -> str | None:
        """pluggy's register; also forgets the cached registries (backends, strategies,
        servers), so a plugin registered any way is seen."""
        with self._lock:
            result = super().register(plugin, name=name)
            self._backends = self._strategies = self._servers = None
            self.generation += 1
            return result

    def unregister(self, plugin: Any = None, name: str | None = None) -> Any:
        with self._lock:
            result = super().unregister(plugin, name=name)
            self._backends = self._strategies = self._servers = None
            self.generation += 1
            return result

    def add_plugin(self, plugin: Any, name: str | None = None) -> None:
        """Register a plugin object directly (tests, applications) and list it."""
        with self._lock:
            self.register(plugin, name=name)
            self._infos.append(PluginInfo(str(name or getattr(plugin, "__name__", repr(plugin))),
                                          None, None, getattr(plugin, "__name__", repr(plugin))))

    @property
    def hooks(self) -> Any:
        """The hook caller, with entry points loaded."""
        self.load()
        return self.hook

    def list_plugins(self) -> list[PluginInfo]:
        """The loaded plugins with their distribution names and versions."""
        self.load()
        return list(self._infos)

    # -- registries ----------------------------------------------------------------
    def _collect(self, hook_name: str, kind: str) -> list[tuple[str, Any]]:
        """Every plugin's registrations, through pluggy (so hook wrappers, tracing and
        call monitoring see the call), in call order.  When a plugin raises, each plugin
        is called alone to name the culprit and keep the others' registrations."""
        self.load()
        caller = getattr(self.hook, hook_name)
        try:
            results = [(self._source(r), r) for r in caller()]
        except Exception:
            results = []
            everyone = self.get_plugins()
            for impl in reversed(caller.get_hookimpls()):
                alone = self.subset_hook_caller(
                    hook_name, remove_plugins=[p for p in everyone if p is not impl.plugin])
                try:
                    results.extend((impl.plugin_name, r) for r in alone())
                except Exception as exc:
                    if self.strict:
                        raise PluginError(impl.plugin_name, hook_name, exc) from exc
                    warnings.warn(f"ipfs-accelerate: plugin {impl.plugin_name!r} failed to "
                                  f"register {kind}s: {type(exc).__name__}: {exc}",
                                  PluginLoadWarning, stacklevel=3)
        out: list[tuple[str, Any]] = []
        for source, res in results:
            if res is None:
                continue
            items = res.items() if isinstance(res, dict) else ((getattr(c, "name", ""), c) for c in res)
            out.extend((source, item) for item in items)
        return out

    @staticmethod
    def _source(result: Any) -> str:
        # pluggy returns results without their plugin: name where the registered objects live
        items = result.values() if isinstance(result, dict) else (result or ())
        mods = sorted({getattr(obj, "__module__", "?").split(".")[0] for obj in items})
        return ",".join(mods) or "?"

    def _registry(self, hook_name: str, kind: str) -> dict[str, Any]:
        reg: dict[str, Any] = {}
        for plugin_name, (name, obj) in self._collect(hook_name, kind):
            if not name:
                warnings.warn(f"ipfs-accelerate: plugin {plugin_name!r} registered a {kind} "
                              f"without a name", PluginLoadWarning, stacklevel=3)
                continue
            if name in reg and reg[name] is not obj:
                msg = f"{kind} {name!r} registered twice (again by plugin {plugin_name!r})"
                if self.strict:
                    raise PluginError(plugin_name, hook_name, ValueError(msg))
                warnings.warn("ipfs-accelerate: " + msg + "; keeping the first", PluginLoadWarning,
                              stacklevel=3)
                continue
            reg[name] = obj
        return reg

    def backends(self) -> dict[str, type[Backend]]:
        with self._lock:
            if self._backends is None:
                self._backends = self._registry("accelerate_backends", "backend")
            return dict(self._backends)

    def strategies(self) -> dict[str, Any]:
        with self._lock:
            if self._strategies is None:
                self._strategies = self._registry("accelerate_strategies", "strategy")
            return dict(self._strategies)

    def protocol_servers(self) -> dict[str, type[ProtocolServer]]:
        """Every installed protocol fake, imported: the one way to register one is an
        entry point of ``ipfs_accelerate.servers`` (``name = "module:Class"``).  Only tests,
        the simulator and the CLI call this; a client never does.  A test or application
        with a server of its own hands it to the simulator directly (``servers=``)."""
        with self._lock:
            if self._servers is None:
                reg: dict[str, type[ProtocolServer]] = {}
                for name, ep in self._server_entry_points().items():
                    try:
                        reg[name] = ep.load()
                    except Exception as exc:
                        if self.strict:
                            raise PluginError(name, "load protocol server", exc) from exc
                        warnings.warn(f"ipfs-accelerate: skipped protocol server {name!r} "
                                      f"({ep.value}): {type(exc).__name__}: {exc}",
                                      PluginLoadWarning, stacklevel=3)
                self._servers = reg
            return dict(self._servers)

    def _server_entry_points(self) -> dict[str, metadata.EntryPoint]:
        if not self._want_entry_points:
            return {}
        eps = sorted(metadata.entry_points(group=SERVER_ENTRY_POINT_GROUP),
                     key=lambda ep: (ep.dist.name if ep.dist else "", ep.name))
        out: dict[str, metadata.EntryPoint] = {}
        for ep in eps:
            if ep.name not in self.disabled:
                out.setdefault(ep.name, ep)
        return out

    def backend_class(self, name: str) -> type[Backend]:
        backends = self.backends()
        if name not in backends:
            raise UnknownPluginError("backend", name, list(backends),
                                     f"install it with: pip install {distribution_for(name)}")
        return backends[name]

    def strategy_factory(self, name: str) -> Any:
        strategies = self.strategies()
        if name not in strategies:
            raise UnknownPluginError("strategy", name, list(strategies))
        return strategies[name]

    def protocol_server(self, name: str) -> type[ProtocolServer]:
        servers = self.protocol_servers()
        if name not in servers:
            raise UnknownPluginError("protocol server", name, list(servers),
                                     f"install it with: pip install {distribution_for(name)}")
        return servers[name]


def distribution_for(backend_name: str) -> str:
    """The pip package that provides a backend of the given name (our naming scheme)."""
    return "ipfs-accelerate-" + backend_name.replace("_", "-")


_default: PluginManager | None = None
_default_lock = threading.Lock()


def get_plugin_manager() -> PluginManager:
    """The process-wide plugin manager (created, not loaded, on first call)."""
    global _default
    if _default is None:
        with _default_lock:
            if _default is None:
                _default = PluginManager()
    return _default


def reset_plugin_manager() -> None:
    """Forget the process-wide manager (tests; after installing a plugin at run time)."""
    global _default
    with _default_lock:
        _default = None


def list_plugins() -> list[PluginInfo]:
    return get_plugin_manager().list_plugins()
