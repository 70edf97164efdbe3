"""How boxes of text lie relative to one another: overlaps along each axis, nearness, clipping."""

from __future__ import annotations

from collections.abc import Sequence

from awares_agent.baselines.reader.ocr import TextBox
from awares_agent.boxes import Box

__all__ = ["clip", "contains", "h_overlap", "near", "v_overlap"]


def v_overlap(a: Box, b: Box) -> float:
    """Vertical overlap of two boxes as a fraction of the shorter one's height.

    Args:
        a: a box.
        b: another box.
    """
    inter = min(a[3], b[3]) - max(a[1], b[1])
    return max(0.0, inter) / max(1e-6, min(a[3] - a[1], b[3] - b[1]))


def h_overlap(a: Box, b: Box) -> float:
    """Horizontal overlap of two boxes as a fraction of the narrower one's width.

    Args:
        a: a box.
        b: another box.
    """
    inter = min(a[2], b[2]) - max(a[0], b[0])
    return max(0.0, inter) / max(1e-6, min(a[2] - a[0], b[2] - b[0]))


def clip(box: Box, width: int, height: int) -> Box:
    """``box`` cut to an image of ``width`` x ``height`` pixels (an empty box where it lies outside).

    Args:
        box: the box.
        width: the image's width.
        height: the image's height.
    """
    x0, y0, x1, y1 = box
    x0, x1 = max(0.0, min(x0, width)), max(0.0, min(x1, width))
    y0, y1 = max(0.0, min(y0, height)), max(0.0, min(y1, height))
    return (x0, y0, max(x0, x1), max(y0, y1))


def contains(outer: Sequence[float], inner: Sequence[float]) -> bool:
    """Whether ``inner`` lies inside ``outer`` (edges included).

    Args:
        outer: the larger box.
        inner: the box that may lie inside it.
    """
    return outer[0] <= inner[0] and outer[1] <= inner[1] and inner[2] <= outer[2] and inner[3] <= outer[3]


def near(a: TextBox, b: TextBox, lines: float) -> bool:
    """Whether two boxes lie within ``lines`` line heights (the taller one's) of each other.

    Args:
        a: a box.
        b: another box.
        lines: how many line heights apart they may be (:attr:`ReaderConfig.near_lines`).
    """
    h = lines * max(a.height, b.height)
    return (
        a.box[0] - h < b.box[2]
        and b.box[0] - h < a.box[2]
        and a.box[1] - h < b.box[3]
        and b.box[1] - h < a.box[3]
    )
