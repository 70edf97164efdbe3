"""TRL's vision collator plus the AwaRes turn weights.

:class:`WeightedVisionCollator` is TRL's ``DataCollatorForVisionLanguageModeling`` (images processed on the
fly, labels only on assistant tokens through the chat template's generation markers) with one more output,
``loss_weights``: the crop-request turn's tokens weigh ``tool_call_weight``, every other trained token 1,
everything else 0. :class:`~awares_agent.training.sft.AwaresSFTTrainer` multiplies its per-token loss by them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from trl.trainer.sft_trainer import DataCollatorForVisionLanguageModeling

from awares_agent.errors import ConfigError
from awares_agent.tools.crop_sets import crop_set
from awares_agent.tools.protocols import ToolProtocol, make_protocol
from awares_agent.training.turns import assistant_turn_kinds, token_weights

__all__ = ["WeightedVisionCollator"]


@dataclass
class WeightedVisionCollator(DataCollatorForVisionLanguageModeling):
    """Collate exported AwaRes trajectories for weighted SFT.

    Args:
        processor: the model's processor (as for TRL's collator).
        tool_call_weight: the loss weight of the crop-request turn's tokens (paper: 5); 1 is plain SFT.
        protocol: the tool-call protocol of the rows (``"json"`` or ``"awares-text"``), to tell a crop request
            from an answer.
        crop_set: the crop set of the rows.
        The remaining fields are TRL's (``max_length``, ``chat_template``...); ``assistant_only_loss`` is
        always on: the weights are laid on the assistant spans.
    """

    tool_call_weight: float = 5.0
    protocol: str = "json"
    crop_set: str = "paper"

    def __post_init__(self) -> None:
        if not self.tool_call_weight > 0:
            raise ConfigError(f"tool_call_weight must be > 0, got {self.tool_call_weight}")
        self.assistant_only_loss = True
        self._protocol: ToolProtocol = make_protocol(self.protocol, crop_set(self.crop_set))

    def torch_call(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        """TRL's batch (``input_ids``, ``attention_mask``, ``labels``, pixels...) plus ``loss_weights``."""
        # Read before TRL's collation, which rewrites the messages in place.
        kinds = [assistant_turn_kinds(example["messages"], self._protocol) for example in examples]
        batch = super().torch_call(examples)
        labels = batch["labels"]
        lengths = batch["attention_mask"].sum(dim=1).tolist()
        rows = [
            token_weights(
                row,
                row_kinds,
                call_weight=self.tool_call_weight,
                truncated=self.max_length is not None and length >= self.max_length,
            )
            for row, row_kinds, length in zip(labels.tolist(), kinds, lengths, strict=True)
        ]
        batch["loss_weights"] = torch.tensor(rows, dtype=torch.float32)
        return batch
