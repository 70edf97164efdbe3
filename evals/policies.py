"""Policies to compare, all run through the same AwaRes agent and graph.

==========  =================================================================================================
awares      the model decides whether and where to crop (the method)
low-res     the low-resolution view only: no crop round
full-res    the full-resolution image only (the view at scale 1.0, no crop round): the accuracy ceiling of
            the model, at RTR 1.0
all-crops   every region of the crop set (``all`` excluded) is sent, then the model answers
random      as many crops as ``awares`` took on the same sample, from random regions (seeded per sample)
oracle      the cheapest crops covering the sample's evidence box
(:func:`awares_agent.tools.box_mapping.crops_covering`);
            samples without a box get no crops
==========  =================================================================================================

The forced-crop policies wrap the backend in :class:`FixedCropsBackend`, whose first turn is the policy's
crop request; everything after (serving the crops, the model's answer, token accounting, the trajectory) is
the ordinary agent.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from awares_agent.evals.schema import EvalSample
from awares_agent.tools.box_mapping import crops_covering
from awares_agent.tools.crop_sets import ALL, crop_set

from awares_agent.backends.base import ChatBackend
from awares_agent.config import AgentConfig
from awares_agent.errors import ConfigError
from awares_agent.messages import ChatMessage, ChatReply, ToolCall, ToolSpec

if TYPE_CHECKING:
    from awares_agent.image_store import ImageStore

POLICIES = ("awares", "low-res", "full-res", "all-crops", "random", "oracle")


class FixedCropsBackend:
    """A backend whose first turn requests fixed crops; later turns go to the wrapped backend.

    Args:
        inner: the model that answers once the crops are in.
        crops: region ids to request; empty means answer from the view (the inner model's first turn).
    """

    def __init__(self, inner: ChatBackend, crops: Sequence[str]) -> None:
        self.inner = inner
        self.crops = list(crops)

    @property
    def model_name(self) -> str:
        return self.inner.model_name

    @property
    def token_rule(self) -> Any:
        return getattr(self.inner, "token_rule", None)

    def complete(
        self, messages: Sequence[ChatMessage], *, images: ImageStore, tools: Sequence[ToolSpec] | None = None
    ) -> ChatReply:
        if self._first_turn(messages):
            return self._request(tools)
        return self.inner.complete(messages, images=images, tools=tools)

    async def acomplete(
        self, messages: Sequence[ChatMessage], *, images: ImageStore, tools: Sequence[ToolSpec] | None = None
    ) -> ChatReply:
        if self._first_turn(messages):
            return self._request(tools)
        return await self.inner.acomplete(messages, images=images, tools=tools)

    def _first_turn(self, messages: Sequence[ChatMessage]) -> bool:
        return bool(self.crops) and not any(m.role == "assistant" for m in messages)

    def _request(self, tools: Sequence[ToolSpec] | None) -> ChatReply:
        started = time.perf_counter()
        if tools:  # function calling: a native call
            call = ToolCall(id="call_0", name=tools[0].name, arguments=json.dumps({"crops": self.crops}))
            return ChatReply(
                tool_calls=[call], model=self.model_name, latency_s=time.perf_counter() - started
            )
        listed = ", ".join(f"'{c}'" for c in self.crops)
        return ChatReply(text=f"GET_CROPS: [{listed}]", model=self.model_name, latency_s=0.0)


def policy_config(policy: str, base: AgentConfig) -> AgentConfig:
    """The agent configuration a policy runs under (``base`` with the policy's changes).

    Raises:
        ConfigError: unknown policy.
    """
    check_policy(policy)
    if policy == "low-res":
        return base.model_copy(update={"max_rounds": 0})
    if policy == "full-res":
        return base.model_copy(update={"max_rounds": 0, "view_scale": 1.0, "view_longest_side": None})
    if policy in ("all-crops", "random", "oracle"):
        return base.model_copy(update={"max_rounds": max(1, base.max_rounds), "max_rtr": None})
    return base


def policy_backend(
    policy: str,
    backend: ChatBackend,
    sample: EvalSample,
    config: AgentConfig,
    *,
    width: int,
    height: int,
    awares_crops: int | None = None,
    seed: int = 0,
) -> ChatBackend:
    """The backend to run ``sample`` with under ``policy``.

    Args:
        policy: one of :data:`POLICIES`.
        backend: the model.
        sample: the sample (its ``bbox`` for ``oracle``, its ``id`` to seed ``random``).
        config: the policy's agent configuration (its crop set).
        width: the original image's width.
        height: the original image's height.
        awares_crops: for ``random``: how many crops ``awares`` took on this sample.
        seed: for ``random``: the run's seed.

    Raises:
        ConfigError: ``random`` without ``awares_crops``.
    """
    check_policy(policy)
    regions = [r for r in crop_set(config.crop_set).regions(width, height) if r.id != ALL]
    if policy == "all-crops":
        return FixedCropsBackend(backend, [r.id for r in regions])
    if policy == "oracle":
        crops = crops_covering(sample.bbox, crop_set(config.crop_set), width, height) if sample.bbox else []
        return FixedCropsBackend(backend, crops)
    if policy == "random":
        if awares_crops is None:
            raise ConfigError(
                f"the random policy needs the awares run's crop count for sample {sample.id!r}: run it with "
                "awares (--policy awares,random) or point it at an awares run"
            )
        rng = random.Random(f"{seed}:{sample.id}")
        chosen = rng.sample([r.id for r in regions], min(awares_crops, len(regions)))
        return FixedCropsBackend(backend, chosen)
    return backend


def check_policy(policy: str) -> None:
    """Raise :class:`ConfigError` unless ``policy`` is one of :data:`POLICIES`."""
    if policy not in POLICIES:
        raise ConfigError(f"unknown policy {policy!r}: choose from {', '.join(POLICIES)}")
