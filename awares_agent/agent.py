"""The user-facing agent: wrap any chat VLM backend as an AwaRes agent.

>>> from awares_agent import AwaResAgent, OpenAIBackend
>>> agent = AwaResAgent(OpenAIBackend("Qwen/Qwen2.5-VL-7B-Instruct", base_url="http://localhost:8000/v1"))
>>> result = agent.ask("invoice.png", "What is the total?")
>>> result.answer, result.crops, result.rtr
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, Literal

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph.state import CompiledStateGraph
from pydantic import BaseModel, ConfigDict, Field, computed_field

from awares_agent.backends.base import ChatBackend
from awares_agent.config import AgentConfig
from awares_agent.errors import AwaresError, ConfigError
from awares_agent.graphs.awares_graph import build_graph
from awares_agent.image_store import ImageStore
from awares_agent.images import ImageInput
from awares_agent.messages import ChatMessage, Usage
from awares_agent.tokens import backend_token_rule, token_cost
from awares_agent.tools.crop_sets import crop_set
from awares_agent.trajectory import CropRecord, ErrorRecord, ImageRecord, Trajectory
from awares_agent.untrusted import valid_text


class AskResult(BaseModel):
    """The outcome of one query: the answer, what it cost, and the full trajectory.

    Every field is derived from :attr:`trajectory`, the record that collection, training and evals reuse.
    """

    model_config = ConfigDict(frozen=True)

    trajectory: Trajectory

    @computed_field  # type: ignore[prop-decorator]
    @property
    def answer(self) -> str | None:
        """The final answer (``None`` if the model gave none)."""
        return self.trajectory.answer

    @computed_field  # type: ignore[prop-decorator]
    @property
    def crops(self) -> list[CropRecord]:
        """The crops sent to the model: ids, names and boxes in original pixels."""
        return self.trajectory.crops

    @computed_field  # type: ignore[prop-decorator]
    @property
    def visual_tokens(self) -> int:
        """Visual tokens sent: the low-res view once plus every crop."""
        return self.trajectory.cost.sent_tokens

    @computed_field  # type: ignore[prop-decorator]
    @property
    def full_tokens(self) -> int:
        """Visual tokens the full-resolution image would have cost."""
        return self.trajectory.cost.full_tokens

    @computed_field  # type: ignore[prop-decorator]
    @property
    def rtr(self) -> float:
        """Retained token ratio: ``visual_tokens / full_tokens``."""
        return self.trajectory.cost.rtr

    @computed_field  # type: ignore[prop-decorator]
    @property
    def latency_s(self) -> float:
        """Wall-clock seconds for the query."""
        return self.trajectory.latency_s


class AgentEvent(BaseModel):
    """A step of a streamed query.

    Attributes:
        type: ``view`` (low-res view made), ``model`` (a model turn), ``crops`` (crops served), ``answer``
            (final answer known), or ``result`` (the query is complete; ``result`` is set).
        data: the event's payload (ids, sizes, tokens, the model's text...).
        result: the :class:`AskResult`, on the ``result`` event.
    """

    type: Literal["view", "model", "crops", "answer", "result"]
    data: dict[str, Any] = Field(default_factory=dict)
    result: AskResult | None = None


Query = tuple[ImageInput, str]


class AwaResAgent:
    """An AwaRes agent: low-res view first, high-res crops only where the model asks for them.

    Args:
        backend: any :class:`~awares_agent.backends.base.ChatBackend` (e.g. :class:`OpenAIBackend`).
        config: an :class:`AgentConfig`; keyword ``options`` override its fields (``max_rtr=0.5``...).
        store: the image store (a fresh in-memory one by default; pass ``ImageStore(root=...)`` to persist
            images next to a persistent checkpointer).
        checkpointer: a LangGraph checkpointer; each query then runs in its own thread (``thread_id``).
        **options: :class:`AgentConfig` fields.
    """

    def __init__(
        self,
        backend: ChatBackend,
        config: AgentConfig | None = None,
        *,
        store: ImageStore | None = None,
        checkpointer: BaseCheckpointSaver | None = None,
        **options: Any,
    ) -> None:
        self.config = AgentConfig.from_options(config, **options) if options or config is None else config
        self.backend = backend
        self.store = store if store is not None else ImageStore(max_pixels=self.config.max_image_pixels)
        self.checkpointer = checkpointer
        self.graph: CompiledStateGraph = build_graph(
            backend, self.config, store=self.store, checkpointer=checkpointer
        )
        self._rule = backend_token_rule(self.config.token_rule, backend)
        self._crop_set = crop_set(self.config.crop_set)

    # --- one query -----------------------------------------------------------------------------------

    def ask(self, image: ImageInput, question: str, *, thread_id: str | None = None) -> AskResult:
        """Answer ``question`` about ``image`` (a path, bytes, a PIL image or a data URI).

        Raises:
            ImageError: the image cannot be used (corrupt, not an image, too large).
            BackendError: the backend failed (timeout, HTTP error, invalid reply).
        """
        started, t0 = datetime.now(UTC), time.perf_counter()
        inputs, run_config, label = self._prepare(image, question, thread_id)
        state = self.graph.invoke(inputs, run_config)
        return self._result(state, label, started, time.perf_counter() - t0)

    async def aask(self, image: ImageInput, question: str, *, thread_id: str | None = None) -> AskResult:
        """Async :meth:`ask`."""
        started, t0 = datetime.now(UTC), time.perf_counter()
        inputs, run_config, label = await asyncio.to_thread(self._prepare, image, question, thread_id)
        state = await self.graph.ainvoke(inputs, run_config)
        return self._result(state, label, started, time.perf_counter() - t0)

    def resume(self, thread_id: str) -> AskResult:
        """Finish a query that stopped part-way (e.g. the backend failed), from its last checkpoint.

        Steps already done (the view, crops served, model turns) are not repeated. Needs a checkpointer,
        and an image store that still holds the query's images (``ImageStore(root=...)`` across processes).

        Raises:
            ConfigError: no checkpointer, or no query under ``thread_id``.
        """
        if self.checkpointer is None:
            raise ConfigError("resume() needs an agent created with a checkpointer")
        run_config = {"configurable": {"thread_id": thread_id}, "recursion_limit": self._recursion_limit()}
        snapshot = self.graph.get_state(run_config)
        if not snapshot.values:
            raise ConfigError(f"no query was checkpointed under thread_id {thread_id!r}")
        started, t0 = datetime.now(UTC), time.perf_counter()
        state = self.graph.invoke(None, run_config) if snapshot.next else snapshot.values
        source = self.store.source(state["source"]["id"])
        return self._result(state, source.label, started, time.perf_counter() - t0)

    def stream(
        self, image: ImageInput, question: str, *, thread_id: str | None = None
    ) -> Iterator[AgentEvent]:
        """Run a query and yield its events as they happen, ending with a ``result`` event."""
        started, t0 = datetime.now(UTC), time.perf_counter()
        inputs, run_config, label = self._prepare(image, question, thread_id)
        state: dict[str, Any] = {}
        for mode, payload in self.graph.stream(inputs, run_config, stream_mode=["custom", "values"]):
            if mode == "custom":
                yield AgentEvent(type=payload["type"], data=payload)
            else:
                state = payload
        result = self._result(state, label, started, time.perf_counter() - t0)
        yield AgentEvent(type="result", result=result)

    async def astream(
        self, image: ImageInput, question: str, *, thread_id: str | None = None
    ) -> AsyncIterator[AgentEvent]:
        """Async :meth:`stream`."""
        started, t0 = datetime.now(UTC), time.perf_counter()
        inputs, run_config, label = await asyncio.to_thread(self._prepare, image, question, thread_id)
        state: dict[str, Any] = {}
        async for mode, payload in self.graph.astream(inputs, run_config, stream_mode=["custom", "values"]):
            if mode == "custom":
                yield AgentEvent(type=payload["type"], data=payload)
            else:
                state = payload
        yield AgentEvent(type="result", result=self._result(state, label, started, time.perf_counter() - t0))

    # --- many queries --------------------------------------------------------------------------------

    def ask_many(
        self, queries: Iterable[Query], *, max_concurrency: int = 8, return_exceptions: bool = False
    ) -> list[AskResult | AwaresError]:
        """Answer many ``(image, question)`` pairs concurrently (threads), results in input order.

        Args:
            queries: ``(image, question)`` pairs.
            max_concurrency: queries in flight at once.
            return_exceptions: put an :class:`AwaresError` in a failed query's place instead of raising the
                first one (the other queries still complete either way).
        """
        items = list(queries)
        with ThreadPoolExecutor(max_workers=max(1, max_concurrency)) as pool:
            futures = [pool.submit(self.ask, image, question) for image, question in items]
            return self._gather([f.exception() or f.result() for f in futures], return_exceptions)

    async def aask_many(
        self, queries: Iterable[Query], *, max_concurrency: int = 8, return_exceptions: bool = False
    ) -> list[AskResult | AwaresError]:
        """Async :meth:`ask_many`: at most ``max_concurrency`` queries in flight."""
        gate = asyncio.Semaphore(max(1, max_concurrency))

        async def one(image: ImageInput, question: str) -> AskResult:
            async with gate:
                return await self.aask(image, question)

        outcomes = await asyncio.gather(*(one(i, q) for i, q in queries), return_exceptions=True)
        return self._gather(list(outcomes), return_exceptions)

    @staticmethod
    def _gather(outcomes: Sequence[Any], return_exceptions: bool) -> list[AskResult | AwaresError]:
        for outcome in outcomes:
            if isinstance(outcome, BaseException) and (
                not return_exceptions or not isinstance(outcome, AwaresError)
            ):
                raise outcome
        return list(outcomes)

    # --- internals -----------------------------------------------------------------------------------

    def _prepare(
        self, image: ImageInput, question: str, thread_id: str | None
    ) -> tuple[dict[str, Any], dict[str, Any], str]:
        if not isinstance(question, str) or not question.strip():
            raise ConfigError("the question must be a non-empty string")
        source = self.store.add(image)
        inputs = {
            # A question read from argv or a file may carry lone surrogates (undecodable bytes): they could
            # not be sent to any server nor written to the trajectory.
            "question": valid_text(question.strip())[0],
            "source": {"id": source.id, "width": source.width, "height": source.height},
        }
        run_config: dict[str, Any] = {"recursion_limit": self._recursion_limit()}
        if self.checkpointer is not None:
            run_config["configurable"] = {"thread_id": thread_id or uuid.uuid4().hex}
        return inputs, run_config, source.label

    def _recursion_limit(self) -> int:
        # Each correction or crop round is two graph steps; leave room for all of them.
        return 10 + 4 * (self.config.max_rounds + self.config.max_corrections)

    def _result(self, state: dict[str, Any], label: str, started: datetime, latency_s: float) -> AskResult:
        trajectory = self.trajectory_from_state(
            state, source_label=label, started=started, latency_s=latency_s
        )
        return AskResult(trajectory=trajectory)

    def trajectory_from_state(
        self,
        state: dict[str, Any],
        *,
        source_label: str | None = None,
        started: datetime | None = None,
        latency_s: float = 0.0,
    ) -> Trajectory:
        """Build the :class:`Trajectory` for a finished graph state (e.g. one read back from a checkpoint)."""
        src, view = state["source"], state["view"]
        crops = [CropRecord.model_validate(c) for c in state.get("crops", [])]
        cost = token_cost(
            self._rule,
            (src["width"], src["height"]),
            (view["width"], view["height"]),
            [(c.width, c.height) for c in crops],
        )
        usage = state.get("usage") or {}
        extra = {"created_at": started} if started is not None else {}
        return Trajectory(
            question=state["question"],
            image=ImageRecord(source=valid_text(source_label)[0] if source_label else source_label, **src),
            view=ImageRecord(**view),
            model=self.backend.model_name,
            backend=type(self.backend).__name__,
            protocol=self.config.protocol,
            crop_set=self._crop_set.key,
            messages=[ChatMessage.model_validate(m) for m in state["messages"]],
            crops=crops,
            rounds=state.get("rounds", 0),
            answer=state.get("answer"),
            cost=cost,
            usage=Usage(
                prompt_tokens=usage.get("prompt_tokens", 0),
                completion_tokens=usage.get("completion_tokens", 0),
            ),
            calls=usage.get("calls", 0),
            errors=[ErrorRecord.model_validate(e) for e in state.get("errors", [])],
            max_rtr=self.config.max_rtr,
            latency_s=latency_s,
            **extra,
        )
