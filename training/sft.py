"""Weighted cold-start SFT: TRL's :class:`~trl.SFTTrainer` with the AwaRes per-turn loss weight.

A whole trajectory is one sample. The loss is on assistant tokens only; the crop-request turn's tokens weigh
``tool_call_weight`` (``w``, 5 in the paper), every other assistant token 1, and the sum is normalised the way
TRL normalises its own loss (by the number of trained tokens, across gradient accumulation and devices), so
``w = 1`` reproduces ``SFTTrainer``'s loss exactly::

    from awares_agent.training import AwaresSFTConfig, AwaresSFTTrainer, load_training_data

    data = load_training_data("runs/collect/export")
    args = AwaresSFTConfig(output_dir="runs/sft", tool_call_weight=5.0)
    trainer = AwaresSFTTrainer(model, args, train_dataset=data.dataset, processing_class=processor,
                               protocol=data.protocol, crop_set=data.crop_set)
    trainer.train()

Everything else (images processed on the fly, gradient accumulation, mixed precision, DeepSpeed and FSDP
through ``accelerate launch``, LoRA through ``peft_config``) is TRL's and transformers' own.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from trl import SFTTrainer
from trl.chat_template_utils import get_training_chat_template, has_generation_markers

from awares_agent.errors import ConfigError
from awares_agent.training.collator import WeightedVisionCollator
from awares_agent.training.config import AwaresSFTConfig

__all__ = ["AwaresSFTTrainer", "freeze_vision_tower", "training_chat_template"]


def training_chat_template(processor: Any, *, path: str | None = None) -> str | None:
    """The chat template to train with: one with ``{% generation %}`` markers around assistant turns.

    Args:
        processor: the model's processor (or tokenizer).
        path: a ``.jinja`` file with a template of your own (``chat_template_path``).

    Returns:
        ``None`` when the checkpoint's own template already has the markers; else TRL's training version
        of it (Qwen2-VL, Qwen2.5-VL, Qwen3-VL and others; TRL recognises the stock templates exactly).

    Raises:
        ConfigError: the template has no markers and TRL has no training version of it, or ``path`` has none.
    """
    if path is not None:
        file = Path(path)
        if not file.is_file():
            raise ConfigError(f"chat template file {path!r} does not exist")
        text = file.read_text(encoding="utf-8")
        if not has_generation_markers(text):
            raise ConfigError(
                f"chat template {path!r} has no {{% generation %}} markers: wrap each assistant turn's "
                "output in {% generation %}...{% endgeneration %}"
            )
        return text
    template = getattr(processor, "chat_template", None)
    if not template:
        raise ConfigError("the processor has no chat template; pass chat_template_path")
    if has_generation_markers(template):
        return None
    try:
        return get_training_chat_template(processor)
    except ValueError as exc:
        raise ConfigError(
            "the model's chat template has no {% generation %} markers and TRL knows no training version of "
            "it; pass --chat_template_path FILE.jinja: the same template with {% generation %}...{% "
            f"endgeneration %}} around each assistant turn's output ({exc})"
        ) from None


VISION_MODULES = ("visual", "vision_tower", "vision_model")
"""Attribute names of a VLM's vision encoder (Qwen-VL: ``visual``; LLaVA-style: ``vision_tower``)."""
PROJECTORS = ("merger", "multi_modal_projector")
"""Parts of the encoder (or beside it) that project into the language model: they keep training."""


def freeze_vision_tower(model: Any) -> int:
    """Fix the vision encoder's weights, its projector into the language model excepted.

    Returns:
        The number of parameters frozen.

    Raises:
        ConfigError: the model has no vision encoder under a known name.
    """
    encoder = next(
        (module for name, module in model.named_modules() if name.rsplit(".", 1)[-1] in VISION_MODULES), None
    )
    if encoder is None:
        raise ConfigError(f"{type(model).__name__} has no vision encoder named {' or '.join(VISION_MODULES)}")
    frozen = 0
    for name, param in encoder.named_parameters():
        if not any(part in PROJECTORS for part in name.split(".")):
            param.requires_grad_(False)
            frozen += param.numel()
    return frozen


