"""Images in a terminal: half-cell blocks, with a crop set's regions drawn and numbered over them.

Each character cell shows two pixels, one above the other (``▀`` in the top pixel's colour on the bottom
pixel's), so a picture keeps its proportions in a terminal whose cells are twice as tall as they are wide.
That is what tmux and most terminals render (256 colours are enough); it is far below the resolution of the
low-resolution view itself, so it shows where things are, not what the text says. The region ids are
written as text cells at the regions' centres, so they stay readable however small the picture is.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
from PIL import Image
from rich.color import Color
from rich.console import Console, ConsoleOptions, RenderResult
from rich.measure import Measurement
from rich.segment import Segment
from rich.style import Style

from awares_agent.tools.crop_sets import ALL, Region

HALF_BLOCK = "▀"

#: The colour the requested regions light up in, and the faint one of the other regions' outlines.
LIT = (255, 176, 0)
OUTLINE = (0, 200, 255)


def _blend(pixel: tuple[int, int, int], colour: tuple[int, int, int], weight: float) -> tuple[int, int, int]:
    r, g, b = pixel
    return (
        round(r + (colour[0] - r) * weight),
        round(g + (colour[1] - g) * weight),
        round(b + (colour[2] - b) * weight),
    )


class RegionView:
    """A rich renderable: ``image`` in half-cell blocks, ``regions`` outlined and numbered, ``lit`` ones
    filled.

    It fits the space it is given (the console's width, and ``height`` rows if set), keeping the image's
    proportions.

    Args:
        image: the picture (the low-resolution view, a crop...).
        source_size: the size of the image the regions' boxes are in (the original's); ``None`` for the
            image's own size.
        regions: the regions to outline and number (``all`` is never drawn: it is the whole image).
        lit: the ids of the regions to light up (the ones the model asked for).
        width: most columns to use (``None``: the console's width).
        height: most rows to use (``None``: as many as the width needs).
    """

    def __init__(
        self,
        image: Image.Image,
        *,
        source_size: tuple[int, int] | None = None,
        regions: Sequence[Region] = (),
        lit: Iterable[str] = (),
        width: int | None = None,
        height: int | None = None,
    ) -> None:
        self.image = image
        self.source_size = source_size or image.size
        self.regions = [r for r in regions if r.id != ALL]
        self.lit = set(lit)
        self.width = width
        self.height = height

    def cells(self, max_width: int, max_height: int | None) -> tuple[int, int]:
        """The ``(columns, rows)`` the picture takes within ``max_width`` x ``max_height`` cells."""
        w, h = self.image.size
        cols = max(1, max_width)
        rows = max(1, round(cols * h / w / 2))
        if max_height is not None and rows > max_height:
            rows = max(1, max_height)
            cols = max(1, min(max_width, round(rows * 2 * w / h)))
        return cols, rows

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        cols, _ = self.cells(min(self.width or options.max_width, options.max_width), self.height)
        return Measurement(cols, cols)

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        max_height = self.height if self.height is not None else options.height
        cols, rows = self.cells(min(self.width or options.max_width, options.max_width), max_height)
        pixels = self._pixels(cols, rows * 2)
        labels = self._labels(cols, rows)
        for row in range(rows):
            top, bottom = pixels[2 * row], pixels[2 * row + 1]
            col = 0
            while col < cols:
                label = labels.get((row, col))
                if label is not None:
                    text, style = label
                    yield Segment(text, style)
                    col += len(text)
                    continue
                yield Segment(
                    HALF_BLOCK, Style(color=Color.from_rgb(*top[col]), bgcolor=Color.from_rgb(*bottom[col]))
                )
                col += 1
            yield Segment.line()

    # --- internals ---------------------------------------------------------------------------------------

    def _boxes(self, cols: int, px_rows: int) -> list[tuple[Region, tuple[int, int, int, int]]]:
        """Each region's box in the scaled picture's pixels (right and bottom exclusive)."""
        sw, sh = self.source_size
        out = []
        for region in self.regions:
            x0, y0, x1, y1 = region.box
            box = (
                round(x0 * cols / sw),
                round(y0 * px_rows / sh),
                max(round(x1 * cols / sw), round(x0 * cols / sw) + 1),
                max(round(y1 * px_rows / sh), round(y0 * px_rows / sh) + 1),
            )
            out.append((region, box))
        return out

    def _pixels(self, cols: int, px_rows: int) -> list[list[tuple[int, int, int]]]:
        small = self.image.convert("RGB").resize((cols, px_rows), Image.Resampling.LANCZOS)
        grid = [[(r, g, b) for r, g, b in row] for row in np.asarray(small).tolist()]
        boxes = self._boxes(cols, px_rows)
        for region, (x0, y0, x1, y1) in boxes:  # lit regions are filled first, every outline drawn on top
            if region.id in self.lit:
                for y in range(y0, min(y1, px_rows)):
                    for x in range(x0, min(x1, cols)):
                        grid[y][x] = _blend(grid[y][x], LIT, 0.35)
        # Each outline pixel is drawn once (regions share edges), a lit region's over the others'; the
        # picture's own border is left alone: every region would outline it.
        outline: dict[tuple[int, int], bool] = {}
        for region, (x0, y0, x1, y1) in boxes:
            lit = region.id in self.lit
            right, bottom = min(x1, cols) - 1, min(y1, px_rows) - 1
            edge = [(x, y) for x in range(x0, right + 1) for y in (y0, bottom)]
            edge += [(x, y) for y in range(y0, bottom + 1) for x in (x0, right)]
            for x, y in edge:
                if lit or (0 < x < cols - 1 and 0 < y < px_rows - 1):
                    outline[(x, y)] = outline.get((x, y), False) or lit
        for (x, y), lit in outline.items():
            grid[y][x] = _blend(grid[y][x], LIT, 1.0) if lit else _blend(grid[y][x], OUTLINE, 0.45)
        return grid

    def _labels(self, cols: int, rows: int) -> dict[tuple[int, int], tuple[str, Style]]:
        """Each region's id as text at its centre cell, moved right where another label already is."""
        taken: set[tuple[int, int]] = set()
        labels: dict[tuple[int, int], tuple[str, Style]] = {}
        for region, (x0, y0, x1, y1) in self._boxes(cols, rows * 2):
            text = f" {region.id} " if cols >= 24 else region.id
            row = min(rows - 1, (y0 + y1) // 4)
            col = max(0, min(cols - len(text), (x0 + x1) // 2 - len(text) // 2))
            while (
                any((row, c) in taken for c in range(col - 1, col + len(text) + 1)) and col + len(text) < cols
            ):
                col += 1
            if any((row, c) in taken for c in range(col, col + len(text))):
                continue  # no room left on this row: the region goes unnumbered rather than overwrite one
            taken.update((row, c) for c in range(col, col + len(text)))
            lit = region.id in self.lit
            style = (
                Style(color="black", bgcolor="rgb(255,176,0)", bold=True)
                if lit
                else Style(color="white", bgcolor="grey23")
            )
            labels[(row, col)] = (text, style)
        return labels
