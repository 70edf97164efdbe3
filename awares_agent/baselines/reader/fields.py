"""Fields: the value a key labels, found after it in its box, to its right, under it, or (a bar's) over it.

A form's field ("Invoice No: 48213"), a receipt's line ("Espresso .... 3.20") and a bar's printed value all
come down to a key and the text placed beside it; :func:`read_field` finds the key
(:func:`~awares_agent.baselines.reader.keys.find_key`) and ranks the candidates around it by how well they
fit the question, then by distance.
"""

from __future__ import annotations

from collections.abc import Sequence

from awares_agent.baselines.reader.config import ReaderConfig
from awares_agent.baselines.reader.keys import GENERIC_TAIL, Match, find_key, match_key, stem
from awares_agent.baselines.reader.ocr import TextBox
from awares_agent.baselines.reader.questions import Query
from awares_agent.baselines.reader.reading import Reading, fit, next_to, plausible
from awares_agent.baselines.reader.text import (
    COLON_MISREADS,
    DIGIT_RE,
    clean_value,
    date_spaced,
    fix_prefix,
    norm,
    split_glued_label,
    tokens,
)
from awares_agent.boxes import h_overlap, v_overlap

__all__ = ["read_field", "right_of", "value_for"]


def right_of(
    anchor: TextBox,
    boxes: Sequence[TextBox],
    exclude: Sequence[TextBox],
    config: ReaderConfig,
    *,
    max_gap: float | None,
) -> list[TextBox]:
    """Boxes on the anchor's line to its right, nearest first.

    Args:
        anchor: the key's box.
        boxes: the text boxes.
        exclude: boxes that are not values (other keys).
        config: the reader's thresholds.
        max_gap: the farthest a box may start past the anchor's end, in original pixels (``None``: any).
    """
    c = config
    a = anchor.box
    row = [
        b
        for b in boxes
        if b is not anchor
        and all(b is not e for e in exclude)
        and v_overlap(a, b.box) >= c.same_line_overlap
        and b.box[0] >= a[2] - c.right_of_slack * anchor.height
        and (max_gap is None or b.box[0] - a[2] <= max_gap)
        and b.height <= c.line_height_ratio * anchor.height
        and anchor.height <= c.line_height_ratio * b.height
    ]
    return sorted(row, key=lambda b: b.box[0])


def _below(
    anchor: TextBox, boxes: Sequence[TextBox], exclude: Sequence[TextBox], config: ReaderConfig
) -> list[TextBox]:
    """Boxes right under the anchor (within about a line), nearest first."""
    c = config
    a, h = anchor.box, anchor.height
    col = [
        b
        for b in boxes
        if b is not anchor
        and all(b is not e for e in exclude)
        and b.box[1] >= a[1] + c.below_top * h
        and b.cy > anchor.cy + c.below_centre * h
        and b.box[1] <= a[3] + c.below_reach * h
        and (h_overlap(a, b.box) >= c.column_overlap or abs(b.box[0] - a[0]) <= c.below_indent * h)
    ]
    return sorted(col, key=lambda b: b.box[1])


def _above(
    anchor: TextBox, boxes: Sequence[TextBox], exclude: Sequence[TextBox], config: ReaderConfig
) -> list[TextBox]:
    """Words with digits above the anchor in its column (a bar's value over its label), nearest first."""
    c = config
    a, h = anchor.box, anchor.height
    col = [
        t
        for b in boxes
        if b is not anchor and all(b is not e for e in exclude) and b.box[3] <= a[1] + c.above_slack * h
        for t in tokens(b)
        if h_overlap(a, t.box) >= c.column_overlap and DIGIT_RE.search(t.text)
    ]
    return sorted(col, key=lambda b: -b.box[3])


def _is_label(b: TextBox, like: TextBox, config: ReaderConfig) -> bool:
    """Whether ``b`` looks like another label of the same kind as ``like``: no digits, about its height."""
    return (
        not DIGIT_RE.search(b.text)
        and config.label_height_min * like.height <= b.height <= config.label_height_max * like.height
    )


def _side_by_side(label: TextBox, boxes: Sequence[TextBox], config: ReaderConfig) -> int:
    """How many label-like boxes share ``label``'s line."""
    return sum(
        1
        for b in boxes
        if b is not label
        and v_overlap(label.box, b.box) >= config.bar_row_overlap
        and _is_label(b, label, config)
        and abs(b.cx - label.cx) < config.bar_row_reach * label.height
    )


def _stacked(label: TextBox, boxes: Sequence[TextBox], config: ReaderConfig) -> int:
    """How many label-like boxes share ``label``'s column, within a few lines."""
    return sum(
        1
        for b in boxes
        if b is not label
        and h_overlap(label.box, b.box) >= config.column_overlap
        and _is_label(b, label, config)
        and abs(b.cy - label.cy) < config.bar_column_reach * label.height
    )


