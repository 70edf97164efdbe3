"""The offline OCR engine and reading an image with it: every text line, with its box.

The engine is RapidOCR (``rapidocr-onnxruntime``, whose models ship inside its wheel: no network, no
download). One engine serves the whole process (the reader baseline, :mod:`awares_agent.baselines.reader`,
and the OCR grounder, :mod:`awares_agent.collect.ocr_grounder`): it is loaded on first use, and calls go
through :data:`OCR_LOCK` one at a time. :func:`read_lines` reads an image as it is (the engine shrinks one
with a side over :data:`ENGINE_MAX_SIDE`); :func:`read_tiled` reads a larger one at full resolution, in
overlapping tiles.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import Any

from PIL import Image

from awares_agent.boxes import Box, area, overlap_of_smaller, shift
from awares_agent.errors import ConfigError

__all__ = [
    "ENGINE_MAX_SIDE",
    "OCR_LOCK",
    "OcrSettings",
    "RawBox",
    "engine",
    "read_lines",
    "read_tiled",
    "tiles",
]

#: Up to this many pixels on a side the engine reads an image as given instead of shrinking it.
ENGINE_MAX_SIDE = 4000

#: One engine call at a time: the engine's per-call options are instance state (a call without them keeps
#: the last ones, so every call sets them), and the cores are shared anyway.
OCR_LOCK = threading.Lock()

_ENGINE: Any = None
_ENGINE_LOCK = threading.Lock()


def engine() -> Any:
    """The shared RapidOCR engine, loaded on first use (importing it takes about a second).

    Raises:
        ConfigError: ``rapidocr-onnxruntime`` is not installed.
    """
    global _ENGINE
    with _ENGINE_LOCK:
        if _ENGINE is None:
            try:
                from rapidocr_onnxruntime import RapidOCR
            except ImportError as exc:  # pragma: no cover - a declared dependency
                raise ConfigError(
                    "offline OCR (the reader backend, the ocr grounder) needs rapidocr-onnxruntime: "
                    "pip install 'rapidocr-onnxruntime>=1.4,<1.5'"
                ) from exc
            # Lines are recognised one at a time: batches pad every line to the widest one's width, which
            # costs about a third more time on these pages of mixed line lengths.
            _ENGINE = RapidOCR(max_side_len=ENGINE_MAX_SIDE, rec_batch_num=1)
        return _ENGINE


@dataclass(frozen=True)
class RawBox:
    """One OCR line in the pixels of the image it was read in.

    Attributes:
        text: the text as read.
        confidence: the recogniser's confidence, in [0, 1].
        box: ``(x0, y0, x1, y1)`` in the pixels of the image read.
        px: the height of the line's text in those pixels.
    """

    text: str
    confidence: float
    box: Box
    px: float


@dataclass(frozen=True)
class OcrSettings:
    """The engine's thresholds for one read, and how a line's text height (:attr:`RawBox.px`) is measured.

    The defaults are the reader's (:class:`~awares_agent.baselines.reader.ReaderConfig`'s ``ocr_*`` and
    ``char_width_*`` defaults): the thresholds are RapidOCR's own defaults, the height measure was fitted
    for the reader.

    Args:
        box_thresh: the detector's box score threshold.
        text_score: the recogniser's lowest kept score.
        unclip_ratio: how far the detector grows a text region into its box.
        char_width_to_px: a line's text height is at most this times its mean character width...
        char_width_min_chars: ...for lines of at least this many characters (spaces not counted).
    """

    box_thresh: float = 0.5
    text_score: float = 0.5
    unclip_ratio: float = 1.6
    char_width_to_px: float = 2.5
    char_width_min_chars: int = 4


DEFAULT_OCR_SETTINGS = OcrSettings()


def read_lines(image: Image.Image, settings: OcrSettings = DEFAULT_OCR_SETTINGS) -> list[RawBox]:
    """Read every text line of ``image``; boxes in its own pixels.

    Args:
        image: the image to read (an image with a side over :data:`ENGINE_MAX_SIDE` is shrunk by the engine;
            :func:`read_tiled` reads it at full resolution).
        settings: the engine's thresholds and the text-height measure.
    """
    rgb = image.convert("RGB")
    ocr = engine()
    with OCR_LOCK:
        result, _ = ocr(
            rgb,
            use_cls=False,
            box_thresh=settings.box_thresh,
            unclip_ratio=settings.unclip_ratio,
            text_score=settings.text_score,
        )
    out = []
    for points, text, confidence in result or []:
        xs = [float(p[0]) for p in points]
        ys = [float(p[1]) for p in points]
        (x0, y0), (x1, y1), (x2, y2), (x3, y3) = ((float(p[0]), float(p[1])) for p in points)
        px = (((x3 - x0) ** 2 + (y3 - y0) ** 2) ** 0.5 + ((x2 - x1) ** 2 + (y2 - y1) ** 2) ** 0.5) / 2
        text = str(text).strip()
        if not text:
            continue
        chars = len(text.replace(" ", ""))
        if chars >= settings.char_width_min_chars:
            # A box can be taller than its text (two lines caught in one); narrow characters still tell.
            px = min(px, settings.char_width_to_px * (max(xs) - min(xs)) / chars)
        out.append(RawBox(text, float(confidence), (min(xs), min(ys), max(xs), max(ys)), px))
    return out


def tiles(width: int, height: int, tile_size: int, overlap: int) -> list[tuple[int, int, int, int]]:
    """The tiles :func:`read_tiled` reads an image of ``width`` x ``height`` in, row by row.

    Args:
        width: the image's width.
        height: the image's height.
        tile_size: the longest side of a tile.
        overlap: pixels neighbouring tiles share.
    """

    def starts(side: int) -> list[int]:
        if side <= tile_size:
            return [0]
        step = tile_size - overlap
        count = math.ceil((side - tile_size) / step) + 1
        return [min(i * step, side - tile_size) for i in range(count)]

    return [
        (x, y, min(x + tile_size, width), min(y + tile_size, height))
        for y in starts(height)
        for x in starts(width)
    ]


def read_tiled(
    image: Image.Image, *, tile_size: int, overlap: int, settings: OcrSettings = DEFAULT_OCR_SETTINGS
) -> list[RawBox]:
    """Read every text line of ``image`` at full resolution; boxes in its pixels.

    An image with a side longer than ``tile_size`` is read in overlapping tiles (the engine would otherwise
    shrink it, and small text would be lost). A line cut by a tile's inner edge is dropped in favour of the
    overlapping tile that holds it whole, so ``overlap`` must exceed the longest line that must be found;
    of two readings of one line in an overlap, the larger box is kept.

    Args:
        image: the image to read.
        tile_size: the longest side read in one piece (at most :data:`ENGINE_MAX_SIDE`, which the engine
            keeps).
        overlap: the overlap of neighbouring tiles in pixels (under half of ``tile_size``).
        settings: the engine's thresholds and the text-height measure.
    """
    rgb = image.convert("RGB")
    width, height = rgb.size
    parts = tiles(width, height, tile_size, overlap)
    if len(parts) == 1:
        return read_lines(rgb, settings)
    found: list[RawBox] = []
    for x, y, right, bottom in parts:
        for raw in read_lines(rgb.crop((x, y, right, bottom)), settings):
            bx0, by0, bx1, by1 = raw.box
            # A line within half a line height of an inner edge of the tile may be cut there (the detector's
            # box stops a few pixels short of the cut); the overlapping tile holds it whole.
            margin = max(2.0, 0.5 * (by1 - by0))
            cut = (
                (x > 0 and bx0 <= margin)
                or (y > 0 and by0 <= margin)
                or (right < width and bx1 >= right - x - margin)
                or (bottom < height and by1 >= bottom - y - margin)
            )
            if not cut:
                found.append(RawBox(raw.text, raw.confidence, shift(raw.box, x, y), raw.px))
    # Lines inside an overlap are read twice, sometimes split differently: keep the larger box of any two
    # that mostly overlap.
    found.sort(key=lambda r: -area(r.box))
    kept: list[RawBox] = []
    for raw in found:
        if all(overlap_of_smaller(raw.box, other.box) < 0.5 for other in kept):
            kept.append(raw)
    return kept
