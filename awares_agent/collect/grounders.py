"""Grounders: put a box on the evidence for a sample's answer, in original-image pixels.

Labelling maps the evidence box of every sample that needs high resolution onto the crop set
(:func:`awares_agent.tools.box_mapping.crops_covering`). Three sources of boxes, one :class:`Grounder`
protocol:

* :class:`DatasetGrounder`: the box the dataset gives (checked and clipped to the image).
* :class:`OCRGrounder`: reads the full-resolution image offline (RapidOCR, see
  :mod:`awares_agent.baselines.reader`) and finds the answer's text by fuzzy matching.
* :class:`VLMGrounder`: asks a chat VLM for a Qwen-style ``bbox_2d`` box and maps it from the coordinates
  of the image the model saw back to original pixels.

:class:`ChainGrounder` tries several in order (``make_grounder("dataset,ocr,vlm", backend=...)``). A
grounder that finds nothing returns a :class:`Grounding` whose ``box`` is ``None`` and whose ``reason``
says why; only failures of a backend (:class:`~awares_agent.errors.BackendError`) are raised.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import json
import math
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

from PIL import Image
from pydantic import BaseModel, field_validator

from awares_agent.backends.base import ChatBackend
from awares_agent.baselines.reader.ocr import RawBox, read_text
from awares_agent.boxes import Box, union_boxes
from awares_agent.errors import ConfigError
from awares_agent.fuzzy import substring_distance
from awares_agent.image_store import ImageStore
from awares_agent.messages import ChatMessage, TextPart
from awares_agent.tokens import QWEN2_5_VL, QwenVLTokenRule, TokenRule, backend_token_rule

__all__ = [
    "DEFAULT_VLM_MAX_PIXELS",
    "GROUND_COORDINATE_SENTENCES",
    "GROUND_PROMPT_TEMPLATE",
    "GROUND_PROMPT_VERSION",
    "ChainGrounder",
    "DatasetGrounder",
    "Grounder",
    "Grounding",
    "OCRGrounder",
    "VLMGrounder",
    "make_grounder",
    "parse_boxes",
]


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
        self,
        image: Image.Image,
        question: str,
        answers: Sequence[str],
        *,
        bbox: Sequence[float] | None = None,
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
        self,
        image: Image.Image,
        question: str,
        answers: Sequence[str],
        *,
        bbox: Sequence[float] | None = None,
    ) -> Grounding:
        """Ground one sample asynchronously (same contract as :meth:`ground`)."""
        ...


def _clip(box: Sequence[float], width: int, height: int) -> Box:
    x0, y0, x1, y1 = (float(v) for v in box)
    return (
        min(max(x0, 0.0), width),
        min(max(y0, 0.0), height),
        min(max(x1, 0.0), width),
        min(max(y1, 0.0), height),
    )


def _fmt(box: Sequence[float]) -> str:
    return "[" + ", ".join(f"{v:.0f}" for v in box) + "]"


def _excerpt(text: str, limit: int = 120) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _answers_list(answers: Sequence[str] | str) -> list[str]:
    return [answers] if isinstance(answers, str) else [str(a) for a in answers]


# --- the dataset's box -----------------------------------------------------------------------------------


class DatasetGrounder:
    """The evidence box the dataset gives (``EvalSample.bbox``), checked and clipped to the image.

    A missing box, one that is not four finite numbers, an inverted one (``x1 <= x0`` or ``y1 <= y0``) or one
    wholly outside the image gives ``box=None`` with the reason, so that a chain can try the next grounder.
    """

    name = "dataset"

    def __repr__(self) -> str:
        return "DatasetGrounder()"

    def ground(
        self,
        image: Image.Image,
        question: str,
        answers: Sequence[str],
        *,
        bbox: Sequence[float] | None = None,
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
            return none(f"the dataset's box {_fmt(values)} is empty or inverted (needs x0 < x1, y0 < y1)")
        width, height = image.size
        clipped = _clip(values, width, height)
        if clipped[2] - clipped[0] <= 0 or clipped[3] - clipped[1] <= 0:
            return none(f"the dataset's box {_fmt(values)} lies outside the {width}x{height} image")
        note = "" if tuple(values) == clipped else f" (clipped from {_fmt(values)})"
        return Grounding(box=clipped, source="dataset", reason=f"box given by the dataset{note}")

    async def aground(
        self,
        image: Image.Image,
        question: str,
        answers: Sequence[str],
        *,
        bbox: Sequence[float] | None = None,
    ) -> Grounding:
        """Same as :meth:`ground` (no I/O)."""
        return self.ground(image, question, answers, bbox=bbox)


# --- OCR -------------------------------------------------------------------------------------------------

# Words of a question that say nothing about where the answer is.
_STOPWORD_TEXT = (
    "the a an of for to in on at by from with and or is are was were be what which who whom whose how much "
    "many does do did this that these those there it its please tell me give read find value written printed "
    "shown listed given say says said according image picture photo document"
)
_STOPWORDS = frozenset(_STOPWORD_TEXT.split())


def _key_chars(text: str) -> list[tuple[str, int]]:
    """The comparison characters of ``text`` with their positions in it.

    NFKC, case-folded, letters and digits only: spaces and punctuation are dropped, because RapidOCR glues
    words together and drops or changes punctuation (``"INV-2024 0042"`` reads as ``"INV20240042"``).
    """
    out = []
    for position, char in enumerate(text):
        for folded in unicodedata.normalize("NFKC", char).casefold():
            if folded.isalnum():
                out.append((folded, position))
    return out


@dataclass(frozen=True)
class _Match:
    similarity: float
    boundary: bool  # the match does not cut a run of digits or a word in the middle
    on_question_line: bool  # the line also holds a content word of the question
    confidence: float
    box: Box
    text: str
    answer: str
    boxes: int

    def rank(self) -> tuple[float, bool, bool, int, float]:
        return (self.similarity, self.boundary, self.on_question_line, -self.boxes, self.confidence)


class OCRGrounder:
    """Find the ground-truth answer's text in the full-resolution image with offline OCR.

    The whole image is read with RapidOCR (the engine of :mod:`awares_agent.baselines.reader`). Images with
    a side longer than ``tile_size`` are read in overlapping tiles (the engine would otherwise shrink them,
    and small text would be lost); a line cut by a tile's inner edge is dropped in favour of the overlapping
    tile that holds it whole, so ``overlap`` must exceed the longest line that must be found.

    Matching: answers and OCR text are compared as letters and digits only, case-folded (spaces and
    punctuation ignored: RapidOCR glues words together). Candidates are every OCR line and every run of up to
    ``max_run`` neighbouring lines on the same text row (an answer the engine split into several boxes). The
    answer may be a substring of a candidate: the similarity is ``1 - d / len(answer)`` with ``d`` the
    smallest edit distance between the answer and any substring of the candidate, and the returned box is
    cut down to the matched characters (assuming even character widths along the line). The best match
    wins: highest similarity, then one that does not cut a number or word in the middle, then one on a row
    that also holds a content word of the question ("total" for "What is the total?"), then fewer boxes,
    then higher OCR confidence. Answers with no letter or digit (or ``yes``/``no`` answers written nowhere)
    give ``box=None``, and so do answers wrapped over several lines of text (only runs along one row are
    merged).

    Args:
        min_similarity: the lowest similarity accepted, in ``(0, 1]``; at the default 0.8 an answer of up to
            4 characters must match exactly and a 10-character one may have 2 errors.
        tile_size: the longest side read in one piece (RapidOCR in the reader keeps up to 4000 px).
        overlap: the overlap of neighbouring tiles in pixels.
        max_run: the most neighbouring boxes on a row merged into one candidate.

    Raises:
        ConfigError: an option is out of range.
    """

    name = "ocr"

    def __init__(
        self,
        min_similarity: float = 0.8,
        *,
        tile_size: int = 4000,
        overlap: int = 400,
        max_run: int = 4,
    ) -> None:
        if isinstance(min_similarity, bool) or not 0 < min_similarity <= 1:
            raise ConfigError(f"OCRGrounder: min_similarity must be in (0, 1], got {min_similarity!r}")
        if tile_size < 64 or not 0 <= overlap < tile_size // 2:
            raise ConfigError(
                f"OCRGrounder: need tile_size >= 64 and 0 <= overlap < tile_size / 2, got "
                f"tile_size={tile_size}, overlap={overlap}"
            )
        if max_run < 1:
            raise ConfigError(f"OCRGrounder: max_run must be >= 1, got {max_run}")
        self.min_similarity = float(min_similarity)
        self.tile_size = int(tile_size)
        self.overlap = int(overlap)
        self.max_run = int(max_run)

    def __repr__(self) -> str:
        return (
            f"OCRGrounder(min_similarity={self.min_similarity}, tile_size={self.tile_size}, "
            f"overlap={self.overlap}, max_run={self.max_run})"
        )

    # -- reading --

    def _tiles(self, width: int, height: int) -> list[tuple[int, int, int, int]]:
        def starts(side: int) -> list[int]:
            if side <= self.tile_size:
                return [0]
            step = self.tile_size - self.overlap
            count = math.ceil((side - self.tile_size) / step) + 1
            return [min(i * step, side - self.tile_size) for i in range(count)]

        return [
            (x, y, min(x + self.tile_size, width), min(y + self.tile_size, height))
            for y in starts(height)
            for x in starts(width)
        ]

    def read(self, image: Image.Image) -> list[RawBox]:
        """OCR the whole image (tiled when large); every line with its box in the image's pixels.

        Args:
            image: the image to read.
        """
        rgb = image.convert("RGB")
        width, height = rgb.size
        tiles = self._tiles(width, height)
        if len(tiles) == 1:
            return read_text(rgb)
        found: list[RawBox] = []
        for x, y, right, bottom in tiles:
            for raw in read_text(rgb.crop((x, y, right, bottom))):
                bx0, by0, bx1, by1 = raw.box
                # A line within half a line height of an inner edge of the tile may be cut there (the
                # detector's box stops a few pixels short of the cut); the overlapping tile holds it whole.
                margin = max(2.0, 0.5 * (by1 - by0))
                cut = (
                    (x > 0 and bx0 <= margin)
                    or (y > 0 and by0 <= margin)
                    or (right < width and bx1 >= right - x - margin)
                    or (bottom < height and by1 >= bottom - y - margin)
                )
                if not cut:
                    found.append(
                        RawBox(raw.text, raw.confidence, (bx0 + x, by0 + y, bx1 + x, by1 + y), raw.px)
                    )
        # Lines inside an overlap are read twice, sometimes split differently: keep the larger box of any
        # two that mostly overlap.
        found.sort(key=lambda r: -_area(r.box))
        kept: list[RawBox] = []
        for raw in found:
            if all(_overlap_of_smaller(raw.box, other.box) < 0.5 for other in kept):
                kept.append(raw)
        return kept

    # -- matching --

    def _candidates(self, lines: Sequence[RawBox]) -> list[list[int]]:
        """Every line alone, and every run of up to ``max_run`` neighbouring lines on one text row."""

        def next_on_row(i: int) -> int | None:
            _, y0, x1, y1 = lines[i].box
            height = y1 - y0
            best: tuple[float, int] | None = None
            for j, line in enumerate(lines):
                a0, b0, _, b1 = line.box
                overlap = min(y1, b1) - max(y0, b0)
                gap = a0 - x1
                same_row = overlap >= 0.5 * min(height, b1 - b0) and -0.5 * height <= gap <= 3 * height
                if j != i and same_row and (best is None or gap < best[0]):
                    best = (gap, j)
            return best[1] if best else None

        following = {i: next_on_row(i) for i in range(len(lines))}
        runs = []
        for i in range(len(lines)):
            run = [i]
            runs.append(list(run))
            while len(run) < self.max_run and (j := following[run[-1]]) is not None and j not in run:
                run.append(j)
                runs.append(list(run))
        return runs

    def _match(
        self,
        lines: Sequence[RawBox],
        run: list[int],
        key: str,
        answer: str,
        question_words: set[str],
        *,
        fuzzy: bool,
    ) -> _Match | None:
        chars: list[tuple[str, int, int]] = []  # (char, index in run, position in that line's text)
        for k, index in enumerate(run):
            chars.extend((c, k, p) for c, p in _key_chars(lines[index].text))
        text = "".join(c for c, _, _ in chars)
        if len(text) < len(key) * self.min_similarity:
            return None
        start = text.find(key)
        if start >= 0:
            distance, end = 0, start + len(key)
        elif fuzzy:
            distance, start, end = substring_distance(key, text)
        else:
            return None
        similarity = 1.0 - distance / len(key)
        if similarity < self.min_similarity or end <= start:
            return None
        used = {k for _, k, _ in chars[start:end]}
        if used != set(range(len(run))):
            return None  # the match lies in fewer boxes: the shorter run holds the same match
        pieces = []
        for k, index in enumerate(run):
            line = lines[index]
            positions = [p for _, kk, p in chars[start:end] if kk == k]
            x0, y0, x1, y1 = line.box
            length = max(len(line.text), 1)
            if x1 - x0 > y1 - y0:  # horizontal text: keep only the matched characters' share of the line
                x0, x1 = (
                    x0 + (x1 - x0) * min(positions) / length,
                    x0 + (x1 - x0) * (max(positions) + 1) / length,
                )
            pieces.append((x0, y0, x1, y1))
        before = chars[start - 1][0] if start > 0 else ""
        after = chars[end][0] if end < len(chars) else ""
        first, last = text[start], text[end - 1]
        boundary = not (
            (before and before.isdigit() and first.isdigit())
            or (after and after.isdigit() and last.isdigit())
            or (before.isalpha() and first.isalpha() and after.isalpha() and last.isalpha())
        )
        row_text = "".join(c for c, _ in _key_chars(" ".join(self._row_text(lines, run[0]))))
        return _Match(
            similarity=similarity,
            boundary=boundary,
            on_question_line=any(word in row_text for word in question_words),
            confidence=min(lines[i].confidence for i in run),
            box=union_boxes(pieces),
            text=" ".join(lines[i].text for i in run),
            answer=answer,
            boxes=len(run),
        )

    @staticmethod
    def _row_text(lines: Sequence[RawBox], index: int) -> list[str]:
        _, y0, _, y1 = lines[index].box
        return [
            line.text
            for line in lines
            if min(y1, line.box[3]) - max(y0, line.box[1]) >= 0.5 * min(y1 - y0, line.box[3] - line.box[1])
        ]

    def locate(
        self, lines: Sequence[RawBox], question: str, answers: Sequence[str], size: tuple[int, int]
    ) -> Grounding:
        """Find the best match of any answer among OCR lines already read (see the class docstring).

        Args:
            lines: the OCR lines, boxes in original pixels (as :meth:`read` returns them).
            question: the question (its content words break ties between equal matches).
            answers: the accepted answers.
            size: ``(width, height)`` of the image, to clip the box.
        """
        answers = _answers_list(answers)
        keys = [(a, "".join(c for c, _ in _key_chars(a))) for a in answers]
        keys = [(a, k) for a, k in keys if k]
        if not keys:
            return Grounding(
                box=None, source="ocr", reason=f"no answer has a letter or digit to look for: {answers!r}"
            )
        if not lines:
            return Grounding(box=None, source="ocr", reason="OCR found no text in the image")
        question_words = {
            w for w in re.findall(r"\w+", question.casefold()) if len(w) >= 3 and w not in _STOPWORDS
        } - {k for _, k in keys}
        best: _Match | None = None
        runs = self._candidates(lines)
        # Exact matches first: an edit-distance search over every run costs far more, and can only find
        # matches of lower similarity, which an exact match outranks anyway.
        for fuzzy in (False, True):
            for run in runs:
                for answer, key in keys:
                    match = self._match(lines, run, key, answer, question_words, fuzzy=fuzzy)
                    if match is not None and (best is None or match.rank() > best.rank()):
                        best = match
            if best is not None:
                break
        if best is None:
            shown = ", ".join(repr(a) for a, _ in keys)
            return Grounding(
                box=None,
                source="ocr",
                reason=f"none of {shown} found among {len(lines)} OCR lines (min similarity "
                f"{self.min_similarity:g})",
            )
        box = _clip(best.box, *size)
        if box[2] <= box[0] or box[3] <= box[1]:
            return Grounding(box=None, source="ocr", reason=f"the match {best.text!r} has an empty box")
        return Grounding(
            box=box,
            source="ocr",
            reason=f"answer {best.answer!r} matched OCR text {_excerpt(best.text, 60)!r} "
            f"(similarity {best.similarity:.2f})",
            score=best.similarity,
        )

    def ground(
        self,
        image: Image.Image,
        question: str,
        answers: Sequence[str],
        *,
        bbox: Sequence[float] | None = None,
    ) -> Grounding:
        """OCR ``image`` and box the best match of any answer.

        Args:
            image: the full-resolution image.
            question: the question (breaks ties between equal matches).
            answers: the accepted answers.
            bbox: unused (a chain puts a :class:`DatasetGrounder` first to use it).
        """
        return self.locate(self.read(image), question, answers, image.size)

    async def aground(
        self,
        image: Image.Image,
        question: str,
        answers: Sequence[str],
        *,
        bbox: Sequence[float] | None = None,
    ) -> Grounding:
        """:meth:`ground` in a worker thread (OCR is CPU-bound)."""
        return await asyncio.to_thread(self.ground, image, question, answers, bbox=bbox)


def _area(box: Box) -> float:
    return max(0.0, box[2] - box[0]) * max(0.0, box[3] - box[1])


def _overlap_of_smaller(a: Box, b: Box) -> float:
    """The intersection of two boxes as a share of the smaller one's area."""
    inter_w = min(a[2], b[2]) - max(a[0], b[0])
    inter_h = min(a[3], b[3]) - max(a[1], b[1])
    if inter_w <= 0 or inter_h <= 0:
        return 0.0
    smaller = min(_area(a), _area(b))
    return inter_w * inter_h / smaller if smaller > 0 else 0.0