def value_for(
    m: Match, boxes: Sequence[TextBox], keys: Sequence[TextBox], query: Query, config: ReaderConfig
) -> Reading | None:
    """The value labelled by the key match ``m``: after it in its box, to its right, under it (or over it).

    Candidates are ranked by how well they fit the question (digits; an amount for "how much"), then by
    distance in line heights, so a stacked field's value beats a far-away neighbour, and a receipt's price
    at the end of its line beats the next item under it.

    Args:
        m: where the key was found.
        boxes: the text boxes.
        keys: boxes that hold nothing but a key (not values).
        query: the parsed question.
        config: the reader's thresholds.

    Returns:
        The reading, or ``None`` when no candidate holds text.
    """
    c = config
    anchor = m.box
    h = max(1e-6, anchor.height)
    options: list[tuple[int, float, str, TextBox]] = []  # (type fit, -distance, value, box)
    rest = clean_value(anchor.text[m.end :])
    # OCR reads a small colon glued to its key as "1" or "l" ("Due Date1"): not a value when one follows.
    colon = rest in COLON_MISREADS and anchor.text[m.end : m.end + 1] == rest
    if colon and right_of(anchor, boxes, keys, c, max_gap=c.colon_gap * h):
        rest = ""
    if norm(rest)[0]:
        options.append((fit(rest, query.money), 0.0, rest, anchor))
    if query.kind == "bar":
        label = m.span
        # Vertical bars put their labels side by side on one line (the value over the bar, above its label);
        # horizontal bars stack them in a column (the value at the bar's end, right of its label).
        vertical = _side_by_side(label, boxes, c) >= _stacked(label, boxes, c)
        for b in _above(label, boxes, keys, c)[:1]:
            options.append(
                (
                    fit(b.text, query.money) + 1 + vertical,
                    -(label.box[1] - b.box[3]) / h,
                    clean_value(b.text),
                    b,
                )
            )
        for b in right_of(anchor, boxes, keys, c, max_gap=None)[:1]:
            if DIGIT_RE.search(b.text):
                options.append(
                    (
                        fit(b.text, query.money) + 1 + (not vertical),
                        -(b.box[0] - anchor.box[2]) / h,
                        b.text,
                        b,
                    )
                )
    for b in right_of(anchor, boxes, keys, c, max_gap=c.right_reach * h)[: c.right_candidates]:
        options.append((fit(b.text, query.money), -(b.box[0] - anchor.box[2]) / h, clean_value(b.text), b))
    for b in _below(anchor, boxes, keys, c)[:1]:
        gap = (b.box[1] - anchor.box[3]) / h
        options.append((fit(b.text, query.money), -max(0.0, gap) - c.below_penalty, clean_value(b.text), b))
    options = [o for o in options if norm(o[2])[0]]
    if not options:
        return None

    def rank(o: tuple[int, float, str, TextBox]) -> tuple[bool, int, float]:
        weight = o[0] if query.kind == "bar" or query.money else 0
        return (plausible(query, o[2], c), weight, o[1])

    _, distance, value, box = max(options, key=rank)
    if query.kind == "bar":
        distance = 0.0  # a bar's value lies a bar's length from its label
    # OCR glues a value to the next label on its line ("25134Tax ID"): the label is not part of it. A month
    # after a day is not a label: OCR glues a date's words too ("26Jul2024").
    value = date_spaced(split_glued_label(clean_value(value)))
    value = fix_prefix(clean_value(value), query.key)
    return Reading(value, [box], [anchor], m.score, gap=-distance)


def read_field(
    query: Query, boxes: Sequence[TextBox], config: ReaderConfig, *, loose: bool = False
) -> Reading | None:
    """The value of the field (or bar) ``query`` names.

    Args:
        query: the parsed question (``field`` or ``bar``; a ``cell`` falls back here without its header).
        boxes: the text boxes, in original pixels.
        config: the reader's thresholds.
        loose: accept keys read with many errors (to locate, not to answer).

    Returns:
        The reading (without an answer but with the key and where its value should be, when the key has no
        value); ``None`` when the key is not found.
    """
    c = config
    matches = find_key(query.key, boxes, c, loose=loose)
    if not matches:
        # Content words are too weak a clue in text read far below its legible size.
        return _read_words(query, boxes, c) if query.words and not loose else None
    # Boxes that hold nothing but a label are not values; "REF-8S58G" matches "reference" but is one.
    keys = [m.box for m in matches if not norm(clean_value(m.box.text[m.end :]))[0]]
    found: list[Reading] = []
    for m in matches[: c.key_candidates]:
        reading = value_for(m, boxes, keys, query, c)
        if reading is not None:
            found.append(reading)
    if found:
        # Among the keys that match about as well as the best, an amount when one is asked for ("How much
        # is due?": "Amount Due", not "Due Date").
        top = max(r.score for r in found)
        close = [r for r in found if r.score >= top - c.key_tie]
        return max(
            close,
            key=lambda r: (
                plausible(query, r.answer or "", c),
                query.money and fit(r.answer or "", True) == 2,
                r.score,
            ),
        )
    anchor = matches[0].box
    return Reading(None, [], [anchor], matches[0].score, where=next_to([anchor], c))


def _read_words(query: Query, boxes: Sequence[TextBox], config: ReaderConfig) -> Reading | None:
    """The value next to the box that holds most of the question's content words (``"issued"`` finds
    ``"Issue Date"``)."""
    c = config
    stems = [
        s
        for s in dict.fromkeys(stem(w, c) for w in query.words if w not in GENERIC_TAIL)
        if len(s) >= c.word_min_chars
    ]
    best: tuple[tuple[int, float], TextBox, int] | None = None
    for box in boxes:
        hits = [
            (len(s), m) for s in stems if (m := match_key(s, box, c)) is not None and m.score >= c.word_floor
        ]
        total = sum(n for n, _ in hits)
        if total < c.words_min_chars:
            continue
        rank = (total, total / max(1, len(norm(box.text.split(":")[0])[0])))
        if best is None or rank > best[0]:
            best = (rank, box, max(m.end for _, m in hits))
    if best is None:
        return None
    _, box, end = best
    return value_for(Match(box, c.words_score, end), boxes, [box], query, c) or Reading(
        None, [], [box], c.words_score
    )
