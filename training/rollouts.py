"""Rollouts for RL that *are* the inference path: the real agent graph on the model being trained.

A rollout is one ``AwaResAgent.ask`` of the sample's original image and question, run by the transformers
backend on the policy's own weights with sampling on (TRL's ``temperature`` / ``top_p``). The backend renders
every turn exactly as at inference (both protocols, the checkpoint's system prompt and tools block, crops
returned in a user turn, as many crop rounds as the agent configuration allows) and reports the token ids it
was given and generated (``TransformersBackend.complete_with_ids``).

:func:`assemble` turns a rollout's turns into one training sequence: the first prompt, then everything after
it up to the end of the last generated turn. Only generated tokens are trained (``model_mask`` 1); the crop
turns, tool results and correction messages in between are context (0). Every later prompt must start with
the earlier prompt *and* the ids generated for it; a turn for which that fails (its reply re-rendered to
other tokens, a history the template rewrote) is not trained and is counted as drift.
The images of the sequence, in order of appearance (the view, then the crops), go with it to the training
forward pass.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from awares_agent.agent import AskResult, AwaResAgent
from awares_agent.backends.hf_decode import TurnOutcome
from awares_agent.backends.transformers_backend import TransformersBackend
from awares_agent.config import AgentConfig
from awares_agent.errors import AwaresError, BackendError
from awares_agent.evals.decisions import MALFORMED
from awares_agent.messages import ChatMessage, ChatReply, ToolSpec

if TYPE_CHECKING:
    from awares_agent.backends.hf_decode import GeneratedTurn, PreparedTurn
    from awares_agent.evals.schema import EvalSample
    from awares_agent.image_store import ImageStore

__all__ = ["Episode", "RolloutError", "RolloutRunner", "VLLMTurnBackend", "assemble"]

INVALID_CALLS = frozenset({"invalid_tool_call", "unknown_tool"})


class RolloutError(BackendError):
    """A rollout that failed, or cannot be trained (no model call, images that do not match their tokens)."""


@dataclass
class Episode:
    """One rollout, as the trainer needs it.

    Attributes:
        prompt_ids: the first prompt (system prompt, tools block, the low-res view and the question).
        completion_ids: everything after it: generated turns, crop turns, the final answer.
        model_mask: per completion token, 1 where the model generated it (trained), 0 for context.
        images: the sequence's images in order of appearance (the view, then each crop).
        result: the agent's outcome (answer, crops, RTR, errors).
        turns: model calls in the rollout.
        drift: generated turns that the re-rendered conversation did not keep token for token (not trained).
    """

    prompt_ids: list[int]
    completion_ids: list[int]
    model_mask: list[int]
    images: list[Any]
    result: AskResult
    turns: int
    drift: int = 0

    @property
    def crops(self) -> int:
        """Crops the model received (the ``|C|`` of the crop cost)."""
        return len(self.result.trajectory.crops)

    @property
    def requested_crops(self) -> int:
        """Crops the model asked for: those served, plus one for each rejected (malformed) crop call.

        A malformed call is still a call to the tool, so it costs like a request of one crop.
        """
        return self.crops + self.invalid_calls

    @property
    def called(self) -> bool:
        """Whether crops were requested and served."""
        return self.crops > 0

    @property
    def invalid_calls(self) -> int:
        """Crop calls the agent rejected (malformed arguments, unknown tool)."""
        return sum(e.kind in INVALID_CALLS for e in self.result.trajectory.errors)

    @property
    def well_formed(self) -> bool:
        """No malformed reply anywhere in the rollout (the policy evaluation's definition)."""
        return not any(e.kind in MALFORMED for e in self.result.trajectory.errors)

    @property
    def text(self) -> str:
        """The model's turns as text, crop turns marked (for TRL's completion logs)."""
        messages = self.result.trajectory.messages
        first_user = next((i for i, m in enumerate(messages) if m.role == "user"), len(messages))
        parts = []
        for message in messages[first_user + 1 :]:
            if message.role == "assistant":
                calls = "".join(f"<tool_call>{c.name} {c.arguments}</tool_call>" for c in message.tool_calls)
                parts.append(message.text + calls)
            elif message.images:
                parts.append(f"[{len(message.images)} image(s)]")
        return "\n".join(parts)


def assemble(turns: Sequence[GeneratedTurn]) -> tuple[list[int], list[int], list[int], list[Any], int]:
    """A rollout's turns as one training sequence: the last prompt and what the model generated for it.

    Each earlier turn must sit in it verbatim: its prompt and then the ids sampled for it. A turn that does
    not (its reply re-rendered to other tokens, a prompt whose history the template rewrote) counts as
    drift and is not trained, since its tokens were sampled in another context.

    Args:
        turns: the model calls of one rollout, in order.

    Returns:
        ``(prompt_ids, completion_ids, model_mask, images, drift)``: see :class:`Episode`. The prompt is the
        first turn's (cut where the sequence leaves it, if it does).

    Raises:
        RolloutError: no turns.
    """
    if not turns:
        raise RolloutError("the rollout made no model call")
    last = turns[-1]
    sequence = last.prompt_ids + last.completion_ids
    mask = [0] * len(sequence)
    drift = 0
    for turn in turns:
        start = len(turn.prompt_ids)
        end = start + len(turn.completion_ids)
        if sequence[:end] != turn.prompt_ids + turn.completion_ids:
            drift += 1
            continue
        mask[start:end] = [1] * (end - start)
    first = turns[0].prompt_ids
    cut = next((i for i, (a, b) in enumerate(zip(first, sequence, strict=False)) if a != b), len(first))
    return sequence[:cut], sequence[cut:], mask[cut:], list(last.images), drift


class _RecordingBackend:
    """A chat backend that runs every turn on the policy's backend and keeps its token ids."""

    def __init__(self, inner: TransformersBackend) -> None:
        self.inner = inner
        self.turns: list[GeneratedTurn] = []

    @property
    def model_name(self) -> str:
        return self.inner.model_name

    @property
    def token_rule(self) -> Any:
        return self.inner.token_rule

    def complete(
        self, messages: Sequence[ChatMessage], *, images: ImageStore, tools: Sequence[ToolSpec] | None = None
    ) -> ChatReply:
        reply, turn = self.inner.complete_with_ids(messages, images=images, tools=tools)
        self.turns.append(turn)
        return reply

    async def acomplete(
        self, messages: Sequence[ChatMessage], *, images: ImageStore, tools: Sequence[ToolSpec] | None = None
    ) -> ChatReply:
        return await asyncio.to_thread(self.complete, messages, images=images, tools=tools)


VLLMGenerate = Callable[[list[list[int]], list[list[Any]] | None], list[list[int]]]
"""Generate one completion per prompt: ``(prompt_ids, images or None) -> completion_ids``."""


class VLLMTurnBackend(TransformersBackend):
    """The transformers backend's rendering, tokenizing and reply parsing, with vLLM generating each turn.

    Every turn is rendered and tokenized exactly as by :class:`TransformersBackend` (so rollouts stay the
    inference path); the expanded prompt ids and the turn's images go to ``generate``, which is TRL's vLLM
    engine in :class:`~awares_agent.training.AwaresGRPOTrainer` (``use_vllm``, colocate or server mode;
    TRL passes vLLM expanded prompt ids and images the same way). Concurrent turns are batched into one call.

    Args:
        model: the policy (its config and rope index are used to tokenize; it does not generate).
        processor: its processor.
        generate: the generation function.
        **options: :class:`TransformersBackend` options (``max_batch_size``, ``batch_wait_ms``...).
    """

    def __init__(self, model: Any, processor: Any, generate: VLLMGenerate, **options: Any) -> None:
        super().__init__(model, processor, kv_reuse=False, **options)
        self._vllm_generate = generate

    def _run(self, requests: list[PreparedTurn]) -> list[TurnOutcome]:
        prompts = [r.input_ids.tolist() for r in requests]
        images = [list(r.images) or None for r in requests]
        completions = self._vllm_generate(prompts, images if any(images) else None)
        if len(completions) != len(requests):
            raise BackendError(f"vLLM returned {len(completions)} completions for {len(requests)} prompts")
        outcomes = []
        for request, tokens in zip(requests, completions, strict=True):
            tokens = list(tokens)[: self.max_new_tokens]
            stopped = bool(tokens) and tokens[-1] in self._stop_ids
            outcomes.append(TurnOutcome(tokens, "stop" if stopped else "length", 0, request.length))
        return outcomes


@dataclass
class RolloutRunner:
    """Runs rollouts of the policy through the real agent, several at once (the backend batches them).

    Args:
        backend: the transformers backend on the policy's weights, with sampling on.
        config: the agent configuration the policy is trained for (protocol, crop set, system prompt, rounds).
        concurrency: rollouts in flight (the backend decodes up to its ``max_batch_size`` together).
    """

    backend: TransformersBackend
    config: AgentConfig
    concurrency: int = 8
    _pool: ThreadPoolExecutor | None = field(default=None, init=False, repr=False)

    def run(self, samples: Sequence[EvalSample]) -> list[Episode]:
        """One rollout per sample (repeat a sample for a group), in order.

        The backend's KV cache is emptied first: it holds turns computed with earlier weights.

        Raises:
            RolloutError: a rollout failed (its sample named) or cannot be assembled.
        """
        self.backend.clear_cache()
        with self._eval_mode():
            if self.concurrency <= 1 or len(samples) <= 1:
                return [self._episode(s) for s in samples]
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="awares-rollout")
            return list(self._pool.map(self._episode, samples))

    def close(self) -> None:
        """Stop the worker threads."""
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None

    @contextlib.contextmanager
    def _eval_mode(self) -> Iterator[None]:
        model = self.backend.model
        training = model.training
        model.eval()
        try:
            yield
        finally:
            model.train(training)

    def _episode(self, sample: EvalSample) -> Episode:
        recorder = _RecordingBackend(self.backend)
        agent = AwaResAgent(recorder, self.config)  # type: ignore[arg-type]
        try:
            result = agent.ask(sample.image, sample.question)
        except AwaresError as exc:
            raise RolloutError(f"the rollout of sample {sample.id!r} failed: {exc}") from exc
        prompt, completion, mask, images, drift = assemble(recorder.turns)
        return Episode(prompt, completion, mask, images, result, len(recorder.turns), drift)
