"""Visual-token accounting: how many visual tokens an image costs a given model, and the retained token ratio.

The agent first sends a low-resolution *view* of the image, then may fetch high-resolution *crops*. The
**retained token ratio** (RTR) is::

    RTR = (tokens of the view, counted once per query + tokens of every crop) / tokens of the full image

where every count uses the same model's rule. With pure pixel counting and a half-width, half-height view, a
direct answer costs 0.25, one quarter crop 0.50, one half crop 0.75 and all four quarter crops 1.25.

Token rules:

* :class:`QwenVLTokenRule`: the Qwen2-VL family (Qwen2-VL, Qwen2.5-VL, Qwen3-VL). The image is resized by
  :func:`smart_resize` to multiples of ``patch_size * merge_size`` inside ``[min_pixels, max_pixels]``, then
  costs one token per ``(patch_size * merge_size)**2`` pixels. :data:`QWEN2_5_VL` is the paper's setting.
* :class:`PixelTokenRule`: the documented fallback for models whose rule we do not know: one token per
  ``unit x unit`` pixels, with no resize rounding.

This module has no dependency on ``transformers``; the tests check it against transformers' own processor.
"""

from __future__ import annotations

import logging
import math
import operator
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict

from awares_agent.errors import ConfigError

logger = logging.getLogger(__name__)

__all__ = [
    "QWEN2_5_VL",
    "QWEN2_VL",
    "QWEN3_VL",
    "PixelTokenRule",
    "QwenVLTokenRule",
    "TokenCost",
    "TokenRule",
    "pixel_rtr",
    "smart_resize",
    "token_cost",
    "token_rule",
]

#: Qwen2-VL's own defaults in transformers (``min_pixels = 56*56``, ``max_pixels = 28*28*1280``).
_HF_DEFAULT_MIN_PIXELS = 56 * 56
_HF_DEFAULT_MAX_PIXELS = 14 * 14 * 4 * 1280


def _positive_int(value: object, what: str) -> int:
    """Return ``value`` as an ``int`` if it is an integer >= 1, else raise :class:`ConfigError`."""
    try:
        number = operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        raise ConfigError(f"{what} must be an integer, got {value!r}") from None
    if number < 1:
        raise ConfigError(f"{what} must be >= 1, got {number}")
    return number


def _size(size: object, what: str) -> tuple[int, int]:
    """Validate a ``(width, height)`` pair of positive integers."""
    try:
        width, height = size  # type: ignore[misc]
    except (TypeError, ValueError):
        raise ConfigError(f"{what} must be a (width, height) pair, got {size!r}") from None
    return _positive_int(width, f"{what} width"), _positive_int(height, f"{what} height")


def smart_resize(
    height: int,
    width: int,
    factor: int = 28,
    min_pixels: int = _HF_DEFAULT_MIN_PIXELS,
    max_pixels: int = _HF_DEFAULT_MAX_PIXELS,
) -> tuple[int, int]:
    """Size an image the way the Qwen2-VL image processor does before cutting it into patches.

    A reimplementation of ``transformers.models.qwen2_vl.image_processing_qwen2_vl.smart_resize`` (checked
    against transformers 5.23): each side is rounded to the nearest multiple of ``factor``; if the area is
    then above ``max_pixels`` the image is scaled down (sides floored to multiples of ``factor``, never
    below ``factor``), and if it is below ``min_pixels`` it is scaled up (sides ceiled to multiples of
    ``factor``). Sides smaller than ``factor`` are handled exactly as transformers does (they are not
    refused).

    Deliberate differences, so that token accounting never crashes:

    * transformers raises ``ValueError`` when the aspect ratio exceeds 200; we do not, and return what the
      formula gives (the real processor would refuse such an image, and the result may then exceed
      ``max_pixels``).
    * where transformers' formula would return a side of 0 (only possible with ``min_pixels <= 0`` and a
      side below ``factor / 2``), which the processor cannot use, we return ``factor`` for that side.

    Args:
        height: image height in pixels (>= 1).
        width: image width in pixels (>= 1).
        factor: both returned sides are multiples of this (``patch_size * merge_size``, 28 for Qwen2.5-VL).
        min_pixels: smallest area the image is scaled up to.
        max_pixels: largest area the image is scaled down to.

    Returns:
        ``(resized_height, resized_width)``: note the order, height first, as in transformers.

    Raises:
        ConfigError: a size or ``factor`` is not a positive integer, or ``min_pixels``/``max_pixels`` are
            not integers.
    """
    height = _positive_int(height, "height")
    width = _positive_int(width, "width")
    factor = _positive_int(factor, "factor")
    try:
        min_pixels = operator.index(min_pixels)
        max_pixels = operator.index(max_pixels)
    except TypeError:
        raise ConfigError(
            f"min_pixels and max_pixels must be integers, got {min_pixels!r} and {max_pixels!r}"
        ) from None
    # Same float expressions, in the same order, as transformers, so results are bit-identical.
    h_bar = round(height / factor) * factor
    w_bar = round(width / factor) * factor
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return max(h_bar, factor), max(w_bar, factor)


