"""``stripes``: a benchmark that low resolution provably cannot answer and a tiny VLM can learn.

Every page asks the **same question**: which way do the stripes run, horizontal or vertical? Each page holds
one square patch of stripes:

* **coarse** pages (answer directly): a large patch of thick stripes (16 px period), plain in the half-size
  view;
* **fine** pages (crop needed): a smaller patch of **1-px stripes** inside one quadrant. Alternate
  one-pixel lines average to flat grey when the page is halved (the view's LANCZOS filter is symmetric, so
  horizontal and vertical lines give the same grey to the pixel), so the view shows *that* there is a patch
  and *where*, but not which way its lines run; the quadrant's crop, at full resolution, shows it plainly.

So a policy cannot decide from the question: it has to look at the view; it cannot answer a fine page from
the view: it has to crop, and in the right place (the patch lies in exactly one quadrant and never wholly
in the centre crop, so its cheapest covering crop is that quadrant alone). Low-res accuracy on fine pages is
chance (50%) for any model; :func:`view_difference` measures how little the view keeps.

Two styles: ``plain`` (black on white) and ``tinted`` (a pale page and ink colours drawn per page, patch
sizes a little different): a recipe chosen on one is checked on the other, which it has never seen. Pages are
deterministic by seed and exactly balanced over fine/coarse and over the two answers.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal

from PIL import Image

from awares_agent.boxes import Box
from awares_agent.evals.schema import EvalSample
from awares_agent.images import ViewSpec, open_image
from awares_agent.tools.box_mapping import crops_covering
from awares_agent.tools.crop_sets import PaperCropSet

__all__ = [
    "STRIPES_ANSWERS",
    "STRIPES_QUESTION",
    "StripesSpec",
    "draw_stripes",
    "generate_stripes",
    "view_difference",
]

STRIPES_QUESTION = "Which way do the stripes run, horizontal or vertical?"
"""The one question of every page."""
STRIPES_ANSWERS = ("horizontal", "vertical")
"""The closed answer set."""


@dataclass(frozen=True)
class StripesSpec:
    """How ``stripes`` pages look.

    Attributes:
        width: page width in pixels (the view is half of it).
        height: page height in pixels.
        fine_px: side range of a fine patch (1-px stripes).
        coarse_px: side range of a coarse patch.
        coarse_period: the coarse stripes' period in pixels (half ink, half paper).
        regions: the crop ids a fine patch is placed in.
        fine_share: the share of fine pages (exact, rounded).
        style: ``plain`` (black on white) or ``tinted`` (pale paper and ink colours drawn per page).
    """

    width: int = 448
    height: int = 448
    fine_px: tuple[int, int] = (96, 112)
    coarse_px: tuple[int, int] = (144, 176)
    coarse_period: int = 16
    regions: tuple[str, ...] = ("0", "1", "2", "3")
    fine_share: float = 0.5
    style: Literal["plain", "tinted"] = "plain"


#: The ``tinted`` style: another look, for checking a recipe on pages it was not chosen on.
TINTED = StripesSpec(fine_px=(88, 120), coarse_px=(128, 192), coarse_period=12, style="tinted")

_CROPS = PaperCropSet()
FINE_SOFT_EDGE = 8
"""A fine patch's stripes fade in over this many pixels from its border (see :func:`draw_stripes`)."""
RGB = tuple[int, int, int]


