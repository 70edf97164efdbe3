"""MkDocs hook: lay the installed namespace out on disk so that mkdocstrings can read it statically.

The wheel installs ``tools/``, ``graphs/``, ``evals/`` and ``training/`` as ``awares_agent.tools`` and so on
(``[tool.setuptools] package-dir`` in ``pyproject.toml``). griffe, which reads the sources for mkdocstrings,
walks folders and would not find them under ``awares_agent/``. Before the build, this hook copies the sources
into ``build/docs-api/awares_agent/`` as they are installed (the mapping is read from ``pyproject.toml``, so
it cannot drift); ``mkdocs.yml`` points mkdocstrings there.
"""

from __future__ import annotations

import shutil
import tomllib
from pathlib import Path
from typing import Any

from mkdocs.plugins import event_priority

STAGE = Path("build") / "docs-api"
"""Where the namespace is laid out, relative to the folder of ``mkdocs.yml`` (``build/`` is git-ignored)."""

_IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc")


def stage_namespace(root: Path) -> Path:
    """Copy the package's folders under ``root / STAGE`` as the installed namespace; return the stage."""
    setuptools = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    mapping: dict[str, str] = setuptools["package-dir"]
    stage = root / STAGE
    shutil.rmtree(stage, ignore_errors=True)
    # Parents first, so that a mapped sub-package lands inside its parent's copy.
    for package in sorted(mapping, key=lambda name: name.count(".")):
        shutil.copytree(root / mapping[package], stage.joinpath(*package.split(".")), ignore=_IGNORE)
    return stage


@event_priority(100)  # before mkdocstrings creates its handler, which looks for the stage's folder
def on_config(config: Any) -> Any:
    stage_namespace(Path(config.config_file_path).parent)
    return config