@runtime_checkable
class TokenRule(Protocol):
    """How many visual tokens a model spends on an image of a given size.

    Attributes:
        name: short name of the rule, e.g. ``"qwen2.5-vl"`` (recorded in :class:`TokenCost`).
        unit: side in pixels of the square one token covers (for documentation and reports).
    """

    name: str
    unit: int

    def count(self, width: int, height: int) -> int:
        """Return the number of visual tokens for an image of ``width`` x ``height`` pixels (>= 1)."""
        ...


@dataclass(frozen=True)
class QwenVLTokenRule:
    """The Qwen2-VL family's rule: :func:`smart_resize`, then one token per merged patch.

    The image is resized to ``(h', w')``, multiples of ``factor = patch_size * merge_size`` with an area in
    ``[min_pixels, max_pixels]``, and costs ``(h' / factor) * (w' / factor)`` tokens, which is what the
    model's processor reports as ``prod(image_grid_thw) / merge_size**2``.

    Attributes:
        name: name of the rule.
        patch_size: side of a vision-encoder patch in pixels (14 for Qwen2/2.5-VL, 16 for Qwen3-VL).
        merge_size: patches merged per side into one LLM token (2).
        min_pixels: smallest area an image is scaled up to.
        max_pixels: largest area an image is scaled down to.
    """

    name: str
    patch_size: int
    merge_size: int
    min_pixels: int
    max_pixels: int

    def __post_init__(self) -> None:
        _positive_int(self.patch_size, "patch_size")
        _positive_int(self.merge_size, "merge_size")
        _positive_int(self.max_pixels, "max_pixels")
        try:
            min_pixels = operator.index(self.min_pixels)
        except TypeError:
            raise ConfigError(f"min_pixels must be an integer, got {self.min_pixels!r}") from None
        if min_pixels < 0:
            raise ConfigError(f"min_pixels must be >= 0, got {min_pixels}")
        if min_pixels > self.max_pixels:
            raise ConfigError(f"min_pixels ({min_pixels}) must not exceed max_pixels ({self.max_pixels})")

    @property
    def unit(self) -> int:
        """Side in pixels of the square one token covers after resizing: ``patch_size * merge_size``."""
        return self.patch_size * self.merge_size

    def resized(self, width: int, height: int) -> tuple[int, int]:
        """Return the size ``(width', height')`` the processor resizes a ``width`` x ``height`` image to.

        Args:
            width: image width in pixels.
            height: image height in pixels.

        Returns:
            ``(resized_width, resized_height)``: width first, unlike :func:`smart_resize`.
        """
        h_bar, w_bar = smart_resize(
            height, width, factor=self.unit, min_pixels=self.min_pixels, max_pixels=self.max_pixels
        )
        return w_bar, h_bar

    def count(self, width: int, height: int) -> int:
        """Return the number of visual tokens for a ``width`` x ``height`` image.

        Args:
            width: image width in pixels.
            height: image height in pixels.
        """
        w_bar, h_bar = self.resized(width, height)
        return (h_bar // self.unit) * (w_bar // self.unit)


#: Qwen2.5-VL with the paper's pixel budget: 32 to 2048 tokens of 28x28 pixels.
QWEN2_5_VL = QwenVLTokenRule("qwen2.5-vl", 14, 2, min_pixels=32 * 28 * 28, max_pixels=2048 * 28 * 28)
#: Qwen2-VL: the same geometry and budget as :data:`QWEN2_5_VL`.
QWEN2_VL = QwenVLTokenRule("qwen2-vl", 14, 2, min_pixels=32 * 28 * 28, max_pixels=2048 * 28 * 28)
#: Qwen3-VL: 32x32-pixel tokens (patch 16, merge 2). The 32-to-2048-token budget is *our* choice, mirroring
#: the paper's for Qwen2.5-VL (the released Qwen3-VL processor configs use other limits).
QWEN3_VL = QwenVLTokenRule("qwen3-vl", 16, 2, min_pixels=32 * 32 * 32, max_pixels=2048 * 32 * 32)


@dataclass(frozen=True)
class PixelTokenRule:
    """The rule for models whose own rule is unknown: one token per ``unit x unit`` pixels.

    ``count = max(1, ceil(width * height / unit**2))``, capped at ``max_tokens`` when set. There is no resize
    rounding, so ratios between counts follow pixel areas closely (exactly, with ``unit=1``).

    Attributes:
        name: name of the rule (``"pixels"``).
        unit: side in pixels of the square one token covers (28 by default, as Qwen2.5-VL).
        max_tokens: optional cap on the count for one image (``None``: no cap).
    """

    name: str = "pixels"
    unit: int = 28
    max_tokens: int | None = None

    def __post_init__(self) -> None:
        _positive_int(self.unit, "unit")
        if self.max_tokens is not None:
            _positive_int(self.max_tokens, "max_tokens")

    def count(self, width: int, height: int) -> int:
        """Return the number of visual tokens for a ``width`` x ``height`` image.

        Args:
            width: image width in pixels (>= 1).
            height: image height in pixels (>= 1).
        """
        width = _positive_int(width, "width")
        height = _positive_int(height, "height")
        tokens = max(1, -(-(width * height) // (self.unit * self.unit)))  # exact integer ceil
        if self.max_tokens is not None:
            tokens = min(tokens, self.max_tokens)
        return tokens


_NAMED_RULES: dict[str, TokenRule] = {
    QWEN2_5_VL.name: QWEN2_5_VL,
    QWEN2_VL.name: QWEN2_VL,
    QWEN3_VL.name: QWEN3_VL,
}
_VALID_NAMES = (*_NAMED_RULES, "pixels", "pixels:<unit>", "auto")


def _infer_rule(model_name: str | None) -> TokenRule:
    """Pick a rule from a model name (see :func:`token_rule`)."""
    name = (model_name or "").lower()
    if "qwen3" in name and "vl" in name:
        return QWEN3_VL
    if (("qwen2.5" in name or "qwen2_5" in name) and "vl" in name) or "awares" in name:
        return QWEN2_5_VL
    if "qwen2" in name and "vl" in name:
        return QWEN2_VL
    if model_name and model_name not in _GUESSED:
        _GUESSED.add(model_name)
        logger.warning(
            "no visual-token rule is known for model %r: counting one token per 28x28 pixels; if it is a "
            "Qwen-VL model under another name, pass token_rule= (--token-rule qwen2.5-vl, qwen3-vl...)",
            model_name,
        )
    return PixelTokenRule()


#: Model names already warned about by :func:`_infer_rule` (once per name and process).
_GUESSED: set[str] = set()


def token_rule(spec: str | TokenRule | None = None, *, model_name: str | None = None) -> TokenRule:
    """Resolve a token-rule option to a :class:`TokenRule`.

    Args:
        spec: a :class:`TokenRule` (returned as is); a name, case-insensitive: ``"qwen2.5-vl"``,
            ``"qwen2-vl"``, ``"qwen3-vl"``, ``"pixels"`` (28-pixel unit) or ``"pixels:<unit>"`` (e.g.
            ``"pixels:32"``); or ``None``/``"auto"`` to infer the rule from ``model_name``.
        model_name: the model's name, used only when inferring. A name containing ``qwen3`` and ``vl`` gives
            :data:`QWEN3_VL`; ``qwen2.5``/``qwen2_5`` and ``vl``, or ``awares``, gives :data:`QWEN2_5_VL`;
            ``qwen2`` and ``vl`` gives :data:`QWEN2_VL`; anything else (or no name) a
            :class:`PixelTokenRule` with the default unit.

    Returns:
        The token rule.

    Raises:
        ConfigError: the name is unknown, the ``pixels:`` unit is not a positive integer, or ``spec`` is
            neither a string, ``None`` nor a :class:`TokenRule`.
    """
    if spec is None:
        return _infer_rule(model_name)
    if not isinstance(spec, str):
        if isinstance(spec, TokenRule):
            return spec
        raise ConfigError(f"token rule must be a name or a TokenRule, got {type(spec).__name__}")
    key = spec.strip().lower()
    if key == "auto":
        return _infer_rule(model_name)
    if key in _NAMED_RULES:
        return _NAMED_RULES[key]
    if key == "pixels":
        return PixelTokenRule()
    if key.startswith("pixels:"):
        raw_unit = key.removeprefix("pixels:").strip()
        try:
            unit = int(raw_unit)
        except ValueError:
            unit = 0
        if unit < 1:
            raise ConfigError(
                f"token rule {spec!r}: the unit after 'pixels:' must be a positive integer, e.g. 'pixels:32'"
            )
        return PixelTokenRule(unit=unit)
    raise ConfigError(f"unknown token rule {spec!r}; valid names: {', '.join(_VALID_NAMES)}")


class TokenCost(BaseModel):
    """The visual tokens one query spent, and the retained token ratio.

    Attributes:
        rule: name of the token rule used.
        full_tokens: tokens of the full-resolution image.
        view_tokens: tokens of the low-resolution view (counted once per query).
        crop_tokens: tokens of each high-resolution crop, in request order.
        sent_tokens: ``view_tokens + sum(crop_tokens)``.
        rtr: retained token ratio, ``sent_tokens / full_tokens``.
        pixel_rtr: the paper's pixel formula, ``(view pixels + crop pixels) / full pixels``.
    """

    model_config = ConfigDict(frozen=True)

    rule: str
    full_tokens: int
    view_tokens: int
    crop_tokens: list[int]
    sent_tokens: int
    rtr: float
    pixel_rtr: float

    @classmethod
    def counted(
        cls, rule: str, *, full_tokens: int, view_tokens: int, crop_tokens: Sequence[int], pixel_rtr: float
    ) -> TokenCost:
        """The cost of a query whose images were already counted (the agent's graph counts each as it sends
        it): the sum and the ratio are made here.

        Args:
            rule: the token rule's name.
            full_tokens: tokens of the full-resolution image.
            view_tokens: tokens of the low-resolution view.
            crop_tokens: tokens of each crop sent, in order.
            pixel_rtr: the paper's pixel formula (:func:`pixel_rtr`).
        """
        sent_tokens = view_tokens + sum(crop_tokens)
        return cls(
            rule=rule,
            full_tokens=full_tokens,
            view_tokens=view_tokens,
            crop_tokens=list(crop_tokens),
            sent_tokens=sent_tokens,
            rtr=sent_tokens / full_tokens,
            pixel_rtr=pixel_rtr,
        )


def pixel_rtr(
    full_size: tuple[int, int],
    view_size: tuple[int, int],
    crop_sizes: Sequence[tuple[int, int]] = (),
) -> float:
    """The paper's pixel-count RTR: ``(view pixels + sum of crop pixels) / full-image pixels``.

    Args:
        full_size: ``(width, height)`` of the full-resolution image.
        view_size: ``(width, height)`` of the low-resolution view, counted once.
        crop_sizes: ``(width, height)`` of each crop sent.

    Raises:
        ConfigError: a size is not a pair of positive integers.
    """
    full_w, full_h = _size(full_size, "full_size")
    view_w, view_h = _size(view_size, "view_size")
    crops = [_size(size, f"crop_sizes[{i}]") for i, size in enumerate(crop_sizes)]
    sent = view_w * view_h + sum(w * h for w, h in crops)
    return sent / (full_w * full_h)


def token_cost(
    rule: TokenRule,
    full_size: tuple[int, int],
    view_size: tuple[int, int],
    crop_sizes: Sequence[tuple[int, int]] = (),
) -> TokenCost:
    """Count the visual tokens of one query and its retained token ratio.

    The view is counted once per query, whatever the number of crops (the released reference code added it
    once per crop; that was a bug).

    Args:
        rule: the model's token rule (see :func:`token_rule`).
        full_size: ``(width, height)`` of the full-resolution image (the RTR's denominator).
        view_size: ``(width, height)`` of the low-resolution view.
        crop_sizes: ``(width, height)`` of each high-resolution crop sent, in order; empty for a direct
            answer.

    Returns:
        The :class:`TokenCost`.

    Raises:
        ConfigError: a size is not a pair of positive integers.
    """
    full_w, full_h = _size(full_size, "full_size")
    view_w, view_h = _size(view_size, "view_size")
    crops = [_size(size, f"crop_sizes[{i}]") for i, size in enumerate(crop_sizes)]
    return TokenCost.counted(
        rule.name,
        full_tokens=rule.count(full_w, full_h),
        view_tokens=rule.count(view_w, view_h),
        crop_tokens=[rule.count(w, h) for w, h in crops],
        pixel_rtr=pixel_rtr((full_w, full_h), (view_w, view_h), crops),
    )


def backend_token_rule(spec: str | TokenRule | None, backend: object) -> TokenRule:
    """The token rule for a backend: ``spec`` if given, else the backend's own, else inferred from its model.

    A backend that knows its model's exact visual-token geometry (a local model with its processor) offers it
    as a ``token_rule`` attribute; remote backends have none, and the rule is inferred from ``model_name``.

    Args:
        spec: the configured rule (a name or a :class:`TokenRule`); ``None``/``"auto"`` to resolve it here.
        backend: the chat backend.
    """
    if spec is None or (isinstance(spec, str) and spec.strip().lower() == "auto"):
        own = getattr(backend, "token_rule", None)
        if isinstance(own, TokenRule):
            return own
    return token_rule(spec, model_name=getattr(backend, "model_name", None))
