"""The reader as a chat backend: messages in; the policy's answer or crop request out."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from awares_agent.backends.base import ChatBackend
from awares_agent.baselines.reader.config import DEFAULT_CONFIG, ReaderConfig
from awares_agent.baselines.reader.conversation import read_turn
from awares_agent.baselines.reader.policy import ReaderPolicy
from awares_agent.image_store import ImageStore
from awares_agent.messages import ChatMessage, ChatReply, ToolCall, ToolSpec, Usage
from awares_agent.tokens import PixelTokenRule
from awares_agent.tools.crop_sets import CropSet
from awares_agent.tools.crop_sets import crop_set as make_crop_set
from awares_agent.tools.protocols import AwaresTextProtocol

__all__ = ["ReaderBackend"]


class ReaderBackend(ChatBackend):
    """An OCR reader that plays the AwaRes policy for text-reading questions, with no model and no network.

    It sees what a VLM backend sees (the messages' images and text, the system prompt and the tools offered;
    see :mod:`~awares_agent.baselines.reader.conversation`) and answers through the same protocols: with a
    crop tool offered it calls ``get_crops`` natively; with the ``awares-text`` protocol (a system prompt
    teaching ``GET_CROPS``) it replies ``GET_CROPS: ['3']``. The policy is
    :class:`~awares_agent.baselines.reader.policy.ReaderPolicy`; its thresholds are a
    :class:`~awares_agent.baselines.reader.config.ReaderConfig`.

    The crop set must be the agent's (``AgentConfig.crop_set``). The first turn assumes the view is the
    original at ``view_scale`` (the agent's default half-size view); once crops arrive the scale is measured
    from them instead.

    Args:
        config: the reader's thresholds (default: the fitted defaults). The keyword arguments below, when
            given, replace the matching fields of it.
        crop_set: the agent's crop set key (``"paper"``, ``"grid-3x3"``...) or a crop set.
        min_text_px: :attr:`ReaderConfig.min_text_px`.
        min_confidence: :attr:`ReaderConfig.min_confidence`.
        view_scale: :attr:`ReaderConfig.view_scale`.
        model_name: the name reported in replies and trajectories.
        cache_size: :attr:`ReaderConfig.cache_size`.
        enlarge: :attr:`ReaderConfig.enlarge`.
        ambiguity: :attr:`ReaderConfig.ambiguity`.

    Raises:
        ConfigError: an unknown crop set or an out-of-range option.
    """

    def __init__(
        self,
        config: ReaderConfig | None = None,
        *,
        crop_set: str | CropSet = "paper",
        min_text_px: float | None = None,
        min_confidence: float | None = None,
        view_scale: float | None = None,
        model_name: str = "awares-reader",
        cache_size: int | None = None,
        enlarge: float | None = None,
        ambiguity: float | None = None,
    ) -> None:
        options = {
            "min_text_px": min_text_px,
            "min_confidence": min_confidence,
            "view_scale": view_scale,
            "cache_size": cache_size,
            "enlarge": enlarge,
            "ambiguity": ambiguity,
        }
        given = {name: value for name, value in options.items() if value is not None}
        base = config if config is not None else DEFAULT_CONFIG
        self.config: ReaderConfig = replace(base, **given) if given else base
        self.crop_set = make_crop_set(crop_set)
        self._model_name = model_name
        self._policy = ReaderPolicy(self.crop_set, self.config)
        self._text_protocol = AwaresTextProtocol(self.crop_set)

    @property
    def model_name(self) -> str:
        """The name reported in replies and trajectories."""
        return self._model_name

    @property
    def token_rule(self) -> PixelTokenRule:
        """One token per 28x28 pixels: an OCR engine has no visual tokens, so RTR is the pixel ratio."""
        return PixelTokenRule()

    @property
    def policy(self) -> ReaderPolicy:
        """The policy that decides each turn."""
        return self._policy

    def clear_cache(self) -> None:
        """Forget what the OCR has read, so the next queries are timed cold (answers are unchanged: the cache
        only saves repeated reads of the same image)."""
        self._policy.images.cache.clear()

    def __repr__(self) -> str:
        return (
            f"ReaderBackend(crop_set={self.crop_set.key!r}, min_text_px={self.config.min_text_px}, "
            f"min_confidence={self.config.min_confidence})"
        )

    def complete(
        self,
        messages: Sequence[ChatMessage],
        *,
        images: ImageStore,
        tools: Sequence[ToolSpec] | None = None,
    ) -> ChatReply:
        """Run one turn: answer, or request crops (see :mod:`~awares_agent.baselines.reader.policy`).

        Args:
            messages: the conversation so far.
            images: the store that resolves the messages' images.
            tools: the tools offered (the crop tool while crops may be requested).
        """
        started = time.perf_counter()
        turn = read_turn(messages, tools, self.crop_set)
        if turn.view is not None:
            # A VLM is sent the view whatever the question: one missing from the store is an error even when
            # the policy would answer without reading it (a question it does not parse).
            images.get(turn.view.image_id)
        decision = self._policy.decide(turn, images)

        def reply(**fields: Any) -> ChatReply:
            return ChatReply(
                usage=Usage(), model=self._model_name, latency_s=time.perf_counter() - started, **fields
            )

        if isinstance(decision, str):
            return reply(text=decision, finish_reason="stop")
        if turn.tool_name is not None:
            call = ToolCall(id="call_0", name=turn.tool_name, arguments=json.dumps({"crops": decision}))
            return reply(tool_calls=[call], finish_reason="tool_calls")
        # The awares-text convention, as the released model writes it.
        return reply(text=self._text_protocol.call_reply(decision).text, finish_reason="stop")
