"""Bringing an image of any PIL mode to the RGB a model is shown."""

from __future__ import annotations

from PIL import Image

__all__ = ["to_rgb"]

_HIGH_BIT_DEPTH_MODES = frozenset({"I", "I;16", "I;16B", "I;16L", "I;16N"})


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert an image of any PIL mode to RGB.

    Transparent images (RGBA, LA, PA, P or L/RGB with a transparency key) are composited on white; 16- and
    32-bit integer images are brought to 8 bits (``value >> 8`` when their values exceed 255, a linear
    stretch of their range when they are negative or exceed 16 bits); float (``F``) images are stretched from
    their range to 0..255. Other modes (CMYK, YCbCr, 1, L, P, HSV) use PIL's conversion.

    Args:
        img: the image; an RGB image is returned as is (not copied).

    Returns:
        An RGB image of the same size.
    """
    if img.mode == "RGB":
        return img
    if img.mode in _HIGH_BIT_DEPTH_MODES or img.mode == "F":
        return _to_8bit(img).convert("RGB")
    if img.has_transparency_data:
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return img.convert("RGB")


def _to_8bit(img: Image.Image) -> Image.Image:
    """An L image from a high-bit-depth integer (I, I;16...) or float (F) image, scaled, not clipped."""
    if img.mode != "F":
        img = img.convert("I")
    lo, hi = img.getextrema()
    if img.mode == "I" and lo >= 0 and hi <= 255:
        return img.convert("L")
    if img.mode == "I" and lo >= 0 and hi <= 65535:
        # Multiplying by 1/256 (exact in binary) then truncating is value >> 8.
        return img.point(lambda v: v * (1 / 256)).convert("L")
    if hi == lo:
        return Image.new("L", img.size, min(255, max(0, round(lo))))
    factor = 255 / (hi - lo)
    # +0.5: both point() on I and the F -> L conversion truncate; this rounds to nearest.
    return img.point(lambda v: (v - lo) * factor + 0.5).convert("L")
