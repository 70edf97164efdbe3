"""griffe extension: the docstrings' reStructuredText simple tables keep their columns in the API reference.

Some docstrings hold a table in reStructuredText's simple form (rows between ``====  ====`` borders: the
crop policies, the prompt presets, where each request to ``awares serve`` goes, its metrics). Markdown reads
such a table as one paragraph and runs its rows together. Before mkdocstrings renders them, each becomes a
fenced ``text`` block with its columns realigned and its inline markup (````code````, ``**bold**``, Sphinx
roles) dropped, so that the page shows the table as the source lays it out. A paragraph's ``::`` before a
literal block becomes ``:`` (the indented block already reads as code in Markdown).
"""

from __future__ import annotations

import re
from typing import Any

import griffe

BORDER = re.compile(r"^=+(?: +=+)+\s*$")
_ROLE = re.compile(r":(?:py:)?\w+:`~?\.?(?P<name>[\w.]+)`")
_AUTOREF = re.compile(r"<autoref [^>]*><code>(?P<title>[^<]*)</code></autoref>")


def _plain(cell: str) -> str:
    """A cell's text without its inline markup."""
    cell = _AUTOREF.sub(lambda m: m["title"], cell)
    cell = _ROLE.sub(lambda m: m["name"].rsplit(".", 1)[-1] if "~" in m[0] else m["name"], cell)
    return cell.replace("``", "").replace("**", "").strip()


def _spans(border: str) -> list[int]:
    """Where each column of a border line starts."""
    return [m.start() for m in re.finditer(r"=+", border)]


def _table(lines: list[str]) -> list[str]:
    """A simple table's lines (its borders included) as a fenced block, columns realigned."""
    starts = _spans(lines[0])
    rows: list[list[str] | None] = []  # None: a border
    for line in lines:
        if BORDER.match(line):
            rows.append(None)
            continue
        ends = [*starts[1:], max(len(line), starts[-1])]
        rows.append([_plain(line[start:end]) for start, end in zip(starts, ends, strict=True)])
    widths = [max([len(r[i]) for r in rows if r is not None] + [1]) for i in range(len(starts))]
    out = ["```text"]
    for row in rows:
        if row is None:
            out.append("  ".join("=" * w for w in widths))
        else:
            out.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    return [*out, "```"]


def convert(text: str) -> str:
    """``text`` with every simple table fenced and every ``::`` before a literal block made ``:``."""
    lines = text.split("\n")
    out: list[str] = []
    i = 0
    while i < len(lines):
        if not BORDER.match(lines[i]):
            line = lines[i]
            following = next((n for n in lines[i + 1 :] if n.strip()), "")
            if line.endswith("::") and not line.endswith(" ::") and following.startswith((" ", "\t")):
                line = line[:-1]
            out.append(line)
            i += 1
            continue
        # A table ends at a border followed by a blank line or by the end of the text.
        end = i + 1
        while end < len(lines) and not (
            BORDER.match(lines[end]) and (end + 1 == len(lines) or not lines[end + 1].strip())
        ):
            end += 1
        if end == len(lines):  # no closing border: not a table
            out.append(lines[i])
            i += 1
            continue
        if out and out[-1].strip():
            out.append("")
        out.extend(_table(lines[i : end + 1]))
        i = end + 1
    return "\n".join(out)


class RstTables(griffe.Extension):
    """Fence the simple tables of every docstring of the package (see the module docstring)."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        stack: list[griffe.Object] = [pkg]
        while stack:
            obj = stack.pop()
            if obj.docstring is not None and ("==" in obj.docstring.value or "::" in obj.docstring.value):
                obj.docstring.value = convert(obj.docstring.value)
            stack.extend(member for member in obj.members.values() if not member.is_alias)
