"""The dataset's own evidence box as a grounding, checked and clipped to the image."""

from __future__ import annotations

import math
from collections.abc import Sequence

from PIL import Image

from awares_agent.boxes import BoxLike, clip, format_box
from awares_agent.collect.grounding import Grounding

__all__ = ["DatasetGrounder"]


class DatasetGrounder:
    """The evidence box the dataset gives (``EvalSample.bbox``), checked and clipped to the image.

    A missing box, one that is not four finite numbers, an inverted one (``x1 <= x0`` or ``y1 <= y0``) or one
    wholly outside the image gives ``box=None`` with the reason, so that a chain can try the next grounder.
    """

    name = "dataset"

    def __repr__(self) -> str:
        return "DatasetGrounder()"

    def ground(
        self, image: Image.Image, question: str, answers: Sequence[str], *, bbox: BoxLike | None = None
    ) -> Grounding:
        """Return ``bbox`` clipped to the image (see the class docstring).

        Args:
            image: the full-resolution image (only its size is used).
            question: unused.
            answers: unused.
            bbox: ``[x0, y0, x1, y1]`` in original pixels, or ``None``.
        """

        def none(reason: str) -> Grounding:
            return Grounding(box=None, source="dataset", reason=reason)

        if bbox is None:
            return none("the dataset gives no box")
        try:
            values = [float(v) for v in bbox]
        except (TypeError, ValueError):
            return none(f"the dataset's box is not four numbers: {bbox!r}")
        if len(values) != 4 or not all(math.isfinite(v) for v in values):
            return none(f"the dataset's box is not four finite numbers: {bbox!r}")
        x0, y0, x1, y1 = values
        if x1 <= x0 or y1 <= y0:
            return none(
                f"the dataset's box {format_box(values)} is empty or inverted (needs x0 < x1, y0 < y1)"
            )
        width, height = image.size
        clipped = clip(values, width, height)
        if clipped[2] - clipped[0] <= 0 or clipped[3] - clipped[1] <= 0:
            return none(f"the dataset's box {format_box(values)} lies outside the {width}x{height} image")
        note = "" if tuple(values) == clipped else f" (clipped from {format_box(values)})"
        return Grounding(box=clipped, source="dataset", reason=f"box given by the dataset{note}")

    async def aground(
        self, image: Image.Image, question: str, answers: Sequence[str], *, bbox: BoxLike | None = None
    ) -> Grounding:
        """Same as :meth:`ground` (no I/O)."""
        return self.ground(image, question, answers, bbox=bbox)