# --- a VLM -------------------------------------------------------------------------------------------------

#: Version of the grounding prompt (recorded in every VLM grounding's reason for traceability).
GROUND_PROMPT_VERSION = "ground-v1"

#: The grounding prompt, sent after the image in one user message. ``{question}``, ``{answer}`` and
#: ``{coordinates}`` (one of :data:`GROUND_COORDINATE_SENTENCES`) are filled in.
GROUND_PROMPT_TEMPLATE = (
    "Question: {question}\n"
    "Answer: {answer}\n"
    "Locate the part of the image that shows the evidence for this answer: the text, object or part of a "
    "chart that must be read to give it. Output its bounding box as JSON, and nothing else:\n"
    '[{{"bbox_2d": [x1, y1, x2, y2], "label": "<what it is>"}}]\n'
    "{coordinates}"
)

#: The last sentence of the grounding prompt, by coordinate convention (``{width}``/``{height}``: the size of
#: the image sent).
GROUND_COORDINATE_SENTENCES = {
    "absolute": (
        "Coordinates are pixels of this image, which is {width} pixels wide and {height} pixels high."
    ),
    "relative-1000": "Coordinates are relative to the image size, from 0 to 1000 on both axes.",
}

#: The pixel budget of the image sent when the token rule has none of its own (models that are not Qwen-VL).
DEFAULT_VLM_MAX_PIXELS = QWEN2_5_VL.max_pixels

