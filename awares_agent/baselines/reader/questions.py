"""Questions parsed into what they ask: a field's key, a table cell's row and column, a bar, or a sign.

The reader understands text-reading questions only; anything else (colours, counts, objects...) parses to
``Query("none")`` and is answered ``"unknown"``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

__all__ = ["Query", "parse_question"]


@dataclass(frozen=True)
class Query:
    """What a question asks for.

    Attributes:
        kind: ``field`` (the value next to a key), ``cell`` (a table cell: ``column`` for row ``key``),
            ``bar`` (the value printed for a chart's bar named ``key``), ``sign`` (the main text of the
            image), or ``none`` (not a text-reading question the reader understands).
        key: the field's key, the cell's row label, or the bar's label.
        column: the cell's column header.
        words: the question's content words, tried one by one when ``key`` is not found as a whole.
        money: the question asks for an amount (a price, a cost, a total): values like ``12.50`` come first.
        on_sign: the key is a sign's label ("What is written after LEVEL on the sign?"): short text on its
            own, not a form's field.
    """

    kind: Literal["field", "cell", "bar", "sign", "none"]
    key: str = ""
    column: str = ""
    words: tuple[str, ...] = ()
    money: bool = False
    on_sign: bool = False


_DOC_WORDS = (
    r"receipt|form|invoice|document|page|image|picture|photo|table|chart|bar\s+chart|graph|plot|sign|card"
    r"|label|screen|poster|ticket|bill|statement|report|menu|list|sheet|figure|diagram|board|banner|notice"
    r"|display|scene|photo"
)
_TRAILERS = [
    re.compile(rf"\s+(?:on|in|of|from|at|for)\s+(?:the|this|that)\s+(?:\w+\s+)?(?:{_DOC_WORDS})\b.*$"),
    re.compile(
        r"\s+(?:shown|listed|written|printed|given|stated|displayed|indicated|reported|mentioned)\b.*$"
    ),
    re.compile(r"\s+(?:field|line|entry|box|row|cell)$"),
]
_LEADERS = re.compile(
    rf"^(?:(?:according\s+to|based\s+on|looking\s+at|from|in|on)\s+(?:the|this)\s+(?:[\w']+\s+)?(?:{_DOC_WORDS})"
    r"\s*[,:]?\s*)+"
)
_NON_TEXT = re.compile(
    r"^(?:how\s+many|is\s+there|are\s+there|is\s+it|is\s+the|are\s+the|does\s+the\s+image|who|where|why"
    r"|what\s+(?:kind|type|time\s+of\s+day|is\s+happening|animal|object)s?)\b|\bcolou?rs?\b|\bshape\b"
)
_MONEY_WORDS = re.compile(r"\b(?:how\s+much|price|cost|costs|amount|total|charge|charges|charged|paid|fee)\b")
_SIGN_SAY = re.compile(
    rf"^(?:what\s+(?:does|do)\s+(?:the|this|that)\s+(?:{_DOC_WORDS})\s+(?:say|read)"
    rf"|what\s+(?:is|'s)\s+(?:written|printed|shown)\s+(?:on|in)\s+(?:the|this|that)\s+(?:{_DOC_WORDS})"
    rf"|what\s+text\s+(?:is|appears)\s+(?:on|in)\s+(?:the|this|that)\s+(?:{_DOC_WORDS})"
    rf"|read\s+(?:the|this|that)\s+(?:{_DOC_WORDS}))$"
)
_CELL_PATTERNS = [
    re.compile(r"\brow\s+(?P<row>.+?)\s+and\s+(?:the\s+)?column\s+(?P<col>.+)$"),
    re.compile(r"\bcolumn\s+(?P<col>.+?)\s+and\s+(?:the\s+)?row\s+(?P<row>.+)$"),
    re.compile(
        r"\bunder\s+(?:the\s+)?(?P<col>.+?)\s+(?:column\s+)?(?:for|of|in)\s+(?:the\s+)?(?:row\s+)?(?P<row>.+)$"
    ),
    re.compile(
        r"^(?:what|which)\s+(?:is|was)\s+the\s+(?P<col>.+?)\s+(?:value|entry|cell|figure)\s+(?:for|of|in)\s+"
        r"(?:the\s+)?(?:row\s+)?(?P<row>.+)$"
    ),
]
_BAR_PATTERNS = [
    re.compile(r"\b(?:for|of)\s+(?:the\s+)?(?P<key>.+?)\s+(?:bar|column)\b"),
    re.compile(
        r"\b(?:value|number|amount|figure|total)\s+(?:is\s+|was\s+)?(?:shown\s+|given\s+|printed\s+|listed\s+)?"
        r"(?:for|of)\s+(?:the\s+)?(?P<key>.+)$"
    ),
    re.compile(
        r"^how\s+(?:much|many)\s+(?:\w+\s+)?(?:does|did|do|is|are|was)\s+(?:the\s+)?(?P<key>.+?)\s+\w+$"
    ),
]
_SIGN_PATTERNS = [
    re.compile(r"\b(?:on|of)\s+the\s+(?P<key>.+?)\s+sign\b"),
    re.compile(r"^read\s+the\s+(?P<key>.+?)\s+sign\b"),
    re.compile(
        r"\b(?:follows|following|after|next\s+to|beside|under)\s+(?:the\s+)?(?:word\s+)?(?P<key>.+?)(?:\s+on\s+the\s+sign)?$"
    ),
    re.compile(r"^(?:which|what)\s+(?P<key>[\w\s]+?)\s+(?:does|do|is|are)\s+(?:the|this)\s+sign\b"),
]
_FIELD_PATTERNS = [
    re.compile(
        r"\b(?:say|says|list|lists|show|shows|give|gives|state|states|charge|charges|read|reads|have|has)\s+"
        r"(?:for|about|under|as)\s+(?:the\s+)?(?P<key>.+)$"
    ),
    re.compile(
        r"\b(?:given|shown|listed|printed|written|entered|stated|filled\s+in)\s+"
        r"(?:for|next\s+to|beside|after|under|by|in)\s+(?:the\s+)?(?P<key>.+)$"
    ),
    re.compile(r"\b(?:follows|follow|following)\s+(?:the\s+)?(?P<key>.+)$"),
    re.compile(
        r"^how\s+much\s+(?:did|does|do|was|were|is|are)\s+(?:the\s+)?(?P<key>.+?)\s+(?:cost|costs|charge)$"
    ),
    re.compile(r"^how\s+much\s+(?:is|was|are|were)\s+(?:the\s+)?(?P<key>.+)$"),
    re.compile(
        r"^(?:read|give|tell\s+me|find|report|state)\s+(?:out\s+)?(?:the\s+)?(?P<key>.+?)"
        r"(?:\s+(?:field|entry|box|line|value))?$"
    ),
    re.compile(
        r"^(?:what|which)\s+(?P<key>[\w\s#.'-]+?)\s+(?:is|are|was|were)\s+(?:given|shown|listed|printed|written|stated|indicated|used|provided)$"
    ),
    re.compile(r"^(?:what|which)(?:\s+is|\s+are|\s+was|'s)\s+(?:the\s+|a\s+|an\s+)?(?P<key>.+)$"),
]
_OF_RE = re.compile(r"^(?P<column>.+?)\s+(?:for|of)\s+(?:the\s+)?(?P<row>.+)$")
_STOPWORDS = frozenset(
    [
        "a",
        "an",
        "the",
        "of",
        "for",
        "to",
        "in",
        "on",
        "at",
        "by",
        "from",
        "with",
        "and",
        "or",
        "is",
        "are",
        "was",
        "were",
        "be",
        "been",
        "does",
        "do",
        "did",
        "what",
        "which",
        "when",
        "where",
        "who",
        "whom",
        "how",
        "much",
        "many",
        "this",
        "that",
        "these",
        "those",
        "there",
        "it",
        "its",
        "please",
        "tell",
        "me",
        "give",
        "read",
        "find",
        "state",
        "value",
        "written",
        "printed",
        "shown",
        "listed",
        "given",
        "say",
        "says",
        "said",
        "stated",
        "according",
        "indicated",
        "indicate",
        "indicates",
        "here",
        "cost",
        "costs",
        "next",
        "under",
        "after",
        "follows",
        "following",
        "field",
        "cell",
        "row",
        "column",
        "entry",
        "s",
    ]
)
_DOC_WORD_SET = frozenset(re.sub(r"\\s\+", " ", _DOC_WORDS).replace("|", " ").split())


def _trim(text: str) -> str:
    text = text.strip(" \t\"'`“”‘’,:")
    text = re.sub(rf"^(?:the\s+)?(?:{_DOC_WORDS})'s\s+", "", text)
    for pattern in _TRAILERS:
        text = pattern.sub("", text)
    return text.strip(" \t\"'`“”‘’,:")


def _content_words(text: str) -> tuple[str, ...]:
    words = re.findall(r"[a-z0-9#]+", text)
    return tuple(w for w in words if w not in _STOPWORDS and w not in _DOC_WORD_SET)


def parse_question(question: str) -> Query:
    """Parse a text-reading question into a :class:`Query`.

    Understood forms (case-insensitive; quoted labels are taken as written; "According to the table, ...",
    "on the receipt", "shown"... are ignored): "What is the <key>?", "What does the form say for <key>?",
    "What value is given for <key>?", 'What is written next to "<key>"?', "Read the <key> field.",
    "How much did the <item> cost?", "What is the <column> value for <row>?", 'Read the cell in row "<row>"
    and column "<column>".', "What does the table list under <column> for <row>?", "What is the value of the
    <label> bar?", "What code follows "<label>" on the sign?", "What does the sign say?". Anything else that
    looks like a request for text falls back to its content words.

    Args:
        question: the question text.

    Returns:
        The query; ``kind="none"`` for questions that are not about reading text (colours, counts...).
    """
    text = " ".join(question.split())
    quoted = [next(g for g in groups if g) for groups in re.findall(r'"([^"]+)"|“([^”]+)”|‘([^’]+)’', text)]
    q = text.lower().replace("“", '"').replace("”", '"').replace("‘", "'").replace("’", "'")
    q = re.sub(r"\s*\([^)]*\)\s*$", "", q).strip().rstrip("?.!: ")
    chart = bool(re.search(r"\b(?:bar|bars|chart|graph|plot)\b", q))
    q = _LEADERS.sub("", q)
    if not q or _NON_TEXT.search(q):
        return Query("none")
    money = bool(_MONEY_WORDS.search(q))
    words = _content_words(q)
    bare = q.replace('"', "")
    for pattern in _CELL_PATTERNS:
        if m := pattern.search(bare):
            row, col = _trim(m.group("row")), _trim(m.group("col"))
            if row and col:
                return Query("cell", key=row, column=col, words=words, money=money)
    if chart:
        trimmed = _TRAILERS[0].sub("", bare)
        for pattern in _BAR_PATTERNS:
            if (m := pattern.search(trimmed)) and (key := _trim(m.group("key"))):
                return Query("bar", key=key, words=words)
    if re.search(r"\bsign\b", bare):
        if _SIGN_SAY.match(bare):
            return Query("sign")
        if quoted:
            return Query("field", key=quoted[0].lower(), words=words, on_sign=True)
        for pattern in _SIGN_PATTERNS:
            if (m := pattern.search(bare)) and (key := _trim(m.group("key"))):
                return Query("field", key=key, words=words, on_sign=True)
    elif _SIGN_SAY.match(bare):
        return Query("sign")
    if quoted:
        return Query("field", key=quoted[0].lower(), words=words, money=money)
    for pattern in _FIELD_PATTERNS:
        if (m := pattern.search(bare)) and (key := _trim(m.group("key"))):
            if pattern is _FIELD_PATTERNS[-1] and (cell := _OF_RE.match(key)):
                column, row = _trim(cell.group("column")), _trim(cell.group("row"))
                if column and row:
                    return Query("cell", key=row, column=column, words=words, money=money)
            return Query("field", key=key, words=words, money=money)
    if words:
        return Query("field", key=" ".join(words), words=words, money=money)
    return Query("none")
