"""Loading a Hugging Face image-text model for the transformers backend, and what its checkpoint tells us.

:func:`load_model` loads a hub id or a checkpoint directory onto a device with errors that say what to do;
:func:`resolve_device` and :func:`resolve_dtype` check the options first. The rest reads the special tokens
decoding needs from the loaded model and tokenizer (padding, the ids that end a turn, the vision tokens that
must never be generated), and sets the image processor's pixel bounds to the paper's visual-token budget.

torch and transformers are imported inside the functions that need them: they are optional dependencies
(``awares[local]``), and importing this module must stay cheap.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from awares_agent.backends.hf_processors import set_pixel_bounds
from awares_agent.errors import ConfigError

MIN_IMAGE_TOKENS = 32
"""The paper's lower visual-token bound per image."""

MAX_IMAGE_TOKENS = 2048
"""The paper's upper visual-token bound per image (its full-resolution cap)."""

END_OF_TURN = "<|im_end|>"
"""The token that ends an assistant turn in Qwen-style chat templates."""

VISION_TOKENS = ("<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>", "<|vision_pad|>")
"""Tokens that stand for pixels; a model must never generate them."""


def resolve_device(device: str) -> str:
    """The canonical name of ``device`` (``"cpu"``, ``"cuda:0"``...), checked against what is available.

    Args:
        device: ``"cpu"``, ``"cuda"``, ``"cuda:<n>"`` or ``"mps"``.

    Raises:
        ConfigError: the name is not a device, or CUDA was asked for and is not available.
    """
    import torch

    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ConfigError(f"invalid device {device!r}: use 'cpu', 'cuda', 'cuda:<n>' or 'mps'") from exc
    if parsed.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} was asked for but CUDA is not available; use device='cpu'")
    return str(parsed)


def resolve_dtype(dtype: Any) -> Any:
    """The ``torch.dtype`` named by ``dtype``, or ``"auto"`` (the checkpoint's own).

    Args:
        dtype: ``"auto"``, a name such as ``"bfloat16"``, or a ``torch.dtype``.

    Raises:
        ConfigError: ``dtype`` names no torch dtype.
    """
    import torch

    if isinstance(dtype, torch.dtype) or dtype == "auto":
        return dtype
    resolved = getattr(torch, dtype, None) if isinstance(dtype, str) else None
    if not isinstance(resolved, torch.dtype):
        raise ConfigError(
            f"invalid dtype {dtype!r}: use 'auto', 'bfloat16', 'float16', 'float32' or a torch.dtype"
        )
    return resolved


def load_model(
    source: str,
    *,
    device: str | None,
    dtype: Any,
    attn_implementation: str | None,
    local_files_only: bool,
    revision: str | None,
    extra: Mapping[str, Any] | None = None,
) -> Any:
    """Load an ``AutoModelForImageTextToText`` checkpoint onto ``device``, in evaluation mode.

    Args:
        source: a hub id or a local checkpoint directory (``~`` is expanded).
        device: where to put it (from :func:`resolve_device`); ``None``: where ``from_pretrained`` puts it,
            left in training mode (for a trainer, which places the model itself).
        dtype: the weights' dtype (from :func:`resolve_dtype`).
        attn_implementation: e.g. ``"sdpa"``; transformers' default when ``None``.
        local_files_only: never contact the hub.
        revision: the hub revision.
        extra: more ``from_pretrained`` keyword arguments.

    Raises:
        ConfigError: the directory does not exist, the model is not downloaded (offline), or it is not an
            image-text checkpoint this transformers version supports.
    """
    from transformers import AutoModelForImageTextToText

    looks_local = source.startswith((".", "/", "~")) or Path(source).expanduser().exists()
    if looks_local and not Path(source).expanduser().is_dir():
        raise ConfigError(
            f"model directory {source!r} does not exist; pass a checkpoint directory or a hub id"
        )
    kwargs: dict[str, Any] = {
        **(extra or {}),
        "dtype": dtype,
        "local_files_only": local_files_only,
        "revision": revision,
    }
    # With peft installed, transformers looks for an adapter config first without passing local_files_only on
    # (and retries a missing network for ~25 s); say it explicitly.
    kwargs["adapter_kwargs"] = {"local_files_only": local_files_only}
    if attn_implementation is not None:
        kwargs["attn_implementation"] = attn_implementation
    try:
        model = AutoModelForImageTextToText.from_pretrained(
            str(Path(source).expanduser()) if looks_local else source, **kwargs
        )
    except OSError as exc:
        raise ConfigError(
            f"cannot load model {source!r}: {exc}. Download it first with "
            f"`huggingface-cli download {source}` (or `hf download {source}`) or pass a local path; with "
            f"HF_HUB_OFFLINE=1 or "
            f"local_files_only=True only models already in the cache load"
        ) from exc
    except (ValueError, KeyError, ImportError) as exc:
        raise ConfigError(
            f"cannot load {source!r} as an image-text-to-text model: {exc}. Check that it is a "
            f"vision-language checkpoint this transformers version supports (upgrade transformers if its "
            f"architecture is newer), and that attn_implementation={attn_implementation!r} is available"
        ) from exc
    return model.to(device).eval() if device is not None else model


