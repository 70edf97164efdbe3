"""The one box type every part of awares shares, and every operation on boxes.

A box is ``(left, top, right, bottom)`` in pixels of the image it belongs to (the original image, unless a
docstring says otherwise), right and bottom exclusive as in PIL. Crop regions hold whole pixels; a grounder's
or an OCR engine's box may be fractional.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from numbers import Integral

from awares_agent.errors import ConfigError

Box = tuple[float, float, float, float]
"""``(left, top, right, bottom)`` in pixels, right and bottom exclusive."""

BoxLike = Sequence[float]
"""Four numbers read as a box (a list from JSON, a tuple...), not yet checked."""

PixelBox = tuple[int, int, int, int]
"""A box of whole pixels, as PIL's ``crop`` takes it."""


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


def clip(box: BoxLike, width: float, height: float) -> Box:
    """``box`` cut to an image of ``width`` x ``height`` pixels; never inverted.

    A box that lies wholly outside the image comes back empty (zero width or height) on the nearest edge; an
    inverted box (``right < left``) comes back empty at its clipped left (top) edge.

    Args:
        box: ``(left, top, right, bottom)``.
        width: the image's width.
        height: the image's height.
    """
    x0, y0, x1, y1 = box
    x0, x1 = max(0.0, min(x0, width)), max(0.0, min(x1, width))
    y0, y1 = max(0.0, min(y0, height)), max(0.0, min(y1, height))
    return (float(x0), float(y0), float(max(x0, x1)), float(max(y0, y1)))


def shift(box: Box, dx: float, dy: float) -> Box:
    """``box`` moved by ``dx`` pixels right and ``dy`` down (values keep their type).

    Args:
        box: the box.
        dx: pixels to the right.
        dy: pixels down.
    """
    return box[0] + dx, box[1] + dy, box[2] + dx, box[3] + dy


def area(box: BoxLike) -> float:
    """The box's area in square pixels; 0 for an empty or inverted box.

    Args:
        box: the box.
    """
    return max(0.0, box[2] - box[0]) * max(0.0, box[3] - box[1])


def intersection_area(a: BoxLike, b: BoxLike) -> float:
    """The area two boxes share; 0 when they do not overlap.

    Args:
        a: a box.
        b: another box.
    """
    return max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))


def iou(a: BoxLike, b: BoxLike) -> float:
    """Intersection over union of two boxes, in ``[0, 1]``; 0 when both are empty.

    Args:
        a: a box.
        b: another box.
    """
    inter = intersection_area(a, b)
    union = area(a) + area(b) - inter
    return inter / union if union > 0 else 0.0


def overlap_of_smaller(a: BoxLike, b: BoxLike) -> float:
    """The area two boxes share as a share of the smaller one's area, in ``[0, 1]``.

    Args:
        a: a box.
        b: another box.
    """
    smaller = min(area(a), area(b))
    return intersection_area(a, b) / smaller if smaller > 0 else 0.0


def _axis_overlap(a: BoxLike, b: BoxLike, low: int, high: int) -> float:
    inter = min(a[high], b[high]) - max(a[low], b[low])
    return max(0.0, inter) / max(1e-6, min(a[high] - a[low], b[high] - b[low]))


def v_overlap(a: BoxLike, b: BoxLike) -> float:
    """Vertical overlap of two boxes as a fraction of the shorter one's height.

    Args:
        a: a box.
        b: another box.
    """
    return _axis_overlap(a, b, 1, 3)


def h_overlap(a: BoxLike, b: BoxLike) -> float:
    """Horizontal overlap of two boxes as a fraction of the narrower one's width.

    Args:
        a: a box.
        b: another box.
    """
    return _axis_overlap(a, b, 0, 2)


def overlaps(a: BoxLike, b: BoxLike) -> bool:
    """Whether two boxes share some area (touching edges do not count).

    Args:
        a: a box.
        b: another box.
    """
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def contains(outer: BoxLike, inner: BoxLike) -> bool:
    """Whether ``inner`` lies inside ``outer`` (edges included).

    Args:
        outer: the larger box.
        inner: the box that may lie inside it.
    """
    return outer[0] <= inner[0] and outer[1] <= inner[1] and inner[2] <= outer[2] and inner[3] <= outer[3]


def format_box(box: BoxLike) -> str:
    """``box`` in words for a message, rounded to whole pixels: ``"[10, 20, 30, 40]"``.

    Args:
        box: the box.
    """
    return "[" + ", ".join(f"{v:.0f}" for v in box) + "]"


def validate_box(box: PixelBox, width: int, height: int, *, label: str = "the image") -> PixelBox:
    """Check that ``box`` is a non-empty ``(left, top, right, bottom)`` integer box within the image.

    Args:
        box: the box to check.
        width: the image's width.
        height: the image's height.
        label: names the image in the error message.

    Returns:
        The box as a tuple of four ints.

    Raises:
        ConfigError: the box is not four integers, is empty, or reaches outside ``width`` x ``height``.
    """
    try:
        values = tuple(box)
    except TypeError:
        values = ()
    if len(values) != 4 or any(isinstance(v, bool) or not isinstance(v, Integral) for v in values):
        raise ConfigError(f"a crop box must be four integers (left, top, right, bottom), got {box!r}")
    left, top, right, bottom = (int(v) for v in values)
    if not (0 <= left < right <= width and 0 <= top < bottom <= height):
        raise ConfigError(
            f"crop box {(left, top, right, bottom)} is empty or outside {label} ({width}x{height}); it needs "
            f"0 <= left < right <= {width} and 0 <= top < bottom <= {height}"
        )
    return left, top, right, bottom
