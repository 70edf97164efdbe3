"""Receipts: a till receipt on a desk; the evidence is one item's price or the total.

Prices are drawn so that no amount contains another. Distractors are notes, coupons and objects.
"""

from __future__ import annotations

from awares_agent.boxes import union_boxes
from awares_agent.evals.synthetic.builder import DrawnSample, SampleContext, paragraph
from awares_agent.evals.synthetic.fonts import Font, line_height, text_width
from awares_agent.evals.synthetic.layout import Block, Page, place_evidence
from awares_agent.evals.synthetic.vocabulary import (
    DESKS,
    INKS,
    ITEM_TEMPLATES,
    ITEMS,
    STORES,
    TOTAL_TEMPLATES,
    normalize,
    random_code,
)


def draw_receipt(ctx: SampleContext) -> DrawnSample:
    """Draw a receipt sample.

    Args:
        ctx: the sample's context.
    """
    rng = ctx.rng
    page = Page(ctx.size, rng.choice(DESKS), margin=30)
    w, h = ctx.size
    for _ in range(rng.randint(10, 40)):  # wood grain / texture
        y = rng.randint(0, h)
        page.draw.line(
            [(0, y), (w, y + rng.randint(-40, 40))], fill=rng.choice(DESKS), width=rng.randint(1, 4)
        )
    label_font, value_font = ctx.evidence_fonts(letters=False)  # prices
    ink = rng.choice(INKS[:4])
    style = rng.choice(ctx.fonts.styles(("mono", "sans-condensed", "sans", "mono-bold")))
    body_size = value_font.size if rng.random() < 0.7 else ctx.mixed_font().size
    body_font = ctx.fonts.font(style, body_size)
    n_items = rng.randint(3, 5) if not ctx.needs_crop else rng.randint(4, 9)
    store_font = ctx.fonts.font(ctx.fonts.bold(style), max(body_size + 4, rng.randint(18, 40)))
    pitch = int(max(line_height(f) for f in (body_font, label_font, value_font)) * 1.35)
    room = page.area[3] - page.area[1] - int(line_height(store_font) * 1.35) - 2 * max(12, body_size) - 40
    n_items = max(2, min(n_items, room // pitch - 6))  # six more lines: address... THANK YOU
    items = rng.sample(ITEMS, n_items)
    for _ in range(1000):
        prices = [f"{rng.uniform(10, 250):.2f}" for _ in items]
        subtotal = sum(float(p) for p in prices)
        tax = round(subtotal * rng.choice((0.05, 0.07, 0.08, 0.1)), 2)
        money = [*prices, f"{subtotal:.2f}", f"{tax:.2f}", f"{subtotal + tax:.2f}"]
        norms = [normalize(m) for m in money]
        if all(a not in b for i, a in enumerate(norms) for j, b in enumerate(norms) if i != j):
            break
    else:
        raise RuntimeError("could not draw distinct prices")
    ev_index = rng.randrange(n_items) if rng.random() < 0.7 else n_items + 2
    lines: list[tuple[str, str | None, Font, Font]] = []  # left, right, left font, right font
    lines.append((rng.choice(STORES), None, store_font, store_font))
    lines.append(
        (f"{rng.randint(1, 999)} {rng.choice(('Main St', 'High St', 'Oak Ave'))}", None, body_font, body_font)
    )
    lines.append((f"Receipt {random_code(rng, 6)}", None, body_font, body_font))
    labels = [*items, "SUBTOTAL", "TAX", "TOTAL"]
    for k, (lab, price) in enumerate(zip(labels, money, strict=True)):
        if k == ev_index:
            lines.append((lab, price, label_font, value_font))
        else:
            lines.append((lab, price, body_font, body_font))
    lines.append(("THANK YOU", None, body_font, body_font))

    pad = max(12, body_size)
    inner = max(
        text_width(left, lf) + (text_width(right, rf) + 3 * max(lf.size, rf.size) if right else 0)
        for left, right, lf, rf in lines
    )
    width = inner + 2 * pad
    block = Block()
    heights = [max(line_height(lf), line_height(rf)) for _, _, lf, rf in lines]
    total_h = sum(int(hh * 1.35) for hh in heights) + 2 * pad + 20
    paper = rng.choice(("#ffffff", "#fbfbf7", "#f7f5ee"))
    block.rect((6, 6, width + 6, total_h + 6), fill="#3a3a3a")  # a shadow
    block.rect((0, 0, width, total_h), fill=paper)
    y = pad
    for k, ((left, right, lf, rf), lh) in enumerate(zip(lines, heights, strict=True)):
        if right is None:
            block.text((width - text_width(left, lf)) / 2, y, left, lf, ink)
        else:
            lb = block.text(pad, y, left, lf, ink)
            rb = block.text(width - pad - text_width(right, rf), y, right, rf, ink)
            if k - 3 == ev_index:
                block.evidence = union_boxes([lb, rb])
        y += int(lh * 1.35)
        if k in (2, 2 + n_items):
            block.line([(pad, y), (width - pad, y)], "#888888", 1)
            y += 8
    answer = money[ev_index]
    page.forbidden.append(normalize(answer))
    bbox = place_evidence(page, block, ctx.spot, rng)

    def note() -> Block:
        b = Block()
        colour = rng.choice(("#fff59d", "#ffe0b2", "#c8e6c9", "#bbdefb", "#ffffff"))
        inner_block = paragraph(ctx, rng.choice(INKS), rng.randint(160, 420))
        assert inner_block.bounds is not None
        x0, y0, x1, y1 = inner_block.bounds
        b.rect((x0 - 14, y0 - 14, x1 + 14, y1 + 14), fill=colour)
        b.ops.extend(inner_block.ops)
        b.texts.extend(inner_block.texts)
        return b

    def coupon() -> Block:
        b = Block()
        font = ctx.mixed_font()
        lb = b.text(12, 10, f"SAVE {rng.randint(5, 50)}%", font, "#b71c1c")
        cb = b.text(12, lb[3] + 6, f"CODE {random_code(rng, 6)}", font, "#111111")
        b.rect((0, 0, max(lb[2], cb[2]) + 12, cb[3] + 10), fill=None, outline="#b71c1c", width=2)
        b.ops.insert(0, ("rect", (0, 0, max(lb[2], cb[2]) + 12, cb[3] + 10), "#ffffff", None, 1, 0))
        return b

    def thing() -> Block:
        b = Block()
        s = rng.randint(60, 220)
        if rng.random() < 0.5:
            b.ellipse(
                (0, 0, s, s), fill=rng.choice(("#eeeeee", "#5d4037", "#fafafa")), outline="#333333", width=3
            )
        else:
            b.rect((0, 0, s, int(s * 1.8)), fill="#212121", radius=s // 8)
        return b

    page.fill(rng, [(3, note), (2, coupon), (2, thing)], max_blocks=12)
    if ev_index >= n_items:
        question = rng.choice(TOTAL_TEMPLATES)
    else:
        question = rng.choice(ITEM_TEMPLATES).format(item=items[ev_index])
    return DrawnSample(page.img, question, answer, bbox)
