"""An offline, training-free AwaRes policy for text-reading questions, as a chat backend.

:class:`ReaderBackend` answers questions whose answer is text written in the image ("What is the invoice
number?", "What is the price of Espresso?", "What is the Qty for Widget?", "What does the sign say?") by
reading the image with an OCR engine (``rapidocr-onnxruntime``, whose models ship inside its wheel, so it
runs with no network and no download). It is a real :class:`~awares_agent.backends.base.ChatBackend`: it
sees only the images and the text of the messages, and it goes through the same graph, tool-call protocols,
token accounting and trajectories as a VLM. It handles text-reading questions only; anything else (no key
it can find, questions about colours, counts, objects...) is answered ``"unknown"``.

The policy:

1. **Turn 1** (the view and the question): OCR the low-resolution view and parse the question into what it
   asks (a field's key, a table cell's column and row, a bar's label, or a sign's text). If the answer is
   found, its text is tall enough in the view (``min_text_px``) and read confidently (``min_confidence``),
   it fits what the question asks (:func:`plausible`: an ID or amount has digits, no value is a sentence or
   another field's label) and it lies near its key, answer at once. Otherwise request the cheapest crop that
   covers where the answer must be: the value's box, or next to the key when the value is missing or
   untrusted. When the key itself cannot be read, the view is read again enlarged, with the detector's
   thresholds lowered, and the key is looked for loosely; failing that, the crop covering the hard-to-read
   text likeliest to be the key or the value is requested (see ``ReaderBackend._likeliest``), with the
   runner-up's crop too when the two are about as likely. A bar whose label cannot be read is looked for by
   its chart instead: bars stay visible at any resolution (:func:`find_bar_charts`), charts whose labels can
   be read are not it, and of the rest the one whose labels read most like the key
   (:func:`key_likelihood`) is requested whole, with the runner-up when it is about as likely and one half
   of the image shows both. A table cell goes to the block of small text with cells (:func:`text_blocks`)
   whose rows and header read most like the row's label and the column's, and a sign's value to the short
   line whose blurred text reads most like the sign's label, when it clearly beats the others. Confidence
   alone is not enough: OCR reads 6 px text wrongly with high confidence, and only the text's height tells
   that it was too small.
2. **Turn 2** (the crops): OCR the crops at full resolution, pasted at their places on one canvas (so a line
   across two crops is read whole), map every text box back to original-image coordinates (together with
   the view's boxes no crop holds whole), and answer from all of it; a value in small text is read again
   from its patch enlarged.
3. When it may not crop (no tool offered and no ``GET_CROPS`` convention, or a final instruction), it
   answers with the best it has read.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Literal

from awares_agent.errors import ConfigError
from awares_agent.fuzzy import substring_distance
from awares_agent.messages import ChatMessage, ChatReply, ImagePart, ToolCall, ToolSpec, Usage
from awares_agent.tokens import PixelTokenRule
from awares_agent.tools.box_mapping import crops_covering
from awares_agent.tools.crop_sets import ALL, CropSet
from awares_agent.tools.crop_sets import crop_set as make_crop_set

if TYPE_CHECKING:
    from PIL import Image

    from awares_agent.image_store import ImageStore

__all__ = [
    "DEFAULT_MIN_CONFIDENCE",
    "DEFAULT_MIN_TEXT_PX",
    "UNKNOWN",
    "BarChart",
    "Query",
    "ReaderBackend",
    "TextBox",
    "find_bar_charts",
    "key_likelihood",
    "parse_question",
]

#: The answer given when the question is not about text the reader can find.
UNKNOWN = "unknown"

#: Smallest height, in view pixels, of a detected text box whose reading is trusted. RapidOCR's boxes are
#: about ``0.95 * em + 4`` px tall, so this is text of about 9 px em: below it, digits and punctuation are
#: misread with high confidence (a 6 px "1,284.50" comes out as "1.284.50" at 0.97).
DEFAULT_MIN_TEXT_PX = 12.5

#: Lowest recognition confidence for a reading of the view to be trusted.
DEFAULT_MIN_CONFIDENCE = 0.9

#: Values read from text shorter than this (px in the image read) are read again enlarged this many times.
_REREAD_BELOW_PX = 20.0
_REREAD = 2

#: Farthest a value read in the view may lie from its key (in the key's line heights) to be trusted.
_MAX_TRUSTED_GAP = 6.0

Box = tuple[float, float, float, float]


# --- OCR ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TextBox:
    """One line of text read by OCR.

    Attributes:
        text: the text as read.
        confidence: the recogniser's confidence, in [0, 1].
        box: ``(x0, y0, x1, y1)`` in original-image pixels.
        px: height of the text box in pixels of the image it was read in (the view, a crop...).
        source: ``"view"``, ``"crop"`` or ``"full"``: what it was read in.
    """

    text: str
    confidence: float
    box: Box
    px: float
    source: str = "view"

    @property
    def height(self) -> float:
        """Height of the box in original-image pixels."""
        return self.box[3] - self.box[1]

    @property
    def cx(self) -> float:
        return (self.box[0] + self.box[2]) / 2

    @property
    def cy(self) -> float:
        return (self.box[1] + self.box[3]) / 2


@dataclass(frozen=True)
class _RawBox:
    """An OCR line in the pixels of the image it was read in."""

    text: str
    confidence: float
    box: Box
    px: float


#: Ratio of a RapidOCR box's height to its text's mean character width, for ordinary text (2.0-2.4).
_CHAR_WIDTH_TO_PX = 2.5

_ENGINE: Any = None
_ENGINE_LOCK = threading.Lock()
_OCR_LOCK = threading.Lock()


def _engine() -> Any:
    """The shared RapidOCR engine, loaded on first use (importing it takes about a second)."""
    global _ENGINE
    with _ENGINE_LOCK:
        if _ENGINE is None:
            try:
                from rapidocr_onnxruntime import RapidOCR
            except ImportError as exc:  # pragma: no cover - a declared dependency
                raise ConfigError(
                    "the reader backend needs rapidocr-onnxruntime: "
                    "pip install 'rapidocr-onnxruntime>=1.4,<1.5'"
                ) from exc
            # Up to 4000 px on a side the engine reads the image as given instead of shrinking it. Lines are
            # recognised one at a time: batches pad every line to the widest one's width, which costs about
            # a third more time on these pages of mixed line lengths.
            _ENGINE = RapidOCR(max_side_len=4000, rec_batch_num=1)
        return _ENGINE


def _ocr(image: Image.Image) -> list[_RawBox]:
    """Read every text line of ``image``; boxes in its own pixels."""
    return _ocr_at(image, _BOX_THRESH, _TEXT_SCORE)


#: The detector's default box score threshold and recogniser's lowest kept score, and the lower ones used to
#: locate text too small to read.
_BOX_THRESH = 0.5
_TEXT_SCORE = 0.5
_LOCATE_BOX_THRESH = 0.3
_LOCATE_TEXT_SCORE = 0.2


def _ocr_at(image: Image.Image, box_thresh: float, text_score: float) -> list[_RawBox]:
    """:func:`_ocr` with the detector's box score threshold ``box_thresh`` (lower finds fainter text) and
    the recogniser's lowest kept score ``text_score`` (lower keeps garbled readings, enough to locate)."""
    engine = _engine()
    rgb = image.convert("RGB")
    # One call at a time: the engine's per-call options are instance state (a call without them keeps the
    # last ones, so every call sets them), and the cores are shared anyway.
    with _OCR_LOCK:
        result, _ = engine(rgb, use_cls=False, box_thresh=box_thresh, unclip_ratio=1.6, text_score=text_score)
    out = []
    for points, text, confidence in result or []:
        xs = [float(p[0]) for p in points]
        ys = [float(p[1]) for p in points]
        (x0, y0), (x1, y1), (x2, y2), (x3, y3) = ((float(p[0]), float(p[1])) for p in points)
        px = (((x3 - x0) ** 2 + (y3 - y0) ** 2) ** 0.5 + ((x2 - x1) ** 2 + (y2 - y1) ** 2) ** 0.5) / 2
        text = str(text).strip()
        if not text:
            continue
        chars = len(text.replace(" ", ""))
        if chars >= 4:
            # A box can be taller than its text (two lines caught in one); narrow characters still tell.
            px = min(px, _CHAR_WIDTH_TO_PX * (max(xs) - min(xs)) / chars)
        out.append(_RawBox(text, float(confidence), (min(xs), min(ys), max(xs), max(ys)), px))
    return out


# --- questions ---------------------------------------------------------------------------------------------


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


# --- fuzzy matching ----------------------------------------------------------------------------------------

_SYNONYMS: list[tuple[str, ...]] = [
    ("number", "no", "#", "num", "nr"),
    ("telephone", "phone", "tel"),
    ("quantity", "qty"),
    ("amount", "amt"),
    ("reference", "ref"),
    ("identifier", "id"),
    ("address", "addr"),
    ("account", "acct"),
]
# Words a label often leaves out: "reference code" is printed "Reference", "total amount" "TOTAL".
_GENERIC_TAIL = frozenset({"number", "code", "amount", "value", "id", "no", "name", "text", "entry"})


def _norm(text: str) -> tuple[str, list[int]]:
    """Lower-case alphanumerics (and ``#``) of ``text``, with each kept character's index in ``text``."""
    chars, index = [], []
    for i, c in enumerate(text):
        if c.isalnum() or c == "#":
            chars.append(c.lower())
            index.append(i)
    return "".join(chars), index


@lru_cache(maxsize=4096)
def _variants(key: str) -> tuple[tuple[str, float], ...]:
    """Normalised spellings of a key with a weight: the key, its synonyms, and without a generic last word."""
    words = [w for w in re.split(r"[\s_\-/]+", key.lower()) if w and w not in ("the", "a", "an")]
    if not words:
        return ()
    out: dict[str, float] = {}

    def expand(options: list[list[str]], weight: float) -> None:
        spellings = [""]
        for group in options:
            spellings = [s + _norm(w)[0] for s in spellings for w in group][:32]
        for s in spellings:
            if s and out.get(s, -1.0) < weight:
                out[s] = weight

    groups = [list(next((g for g in _SYNONYMS if w.strip(".") in g), (w,))) for w in words]
    expand(groups, 1.0)
    if len(words) > 1 and words[-1].strip(".") in _GENERIC_TAIL and len("".join(words[:-1])) >= 4:
        expand(groups[:-1], 0.95)
    return tuple(out.items())


@dataclass(frozen=True)
class _Match:
    """Where a key was found in a text box: ``box.text[start:end]``."""

    box: TextBox
    score: float
    end: int
    start: int = 0

    @property
    def span(self) -> TextBox:
        """The part of the box that holds the key."""
        return _sub_box(self.box, self.start, self.end)


