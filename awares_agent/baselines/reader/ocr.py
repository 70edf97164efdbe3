"""The OCR engine the reader sees with, its text boxes, and a cache of what it has read.

The engine is RapidOCR (``rapidocr-onnxruntime``, whose models ship inside its wheel: no network, no
download). One engine serves every reader in the process: it is loaded on first use, and calls go through
:data:`OCR_LOCK` one at a time. :func:`read_text` is the whole wrapper a caller needs (the grounders of
:mod:`awares_agent.collect.grounders` read full images with it too).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from PIL import Image

from awares_agent.baselines.reader.config import DEFAULT_CONFIG, ReaderConfig
from awares_agent.boxes import Box
from awares_agent.errors import ConfigError

__all__ = ["ENGINE_MAX_SIDE", "OCR_LOCK", "OcrCache", "RawBox", "TextBox", "engine", "read_text"]

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
                    "the reader backend needs rapidocr-onnxruntime: "
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


#: What a :class:`TextBox` was read in: the low-resolution view, a crop, or the view enlarged (to locate text
#: too small to read).
Source = Literal["view", "crop", "enlarged"]


@dataclass(frozen=True)
class TextBox:
    """One line of text read by OCR, placed on the original image.

    Attributes:
        text: the text as read.
        confidence: the recogniser's confidence, in [0, 1].
        box: ``(x0, y0, x1, y1)`` in original-image pixels.
        px: height of the text box in pixels of the image it was read in (the view, a crop...).
        source: what it was read in (:data:`Source`).
    """

    text: str
    confidence: float
    box: Box
    px: float
    source: Source = "view"

    @property
    def height(self) -> float:
        """Height of the box in original-image pixels."""
        return self.box[3] - self.box[1]

    @property
    def cx(self) -> float:
        """The box's horizontal centre."""
        return (self.box[0] + self.box[2]) / 2

    @property
    def cy(self) -> float:
        """The box's vertical centre."""
        return (self.box[1] + self.box[3]) / 2

    def part(self, start: int, end: int) -> TextBox:
        """The part of the box holding ``text[start:end]``, its x-range in proportion to the characters.

        Args:
            start: the first character's index.
            end: the index after the last character.
        """
        n = max(1, len(self.text))
        x0, y0, x1, y1 = self.box
        w = x1 - x0
        return TextBox(
            self.text[start:end],
            self.confidence,
            (x0 + w * start / n, y0, x0 + w * end / n, y1),
            self.px,
            self.source,
        )

    def legible(self, config: ReaderConfig) -> bool:
        """Whether the box's reading can be trusted: tall enough and read confidently enough.

        Args:
            config: the reader's thresholds (``min_text_px``, ``min_confidence``).
        """
        return not (self.px < config.min_text_px or self.confidence < config.min_confidence)


def read_text(
    image: Image.Image, config: ReaderConfig = DEFAULT_CONFIG, *, locate: bool = False
) -> list[RawBox]:
    """Read every text line of ``image``; boxes in its own pixels.

    Args:
        image: the image to read.
        config: the detector's and recogniser's thresholds, and how a line's text height is measured.
        locate: use the lower thresholds meant to locate text too small to read (``locate_box_thresh``,
            ``locate_text_score``: fainter boxes, garbled readings kept) instead of the engine's defaults.
    """
    box_thresh = config.locate_box_thresh if locate else config.ocr_box_thresh
    text_score = config.locate_text_score if locate else config.ocr_text_score
    rgb = image.convert("RGB")
    ocr = engine()
    with OCR_LOCK:
        result, _ = ocr(
            rgb,
            use_cls=False,
            box_thresh=box_thresh,
            unclip_ratio=config.ocr_unclip_ratio,
            text_score=text_score,
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
        if chars >= config.char_width_min_chars:
            # A box can be taller than its text (two lines caught in one); narrow characters still tell.
            px = min(px, config.char_width_to_px * (max(xs) - min(xs)) / chars)
        out.append(RawBox(text, float(confidence), (min(xs), min(ys), max(xs), max(ys)), px))
    return out


class OcrCache:
    """OCR results kept by key, least recently used first out; safe to share between threads.

    Args:
        size: how many results are kept.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[str, list[RawBox]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str, make: Callable[[], list[RawBox]]) -> list[RawBox]:
        """The boxes cached under ``key``, computed by ``make()`` on a miss.

        Args:
            key: what was read, and how.
            make: reads it; called outside the lock (two threads may read the same image once each).
        """
        with self._lock:
            hit = self._items.get(key)
            if hit is not None:
                self._items.move_to_end(key)
                return hit
        boxes = make()
        with self._lock:
            self._items[key] = boxes
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return boxes

    def clear(self) -> None:
        """Forget every result (the next read of each image is a miss)."""
        with self._lock:
            self._items.clear()
