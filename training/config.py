"""The SFT configuration: TRL's :class:`~trl.SFTConfig` with the AwaRes fields and the paper's defaults.

The ``awares train sft`` command line is generated from this dataclass (TRL's ``TrlParser``), so every flag,
default and help text is written here once, and a YAML file with the same keys is accepted
(``awares train sft --config sft.yaml``). Every TRL and ``transformers.TrainingArguments`` option is there
too (``--learning_rate``, ``--per_device_train_batch_size``, ``--bf16``...).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from trl import SFTConfig

from awares_agent.errors import ConfigError

__all__ = ["TINY_MODEL", "TINY_QWEN3_MODEL", "AwaresSFTConfig"]

LORA_TARGETS = r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"
"""The default LoRA targets (a peft regex): the language model's linear layers, none of the vision tower's."""

TINY_MODEL = "tiny"
"""The ``model`` value that builds a fresh tiny local Qwen2.5-VL (random weights; smoke runs, benchmarks)."""

TINY_QWEN3_MODEL = "tiny-qwen3-vl"
"""The ``model`` value that builds a fresh tiny local Qwen3-VL."""


@dataclass
class AwaresSFTConfig(SFTConfig):
    """Cold-start SFT of a VLM on AwaRes trajectories (``awares collect`` exports).

    Parameters beyond TRL's:
        data: the training trajectories: an ``awares collect`` export folder (or its ``dataset`` folder), a
            collection run folder, or a ``trajectories.jsonl``.
        model: the model to fine-tune: a local checkpoint directory or a hub id (Qwen2.5-VL, Qwen3-VL...), or
            ``"tiny"`` for a fresh tiny local Qwen2.5-VL.
        eval_data: held-out trajectories to evaluate the trained policy on, through the real agent.
        eval_limit: evaluate at most this many held-out rows.
        tool_call_weight: the loss weight of the crop-request turn's tokens (paper: 5); every other assistant
            token weighs 1, and ``1`` reproduces TRL's own loss.
        lora: train LoRA adapters (peft) instead of every weight; they are merged into the saved model.
        lora_r / lora_alpha / lora_dropout / lora_target_modules: the LoRA adapters' shape.
        freeze_vision_tower: keep the vision encoder fixed; its merger (the projector into the language
            model) and the language model train.
        tiny_seed: the random seed of the weights of ``--model tiny``.

    Defaults that differ from TRL's: ``assistant_only_loss=True`` (system, question, images and tool results
    carry no loss), ``max_length=None`` (truncating a conversation would cut image tokens away from their
    features), ``bf16`` only where a GPU supports it, and ``output_dir`` has the alias ``--out``.
    """

    data: str | None = field(
        default=None,
        metadata={"help": "training trajectories: an `awares collect` export folder, run folder or JSONL"},
    )
    model: str | None = field(
        default=None,
        metadata={
            "help": "the VLM to fine-tune: a checkpoint directory or hub id, or 'tiny' / 'tiny-qwen3-vl' (a "
            "fresh tiny local Qwen2.5-VL / Qwen3-VL)"
        },
    )
    eval_data: str | None = field(
        default=None,
        metadata={"help": "held-out trajectories: evaluate the trained policy on them through the agent"},
    )
    eval_limit: int | None = field(
        default=None, metadata={"help": "evaluate at most this many held-out rows"}
    )
    tool_call_weight: float = field(
        default=5.0,
        metadata={"help": "loss weight of the crop-request turn's tokens (paper: 5; 1 = plain SFT)"},
    )
    lora: bool = field(default=False, metadata={"help": "train LoRA adapters (merged into the saved model)"})
    lora_r: int = field(default=16, metadata={"help": "LoRA rank"})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA alpha"})
    lora_dropout: float = field(default=0.05, metadata={"help": "LoRA dropout"})
    lora_target_modules: list[str] | None = field(
        default=None,
        metadata={"help": "modules LoRA adapts (default: every linear layer of the language model)"},
    )
    freeze_vision_tower: bool = field(
        default=False,
        metadata={
            "help": "keep the vision encoder's weights fixed (its projector into the language model trains)"
        },
    )
    tiny_seed: int = field(default=0, metadata={"help": "seed of the weights of --model tiny"})
    output_dir: str | None = field(
        default=None,
        metadata={
            "aliases": ["--out"],
            "help": "where the trained model (and TRL's checkpoints) are written",
        },
    )
    assistant_only_loss: bool = field(
        default=True, metadata={"help": "loss on assistant tokens only (AwaRes: always)"}
    )
    max_length: int | None = field(
        default=None,
        metadata={
            "help": "truncate conversations to this many tokens (default: never; image tokens must stay)"
        },
    )

    # TRL turns checkpointing on under its deprecated name; the current name keeps the default without the
    # deprecation warning on every run.
    gradient_checkpointing: bool | None = field(
        default=None, metadata={"help": "deprecated alias of --activation_checkpointing"}
    )
    activation_checkpointing: bool | None = field(
        default=True,
        metadata={"help": "recompute activations in the backward pass (less memory, ~20%% slower)"},
    )
    bf16: bool | None = field(
        default=None,
        metadata={
            "help": "bf16 mixed precision (default: on where a GPU supports it, off on a CPU-only machine)"
        },
    )

    def __post_init__(self) -> None:
        if self.bf16 is None and not self.fp16 and not _bf16_gpu():
            self.bf16 = False
        super().__post_init__()
        if not self.tool_call_weight > 0:
            raise ConfigError(f"--tool-call-weight must be > 0, got {self.tool_call_weight}")
        if not self.assistant_only_loss:
            raise ConfigError("AwaRes SFT trains on assistant tokens only; drop --assistant_only_loss False")
        if self.loss_type not in ("nll", "dft"):
            raise ConfigError(f"loss_type must be 'nll' or 'dft' for weighted SFT, got {self.loss_type!r}")
        if self.label_smoothing_factor:
            raise ConfigError("label smoothing is not supported with the weighted AwaRes loss")
        if self.lora_r < 1 or self.lora_alpha < 1 or not 0 <= self.lora_dropout < 1:
            raise ConfigError(
                f"invalid LoRA shape: r={self.lora_r}, alpha={self.lora_alpha}, dropout={self.lora_dropout}"
            )
        if self.eval_limit is not None and self.eval_limit < 1:
            raise ConfigError(f"--eval-limit must be >= 1, got {self.eval_limit}")

    def peft_config(self) -> object | None:
        """The ``peft.LoraConfig`` for ``lora=True`` (``None`` otherwise)."""
        if not self.lora:
            return None
        from peft import LoraConfig

        return LoraConfig(
            r=self.lora_r,
            lora_alpha=self.lora_alpha,
            lora_dropout=self.lora_dropout,
            # The vision tower's MLP has gate/up/down_proj too: the default names the language model's.
            target_modules=self.lora_target_modules or LORA_TARGETS,
            task_type="CAUSAL_LM",
        )


def _bf16_gpu() -> bool:
    import torch

    return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
