"""The answer to a query from text boxes: each kind of question goes to its finder.

Fields and bars to :mod:`~awares_agent.baselines.reader.fields`, cells to
:mod:`~awares_agent.baselines.reader.tables`, a sign's main text to
:mod:`~awares_agent.baselines.reader.signs`.
"""

from __future__ import annotations

from collections.abc import Sequence

from awares_agent.baselines.reader.config import DEFAULT_CONFIG, ReaderConfig
from awares_agent.baselines.reader.fields import read_field
from awares_agent.baselines.reader.ocr import TextBox
from awares_agent.baselines.reader.questions import Query
from awares_agent.baselines.reader.reading import Reading
from awares_agent.baselines.reader.signs import read_sign
from awares_agent.baselines.reader.tables import read_cell
from awares_agent.baselines.reader.text import fix_digits

__all__ = ["UNKNOWN", "best_guess", "read"]

UNKNOWN = "unknown"
"""The answer given when the question is not about text the reader can find."""


def read(
    query: Query, boxes: Sequence[TextBox], config: ReaderConfig = DEFAULT_CONFIG, *, loose: bool = False
) -> Reading | None:
    """Find the answer to ``query`` among OCR'd text boxes (all in the same, original-pixel coordinates).

    Args:
        query: the parsed question.
        boxes: the text boxes read so far.
        config: the reader's thresholds.
        loose: accept keys read with many errors (to locate text too small to read, not to answer).

    Returns:
        The reading, possibly without an answer but with the key's location; ``None`` if not even the key
        was found.
    """
    if query.kind == "sign":
        return read_sign(boxes, config)
    if query.kind == "cell":
        reading = read_cell(query, boxes, config, loose=loose)
    elif query.kind in ("field", "bar"):
        reading = read_field(query, boxes, config, loose=loose)
    else:
        return None
    if reading is not None and reading.answer:
        reading.answer = fix_digits(reading.answer)
    return reading


def best_guess(query: Query, boxes: Sequence[TextBox], config: ReaderConfig) -> str:
    """A last-resort answer: the value next to the text most similar to the key, if any is similar enough.

    Args:
        query: the parsed question.
        boxes: the text boxes read so far.
        config: the reader's thresholds.

    Returns:
        The answer, or :data:`UNKNOWN`.
    """
    if query.kind == "none" or not boxes:
        return UNKNOWN
    reading = read(query, boxes, config, loose=True)
    if reading is not None and reading.answer:
        return reading.answer
    return UNKNOWN
