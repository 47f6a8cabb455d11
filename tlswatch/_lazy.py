"""Lazy package exports (PEP 562): a package's public names load their submodule when first
used, so ``import tlswatch.capture`` does not pay for QUIC decryption or ``tlswatch.probe``
for asyncio and dnspython until a name that needs them is touched.

A package lists its names once per submodule::

    __getattr__, __dir__ = lazy_exports(__name__, {".dns": ("resolve", ...), ...})

and keeps ``__all__`` and an ``if TYPE_CHECKING:`` block of the same imports for type
checkers (tests/test_lazy.py checks that the three agree).
"""

from __future__ import annotations

import importlib
import sys
import types
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(package: str, exports: Mapping[str, tuple[str, ...]]
                 ) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The module ``__getattr__`` and ``__dir__`` of ``package`` for ``exports``
    (relative submodule -> the names it provides)."""
    where = {name: module for module, names in exports.items() for name in names}
    pkg = sys.modules[package]
    namespace = vars(pkg)

    def __getattr__(name: str) -> Any:
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module, package), name)
        namespace[name] = value  # later lookups are plain attribute reads
        return value

    def __dir__() -> list[str]:
        return sorted({*namespace, *where})

    # A name that is also a submodule's (``tlswatch.probe.measure`` the function, in the
    # module of that name): importing the submodule binds it on the package, which would
    # hide the function. Eager imports used to rebind it; keep the function instead.
    shadowed = frozenset(n for n, m in where.items() if m.rpartition(".")[2] == n)
    if shadowed:
        pkg.__class__ = _shadowing_class(shadowed)
    return __getattr__, __dir__


def _shadowing_class(names: frozenset[str]) -> type[types.ModuleType]:
    class _Package(types.ModuleType):
        def __setattr__(self, name: str, value: Any) -> None:
            if name in names and isinstance(value, types.ModuleType):
                return  # the submodule stays reachable as sys.modules[...]
            super().__setattr__(name, value)

    return _Package
