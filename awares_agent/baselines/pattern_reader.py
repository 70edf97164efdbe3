"""An honest teacher that reads which way lines run in the pixels it is sent, and nothing else.

The ``stripes`` benchmark (:mod:`awares_agent.evals.synthetic.stripes`) asks of every page which way its
stripes run. :class:`PatternReader` answers it as a model answering at one resolution would, from the images
of the conversation only: it measures, on each image, how much the brightness changes from row to row
against from column to column. Lines that run left to right change it from row to row (``horizontal``), and
the other way round (``vertical``); where neither direction dominates (a flat patch, a page with no lines, or
1-px lines averaged to grey in a halved view) it says it cannot tell, which a judge scores as wrong. So run on
the low-resolution view and on the full image (``awares collect label --backend pattern-reader``), it labels
exactly the pages whose answer the view has lost, with no access to the generator's answers.

It never asks for crops: it is a teacher, and the ``awares`` policy on it answers from the view.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from awares_agent.backends.base import ChatBackend
from awares_agent.messages import ChatMessage, ChatReply, ImagePart, ToolSpec, Usage
from awares_agent.tokens import PixelTokenRule

if TYPE_CHECKING:
    from PIL import Image

    from awares_agent.image_store import ImageStore

__all__ = ["CANNOT_TELL", "PatternReader", "line_orientation"]

CANNOT_TELL = "I cannot tell."
"""The answer where no image shows lines running one way."""


def line_orientation(image: Image.Image, *, min_ratio: float = 2.0) -> tuple[str | None, float]:
    """Which way the lines of ``image`` run, and how clearly.

    Args:
        image: any PIL image (read as luminance).
        min_ratio: how many times stronger one direction's brightness changes must be than the other's.

    Returns:
        ``("horizontal" | "vertical" | None, ratio)``: ``None`` where neither direction dominates by
        ``min_ratio``; ``ratio`` is the stronger direction's change over the weaker one's.
    """
    import numpy as np

    grey = np.asarray(image.convert("L"), dtype=np.float64)
    across_rows = float(np.abs(np.diff(grey, axis=0)).sum()) if grey.shape[0] > 1 else 0.0
    across_cols = float(np.abs(np.diff(grey, axis=1)).sum()) if grey.shape[1] > 1 else 0.0
    strong, weak = max(across_rows, across_cols), min(across_rows, across_cols)
    ratio = strong / weak if weak > 0 else (float("inf") if strong > 0 else 1.0)
    if ratio < min_ratio:
        return None, ratio
    return ("horizontal" if across_rows > across_cols else "vertical"), ratio


class PatternReader(ChatBackend):
    """A :class:`~awares_agent.backends.base.ChatBackend` that answers "which way do the lines run?".

    Args:
        min_ratio: see :func:`line_orientation`.
        model_name: the name reported in replies and trajectories.
    """

    def __init__(self, *, min_ratio: float = 2.0, model_name: str = "awares-pattern-reader") -> None:
        self.min_ratio = min_ratio
        self._model_name = model_name

    @property
    def model_name(self) -> str:
        """The name reported in replies and trajectories."""
        return self._model_name

    @property
    def token_rule(self) -> PixelTokenRule:
        """One token per 28x28 pixels: a pixel reader has no visual tokens, so RTR is the pixel ratio."""
        return PixelTokenRule()

    def __repr__(self) -> str:
        return f"PatternReader(min_ratio={self.min_ratio})"

    def complete(
        self,
        messages: Sequence[ChatMessage],
        *,
        images: ImageStore,
        tools: Sequence[ToolSpec] | None = None,
    ) -> ChatReply:
        """Answer from the clearest image of the conversation (the view, a crop or the full image).

        Args:
            messages: the conversation so far.
            images: the store that resolves the messages' images.
            tools: ignored: the reader never asks for crops.
        """
        started = time.perf_counter()
        best: tuple[float, str] | None = None
        for message in messages:
            for part in message.content:
                if not isinstance(part, ImagePart):
                    continue
                orientation, ratio = line_orientation(images.get(part.image_id), min_ratio=self.min_ratio)
                if orientation is not None and (best is None or ratio > best[0]):
                    best = (ratio, orientation)
        return ChatReply(
            text=best[1] if best is not None else CANNOT_TELL,
            finish_reason="stop",
            usage=Usage(),
            model=self._model_name,
            latency_s=time.perf_counter() - started,
        )
