"""What the distribution installs: one top-level package, ``awares_agent``, holding every folder of the repo.

The repository keeps its folders by concept at the top (``tools/``, ``graphs/``, ``evals/``, ``training/``);
pyproject's ``package-dir`` installs them as ``awares_agent.tools`` and so on, so nothing this project ships
can clash with another distribution's ``tools`` or ``evals``. The wheel is built here from a copy of the
sources with setuptools' own build backend (offline, no build isolation), and read as the zip it is.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SETUP = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]


def _folder_of(package: str) -> Path:
    """The source folder setuptools takes ``package`` from (the longest ``package-dir`` prefix)."""
    mapping: dict[str, str] = SETUP["package-dir"]
    best = max((p for p in mapping if package == p or package.startswith(p + ".")), key=len)
    rest = package[len(best) :].lstrip(".")
    return ROOT / mapping[best] / Path(*rest.split(".")) if rest else ROOT / mapping[best]


def test_every_package_folder_is_listed_and_every_listed_package_exists() -> None:
    listed = set(SETUP["packages"])
    for package in listed:
        assert (_folder_of(package) / "__init__.py").is_file(), f"{package} has no {_folder_of(package)}"
    on_disk = set()
    for package, folder in SETUP["package-dir"].items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder)
            name = ".".join([package, *rel.parts]) if rel.parts else package
            if _folder_of(name) == init.parent:  # a folder mapped on its own is counted under its own name
                on_disk.add(name)
    missing = sorted(on_disk - listed)
    assert missing == [], f"add these to [tool.setuptools] packages in pyproject.toml: {missing}"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    src = tmp_path_factory.mktemp("src")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for folder in {Path(f).parts[0] for f in SETUP["package-dir"].values()}:
        shutil.copytree(ROOT / folder, src / folder, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    out = src / "dist"
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            f"from setuptools import build_meta; print(build_meta.build_wheel({str(out)!r}))",
        ],
        cwd=src,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return zipfile.ZipFile(out / done.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_the_wheel_installs_one_top_level_package(wheel: zipfile.ZipFile) -> None:
    names = wheel.namelist()
    top = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert top == {"awares_agent"}
    top_level = next(n for n in names if n.endswith(".dist-info/top_level.txt"))
    assert wheel.read(top_level).decode().split() == ["awares_agent"]
    for module in (
        "awares_agent/agent.py",
        "awares_agent/tools/crop_sets.py",
        "awares_agent/tools/prompts.py",
        "awares_agent/graphs/awares_graph.py",
        "awares_agent/evals/metrics.py",
        "awares_agent/training/sft.py",
        "awares_agent/training/accelerate/zero3.yaml",  # package data: the accelerate launch configs
    ):
        assert module in names


def test_the_installed_namespace_outside_the_checkout(tmp_path: Path) -> None:
    """From any other folder, ``awares_agent.tools`` is ours and ``tools`` is not this project's."""
    code = (
        "import importlib.util, json, awares_agent.tools, awares_agent.graphs, awares_agent.evals\n"
        "spec = {n: importlib.util.find_spec(n) for n in ('tools', 'graphs', 'evals', 'training')}\n"
        "print(json.dumps({'tools_file': awares_agent.tools.__file__,\n"
        "                  'others': {n: s.origin if s else None for n, s in spec.items()}}))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    assert Path(found["tools_file"]).resolve() == (ROOT / "tools" / "__init__.py").resolve()
    for name, origin in found["others"].items():
        assert origin is None or ROOT not in Path(origin).resolve().parents, f"`import {name}` is ours"


@pytest.mark.slow
def test_the_wheel_works_installed(wheel: zipfile.ZipFile, tmp_path: Path) -> None:
    """Unpacked as pip installs it (a plain folder on the path), the wheel alone is the whole package."""
    target = tmp_path / "site"
    wheel.extractall(target)
    code = (
        "import json, awares_agent, awares_agent.tools.crop_sets as c, awares_agent.graphs as g\n"
        "from awares_agent.cli import main\n"
        "print(json.dumps([awares_agent.__file__, c.__file__, g.__file__, c.crop_set('paper').ids]))\n"
    )
    env = {**{k: v for k, v in os.environ.items() if k != "PYTHONPATH"}, "PYTHONPATH": str(target)}
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr
    *files, ids = json.loads(done.stdout)
    assert all(Path(f).resolve().is_relative_to(target.resolve()) for f in files), files
    assert ids[-1] == "all" and len(ids) == 10