def _sub_box(box: TextBox, start: int, end: int) -> TextBox:
    """The part of ``box`` holding ``box.text[start:end]``, its x-range in proportion to the characters."""
    n = max(1, len(box.text))
    x0, y0, x1, y1 = box.box
    w = x1 - x0
    return TextBox(
        box.text[start:end],
        box.confidence,
        (x0 + w * start / n, y0, x0 + w * end / n, y1),
        box.px,
        box.source,
    )


def _word_start(text: str, i: int) -> bool:
    """Whether a word starts at ``text[i]`` (spaces are lost when OCR glues words, but case often tells)."""
    return i <= 0 or not text[i - 1].isalpha() or (text[i - 1].islower() and text[i].isupper())


def _word_end(text: str, i: int) -> bool:
    """Whether a word ends just before ``text[i]``."""
    return i >= len(text) or not text[i].isalpha() or (text[i - 1].islower() and text[i].isupper())


def _match(key: str, box: TextBox, *, loose: bool = False) -> _Match | None:
    """How well ``key`` occurs in ``box`` as a label (``None`` if it does not).

    ``loose`` allows the many errors of text read far below its legible size (localisation only).
    """
    text, index = _norm(box.text)
    if not text:
        return None
    label_len = len(_norm(box.text.split(":")[0])[0]) or len(text)
    best: _Match | None = None
    variants = _variants(key)
    if loose and any(w < 1 for _, w in variants):
        # Garbled text matches "invoice number" within its many allowed errors in "PO Number": only the
        # key's distinctive part ("invoice") locates it.
        variants = tuple((v, w) for v, w in variants if w < 1)
    for variant, weight in variants:
        m = len(variant)
        if m <= 3:
            # A short key must be a word of its own: "no" is not the start of "north".
            pos = text.find(variant)
            while pos >= 0 and not (
                _word_start(box.text, index[pos]) and _word_end(box.text, index[pos + m - 1] + 1)
            ):
                pos = text.find(variant, pos + 1)
            if pos < 0:
                continue
            dist, start, end = 0, pos, pos + m
        else:
            dist, start, end = substring_distance(variant, text, last=True)
            # Loose: up to 45% of a long key's characters wrong, one of a short one's ("riga" is not "lima").
            allowed = (
                (max(1, round(0.45 * m)) if m >= 6 else 1) if loose else (1 if m <= 6 else max(2, m // 5))
            )
            if dist > allowed or end <= start:
                continue
            if loose and start > 2:
                continue  # garbled text matches anywhere inside a long line: only a line's start counts
            if dist and start > 0 and len(text) > 2 * m:
                continue  # a label starts its line: a near-miss inside a sentence is another word
            if dist and start > 0 and box.px >= DEFAULT_MIN_TEXT_PX and box.confidence >= 0.95:
                continue  # legible text is read right: "contact" inside a sentence is not "contract"
        sim = 1 - dist / m
        coverage = min(1.0, m / max(label_len, 1))
        score = weight * sim + 0.15 * coverage
        if not _word_start(box.text, index[start]):
            score -= 0.35  # inside a longer word: "total" in "subtotal"
        elif not dist and not _word_end(box.text, index[end - 1] + 1):
            score -= 0.35  # the start of a longer word: "stand" in "standard"
        score -= 0.05 * (start > 0)
        if best is None or score > best.score:
            best = _Match(box, score, index[end - 1] + 1, index[start])
    return best


def _similarity(key: str, text: str) -> float:
    """A loose similarity in [0, 1] between a key and any part of a (possibly garbled) text."""
    target, _ = _norm(text)
    if not target:
        return 0.0
    scores = [1 - substring_distance(v, target, last=True)[0] / len(v) for v, _ in _variants(key) if v]
    return max(scores, default=0.0)


def _stem(word: str) -> str:
    for suffix in ("ing", "ed", "es", "s"):
        if len(word) - len(suffix) >= 4 and word.endswith(suffix):
            return word[: -len(suffix)]
    return word


# --- geometry ----------------------------------------------------------------------------------------------


def _v_overlap(a: Box, b: Box) -> float:
    """Vertical overlap of two boxes as a fraction of the shorter one's height."""
    inter = min(a[3], b[3]) - max(a[1], b[1])
    return max(0.0, inter) / max(1e-6, min(a[3] - a[1], b[3] - b[1]))


def _h_overlap(a: Box, b: Box) -> float:
    """Horizontal overlap of two boxes as a fraction of the narrower one's width."""
    inter = min(a[2], b[2]) - max(a[0], b[0])
    return max(0.0, inter) / max(1e-6, min(a[2] - a[0], b[2] - b[0]))


def _union(boxes: Sequence[Box]) -> Box:
    return (
        min(b[0] for b in boxes),
        min(b[1] for b in boxes),
        max(b[2] for b in boxes),
        max(b[3] for b in boxes),
    )


def _clean_value(text: str) -> str:
    return text.strip().lstrip(" \t:;=|>-–—·.,").rstrip(" \t:;|,").strip()


_DIGIT_RE = re.compile(r"\d")
_MONEY_RE = re.compile(r"\d\s?[.,]\s?\d\d(?!\d)")


# --- reading -----------------------------------------------------------------------------------------------


@dataclass
class Reading:
    """What the reader found for a query in a set of text boxes.

    Attributes:
        answer: the answer text, or ``None`` if no value was found.
        value_boxes: the boxes the answer was read from.
        anchors: the boxes that located it (the key, the row label, the column header).
        score: how well the key matched (higher is better).
        where: a box (original pixels) where the value should be, when it was not found.
        gap: how far the value lies from its key, in the key's line heights.
    """

    answer: str | None
    value_boxes: list[TextBox] = field(default_factory=list)
    anchors: list[TextBox] = field(default_factory=list)
    score: float = 0.0
    where: Box | None = None
    gap: float = 0.0

    @property
    def evidence(self) -> Box | None:
        """The box (original pixels) holding the key and the value, or where the value should be."""
        boxes = [b.box for b in (*self.anchors, *self.value_boxes)]
        if self.where is not None and not self.value_boxes:
            boxes.append(self.where)
        return _union(boxes) if boxes else None


def _find_key(key: str, boxes: Sequence[TextBox], *, loose: bool = False) -> list[_Match]:
    if not key:
        return []
    floor = 0.55 if loose else 0.75
    matches = [m for b in boxes if (m := _match(key, b, loose=loose)) is not None and m.score >= floor]
    return sorted(matches, key=lambda m: -m.score)


def _right_of(
    anchor: TextBox, boxes: Sequence[TextBox], exclude: Sequence[TextBox], *, max_gap: float | None
) -> list[TextBox]:
    """Boxes on the anchor's line to its right, nearest first (within ``max_gap`` original pixels)."""
    a = anchor.box
    row = [
        b
        for b in boxes
        if b is not anchor
        and all(b is not e for e in exclude)
        and _v_overlap(a, b.box) >= 0.5
        and b.box[0] >= a[2] - 0.5 * anchor.height
        and (max_gap is None or b.box[0] - a[2] <= max_gap)
        and b.height <= 2.5 * anchor.height
        and anchor.height <= 2.5 * b.height
    ]
    return sorted(row, key=lambda b: b.box[0])


def _below(anchor: TextBox, boxes: Sequence[TextBox], exclude: Sequence[TextBox]) -> list[TextBox]:
    """Boxes right under the anchor (within about a line), nearest first."""
    a, h = anchor.box, anchor.height
    col = [
        b
        for b in boxes
        if b is not anchor
        and all(b is not e for e in exclude)
        and b.box[1] >= a[1] + 0.5 * h
        and b.cy > anchor.cy + 0.4 * h
        and b.box[1] <= a[3] + 1.5 * h
        and (_h_overlap(a, b.box) >= 0.3 or abs(b.box[0] - a[0]) <= h)
    ]
    return sorted(col, key=lambda b: b.box[1])


def _above(anchor: TextBox, boxes: Sequence[TextBox], exclude: Sequence[TextBox]) -> list[TextBox]:
    """Words with digits above the anchor in its column (a bar's value over its label), nearest first."""
    a, h = anchor.box, anchor.height
    col = [
        t
        for b in boxes
        if b is not anchor and all(b is not e for e in exclude) and b.box[3] <= a[1] + 0.3 * h
        for t in _tokens(b)
        if _h_overlap(a, t.box) >= 0.3 and _DIGIT_RE.search(t.text)
    ]
    return sorted(col, key=lambda b: -b.box[3])


def _is_label(b: TextBox, like: TextBox) -> bool:
    """Whether ``b`` looks like another label of the same kind as ``like``: no digits, about its height."""
    return not _DIGIT_RE.search(b.text) and 0.6 * like.height <= b.height <= 1.6 * like.height


def _side_by_side(label: TextBox, boxes: Sequence[TextBox]) -> int:
    """How many label-like boxes share ``label``'s line."""
    return sum(
        1
        for b in boxes
        if b is not label
        and _v_overlap(label.box, b.box) >= 0.6
        and _is_label(b, label)
        and abs(b.cx - label.cx) < 15 * label.height
    )


def _stacked(label: TextBox, boxes: Sequence[TextBox]) -> int:
    """How many label-like boxes share ``label``'s column, within a few lines."""
    return sum(
        1
        for b in boxes
        if b is not label
        and _h_overlap(label.box, b.box) >= 0.3
        and _is_label(b, label)
        and abs(b.cy - label.cy) < 6 * label.height
    )


def _typed(value: str, money: bool) -> int:
    """How well a value fits what the question asks: 2 an amount when one is asked, 1 has digits, 0 none."""
    if money and _MONEY_RE.search(value):
        return 2
    return 1 if _DIGIT_RE.search(value) else 0


_NUMBER_WORDS = frozenset(
    [
        "number",
        "no",
        "num",
        "nr",
        "#",
        "date",
        "amount",
        "amt",
        "total",
        "price",
        "cost",
        "costs",
        "fee",
        "phone",
        "tel",
        "telephone",
        "qty",
        "quantity",
    ]
)
#: The end of a field's label: "Account No", "AccountNo" (OCR glues words), "Customer ID", "Due Date".
_LABEL_END_RE = re.compile(r"(?:^|\s|(?<=[a-z]))(?:No|NO|ID|Id|Number|Date|Code|Name|Ref|#)$")
_CODE_WORDS = frozenset(
    [
        "id",
        "identifier",
        "code",
        "ref",
        "reference",
        "serial",
        "account",
        "acct",
        "tracking",
        "batch",
        "plate",
    ]
)


def plausible(query: Query, value: str) -> bool:
    """Whether ``value`` can be what ``query`` asks for: a number, date or amount has digits; an ID or code
    has digits or is one upper-case word; no value of a field, cell or bar is a sentence of lower-case words.

    Args:
        query: the parsed question.
        value: a candidate answer.
    """
    words = set(re.findall(r"[a-z0-9#]+", f"{query.key} {query.column}")) | set(query.words)
    digits = bool(_DIGIT_RE.search(value))
    if not digits and (value.rstrip().endswith(":") or _LABEL_END_RE.search(value.rstrip(" ."))):
        return False  # another field's label ("Account No"), not a value
    if query.money or query.kind == "bar" or words & _NUMBER_WORDS:
        return digits
    if words & _CODE_WORDS and not digits and (len(value.split()) > 1 or any(c.islower() for c in value)):
        return False
    return len(re.findall(r"\b[a-z]{2,}\b", value)) < 3


_MONTH = r"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sept?|Oct|Nov|Dec)[a-z]*\.?"
#: Where a value ends and a label OCR glued to it begins: a capitalised word right after a digit, unless
#: it is a month followed by a year or day ("26Jul2024", "3 March 2025").
_GLUED_LABEL_RE = re.compile(rf"(?<=\d)(?=[A-Z][a-z])(?!{_MONTH}\s*\d)")
_GLUED_DATE_RE = re.compile(rf"(\d{{1,2}})\s*({_MONTH})\s*(\d{{2,4}})")


def _date_spaced(value: str) -> str:
    """A date whose words OCR glued, spaced again: "26Jul2024" -> "26 Jul 2024"; anything else unchanged."""
    m = _GLUED_DATE_RE.fullmatch(value)
    return " ".join(m.groups()) if m else value


def _fix_prefix(value: str, key: str) -> str:
    """Undo OCR's ``0``-for-``O`` in a value that starts with a word of its key ("PO Number": "P0381030")."""
    for word in re.findall(r"[a-z]{2,4}", key.lower()):
        if "o" not in word:
            continue
        misread = word.upper().replace("O", "0")
        if value.upper().startswith(misread) and value[: len(word)].upper() != word.upper():
            return word.upper() + value[len(word) :]
    return value


_COLON_MISREADS = frozenset("1lI|i!")


def _value_for(m: _Match, boxes: Sequence[TextBox], keys: Sequence[TextBox], query: Query) -> Reading | None:
    """The value labelled by the key match ``m``: after it in its box, to its right, under it (or over it).

    Candidates are ranked by how well they fit the question (digits; an amount for "how much"), then by
    distance in line heights, so a stacked field's value beats a far-away neighbour, and a receipt's price
    at the end of its line beats the next item under it.
    """
    anchor = m.box
    h = max(1e-6, anchor.height)
    options: list[tuple[int, float, str, TextBox]] = []  # (type fit, -distance, value, box)
    rest = _clean_value(anchor.text[m.end :])
    # OCR reads a small colon glued to its key as "1" or "l" ("Due Date1"): not a value when one follows.
    colon = rest in _COLON_MISREADS and anchor.text[m.end : m.end + 1] == rest
    if colon and _right_of(anchor, boxes, keys, max_gap=6 * h):
        rest = ""
    if _norm(rest)[0]:
        options.append((_typed(rest, query.money), 0.0, rest, anchor))
    if query.kind == "bar":
        label = m.span
        # Vertical bars put their labels side by side on one line (the value over the bar, above its label);
        # horizontal bars stack them in a column (the value at the bar's end, right of its label).
        vertical = _side_by_side(label, boxes) >= _stacked(label, boxes)
        for b in _above(label, boxes, keys)[:1]:
            options.append(
                (
                    _typed(b.text, query.money) + 1 + vertical,
                    -(label.box[1] - b.box[3]) / h,
                    _clean_value(b.text),
                    b,
                )
            )
        for b in _right_of(anchor, boxes, keys, max_gap=None)[:1]:
            if _DIGIT_RE.search(b.text):
                options.append(
                    (
                        _typed(b.text, query.money) + 1 + (not vertical),
                        -(b.box[0] - anchor.box[2]) / h,
                        b.text,
                        b,
                    )
                )
    for b in _right_of(anchor, boxes, keys, max_gap=80 * h)[:2]:
        options.append(
            (_typed(b.text, query.money), -(b.box[0] - anchor.box[2]) / h, _clean_value(b.text), b)
        )
    for b in _below(anchor, boxes, keys)[:1]:
        gap = (b.box[1] - anchor.box[3]) / h
        options.append((_typed(b.text, query.money), -max(0.0, gap) - 0.5, _clean_value(b.text), b))
    options = [o for o in options if _norm(o[2])[0]]
    if not options:
        return None

    def rank(o: tuple[int, float, str, TextBox]) -> tuple[bool, int, float]:
        fit = o[0] if query.kind == "bar" or query.money else 0
        return (plausible(query, o[2]), fit, o[1])

    _, distance, value, box = max(options, key=rank)
    if query.kind == "bar":
        distance = 0.0  # a bar's value lies a bar's length from its label
    # OCR glues a value to the next label on its line ("25134Tax ID"): the label is not part of it. A month
    # after a day is not a label: OCR glues a date's words too ("26Jul2024").
    value = _date_spaced(_GLUED_LABEL_RE.split(_clean_value(value))[0])
    value = _fix_prefix(_clean_value(value), query.key)
    return Reading(value, [box], [anchor], m.score, gap=-distance)


def _read_field(query: Query, boxes: Sequence[TextBox], *, loose: bool = False) -> Reading | None:
    matches = _find_key(query.key, boxes, loose=loose)
    if not matches:
        # Content words are too weak a clue in text read far below its legible size.
        return _read_words(query, boxes) if query.words and not loose else None
    # Boxes that hold nothing but a label are not values; "REF-8S58G" matches "reference" but is one.
    keys = [m.box for m in matches if not _norm(_clean_value(m.box.text[m.end :]))[0]]
    found: list[Reading] = []
    for m in matches[:4]:
        reading = _value_for(m, boxes, keys, query)
        if reading is not None:
            found.append(reading)
    if found:
        # Among the keys that match about as well as the best, an amount when one is asked for ("How much
        # is due?": "Amount Due", not "Due Date").
        top = max(r.score for r in found)
        close = [r for r in found if r.score >= top - 0.1]
        return max(
            close,
            key=lambda r: (
                plausible(query, r.answer or ""),
                query.money and _typed(r.answer or "", True) == 2,
                r.score,
            ),
        )
    anchor = matches[0].box
    return Reading(None, [], [anchor], matches[0].score, where=_next_to([anchor]))


def _next_to(anchors: Sequence[TextBox]) -> Box | None:
    """Where a key's value should be when it was not read: to its right on its line, or under it."""
    if not anchors:
        return None
    a = _union([b.box for b in anchors])
    h = min(b.height for b in anchors)
    return (a[0], a[1], a[2] + max(a[2] - a[0], 6 * h), a[3] + 1.2 * h)


def _read_words(query: Query, boxes: Sequence[TextBox], *, loose: bool = False) -> Reading | None:
    """The value next to the box that holds most of the question's content words (``"issued"`` finds
    ``"Issue Date"``)."""
    stems = [s for s in dict.fromkeys(_stem(w) for w in query.words if w not in _GENERIC_TAIL) if len(s) >= 3]
    best: tuple[tuple[int, float], TextBox, int] | None = None
    for box in boxes:
        hits = [
            (len(s), m) for s in stems if (m := _match(s, box, loose=loose)) is not None and m.score >= 0.8
        ]
        total = sum(n for n, _ in hits)
        if total < 4:
            continue
        rank = (total, total / max(1, len(_norm(box.text.split(":")[0])[0])))
        if best is None or rank > best[0]:
            best = (rank, box, max(m.end for _, m in hits))
    if best is None:
        return None
    _, box, end = best
    return _value_for(_Match(box, 0.75, end), boxes, [box], query) or Reading(None, [], [box], 0.75)


_SPLIT_RE = re.compile(r"\s+|(?<=\d)(?=[A-Z])|(?<=\.\d\d)(?=\d)|(?<=,\d\d\d)(?=\d)|(?<=[a-z])(?=[A-Z])")


def _tokens(box: TextBox, start: int = 0) -> list[TextBox]:
    """``box.text[start:]`` cut at spaces and where OCR glued values ("617.03 97.97", "G-1951N-8309")."""
    out, pos = [], start
    for m in [*_SPLIT_RE.finditer(box.text, start), None]:
        end = m.start() if m is not None else len(box.text)
        if end > pos and box.text[pos:end].strip():
            out.append(_sub_box(box, pos, end))
        if m is not None:
            pos = m.end()
    return out


_WHOLE_VALUE_RE = re.compile(r"\d[\d,]*[.,]\d\d|\d{1,3}(?:,\d{3})+")


def _joins(a: TextBox, b: TextBox) -> str | None:
    """The separator if ``a`` and ``b`` (neighbouring tokens, ``a`` first) are one cell's text, else ``None``.

    Tokens cut out of one word (``_tokens`` splits "BQF9T" at the digit) join with nothing, unless both are
    whole values OCR glued ("82,33136,624"); words of one cell, or a number OCR split ("1, 941"), join with a
    space; never two values side by side, which OCR reads as one line when columns are narrow ("D-9718
    W-7829").
    """
    gap = b.box[0] - a.box[2]
    if abs(gap) < 1e-6:
        return None if _WHOLE_VALUE_RE.fullmatch(a.text) and _WHOLE_VALUE_RE.fullmatch(b.text) else ""
    if gap > 0.6 * max(a.height, b.height):
        return None
    if not _DIGIT_RE.search(a.text) and not _DIGIT_RE.search(b.text):
        return " "
    if re.fullmatch(r"\d{1,3}[,.]", a.text) and re.fullmatch(r"\d{3}\S*", b.text):
        return ""
    return None


def _in_span(tokens: Sequence[TextBox], span: tuple[float, float], centre: float) -> str:
    """The text of the tokens centred in the column ``span``; a token wider than the span is cut to it.

    Only the run of tokens around the one nearest the header's ``centre``, with word gaps between them, is
    kept: text beside the table on the same line (a paragraph, another table) is not part of the cell.
    """
    inside = sorted((t for t in tokens if span[0] <= t.cx < span[1]), key=lambda t: t.box[0])
    if inside:
        k = min(range(len(inside)), key=lambda i: abs(inside[i].cx - centre))
        lo = hi = k
        while lo > 0 and _joins(inside[lo - 1], inside[lo]) is not None:
            lo -= 1
        while hi + 1 < len(inside) and _joins(inside[hi], inside[hi + 1]) is not None:
            hi += 1
        text = inside[lo].text
        for a, b in zip(inside[lo:hi], inside[lo + 1 : hi + 1], strict=True):
            text += (_joins(a, b) or "") + b.text
        return text
    for t in tokens:  # one glued token over several columns: keep the characters in this one
        x0, x1 = t.box[0], t.box[2]
        if x0 < span[0] < span[1] < x1 or x0 < (span[0] + span[1]) / 2 < x1:
            n = len(t.text)
            step = (x1 - x0) / max(1, n)
            chars = [c for i, c in enumerate(t.text) if span[0] <= x0 + (i + 0.5) * step < span[1]]
            return "".join(chars)
    return ""


def _read_cell(query: Query, boxes: Sequence[TextBox], *, loose: bool = False) -> Reading | None:
    rows = _find_key(query.key, boxes, loose=loose)
    columns = _find_key(query.column, boxes, loose=loose)
    if not rows:
        return None
    best: Reading | None = None
    for r in rows[:4]:
        row, label = r.box, r.span
        h = row.height
        heads = [
            c
            for c in columns
            if c.box is not row
            and 0.5 * h < row.cy - c.box.cy < 30 * h
            and c.span.box[0] > label.box[2] - 0.5 * h
            and c.span.box[0] - label.box[2] < 60 * h
        ]
        if not heads:
            continue
        # The best-matching header, then the nearest: a cell that looks like a header ("202.81" for
        # "2022") matches less well.
        c = max(heads, key=lambda c: (round(c.score, 2), -(row.cy - c.box.cy)))
        head = c.span
        # The column runs from its header to the next header on the header line.
        header_line = [t for b in boxes if _v_overlap(c.box.box, b.box) >= 0.5 for t in _tokens(b)]
        starts = [t.box[0] for t in header_line if t.box[0] > head.box[0] + 0.5 * (head.box[2] - head.box[0])]
        span_end = min(starts, default=head.box[2] + 6 * h) - 0.2 * h
        span = (head.box[0] - 0.5 * h, span_end)
        line = [
            t
            for b in boxes
            if _v_overlap(row.box, b.box) >= 0.5 and b is not c.box
            for t in (_tokens(b, r.end) if b is row else _tokens(b))
        ]
        value = _clean_value(_in_span(line, span, head.cx))
        score = r.score + c.score
        if _norm(value)[0]:
            used = set(value.split())
            cells = [t for t in line if t.box[2] > span[0] and t.box[0] < span[1] and t.text in used]
            cells = cells or [t for t in line if t.box[2] > span[0] and t.box[0] < span[1]][:1]
            reading = Reading(value, cells, [label, head], score)
        else:
            where = (span[0], row.box[1], span_end, row.box[3])
            reading = Reading(None, [], [label, head], score, where=where)
        if best is None or (reading.answer is not None, reading.score) > (
            best.answer is not None,
            best.score,
        ):
            best = reading
    if best is not None:
        return best
    # No header found: the row's first value, but the cell lies anywhere along the row: where the row's
    # line runs to the right of its label.
    reading = _read_field(replace(query, kind="field"), boxes, loose=loose)
    if reading is None or not reading.anchors:
        return reading
    label = reading.anchors[0]
    line = sorted((b for b in boxes if _v_overlap(label.box, b.box) >= 0.5), key=lambda b: b.box[0])
    right = label.box[2]
    for b in line:
        if b.box[0] >= label.box[0] and b.box[0] - right <= 4 * label.height:
            right = max(right, b.box[2])
    where = (label.box[0], label.box[1], right, label.box[3])
    amounts = [b for b in line if b.box[0] >= label.box[0] and _MONEY_RE.search(b.text)]
    if query.money and reading.answer and _MONEY_RE.search(reading.answer) and len(amounts) == 1:
        # The only amount on its line ("Sourdough ..... 90.52" on a receipt): the cell, whatever its column,
        # however far along the line.
        return replace(reading, gap=0.0)
    return Reading(reading.answer, [], reading.anchors, reading.score, where=where)


def _read_sign(boxes: Sequence[TextBox]) -> Reading | None:
    """The main text: the tallest line, with lines of about its height right below it (a multi-line sign)."""
    if not boxes:
        return None
    top = max(boxes, key=lambda b: (b.height, len(b.text)))
    lines = [top]
    for b in sorted(boxes, key=lambda b: b.box[1]):
        last = lines[-1]
        if (
            b is not top
            and b.box[1] >= last.box[3] - 0.3 * last.height
            and b.box[1] - last.box[3] <= last.height
            and abs(b.height - top.height) <= 0.25 * top.height
            and _h_overlap(b.box, top.box) > 0.3
        ):
            lines.append(b)
    return Reading(" ".join(b.text for b in lines), lines, [], 1.0)


def read(query: Query, boxes: Sequence[TextBox], *, loose: bool = False) -> Reading | None:
    """Find the answer to ``query`` among OCR'd text boxes (all in the same, original-pixel coordinates).

    Args:
        query: the parsed question.
        boxes: the text boxes read so far.
        loose: accept keys read with many errors (to locate text too small to read, not to answer).

    Returns:
        The reading, possibly without an answer but with the key's location; ``None`` if not even the key
        was found.
    """
    if query.kind == "sign":
        return _read_sign(boxes)
    if query.kind == "cell":
        reading = _read_cell(query, boxes, loose=loose)
    elif query.kind in ("field", "bar"):
        reading = _read_field(query, boxes, loose=loose)
    else:
        return None
    if reading is not None and reading.answer:
        reading.answer = _fix_digits(reading.answer)
    return reading


def _fix_digits(value: str) -> str:
    """Undo OCR's letters for digits inside numbers: "2024-0l-13" is "2024-01-13", "1O5" is "105"."""
    return re.sub(r"(?<=\d)[lI|](?=\d|\W|$)|(?<=\d[-/.,])[lI](?=\d)|(?<=\d)O(?=\d)", _digit_for, value)


def _digit_for(m: re.Match[str]) -> str:
    return "0" if m.group() == "O" else "1"


def _best_guess(query: Query, boxes: Sequence[TextBox]) -> str:
    """A last-resort answer: the value next to the text most similar to the key, if any is similar enough."""
    if query.kind == "none" or not boxes:
        return UNKNOWN
    reading = read(query, boxes, loose=True)
    if reading is not None and reading.answer:
        return reading.answer
    return UNKNOWN


# --- bar charts in the view -------------------------------------------------------------------------------


@dataclass(frozen=True)
class BarChart:
    """A bar chart found by its bars, in the pixels of the image searched.

    Attributes:
        vertical: bars stand on one baseline (labels under it, values over the bars); else they start at one
            axis (labels left of it, values right of the bars).
        boxes: the bars, in order (left to right, or top to bottom).
        pitch: the distance from one bar to the next.
    """

    vertical: bool
    boxes: tuple[Box, ...]
    pitch: float

    @property
    def bars(self) -> Box:
        """The union of the bars."""
        return _union(self.boxes)

    @property
    def count(self) -> int:
        """How many bars."""
        return len(self.boxes)


#: In original pixels: how far under a vertical chart's baseline its labels are looked for (to tell whether
#: they can be read), and how far past the bars a chart in small text reaches (labels under the baseline,
#: values over the bars; labels left of a horizontal chart's axis, values right of its bars).
_CHART_LABEL_ZONE = 60.0
_CHART_LABEL_MARGIN = 30.0
_CHART_VALUE_MARGIN = 40.0
_CHART_SIDE_LABELS = 110.0
_CHART_SIDE_VALUES = 80.0
#: Charts whose labels are within this of the likeliest's (in :func:`key_likelihood`) are about as likely.
_CHART_TIE = 0.75
#: A sign's label found by :func:`key_likelihood` must score at least this, and beat the next likeliest
#: short text by ``_SIGN_MARGIN``; short text is at most ``_SIGN_CHARS`` characters read.
_SIGN_FLOOR = -2.5
_SIGN_MARGIN = 0.5
_SIGN_CHARS = 14
#: A sign's line is at most this many times as wide as it is tall (a longer line is a sentence's).
_SIGN_ASPECT = 10.0
#: In original pixels: how far from the axis a small label starts (past the axis line), and how far under
#: the baseline it reaches (8-10 px text set 6 px under it).
_SMALL_LABEL_GAP = 4.0
_SMALL_LABEL_DEPTH = 20.0

#: Darkest grey a page or panel has (bars are darker), the smallest bar side, and the slack in pixels that
#: bars of one chart may have on their baseline, thickness and pitch, all in the pixels of the image searched.
_BAR_GREY = 215
_BAR_MIN_SIDE = 5
_BAR_SLACK = 1.5


def _label_slots(chart: BarChart, scale: float) -> list[tuple[int, int, int, int]]:
    """Where each bar's label lies in the image searched, if its text is small: under a vertical bar (the
    bar's share of the baseline), or left of a horizontal one. ``scale``: the image's size relative to the
    original (the slots are as deep as small text in the original)."""
    depth = _SMALL_LABEL_DEPTH * scale
    slots = []
    for x0, y0, x1, y1 in chart.boxes:
        if chart.vertical:
            side = (chart.pitch - (x1 - x0)) / 2 + 2
            slot = (x0 - side, y1 + _SMALL_LABEL_GAP * scale, x1 + side, y1 + depth)
        else:
            slot = (x0 - 8 * depth, y0 - 3, x0 - _SMALL_LABEL_GAP * scale, y1 + 3)
        slots.append(tuple(round(v) for v in slot))
    return slots  # type: ignore[return-value]


#: The score :func:`key_likelihood` gives nothing (a patch without ink): a clear miss.
_KWS_NONE = -9.0


def text_blocks(boxes: Sequence[TextBox]) -> list[list[list[TextBox]]]:
    """Group text boxes into blocks of lines, each line's boxes left to right, the lines top to bottom.

    Boxes on one line (half their height shared, at most four line heights apart) make a line; lines that
    overlap across at least half the narrower one's width, at most a line height apart, make a block: a
    table's rows, a receipt's items, a form's stacked fields. Sentences (:func:`_is_sentence`) are left
    out: a block of them is a paragraph.
    """
    lines: list[list[TextBox]] = []
    for b in sorted((b for b in boxes if not _is_sentence(b.text)), key=lambda b: (b.cy, b.box[0])):
        for line in lines:
            u = _union([x.box for x in line])
            near = b.box[0] - u[2] <= 4 * b.height and u[0] - b.box[2] <= 4 * b.height
            if near and _v_overlap(b.box, u) >= 0.5:
                line.append(b)
                break
        else:
            lines.append([b])
    spans = [_union([x.box for x in line]) for line in lines]
    parent = list(range(len(lines)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, a in enumerate(spans):
        for j in range(i + 1, len(spans)):
            b = spans[j]
            shared = min(a[2], b[2]) - max(a[0], b[0])
            gap = max(b[1] - a[3], a[1] - b[3])
            if shared >= 0.5 * min(a[2] - a[0], b[2] - b[0]) and gap <= max(a[3] - a[1], b[3] - b[1]):
                parent[root(i)] = root(j)
    groups: dict[int, list[int]] = {}
    for i in range(len(lines)):
        groups.setdefault(root(i), []).append(i)
    blocks = [[lines[i] for i in g] for g in groups.values()]
    # A column of amounts far from its labels (a receipt's prices) joins them when their lines pair up.
    merged = True
    while merged:
        merged = False
        for i, a in enumerate(blocks):
            for j in range(i + 1, len(blocks)):
                b = blocks[j]
                small, large = (a, b) if len(a) <= len(b) else (b, a)
                paired = sum(
                    any(
                        _v_overlap(_union([x.box for x in s]), _union([x.box for x in t])) >= 0.5
                        for t in large
                    )
                    for s in small
                )
                amounts = [all(_MONEY_RE.search(x.text) for line in block for x in line) for block in (a, b)]
                if any(amounts) and not all(amounts) and len(small) >= 2 and paired >= 2 / 3 * len(small):
                    blocks[i] = _rows(a + b)
                    del blocks[j]
                    merged = True
                    break
            if merged:
                break
    return [
        sorted(
            (sorted(line, key=lambda b: b.box[0]) for line in block),
            key=lambda line: _union([b.box for b in line])[1],
        )
        for block in blocks
    ]


def _tabular(lines: Sequence[Sequence[TextBox]]) -> bool:
    """Whether a block of lines can be a table: at least half its lines have two cells or more, or a
    number; a paragraph OCR garbled too much to be told a sentence has neither."""
    cells = sum(len(line) >= 2 or any(_DIGIT_RE.search(b.text) for b in line) for line in lines)
    return 2 * cells >= len(lines)


def _rows(lines: list[list[TextBox]]) -> list[list[TextBox]]:
    """Lines of two columns joined where they share a line (half their height)."""
    out: list[list[TextBox]] = []
    for line in sorted(lines, key=lambda ln: _union([b.box for b in ln])[1]):
        u = _union([b.box for b in line])
        for o in out:
            if _v_overlap(u, _union([b.box for b in o])) >= 0.5:
                o.extend(line)
                break
        else:
            out.append(list(line))
    return out


def _patch(image: Image.Image, box: TextBox, scale: float) -> Image.Image:
    """A text box's patch of the view (``scale`` view pixels per original pixel), with a little margin."""
    x0, y0, x1, y1 = (v * scale for v in box.box)
    h = y1 - y0
    return image.crop((round(x0 - 0.3 * h), round(y0 - 0.2 * h), round(x1 + 0.3 * h), round(y1 + 0.2 * h)))


def _word_count(text: str) -> int:
    """How many words (two letters or more) a line of text holds."""
    return len(re.findall(r"[A-Za-z]{2,}", text))


def _is_sentence(text: str) -> bool:
    """Whether a line of text reads as a sentence (more than three words), not a label or a value."""
    return _word_count(text) > 3


def _has_word(text: str) -> bool:
    return re.search(r"[A-Za-z]{3,}", text) is not None


def find_bar_charts(image: Image.Image) -> list[BarChart]:
    """Bar charts in ``image``: runs of three or more filled rectangles of one thickness on one baseline at a
    regular pitch, not all of one length.

    Bars stay visible at any resolution, even where their labels are too small to read, so this tells where
    a chart is when the bar a question names cannot be read. Text strokes are opened away first (a 3x3
    opening keeps only solid areas), so letters of large text do not pass for bars.
    """
    import cv2
    import numpy as np

    grey = np.asarray(image.convert("L"))
    mask = cv2.morphologyEx((grey < _BAR_GREY).astype(np.uint8), cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    _, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=4)
    rects = [
        (float(x), float(y), float(x + w), float(y + h))
        for x, y, w, h, area in stats[1:].tolist()
        if min(w, h) >= _BAR_MIN_SIDE and area >= 0.92 * w * h
    ]
    found: list[BarChart] = []
    for vertical in (True, False):
        axis = 0 if vertical else 1  # bars are laid out along x (vertical bars) or y

        def base(r: Box, vertical: bool = vertical) -> float:
            return r[3] if vertical else r[0]

        def thick(r: Box, axis: int = axis) -> float:
            return r[axis + 2] - r[axis]

        taken: set[Box] = set()
        for r in sorted(rects, key=lambda r, axis=axis: r[axis]):  # type: ignore[misc]
            if r in taken:
                continue
            same = sorted(
                (
                    s
                    for s in rects
                    if s not in taken
                    and abs(base(s) - base(r)) <= _BAR_SLACK
                    and abs(thick(s) - thick(r)) <= _BAR_SLACK
                ),
                key=lambda s, axis=axis: s[axis],  # type: ignore[misc]
            )
            run: list[Box] = []
            for i, first in enumerate(same):
                for second in same[i + 1 :]:
                    pitch = second[axis] - first[axis]
                    if pitch <= thick(first):
                        continue
                    chain = [first, second]
                    for s in same:
                        if abs(s[axis] - chain[-1][axis] - pitch) <= _BAR_SLACK:
                            chain.append(s)
                    if len(chain) > len(run):
                        run = chain
            lengths = [r[3 - axis] - r[1 - axis] for r in run]
            # Bars show different values; strokes of large letters ("IIII") are all one length.
            if len(run) >= 3 and max(lengths) - min(lengths) > 2 * _BAR_SLACK:
                taken.update(run)
                pitch = (run[-1][axis] - run[0][axis]) / (len(run) - 1)
                found.append(BarChart(vertical, tuple(run), pitch))
    return found


@lru_cache(maxsize=1)
def _alphabet(recogniser: Any) -> dict[str, int]:
    """The recogniser's output column of each character (its alphabet has thousands: built once)."""
    return {c: i for i, c in enumerate(recogniser.postprocess_op.character)}


#: How far (grey levels) from a patch's background a pixel must be to count as ink.
_INK_CONTRAST = 40
#: How much :func:`key_likelihood` enlarges a patch before it reads it.
_KWS_UPSAMPLE = 2


def key_likelihood(patch: Image.Image, key: str, *, whole: bool = False) -> float | None:
    """How well ``key`` can be read somewhere in ``patch``, a line of text too small to read.

    OCR's best reading of 4 px text is garbled, but its recogniser still gives the key's letters some
    probability where they are written. This is the recogniser's best CTC alignment of the key's letters
    (either case; spaces and blanks between them free) to a run of the line's frames, each frame counted
    against the recogniser's own best guess for it: about 0 when the key is what it reads, more negative
    the less it looks like the key; per letter, so keys of different lengths compare.

    Args:
        patch: the line (any size; it is enlarged and cut to its ink).
        key: the text to look for.
        whole: the key is all the patch holds (a bar's label): frames before and after the key count as
            gap too, so a longer word that contains the key ("Pinewood" for "pine") scores lower.

    Returns:
        The score, or ``None`` when the patch holds no ink, the key is empty or the engine cannot be asked.
    """
    import numpy as np
    from PIL import Image

    letters = [c for c in key if not c.isspace()]
    if not letters or patch.width < 2 or patch.height < 2:
        return None
    # Enlarged first: LANCZOS keeps strokes a pixel or two apart better than the recogniser's own resize.
    patch = patch.convert("RGB")
    patch = patch.resize(
        (patch.width * _KWS_UPSAMPLE, patch.height * _KWS_UPSAMPLE), Image.Resampling.LANCZOS
    )
    # The recogniser reads text that fills the line's height: cut the patch to its ink (what differs from
    # its background, the median) with a pixel of margin.
    grey = np.asarray(patch.convert("L"), dtype=np.int16)
    ink = np.abs(grey - int(np.median(grey))) > _INK_CONTRAST
    rows, cols = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
    if rows.size == 0:
        return None
    x0, x1 = max(0, cols[0] - 1), min(patch.width, cols[-1] + 2)
    y0, y1 = max(0, rows[0] - 1), min(patch.height, rows[-1] + 2)
    patch = patch.crop((int(x0), int(y0), int(x1), int(y1)))
    rec = getattr(_engine(), "text_rec", None)
    try:
        index = _alphabet(rec)
        height = int(rec.rec_image_shape[1])  # type: ignore[union-attr]
        width = max(2, round(patch.width * height / patch.height))
        rgb = np.asarray(patch.resize((width, height), Image.Resampling.BICUBIC))[:, :, ::-1]
        batch = rec.resize_norm_img(np.ascontiguousarray(rgb), width / height)[None]  # type: ignore[union-attr]
        with _OCR_LOCK:
            probs = rec.session(batch.astype(np.float32))[0][0]  # type: ignore[union-attr]
    except (AttributeError, IndexError, TypeError, ValueError):  # pragma: no cover - another engine version
        return None
    logp = np.log(np.maximum(probs, 1e-9))
    best = logp.max(axis=1)
    columns = []
    for c in letters:
        cols = [index[v] for v in dict.fromkeys((c, c.upper(), c.lower())) if v in index]
        # A letter the recogniser does not know (none in its alphabet) counts as a clear miss.
        column = np.log(np.maximum(probs[:, cols].sum(1), 1e-9)) if cols else np.full(len(probs), -20.0)
        columns.append(column)
    emit = np.stack(columns, axis=1) - best[:, None]
    gap = np.maximum(logp[:, 0], logp[:, index[" "]] if " " in index else logp[:, 0]) - best
    n = len(letters)
    repeat = np.array([j > 0 and letters[j] == letters[j - 1] for j in range(n)])
    neg = -1e9
    on = np.full(n, neg)  # best score ending on letter j at this frame
    off = np.full(n, neg)  # best score in the gap after letter j
    top = neg
    before = 0.0  # whole: the frames before the first letter are all gap
    for t in range(len(probs)):
        start = before if whole else 0.0
        enter = np.concatenate(([start], np.maximum(off[:-1], np.where(repeat[1:], neg, on[:-1]))))
        on, off = np.maximum(on, enter) + emit[t], np.maximum(off, on) + gap[t]
        before += float(gap[t])
        top = max(top, float(on[-1]))
    if whole:
        top = max(float(on[-1]), float(off[-1]))
    return top / n


# --- the conversation --------------------------------------------------------------------------------------

_CROP_LABEL_RE = re.compile(r"crop\s+(\S+)", re.IGNORECASE)


@dataclass
class _Turn:
    """What the messages hold: the question, the view, the crops, and whether a crop may be requested."""

    question: str
    view: ImagePart | None
    crops: list[tuple[str | None, ImagePart]]
    tool_name: str | None
    text_protocol: bool
    final: bool


def _turn(messages: Sequence[ChatMessage], tools: Sequence[ToolSpec] | None) -> _Turn:
    view: ImagePart | None = None
    question = ""
    crops: list[tuple[str | None, ImagePart]] = []
    system = " ".join(m.text for m in messages if m.role == "system")
    for msg in messages:
        if msg.role != "user":
            continue
        for part in msg.images:
            if part.kind in ("view", "full") and view is None:
                view = part
                question = msg.text
            elif part.kind == "crop":
                label = _CROP_LABEL_RE.search(part.label or "")
                crops.append((label.group(1).rstrip("):,") if label else None, part))
    tool = next((t.name for t in tools or () if "crop" in t.name.lower()), None)
    last = messages[-1] if messages else None
    # A turn that follows anything but the opening view (a refusal, feedback, a final instruction) answers.
    final = last is None or last.role != "user" or not any(p.kind in ("view", "full") for p in last.images)
    return _Turn(question, view, crops, tool, "GET_CROPS" in system, final)


class ReaderBackend:
    """An OCR reader that plays the AwaRes policy for text-reading questions, with no model and no network.

    It sees what a VLM backend sees (the messages' images and text) and answers through the same protocols:
    with a crop tool offered it calls ``get_crops`` natively; with the ``awares-text`` protocol (a system
    prompt teaching ``GET_CROPS``) it replies ``GET_CROPS: ['3']``. See the module docstring for the policy.

    The crop set must be the agent's (``AgentConfig.crop_set``). The first turn assumes the view is the
    original at ``view_scale`` (the agent's default half-size view); once crops arrive the scale is measured
    from them instead.

    Args:
        crop_set: the agent's crop set key (``"paper"``, ``"grid-3x3"``...) or a crop set.
        min_text_px: smallest height, in view pixels, of a detected text box whose reading of the view is
            trusted; shorter text is read again from a crop.
        min_confidence: lowest OCR confidence for a reading of the view to be trusted.
        view_scale: the view's size relative to the original, assumed on the first turn.
        model_name: the name reported in replies and trajectories.
        cache_size: how many images' OCR results are kept (least recently used first out).
        enlarge: when the question's key cannot be read in the view, the view is read again enlarged this
            many times (bicubic) to locate it: text too small to read correctly is often still detected
            and spelled closely enough to find.
        ambiguity: when the key cannot be found even so, the crop covering the hard-to-read text likeliest
            to be the key or the value is requested, and the runner-up's crop too if it scores at least this
            fraction of the best (``1.0`` or more: never two).

    Raises:
        ConfigError: an unknown crop set or an out-of-range option.
    """

    def __init__(
        self,
        *,
        crop_set: str | CropSet = "paper",
        min_text_px: float = DEFAULT_MIN_TEXT_PX,
        min_confidence: float = DEFAULT_MIN_CONFIDENCE,
        view_scale: float = 0.5,
        model_name: str = "awares-reader",
        cache_size: int = 128,
        enlarge: float = 2.0,
        ambiguity: float = 0.8,
    ) -> None:
        if not 0 < view_scale <= 1:
            raise ConfigError(f"view_scale must be in (0, 1], got {view_scale!r}")
        if not 0 <= min_confidence <= 1:
            raise ConfigError(f"min_confidence must be in [0, 1], got {min_confidence!r}")
        if min_text_px < 0:
            raise ConfigError(f"min_text_px must be >= 0, got {min_text_px!r}")
        if enlarge < 1:
            raise ConfigError(f"enlarge must be >= 1, got {enlarge!r}")
        if cache_size < 1:
            raise ConfigError(f"cache_size must be >= 1, got {cache_size!r}")
        self.crop_set = make_crop_set(crop_set)
        self.min_text_px = float(min_text_px)
        self.min_confidence = float(min_confidence)
        self.view_scale = float(view_scale)
        self.cache_size = cache_size
        self.enlarge = float(enlarge)
        self.ambiguity = float(ambiguity)
        self._model_name = model_name
        self._cache: OrderedDict[str, list[_RawBox]] = OrderedDict()
        self._cache_lock = threading.Lock()

    @property
    def model_name(self) -> str:
        """The name reported in replies and trajectories."""
        return self._model_name

    @property
    def token_rule(self) -> PixelTokenRule:
        """One token per 28x28 pixels: an OCR engine has no visual tokens, so RTR is the pixel ratio."""
        return PixelTokenRule()

    def __repr__(self) -> str:
        return (
            f"ReaderBackend(crop_set={self.crop_set.key!r}, min_text_px={self.min_text_px}, "
            f"min_confidence={self.min_confidence})"
        )

    # --- the ChatBackend protocol ------------------------------------------------------------------------

    def complete(
        self,
        messages: Sequence[ChatMessage],
        *,
        images: ImageStore,
        tools: Sequence[ToolSpec] | None = None,
    ) -> ChatReply:
        """Run one turn: answer, or request crops (see the module docstring).

        Args:
            messages: the conversation so far.
            images: the store that resolves the messages' images.
            tools: the tools offered (the crop tool while crops may be requested).
        """
        started = time.perf_counter()
        text, call = self._turn(messages, images, tools)
        if call is not None:
            return ChatReply(
                tool_calls=[call],
                usage=Usage(),
                finish_reason="tool_calls",
                model=self._model_name,
                latency_s=time.perf_counter() - started,
            )
        return ChatReply(
            text=text,
            usage=Usage(),
            finish_reason="stop",
            model=self._model_name,
            latency_s=time.perf_counter() - started,
        )

    async def acomplete(
        self,
        messages: Sequence[ChatMessage],
        *,
        images: ImageStore,
        tools: Sequence[ToolSpec] | None = None,
    ) -> ChatReply:
        """Async :meth:`complete` (OCR runs in a worker thread)."""
        return await asyncio.to_thread(self.complete, messages, images=images, tools=tools)

    # --- the policy --------------------------------------------------------------------------------------

    def _turn(
        self, messages: Sequence[ChatMessage], images: ImageStore, tools: Sequence[ToolSpec] | None
    ) -> tuple[str, ToolCall | None]:
        turn = _turn(messages, tools)
        if turn.view is None:
            return UNKNOWN, None
        query = parse_question(turn.question)
        if query.kind == "none":
            return UNKNOWN, None
        may_crop = not turn.crops and (turn.tool_name is not None or (turn.text_protocol and not turn.final))
        boxes, size, scale = self._boxes(turn, images)
        reading = read(query, boxes)
        if not may_crop:
            if reading is not None and reading.answer:
                return self._reread(reading, turn, images, size, scale), None
            return _best_guess(query, boxes), None
        if reading is not None and reading.answer:
            if (
                self._trusted(reading)
                and plausible(query, reading.answer)
                and reading.gap <= _MAX_TRUSTED_GAP
            ):
                return reading.answer, None
            if not plausible(query, reading.answer) or reading.gap > _MAX_TRUSTED_GAP:
                # A value of the wrong kind, or far from its key, is someone else's: look next to the key.
                reading = Reading(None, [], reading.anchors, reading.score, where=_next_to(reading.anchors))
        hard: list[TextBox] = []
        if reading is None or reading.evidence is None:
            # The key is not legible in the view: read the view enlarged, where text too small to read
            # correctly is often still detected and spelled closely enough to say where it lies.
            assert turn.view is not None
            view_boxes = boxes
            boxes = self._enlarged_boxes(turn.view, images, scale)
            hard = [b for b in boxes if self._unreadable(b)]
            reading = read(query, hard, loose=True)
            if reading is not None and any(_is_sentence(a.text) for a in reading.anchors):
                reading = None  # garbled text matches a key somewhere in a sentence: not a label
            # What holds the unreadable key, found by its shape: the bar's chart (bars can be seen when their
            # labels cannot: always asked for whole), else the cell's table or the sign.
            where = None
            if query.kind == "bar":
                where = self._chart_for(query, turn.view, images, scale, size, view_boxes)
            elif reading is None or reading.evidence is None:
                if query.kind == "cell":
                    where = self._table_for(query, turn.view, images, scale, size, hard)
                elif query.on_sign:
                    where = self._sign_for(query, turn.view, images, scale, hard)
            if where is not None:
                reading = Reading(None, [], [], 0.0, where=where)
        crops = self._where(query, reading, hard, boxes, size)
        if turn.tool_name is not None:
            return "", ToolCall(id="call_0", name=turn.tool_name, arguments=json.dumps({"crops": crops}))
        return "GET_CROPS: [" + ", ".join(f"'{c}'" for c in crops) + "]", None

    def _chart_for(
        self,
        query: Query,
        view: ImagePart,
        images: ImageStore,
        scale: float,
        size: tuple[int, int],
        view_boxes: Sequence[TextBox],
    ) -> Box | None:
        """Where the chart with the bar a question names lies (original pixels), when its label is unreadable.

        The view's bar charts (:func:`find_bar_charts`) whose labels can be read are not it (the key would
        have been found); of the others, the one with the label most like the key
        (:func:`key_likelihood` of the text beside each bar, which is the label's whole text), and the
        runner-up too when it is about as likely and one half of the image shows both. The box spans the
        bars, the labels beside their baseline and the values past their ends, in small text (larger text
        would have been read).
        """
        image = images.get(view.image_id)
        found: list[tuple[float, Box]] = []
        for chart in find_bar_charts(image):
            x0, y0, x1, y1 = (v / scale for v in chart.bars)
            pitch = chart.pitch / scale
            if chart.vertical:
                labels = (x0 - pitch / 2, y1, x1 + pitch / 2, y1 + _CHART_LABEL_ZONE)
                extent = (x0 - pitch / 2, y0 - _CHART_VALUE_MARGIN, x1 + pitch / 2, y1 + _CHART_LABEL_MARGIN)
            else:
                labels = (x0 - 8 * _CHART_LABEL_ZONE, y0, x0, y1)
                extent = (x0 - _CHART_SIDE_LABELS, y0 - pitch / 4, x1 + _CHART_SIDE_VALUES, y1 + pitch / 4)
            if any(
                labels[0] <= b.cx <= labels[2]
                and labels[1] <= b.cy <= labels[3]
                and not self._unreadable(b)
                and _has_word(b.text)
                for b in view_boxes
            ):
                continue  # its labels can be read, and the key is not among them
            likeness = max(
                (
                    score
                    for slot in _label_slots(chart, scale)
                    if (score := key_likelihood(image.crop(slot), query.key, whole=True)) is not None
                ),
                default=-1e9,
            )
            found.append((likeness, extent))
        if not found:
            return None
        found.sort(key=lambda f: -f[0])
        (top, extent), runner = found[0], found[1] if len(found) > 1 else None
        if runner is not None and runner[0] >= top - _CHART_TIE:
            # Two charts about as likely: both, if one half of the image (or two quadrants) shows them.
            width, height = size
            both = _clip(_union([extent, runner[1]]), width, height)
            ids = crops_covering(both, self.crop_set, width, height, tolerance=4.0)
            if ALL not in ids and _cost(ids, self.crop_set, size) <= 0.5 * width * height + 1:
                return both
        return extent

    def _table_for(
        self,
        query: Query,
        view: ImagePart,
        images: ImageStore,
        scale: float,
        size: tuple[int, int],
        hard: Sequence[TextBox],
    ) -> Box | None:
        """Where the table a cell question is about lies (original pixels), when its labels cannot be read.

        The view's text too small to read is grouped into blocks (:func:`text_blocks`); each block of three
        lines or more that has cells (:func:`_tabular`) may be the table. The one whose first column holds
        the text likeliest to be the row's label and whose first two lines hold the likeliest column header
        (:func:`key_likelihood`) is it; ``None`` when there is no such block, or when only the whole image
        covers it.
        """
        blocks = [b for b in text_blocks(hard) if len(b) >= 3 and _tabular(b)]
        if not blocks:
            return None
        image = images.get(view.image_id)

        def likeness(box: TextBox, key: str) -> float:
            score = key_likelihood(_patch(image, box, scale), key)
            return _KWS_NONE if score is None else score

        best: tuple[float, Box] | None = None
        for lines in blocks:
            score = max(likeness(line[0], query.key) for line in lines)
            if query.column:
                score += max(likeness(b, query.column) for line in lines[:2] for b in line)
            if best is None or score > best[0]:
                best = (score, _union([b.box for line in lines for b in line]))
        assert best is not None
        width, height = size
        box = _clip(best[1], width, height)
        if ALL in crops_covering(box, self.crop_set, width, height, tolerance=4.0):
            return None
        return box

    def _sign_for(
        self, query: Query, view: ImagePart, images: ImageStore, scale: float, hard: Sequence[TextBox]
    ) -> Box | None:
        """Where the sign a question names lies (original pixels), when its label cannot be read.

        A sign is short text on its own. Of the view's short text too small to read, the one most like the
        key (:func:`key_likelihood` of its patch in the view) is the sign's label, if it scores at least
        ``_SIGN_FLOOR`` and clearly beats the next (by ``_SIGN_MARGIN``); otherwise ``None``, and the guess
        falls to :meth:`_likeliest`. The box reaches a line up and left, and to the right and below as far
        as a value written after the label or under it goes.
        """

        def line_of(b: TextBox) -> Box:
            """The box with the text beside it on its line (a sign's short line, or a longer line's)."""
            line, grew = b.box, True
            while grew:
                grew = False
                for o in hard:
                    x0, x1 = line[0], line[2]
                    if (
                        _v_overlap(o.box, line) >= 0.5
                        and o.box[0] - 1.5 * o.height <= x1
                        and x0 <= o.box[2] + 1.5 * o.height
                        and not (x0 <= o.box[0] and o.box[2] <= x1)
                    ):
                        line, grew = _union([line, o.box]), True
            return line

        short = [
            b
            for b in hard
            if len(b.text.strip()) <= _SIGN_CHARS
            and _word_count(b.text) <= 2
            and (span := line_of(b))[2] - span[0] <= _SIGN_ASPECT * b.height
        ]
        if not short or not query.key:
            return None
        image = images.get(view.image_id)
        scored: list[tuple[float, TextBox]] = []
        for b in short:
            if (score := key_likelihood(_patch(image, b, scale), query.key)) is not None:
                scored.append((score, b))
        if not scored:
            return None
        scored.sort(key=lambda sb: -sb[0])
        top, label = scored[0]
        runner = next((sc for sc, b in scored[1:] if not _near(b, label)), None)
        if top < _SIGN_FLOOR or (runner is not None and top - runner < _SIGN_MARGIN):
            return None
        x0, y0, x1, y1 = label.box
        w, h = x1 - x0, y1 - y0
        return (x0 - 0.5 * w - h, y0 - h, x1 + w + h, y1 + 1.5 * h)

    def _trusted(self, reading: Reading) -> bool:
        """Whether a reading of the view can be answered from: every value box tall and confident enough."""
        return bool(reading.value_boxes) and all(
            b.source in ("view", "full") and b.px >= self.min_text_px and b.confidence >= self.min_confidence
            for b in reading.value_boxes
        )

    def _unreadable(self, box: TextBox) -> bool:
        return box.px < self.min_text_px or box.confidence < self.min_confidence

    def _where(
        self,
        query: Query,
        reading: Reading | None,
        hard: list[TextBox],
        boxes: list[TextBox],
        size: tuple[int, int],
    ) -> list[str]:
        """The crops to request: the cheapest covering the evidence, else the likeliest region(s).

        Args:
            query: the parsed question.
            reading: where the key (and value) were found, if they were.
            hard: the view's text too small to read, guessed from when nothing was found.
            boxes: all the text of the view (it tells which label a value has).
            size: the original image's size.
        """
        width, height = size
        must = reading.evidence if reading is not None else None
        if must is not None:
            return crops_covering(_clip(must, width, height), self.crop_set, width, height, tolerance=4.0)
        return self._likeliest(query, hard, width, height, boxes)

    def _likeliest(
        self, query: Query, hard: list[TextBox], width: int, height: int, context: Sequence[TextBox] = ()
    ) -> list[str]:
        """A guess from text too small to read: the crop covering the hard-to-read text likeliest to be the
        key or the value.

        Each box scores its similarity to the key (squared, doubled; only when 70% of the characters agree),
        plus how much it looks like the value asked for: digits (up to six), an amount when the question asks
        for one; a value printed beside a word unlike the key (another sign's or field's label) counts a
        third. The cheapest crop covering the best box (with a line of margin) is requested; when a box
        elsewhere scores nearly as high (``ambiguity``), its crop too, if the two requests come to at most two
        regions. With nothing to go on, the centre (or everything).
        """
        regions = [r for r in self.crop_set.regions(width, height) if r.id != ALL]
        smallest = min(r.width * r.height for r in regions)
        tiles = [r for r in regions if r.width * r.height <= smallest * 1.01]
        centre = [r.id for r in tiles if r.name == "center"] or [ALL]
        keys = [k for k in (query.key, query.column) if k]

        def key_like(b: TextBox) -> float:
            low = b.text.lower()
            sim = max(
                (
                    _similarity(k, b.text)
                    for k in keys
                    # Only inside a longer word ("total" in "SUBTOTAL") the key is another label.
                    if not (k.lower() in low and not re.search(rf"(?<![a-z]){re.escape(k.lower())}", low))
                ),
                default=0.0,
            )
            if sim >= 0.7:
                return 2 * sim * sim
            # One distinctive word of a longer key ("Dat" of "Issue Date"), for its share of the key.
            key_chars = sum(len(w) for k in keys for w in k.split()) or 1
            parts = (
                (len(w), _similarity(w, t))
                for k in keys
                for w in k.split()
                if len(w) >= 3 and w not in _GENERIC_TAIL and len(k.split()) > 1
                for t in re.findall(r"[A-Za-z]{3,}", b.text)
            )
            return max((n / key_chars * 2 * ws * ws for n, ws in parts if ws >= 0.7), default=0.0)

        def labels_of(b: TextBox) -> list[TextBox]:
            """Words right before ``b`` on its line, or right over it: its label, if it is a field's value."""
            return [
                k
                for k in context
                if k is not b
                and _has_word(k.text)
                and not _is_sentence(k.text)
                and (
                    (
                        _v_overlap(k.box, b.box) >= 0.5
                        and -0.5 * k.height <= b.box[0] - k.box[2] <= 6 * k.height
                    )
                    or (
                        _h_overlap(k.box, b.box) >= 0.3
                        and -0.25 * k.height <= b.box[1] - k.box[3] <= 1.5 * k.height
                    )
                )
            ]

        # The keys and their distinctive words ("issue" and "date" of "issue date", not "no" of "invoice no").
        distinct = [*keys, *(w for k in keys for w in k.split() if len(w) >= 3 and w not in _GENERIC_TAIL)]

        def score(b: TextBox) -> float:
            own = key_like(b)
            if _is_sentence(b.text):
                return own  # a sentence, not a value
            digits = len(_DIGIT_RE.findall(b.text))
            number = min(1.0, digits / 6) if digits >= 2 else 0.0
            amount = 0.5 if query.money and _MONEY_RE.search(b.text) else 0.0
            value = number + amount
            if value <= 0:
                return own
            words = re.findall(r"[A-Za-z]{3,}", b.text)
            label = b.text.split(":")[0] if ":" in b.text else ""
            if (
                label
                and re.search(r"[A-Za-z]{2}", label)
                and max((_similarity(k, label) for k in keys), default=0.0) < 0.5
                and max((_similarity(k, b.text) for k in keys), default=0.0) < 0.7
            ):
                return own + 0.3 * value  # a value after its own label, another field's ("Tax ID: 10-70")
            if words and all(max((_similarity(x, w) for x in distinct), default=0.0) < 0.5 for w in words):
                # A value under another label ("GATE 78-584" when the question is about the DOCK sign).
                return own + 0.3 * value
            labels = labels_of(b)
            label_score = max((key_like(k) for k in labels), default=0.0)
            if label_score > 0:
                return own + value + label_score  # a field: its key and its value both count
            if labels:
                return own + 0.3 * value  # another field's value ("Contract No: K184-325" for the phone)
            return own + value

        scored = sorted(((score(b), b) for b in hard), key=lambda sb: -sb[0])
        if not scored or scored[0][0] <= 0:
            return centre

        def margin(b: TextBox) -> Box:
            h = b.height
            return _clip((b.box[0] - h, b.box[1] - h, b.box[2] + h, b.box[3] + h), width, height)

        best_score, best = scored[0]
        must = margin(best)
        runner = next(
            (b for sc, b in scored[1:] if sc >= self.ambiguity * best_score and not _near(b, best)), None
        )
        one = crops_covering(must, self.crop_set, width, height, tolerance=4.0)
        if runner is not None:
            other = crops_covering(margin(runner), self.crop_set, width, height, tolerance=4.0)
            both = [r for r in dict.fromkeys([*one, *other]) if r != ALL]
            boxes = {r: self.crop_set.region(r, width, height).box for r in both}
            # A region inside another requested one adds nothing ("3" in "8").
            both = [r for r in both if not any(o != r and _contains(boxes[o], boxes[r]) for o in both)]
            if len(both) <= 2 and ALL not in one and ALL not in other:
                return sorted(both, key=self.crop_set.ids.index)
        return one

    # --- OCR of the conversation's images ----------------------------------------------------------------

    def _cached(self, key: str, make: Any) -> list[_RawBox]:
        """The OCR boxes cached under ``key``, computed by ``make()`` on a miss (least recently used out)."""
        with self._cache_lock:
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
                return hit
        boxes = make()
        with self._cache_lock:
            self._cache[key] = boxes
            self._cache.move_to_end(key)
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return boxes

    def _read_image(self, part: ImagePart, images: ImageStore, enlarge: float = 1.0) -> list[_RawBox]:
        """OCR of a stored image (enlarged ``enlarge`` times first), boxes in its own pixels; cached."""
        key = (
            part.image_id
            if enlarge == 1
            else f"{part.image_id}@x{enlarge:g}@{_LOCATE_BOX_THRESH:g},{_LOCATE_TEXT_SCORE:g}"
        )

        def make() -> list[_RawBox]:
            image = images.get(part.image_id)
            if enlarge == 1:
                return _ocr(image)
            from PIL import Image

            size = (round(image.width * enlarge), round(image.height * enlarge))
            return [
                _RawBox(
                    r.text,
                    r.confidence,
                    (r.box[0] / enlarge, r.box[1] / enlarge, r.box[2] / enlarge, r.box[3] / enlarge),
                    r.px / enlarge,
                )
                for r in _ocr_at(
                    image.convert("RGB").resize(size, Image.Resampling.BICUBIC),
                    _LOCATE_BOX_THRESH,
                    _LOCATE_TEXT_SCORE,
                )
            ]

        return self._cached(key, make)

    def _read_stitched(self, parts: list[tuple[Box, ImagePart]], images: ImageStore) -> list[_RawBox]:
        """OCR of several native-resolution crops pasted at their places on one canvas; boxes in original
        pixels.

        Read one by one, a line that runs over the edge between two crops is cut in two (a key in one crop,
        its value in the other), and the parts two crops share are read twice; on one canvas each line is
        read once and whole.
        """
        key = "stitch:" + "+".join(p.image_id for _, p in parts)

        def make() -> list[_RawBox]:
            from PIL import Image

            x0, y0, x1, y1 = (round(v) for v in _union([b for b, _ in parts]))
            canvas = Image.new("RGB", (x1 - x0, y1 - y0), "white")
            for box, part in parts:
                canvas.paste(
                    images.get(part.image_id).convert("RGB"), (round(box[0]) - x0, round(box[1]) - y0)
                )
            return [
                _RawBox(
                    r.text, r.confidence, (r.box[0] + x0, r.box[1] + y0, r.box[2] + x0, r.box[3] + y0), r.px
                )
                for r in _ocr(canvas)
            ]

        return self._cached(key, make)

    def _enlarged_boxes(self, view: ImagePart, images: ImageStore, scale: float) -> list[TextBox]:
        """The view read at ``enlarge`` times its size, in original pixels (``px`` still in view pixels)."""
        return [
            TextBox(r.text, r.confidence, tuple(v / scale for v in r.box), r.px, "enlarged")  # type: ignore[arg-type]
            for r in self._read_image(view, images, self.enlarge)
        ]

    def _reread(
        self, reading: Reading, turn: _Turn, images: ImageStore, size: tuple[int, int], scale: float
    ) -> str:
        """The answer, its small characters read again from the value's patch enlarged ``REREAD`` times.

        OCR misreads digits of small text ("5,325" for "6,325") that it reads right enlarged. The re-reading
        is taken only when it has the same characters' shape (the same length, punctuation at the same
        places, whose marks are kept from the first reading: enlarged, "," and "." are confused instead) and
        about the same confidence.
        """
        answer = reading.answer or ""
        if len(reading.value_boxes) != 1 or _norm(reading.value_boxes[0].text)[0] != _norm(answer)[0]:
            return answer
        value = reading.value_boxes[0]
        if value.px >= _REREAD_BELOW_PX:
            return answer
        # The image the value was read in, and where the value lies in it.
        source: tuple[ImagePart, Box] | None = None
        if value.source == "crop":
            for rid, part in turn.crops:
                c = self._crop_box(rid, part, size)
                if c is None or abs((c[2] - c[0]) / part.width - 1) > 0.02:
                    continue
                if (
                    c[0] <= value.box[0]
                    and value.box[2] <= c[2]
                    and c[1] <= value.box[1]
                    and value.box[3] <= c[3]
                ):
                    source = (part, (c[0], c[1], 1.0, 1.0))
                    break
        elif turn.view is not None:
            source = (turn.view, (0.0, 0.0, scale, scale))
        if source is None:
            return answer
        part, (ox, oy, sx, sy) = source
        x0, y0, x1, y1 = (
            (value.box[0] - ox) * sx,
            (value.box[1] - oy) * sy,
            (value.box[2] - ox) * sx,
            (value.box[3] - oy) * sy,
        )
        h = y1 - y0
        patch = (round(x0 - 0.6 * h), round(y0 - 0.4 * h), round(x1 + 0.6 * h), round(y1 + 0.4 * h))

        def make() -> list[_RawBox]:
            from PIL import Image

            image = images.get(part.image_id).convert("RGB").crop(patch)
            big = image.resize((image.width * _REREAD, image.height * _REREAD), Image.Resampling.BICUBIC)
            canvas = Image.new("RGB", (big.width + 40, big.height + 40), "white")
            canvas.paste(big, (20, 20))
            return _ocr(canvas)

        lines = self._cached(f"{part.image_id}#reread{patch}", make)
        if not lines:
            return answer
        best = max(lines, key=lambda r: (r.box[2] - r.box[0]) * (r.box[3] - r.box[1]))
        again = best.text.strip()
        shape = re.sub(r"[A-Za-z0-9]", "a", answer)
        if len(again) != len(answer) or re.sub(r"[A-Za-z0-9]", "a", again).replace(".", ",") != shape.replace(
            ".", ","
        ):
            return answer
        if best.confidence < value.confidence - 0.05:
            return answer
        return "".join(a if not a.isalnum() else b for a, b in zip(answer, again, strict=True))

    def _boxes(self, turn: _Turn, images: ImageStore) -> tuple[list[TextBox], tuple[int, int], float]:
        """Every text box read so far, in original-image pixels, the original's estimated size and the view's
        scale.

        Crops replace the view where they overlap: a view box whose centre lies inside a crop is dropped.
        """
        assert turn.view is not None
        view = turn.view
        scale = 1.0 if view.kind == "full" else self._measured_scale(view, turn.crops)
        size = (max(1, round(view.width / scale)), max(1, round(view.height / scale)))
        placed: list[tuple[Box, list[TextBox]]] = []
        native: list[tuple[Box, ImagePart]] = []
        for rid, part in turn.crops:
            offset = self._crop_box(rid, part, size)
            if offset is None:
                continue
            sx = (offset[2] - offset[0]) / part.width
            sy = (offset[3] - offset[1]) / part.height
            if abs(sx - 1) <= 0.02 and abs(sy - 1) <= 0.02:
                native.append((offset, part))
                continue
            ox, oy = offset[0], offset[1]
            read_boxes = [
                TextBox(
                    r.text,
                    r.confidence,
                    (ox + r.box[0] * sx, oy + r.box[1] * sy, ox + r.box[2] * sx, oy + r.box[3] * sy),
                    r.px,
                    "crop",
                )
                for r in self._read_image(part, images)
            ]
            placed.append((offset, read_boxes))
        if len(native) == 1:
            (offset, part), ox, oy = native[0], native[0][0][0], native[0][0][1]
            raw = [
                _RawBox(
                    r.text, r.confidence, (r.box[0] + ox, r.box[1] + oy, r.box[2] + ox, r.box[3] + oy), r.px
                )
                for r in self._read_image(part, images)
            ]
        else:
            raw = self._read_stitched(native, images) if native else []
        for offset, _ in native:
            placed.append((offset, []))
        if raw:
            placed.append((native[0][0], [TextBox(r.text, r.confidence, r.box, r.px, "crop") for r in raw]))
        out: list[TextBox] = []
        for _, crop_boxes in placed:
            out += crop_boxes
        for r in self._read_image(view, images):
            box = (r.box[0] / scale, r.box[1] / scale, r.box[2] / scale, r.box[3] / scale)
            # A view box inside a crop is replaced by the crop's reading; one the crop's edge cuts is kept
            # (the crop holds only part of its line).
            slack = 0.25 * (box[3] - box[1])
            points = [
                (x, y) for x in (box[0] + slack, box[2] - slack) for y in (box[1] + slack, box[3] - slack)
            ]
            if all(any(c[0] <= x <= c[2] and c[1] <= y <= c[3] for c, _ in placed) for x, y in points):
                continue
            out.append(TextBox(r.text, r.confidence, box, r.px, view.kind))
        return out, size, scale

    def _measured_scale(self, view: ImagePart, crops: list[tuple[str | None, ImagePart]]) -> float:
        """The view's scale: measured from a crop's size and region when there is one, else ``view_scale``."""
        ref = (max(1, round(view.width / self.view_scale)), max(1, round(view.height / self.view_scale)))
        for rid, part in crops:
            if rid is None:
                continue
            try:
                region = self.crop_set.region(rid, *ref)
            except (KeyError, ConfigError):
                continue
            # Regions are fixed fractions of the image, so the crop's width gives the original's.
            original_width = part.width * ref[0] / max(1, region.width)
            return min(1.0, view.width / original_width)
        return self.view_scale

    def _crop_box(self, rid: str | None, part: ImagePart, size: tuple[int, int]) -> Box | None:
        """Where a crop lies in the original, from its region id; ``None`` if it cannot be placed."""
        if rid is None:
            return None
        try:
            region = self.crop_set.region(rid, *size)
        except (KeyError, ConfigError):
            return None
        return tuple(float(v) for v in region.box)  # type: ignore[return-value]


def _clip(box: Box, width: int, height: int) -> Box:
    x0, y0, x1, y1 = box
    x0, x1 = max(0.0, min(x0, width)), max(0.0, min(x1, width))
    y0, y1 = max(0.0, min(y0, height)), max(0.0, min(y1, height))
    return (x0, y0, max(x0, x1), max(y0, y1))


def _contains(outer: Sequence[float], inner: Sequence[float]) -> bool:
    return outer[0] <= inner[0] and outer[1] <= inner[1] and inner[2] <= outer[2] and inner[3] <= outer[3]


def _near(a: TextBox, b: TextBox) -> bool:
    """Whether two boxes lie within a few line heights of each other."""
    h = 3 * max(a.height, b.height)
    return (
        a.box[0] - h < b.box[2]
        and b.box[0] - h < a.box[2]
        and a.box[1] - h < b.box[3]
        and b.box[1] - h < a.box[3]
    )


def _cost(ids: list[str], crops: CropSet, size: tuple[int, int]) -> int:
    return sum(crops.region(i, *size).width * crops.region(i, *size).height for i in ids)
