"""Charts: bar charts (vertical or horizontal) on a dashboard; the evidence is one bar's printed value.

The evidence box holds the bar's category label and value. Distractors are other charts, KPI tiles and
paragraphs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from awares_agent.boxes import Box, union_boxes
from awares_agent.evals.synthetic.builder import DrawnSample, SampleContext, paragraph
from awares_agent.evals.synthetic.fonts import Font, line_height, text_width
from awares_agent.evals.synthetic.layout import Block, Page, place_evidence
from awares_agent.evals.synthetic.vocabulary import (
    ACCENTS,
    CHART_CATEGORIES,
    CHART_TEMPLATES,
    CHART_TITLES,
    INKS,
    distinct_values,
    normalize,
    random_chart_value,
)


def _bar_chart(
    ctx: SampleContext,
    cats: Sequence[str],
    values: Sequence[tuple[str, float]],
    cat_font: Font,
    value_font: Font,
    target: int | None,
    title: str,
) -> Block:
    """A vertical or horizontal bar chart on a panel; ``target`` is the evidence bar's index."""
    rng = ctx.rng
    ink = rng.choice(INKS[:5])
    tick_font = ctx.mixed_font(bold=False, size=rng.choice((8, 9, 10, 12, 14)))
    title_font = ctx.mixed_font(bold=True, size=rng.randint(14, 36))
    colours = [rng.choice(ACCENTS)] * len(cats) if rng.random() < 0.5 else rng.sample(ACCENTS, len(cats))
    vmax = max(v for _, v in values)
    step = 10 ** math.floor(math.log10(vmax))
    top = math.ceil(vmax * 1.15 / step) * step
    block = Block()
    tb = block.text(0, 0, title, title_font, ink)
    y0 = tb[3] + 12
    lh_cat, lh_val = line_height(cat_font), line_height(value_font)
    boxes: list[tuple[Box, Box]] = []
    if rng.random() < 0.6:  # vertical bars
        slot = (
            max(max(text_width(c, cat_font) for c in cats), max(text_width(v, value_font) for v, _ in values))
            + 16
        )
        slot = max(slot, 30)
        plot_h = rng.randint(140, 380)
        ticks = [f"{top * k / 4:g}" for k in range(5)]
        axis_x = max(text_width(t, tick_font) for t in ticks) + 10
        base = y0 + lh_val + 8 + plot_h
        for k, t in enumerate(ticks):
            ty = base - plot_h * k / 4
            block.text(
                axis_x - 6 - text_width(t, tick_font), ty - line_height(tick_font) / 2, t, tick_font, ink
            )
            block.line([(axis_x, ty), (axis_x + slot * len(cats) + 10, ty)], "#dddddd", 1)
        block.line([(axis_x, base - plot_h - 4), (axis_x, base)], ink, 2)
        block.line([(axis_x, base), (axis_x + slot * len(cats) + 10, base)], ink, 2)
        for i, (cat, (vtext, v)) in enumerate(zip(cats, values, strict=True)):
            x = axis_x + 10 + i * slot
            bh = max(2, int(plot_h * v / top))
            block.rect((x + 4, base - bh, x + slot - 4, base), fill=colours[i])
            vb = block.text(
                x + (slot - text_width(vtext, value_font)) / 2, base - bh - lh_val - 2, vtext, value_font, ink
            )
            cb = block.text(x + (slot - text_width(cat, cat_font)) / 2, base + 6, cat, cat_font, ink)
            boxes.append((cb, vb))
        if rng.random() < 0.5:
            block.text(
                0, base + lh_cat + 14, rng.choice(("Units", "Count", "Value", "Total")), tick_font, ink
            )
    else:  # horizontal bars
        label_w = max(text_width(c, cat_font) for c in cats) + 12
        bar_h = max(lh_cat, lh_val) + 8
        plot_w = rng.randint(220, 520)
        for i, (cat, (vtext, v)) in enumerate(zip(cats, values, strict=True)):
            y = y0 + i * (bar_h + 8)
            cb = block.text(
                label_w - 8 - text_width(cat, cat_font), y + (bar_h - lh_cat) / 2, cat, cat_font, ink
            )
            bw = max(2, int(plot_w * v / top))
            block.rect((label_w, y, label_w + bw, y + bar_h), fill=colours[i])
            vb = block.text(label_w + bw + 6, y + (bar_h - lh_val) / 2, vtext, value_font, ink)
            boxes.append((cb, vb))
        block.line([(label_w, y0 - 4), (label_w, y0 + len(cats) * (bar_h + 8))], ink, 2)
    assert block.bounds is not None
    x0, by0, x1, by1 = block.bounds
    panel = Block()
    panel.rect((x0 - 16, by0 - 16, x1 + 16, by1 + 16), fill="#ffffff", outline="#cccccc", width=1, radius=8)
    panel.ops.extend(block.ops)
    panel.texts.extend(block.texts)
    panel.grow(block.bounds)
    if target is not None:
        panel.evidence = union_boxes(boxes[target])
    return panel


