"""Scenes: a street under a sky, with buildings and trees; the evidence is the code on one sign.

Distractors are other signs, shop signs, posters and number plates.
"""

from __future__ import annotations

from awares_agent.boxes import union_boxes
from awares_agent.evals.synthetic.builder import DrawnSample, SampleContext, paragraph
from awares_agent.evals.synthetic.fonts import REGULAR_STYLES, Font, text_width
from awares_agent.evals.synthetic.layout import Block, Page, place_evidence
from awares_agent.evals.synthetic.vocabulary import (
    ACCENTS,
    SHOP_WORDS,
    SIGN_COLOURS,
    SIGN_LABELS,
    SIGN_TEMPLATES,
    distinct_values,
    has_letters,
    normalize,
    random_digits,
    random_letters,
    random_sign_code,
)


def _sign_block(
    ctx: SampleContext,
    label: str,
    code: str,
    label_font: Font,
    code_font: Font,
    colours: tuple[str, str],
    evidence: bool,
) -> Block:
    """A sign plate with ``label`` and ``code`` (on one line or two), sometimes on a post.

    ``evidence``: the label and code are the sample's evidence.
    """
    rng = ctx.rng
    fill, ink = colours
    block = Block()
    size = max(getattr(label_font, "size", 12), getattr(code_font, "size", 12))
    pad = max(4, int(size * 0.45))
    if rng.random() < 0.5:  # one line: "GATE B274"
        lb = block.text(pad, pad, label, label_font, ink)
        cb = block.text(lb[2] + text_width("  ", code_font), pad, code, code_font, ink)
    else:  # label above the code
        lw, cw = text_width(label, label_font), text_width(code, code_font)
        inner = max(lw, cw)
        lb = block.text(pad + (inner - lw) / 2, pad, label, label_font, ink)
        cb = block.text(pad + (inner - cw) / 2, lb[3] + max(2, pad // 2), code, code_font, ink)
    x0, y0, x1, y1 = union_boxes([lb, cb])
    plate = (x0 - pad, y0 - pad, x1 + pad, y1 + pad)
    outline = "#ffffff" if fill in ("#212121", "#37474f", "#1565c0") else "#333333"
    block.ops.insert(0, ("rect", plate, fill, outline, max(1, size // 10), max(2, pad // 2)))
    block.grow(plate)
    if rng.random() < 0.5:  # a post under the sign
        px = (plate[0] + plate[2]) // 2
        block.rect(
            (px - max(2, size // 6), plate[3], px + max(2, size // 6), plate[3] + rng.randint(20, 120)),
            fill="#616161",
        )
    if evidence:
        block.evidence = union_boxes([lb, cb])
    return block


def draw_scene(ctx: SampleContext) -> DrawnSample:
    """Draw a scene sample.

    Args:
        ctx: the sample's context.
    """
    rng = ctx.rng
    w, h = ctx.size
    page = Page(ctx.size, "#87ceeb", margin=20)
    sky_top = rng.choice(((90, 150, 220), (40, 60, 120), (200, 220, 240), (250, 180, 120)))
    sky_bottom = rng.choice(((200, 230, 250), (250, 220, 180), (170, 190, 210)))
    horizon = int(h * rng.uniform(0.35, 0.65))
    for y in range(horizon):
        t = y / max(1, horizon - 1)
        colour = tuple(int(a + (b - a) * t) for a, b in zip(sky_top, sky_bottom, strict=True))
        page.draw.line([(0, y), (w, y)], fill=colour)
    page.draw.rectangle(
        (0, horizon, w, h), fill=rng.choice(("#6d8b3a", "#7a7a7a", "#9e8b6e", "#556b2f", "#5f6a72"))
    )
    if rng.random() < 0.6:
        page.draw.polygon(
            [
                (w * rng.uniform(0.3, 0.45), h),
                (w * rng.uniform(0.45, 0.5), horizon),
                (w * rng.uniform(0.5, 0.55), horizon),
                (w * rng.uniform(0.55, 0.7), h),
            ],
            fill="#4a4a4a",
        )
    sun = rng.randint(40, 120)
    sx, sy = rng.randint(0, w), rng.randint(0, max(1, horizon // 2))
    page.draw.ellipse(
        (sx - sun, sy - sun, sx + sun, sy + sun), fill=rng.choice(("#fff59d", "#ffcc80", "#ffffff"))
    )
    for _ in range(rng.randint(4, 12)):  # buildings with windows
        bw, bh = rng.randint(80, 300), rng.randint(120, max(120, int(horizon * 0.9)))
        bx = rng.randint(-40, w)
        colour = rng.choice(("#8d6e63", "#a1887f", "#b0bec5", "#78909c", "#bcaaa4", "#d7ccc8", "#546e7a"))
        page.draw.rectangle((bx, horizon - bh, bx + bw, horizon + 10), fill=colour, outline="#444444")
        win = rng.choice(("#fff9c4", "#90caf9", "#455a64"))
        for wy in range(horizon - bh + 15, horizon - 20, 36):
            for wx in range(bx + 12, bx + bw - 20, 32):
                page.draw.rectangle((wx, wy, wx + 16, wy + 20), fill=win)
    for _ in range(rng.randint(3, 10)):  # trees
        tx, ty = rng.randint(0, w), rng.randint(horizon, h)
        r = rng.randint(25, 90)
        page.draw.rectangle((tx - r // 8, ty - r, tx + r // 8, ty + r // 2), fill="#5d4037")
        page.draw.ellipse(
            (tx - r, ty - 2 * r, tx + r, ty), fill=rng.choice(("#2e7d32", "#388e3c", "#1b5e20", "#558b2f"))
        )

    labels = list(SIGN_LABELS)
    rng.shuffle(labels)
    label = labels.pop()
    answer = random_sign_code(rng)
    label_font, code_font = ctx.evidence_fonts(letters=has_letters(answer))
    if not ctx.needs_crop:  # signs are mostly bold
        label_font = ctx.fonts.font(
            ctx.fonts.bold(rng.choice(ctx.fonts.styles(REGULAR_STYLES))), label_font.size
        )
    block = _sign_block(ctx, label, answer, label_font, code_font, rng.choice(SIGN_COLOURS), evidence=True)
    page.forbidden.append(normalize(answer))
    bbox = place_evidence(page, block, ctx.spot, rng)

    def other_sign() -> Block | None:
        if not labels:
            return None
        font = ctx.mixed_font(bold=rng.random() < 0.6)
        code = distinct_values(rng, lambda: random_sign_code(rng), 1, avoid=[answer])[0]
        return _sign_block(ctx, labels.pop(), code, font, font, rng.choice(SIGN_COLOURS), evidence=False)

    def shop_sign() -> Block:
        font = ctx.mixed_font(bold=True, size=rng.randint(14, 48))
        b = Block()
        tb = b.text(0, 0, rng.choice(SHOP_WORDS), font, "#ffffff")
        b.ops.insert(
            0, ("rect", (tb[0] - 10, tb[1] - 8, tb[2] + 10, tb[3] + 8), rng.choice(ACCENTS), None, 1, 4)
        )
        b.grow((tb[0] - 10, tb[1] - 8, tb[2] + 10, tb[3] + 8))
        return b

    def poster() -> Block:
        inner = paragraph(ctx, "#111111", rng.randint(140, 360))
        assert inner.bounds is not None
        x0, y0, x1, y1 = inner.bounds
        b = Block()
        b.rect(
            (x0 - 12, y0 - 12, x1 + 12, y1 + 12),
            fill=rng.choice(("#ffffff", "#fff8e1", "#e3f2fd")),
            outline="#333333",
        )
        b.ops.extend(inner.ops)
        b.texts.extend(inner.texts)
        return b

    def plate() -> Block:
        b = Block()
        font = ctx.mixed_font(bold=True, size=rng.randint(9, 30))
        text = f"{random_letters(rng, 2)} {random_digits(rng, 4)}"
        tb = b.text(0, 0, text, font, "#111111")
        car_w = (tb[2] - tb[0]) * 4
        car_h = int(car_w * 0.45)
        cx = (tb[0] + tb[2]) // 2
        body = (cx - car_w // 2, tb[3] + 8 - car_h, cx + car_w // 2, tb[3] + 8 + car_h // 4)
        b.ops.insert(0, ("rect", body, rng.choice(ACCENTS), None, 1, car_h // 5))
        b.ops.insert(1, ("rect", (tb[0] - 6, tb[1] - 4, tb[2] + 6, tb[3] + 4), "#ffffff", "#111111", 1, 2))
        b.grow(body)
        return b

    page.fill(rng, [(4, other_sign), (2, shop_sign), (2, poster), (1, plate)], max_blocks=14)
    question = rng.choice(SIGN_TEMPLATES).format(lower=label.lower(), LABEL=label)
    return DrawnSample(page.img, question, answer, bbox)
