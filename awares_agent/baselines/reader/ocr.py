"""The reader's OCR: its thresholds applied to the shared engine, text boxes placed on the original, a cache.

The engine, and reading an image with it, are :mod:`awares_agent.ocr` (RapidOCR, shared with the OCR
grounder); :func:`read_text` reads with the reader's thresholds (:class:`ReaderConfig`).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from PIL import Image

from awares_agent.baselines.reader.config import DEFAULT_CONFIG, ReaderConfig
from awares_agent.boxes import Box
from awares_agent.ocr import ENGINE_MAX_SIDE, OCR_LOCK, OcrSettings, RawBox, engine, read_lines

__all__ = ["ENGINE_MAX_SIDE", "OCR_LOCK", "OcrCache", "RawBox", "TextBox", "engine", "read_text"]

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
    settings = OcrSettings(
        box_thresh=config.locate_box_thresh if locate else config.ocr_box_thresh,
        text_score=config.locate_text_score if locate else config.ocr_text_score,
        unclip_ratio=config.ocr_unclip_ratio,
        char_width_to_px=config.char_width_to_px,
        char_width_min_chars=config.char_width_min_chars,
    )
    return read_lines(image, settings)


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
