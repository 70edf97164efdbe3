"""Tables: a cell read where its row's label and its column's header cross, and blocks of small text that
may be the table a question is about.

:func:`read_cell` finds the row label and the column header (:func:`~awares_agent.baselines.reader.keys.
find_key`), and reads the row's text that falls in the header's column. :func:`text_blocks` groups text
into blocks of lines (a table's rows, a receipt's items); :func:`locate_table` picks, among blocks too
small to read, the one likeliest to hold the row and the column (by keyword spotting).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import replace

from PIL import Image

from awares_agent.baselines.reader.config import DEFAULT_CONFIG, ReaderConfig
from awares_agent.baselines.reader.fields import read_field
from awares_agent.baselines.reader.keys import find_key
from awares_agent.baselines.reader.keywords import box_patch, key_likelihood
from awares_agent.baselines.reader.ocr import TextBox
from awares_agent.baselines.reader.questions import Query
from awares_agent.baselines.reader.reading import Reading
from awares_agent.baselines.reader.text import DIGIT_RE, MONEY_RE, clean_value, is_sentence, norm, tokens
from awares_agent.boxes import Box, clip, union_boxes, v_overlap
from awares_agent.tools.box_mapping import crops_covering
from awares_agent.tools.crop_sets import ALL, CropSet

__all__ = ["is_tabular", "locate_table", "read_cell", "text_blocks"]

_WHOLE_VALUE_RE = re.compile(r"\d[\d,]*[.,]\d\d|\d{1,3}(?:,\d{3})+")


def _joins(a: TextBox, b: TextBox, config: ReaderConfig) -> str | None:
    """The separator if ``a`` and ``b`` (neighbouring tokens, ``a`` first) are one cell's text, else ``None``.

    Tokens cut out of one word (:func:`~awares_agent.baselines.reader.text.tokens` splits "BQF9T" at the
    digit) join with nothing, unless both are whole values OCR glued ("82,33136,624"); words of one cell, or
    a number OCR split ("1, 941"), join with a space; never two values side by side, which OCR reads as one
    line when columns are narrow ("D-9718 W-7829").
    """
    gap = b.box[0] - a.box[2]
    if abs(gap) < 1e-6:
        return None if _WHOLE_VALUE_RE.fullmatch(a.text) and _WHOLE_VALUE_RE.fullmatch(b.text) else ""
    if gap > config.word_gap * max(a.height, b.height):
        return None
    if not DIGIT_RE.search(a.text) and not DIGIT_RE.search(b.text):
        return " "
    if re.fullmatch(r"\d{1,3}[,.]", a.text) and re.fullmatch(r"\d{3}\S*", b.text):
        return ""
    return None


def _in_span(line: Sequence[TextBox], span: tuple[float, float], centre: float, config: ReaderConfig) -> str:
    """The text of the tokens centred in the column ``span``; a token wider than the span is cut to it.

    Only the run of tokens around the one nearest the header's ``centre``, with word gaps between them, is
    kept: text beside the table on the same line (a paragraph, another table) is not part of the cell.
    """
    inside = sorted((t for t in line if span[0] <= t.cx < span[1]), key=lambda t: t.box[0])
    if inside:
        k = min(range(len(inside)), key=lambda i: abs(inside[i].cx - centre))
        lo = hi = k
        while lo > 0 and _joins(inside[lo - 1], inside[lo], config) is not None:
            lo -= 1
        while hi + 1 < len(inside) and _joins(inside[hi], inside[hi + 1], config) is not None:
            hi += 1
        text = inside[lo].text
        for a, b in zip(inside[lo:hi], inside[lo + 1 : hi + 1], strict=True):
            text += (_joins(a, b, config) or "") + b.text
        return text
    for t in line:  # one glued token over several columns: keep the characters in this one
        x0, x1 = t.box[0], t.box[2]
        if x0 < span[0] < span[1] < x1 or x0 < (span[0] + span[1]) / 2 < x1:
            n = len(t.text)
            step = (x1 - x0) / max(1, n)
            chars = [c for i, c in enumerate(t.text) if span[0] <= x0 + (i + 0.5) * step < span[1]]
            return "".join(chars)
    return ""


def read_cell(
    query: Query, boxes: Sequence[TextBox], config: ReaderConfig, *, loose: bool = False
) -> Reading | None:
    """The cell of ``query``'s row (``key``) and column (``column``).

    Without a header above the row, the row's value as a field's, located anywhere along the row (and
    trusted, on a receipt, when it is the only amount on its line).

    Args:
        query: the parsed question (``kind="cell"``).
        boxes: the text boxes, in original pixels.
        config: the reader's thresholds.
        loose: accept keys read with many errors (to locate, not to answer).

    Returns:
        The reading; ``None`` when the row's label is not found.
    """
    cfg = config
    rows = find_key(query.key, boxes, cfg, loose=loose)
    columns = find_key(query.column, boxes, cfg, loose=loose)
    if not rows:
        return None
    best: Reading | None = None
    for r in rows[: cfg.key_candidates]:
        row, label = r.box, r.span
        h = row.height
        heads = [
            c
            for c in columns
            if c.box is not row
            and cfg.header_min_rise * h < row.cy - c.box.cy < cfg.header_max_rise * h
            and c.span.box[0] > label.box[2] - cfg.header_slack * h
            and c.span.box[0] - label.box[2] < cfg.header_reach * h
        ]
        if not heads:
            continue
        # The best-matching header, then the nearest: a cell that looks like a header ("202.81" for
        # "2022") matches less well.
        c = max(heads, key=lambda c: (round(c.score, 2), -(row.cy - c.box.cy)))
        head = c.span
        # The column runs from its header to the next header on the header line.
        header_line = [
            t for b in boxes if v_overlap(c.box.box, b.box) >= cfg.same_line_overlap for t in tokens(b)
        ]
        starts = [t.box[0] for t in header_line if t.box[0] > head.box[0] + 0.5 * (head.box[2] - head.box[0])]
        span_end = min(starts, default=head.box[2] + cfg.column_default_width * h) - cfg.column_gap * h
        span = (head.box[0] - cfg.column_lead * h, span_end)
        line = [
            t
            for b in boxes
            if v_overlap(row.box, b.box) >= cfg.same_line_overlap and b is not c.box
            for t in (tokens(b, r.end) if b is row else tokens(b))
        ]
        value = clean_value(_in_span(line, span, head.cx, cfg))
        score = r.score + c.score
        if norm(value)[0]:
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
    reading = read_field(replace(query, kind="field"), boxes, cfg, loose=loose)
    if reading is None or not reading.anchors:
        return reading
    label = reading.anchors[0]
    line = sorted(
        (b for b in boxes if v_overlap(label.box, b.box) >= cfg.same_line_overlap), key=lambda b: b.box[0]
    )
    right = label.box[2]
    for b in line:
        if b.box[0] >= label.box[0] and b.box[0] - right <= cfg.row_reach * label.height:
            right = max(right, b.box[2])
    where = (label.box[0], label.box[1], right, label.box[3])
    amounts = [b for b in line if b.box[0] >= label.box[0] and MONEY_RE.search(b.text)]
    if query.money and reading.answer and MONEY_RE.search(reading.answer) and len(amounts) == 1:
        # The only amount on its line ("Sourdough ..... 90.52" on a receipt): the cell, whatever its column,
        # however far along the line.
        return replace(reading, gap=0.0)
    return Reading(reading.answer, [], reading.anchors, reading.score, where=where)


def text_blocks(boxes: Sequence[TextBox], config: ReaderConfig = DEFAULT_CONFIG) -> list[list[list[TextBox]]]:
    """Group text boxes into blocks of lines, each line's boxes left to right, the lines top to bottom.

    Boxes on one line (half their height shared, at most four line heights apart) make a line; lines that
    overlap across at least half the narrower one's width, at most a line height apart, make a block: a
    table's rows, a receipt's items, a form's stacked fields. Sentences
    (:func:`~awares_agent.baselines.reader.text.is_sentence`) are left out: a block of them is a paragraph.

    Args:
        boxes: the text boxes.
        config: the reader's thresholds (``same_line_overlap``, ``block_word_gap``, ``block_shared``,
            ``block_pairing``, ``block_min_pairs``).
    """
    cfg = config
    lines: list[list[TextBox]] = []
    for b in sorted((b for b in boxes if not is_sentence(b.text, cfg)), key=lambda b: (b.cy, b.box[0])):
        for line in lines:
            u = union_boxes([x.box for x in line])
            near = (
                b.box[0] - u[2] <= cfg.block_word_gap * b.height
                and u[0] - b.box[2] <= cfg.block_word_gap * b.height
            )
            if near and v_overlap(b.box, u) >= cfg.same_line_overlap:
                line.append(b)
                break
        else:
            lines.append([b])
    spans = [union_boxes([x.box for x in line]) for line in lines]
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
            if shared >= cfg.block_shared * min(a[2] - a[0], b[2] - b[0]) and gap <= max(
                a[3] - a[1], b[3] - b[1]
            ):
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
                        v_overlap(union_boxes([x.box for x in s]), union_boxes([x.box for x in t]))
                        >= cfg.same_line_overlap
                        for t in large
                    )
                    for s in small
                )
                amounts = [all(MONEY_RE.search(x.text) for line in block for x in line) for block in (a, b)]
                if (
                    any(amounts)
                    and not all(amounts)
                    and len(small) >= cfg.block_min_pairs
                    and paired >= cfg.block_pairing * len(small)
                ):
                    blocks[i] = _rows(a + b, cfg)
                    del blocks[j]
                    merged = True
                    break
            if merged:
                break
    return [
        sorted(
            (sorted(line, key=lambda b: b.box[0]) for line in block),
            key=lambda line: union_boxes([b.box for b in line])[1],
        )
        for block in blocks
    ]


def is_tabular(lines: Sequence[Sequence[TextBox]]) -> bool:
    """Whether a block of lines can be a table: at least half its lines have two cells or more, or a
    number; a paragraph OCR garbled too much to be told a sentence has neither.

    Args:
        lines: the block's lines, each its boxes.
    """
    cells = sum(len(line) >= 2 or any(DIGIT_RE.search(b.text) for b in line) for line in lines)
    return 2 * cells >= len(lines)


def _rows(lines: list[list[TextBox]], config: ReaderConfig) -> list[list[TextBox]]:
    """Lines of two columns joined where they share a line."""
    out: list[list[TextBox]] = []
    for line in sorted(lines, key=lambda ln: union_boxes([b.box for b in ln])[1]):
        u = union_boxes([b.box for b in line])
        for o in out:
            if v_overlap(u, union_boxes([b.box for b in o])) >= config.same_line_overlap:
                o.extend(line)
                break
        else:
            out.append(list(line))
    return out


def locate_table(
    query: Query,
    image: Image.Image,
    scale: float,
    size: tuple[int, int],
    hard: Sequence[TextBox],
    crop_set: CropSet,
    config: ReaderConfig,
) -> Box | None:
    """Where the table a cell question is about lies (original pixels), when its labels cannot be read.

    The view's text too small to read is grouped into blocks (:func:`text_blocks`); each block of
    ``table_min_lines`` lines or more that has cells (:func:`is_tabular`) may be the table. The one whose
    first column holds the text likeliest to be the row's label and whose first ``header_lines`` lines hold
    the likeliest column header (:func:`~awares_agent.baselines.reader.keywords.key_likelihood`) is it.

    Args:
        query: the parsed question (``kind="cell"``).
        image: the view's pixels.
        scale: the view's size relative to the original.
        size: the original's size.
        hard: the view's text too small to read, in original pixels.
        crop_set: the agent's crop set.
        config: the reader's thresholds.

    Returns:
        The block's box; ``None`` when there is no such block, or when only the whole image covers it.
    """
    cfg = config
    blocks = [b for b in text_blocks(hard, cfg) if len(b) >= cfg.table_min_lines and is_tabular(b)]
    if not blocks:
        return None

    def likeness(box: TextBox, key: str) -> float:
        score = key_likelihood(box_patch(image, box, scale, cfg), key, config=cfg)
        return cfg.kws_none if score is None else score

    best: tuple[float, Box] | None = None
    for lines in blocks:
        score = max(likeness(line[0], query.key) for line in lines)
        if query.column:
            score += max(likeness(b, query.column) for line in lines[: cfg.header_lines] for b in line)
        if best is None or score > best[0]:
            best = (score, union_boxes([b.box for line in lines for b in line]))
    assert best is not None
    width, height = size
    box = clip(best[1], width, height)
    if ALL in crops_covering(box, crop_set, width, height, tolerance=cfg.crop_tolerance):
        return None
    return box