def draw_stripes(
    spec: StripesSpec,
    box: tuple[int, int, int, int],
    orientation: str,
    period: int,
    *,
    phase: int = 0,
    paper: RGB = (255, 255, 255),
    ink: RGB = (0, 0, 0),
    light: RGB = (255, 255, 255),
    soft: int = 0,
) -> Image.Image:
    """A page of ``paper`` with one patch ``box`` of stripes: ``ink`` and ``light`` lines, ``period`` apart.

    Args:
        spec: the page size.
        box: the patch (left, top, right, bottom), right and bottom exclusive.
        orientation: ``horizontal`` (lines run left to right) or ``vertical``.
        period: pixels per ink + light pair (2 for 1-px lines).
        phase: the offset of the first ink line, in pixels.
        paper: the page colour.
        ink: the dark lines' colour.
        light: the light lines' colour.
        soft: the stripes' contrast rises from 0 at the patch's border to full over this many pixels (a
            raised cosine), the patch's mean colour staying flat; so a halved view shows no trace of where
            the lines were cut (0: hard edges).
    """
    import numpy as np

    page = np.empty((spec.height, spec.width, 3), dtype=np.float64)
    page[:] = paper
    x0, y0, x1, y1 = box
    ys, xs = np.mgrid[y0:y1, x0:x1]
    along = ys if orientation == "horizontal" else xs
    start = y0 if orientation == "horizontal" else x0
    sign = np.where(((along - start - phase) % period) < period // 2, -1, 1)
    amp = np.ones(sign.shape)
    if soft > 0:

        def ramp(d: np.ndarray) -> np.ndarray:
            return 0.5 - 0.5 * np.cos(np.pi * np.clip(d / soft, 0.0, 1.0))

        amp = ramp(np.minimum(xs - x0 + 0.5, x1 - xs - 0.5)) * ramp(np.minimum(ys - y0 + 0.5, y1 - ys - 0.5))
    mean = (np.asarray(ink, dtype=np.float64) + np.asarray(light, dtype=np.float64)) / 2
    half = (np.asarray(light, dtype=np.float64) - np.asarray(ink, dtype=np.float64)) / 2
    page[y0:y1, x0:x1] = mean + (sign * amp)[..., None] * half
    return Image.fromarray(np.clip(np.rint(page), 0, 255).astype(np.uint8), "RGB")


def _colours(rng: random.Random, spec: StripesSpec) -> tuple[RGB, RGB, RGB]:
    if spec.style == "plain":
        return (255, 255, 255), (0, 0, 0), (255, 255, 255)
    paper = tuple(rng.randint(225, 250) for _ in range(3))
    ink = tuple(rng.randint(0, 70) for _ in range(3))
    light = tuple(rng.randint(200, 255) for _ in range(3))
    return paper, ink, light  # type: ignore[return-value]


def _place(rng: random.Random, spec: StripesSpec, fine: bool) -> tuple[int, int, int, int]:
    w, h = spec.width, spec.height
    regions = {r.id: r.box for r in _CROPS.regions(w, h)}
    for _ in range(1000):
        side = rng.randint(*(spec.fine_px if fine else spec.coarse_px))
        region = rng.choice(spec.regions) if fine else "all"
        rx0, ry0, rx1, ry1 = (int(v) for v in regions[region])
        margin = 4
        if rx1 - rx0 < side + 2 * margin or ry1 - ry0 < side + 2 * margin:
            continue
        x0 = rng.randint(rx0 + margin, rx1 - margin - side)
        y0 = rng.randint(ry0 + margin, ry1 - margin - side)
        box = (x0, y0, x0 + side, y0 + side)
        # A fine patch's region must be the one answer: one that also fits the centre crop is placed again.
        if fine and crops_covering(tuple(float(v) for v in box), _CROPS, w, h) != [region]:
            continue
        return box
    raise RuntimeError(f"cannot place a patch on a {w}x{h} page")  # pragma: no cover - the ranges leave room


def generate_stripes(
    n: int, *, seed: int = 0, spec: StripesSpec | None = None, id_prefix: str = "str"
) -> list[EvalSample]:
    """``n`` ``stripes`` samples, deterministic by ``seed``, balanced over fine/coarse and the two answers.

    Args:
        n: how many.
        seed: the seed (keep training, choice and reporting seeds apart).
        spec: the pages' look (:class:`StripesSpec` defaults: the ``plain`` style).
        id_prefix: the ids are ``{prefix}{seed}-{i:05d}``.

    Returns:
        Samples with ``needs_crop`` (fine), ``evidence`` (the patch) and ``category`` (``"fine"`` /
        ``"coarse"``).
    """
    spec = spec or StripesSpec()
    rng = random.Random(seed)
    n_fine = round(n * spec.fine_share)
    kinds = [(i < n_fine, STRIPES_ANSWERS[i % 2]) for i in range(n)]
    rng.shuffle(kinds)
    samples = []
    for i, (fine, answer) in enumerate(kinds):
        x0, y0, x1, y1 = _place(rng, spec, fine)
        period = 2 if fine else spec.coarse_period
        paper, ink, light = _colours(rng, spec)
        image = draw_stripes(
            spec, (x0, y0, x1, y1), answer, period, phase=rng.randrange(period), paper=paper, ink=ink,
            light=light, soft=FINE_SOFT_EDGE if fine else 0,
        )  # fmt: skip
        box: Box = (float(x0), float(y0), float(x1), float(y1))
        samples.append(
            EvalSample(
                id=f"{id_prefix}{seed}-{i:05d}",
                image=image,
                question=STRIPES_QUESTION,
                answers=[answer],
                evidence=box,
                needs_crop=fine,
                metric="exact",
                category="fine" if fine else "coarse",
            )
        )
    return samples


def view_difference(
    spec: StripesSpec, box: tuple[int, int, int, int], period: int, *, phase: int = 0, soft: int = 0
) -> float:
    """The largest per-pixel difference (0-255) between the half-size views of the two answers' pages.

    The same page is drawn with horizontal and with vertical stripes and both are reduced as the agent
    reduces a page for its view; 0 means the view cannot tell the answers apart at all.
    """
    import numpy as np

    views = [
        np.asarray(
            open_image(draw_stripes(spec, box, o, period, phase=phase, soft=soft)).low_res(ViewSpec()),
            dtype=np.int16,
        )
        for o in STRIPES_ANSWERS
    ]
    return float(np.abs(views[0] - views[1]).max())
