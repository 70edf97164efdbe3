"""Fonts and text metrics of the synthetic benchmark: which DejaVu faces, at which sizes, and how big text is.

The evidence sizes (:data:`SMALL_PX`, :data:`LARGE_PX`) are what make a sample need high resolution or not;
see the package docstring for how they were tuned against the offline OCR reader.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from awares_agent.boxes import Box

Font = ImageFont.FreeTypeFont | ImageFont.ImageFont
"""A TrueType font, or PIL's built-in one where no DejaVu file is found."""

DEFAULT_FONT_DIR = Path("/usr/share/fonts/truetype/dejavu")
"""Where the DejaVu fonts are looked for; PIL's built-in font is used for any that is missing."""

SMALL_PX = (8, 9)
"""Font sizes (px em) of evidence that needs high resolution: ``(answers of digits and punctuation only,
answers with letters)``; 4-4.5 px in the half view. At 9 px the OCR still reads a number in the half view one
time in eight, and at 8 px it misses one code with letters in six even at full resolution."""

LARGE_PX = (28, 44)
"""Font sizes (px em, inclusive range) of evidence readable in the half view: 14-22 px there."""

FONT_FILES = {
    "sans": "DejaVuSans.ttf",
    "sans-bold": "DejaVuSans-Bold.ttf",
    "serif": "DejaVuSerif.ttf",
    "serif-bold": "DejaVuSerif-Bold.ttf",
    "mono": "DejaVuSansMono.ttf",
    "mono-bold": "DejaVuSansMono-Bold.ttf",
    "sans-condensed": "DejaVuSansCondensed.ttf",
    "sans-condensed-bold": "DejaVuSansCondensed-Bold.ttf",
    "serif-condensed": "DejaVuSerifCondensed.ttf",
    "serif-condensed-bold": "DejaVuSerifCondensed-Bold.ttf",
}
"""Font styles and their DejaVu file names."""

REGULAR_STYLES = ("sans", "serif", "mono", "sans-condensed", "serif-condensed")
"""The styles without a bold weight."""
ALL_STYLES = tuple(FONT_FILES)
"""Every style, bold ones included."""
# Small evidence values are drawn in regular weights: bold digits stay legible to OCR even at 4 px.
SMALL_VALUE_STYLES = ("sans", "serif", "sans-condensed", "serif-condensed", "mono")
"""The styles small (high-resolution) evidence values are drawn in."""


class FontBook:
    """Fonts by style and pixel size: the DejaVu files found in ``font_dir``, else PIL's default font.

    Args:
        font_dir: folder holding the DejaVu ``.ttf`` files (:data:`FONT_FILES`); styles whose file is missing
            fall back to ``ImageFont.load_default(size)``, so generation runs anywhere (the images then differ
            from those made with DejaVu, but are still deterministic).
    """

    def __init__(self, font_dir: str | Path | None = DEFAULT_FONT_DIR) -> None:
        folder = Path(font_dir) if font_dir is not None else None
        self.paths: dict[str, Path] = {}
        if folder is not None:
            for style, name in FONT_FILES.items():
                if (folder / name).is_file():
                    self.paths[style] = folder / name
        self._cache: dict[tuple[str, int], Font] = {}

    @property
    def fallback(self) -> bool:
        """True when no DejaVu file was found and every style is PIL's default font."""
        return not self.paths

    def styles(self, wanted: Sequence[str]) -> list[str]:
        """The styles of ``wanted`` that have a file, or ``["default"]`` when none has."""
        return [s for s in wanted if s in self.paths] or ["default"]

    def font(self, style: str, size: int) -> Font:
        """The font of ``style`` (a key of :data:`FONT_FILES` or ``"default"``) at ``size`` px."""
        key = (style, size)
        if key not in self._cache:
            path = self.paths.get(style)
            self._cache[key] = (
                ImageFont.truetype(str(path), size) if path is not None else ImageFont.load_default(size)
            )
        return self._cache[key]

    def bold(self, style: str) -> str:
        """The bold variant of ``style`` if there is one (else ``style``)."""
        if style.endswith("-bold"):
            return style
        candidate = f"{style}-bold"
        return candidate if candidate in self.paths else style


_MEASURE = ImageDraw.Draw(Image.new("RGB", (1, 1)))


def ink_box(x: float, y: float, text: str, font: Font) -> Box:
    """The ink box of ``text`` drawn at ``(x, y)`` (anchor left-ascender), in whole pixels.

    Args:
        x: the left of the text's line box.
        y: the top of the text's line box.
        text: the text.
        font: its font.
    """
    x0, y0, x1, y1 = _MEASURE.textbbox((x, y), text, font=font)
    return math.floor(x0), math.floor(y0), math.ceil(x1), math.ceil(y1)


def text_width(text: str, font: Font) -> int:
    """The advance width of ``text`` in ``font``, rounded up to whole pixels.

    Args:
        text: the text.
        font: its font.
    """
    return math.ceil(font.getlength(text))


def line_height(font: Font) -> int:
    """The height of one line of ``font`` (ascent plus descent; the ink of ``"Ag"`` for PIL's own font).

    Args:
        font: the font.
    """
    if isinstance(font, ImageFont.FreeTypeFont):
        ascent, descent = font.getmetrics()
        return ascent + descent
    return ink_box(0, 0, "Ag", font)[3]
