"""Grounders chosen by name: :func:`make_grounder` builds one, or a :class:`ChainGrounder` of several.

A grounder puts a box on the evidence for a sample's answer, in original-image pixels
(:mod:`awares_agent.collect.grounding`). Three sources of boxes, one module each:

* :class:`~awares_agent.collect.dataset_grounder.DatasetGrounder` (``dataset``): the box the dataset gives
  (checked and clipped to the image).
* :class:`~awares_agent.collect.ocr_grounder.OCRGrounder` (``ocr``): reads the full-resolution image offline
  (:mod:`awares_agent.ocr`) and finds the answer's text by fuzzy matching.
* :class:`~awares_agent.collect.vlm_grounder.VLMGrounder` (``vlm``): asks a chat VLM for a Qwen-style
  ``bbox_2d`` box and maps it from the coordinates of the image the model saw back to original pixels.

:class:`ChainGrounder` tries several in order (``make_grounder("dataset,ocr,vlm", backend=...)``); their
options are one typed :class:`GrounderOptions`. Every grounder is importable from here too.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from PIL import Image

from awares_agent.backends.base import ChatBackend
from awares_agent.boxes import BoxLike
from awares_agent.collect.dataset_grounder import DatasetGrounder
from awares_agent.collect.grounding import Grounder, Grounding
from awares_agent.collect.ocr_grounder import OCRGrounder
from awares_agent.collect.vlm_grounder import (
    DEFAULT_VLM_MAX_PIXELS,
    GROUND_COORDINATE_SENTENCES,
    GROUND_PROMPT_TEMPLATE,
    GROUND_PROMPT_VERSION,
    Coords,
    VLMGrounder,
    parse_boxes,
)
from awares_agent.errors import ConfigError
from awares_agent.tokens import TokenRule

__all__ = [
    "DEFAULT_VLM_MAX_PIXELS",
    "GROUND_COORDINATE_SENTENCES",
    "GROUND_PROMPT_TEMPLATE",
    "GROUND_PROMPT_VERSION",
    "ChainGrounder",
    "DatasetGrounder",
    "Grounder",
    "GrounderOptions",
    "Grounding",
    "OCRGrounder",
    "VLMGrounder",
    "make_grounder",
    "parse_boxes",
]


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
        self, image: Image.Image, question: str, answers: Sequence[str], *, bbox: BoxLike | None = None
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
        self, image: Image.Image, question: str, answers: Sequence[str], *, bbox: BoxLike | None = None
    ) -> Grounding:
        """Asynchronous :meth:`ground`."""
        results = []
        for grounder in self.grounders:
            result = await grounder.aground(image, question, answers, bbox=bbox)
            results.append((grounder.name, result))
            if result.box is not None:
                break
        return self._combine(results)


@dataclass(frozen=True)
class GrounderOptions:
    """The options of the grounders :func:`make_grounder` builds; each goes to the grounder that takes it.

    ``None`` leaves the grounder's own default (see each grounder's docstring).

    Args:
        min_similarity: :class:`OCRGrounder`'s lowest accepted match similarity.
        tile_size: :class:`OCRGrounder`'s longest side read in one piece.
        overlap: :class:`OCRGrounder`'s overlap of neighbouring tiles.
        max_run: :class:`OCRGrounder`'s most neighbouring boxes merged into one candidate.
        backend: :class:`VLMGrounder`'s chat backend (required when ``vlm`` is named).
        coords: :class:`VLMGrounder`'s box convention.
        max_pixels: :class:`VLMGrounder`'s pixel budget of the image sent.
        token_rule: :class:`VLMGrounder`'s token rule.
        combine: how :class:`VLMGrounder` combines several boxes in one reply.
    """

    min_similarity: float | None = None
    tile_size: int | None = None
    overlap: int | None = None
    max_run: int | None = None
    backend: ChatBackend | None = None
    coords: Coords | None = None
    max_pixels: int | None = None
    token_rule: str | TokenRule | None = None
    combine: Literal["union", "first"] | None = None

    def given(self, names: Sequence[str] | None = None) -> dict[str, Any]:
        """The options that are set (not ``None``), by name.

        Args:
            names: only these options; ``None``: all.
        """
        names = [f.name for f in dataclasses.fields(self)] if names is None else names
        return {name: getattr(self, name) for name in names if getattr(self, name) is not None}


@dataclass(frozen=True)
class _Kind:
    options: tuple[str, ...]  # the GrounderOptions this grounder takes
    build: Callable[[GrounderOptions], Grounder]


_OCR_OPTIONS = ("min_similarity", "tile_size", "overlap", "max_run")
_VLM_OPTIONS = ("backend", "coords", "max_pixels", "token_rule", "combine")

#: Each grounder by its name in a spec, with the options it takes and how it is built from them.
_KINDS: dict[str, _Kind] = {
    "dataset": _Kind((), lambda options: DatasetGrounder()),
    "ocr": _Kind(_OCR_OPTIONS, lambda options: OCRGrounder(**options.given(_OCR_OPTIONS))),
    "vlm": _Kind(_VLM_OPTIONS, lambda options: VLMGrounder(**options.given(_VLM_OPTIONS))),
}


def make_grounder(spec: str, options: GrounderOptions | None = None, **kwargs: Any) -> Grounder:
    """Build a grounder, or a chain of them, from a comma-separated spec such as ``"dataset,ocr"``.

    Args:
        spec: grounder names in the order they are tried: ``dataset``, ``ocr``, ``vlm``.
        options: the grounders' options (see :class:`GrounderOptions`).
        **kwargs: options as keywords (fields of :class:`GrounderOptions`), over those of ``options``:
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
    unknown = [n for n in names if n not in _KINDS]
    if unknown:
        raise ConfigError(f"unknown grounder(s) {unknown} in {spec!r}; use {', '.join(_KINDS)}")
    if len(set(names)) != len(names):
        raise ConfigError(f"grounder spec {spec!r} names a grounder twice")
    valid = sorted({option for n in names for option in _KINDS[n].options})
    fields = {f.name for f in dataclasses.fields(GrounderOptions)}
    known = {name: value for name, value in kwargs.items() if name in fields}
    options = dataclasses.replace(options or GrounderOptions(), **known)
    unused = sorted((set(kwargs) - fields) | (set(options.given()) - set(valid)))
    if unused:
        raise ConfigError(f"make_grounder({spec!r}): no grounder takes {unused}; valid here: {valid}")
    if "vlm" in names and options.backend is None:
        raise ConfigError(f"make_grounder({spec!r}): the vlm grounder needs backend=<a chat backend>")
    grounders = [_KINDS[n].build(options) for n in names]
    return grounders[0] if len(grounders) == 1 else ChainGrounder(grounders)
