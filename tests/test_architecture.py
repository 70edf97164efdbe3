"""The package's shape, checked from its source: imports point down, and nothing reaches into another module.

Every import statement of every module in the ``awares_agent`` namespace is read with :mod:`ast`, at any
depth: module level, inside functions (a lazy import is still a dependency) and under ``TYPE_CHECKING``.

* no cycle between modules;
* no cycle between packages (each sub-package, e.g. ``awares_agent.tools``, is one node; modules directly in
  ``awares_agent`` are nodes of their own; the top ``awares_agent/__init__.py`` facade is left out, since
  nothing inside the package may import it: that is checked too);
* no private name (``_x``) imported from another module;
* every import points down the layers of :data:`LAYERS` (shared types at the bottom, the CLI at the top).
"""

from __future__ import annotations

import ast
import tomllib
from collections.abc import Iterator
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TOP = "awares_agent"


@cache
def package_dirs() -> dict[str, Path]:
    """Installed package name -> folder, from pyproject's ``package-dir`` mapping."""
    setup = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    return {name: ROOT / folder for name, folder in setup["package-dir"].items()}


@cache
def modules() -> dict[str, Path]:
    """Every module of the installed namespace, by its dotted name."""
    found: dict[str, Path] = {}
    mapping = package_dirs()
    for package, folder in mapping.items():
        for path in folder.rglob("*.py"):
            rel = path.relative_to(folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            name = ".".join([package, *parts])
            # a folder mapped on its own (awares_agent/tools -> tools/) wins over a same-named path inside
            if name not in found or any(name == p or name.startswith(p + ".") for p in mapping if p != TOP):
                found[name] = path
    return found


def is_package(name: str) -> bool:
    return modules()[name].name == "__init__.py"


def imports_of(name: str) -> Iterator[tuple[str, str | None, int]]:
    """``(imported module, imported name or None, line)`` for each project import in module ``name``."""
    path = modules()[name]
    tree = ast.parse(path.read_text(), filename=str(path))
    package = name if is_package(name) else name.rpartition(".")[0]
    known = modules()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == TOP:
                    yield alias.name, None, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != TOP:
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                if sub in known:
                    yield sub, None, node.lineno
                else:
                    yield target, alias.name, node.lineno


def owner(target: str) -> str:
    """The module that defines ``target`` (the longest known prefix)."""
    known = modules()
    while target not in known and "." in target:
        target = target.rpartition(".")[0]
    return target


def module_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {name: set() for name in modules()}
    for name in modules():
        for target, _, _ in imports_of(name):
            dep = owner(target)
            if dep != name:
                graph[name].add(dep)
    return graph


def package_of(name: str) -> str:
    """The node a module counts as in the package graph: its sub-package, or itself if directly in the top."""
    return ".".join(name.split(".")[:2])


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a path ``[a, b, ..., a]``, or ``None``."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_checker_sees_the_whole_namespace() -> None:
    names = modules()
    assert {"awares_agent.agent", "awares_agent.tools.crop_sets", "awares_agent.graphs.awares_graph"} <= set(
        names
    )
    assert "awares_agent.evals" in names and "awares_agent.training" in names
    assert module_graph()["awares_agent.agent"], "the agent's imports were not found"


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_no_module_cycle() -> None:
    graph = module_graph()
    graph.pop(TOP)  # the facade imports (under TYPE_CHECKING) what it re-exports; nothing imports it back
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_no_package_cycle() -> None:
    graph: dict[str, set[str]] = {}
    for name, deps in module_graph().items():
        if name == TOP:
            continue
        node = package_of(name)
        graph.setdefault(node, set()).update(package_of(d) for d in deps if package_of(d) != node)
    cycle = find_cycle(graph)
    assert cycle is None, "package cycle: " + " -> ".join(cycle or [])


def test_nothing_inside_imports_the_top_facade() -> None:
    offenders = [
        f"{name}:{line}"
        for name in modules()
        if name != TOP
        for target, _, line in imports_of(name)
        if owner(target) == TOP
    ]
    assert offenders == [], "import from the submodule that defines the name instead: " + ", ".join(offenders)


def test_no_private_name_is_taken_from_another_module() -> None:
    offenders = [
        f"{name}:{line} takes {imported} from {target}"
        for name in modules()
        for target, imported, line in imports_of(name)
        if imported and imported.startswith("_") and not imported.startswith("__") and owner(target) != name
    ]
    assert offenders == [], "; ".join(offenders)


#: The layers, bottom first. A module may import from its own layer or a lower one, never a higher one: the
#: shared types and the boundary at the bottom, the CLI at the top. Each entry is a module, or a package with
#: everything in it.
LAYERS: list[list[str]] = [
    [
        "awares_agent.redact",
        "awares_agent.untrusted",
        "awares_agent.errors",
        "awares_agent.boxes",
        "awares_agent.fuzzy",
        "awares_agent.lazy_exports",
    ],
    ["awares_agent.messages"],
    [  # what opening an image rests on, and the OCR engine that reads one
        "awares_agent.image_headers",
        "awares_agent.image_limits",
        "awares_agent.image_modes",
        "awares_agent.views",
        "awares_agent.ocr",
    ],
    ["awares_agent.images", "awares_agent.tokens"],
    ["awares_agent.image_store"],
    ["awares_agent.tools"],
    ["awares_agent.config", "awares_agent.trajectory"],
    ["awares_agent.backends"],
    ["awares_agent.baselines"],  # fitted heuristics that stand in for a model (the frozen reader)
    ["awares_agent.backend_factory"],  # picks a backend or baseline by name
    ["awares_agent.cli_options"],  # flags for the backend and agent configs, shared by every command
    ["awares_agent.graphs"],
    ["awares_agent.agent", "awares_agent.policies"],
    ["awares_agent.engine"],
    ["awares_agent.evals", "awares_agent.testing"],
    ["awares_agent.collect"],
    ["awares_agent.training"],
    ["awares_agent.demo", "awares_agent.serve"],  # the console demo; the OpenAI-compatible server
    ["awares_agent.cli"],
]


def layer_of(name: str) -> int:
    for index, layer in enumerate(LAYERS):
        if any(name == entry or name.startswith(entry + ".") for entry in layer):
            return index
    raise AssertionError(f"{name} is in no layer: add it to LAYERS in tests/test_architecture.py")


def test_every_module_has_a_layer() -> None:
    for name in modules():
        if name != TOP:
            layer_of(name)


def test_imports_point_down() -> None:
    offenders = [
        f"{name}:{line} imports {owner(target)} (layer {layer_of(owner(target))} > {layer_of(name)})"
        for name in modules()
        if name != TOP
        for target, _, line in imports_of(name)
        if owner(target) != TOP and layer_of(owner(target)) > layer_of(name)
    ]
    assert offenders == [], "; ".join(offenders)
