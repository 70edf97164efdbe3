"""griffe extension: the docstrings' Sphinx roles become links in the API reference.

The docstrings cross-reference in Sphinx's style (``:class:`~awares_agent.agent.AwaResAgent```,
``:mod:`~.config```), which Markdown would show as literal text. Before mkdocstrings renders them, each role
becomes an optional cross-reference: a link where the target has a page in the reference, the name in code
where it has none (another library's name, a private module), never a broken link or a build warning.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

ROLE = re.compile(
    r":(?:py:)?(?:class|mod|func|meth|data|attr|obj|exc|const|type):`(?P<tilde>~?)(?P<name>[\w.]+)`"
)


def _target(obj: griffe.Object, name: str) -> str | None:
    """The full path ``name`` points to from ``obj``'s docstring, or ``None`` if it is not this package's."""
    if name.startswith("."):  # relative to the package of the module the docstring is in
        module = obj.module
        package = module.path if module.is_package else module.parent.path if module.parent else module.path
        return package + name
    if name.startswith("awares_agent."):
        return name
    head, _, rest = name.partition(".")
    try:
        resolved = obj.resolve(head)
    except (griffe.NameResolutionError, AttributeError, KeyError):
        return None
    return f"{resolved}.{rest}" if rest else resolved


def _link(obj: griffe.Object, match: re.Match[str]) -> str:
    name = match["name"]
    title = name.rsplit(".", 1)[-1] if match["tilde"] else name.lstrip(".")
    target = _target(obj, name)
    if target is None:
        return f"`{title}`"
    return f'<autoref identifier="{target}" optional><code>{title}</code></autoref>'


class SphinxRoles(griffe.Extension):
    """Rewrite Sphinx roles in every docstring of the package as optional cross-references."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        stack: list[griffe.Object] = [pkg]
        while stack:
            obj = stack.pop()
            if obj.docstring is not None and ":" in obj.docstring.value:
                obj.docstring.value = ROLE.sub(lambda m, o=obj: _link(o, m), obj.docstring.value)
            stack.extend(member for member in obj.members.values() if not member.is_alias)
