"""Package attributes loaded on first use (PEP 562), so that importing a package (a
plugin's entry point, the core itself) stays cheap.  Used by the core, the compatibility
layer and plugins alike::

    __getattr__, __dir__ = lazy_exports(__name__, {"Client": ".client"})

Pair it with the same names imported under ``if TYPE_CHECKING:`` so type checkers see them.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any, Callable, Mapping


def lazy_exports(package: str, exports: Mapping[str, str]
                 ) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The module-level ``__getattr__`` and ``__dir__`` of ``package`` exporting each name
    of ``exports`` from the module (relative to ``package``) it maps to."""

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module, package), name)
        vars(sys.modules[package])[name] = value  # next time a plain attribute
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(exports))

    return __getattr__, __dir__
