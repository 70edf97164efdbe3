"""Which assistant turns of a training conversation are crop requests, and the per-token weights that follow.

The AwaRes SFT loss weighs the tokens of the crop-request turn by ``w`` (5 in the paper) and every other
assistant token by 1. The kind of a turn is read from the conversation itself, with the tool-call protocol's
own parser (the same one the agent uses at inference), so no metadata column has to survive TRL's column
filtering: a turn the protocol parses as a valid crop request is a ``"call"``, any other assistant turn an
``"answer"``, and a malformed call is ``"invalid"`` (such rows are not trained on, see
:mod:`awares_agent.training.data`).

The weights are laid onto the tokens through the loss mask TRL's collator builds from the chat template's
``{% generation %}`` spans: every assistant turn is one contiguous run of trained tokens (the role header
``<|im_start|>assistant`` between two turns is never trained), so the i-th run is the i-th assistant turn.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

from awares_agent.errors import ConfigError
from awares_agent.messages import ChatReply
from awares_agent.tools.protocols import ToolProtocol

TurnKind = Literal["call", "answer", "invalid"]

IGNORE_INDEX = -100
"""The label of a token that carries no loss (TRL's and transformers' convention)."""


def message_text(message: Mapping[str, Any]) -> str:
    """The text of a training message (a string, or the text parts of a list of typed parts, joined)."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    return "".join(p.get("text") or "" for p in content or [] if p.get("type") == "text")


def assistant_turn_kinds(messages: Sequence[Mapping[str, Any]], protocol: ToolProtocol) -> list[TurnKind]:
    """The kind of every assistant turn of ``messages``, in order.

    Args:
        messages: a training conversation (Hugging Face chat dicts, as exported by ``awares collect``).
        protocol: the tool-call protocol the conversation was written in.
    """
    kinds: list[TurnKind] = []
    for message in messages:
        if message.get("role") != "assistant":
            continue
        decision = protocol.parse(ChatReply(text=message_text(message)))
        kinds.append(
            "call" if decision.kind == "crop" else "invalid" if decision.kind == "invalid" else "answer"
        )
    return kinds


def trained_runs(labels: Sequence[int]) -> list[tuple[int, int]]:
    """The ``[start, end)`` spans of consecutive trained positions (label not :data:`IGNORE_INDEX`)."""
    runs: list[tuple[int, int]] = []
    start: int | None = None
    for i, label in enumerate(labels):
        if label != IGNORE_INDEX and start is None:
            start = i
        elif label == IGNORE_INDEX and start is not None:
            runs.append((start, i))
            start = None
    if start is not None:
        runs.append((start, len(labels)))
    return runs


def token_weights(
    labels: Sequence[int], kinds: Sequence[TurnKind], *, call_weight: float, truncated: bool = False
) -> list[float]:
    """Per-position loss weights of one rendered conversation.

    Args:
        labels: the conversation's labels (:data:`IGNORE_INDEX` outside assistant turns and on padding).
        kinds: the kinds of its assistant turns, in order (:func:`assistant_turn_kinds`).
        call_weight: the weight of a crop-request turn's tokens; answer tokens weigh 1, untrained ones 0.
        truncated: the rendering was cut at the maximum length, so its last turns may be missing.

    Raises:
        ConfigError: the trained spans do not match the assistant turns one to one (a chat template whose
            generation markers do not enclose exactly each assistant turn).
    """
    runs = trained_runs(labels)
    if len(runs) > len(kinds) or (len(runs) < len(kinds) and not truncated):
        raise ConfigError(
            f"the chat template's trained spans ({len(runs)}) do not match the conversation's assistant "
            "turns "
            f"({len(kinds)}): its {{% generation %}} markers must enclose each assistant turn exactly once"
        )
    weights = [0.0] * len(labels)
    for (start, end), kind in zip(runs, kinds, strict=False):
        weight = call_weight if kind == "call" else 1.0
        for i in range(start, end):
            weights[i] = weight
    return weights
