"""What a grounder is: the :class:`Grounder` protocol and the :class:`Grounding` it returns.

Labelling maps the evidence box of every sample that needs high resolution onto the crop set
(:func:`awares_agent.tools.box_mapping.crops_covering`); a grounder finds that box. The grounders:
:class:`~awares_agent.collect.dataset_grounder.DatasetGrounder` (the dataset's box),
:class:`~awares_agent.collect.ocr_grounder.OCRGrounder` (the answer's text found by offline OCR),
:class:`~awares_agent.collect.vlm_grounder.VLMGrounder` (a chat VLM asked for a box), and
:class:`~awares_agent.collect.grounders.ChainGrounder` (several in order), built by name with
:func:`~awares_agent.collect.grounders.make_grounder`. A grounder that finds nothing returns a
:class:`Grounding` whose ``box`` is ``None`` and whose ``reason`` says why; only failures of a backend
(:class:`~awares_agent.errors.BackendError`) are raised.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from PIL import Image
from pydantic import BaseModel, field_validator

from awares_agent.boxes import Box, BoxLike

__all__ = ["Grounder", "Grounding", "answer_list", "excerpt"]


class Grounding(BaseModel):
    """Where the evidence for an answer is.

    Attributes:
        box: ``(x0, y0, x1, y1)`` in original-image pixels (``x0 < x1``, ``y0 < y1``), or ``None`` when the
            grounder found nothing.
        source: which grounder gave it: ``"dataset"``, ``"ocr"`` or ``"vlm"`` (a chain that found nothing
            names all it tried, e.g. ``"dataset+ocr"``).
        reason: a short explanation (what matched, or why nothing was found).
        score: the grounder's confidence where it has one (the OCR match's similarity), else ``None``.
    """

    box: Box | None
    source: str
    reason: str
    score: float | None = None

    @field_validator("box")
    @classmethod
    def _ordered(cls, box: Box | None) -> Box | None:
        if box is not None:
            x0, y0, x1, y1 = box
            if not all(math.isfinite(v) for v in box) or not (x0 < x1 and y0 < y1):
                raise ValueError(f"a grounding box needs finite x0 < x1 and y0 < y1, got {box!r}")
        return box


@runtime_checkable
class Grounder(Protocol):
    """Finds the evidence for an answer in an image.

    Attributes:
        name: a short name (``"dataset"``, ``"ocr"``, ``"vlm"``, or a chain's ``"dataset,ocr"``).
    """

    name: str

    def ground(
        self, image: Image.Image, question: str, answers: Sequence[str], *, bbox: BoxLike | None = None
    ) -> Grounding:
        """Ground one sample.

        Args:
            image: the full-resolution, orientation-corrected image (e.g. ``SourceImage.full()``).
            question: the question.
            answers: the accepted answers (the evidence of any of them will do).
            bbox: the dataset's evidence box in original pixels, when it has one.
        """
        ...

    async def aground(
        self, image: Image.Image, question: str, answers: Sequence[str], *, bbox: BoxLike | None = None
    ) -> Grounding:
        """Ground one sample asynchronously (same contract as :meth:`ground`)."""
        ...


def answer_list(answers: Sequence[str] | str) -> list[str]:
    """The accepted answers as a list of strings (a lone string is one answer, not its characters).

    Args:
        answers: the answers as a caller gave them.
    """
    return [answers] if isinstance(answers, str) else [str(a) for a in answers]


def excerpt(text: str, limit: int = 120) -> str:
    """``text`` on one line, cut to ``limit`` characters (ending in ``...`` when cut), to quote in a reason.

    Args:
        text: the text (a model's reply, an OCR line).
        limit: the most characters returned.
    """
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
