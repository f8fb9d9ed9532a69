"""Lazy package exports: a package's public names are imported on first use.

Both import packages (``persona_rag`` and ``optimizers``) re-export names from their heavy modules
(torch, transformers, dspy); importing those eagerly would make ``persona-rag --help`` wait seconds.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(
    package: str, exports: Mapping[str, Sequence[str]], namespace: dict[str, Any]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The module ``__getattr__`` and ``__dir__`` of ``package`` for ``{module: names}``.

    A name is imported from its module on first access and then kept in ``namespace`` (the
    package's ``globals()``), so later accesses cost nothing.
    """
    module_of = {name: module for module, names in exports.items() for name in names}

    def __getattr__(name: str) -> Any:
        module = module_of.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted({*namespace, *module_of})

    return __getattr__, __dir__
