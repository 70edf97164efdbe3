"""Loading Hugging Face processors for image-text models, including on machines without torchvision.

The stock Qwen2-VL, Qwen2.5-VL and Qwen3-VL processors also own a *video* processor, and transformers' video
processors need torchvision. Where torchvision is missing (CPU machines, where its only matching wheel is
CUDA-linked and fails to import), ``AutoProcessor.from_pretrained`` then fails, or silently returns just the
tokenizer. awares never sends video, so :func:`load_processor` falls back to an image-only variant of the same
processor: the checkpoint's own image processor (transformers picks its PIL version), tokenizer and chat
template, with no video processor. Real checkpoints and the tiny test model load through the same path.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from awares_agent.errors import ConfigError

logger = logging.getLogger(__name__)


def _image_only(base: type) -> type:
    """A subclass of ``base`` without a video processor (ProcessorMixin reads its parts from ``__init__``)."""

    def __init__(
        self: Any, image_processor: Any = None, tokenizer: Any = None, chat_template: Any = None, **kw: Any
    ):
        base.__init__(
            self, image_processor, tokenizer, video_processor=None, chat_template=chat_template, **kw
        )

    name = f"ImageOnly{base.__name__}"
    return type(
        name, (base,), {"__init__": __init__, "__doc__": f"{base.__name__} without a video processor."}
    )


def image_only_processor_class(model_type: str) -> type:
    """The image-only processor class for a model type (``qwen2_vl``, ``qwen2_5_vl``, ``qwen3_vl``).

    Raises:
        ConfigError: no image-only variant is known for this model type.
    """
    import transformers

    bases = {
        "qwen2_vl": "Qwen2VLProcessor",
        "qwen2_5_vl": "Qwen2_5_VLProcessor",
        "qwen3_vl": "Qwen3VLProcessor",
        "qwen3_vl_moe": "Qwen3VLProcessor",
    }
    if model_type not in bases:
        raise ConfigError(
            f"cannot load a processor for model type {model_type!r} without torchvision; install torchvision "
            f"that matches your torch, or use a Qwen2-VL, Qwen2.5-VL or Qwen3-VL model"
        )
    if model_type not in _CLASSES:
        _CLASSES[model_type] = _image_only(getattr(transformers, bases[model_type]))
    return _CLASSES[model_type]


_CLASSES: dict[str, type] = {}


def load_processor(
    name_or_path: str,
    *,
    min_pixels: int | None = None,
    max_pixels: int | None = None,
    local_files_only: bool = False,
    revision: str | None = None,
) -> Any:
    """Load the processor of an image-text checkpoint, image-only if the full one cannot load here.

    Args:
        name_or_path: a hub id or a local directory.
        min_pixels: the image processor's lower pixel bound (``shortest_edge``), if given.
        max_pixels: the image processor's upper pixel bound (``longest_edge``), if given.
        local_files_only: never contact the hub.
        revision: the hub revision.

    Returns:
        A processor with ``image_processor``, ``tokenizer`` and ``apply_chat_template``.

    Raises:
        ConfigError: the checkpoint has no usable processor or chat template.
    """
    from transformers import AutoConfig, AutoImageProcessor, AutoProcessor, AutoTokenizer

    kwargs: dict[str, Any] = {"local_files_only": local_files_only, "revision": revision}
    processor: Any = None
    try:
        processor = AutoProcessor.from_pretrained(name_or_path, **kwargs)
    except (ImportError, AttributeError, ValueError, TypeError, OSError) as exc:
        # Video processors need torchvision; anything else is re-raised by the fallback below if it persists.
        logger.info("AutoProcessor failed for %s (%s); loading an image-only processor", name_or_path, exc)
    if processor is None or not hasattr(processor, "image_processor"):
        try:
            config = AutoConfig.from_pretrained(name_or_path, **kwargs)
            cls = image_only_processor_class(config.model_type)
            tokenizer = AutoTokenizer.from_pretrained(name_or_path, **kwargs)
            image_processor = AutoImageProcessor.from_pretrained(name_or_path, **kwargs)
        except OSError as exc:
            raise ConfigError(f"cannot load a processor from {name_or_path!r}: {exc}") from exc
        processor = cls(
            image_processor=image_processor, tokenizer=tokenizer, chat_template=tokenizer.chat_template
        )
    if not getattr(processor, "chat_template", None):
        raise ConfigError(f"{name_or_path!r} has no chat template; awares needs one to build conversations")
    set_pixel_bounds(processor.image_processor, min_pixels=min_pixels, max_pixels=max_pixels)
    return processor


def set_pixel_bounds(image_processor: Any, *, min_pixels: int | None, max_pixels: int | None) -> None:
    """Set a Qwen-style image processor's pixel bounds (transformers 5 keeps them in its ``size``)."""
    if min_pixels is None and max_pixels is None:
        return
    size = dict(image_processor.size)
    if min_pixels is not None:
        size["shortest_edge"] = min_pixels
    if max_pixels is not None:
        size["longest_edge"] = max_pixels
    image_processor.size = type(image_processor.size)(**size)


def pixel_bounds(image_processor: Any) -> tuple[int, int]:
    """``(min_pixels, max_pixels)`` of a Qwen-style image processor."""
    size = dict(image_processor.size)
    lo, hi = size.get("shortest_edge"), size.get("longest_edge")
    if lo is None or hi is None:
        raise ConfigError(f"{type(image_processor).__name__} has no min/max pixel bounds")
    return int(lo), int(hi)


def save_processor(processor: Any, path: str | Path) -> None:
    """Save ``processor`` into a checkpoint directory as a stock one: its class named as the base's.

    An image-only variant (:func:`image_only_processor_class`) saves its own class name; a checkpoint is
    written with the stock name (``Qwen2_5_VLProcessor``), as a real one has, and every loader (this module,
    ``transformers serve``, vLLM) picks its own variant when it loads it.
    """
    out = Path(path)
    processor.save_pretrained(out)
    stock = next((b.__name__ for b in type(processor).__mro__[1:] if b.__name__ in _STOCK), None)
    if stock is None:
        return
    for name in ("processor_config.json", "tokenizer_config.json"):
        file = out / name
        if file.exists():
            data = json.loads(file.read_text())
            if "processor_class" in data:
                data["processor_class"] = stock
                file.write_text(json.dumps(data, indent=2) + "\n")


_STOCK = ("Qwen2VLProcessor", "Qwen2_5_VLProcessor", "Qwen3VLProcessor")
