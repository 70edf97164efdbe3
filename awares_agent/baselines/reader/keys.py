"""Finding a question's key in OCR'd text: spellings and synonyms, fuzzy matches, and how well they score.

A key ("invoice number") is looked for as a label: its spellings (``"invoiceno"``, ``"invoice#"``...) are
matched against each line's normalised characters with a few errors allowed (many more when ``loose``, to
locate text read far below its legible size), and scored by similarity, how much of the line's label it
covers, and whether it stands as words of its own.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from awares_agent.baselines.reader.config import DEFAULT_CONFIG, ReaderConfig
from awares_agent.baselines.reader.ocr import TextBox
from awares_agent.baselines.reader.text import norm
from awares_agent.fuzzy import substring_distance

__all__ = ["GENERIC_TAIL", "SYNONYMS", "Match", "find_key", "match_key", "similarity", "stem", "variants"]

SYNONYMS: list[tuple[str, ...]] = [
    ("number", "no", "#", "num", "nr"),
    ("telephone", "phone", "tel"),
    ("quantity", "qty"),
    ("amount", "amt"),
    ("reference", "ref"),
    ("identifier", "id"),
    ("address", "addr"),
    ("account", "acct"),
]
"""Words a label may print in another spelling; each group's words stand for one another."""

GENERIC_TAIL = frozenset({"number", "code", "amount", "value", "id", "no", "name", "text", "entry"})
"""Words a label often leaves out: "reference code" is printed "Reference", "total amount" "TOTAL"."""


@lru_cache(maxsize=4096)
def variants(
    key: str, tail_weight: float, tail_min_chars: int, max_spellings: int
) -> tuple[tuple[str, float], ...]:
    """Normalised spellings of a key with a weight: the key, its synonyms, and without a generic last word.

    Args:
        key: the key.
        tail_weight: the weight of a spelling without the generic last word
            (:attr:`ReaderConfig.generic_tail_weight`).
        tail_min_chars: the letters the other words must hold for it to be dropped
            (:attr:`ReaderConfig.generic_tail_min_chars`).
        max_spellings: the most spellings kept (:attr:`ReaderConfig.key_max_spellings`).
    """
    words = [w for w in re.split(r"[\s_\-/]+", key.lower()) if w and w not in ("the", "a", "an")]
    if not words:
        return ()
    out: dict[str, float] = {}

    def expand(options: list[list[str]], weight: float) -> None:
        spellings = [""]
        for group in options:
            spellings = [s + norm(w)[0] for s in spellings for w in group][:max_spellings]
        for s in spellings:
            if s and out.get(s, -1.0) < weight:
                out[s] = weight

    groups = [list(next((g for g in SYNONYMS if w.strip(".") in g), (w,))) for w in words]
    expand(groups, 1.0)
    if len(words) > 1 and words[-1].strip(".") in GENERIC_TAIL and len("".join(words[:-1])) >= tail_min_chars:
        expand(groups[:-1], tail_weight)
    return tuple(out.items())


def _variants(key: str, config: ReaderConfig) -> tuple[tuple[str, float], ...]:
    return variants(key, config.generic_tail_weight, config.generic_tail_min_chars, config.key_max_spellings)


@dataclass(frozen=True)
class Match:
    """Where a key was found in a text box: ``box.text[start:end]``.

    Attributes:
        box: the box.
        score: how well the key matched (higher is better).
        end: the index after the key's last character in ``box.text``.
        start: the index of its first character.
    """

    box: TextBox
    score: float
    end: int
    start: int = 0

    @property
    def span(self) -> TextBox:
        """The part of the box that holds the key."""
        return self.box.part(self.start, self.end)


def _word_start(text: str, i: int) -> bool:
    """Whether a word starts at ``text[i]`` (spaces are lost when OCR glues words, but case often tells)."""
    return i <= 0 or not text[i - 1].isalpha() or (text[i - 1].islower() and text[i].isupper())


def _word_end(text: str, i: int) -> bool:
    """Whether a word ends just before ``text[i]``."""
    return i >= len(text) or not text[i].isalpha() or (text[i - 1].islower() and text[i].isupper())


