"""The one lazy-name loader of gradscope's packages (PEP 562 module ``__getattr__``).

A package lists its public names with the module that defines each; a name is imported on first use and
then cached in the package's namespace, so later lookups never come back here. This keeps ``import
gradscope`` and the JAX-free paths (`gradscope.checks`, ``gradscope inspect``'s file reading, the listings)
from importing JAX.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_getattr(
    package: str, table: Mapping[str, str | tuple[str, str | None]], namespace: dict[str, Any]
) -> Callable[[str], Any]:
    """The ``__getattr__`` of ``package``: ``table`` maps a name to its module (the attribute of the same
    name) or to ``(module, attribute)``, where attribute None means the module itself; the value found is
    stored in ``namespace`` (the package's ``globals()``)."""

    def __getattr__(name: str) -> Any:
        try:
            entry = table[name]
        except KeyError:
            raise AttributeError(f"module {package!r} has no attribute {name!r}") from None
        module_name, attribute = (entry, name) if isinstance(entry, str) else entry
        module = importlib.import_module(module_name)
        value = module if attribute is None else getattr(module, attribute)
        namespace[name] = value
        return value

    return __getattr__