def draw_chart(ctx: SampleContext) -> DrawnSample:
    """Draw a chart sample.

    Args:
        ctx: the sample's context.
    """
    rng = ctx.rng
    page = Page(ctx.size, rng.choice(("#f4f6f8", "#eceff1", "#ffffff", "#f5f5f0", "#e8eef5")), margin=24)
    cat_pool = list(CHART_CATEGORIES)
    rng.shuffle(cat_pool)
    label_font, value_font = ctx.evidence_fonts(letters=False)  # numbers
    n = rng.randint(4, 7) if ctx.needs_crop else rng.randint(3, 5)
    cats = [cat_pool.pop() for _ in range(n)]
    style = rng.randrange(3)
    texts = distinct_values(rng, lambda: random_chart_value(rng, style)[0], n, avoid=cats)
    values = [(t, float(t.replace(",", ""))) for t in texts]
    target = rng.randrange(n)
    block = _bar_chart(ctx, cats, values, label_font, value_font, target, rng.choice(CHART_TITLES))
    answer = values[target][0]
    page.forbidden.append(normalize(answer))
    bbox = place_evidence(page, block, ctx.spot, rng)

    def other_chart() -> Block | None:
        k = rng.randint(3, 6)
        if len(cat_pool) < k:
            return None
        o_cats = [cat_pool.pop() for _ in range(k)]
        o_style = rng.randrange(3)
        o_texts = distinct_values(rng, lambda: random_chart_value(rng, o_style)[0], k, avoid=[answer])
        o_values = [(t, float(t.replace(",", ""))) for t in o_texts]
        font = ctx.mixed_font(bold=False, size=rng.choice((9, 10, 12, 14, 18, 24, 30)))
        return _bar_chart(ctx, o_cats, o_values, font, font, None, rng.choice(CHART_TITLES))

    def kpi() -> Block:
        b = Block()
        lf = ctx.mixed_font(size=rng.randint(10, 20))
        vf = ctx.mixed_font(bold=True, size=rng.randint(24, 48))
        lb = b.text(
            14, 12, rng.choice(("Revenue", "Users", "Orders", "Uptime", "Growth", "Churn")), lf, "#555555"
        )
        vb = b.text(14, lb[3] + 8, f"{rng.uniform(1, 99):.1f}{rng.choice(('k', 'M', '%'))}", vf, "#111111")
        b.ops.insert(0, ("rect", (0, 0, max(lb[2], vb[2]) + 14, vb[3] + 12), "#ffffff", "#cccccc", 1, 6))
        b.grow((0, 0, max(lb[2], vb[2]) + 14, vb[3] + 12))
        return b

    ink = rng.choice(INKS)
    ax0, _, ax1, _ = page.area
    page.fill(
        rng,
        [
            (3, other_chart),
            (2, kpi),
            (2, lambda: paragraph(ctx, ink, rng.randint(220, max(260, (ax1 - ax0) // 3)))),
        ],
        max_blocks=14,
    )
    question = rng.choice(CHART_TEMPLATES).format(cat=cats[target])
    return DrawnSample(page.img, question, answer, bbox)
