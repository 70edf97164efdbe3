"""Laying out a synthetic page: drawing blocks, the page that places them without overlap, and the evidence.

A :class:`Block` records drawing operations in its own coordinates, with its bounds and (for the evidence
block) the evidence box; a :class:`Page` places blocks at random free spots; :func:`place_evidence` puts the
evidence block where the sample's :class:`Spot` asks, inside one crop-set quadrant or straddling a centre
line.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from PIL import Image, ImageDraw

from awares_agent.boxes import Box, overlaps, shift, union_boxes
from awares_agent.evals.synthetic.fonts import Font, ink_box
from awares_agent.evals.synthetic.vocabulary import normalize


@dataclass
class Block:
    """Drawing operations in block coordinates, placed on a page later as one unit.

    Attributes:
        ops: the drawing operations, in order (``("text", x, y, text, font, fill)``, ``("rect", box, fill,
            outline, width, radius)``, ``("ellipse", box, fill, outline, width)``, ``("line", points, fill,
            width)``); builders may insert one (a plate under the text) before the others.
        bounds: the box holding everything drawn (None while empty).
        evidence: the evidence box, for the block holding the answer.
        texts: every string drawn, for the page's check that no distractor repeats the answer.
    """

    ops: list[tuple[Any, ...]] = field(default_factory=list)
    bounds: Box | None = None
    evidence: Box | None = None
    texts: list[str] = field(default_factory=list)

    def grow(self, box: Box) -> None:
        """Widen :attr:`bounds` to hold ``box`` (for an operation added to :attr:`ops` directly).

        Args:
            box: the box to hold.
        """
        self.bounds = box if self.bounds is None else union_boxes([self.bounds, box])

    def text(self, x: float, y: float, text: str, font: Font, fill: str) -> Box:
        """Draw ``text`` with its line box's top-left at ``(x, y)``; returns its ink box.

        Args:
            x: left (truncated to whole pixels).
            y: top (truncated to whole pixels).
            text: the text.
            font: its font.
            fill: its colour.
        """
        x, y = int(x), int(y)
        self.ops.append(("text", x, y, text, font, fill))
        self.texts.append(text)
        ink = ink_box(x, y, text, font)
        self.grow(ink)
        return ink

    def rect(
        self, box: Box, fill: str | None = None, outline: str | None = None, width: int = 1, radius: int = 0
    ) -> None:
        """Draw a rectangle.

        Args:
            box: its box (truncated to whole pixels).
            fill: the fill colour (None: not filled).
            outline: the outline colour (None: no outline).
            width: the outline's width.
            radius: the corners' radius (0: square corners).
        """
        self.ops.append(("rect", tuple(int(v) for v in box), fill, outline, width, radius))
        self.grow(tuple(int(v) for v in box))  # type: ignore[arg-type]

    def ellipse(self, box: Box, fill: str | None = None, outline: str | None = None, width: int = 1) -> None:
        """Draw an ellipse inside ``box``.

        Args:
            box: its bounding box (truncated to whole pixels).
            fill: the fill colour (None: not filled).
            outline: the outline colour (None: no outline).
            width: the outline's width.
        """
        self.ops.append(("ellipse", tuple(int(v) for v in box), fill, outline, width))
        self.grow(tuple(int(v) for v in box))  # type: ignore[arg-type]

    def line(self, points: Sequence[tuple[float, float]], fill: str, width: int = 1) -> None:
        """Draw a polyline through ``points``.

        Args:
            points: the points (truncated to whole pixels).
            fill: its colour.
            width: its width.
        """
        pts = [(int(x), int(y)) for x, y in points]
        self.ops.append(("line", pts, fill, width))
        xs, ys = [p[0] for p in pts], [p[1] for p in pts]
        half = max(1, width // 2 + 1)
        self.grow((min(xs) - half, min(ys) - half, max(xs) + half, max(ys) + half))

    def draw(self, draw: ImageDraw.ImageDraw, dx: int, dy: int) -> None:
        """Draw every operation, offset by ``(dx, dy)``.

        Args:
            draw: the page's drawing context.
            dx: the horizontal offset.
            dy: the vertical offset.
        """
        for op in self.ops:
            kind = op[0]
            if kind == "text":
                _, x, y, text, font, fill = op
                draw.text((x + dx, y + dy), text, font=font, fill=fill)
            elif kind == "rect":
                _, box, fill, outline, width, radius = op
                shifted = shift(box, dx, dy)
                if radius:
                    draw.rounded_rectangle(shifted, radius=radius, fill=fill, outline=outline, width=width)
                else:
                    draw.rectangle(shifted, fill=fill, outline=outline, width=width)
            elif kind == "ellipse":
                _, box, fill, outline, width = op
                draw.ellipse(shift(box, dx, dy), fill=fill, outline=outline, width=width)
            elif kind == "line":
                _, pts, fill, width = op
                draw.line([(x + dx, y + dy) for x, y in pts], fill=fill, width=width)


class Page:
    """An image being drawn, with the boxes already taken so that blocks do not overlap.

    Args:
        size: the image's ``(width, height)``.
        background: its colour.
        margin: the margin around :attr:`area`, where blocks are placed.

    Attributes:
        img: the image.
        draw: its drawing context (backgrounds are drawn on it directly).
        area: where blocks may be placed.
        occupied: the padded boxes of the blocks placed.
        forbidden: normalized strings no distractor text may contain (the answer).
    """

    def __init__(self, size: tuple[int, int], background: str, margin: int = 16) -> None:
        self.img = Image.new("RGB", size, background)
        self.draw = ImageDraw.Draw(self.img)
        self.width, self.height = size
        self.area: Box = (margin, margin, size[0] - margin, size[1] - margin)
        self.occupied: list[Box] = []
        self.forbidden: list[str] = []  # normalized strings no distractor text may contain

    def allowed(self, block: Block) -> bool:
        """Whether ``block`` repeats none of :attr:`forbidden`.

        Args:
            block: the block.
        """
        return not any(f in normalize(t) for t in block.texts for f in self.forbidden)

    def place(self, block: Block, dx: int, dy: int, pad: int = 10) -> None:
        """Draw ``block`` offset by ``(dx, dy)`` and mark its bounds, grown by ``pad``, as occupied.

        Args:
            block: the block (not empty).
            dx: the horizontal offset.
            dy: the vertical offset.
            pad: the free space kept around it.
        """
        assert block.bounds is not None
        block.draw(self.draw, dx, dy)
        b = shift(block.bounds, dx, dy)
        self.occupied.append((b[0] - pad, b[1] - pad, b[2] + pad, b[3] + pad))

    def try_place(
        self, block: Block, rng: random.Random, *, area: Box | None = None, tries: int = 40
    ) -> bool:
        """Place ``block`` at a random free spot inside ``area`` (default: the page area); False if none.

        Args:
            block: the block.
            rng: the sample's random source.
            area: where to place it (default: :attr:`area`).
            tries: random spots tried.
        """
        if block.bounds is None or not self.allowed(block):
            return False
        ax0, ay0, ax1, ay1 = area or self.area
        bx0, by0, bx1, by1 = block.bounds
        if bx1 - bx0 > ax1 - ax0 or by1 - by0 > ay1 - ay0:
            return False
        for _ in range(tries):
            dx = rng.randint(ax0 - bx0, ax1 - bx1)
            dy = rng.randint(ay0 - by0, ay1 - by1)
            box = shift(block.bounds, dx, dy)
            if not any(overlaps(box, o) for o in self.occupied):
                self.place(block, dx, dy)
                return True
        return False

    def fill(
        self,
        rng: random.Random,
        makers: Sequence[tuple[float, Callable[[], Block | None]]],
        *,
        max_blocks: int,
        max_failures: int = 25,
        area: Box | None = None,
    ) -> int:
        """Place distractor blocks from ``makers`` (weight, factory) until full; returns how many.

        Args:
            rng: the sample's random source.
            makers: ``(weight, factory)`` pairs; a factory returns a block, or None when it has run out.
            max_blocks: most blocks placed.
            max_failures: stop after this many blocks could not be made or placed.
            area: where to place them (default: :attr:`area`).
        """
        weights = [w for w, _ in makers]
        placed = failures = 0
        while placed < max_blocks and failures < max_failures:
            maker = rng.choices([m for _, m in makers], weights=weights)[0]
            block = maker()
            if block is not None and self.try_place(block, rng, area=area):
                placed += 1
            else:
                failures += 1
        return placed


@dataclass(frozen=True)
class Spot:
    """Where a sample's evidence should lie: a 3x3 grid cell, or straddling the centre line(s).

    Attributes:
        row: the grid row (0-2).
        col: the grid column (0-2).
        straddle: None (inside one quadrant), ``"v"`` (across the vertical centre line), ``"h"`` (the
            horizontal one) or ``"both"``.
    """

    row: int
    col: int
    straddle: str | None  # None, "v" (the vertical centre line), "h" or "both"


def _target(spot: Spot, rng: random.Random, w: int, h: int) -> tuple[float, float]:
    tx = (spot.col + rng.uniform(0.1, 0.9)) * w / 3
    ty = (spot.row + rng.uniform(0.1, 0.9)) * h / 3
    if spot.straddle in ("v", "both"):
        tx = w / 2
    if spot.straddle in ("h", "both"):
        ty = h / 2
    return tx, ty


def _fits_quadrant(lo: int, hi: int, side: int, gap: int) -> int:
    """0 if ``[lo, hi)`` lies in one crop-set half of ``[0, side)``; else the shift that puts it there."""
    half = side // 2
    if hi <= half - gap or lo >= side - half + gap:
        return 0
    if (lo + hi) / 2 < side / 2:
        return (half - gap) - hi
    return (side - half + gap) - lo


def _crosses(lo: int, hi: int, side: int, gap: int) -> bool:
    half = side // 2
    return lo < half - gap and hi > side - half + gap


class NoFit(Exception):
    """The evidence block is larger than the page: the sample is drawn again."""


def place_evidence(page: Page, block: Block, spot: Spot, rng: random.Random, tries: int = 30) -> Box:
    """Place ``block`` so that its evidence box lands where ``spot`` asks; returns that box on the page.

    Args:
        page: the page.
        block: the evidence block (with bounds and evidence).
        spot: where the evidence should lie.
        rng: the sample's random source.
        tries: positions tried; the first is kept when none lands exactly as asked.

    Raises:
        NoFit: the block is larger than the page's area.
    """
    assert block.bounds is not None and block.evidence is not None
    ax0, ay0, ax1, ay1 = page.area
    bx0, by0, bx1, by1 = block.bounds
    if bx1 - bx0 > ax1 - ax0 or by1 - by0 > ay1 - ay0:
        raise NoFit
    ex0, ey0, ex1, ey1 = block.evidence
    w, h = page.width, page.height
    gap = 3

    def clamp(dx: float, dy: float) -> tuple[int, int]:
        dx = min(max(dx, ax0 - bx0), max(ax0 - bx0, ax1 - bx1))
        dy = min(max(dy, ay0 - by0), max(ay0 - by0, ay1 - by1))
        return round(dx), round(dy)

    best: tuple[int, int] | None = None
    for _ in range(tries):
        tx, ty = _target(spot, rng, w, h)
        jitter = rng.uniform(-0.3, 0.3)
        dx, dy = clamp(
            tx - (ex0 + ex1) / 2 + jitter * (ex1 - ex0), ty - (ey0 + ey1) / 2 + jitter * (ey1 - ey0)
        )
        if best is None:
            best = dx, dy
        if spot.straddle is None:
            dx, dy = clamp(dx + _fits_quadrant(ex0 + dx, ex1 + dx, w, gap), dy)
            dx, dy = clamp(dx, dy + _fits_quadrant(ey0 + dy, ey1 + dy, h, gap))
            ok = not _fits_quadrant(ex0 + dx, ex1 + dx, w, gap) and not _fits_quadrant(
                ey0 + dy, ey1 + dy, h, gap
            )
        else:
            ok = (spot.straddle == "h" or _crosses(ex0 + dx, ex1 + dx, w, gap)) and (
                spot.straddle == "v" or _crosses(ey0 + dy, ey1 + dy, h, gap)
            )
        if ok:
            best = dx, dy
            break
    assert best is not None
    page.place(block, *best)
    return shift(block.evidence, *best)