def apply_pixel_bounds(processor: Any, min_pixels: int | None, max_pixels: int | None) -> None:
    """Set the processor's image pixel bounds; a bound not given is the paper's, in the model's own unit.

    The unit is one visual token's pixels, ``(patch_size * merge_size)**2`` (28x28 for Qwen2.5-VL, 32x32 for
    Qwen3-VL), so the defaults are 32 and 2048 visual tokens. A processor without an image processor, or
    one without patch and merge sizes, gets only the bounds given.

    Args:
        processor: the model's processor.
        min_pixels: the lower bound, or ``None`` for the default.
        max_pixels: the upper bound, or ``None`` for the default.

    Raises:
        ConfigError: ``min_pixels`` ends up above ``max_pixels``.
    """
    image_processor = getattr(processor, "image_processor", None)
    if image_processor is None:
        return
    patch = getattr(image_processor, "patch_size", None)
    merge = getattr(image_processor, "merge_size", None)
    if patch and merge:
        unit = (int(patch) * int(merge)) ** 2
        min_pixels = min_pixels if min_pixels is not None else MIN_IMAGE_TOKENS * unit
        max_pixels = max_pixels if max_pixels is not None else MAX_IMAGE_TOKENS * unit
    if min_pixels is not None and max_pixels is not None and min_pixels > max_pixels:
        raise ConfigError(f"min_pixels ({min_pixels}) must not exceed max_pixels ({max_pixels})")
    set_pixel_bounds(image_processor, min_pixels=min_pixels, max_pixels=max_pixels)


def vocab_id(tokenizer: Any, token: str) -> int | None:
    """The id of ``token`` in the tokenizer's vocabulary, or ``None`` if it has none (or only the unknown id).

    Args:
        tokenizer: the model's tokenizer.
        token: the token's text.
    """
    token_id = tokenizer.convert_tokens_to_ids(token)
    return token_id if isinstance(token_id, int) and token_id != tokenizer.unk_token_id else None


def config_token_id(config: Any, attr: str, tokenizer: Any, token: str) -> int:
    """A special token's id: the model config's ``attr``, else the tokenizer's; ``-1`` if neither has it.

    Args:
        config: the model's config.
        attr: the config attribute (``"image_token_id"``).
        tokenizer: the model's tokenizer.
        token: the token's text (``"<|image_pad|>"``).
    """
    value = getattr(config, attr, None)
    if isinstance(value, int):
        return value
    token_id = tokenizer.convert_tokens_to_ids(token)
    return token_id if isinstance(token_id, int) else -1


def pad_token_id(model: Any, tokenizer: Any) -> int:
    """The id to pad batches with: the tokenizer's pad token, the generation config's, or end-of-sequence.

    Args:
        model: the loaded model.
        tokenizer: its tokenizer.
    """
    for candidate in (
        tokenizer.pad_token_id,
        getattr(model.generation_config, "pad_token_id", None),
        tokenizer.eos_token_id,
    ):
        if isinstance(candidate, int):
            return candidate
    return 0


def stop_token_ids(model: Any, tokenizer: Any) -> list[int]:
    """The ids that end a turn: the generation config's end-of-sequence ids, the tokenizer's, ``<|im_end|>``.

    Args:
        model: the loaded model.
        tokenizer: its tokenizer.
    """
    ids: list[int] = []
    eos = getattr(model.generation_config, "eos_token_id", None)
    ids += eos if isinstance(eos, list) else [eos]
    ids.append(tokenizer.eos_token_id)
    ids.append(vocab_id(tokenizer, END_OF_TURN))
    return sorted({i for i in ids if isinstance(i, int)})


def suppressed_token_ids(model: Any, tokenizer: Any, stop_ids: list[int]) -> list[int]:
    """The vision-token ids a model must never generate (from its config and vocabulary), stop ids excepted.

    Args:
        model: the loaded model.
        tokenizer: its tokenizer.
        stop_ids: the ids that end a turn (never suppressed).
    """
    config = model.config
    ids = [
        getattr(config, name, None)
        for name in ("image_token_id", "video_token_id", "vision_start_token_id", "vision_end_token_id")
    ]
    ids += [vocab_id(tokenizer, t) for t in VISION_TOKENS]
    return sorted({i for i in ids if isinstance(i, int) and i not in stop_ids})
