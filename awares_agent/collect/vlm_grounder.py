"""Grounding by a chat VLM: ask for a Qwen-style ``bbox_2d`` box and map it back to original pixels."""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Sequence
from typing import Any, Literal

from PIL import Image

from awares_agent.backends.base import ChatBackend
from awares_agent.boxes import Box, BoxLike, clip, format_box, union_boxes
from awares_agent.collect.grounding import Grounding, answer_list, excerpt
from awares_agent.errors import ConfigError
from awares_agent.image_store import ImageStore
from awares_agent.messages import ChatMessage, TextPart
from awares_agent.tokens import QWEN2_5_VL, QwenVLTokenRule, TokenRule, backend_token_rule

__all__ = [
    "DEFAULT_VLM_MAX_PIXELS",
    "GROUND_COORDINATE_SENTENCES",
    "GROUND_PROMPT_TEMPLATE",
    "GROUND_PROMPT_VERSION",
    "Coords",
    "VLMGrounder",
    "parse_boxes",
]

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
            role="user", content=[part, TextPart(text=self.prompt(question, answer_list(answers), sent))]
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
                box=None, source="vlm", reason=f"no box in the model's reply ({where}): {excerpt(text)!r}"
            )
        kept: list[Box] = []
        dropped: list[str] = []
        for raw in boxes:
            x0, y0, x1, y1 = raw
            if x1 <= x0 or y1 <= y0:
                dropped.append(f"{format_box(raw)} is empty or inverted")
                continue
            box = clip(self.to_original(raw, sent, size), *size)
            if box[2] - box[0] < 1 or box[3] - box[1] < 1:
                dropped.append(f"{format_box(raw)} lies outside the image or is under a pixel")
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
        self, image: Image.Image, question: str, answers: Sequence[str], *, bbox: BoxLike | None = None
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
        self, image: Image.Image, question: str, answers: Sequence[str], *, bbox: BoxLike | None = None
    ) -> Grounding:
        """Asynchronous :meth:`ground` (through the backend's ``acomplete``)."""
        messages, store, sent = self._request(image, question, answers)
        reply = await self.backend.acomplete(messages, images=store)
        return self._grounding(reply.text, sent, image.size)
