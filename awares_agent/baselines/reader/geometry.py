"""Whether two text boxes lie near each other (the other box operations are :mod:`awares_agent.boxes`)."""

from __future__ import annotations

from awares_agent.baselines.reader.ocr import TextBox

__all__ = ["near"]


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
