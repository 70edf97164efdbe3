"""Crop sets: the small, fixed sets of high-resolution regions a model may ask for.

A crop set maps an image size to a list of :class:`Region` boxes in original-image pixels. Two sets ship:

* :class:`PaperCropSet`, the nine regions of the AwaRes paper plus ``all``, with the released geometry;
* :class:`GridCropSet`, an ``rows x cols`` grid plus ``all``, for images where a finer partition pays.

Regions are requested by id (``"0"``) or by name (``"top-left"``); names match case-insensitively and treat
spaces, underscores and hyphens alike.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from itertools import pairwise

from awares_agent.boxes import Box
from awares_agent.errors import ConfigError

ALL = "all"

MIN_CROP_SIDE = 100
"""Crops are at least this many pixels on a side; images smaller than this on a side are sent whole."""


@dataclass(frozen=True)
class Region:
    """One region of a crop set, resolved for a given image size.

    Attributes:
        id: the id the model uses (``"0"``...``"8"``, ``"all"``).
        name: a descriptive name (``"top-left"``).
        box: ``(left, top, right, bottom)`` in original-image pixels.
    """

    id: str
    name: str
    box: Box

    @property
    def width(self) -> int:
        return self.box[2] - self.box[0]

    @property
    def height(self) -> int:
        return self.box[3] - self.box[1]


def normalize_name(token: str) -> str:
    """Canonical form of a region name: lower case, words joined by single hyphens."""
    return re.sub(r"[\s_\-]+", "-", token.strip().lower()).strip("-")


class CropSet(ABC):
    """A fixed set of regions, each with an id and a name, resolved per image size."""

    #: Identifies the set in configs and trajectories (``"paper"``, ``"grid-3x3"``).
    key: str

    @property
    @abstractmethod
    def ids(self) -> tuple[str, ...]:
        """Region ids in canonical order, ``"all"`` last."""

    @property
    @abstractmethod
    def names(self) -> tuple[str, ...]:
        """Region names, in the order of :attr:`ids`."""

    @abstractmethod
    def _boxes(self, width: int, height: int) -> list[Box]:
        """Boxes in the order of :attr:`ids`, for an image of at least ``MIN_CROP_SIDE`` px on each side."""

    def regions(self, width: int, height: int) -> list[Region]:
        """All regions for an image of ``width`` x ``height`` pixels.

        Images under ``MIN_CROP_SIDE`` pixels on a side are sent whole: every region is the full image.
        """
        if width < 1 or height < 1:
            raise ConfigError(f"image size must be positive, got {width}x{height}")
        if width < MIN_CROP_SIDE or height < MIN_CROP_SIDE:
            boxes = [(0, 0, width, height)] * len(self.ids)
        else:
            boxes = self._boxes(width, height)
        return [Region(i, n, b) for i, n, b in zip(self.ids, self.names, boxes, strict=True)]

    def region(self, token: str | int, width: int, height: int) -> Region:
        """The region named by ``token`` (an id or a name) for an image of the given size."""
        rid = self.resolve(token)
        return self.regions(width, height)[self.ids.index(rid)]

    def resolve(self, token: str | int) -> str:
        """The canonical id for ``token`` (an id like ``"0"`` or ``0``, or a name like ``"Top Left"``).

        Raises:
            KeyError: ``token`` names no region of this set.
        """
        text = str(token).strip().strip("'\"").strip()
        if text in self.ids:
            return text
        norm = normalize_name(text)
        for rid, name in zip(self.ids, self.names, strict=True):
            if norm == name:  # not ``rid``: normalizing strips "-", and "-1" must not resolve to "1"
                return rid
        raise KeyError(token)

    def describe(self) -> str:
        """A crop map for prompts: one line per region, ``id: name (where it lies)``."""
        return "\n".join(f"- {rid}: {name}" for rid, name in zip(self.ids, self.names, strict=True))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.key!r})"


class PaperCropSet(CropSet):
    """The AwaRes crop set: four quadrants, the centre, four halves, and the whole image.

    With ``cw = max(100, W // 2)`` and ``ch = max(100, H // 2)``:

    ==  ============  =========================================================
    id  name          box (left, top, right, bottom)
    ==  ============  =========================================================
    0   top-left      (0, 0, cw, ch)
    1   top-right     (W - cw, 0, W, ch)
    2   bottom-left   (0, H - ch, cw, H)
    3   bottom-right  (W - cw, H - ch, W, H)
    4   center        ((W - cw) // 2, (H - ch) // 2, (W + cw) // 2, (H + ch) // 2)
    5   top           (0, 0, W, ch)
    6   bottom        (0, H - ch, W, H)
    7   left          (0, 0, cw, H)
    8   right         (W - cw, 0, W, H)
    all all           (0, 0, W, H)
    ==  ============  =========================================================
    """

    key = "paper"
    _NAMES = (
        "top-left",
        "top-right",
        "bottom-left",
        "bottom-right",
        "center",
        "top",
        "bottom",
        "left",
        "right",
        ALL,
    )

    @property
    def ids(self) -> tuple[str, ...]:
        return (*(str(i) for i in range(9)), ALL)

    @property
    def names(self) -> tuple[str, ...]:
        return self._NAMES

    def resolve(self, token: str | int) -> str:
        # "centre" is a common spelling; the released prompt uses "center".
        if isinstance(token, str) and normalize_name(token) == "centre":
            token = "center"
        return super().resolve(token)

    def _boxes(self, width: int, height: int) -> list[Box]:
        w, h = width, height
        cw, ch = max(MIN_CROP_SIDE, w // 2), max(MIN_CROP_SIDE, h // 2)
        return [
            (0, 0, cw, ch),
            (w - cw, 0, w, ch),
            (0, h - ch, cw, h),
            (w - cw, h - ch, w, h),
            ((w - cw) // 2, (h - ch) // 2, (w + cw) // 2, (h + ch) // 2),
            (0, 0, w, ch),
            (0, h - ch, w, h),
            (0, 0, cw, h),
            (w - cw, 0, w, h),
            (0, 0, w, h),
        ]


class GridCropSet(CropSet):
    """A ``rows`` x ``cols`` grid of tiles, numbered row by row from the top-left, plus ``all``.

    Tiles partition the image exactly (the last row and column absorb the remainder) and each tile is
    widened, around its centre and within the image, to at least ``MIN_CROP_SIDE`` pixels. Tile names are
    ``r{row}c{col}`` counted from 1 (``r1c1`` is the top-left tile).

    Args:
        rows: number of tile rows (1-8).
        cols: number of tile columns (1-8).
    """

    def __init__(self, rows: int, cols: int) -> None:
        if not (1 <= rows <= 8 and 1 <= cols <= 8):
            raise ConfigError(f"grid crop set needs 1-8 rows and columns, got {rows}x{cols}")
        self.rows, self.cols = rows, cols
        self.key = f"grid-{rows}x{cols}"

    @property
    def ids(self) -> tuple[str, ...]:
        return (*(str(i) for i in range(self.rows * self.cols)), ALL)

    @property
    def names(self) -> tuple[str, ...]:
        tiles = (f"r{r + 1}c{c + 1}" for r in range(self.rows) for c in range(self.cols))
        return (*tiles, ALL)

    def _boxes(self, width: int, height: int) -> list[Box]:
        xs = _grid_spans(width, self.cols)
        ys = _grid_spans(height, self.rows)
        tiles = [(x0, y0, x1, y1) for (y0, y1) in ys for (x0, x1) in xs]
        return [*tiles, (0, 0, width, height)]


def _grid_spans(length: int, parts: int) -> list[tuple[int, int]]:
    """``parts`` consecutive spans covering ``[0, length)``, each widened to ``MIN_CROP_SIDE`` if needed."""
    cuts = [length * i // parts for i in range(parts + 1)]
    spans = []
    for a, b in pairwise(cuts):
        if b - a < MIN_CROP_SIDE:
            mid = (a + b) // 2
            a = min(max(0, mid - MIN_CROP_SIDE // 2), length - MIN_CROP_SIDE)
            b = a + MIN_CROP_SIDE
        spans.append((a, b))
    return spans


def crop_set(spec: str | CropSet = "paper") -> CropSet:
    """A crop set from its key: ``"paper"`` or ``"grid-RxC"`` (also ``"grid:RxC"``, ``"RxC"``).

    Raises:
        ConfigError: the key names no crop set.
    """
    if isinstance(spec, CropSet):
        return spec
    text = spec.strip().lower()
    if text == "paper":
        return PaperCropSet()
    m = re.fullmatch(r"(?:grid[-:]?)?(\d+)x(\d+)", text)
    if m:
        return GridCropSet(int(m.group(1)), int(m.group(2)))
    raise ConfigError(f"unknown crop set {spec!r}: use 'paper' or 'grid-RxC' (e.g. 'grid-3x3')")
