"""MkDocs hook: the command-line reference is generated from the ``awares`` parser at build time.

A page that holds the line ``<!-- awares-cli-reference -->`` gets, in its place, one section per command of
the parser tree (``awares``, ``awares ask``, ``awares collect label``...) with that command's ``--help``
text, so the reference follows every flag the code adds, renames or removes, with nothing to edit by hand.
"""

from __future__ import annotations

import argparse
import inspect
import os
from collections.abc import Iterator
from typing import Any

MARKER = "<!-- awares-cli-reference -->"
WIDTH = "100"
"""Columns the help is wrapped to (argparse reads ``COLUMNS``): the page is the same on any machine."""

# The parser-building function of awares_agent.cli, under the names it has had or may take.
_BUILDERS = ("build_parser", "make_parser", "parser", "_parser")


def build_parser() -> argparse.ArgumentParser:
    """The ``awares`` parser, from whichever builder :mod:`awares_agent.cli` exposes."""
    from awares_agent import cli

    for name in _BUILDERS:
        builder = getattr(cli, name, None)
        if callable(builder) and _takes_no_arguments(builder):
            return builder()
    raise RuntimeError(f"awares_agent.cli has none of {', '.join(_BUILDERS)}: update {__file__}")


def _takes_no_arguments(function: Any) -> bool:
    """Whether ``function()`` is a valid call (a generic builder that needs its commands is not the one)."""
    try:
        inspect.signature(function).bind()
    except (TypeError, ValueError):
        return False
    return True


def walk(
    parser: argparse.ArgumentParser, prog: str = "awares"
) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    """Every command of the tree, depth first: ``(its full name, its parser)``."""
    yield prog, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from walk(sub, f"{prog} {name}")


def reference() -> str:
    """The markdown of the reference: one ``###`` section per command with its help text."""
    previous = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = WIDTH
    try:
        sections = [
            f"### `{name}`\n\n```text\n{sub.format_help().rstrip()}\n```\n"
            for name, sub in walk(build_parser())
        ]
    finally:
        if previous is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = previous
    return "\n".join(sections)


def on_page_markdown(markdown: str, page: Any, **kwargs: Any) -> str:
    if MARKER not in markdown:
        return markdown
    return markdown.replace(MARKER, reference())
