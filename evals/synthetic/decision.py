"""``crop-decision``: a benchmark where only the pixels say whether, and where, to crop.

Every page asks the **same question** ("What is written on the page?"). Its answer, a short code, is printed
either large (readable in the half-size view: answer directly) or small inside one region of the paper's
crop set (readable only in that region's crop). So a policy cannot decide from the question: it has to look.
It is the learning signal of ``benchmarks/bench_sft_learning.py`` (can SFT teach a VLM when and where to
crop?), small enough to train on a CPU.

Pages are deterministic by seed and exactly class-balanced. A small code is placed so that the cheapest crop
covering it is its region alone (it never also fits the centre crop), and it sits on a light grey label
(:attr:`DecisionSpec.label`): a visible cue at view resolution, where the code itself is not readable.
The offline reader labels these pages as intended (large: direct; small: a tool trajectory with the region).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal

from PIL import Image, ImageDraw

from awares_agent.boxes import Box
from awares_agent.evals.schema import EvalSample
from awares_agent.evals.synthetic.fonts import FontBook, ink_box
from awares_agent.tools.box_mapping import crops_covering
from awares_agent.tools.crop_sets import PaperCropSet

__all__ = ["DECISION_QUESTION", "DecisionSpec", "generate_decision"]

DECISION_QUESTION = "What is written on the page?"
"""The one question of every page."""

_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O or 1/I: the code is read, not guessed


@dataclass(frozen=True)
class DecisionSpec:
    """How ``crop-decision`` pages look.

    Attributes:
        width: page width in pixels (the view is half of it).
        height: page height in pixels.
        large_px: em size range of a large code (it stays readable at half size).
        small_px: em size range of a small code (unreadable at half size, readable in a crop).
        code_len: the code's length range.
        regions: the crop ids a small code is placed in.
        small_share: the share of pages with a small code (exact, rounded).
        label: what marks a small code: ``"fill"`` (a light grey label behind it), ``"outline"`` (a frame) or
            ``"none"``.
    """

    width: int = 448
    height: int = 448
    large_px: tuple[int, int] = (96, 128)
    small_px: tuple[int, int] = (8, 9)
    code_len: tuple[int, int] = (3, 4)
    regions: tuple[str, ...] = ("0", "1", "2", "3")
    small_share: float = 0.5
    label: Literal["fill", "outline", "none"] = "fill"


_BOOK = FontBook()
_CROPS = PaperCropSet()
_LABEL_MARGIN = 5


def _page(rng: random.Random, spec: DecisionSpec, small: bool) -> tuple[Image.Image, str, Box]:
    w, h = spec.width, spec.height
    code = "".join(rng.choice(_ALPHABET) for _ in range(rng.randint(*spec.code_len)))
    regions = {r.id: r.box for r in _CROPS.regions(w, h)}
    pad = 6 + (_LABEL_MARGIN if spec.label != "none" else 0)
    for _ in range(500):
        region = rng.choice(spec.regions) if small else "all"
        style = _BOOK.styles(["sans"] if small else ["sans-bold"])[0]
        font = _BOOK.font(style, rng.randint(*(spec.small_px if small else spec.large_px)))
        rx0, ry0, rx1, ry1 = regions[region]
        bx0, by0, bx1, by1 = ink_box(0, 0, code, font)
        lo_x, hi_x = int(rx0) + pad - bx0, int(rx1) - pad - bx1
        lo_y, hi_y = int(ry0) + pad - by0, int(ry1) - pad - by1
        if hi_x < lo_x or hi_y < lo_y:
            continue
        x, y = rng.randint(lo_x, hi_x), rng.randint(lo_y, hi_y)
        box = ink_box(x, y, code, font)
        if small and spec.label != "none":
            m = _LABEL_MARGIN
            box = (box[0] - m, box[1] - m, box[2] + m, box[3] + m)
        # The region must be the one answer: a code that also fits the centre crop is placed again.
        if small and crops_covering(box, _CROPS, w, h) != [region]:
            continue
        break
    else:  # pragma: no cover - the ranges above always leave room
        raise RuntimeError(f"cannot place a code on a {w}x{h} page")
    img = Image.new("RGB", (w, h), "white")
    draw = ImageDraw.Draw(img)
    if small and spec.label == "fill":
        draw.rectangle(box, fill=(200, 200, 200))
    elif small and spec.label == "outline":
        draw.rectangle(box, outline="black", width=2)
    draw.text((x, y), code, fill="black", font=font)
    return img, code, tuple(float(v) for v in box)  # type: ignore[return-value]


def generate_decision(
    n: int, *, seed: int = 0, spec: DecisionSpec | None = None, id_prefix: str = "dec"
) -> list[EvalSample]:
    """``n`` ``crop-decision`` samples, deterministic by ``seed``, exactly class-balanced.

    Args:
        n: how many.
        seed: the seed (different seeds give different pages: keep training and held-out seeds apart).
        spec: the pages' look (:class:`DecisionSpec` defaults).
        id_prefix: the ids are ``{prefix}{seed}-{i:05d}``.

    Returns:
        Samples with ``needs_crop`` (small code), ``evidence`` (the code and its label) and ``category``
        (``"small"`` / ``"large"``).
    """
    spec = spec or DecisionSpec()
    rng = random.Random(seed)
    n_small = round(n * spec.small_share)
    kinds = [True] * n_small + [False] * (n - n_small)
    rng.shuffle(kinds)
    samples = []
    for i, small in enumerate(kinds):
        image, code, box = _page(rng, spec, small)
        samples.append(
            EvalSample(
                id=f"{id_prefix}{seed}-{i:05d}",
                image=image,
                question=DECISION_QUESTION,
                answers=[code],
                evidence=box,
                needs_crop=small,
                metric="exact",
                category="small" if small else "large",
            )
        )
    return samples
