"""What every page builder shares: the sample's context, the drawn sample, and the paragraph distractor.

A builder (:mod:`~awares_agent.evals.synthetic.document`, ``table``, ``receipt``, ``chart``, ``scene``) is a
function from a :class:`SampleContext` to a :class:`DrawnSample`;
:mod:`~awares_agent.evals.synthetic.generator` calls one per sample.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from PIL import Image

from awares_agent.boxes import Box
from awares_agent.evals.synthetic.fonts import (
    ALL_STYLES,
    REGULAR_STYLES,
    SMALL_VALUE_STYLES,
    Font,
    FontBook,
    line_height,
    text_width,
)
from awares_agent.evals.synthetic.layout import Block, Spot
from awares_agent.evals.synthetic.vocabulary import random_sentence


@dataclass
class SampleContext:
    """What one sample's builder needs.

    Attributes:
        rng: the sample's random source (every draw of the sample comes from it, in a fixed order).
        fonts: the fonts.
        size: the image's ``(width, height)``.
        needs_crop: whether the evidence is printed small (readable only at high resolution).
        spot: where the evidence should lie.
        small_px: font sizes of small evidence, see :data:`~awares_agent.evals.synthetic.fonts.SMALL_PX`.
        large_px: font sizes of large evidence, see :data:`~awares_agent.evals.synthetic.fonts.LARGE_PX`.
        label_same_size: print small evidence's label in the value's size (else large).
    """

    rng: random.Random
    fonts: FontBook
    size: tuple[int, int]
    needs_crop: bool
    spot: Spot
    small_px: tuple[int, int]
    large_px: tuple[int, int]
    label_same_size: bool

    def evidence_fonts(self, *, letters: bool) -> tuple[Font, Font]:
        """``(label_font, value_font)`` of the evidence.

        Args:
            letters: whether the answer has letters (small evidence with letters is a pixel larger).
        """
        rng = self.rng
        if self.needs_crop:
            style = rng.choice(self.fonts.styles(SMALL_VALUE_STYLES))
            size = self.small_px[1] if letters else self.small_px[0]
            label_size = size if self.label_same_size else rng.randint(*self.large_px)
        else:
            style = rng.choice(self.fonts.styles(ALL_STYLES))
            size = rng.randint(*self.large_px)
            label_size = size
        label_style = self.fonts.bold(style) if rng.random() < 0.4 else style
        return self.fonts.font(label_style, label_size), self.fonts.font(style, size)

    def mixed_font(self, *, bold: bool | None = None, size: int | None = None) -> Font:
        """A distractor font: any style, a size small (8-10), medium (12-22) or large (26-48).

        Args:
            bold: bold (True), regular (False), or bold one time in four (None).
            size: the size in px (default: drawn as above).
        """
        rng = self.rng
        if size is None:
            r = rng.random()
            size = (
                rng.randint(8, 10) if r < 0.35 else rng.randint(12, 22) if r < 0.75 else rng.randint(26, 48)
            )
        style = rng.choice(self.fonts.styles(REGULAR_STYLES))
        if bold or (bold is None and rng.random() < 0.25):
            style = self.fonts.bold(style)
        return self.fonts.font(style, size)


@dataclass
class DrawnSample:
    """What a builder returns: the image, its question and answer, and the evidence box.

    Attributes:
        image: the RGB image.
        question: the question.
        answer: the exact printed answer.
        bbox: the evidence box (answer and its label) in image pixels.
    """

    image: Image.Image
    question: str
    answer: str
    bbox: Box


def paragraph(ctx: SampleContext, ink: str, max_width: int, font: Font | None = None) -> Block:
    """A distractor block of one to five lines of filler text.

    Args:
        ctx: the sample's context.
        ink: the text colour.
        max_width: the widest a line may be, in pixels.
        font: the font (default: a regular :meth:`SampleContext.mixed_font`).
    """
    rng = ctx.rng
    font = font or ctx.mixed_font(bold=False)
    lh = line_height(font)
    block = Block()
    y = 0
    for _ in range(rng.randint(1, 5)):
        words = random_sentence(rng, rng.randint(4, 14)).split()
        line = ""
        for word in words:
            trial = f"{line} {word}".strip()
            if text_width(trial, font) > max_width and line:
                break
            line = trial
        block.text(0, y, line, font, ink)
        y += int(lh * rng.uniform(1.15, 1.5))
    return block