Coords = Literal["auto", "absolute", "relative-1000"]

_BOX_KEYS = ("bbox_2d", "bbox", "box", "bounding_box")
_NUMBER = r"-?\d+(?:\.\d+)?"
_QWEN2_BOX = re.compile(
    rf"\(\s*({_NUMBER})\s*,\s*({_NUMBER})\s*\)\s*,?\s*\(\s*({_NUMBER})\s*,\s*({_NUMBER})\s*\)"
)
_BRACKET_BOX = re.compile(rf"\[\s*({_NUMBER})\s*,\s*({_NUMBER})\s*,\s*({_NUMBER})\s*,\s*({_NUMBER})\s*\]")
_FENCE = re.compile(r"```[a-zA-Z0-9_-]*\s*(.*?)```", re.DOTALL)


def _four_numbers(value: Any) -> list[float] | None:
    if isinstance(value, list | tuple) and len(value) == 4:
        try:
            numbers = [float(v) for v in value if not isinstance(v, bool)]
        except (TypeError, ValueError):
            return None
        if len(numbers) == 4 and all(math.isfinite(v) for v in numbers):
            return numbers
    return None


def _boxes_in(value: Any) -> list[list[float]]:
    """The boxes in a decoded JSON value: objects with a box key, bare ``[x0, y0, x1, y1]``, lists of them."""
    if isinstance(value, dict):
        for key in _BOX_KEYS:
            if key in value and (box := _four_numbers(value[key])) is not None:
                return [box]
        return []
    if (box := _four_numbers(value)) is not None:
        return [box]
    if isinstance(value, list):
        return [box for item in value for box in _boxes_in(item)]
    return []


