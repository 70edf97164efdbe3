"""The one box type every part of awares shares, and the operations on it that more than one part needs.

A box is ``(left, top, right, bottom)`` in pixels of the image it belongs to (the original image, unless a
docstring says otherwise), right and bottom exclusive as in PIL. Crop regions hold whole pixels; a grounder's
or an OCR engine's box may be fractional.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

Box = tuple[float, float, float, float]
"""``(left, top, right, bottom)`` in pixels, right and bottom exclusive."""


def union_boxes(boxes: Iterable[Sequence[float]]) -> Box:
    """The smallest box holding every box in ``boxes``.

    Args:
        boxes: one or more boxes; each value keeps its type (whole-pixel boxes give a whole-pixel union).

    Raises:
        ValueError: ``boxes`` is empty.
    """
    items = list(boxes)
    if not items:
        raise ValueError("union_boxes() needs at least one box")
    return (
        min(b[0] for b in items),
        min(b[1] for b in items),
        max(b[2] for b in items),
        max(b[3] for b in items),
    )
