"""Loading a VLM to train, and saving the trained one as a checkpoint the agent loads as it is.

:func:`load_for_training` loads a checkpoint directory or hub id (Qwen2-VL, Qwen2.5-VL, Qwen3-VL, or any
``AutoModelForImageTextToText`` model with a processor), through the same loaders the transformers backend
uses, with the paper's visual-token bounds on the image processor so the model trains on the images it sees
at inference. ``"tiny"`` builds a fresh tiny Qwen3-VL first, ``"tiny-qwen2.5-vl"`` a tiny Qwen2.5-VL
(:mod:`awares_agent.testing.tiny_vlm`).

:func:`save_trained` writes the output directory: the weights (LoRA adapters merged in), the processor under
its stock class name, and :data:`~awares_agent.config.CHECKPOINT_FILE` (the protocol, crop set and system
prompt the model was trained to speak), so ``awares ask IMAGE Q --model DIR`` and
``TransformersBackend(DIR)`` load it like any checkpoint.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from awares_agent.backends.hf_loading import apply_pixel_bounds, load_model, resolve_dtype
from awares_agent.backends.hf_processors import load_processor, save_processor
from awares_agent.config import AgentConfig, write_checkpoint_options
from awares_agent.training.config import TINY_MODEL, TINY_MODELS

__all__ = ["keep_checkpoint", "load_for_training", "save_trained"]

logger = logging.getLogger(__name__)


def load_for_training(
    model: str,
    *,
    work_dir: str | Path,
    model_init_kwargs: dict[str, Any] | None = None,
    local_files_only: bool = False,
    tiny_seed: int = 0,
) -> tuple[Any, Any, str]:
    """Load ``model`` and its processor for training.

    Args:
        model: a checkpoint directory, a hub id, ``"tiny"`` (a fresh tiny Qwen3-VL that can learn
            where) or ``"tiny-qwen2.5-vl"``.
        work_dir: where ``"tiny"`` is built (``work_dir/tiny-base``).
        model_init_kwargs: ``from_pretrained`` keyword arguments (``dtype``, ``attn_implementation``...).
        local_files_only: never contact the Hugging Face hub.
        tiny_seed: the seed of the tiny model's random weights.

    Returns:
        ``(model, processor, source)``, ``source`` being the path or id loaded.

    Raises:
        ConfigError: the model or its processor cannot be loaded (the message says why).
    """
    source = model
    if model in TINY_MODELS:
        from awares_agent.testing import build_tiny_qwen3_vl, build_tiny_vlm

        build = build_tiny_qwen3_vl if model == TINY_MODEL else build_tiny_vlm
        source = str(build(Path(work_dir) / "tiny-base", seed=tiny_seed))
        local_files_only = True
    kwargs = dict(model_init_kwargs or {})
    loaded = load_model(
        source,
        device=None,  # the trainer places it (one device, DDP, DeepSpeed or FSDP)
        dtype=resolve_dtype(kwargs.pop("dtype", "auto")),
        attn_implementation=kwargs.pop("attn_implementation", None),
        local_files_only=local_files_only,
        revision=kwargs.pop("revision", None),
        extra=kwargs,
    )
    path = Path(source).expanduser()
    processor = load_processor(str(path) if path.is_dir() else source, local_files_only=local_files_only)
    # The paper's bounds (32 to 2048 visual tokens), as the transformers backend sets them at inference.
    apply_pixel_bounds(processor, None, None)
    return loaded, processor, source


def save_trained(trainer: Any, out_dir: str | Path, agent: AgentConfig) -> Path:
    """Save the trained model as a plain checkpoint directory that the agent loads as it is.

    Args:
        trainer: the trainer after ``train()`` (LoRA adapters, if any, are merged into the weights).
        out_dir: the directory to write.
        agent: how the model must be run (its protocol, crop set and system prompt), recorded beside it.

    Returns:
        ``out_dir``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = trainer.accelerator.unwrap_model(trainer.model)
    if hasattr(model, "merge_and_unload"):
        # A peft model: merged into one set of weights, loadable without peft. (Under ZeRO-3 the adapters are
        # sharded: train LoRA with ZeRO-2 or DDP.)
        merged = model.merge_and_unload()
        if trainer.accelerator.is_main_process:
            merged.save_pretrained(out)
    else:
        trainer.save_model(str(out))  # gathers the full weights under DeepSpeed ZeRO-3 and FSDP
    if trainer.accelerator.is_main_process:
        save_processor(trainer.processing_class, out)
        write_checkpoint_options(out, agent)
    trainer.accelerator.wait_for_everyone()
    logger.info("saved the trained model to %s", out)
    return out


def keep_checkpoint(trainer: Any, checkpoint: str | Path) -> None:
    """Put the weights of a saved checkpoint of this run (``OUTPUT_DIR/checkpoint-N``) back into the trainer's
    model, e.g. the best one the call-rate guard kept, before :func:`save_trained`.

    The checkpoint is loaded as a model (so its on-disk key names are converted as for any checkpoint) and its
    weights are copied in. Under DeepSpeed ZeRO-3 the model is sharded: there, use the checkpoint folder
    itself.

    Raises:
        ConfigError: the checkpoint cannot be loaded.
    """
    saved = load_model(
        str(checkpoint),
        device=None,
        dtype=resolve_dtype("auto"),
        attn_implementation=None,
        local_files_only=True,
        revision=None,
    )
    model = trainer.accelerator.unwrap_model(trainer.model)
    model.load_state_dict(saved.state_dict())
    logger.info("kept the weights of %s", checkpoint)
