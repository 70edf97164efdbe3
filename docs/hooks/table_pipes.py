"""MkDocs hook: ``\\|`` in a table's inline code shows as ``|``, as on GitHub.

A pipe inside a table cell must be escaped (``json\\|awares-text``) for the table to split right; GitHub then
shows ``json|awares-text``, but Python-Markdown keeps the backslash inside a code span. This hook drops it
from the rendered code spans of table cells, so the pages read the same on GitHub and on the site.
"""

from __future__ import annotations

import re
from typing import Any

_CELL_CODE = re.compile(r"(<t[dh][^>]*>)(.*?)(</t[dh]>)", re.DOTALL)
_CODE = re.compile(r"<code>(.*?)</code>", re.DOTALL)


def _unescape_code(match: re.Match[str]) -> str:
    return "<code>" + match[1].replace("\\|", "|") + "</code>"


def on_page_content(html: str, **kwargs: Any) -> str:
    if "\\|" not in html:
        return html
    return _CELL_CODE.sub(lambda m: m[1] + _CODE.sub(_unescape_code, m[2]) + m[3], html)
