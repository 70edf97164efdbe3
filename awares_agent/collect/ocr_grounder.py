"""Grounding by offline OCR: the answer's text found in the full-resolution image by fuzzy matching."""

from __future__ import annotations

import asyncio
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

from PIL import Image

from awares_agent.boxes import Box, BoxLike, clip, union_boxes
from awares_agent.collect.grounding import Grounding, answer_list, excerpt
from awares_agent.errors import ConfigError
from awares_agent.fuzzy import substring_distance
from awares_agent.ocr import ENGINE_MAX_SIDE, RawBox, read_tiled, tiles

__all__ = ["OCRGrounder"]


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

    The whole image is read at full resolution with offline OCR (:func:`awares_agent.ocr.read_tiled`:
    RapidOCR, the engine of :mod:`awares_agent.baselines.reader`). Images with a side longer than
    ``tile_size`` are read in overlapping tiles (the engine would otherwise shrink them, and small text would
    be lost); a line cut by a tile's inner edge is dropped in favour of the overlapping tile that holds it
    whole, so ``overlap`` must exceed the longest line that must be found.

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
        tile_size: the longest side read in one piece (the engine keeps up to
            :data:`~awares_agent.ocr.ENGINE_MAX_SIDE`, 4000 px).
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
        tile_size: int = ENGINE_MAX_SIDE,
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
        return tiles(width, height, self.tile_size, self.overlap)

    def read(self, image: Image.Image) -> list[RawBox]:
        """OCR the whole image at full resolution (tiled when large); every line with its box in its pixels.

        Args:
            image: the image to read.
        """
        return read_tiled(image, tile_size=self.tile_size, overlap=self.overlap)

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
        answers = answer_list(answers)
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
        box = clip(best.box, *size)
        if box[2] <= box[0] or box[3] <= box[1]:
            return Grounding(box=None, source="ocr", reason=f"the match {best.text!r} has an empty box")
        return Grounding(
            box=box,
            source="ocr",
            reason=f"answer {best.answer!r} matched OCR text {excerpt(best.text, 60)!r} "
            f"(similarity {best.similarity:.2f})",
            score=best.similarity,
        )

    def ground(
        self, image: Image.Image, question: str, answers: Sequence[str], *, bbox: BoxLike | None = None
    ) -> Grounding:
        """OCR ``image`` and box the best match of any answer.

        Args:
            image: the full-resolution image.
            question: the question (breaks ties between equal matches).
            answers: the accepted answers.
            bbox: unused (a chain puts a
                :class:`~awares_agent.collect.dataset_grounder.DatasetGrounder` first to use it).
        """
        return self.locate(self.read(image), question, answers, image.size)

    async def aground(
        self, image: Image.Image, question: str, answers: Sequence[str], *, bbox: BoxLike | None = None
    ) -> Grounding:
        """:meth:`ground` in a worker thread (OCR is CPU-bound)."""
        return await asyncio.to_thread(self.ground, image, question, answers, bbox=bbox)
