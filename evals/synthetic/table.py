"""Tables: a grid of values with a header row and a row-label column; the evidence is one cell.

The evidence box holds the cell, its row label and its column header. Distractors are other tables,
paragraphs and headings.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

from awares_agent.boxes import Box, union_boxes
from awares_agent.evals.synthetic.builder import DrawnSample, SampleContext, paragraph
from awares_agent.evals.synthetic.fonts import Font, line_height, text_width
from awares_agent.evals.synthetic.layout import Block, Page, place_evidence
from awares_agent.evals.synthetic.vocabulary import (
    ACCENTS,
    CHART_TITLES,
    COLUMN_SETS,
    COMPANIES,
    INKS,
    PAPERS,
    ROW_LABELS,
    TABLE_TEMPLATES,
    TITLES,
    distinct_values,
    normalize,
    random_code,
    random_digits,
    random_letters,
)


def _table_block(
    ctx: SampleContext,
    rows: Sequence[str],
    cols: Sequence[str],
    cells: Sequence[Sequence[str]],
    head_font: Font,
    row_font: Font,
    cell_font: Font,
    ink: str,
    target: tuple[int, int] | None = None,
) -> Block:
    """A table with a header row and a row-label column; ``target`` (row, col) sets the evidence."""
    rng = ctx.rng
    size = max(getattr(f, "size", 12) for f in (head_font, row_font, cell_font))
    padx, pady = max(4, int(size * 0.5)), max(2, int(size * 0.3))
    col0 = max(text_width(r, row_font) for r in rows) + 2 * padx
    widths = [
        max(text_width(c, head_font), *(text_width(cells[i][j], cell_font) for i in range(len(rows))))
        + 2 * padx
        for j, c in enumerate(cols)
    ]
    rh = max(line_height(f) for f in (head_font, row_font, cell_font)) + 2 * pady
    total_w = col0 + sum(widths)
    total_h = rh * (len(rows) + 1)
    block = Block()
    accent = rng.choice(ACCENTS)
    header_fill = rng.choice(("#e3e8ef", "#eeeeee", "#dfeee2", "#f3e5d8", None))
    if header_fill:
        block.rect((0, 0, total_w, rh), fill=header_fill)
    if rng.random() < 0.5:
        for i in range(1, len(rows) + 1, 2):
            block.rect((0, i * rh, total_w, (i + 1) * rh), fill="#f4f4f4")
    grid = rng.choice(("full", "rows", "frame"))
    line_colour = rng.choice(("#555555", "#999999", accent))
    for i in range(len(rows) + 2):
        if grid != "frame" or i in (0, 1, len(rows) + 1):
            block.line([(0, i * rh), (total_w, i * rh)], line_colour, 1)
    xs = [0, col0]
    for wj in widths:
        xs.append(xs[-1] + wj)
    if grid == "full":
        for x in xs:
            block.line([(x, 0), (x, total_h)], line_colour, 1)
    head_boxes = [block.text(xs[j + 1] + padx, pady, c, head_font, ink) for j, c in enumerate(cols)]
    row_boxes = [block.text(padx, (i + 1) * rh + pady, r, row_font, ink) for i, r in enumerate(rows)]
    right = rng.random() < 0.5
    cell_boxes: dict[tuple[int, int], Box] = {}
    for i in range(len(rows)):
        for j in range(len(cols)):
            text = cells[i][j]
            x = xs[j + 2] - padx - text_width(text, cell_font) if right else xs[j + 1] + padx
            cell_boxes[i, j] = block.text(x, (i + 1) * rh + pady, text, cell_font, ink)
    if target is not None:
        i, j = target
        block.evidence = union_boxes([head_boxes[j], row_boxes[i], cell_boxes[i, j]])
    return block


def _cell_maker(rng: random.Random) -> tuple[Callable[[], str], bool]:
    """A maker of table cells of one style, and whether its values have letters."""
    style = rng.randrange(4)
    if style == 0:
        return (lambda: f"{rng.randint(1000, 99999):,}"), False
    if style == 1:
        return (lambda: f"{rng.uniform(10, 999):.2f}"), False
    if style == 2:
        return (lambda: f"{random_letters(rng, 1)}-{random_digits(rng, 4)}"), True
    return (lambda: random_code(rng, 5)), True


def draw_table(ctx: SampleContext) -> DrawnSample:
    """Draw a table sample.

    Args:
        ctx: the sample's context.
    """
    rng = ctx.rng
    page = Page(ctx.size, rng.choice(PAPERS), margin=rng.randint(24, 60))
    ink = rng.choice(INKS)
    make, letters = _cell_maker(rng)
    label_font, value_font = ctx.evidence_fonts(letters=letters)
    row_pool = list(ROW_LABELS)
    rng.shuffle(row_pool)
    cols_all = list(rng.choice(COLUMN_SETS))
    if ctx.needs_crop:
        n_rows, n_cols = rng.randint(4, 9), rng.randint(3, len(cols_all))
    else:
        n_rows, n_cols = rng.randint(3, 5), rng.randint(2, min(4, len(cols_all)))
    for _ in range(10):
        rows = [row_pool.pop() for _ in range(n_rows)]
        cols = cols_all[:n_cols]
        cells_flat = distinct_values(rng, make, n_rows * n_cols, avoid=[*rows, *cols])
        cells = [cells_flat[i * n_cols : (i + 1) * n_cols] for i in range(n_rows)]
        target = (rng.randrange(n_rows), rng.randrange(n_cols))
        block = _table_block(ctx, rows, cols, cells, label_font, label_font, value_font, ink, target)
        assert block.bounds is not None
        if block.bounds[2] - block.bounds[0] <= (page.area[2] - page.area[0]) * 0.9 or n_cols == 1:
            break
        n_cols -= 1
        row_pool.extend(rows)
    answer = cells[target[0]][target[1]]
    page.forbidden.append(normalize(answer))
    bbox = place_evidence(page, block, ctx.spot, rng)

    def other_table() -> Block | None:
        k_rows = rng.randint(3, 7)
        if len(row_pool) < k_rows:
            return None
        t_rows = [row_pool.pop() for _ in range(k_rows)]
        t_cols = list(rng.choice(COLUMN_SETS))[: rng.randint(2, 4)]
        flat = distinct_values(rng, _cell_maker(rng)[0], k_rows * len(t_cols), avoid=[answer])
        t_cells = [flat[i * len(t_cols) : (i + 1) * len(t_cols)] for i in range(k_rows)]
        font = ctx.mixed_font(size=rng.choice((9, 10, 12, 14, 16, 20, 24)))
        return _table_block(ctx, t_rows, t_cols, t_cells, font, font, font, rng.choice(INKS))

    def heading() -> Block:
        b = Block()
        b.text(0, 0, rng.choice((*TITLES, *CHART_TITLES, *COMPANIES)), ctx.mixed_font(bold=True), ink)
        return b

    ax0, _, ax1, _ = page.area
    page.fill(
        rng,
        [
            (2, other_table),
            (3, lambda: paragraph(ctx, ink, rng.randint(250, max(300, (ax1 - ax0) // 2)))),
            (1, heading),
        ],
        max_blocks=16,
    )
    row, col = rows[target[0]], cols[target[1]]
    question = rng.choice(TABLE_TEMPLATES).format(row=row, col=col)
    return DrawnSample(page.img, question, answer, bbox)