def parse_boxes(text: str) -> list[list[float]]:
    """Read the boxes in a grounding reply, in the model's own coordinates.

    Understood: Qwen2.5-VL/Qwen3-VL JSON (``[{"bbox_2d": [x1, y1, x2, y2], "label": ...}]``, a single
    object, keys ``bbox_2d``/``bbox``/``box``/``bounding_box``, bare ``[x1, y1, x2, y2]`` lists), also inside
    a Markdown code fence or surrounded by prose, and Qwen2-VL's ``(x1,y1),(x2,y2)``. JSON that does not
    decode (e.g. cut off) falls back to every ``[n, n, n, n]`` in the text.

    Args:
        text: the reply text.

    Returns:
        The boxes in order, each four floats; empty when there are none.
    """
    decoder = json.JSONDecoder()
    for candidate in [m.group(1) for m in _FENCE.finditer(text)] + [text]:
        stripped = candidate.strip()
        for match in re.finditer(r"[\[{]", stripped):
            try:
                value, _ = decoder.raw_decode(stripped, match.start())
            except ValueError:
                continue
            if boxes := _boxes_in(value):
                return boxes
    if boxes := [[float(g) for g in m.groups()] for m in _BRACKET_BOX.finditer(text)]:
        return boxes
    return [[float(g) for g in m.groups()] for m in _QWEN2_BOX.finditer(text)]


