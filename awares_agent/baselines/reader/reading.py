"""What a finder found for a query (:class:`Reading`), and whether a value can be what was asked for."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from awares_agent.baselines.reader.config import DEFAULT_CONFIG, ReaderConfig
from awares_agent.baselines.reader.ocr import TextBox
from awares_agent.baselines.reader.questions import Query
from awares_agent.baselines.reader.text import DIGIT_RE, MONEY_RE
from awares_agent.boxes import Box, union_boxes

__all__ = ["CODE_WORDS", "NUMBER_WORDS", "Reading", "fit", "next_to", "plausible"]


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
        return union_boxes(boxes) if boxes else None


def fit(value: str, money: bool) -> int:
    """How well a value fits what the question asks: 2 an amount when one is asked, 1 has digits, 0 none.

    Args:
        value: a candidate answer.
        money: the question asks for an amount.
    """
    if money and MONEY_RE.search(value):
        return 2
    return 1 if DIGIT_RE.search(value) else 0


NUMBER_WORDS = frozenset(
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
"""Words of a question whose answer has digits."""

# The end of a field's label: "Account No", "AccountNo" (OCR glues words), "Customer ID", "Due Date".
_LABEL_END_RE = re.compile(r"(?:^|\s|(?<=[a-z]))(?:No|NO|ID|Id|Number|Date|Code|Name|Ref|#)$")

CODE_WORDS = frozenset(
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
"""Words of a question whose answer is a code: digits, or one upper-case word."""


def plausible(query: Query, value: str, config: ReaderConfig = DEFAULT_CONFIG) -> bool:
    """Whether ``value`` can be what ``query`` asks for: a number, date or amount has digits; an ID or code
    has digits or is one upper-case word; no value of a field, cell or bar is a sentence of lower-case words.

    Args:
        query: the parsed question.
        value: a candidate answer.
        config: the reader's thresholds (``sentence_lower_words``).
    """
    words = set(re.findall(r"[a-z0-9#]+", f"{query.key} {query.column}")) | set(query.words)
    digits = bool(DIGIT_RE.search(value))
    if not digits and (value.rstrip().endswith(":") or _LABEL_END_RE.search(value.rstrip(" ."))):
        return False  # another field's label ("Account No"), not a value
    if query.money or query.kind == "bar" or words & NUMBER_WORDS:
        return digits
    if words & CODE_WORDS and not digits and (len(value.split()) > 1 or any(c.islower() for c in value)):
        return False
    return len(re.findall(r"\b[a-z]{2,}\b", value)) < config.sentence_lower_words


def next_to(anchors: Sequence[TextBox], config: ReaderConfig) -> Box | None:
    """Where a key's value should be when it was not read: to its right on its line, or under it.

    Args:
        anchors: the key's boxes.
        config: the reader's thresholds (``next_to_width``, ``next_to_depth``).
    """
    if not anchors:
        return None
    a = union_boxes([b.box for b in anchors])
    h = min(b.height for b in anchors)
    return (a[0], a[1], a[2] + max(a[2] - a[0], config.next_to_width * h), a[3] + config.next_to_depth * h)