class AwaresSFTTrainer(SFTTrainer):
    """``SFTTrainer`` whose loss weighs the crop-request turn by ``args.tool_call_weight``.

    Args:
        model: the model (a loaded ``PreTrainedModel``, e.g. from
            :func:`~awares_agent.training.models.load_for_training`).
        args: the :class:`~awares_agent.training.config.AwaresSFTConfig`.
        train_dataset: exported trajectories (:func:`~awares_agent.training.data.load_training_data`).
        eval_dataset: held-out trajectories for TRL's evaluation loss, if any.
        processing_class: the model's processor.
        protocol: the rows' tool-call protocol (``"json"`` or ``"awares-text"``).
        crop_set: the rows' crop set.
        peft_config: LoRA adapters to train (``args.peft_config()`` by default).
        **kwargs: passed to ``SFTTrainer`` (callbacks...).
    """

    def __init__(
        self,
        model: Any,
        args: AwaresSFTConfig,
        *,
        train_dataset: Any,
        processing_class: Any,
        protocol: str,
        crop_set: str = "paper",
        eval_dataset: Any = None,
        peft_config: Any = None,
        **kwargs: Any,
    ) -> None:
        if not isinstance(args, AwaresSFTConfig):
            raise ConfigError(f"args must be an AwaresSFTConfig, got {type(args).__name__}")
        collator = WeightedVisionCollator(
            processor=processing_class,
            max_length=args.max_length,
            pad_to_multiple_of=args.pad_to_multiple_of,
            chat_template=training_chat_template(processing_class, path=args.chat_template_path),
            tool_call_weight=args.tool_call_weight,
            protocol=protocol,
            crop_set=crop_set,
        )
        # The template file (if any) is already read into the collator; TRL would copy it onto the processor.
        args.chat_template_path = None
        if args.freeze_vision_tower:
            freeze_vision_tower(model)
        super().__init__(
            model,
            args=args,
            data_collator=collator,
            train_dataset=train_dataset,
            eval_dataset=eval_dataset,
            processing_class=processing_class,
            peft_config=peft_config if peft_config is not None else args.peft_config(),
            **kwargs,
        )

    def compute_loss(
        self,
        model: Any,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: Any = None,
    ) -> Any:
        """TRL's loss with each trained token's NLL multiplied by its weight (``inputs["loss_weights"]``)."""
        weights = inputs.pop("loss_weights")
        mode = "train" if self.model.training else "eval"
        inputs["use_cache"] = False
        if self.aux_loss_enabled:
            inputs["output_router_logits"] = True
        outputs = model(**inputs, fused_lm_head=True)
        per_token_loss = -outputs.log_probs  # zero on untrained positions; position t predicts token t+1
        if self.args.loss_type == "dft":
            per_token_loss = per_token_loss * outputs.log_probs.exp().detach()
        per_token_loss = per_token_loss * weights[:, 1:].to(per_token_loss.device, per_token_loss.dtype)
        num_tokens = outputs.label_mask.sum() if num_items_in_batch is None else num_items_in_batch
        loss = per_token_loss.sum() / torch.as_tensor(num_tokens).clamp(min=1)
        # As TRL (and Trainer): num_items_in_batch counts every rank's tokens, and DDP averages gradients.
        if self.args.average_tokens_across_devices and num_items_in_batch is not None:
            loss = loss * (self.accelerator.num_processes // self.get_tp_size())
        if self.aux_loss_enabled:
            steps = self.current_gradient_accumulation_steps if num_items_in_batch is not None else 1
            loss = loss + self.router_aux_loss_coef * outputs.aux_loss / steps
        self._record_metrics(outputs, inputs, weights, mode)
        if return_outputs:
            with torch.no_grad():
                outputs = model(**{k: v for k, v in inputs.items() if k != "labels"})
            return loss, outputs
        return loss

    def _record_metrics(self, outputs: Any, inputs: dict[str, Any], weights: Any, mode: str) -> None:
        """TRL's entropy, token accuracy and token count, and the share of trained tokens in call turns."""
        gather = self.accelerator.gather_for_metrics
        num_valid = gather(outputs.label_mask.sum()).sum()
        metrics = self._metrics[mode]
        if outputs.entropy is not None:
            entropy = gather(outputs.entropy.detach().sum()).sum()
            metrics["entropy"].append((entropy / num_valid).item() if num_valid > 0 else 0.0)
        if outputs.is_top1 is not None:
            correct = gather(outputs.is_top1.sum()).sum()
            metrics["mean_token_accuracy"].append((correct / num_valid).item() if num_valid > 0 else 0.0)
        if self.args.tool_call_weight != 1:  # with w = 1 the call tokens are not told apart
            shifted = weights[:, 1:]
            calls = gather(((shifted != 1) & (shifted > 0)).sum().to(num_valid.device)).sum()
            metrics["call_token_share"].append((calls / num_valid).item() if num_valid > 0 else 0.0)
        if mode == "train":
            tokens = gather(inputs["attention_mask"].sum()).sum().item()
            self._total_train_tokens += tokens // self._tp_size
        metrics["num_tokens"] = [self._total_train_tokens]