def match_key(key: str, box: TextBox, config: ReaderConfig, *, loose: bool = False) -> Match | None:
    """How well ``key`` occurs in ``box`` as a label (``None`` if it does not).

    Args:
        key: the key.
        box: the line.
        config: the reader's thresholds.
        loose: allow the many errors of text read far below its legible size (localisation only).
    """
    c = config
    text, index = norm(box.text)
    if not text:
        return None
    label_len = len(norm(box.text.split(":")[0])[0]) or len(text)
    best: Match | None = None
    spellings = _variants(key, c)
    if loose and any(w < 1 for _, w in spellings):
        # Garbled text matches "invoice number" within its many allowed errors in "PO Number": only the
        # key's distinctive part ("invoice") locates it.
        spellings = tuple((v, w) for v, w in spellings if w < 1)
    for variant, weight in spellings:
        m = len(variant)
        if m <= c.short_key_chars:
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
            # Loose: up to a share of a long key's characters wrong, one of a short one's ("riga" is not
            # "lima").
            allowed = (
                (max(1, round(c.loose_error_share * m)) if m >= c.loose_long_key_chars else 1)
                if loose
                else (1 if m <= c.strict_long_key_chars else max(2, m // c.strict_chars_per_error))
            )
            if dist > allowed or end <= start:
                continue
            if loose and start > c.loose_max_start:
                continue  # garbled text matches anywhere inside a long line: only a line's start counts
            if dist and start > 0 and len(text) > c.label_line_factor * m:
                continue  # a label starts its line: a near-miss inside a sentence is another word
            if dist and start > 0 and box.px >= c.legible_px and box.confidence >= c.legible_confidence:
                continue  # legible text is read right: "contact" inside a sentence is not "contract"
        sim = 1 - dist / m
        coverage = min(1.0, m / max(label_len, 1))
        score = weight * sim + c.coverage_weight * coverage
        if not _word_start(box.text, index[start]):
            score -= c.inside_word_penalty  # inside a longer word: "total" in "subtotal"
        elif not dist and not _word_end(box.text, index[end - 1] + 1):
            score -= c.inside_word_penalty  # the start of a longer word: "stand" in "standard"
        score -= c.mid_line_penalty * (start > 0)
        if best is None or score > best.score:
            best = Match(box, score, index[end - 1] + 1, index[start])
    return best


def similarity(key: str, text: str, config: ReaderConfig) -> float:
    """A loose similarity in [0, 1] between a key and any part of a (possibly garbled) text.

    Args:
        key: the key.
        text: the text.
        config: the reader's thresholds (the key's spellings).
    """
    target, _ = norm(text)
    if not target:
        return 0.0
    scores = [
        1 - substring_distance(v, target, last=True)[0] / len(v) for v, _ in _variants(key, config) if v
    ]
    return max(scores, default=0.0)


def stem(word: str, config: ReaderConfig) -> str:
    """``word`` without an ending ("issued": "issu"), when ``stem_min_chars`` letters remain.

    Args:
        word: a question's word.
        config: the reader's thresholds.
    """
    for suffix in ("ing", "ed", "es", "s"):
        if len(word) - len(suffix) >= config.stem_min_chars and word.endswith(suffix):
            return word[: -len(suffix)]
    return word


def find_key(
    key: str, boxes: Sequence[TextBox], config: ReaderConfig = DEFAULT_CONFIG, *, loose: bool = False
) -> list[Match]:
    """Every box where ``key`` is found as a label, best match first.

    Args:
        key: the key (nothing is found for an empty one).
        boxes: the text boxes.
        config: the reader's thresholds (``key_floor``, ``loose_key_floor``).
        loose: match as :func:`match_key` does when loose.
    """
    if not key:
        return []
    floor = config.loose_key_floor if loose else config.key_floor
    matches = [
        m for b in boxes if (m := match_key(key, b, config, loose=loose)) is not None and m.score >= floor
    ]
    return sorted(matches, key=lambda m: -m.score)
