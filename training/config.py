"""The training configurations: TRL's :class:`~trl.SFTConfig` and :class:`~trl.GRPOConfig` with the AwaRes
fields and the paper's defaults.

The ``awares train sft`` and ``awares train grpo`` command lines are generated from these dataclasses (TRL's
``TrlParser``, :mod:`awares_agent.training.parser`), so every flag, default and help text is written here
once, and a YAML file with the same keys is accepted (``awares train sft --config sft.yaml``). Every TRL
and ``transformers.TrainingArguments`` option is there too (``--learning-rate``,
``--per-device-train-batch-size``, ``--bf16``...; TRL's underscore spellings, ``--learning_rate``, work as
well).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field

from trl import GRPOConfig, SFTConfig

from awares_agent.config import MAX_ROUNDS, AgentConfig
from awares_agent.errors import ConfigError

__all__ = ["TINY_MODEL", "TINY_MODELS", "TINY_QWEN25_MODEL", "AwaresGRPOConfig", "AwaresSFTConfig"]

LORA_TARGETS = r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"
"""The default LoRA targets (a peft regex): the language model's linear layers, none of the vision tower's."""

TINY_MODEL = "tiny"
"""The ``model`` value that builds a fresh tiny local Qwen3-VL whose vision positions start as 2-D sinusoids,
so that it can learn *where* (:func:`~awares_agent.testing.build_tiny_qwen3_vl`; smoke runs, benchmarks)."""

TINY_QWEN25_MODEL = "tiny-qwen2.5-vl"
"""The ``model`` value that builds a fresh tiny local Qwen2.5-VL
(:func:`~awares_agent.testing.build_tiny_vlm`: no usable absolute image position, so it can learn when to crop
but not where)."""

TINY_MODELS = (TINY_MODEL, TINY_QWEN25_MODEL)
"""Every ``model`` value that builds a fresh tiny model."""


@dataclass
class _AwaresArgs:
    """The fields and defaults both AwaRes training configs add to TRL's."""

    eval_data: str | None = field(
        default=None,
        metadata={"help": "held-out trajectories: evaluate the trained policy on them through the agent"},
    )
    eval_limit: int | None = field(
        default=None, metadata={"help": "evaluate at most this many held-out rows"}
    )
    tiny_seed: int = field(default=0, metadata={"help": "seed of the weights of --model tiny"})
    freeze_vision_tower: bool = field(
        default=False,
        metadata={
            "help": "keep the vision encoder's weights fixed (its projector into the language model trains)"
        },
    )
    output_dir: str | None = field(
        default=None,
        metadata={
            "aliases": ["--out"],
            "help": "where the trained model (and TRL's checkpoints) are written",
        },
    )
    # TRL turns checkpointing on under its deprecated name; the current name keeps the default without the
    # deprecation warning on every run.
    gradient_checkpointing: bool | None = field(
        default=None, metadata={"help": "deprecated alias of --activation-checkpointing"}
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

    def _awares_defaults(self) -> None:
        """Before TRL's checks: bf16 only where a GPU supports it; the eval limit checked."""
        if self.bf16 is None and not getattr(self, "fp16", False) and not _bf16_gpu():
            self.bf16 = False
        if self.eval_limit is not None and self.eval_limit < 1:
            raise ConfigError(f"--eval-limit must be >= 1, got {self.eval_limit}")


@dataclass
class AwaresSFTConfig(_AwaresArgs, SFTConfig):
    """Cold-start SFT of a VLM on AwaRes trajectories (``awares collect`` exports).

    Parameters beyond TRL's:
        data: the training trajectories: an ``awares collect`` export folder (or its ``dataset`` folder), a
            collection run folder, or a ``trajectories.jsonl``.
        model: the model to fine-tune: a local checkpoint directory or a hub id (Qwen2.5-VL, Qwen3-VL...), or
            ``"tiny"`` for a fresh tiny local Qwen3-VL that can learn where (``"tiny-qwen2.5-vl"``: a tiny
            Qwen2.5-VL).
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
            "help": "the VLM to fine-tune: a checkpoint directory or hub id, or 'tiny' / 'tiny-qwen2.5-vl' "
            "(a fresh tiny local Qwen3-VL that can learn where / a tiny Qwen2.5-VL)"
        },
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
    assistant_only_loss: bool = field(
        default=True, metadata={"help": "loss on assistant tokens only (AwaRes: always)"}
    )
    max_length: int | None = field(
        default=None,
        metadata={
            "help": "truncate conversations to this many tokens (default: never; image tokens must stay)"
        },
    )

    def __post_init__(self) -> None:
        self._awares_defaults()
        super().__post_init__()
        if not self.tool_call_weight > 0:
            raise ConfigError(f"--tool-call-weight must be > 0, got {self.tool_call_weight}")
        if not self.assistant_only_loss:
            raise ConfigError("AwaRes SFT trains on assistant tokens only; drop --assistant-only-loss false")
        if self.loss_type not in ("nll", "dft"):
            raise ConfigError(f"loss_type must be 'nll' or 'dft' for weighted SFT, got {self.loss_type!r}")
        if self.label_smoothing_factor:
            raise ConfigError("label smoothing is not supported with the weighted AwaRes loss")
        if self.lora_r < 1 or self.lora_alpha < 1 or not 0 <= self.lora_dropout < 1:
            raise ConfigError(
                f"invalid LoRA shape: r={self.lora_r}, alpha={self.lora_alpha}, dropout={self.lora_dropout}"
            )

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


@dataclass
class AwaresGRPOConfig(_AwaresArgs, GRPOConfig):
    """Multi-turn GRPO of an SFT model with the AwaRes reward ``R = R_ans - C_tool``.

    Parameters beyond TRL's:
        data: the prompts: an ``awares collect`` export (its rows' original images, questions, answers and
            ``needs_crop`` labels; the trajectories themselves are not used).
        model: the policy to start from, also the KL reference: a checkpoint of ``awares train sft`` (its
            recorded protocol, crop set and system prompt are used), another checkpoint or hub id, or
            ``"tiny"`` (a fresh tiny local Qwen3-VL, for smoke runs).
        eval_data / eval_limit: held-out trajectories to evaluate the trained policy on, through the agent.
        alpha_miss: the cost of answering without crops where they were needed.
        alpha_use: the fixed cost of any crop request.
        crop_cost: the cost of each crop requested (the paper's lambda).
        similarity: ``R_ans``: ``lexical`` (offline edit similarity), ``metric`` (each sample's benchmark
            metric: right or wrong for a closed answer set) or ``st:PATH`` (cosine similarity of a local
            sentence-transformers model's embeddings, the paper's choice).
        crop_rounds: crop rounds a rollout may use (inference's default: 1).
        rollout_batch: rollouts generated together (the backend's batch size).
        guard_low / guard_high / guard_action / guard_patience: the call-rate guard
            (:class:`~awares_agent.training.guards.CallRateGuard`): warn, or stop and keep the best
            checkpoint, when the share of rollouts that request crops leaves ``[low, high]``.
        freeze_vision_tower: keep the vision encoder fixed; its merger and the language model train.
        tiny_seed: the random seed of the weights of ``--model tiny``.

    Defaults that differ from TRL's: ``beta=0.04`` (TRL's 0.0 turns the KL penalty to the reference off),
    ``bf16`` only where a GPU supports it, ``logging_steps=1`` (every step's metrics are logged), and
    ``output_dir`` has the alias ``--out``. ``max_completion_length`` bounds each model turn's generated
    tokens.
    """

    data: str | None = field(
        default=None, metadata={"help": "prompts and labels: an `awares collect` export folder or JSONL"}
    )
    model: str | None = field(
        default=None,
        metadata={"help": "the SFT checkpoint to start from (also the KL reference), a hub id, or 'tiny'"},
    )
    alpha_miss: float = field(
        default=0.5, metadata={"help": "cost of answering without crops where they were needed"}
    )
    alpha_use: float = field(default=0.1, metadata={"help": "fixed cost of any crop request"})
    crop_cost: float = field(default=0.05, metadata={"help": "cost of each crop requested (lambda)"})
    similarity: str = field(
        default="lexical",
        metadata={
            "help": "answer reward: 'lexical' (offline), 'metric' (each sample's benchmark metric) or "
            "'st:PATH' (a local sentence-transformers model)"
        },
    )
    crop_rounds: int = field(
        default=AgentConfig.model_fields["max_rounds"].default,  # inference's
        metadata={"help": "crop rounds a rollout may use (default: inference's, --max-rounds)"},
    )
    rollout_batch: int = field(default=8, metadata={"help": "rollouts generated together"})
    guard_low: float = field(default=0.05, metadata={"help": "lowest acceptable crop-call rate"})
    guard_high: float = field(default=0.95, metadata={"help": "highest acceptable crop-call rate"})
    guard_action: str = field(
        default="warn",
        metadata={
            "help": "when the call rate leaves the band: 'warn' or 'stop' (keeping the best checkpoint)"
        },
    )
    guard_patience: int = field(default=3, metadata={"help": "logged steps outside the band before acting"})
    beta: float = field(
        default=0.04,
        metadata={"help": "KL penalty to the starting model (TRL's default 0 turns it off)"},
    )
    logging_steps: float = field(default=1, metadata={"help": "log every N steps (default: every step)"})

    def __post_init__(self) -> None:
        self._awares_defaults()
        if self.num_generations < 2:
            raise ConfigError(
                f"--num-generations must be >= 2 (GRPO compares a group), got {self.num_generations}"
            )
        super().__post_init__()
        from awares_agent.training.guards import CallRateGuard
        from awares_agent.training.rewards import CropCost

        CropCost(self.alpha_miss, self.alpha_use, self.crop_cost)  # checks the weights
        CallRateGuard(
            low=self.guard_low, high=self.guard_high, action=self.guard_action, patience=self.guard_patience
        )  # checks the band
        if not (self.similarity in ("lexical", "metric") or self.similarity.startswith("st:")):
            raise ConfigError(
                f"--similarity must be 'lexical', 'metric' or 'st:PATH', got {self.similarity!r}"
            )
        if self.beta < 0:
            raise ConfigError(f"--beta must be >= 0, got {self.beta}")
        if not 0 <= self.crop_rounds <= MAX_ROUNDS:
            raise ConfigError(f"--crop-rounds must be between 0 and {MAX_ROUNDS}, got {self.crop_rounds}")
        if self.rollout_batch < 1:
            raise ConfigError(f"--rollout-batch must be >= 1, got {self.rollout_batch}")
        if self.use_vllm and importlib.util.find_spec("vllm") is None:
            raise ConfigError("--use-vllm needs vLLM (pip install 'trl[vllm]', on a machine with a GPU)")


def _bf16_gpu() -> bool:
    import torch

    return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