def _coords_for(rule: TokenRule) -> Literal["absolute", "relative-1000"]:
    # Qwen2.5-VL was trained on absolute pixels of its resized input; Qwen2-VL and Qwen3-VL on a 0-1000 grid.
    return "relative-1000" if rule.name in ("qwen2-vl", "qwen3-vl") else "absolute"


class VLMGrounder:
    """Ask a chat VLM for the box of the evidence, Qwen-style, and map it back to original pixels.

    The image is sent at the size the model itself works at, so that absolute coordinates refer to a known
    image: for a Qwen-VL token rule, :func:`~awares_agent.tokens.smart_resize`'s size (sides multiples of 28
    or 32, area within the rule's pixel bounds), which the model's processor leaves unchanged; for other
    models, the image scaled down (never up) to at most ``max_pixels``. Resampling is bicubic, as the Qwen
    processors do. With the image comes :data:`GROUND_PROMPT_TEMPLATE` (version
    :data:`GROUND_PROMPT_VERSION`) asking for ``[{"bbox_2d": [x1, y1, x2, y2], "label": ...}]``.

    Coordinates (``coords``): ``"absolute"``: pixels of the image sent (Qwen2.5-VL's convention);
    ``"relative-1000"``: 0 to 1000 on both axes (Qwen2-VL, Qwen3-VL). ``"auto"`` picks by the token rule
    (the backend's own, or inferred from its model name by :func:`~awares_agent.tokens.token_rule`):
    ``qwen2-vl`` and ``qwen3-vl`` give relative-1000, everything else (Qwen2.5-VL, AwaRes, and models of
    unknown convention, told the image's size in the prompt) absolute.

    Replies are read by :func:`parse_boxes`. Several boxes are combined by ``combine``: ``"union"`` (the
    default: evidence may be split, e.g. a key and its value) or ``"first"``. Boxes are clipped to the
    image; an inverted or empty box, or one wholly outside the image, is dropped. A reply with no usable box
    gives ``box=None`` with the reason (never an exception); backend failures raise
    :class:`~awares_agent.errors.BackendError`.

    Args:
        backend: any chat backend that accepts images.
        coords: the model's box convention (see above).
        max_pixels: the pixel budget of the image sent; ``None`` keeps the token rule's (2048 tokens of 28x28
            px for Qwen2.5-VL) or :data:`DEFAULT_VLM_MAX_PIXELS`.
        token_rule: the model's token rule (a name such as ``"qwen2.5-vl"`` or a
            :class:`~awares_agent.tokens.TokenRule`); ``None``/``"auto"`` takes the backend's.
        combine: how several boxes in one reply are combined.

    Raises:
        ConfigError: an option is invalid.
    """

    name = "vlm"

    def __init__(
        self,
        backend: ChatBackend,
        *,
        coords: Coords = "auto",
        max_pixels: int | None = None,
        token_rule: str | TokenRule | None = None,
        combine: Literal["union", "first"] = "union",
    ) -> None:
        if not isinstance(backend, ChatBackend):
            raise ConfigError(
                f"VLMGrounder needs a chat backend (complete/acomplete/model_name), got "
                f"{type(backend).__name__}"
            )
        if coords not in ("auto", "absolute", "relative-1000"):
            raise ConfigError(
                f"VLMGrounder: coords must be 'auto', 'absolute' or 'relative-1000', got {coords!r}"
            )
        if combine not in ("union", "first"):
            raise ConfigError(f"VLMGrounder: combine must be 'union' or 'first', got {combine!r}")
        if max_pixels is not None and (
            isinstance(max_pixels, bool) or not isinstance(max_pixels, int) or max_pixels < 1
        ):
            raise ConfigError(
                f"VLMGrounder: max_pixels must be a positive integer or None, got {max_pixels!r}"
            )
        self.backend = backend
        rule = backend_token_rule(token_rule, backend)
        if max_pixels is not None and isinstance(rule, QwenVLTokenRule):
            rule = dataclasses.replace(
                rule, max_pixels=max_pixels, min_pixels=min(rule.min_pixels, max_pixels)
            )
        self.rule = rule
        self.max_pixels = max_pixels
        self.coords: Literal["absolute", "relative-1000"] = _coords_for(rule) if coords == "auto" else coords
        self.combine = combine

    def __repr__(self) -> str:
        return (
            f"VLMGrounder(model={self.backend.model_name!r}, coords={self.coords!r}, "
            f"rule={self.rule.name!r}, combine={self.combine!r})"
        )

    def sent_size(self, width: int, height: int) -> tuple[int, int]:
        """``(width, height)`` of the image sent for an original of ``width`` x ``height`` (see the class).

        Args:
            width: original width in pixels.
            height: original height in pixels.
        """
        if isinstance(self.rule, QwenVLTokenRule):
            return self.rule.resized(width, height)
        budget = self.max_pixels or DEFAULT_VLM_MAX_PIXELS
        if width * height <= budget:
            return width, height
        scale = math.sqrt(budget / (width * height))
        return max(1, math.floor(width * scale)), max(1, math.floor(height * scale))

    def prompt(self, question: str, answers: Sequence[str], sent: tuple[int, int]) -> str:
        """The grounding prompt for one sample.

        Args:
            question: the question.
            answers: the accepted answers (the first is the answer; others are listed as also accepted).
            sent: ``(width, height)`` of the image sent.
        """
        quoted = [json.dumps(a, ensure_ascii=False) for a in answers]
        answer = quoted[0] if quoted else '""'
        if len(quoted) > 1:
            answer += f" (also accepted: {', '.join(quoted[1:])})"
        coordinates = GROUND_COORDINATE_SENTENCES[self.coords].format(width=sent[0], height=sent[1])
        return GROUND_PROMPT_TEMPLATE.format(
            question=question.strip(), answer=answer, coordinates=coordinates
        )

    def _request(
        self, image: Image.Image, question: str, answers: Sequence[str]
    ) -> tuple[list[ChatMessage], ImageStore, tuple[int, int]]:
        rgb = image.convert("RGB")
        sent = self.sent_size(*rgb.size)
        resized = rgb if sent == rgb.size else rgb.resize(sent, Image.Resampling.BICUBIC)
        store = ImageStore(cache_bytes=64 * 2**20)
        part = store.full(store.add(resized).id, label="image to ground")
        message = ChatMessage(
            role="user", content=[part, TextPart(text=self.prompt(question, _answers_list(answers), sent))]
        )
        return [message], store, sent

    def to_original(self, box: Sequence[float], sent: tuple[int, int], size: tuple[int, int]) -> Box:
        """Map a box from the model's coordinates to original pixels (not clipped).

        Args:
            box: ``[x0, y0, x1, y1]`` as the model wrote it.
            sent: ``(width, height)`` of the image sent.
            size: ``(width, height)`` of the original image.
        """
        if self.coords == "relative-1000":
            sx, sy = size[0] / 1000.0, size[1] / 1000.0
        else:
            sx, sy = size[0] / sent[0], size[1] / sent[1]
        x0, y0, x1, y1 = (float(v) for v in box)
        return (x0 * sx, y0 * sy, x1 * sx, y1 * sy)

    def _grounding(self, text: str, sent: tuple[int, int], size: tuple[int, int]) -> Grounding:
        boxes = parse_boxes(text)
        where = f"{self.coords} coordinates of the {sent[0]}x{sent[1]} image sent, {GROUND_PROMPT_VERSION}"
        if not boxes:
            return Grounding(
                box=None, source="vlm", reason=f"no box in the model's reply ({where}): {_excerpt(text)!r}"
            )
        kept: list[Box] = []
        dropped: list[str] = []
        for raw in boxes:
            x0, y0, x1, y1 = raw
            if x1 <= x0 or y1 <= y0:
                dropped.append(f"{_fmt(raw)} is empty or inverted")
                continue
            box = _clip(self.to_original(raw, sent, size), *size)
            if box[2] - box[0] < 1 or box[3] - box[1] < 1:
                dropped.append(f"{_fmt(raw)} lies outside the image or is under a pixel")
                continue
            kept.append(box)
            if self.combine == "first":
                break
        if not kept:
            return Grounding(box=None, source="vlm", reason=f"no usable box ({where}): {'; '.join(dropped)}")
        box = union_boxes(kept)
        notes = f"; dropped {'; '.join(dropped)}" if dropped else ""
        return Grounding(
            box=box,
            source="vlm",
            reason=f"{len(kept)} box(es) from {self.backend.model_name} ({where}){notes}",
        )

    def ground(
        self,
        image: Image.Image,
        question: str,
        answers: Sequence[str],
        *,
        bbox: Sequence[float] | None = None,
    ) -> Grounding:
        """Ask the model for the evidence box of the answer.

        Args:
            image: the full-resolution image.
            question: the question.
            answers: the accepted answers.
            bbox: unused.

        Raises:
            BackendError: the backend failed.
        """
        messages, store, sent = self._request(image, question, answers)
        reply = self.backend.complete(messages, images=store)
        return self._grounding(reply.text, sent, image.size)

    async def aground(
        self,
        image: Image.Image,
        question: str,
        answers: Sequence[str],
        *,
        bbox: Sequence[float] | None = None,
    ) -> Grounding:
        """Asynchronous :meth:`ground` (through the backend's ``acomplete``)."""
        messages, store, sent = self._request(image, question, answers)
        reply = await self.backend.acomplete(messages, images=store)
        return self._grounding(reply.text, sent, image.size)


