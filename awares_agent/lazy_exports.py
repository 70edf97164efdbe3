"""Names a package exports without importing their modules until first use.

A package whose exports pull in heavy dependencies (torch, TRL, the OCR engine, LangGraph) lists them by
module and installs the pair this module makes as its module-level ``__getattr__`` and ``__dir__``
(PEP 562), so that importing the package, or one light submodule of it, stays fast::

    __getattr__, __dir__ = lazy_exports(__name__, {"AwaResAgent": "awares_agent.agent"})
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(
    package: str, exports: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """A module ``__getattr__`` that imports each exported name from its module on first use; a ``__dir__``.

    A name, once imported, is stored in the package's namespace, so later lookups do not come back here.

    Args:
        package: the package's ``__name__``.
        exports: each exported name and the dotted name of the module that defines it.

    Returns:
        ``(__getattr__, __dir__)`` for the package's module namespace.
    """

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted({*vars(sys.modules[package]), *exports})

    return __getattr__, __dir__
