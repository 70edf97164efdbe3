"""Documents: a form on paper (sometimes on a desk), the evidence one labelled field among many.

Distractors are other fields, paragraphs, rules and stamps; the question asks for the evidence field's value.
"""

from __future__ import annotations

from awares_agent.boxes import union_boxes
from awares_agent.evals.synthetic.builder import DrawnSample, SampleContext, paragraph
from awares_agent.evals.synthetic.fonts import REGULAR_STYLES, Font, line_height, text_width
from awares_agent.evals.synthetic.layout import Block, Page, place_evidence
from awares_agent.evals.synthetic.vocabulary import (
    COMPANIES,
    DESKS,
    FIELD_TEMPLATES,
    FORM_FIELDS,
    INKS,
    PAPERS,
    TITLES,
    has_letters,
    normalize,
)


def _field_block(
    ctx: SampleContext, label: str, value: str, label_font: Font, value_font: Font, ink: str, label_ink: str
) -> Block:
    """A labelled field in one of several layouts; its evidence is the union of label and value."""
    rng = ctx.rng
    block = Block()
    style = rng.choice(("colon", "tab", "stacked", "boxed"))
    lh = line_height(value_font)
    if style == "colon":
        lb = block.text(0, 0, f"{label}:", label_font, label_ink)
        vb = block.text(lb[2] + text_width(" ", value_font), 0, value, value_font, ink)
    elif style == "tab":
        lb = block.text(0, 0, label, label_font, label_ink)
        gap = int(value_font.size * rng.uniform(1.5, 4)) if hasattr(value_font, "size") else 30
        vb = block.text(lb[2] + gap, 0, value, value_font, ink)
    elif style == "stacked":
        lb = block.text(0, 0, label, label_font, label_ink)
        vb = block.text(0, lb[3] + max(2, lh // 4), value, value_font, ink)
    else:
        lb = block.text(0, 0, f"{label}:", label_font, label_ink)
        pad = max(3, lh // 4)
        x = lb[2] + 2 * pad
        w = text_width(value, value_font) + 2 * pad
        block.rect((x, -pad // 2, x + w + int(rng.uniform(0, 3) * lh), lh + pad), outline="#777777", width=1)
        vb = block.text(x + pad, 0, value, value_font, ink)
    block.evidence = union_boxes([lb, vb])
    return block


def draw_document(ctx: SampleContext) -> DrawnSample:
    """Draw a document sample.

    Args:
        ctx: the sample's context.
    """
    rng = ctx.rng
    w, h = ctx.size
    paper = rng.choice(PAPERS)
    if rng.random() < 0.4:
        page = Page(ctx.size, rng.choice(DESKS))
        inset = rng.randint(20, 60)
        page.draw.rectangle((inset, inset, w - inset, h - inset), fill=paper)
        page.area = (inset + 24, inset + 24, w - inset - 24, h - inset - 24)
    else:
        page = Page(ctx.size, paper, margin=rng.randint(24, 60))
    ink = rng.choice(INKS)
    label_ink = ink if rng.random() < 0.6 else rng.choice(INKS)
    fields = rng.sample(FORM_FIELDS, k=12)
    main = fields[0]
    answer = main.value(rng)
    label_font, value_font = ctx.evidence_fonts(letters=has_letters(answer))
    block = _field_block(ctx, main.label, answer, label_font, value_font, ink, label_ink)
    page.forbidden.append(normalize(answer))
    bbox = place_evidence(page, block, ctx.spot, rng)

    title = Block()
    tfont = ctx.mixed_font(bold=True, size=rng.randint(30, 56))
    tb = title.text(0, 0, rng.choice(TITLES), tfont, rng.choice(INKS))
    title.text(0, tb[3] + 10, rng.choice(COMPANIES), ctx.mixed_font(size=rng.randint(14, 26)), ink)
    ax0, ay0, ax1, ay1 = page.area
    if not page.try_place(title, rng, area=(ax0, ay0, ax1, ay0 + (ay1 - ay0) // 4)):
        page.try_place(title, rng)

    others = iter(fields[1:])

    def field_maker() -> Block | None:
        f = next(others, None)
        if f is None:
            return None
        font = ctx.mixed_font()
        lfont = ctx.fonts.font(ctx.fonts.bold(rng.choice(ctx.fonts.styles(REGULAR_STYLES))), font.size)
        return _field_block(ctx, f.label, f.value(rng), lfont, font, ink, label_ink)

    def rule_maker() -> Block:
        b = Block()
        b.line(
            [(0, 0), (rng.randint(150, max(200, (ax1 - ax0) // 2)), 0)], rng.choice(INKS), rng.randint(1, 3)
        )
        return b

    def stamp_maker() -> Block:
        b = Block()
        colour = rng.choice(("#c62828", "#1565c0", "#2e7d32"))
        font = ctx.mixed_font(bold=True, size=rng.randint(22, 40))
        tb = b.text(0, 0, rng.choice(("PAID", "APPROVED", "COPY", "RECEIVED", "DRAFT")), font, colour)
        b.rect((tb[0] - 12, tb[1] - 10, tb[2] + 12, tb[3] + 10), outline=colour, width=3)
        return b

    page.fill(
        rng,
        [
            (4, field_maker),
            (4, lambda: paragraph(ctx, ink, rng.randint(250, max(300, (ax1 - ax0) // 2)))),
            (1, rule_maker),
            (0.5, stamp_maker),
        ],
        max_blocks=22,
    )
    templates = (*main.questions, *FIELD_TEMPLATES)
    question = rng.choice(templates).format(label=main.label)
    return DrawnSample(page.img, question, answer, bbox)