# --- chains and the factory ------------------------------------------------------------------------------


class ChainGrounder:
    """Try grounders in order; the first box found wins.

    The reasons of every grounder tried are kept, in order, in the result's ``reason``
    (``"dataset: the dataset gives no box; ocr: answer '...' matched ..."``). Backend errors propagate.

    Args:
        grounders: the grounders, in order (at least one).

    Raises:
        ConfigError: ``grounders`` is empty.
    """

    def __init__(self, grounders: Sequence[Grounder]) -> None:
        if not grounders:
            raise ConfigError("ChainGrounder needs at least one grounder")
        self.grounders = list(grounders)
        self.name = ",".join(g.name for g in self.grounders)

    def __repr__(self) -> str:
        return f"ChainGrounder({self.grounders!r})"

    def _combine(self, results: list[tuple[str, Grounding]]) -> Grounding:
        reason = "; ".join(f"{name}: {g.reason}" for name, g in results)
        last = results[-1][1]
        if last.box is not None:
            return last.model_copy(update={"reason": reason})
        return Grounding(box=None, source="+".join(g.source for _, g in results), reason=reason)

    def ground(
        self,
        image: Image.Image,
        question: str,
        answers: Sequence[str],
        *,
        bbox: Sequence[float] | None = None,
    ) -> Grounding:
        """Run the grounders in order until one finds a box (see :class:`Grounder`)."""
        results = []
        for grounder in self.grounders:
            result = grounder.ground(image, question, answers, bbox=bbox)
            results.append((grounder.name, result))
            if result.box is not None:
                break
        return self._combine(results)

    async def aground(
        self,
        image: Image.Image,
        question: str,
        answers: Sequence[str],
        *,
        bbox: Sequence[float] | None = None,
    ) -> Grounding:
        """Asynchronous :meth:`ground`."""
        results = []
        for grounder in self.grounders:
            result = await grounder.aground(image, question, answers, bbox=bbox)
            results.append((grounder.name, result))
            if result.box is not None:
                break
        return self._combine(results)


