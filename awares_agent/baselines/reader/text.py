"""What a line of OCR'd text says: normalised characters, tokens, sentences, and repairs of OCR's misreads.

OCR glues words ("InvoiceNo"), splits numbers ("1, 941"), reads small colons as "1" and digits as letters
("2024-0l-13"); these helpers tell such text apart and undo what can be undone.
"""

from __future__ import annotations

import re

from awares_agent.baselines.reader.config import ReaderConfig
from awares_agent.baselines.reader.ocr import TextBox

__all__ = [
    "COLON_MISREADS",
    "DIGIT_RE",
    "MONEY_RE",
    "clean_value",
    "date_spaced",
    "fix_digits",
    "fix_prefix",
    "has_word",
    "is_sentence",
    "norm",
    "split_glued_label",
    "tokens",
    "word_count",
]

DIGIT_RE = re.compile(r"\d")
"""A digit anywhere."""

MONEY_RE = re.compile(r"\d\s?[.,]\s?\d\d(?!\d)")
"""An amount: digits with two decimals ("12.50", "1, 284.50" as OCR splits it)."""

COLON_MISREADS = frozenset("1lI|i!")
"""What OCR reads a small colon glued to its key as ("Due Date1")."""


def norm(text: str) -> tuple[str, list[int]]:
    """Lower-case alphanumerics (and ``#``) of ``text``, with each kept character's index in ``text``.

    Args:
        text: the text to normalise.
    """
    chars, index = [], []
    for i, c in enumerate(text):
        if c.isalnum() or c == "#":
            chars.append(c.lower())
            index.append(i)
    return "".join(chars), index


def clean_value(text: str) -> str:
    """``text`` without the separators OCR keeps around a value (a colon after its key, a trailing comma).

    Args:
        text: a value as read.
    """
    return text.strip().lstrip(" \t:;=|>-–—·.,").rstrip(" \t:;|,").strip()


def word_count(text: str) -> int:
    """How many words (two letters or more) a line of text holds.

    Args:
        text: the line.
    """
    return len(re.findall(r"[A-Za-z]{2,}", text))


def is_sentence(text: str, config: ReaderConfig) -> bool:
    """Whether a line of text reads as a sentence (over ``sentence_words`` words), not a label or a value.

    Args:
        text: the line.
        config: the reader's thresholds.
    """
    return word_count(text) > config.sentence_words


def has_word(text: str) -> bool:
    """Whether ``text`` holds a word of three letters or more.

    Args:
        text: the line.
    """
    return re.search(r"[A-Za-z]{3,}", text) is not None


_SPLIT_RE = re.compile(r"\s+|(?<=\d)(?=[A-Z])|(?<=\.\d\d)(?=\d)|(?<=,\d\d\d)(?=\d)|(?<=[a-z])(?=[A-Z])")


def tokens(box: TextBox, start: int = 0) -> list[TextBox]:
    """``box.text[start:]`` cut at spaces and where OCR glued values ("617.03 97.97", "G-1951N-8309").

    Args:
        box: the line.
        start: where in its text to start.
    """
    out, pos = [], start
    for m in [*_SPLIT_RE.finditer(box.text, start), None]:
        end = m.start() if m is not None else len(box.text)
        if end > pos and box.text[pos:end].strip():
            out.append(box.part(pos, end))
        if m is not None:
            pos = m.end()
    return out


def fix_digits(value: str) -> str:
    """Undo OCR's letters for digits inside numbers: "2024-0l-13" is "2024-01-13", "1O5" is "105".

    Args:
        value: an answer as read.
    """
    return re.sub(r"(?<=\d)[lI|](?=\d|\W|$)|(?<=\d[-/.,])[lI](?=\d)|(?<=\d)O(?=\d)", _digit_for, value)


def _digit_for(m: re.Match[str]) -> str:
    return "0" if m.group() == "O" else "1"


_MONTH = r"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sept?|Oct|Nov|Dec)[a-z]*\.?"
# Where a value ends and a label OCR glued to it begins: a capitalised word right after a digit, unless it is
# a month followed by a year or day ("26Jul2024", "3 March 2025").
_GLUED_LABEL_RE = re.compile(rf"(?<=\d)(?=[A-Z][a-z])(?!{_MONTH}\s*\d)")
_GLUED_DATE_RE = re.compile(rf"(\d{{1,2}})\s*({_MONTH})\s*(\d{{2,4}})")


def split_glued_label(value: str) -> str:
    """``value`` without the next label OCR glued to it ("25134Tax ID": "25134"); a date's month stays.

    Args:
        value: a value as read.
    """
    return _GLUED_LABEL_RE.split(value)[0]


def date_spaced(value: str) -> str:
    """A date whose words OCR glued, spaced again: "26Jul2024" -> "26 Jul 2024"; anything else unchanged.

    Args:
        value: a value as read.
    """
    m = _GLUED_DATE_RE.fullmatch(value)
    return " ".join(m.groups()) if m else value


def fix_prefix(value: str, key: str) -> str:
    """Undo OCR's ``0``-for-``O`` in a value that starts with a word of its key ("PO Number": "P0381030").

    Args:
        value: a value as read.
        key: the key it was read for.
    """
    for word in re.findall(r"[a-z]{2,4}", key.lower()):
        if "o" not in word:
            continue
        misread = word.upper().replace("O", "0")
        if value.upper().startswith(misread) and value[: len(word)].upper() != word.upper():
            return word.upper() + value[len(word) :]
    return value
