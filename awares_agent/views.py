"""The low-resolution view: how its size is derived from the source image's."""

from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Integral, Real

from awares_agent.errors import ConfigError

__all__ = ["ViewSpec"]


@dataclass(frozen=True)
class ViewSpec:
    """How to derive the low-resolution view from a source image.

    Args:
        scale: factor applied to both sides, in (0, 1]; each side is ``max(1, floor(side * scale))``, so the
            default 0.5 gives exactly half the width and half the height (rounded down).
        longest_side: if set, takes precedence over ``scale``: the view is resized so that its longest side
            equals this (the other side scaled in proportion, rounded down), and is never upscaled.

    Raises:
        ConfigError: ``scale`` is not in (0, 1] or ``longest_side`` is not a positive integer.
    """

    scale: float = 0.5
    longest_side: int | None = None

    def __post_init__(self) -> None:
        scale = self.scale
        if isinstance(scale, bool) or not isinstance(scale, Real) or not (0 < scale <= 1):
            raise ConfigError(f"ViewSpec.scale must be a number in (0, 1], got {scale!r}")
        side = self.longest_side
        if side is not None and (isinstance(side, bool) or not isinstance(side, Integral) or side < 1):
            raise ConfigError(f"ViewSpec.longest_side must be a positive integer or None, got {side!r}")

    def size(self, width: int, height: int) -> tuple[int, int]:
        """The view's size for a source image of ``width`` x ``height`` pixels (each side at least 1).

        Args:
            width: width of the (orientation-corrected) source image.
            height: height of the (orientation-corrected) source image.
        """
        if self.longest_side is not None:
            longest = max(width, height)
            if longest <= self.longest_side:
                return width, height
            target = int(self.longest_side)
            if width >= height:
                return target, max(1, height * target // width)
            return max(1, width * target // height), target
        # The epsilon keeps products like 10 * 0.7 = 6.999... from flooring one pixel short.
        return (
            max(1, math.floor(width * self.scale + 1e-9)),
            max(1, math.floor(height * self.scale + 1e-9)),
        )

    def key(self) -> str:
        """A stable string naming this view, used to build content ids (``"scale=0.5"``)."""
        if self.longest_side is not None:
            return f"longest_side={int(self.longest_side)}"
        return f"scale={float(self.scale)!r}"