_GROUNDERS: dict[str, type] = {"dataset": DatasetGrounder, "ocr": OCRGrounder, "vlm": VLMGrounder}


def _options(cls: type) -> set[str]:
    return {
        name
        for name, p in inspect.signature(cls.__init__).parameters.items()
        if name != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    }


def make_grounder(spec: str, **kwargs: Any) -> Grounder:
    """Build a grounder, or a chain of them, from a comma-separated spec such as ``"dataset,ocr"``.

    Args:
        spec: grounder names in the order they are tried: ``dataset``, ``ocr``, ``vlm``.
        **kwargs: options, each handed to every named grounder whose constructor takes it:
            ``min_similarity``, ``tile_size``, ``overlap``, ``max_run`` (ocr); ``backend`` (required),
            ``coords``, ``max_pixels``, ``token_rule``, ``combine`` (vlm).

    Returns:
        The grounder when the spec names one, else a :class:`ChainGrounder`.

    Raises:
        ConfigError: an unknown or repeated name, an empty spec, an option no named grounder takes, or
            ``vlm`` without ``backend``.
    """
    names = [n.strip().lower() for n in spec.split(",") if n.strip()]
    if not names:
        raise ConfigError(f"empty grounder spec {spec!r}; name grounders such as 'dataset,ocr'")
    unknown = [n for n in names if n not in _GROUNDERS]
    if unknown:
        raise ConfigError(f"unknown grounder(s) {unknown} in {spec!r}; use {', '.join(_GROUNDERS)}")
    if len(set(names)) != len(names):
        raise ConfigError(f"grounder spec {spec!r} names a grounder twice")
    options = {n: _options(_GROUNDERS[n]) for n in names}
    unused = set(kwargs) - set().union(*options.values())
    if unused:
        valid = sorted(set().union(*options.values()))
        raise ConfigError(f"make_grounder({spec!r}): no grounder takes {sorted(unused)}; valid here: {valid}")
    if "vlm" in names and kwargs.get("backend") is None:
        raise ConfigError(f"make_grounder({spec!r}): the vlm grounder needs backend=<a chat backend>")
    grounders = [_GROUNDERS[n](**{k: v for k, v in kwargs.items() if k in options[n]}) for n in names]
    return grounders[0] if len(grounders) == 1 else ChainGrounder(grounders)
