"""The user-facing agent: wrap any chat VLM backend as an AwaRes agent.

>>> from awares_agent import AwaResAgent, OpenAIBackend
>>> agent = AwaResAgent(OpenAIBackend("Qwen/Qwen2.5-VL-7B-Instruct", base_url="http://localhost:8000/v1"))
>>> result = agent.ask("invoice.png", "What is the total?")
>>> result.answer, result.crops, result.rtr
"""

from __future__ import annotations

import asyncio
import dataclasses
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
from awares_agent.graphs.context import RunOptions
from awares_agent.image_store import ImageStore
from awares_agent.images import ImageInput
from awares_agent.messages import ChatMessage, Usage
from awares_agent.tokens import TokenCost, backend_token_rule, pixel_rtr
from awares_agent.tools.crop_sets import crop_set
from awares_agent.tools.prompts import resolve_preset
from awares_agent.trajectory import AgentSettings, CropRecord, ErrorRecord, ImageRecord, Trajectory
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
        type: ``view`` (low-res view made), ``token`` (a new piece of a model turn's text, as it is
            generated: ``data["text"]``, ``data["round"]``; only from a backend that streams), ``model`` (a
            model turn, complete), ``crops`` (crops served), ``answer`` (final answer known), or ``result``
            (the query is complete; ``result`` is set).
        data: the event's payload (ids, sizes, tokens, the model's text...).
        result: the :class:`AskResult`, on the ``result`` event.
    """

    type: Literal["view", "token", "model", "crops", "answer", "result"]
    data: dict[str, Any] = Field(default_factory=dict)
    result: AskResult | None = None


Query = tuple[ImageInput, str]


def _streamed(options: RunOptions | None, tokens: bool) -> RunOptions | None:
    """``options`` with text streaming as asked (``None`` kept when nothing changes)."""
    if options is None and not tokens:
        return None
    if options is not None and not isinstance(options, RunOptions):
        return options  # _prepare refuses it with its message
    return dataclasses.replace(options or RunOptions(), stream_text=tokens)


class AwaResAgent:
    """An AwaRes agent: low-res view first, high-res crops only where the model asks for them.

    The graph is compiled once, here. What may change from one query to the next (a forced crop request, a
    scripted answer, another budget, round limit or view) is given per query as ``options=``
    (:class:`~awares_agent.graphs.context.RunOptions`, the graph's run context), so one agent serves every
    evaluation policy and every collection mode.

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
        self.settings = self._settings()

    # --- one query -----------------------------------------------------------------------------------

    def ask(
        self,
        image: ImageInput,
        question: str,
        *,
        thread_id: str | None = None,
        options: RunOptions | None = None,
    ) -> AskResult:
        """Answer ``question`` about ``image`` (a path, bytes, a PIL image or a data URI).

        Args:
            image: the image.
            question: the question.
            thread_id: the checkpoint thread of this query (with a checkpointer; a fresh one if omitted).
            options: this query's run options (a forced crop request, a scripted answer, other limits or
                view); ``None`` runs it as the configuration says.

        Raises:
            ImageError: the image cannot be used (corrupt, not an image, too large).
            BackendError: the backend failed (timeout, HTTP error, invalid reply).
            ConfigError: an empty question, or options the configuration cannot serve.
        """
        started, t0 = datetime.now(UTC), time.perf_counter()
        inputs, run_config, label = self._prepare(image, question, thread_id, options)
        state = self.graph.invoke(inputs, run_config, context=options)
        return self._result(state, label, started, time.perf_counter() - t0)

    async def aask(
        self,
        image: ImageInput,
        question: str,
        *,
        thread_id: str | None = None,
        options: RunOptions | None = None,
    ) -> AskResult:
        """Async :meth:`ask` (same arguments)."""
        started, t0 = datetime.now(UTC), time.perf_counter()
        inputs, run_config, label = await asyncio.to_thread(
            self._prepare, image, question, thread_id, options
        )
        state = await self.graph.ainvoke(inputs, run_config, context=options)
        return self._result(state, label, started, time.perf_counter() - t0)

    def resume(self, thread_id: str, *, options: RunOptions | None = None) -> AskResult:
        """Finish a query that stopped part-way (e.g. the backend failed), from its last checkpoint.

        Steps already done (the view, crops served, model turns) are not repeated. Needs a checkpointer,
        and an image store that still holds the query's images (``ImageStore(root=...)`` across processes).

        The query keeps the round limit and budget it started under (they are in its checkpointed state), but
        LangGraph does not checkpoint a run's context: pass the query's ``options`` again if it had a scripted
        answer, or else the remaining turns ask the backend. (A forced crop request is the first turn and
        never calls the backend, so it is already done by the time a query can stop.)

        Args:
            thread_id: the query's checkpoint thread.
            options: the run options the query was started with, if any.

        Raises:
            ConfigError: no checkpointer, or no query under ``thread_id``.
        """
        if self.checkpointer is None:
            raise ConfigError("resume() needs an agent created with a checkpointer")
        run_config: dict[str, Any] = {"configurable": {"thread_id": thread_id}}
        snapshot = self.graph.get_state(run_config)
        if not snapshot.values:
            raise ConfigError(f"no query was checkpointed under thread_id {thread_id!r}")
        run_config["recursion_limit"] = self._recursion_limit(snapshot.values.get("max_rounds"))
        started, t0 = datetime.now(UTC), time.perf_counter()
        state = self.graph.invoke(None, run_config, context=options) if snapshot.next else snapshot.values
        source = self.store.source(state["source"]["id"])
        return self._result(state, source.label, started, time.perf_counter() - t0)

    def stream(
        self,
        image: ImageInput,
        question: str,
        *,
        thread_id: str | None = None,
        options: RunOptions | None = None,
        tokens: bool = True,
    ) -> Iterator[AgentEvent]:
        """Run a query and yield its events as they happen, ending with a ``result`` event.

        Arguments as :meth:`ask`, and ``tokens``: stream each model turn's text as ``token`` events while
        it is generated, where the backend can (:class:`~awares_agent.backends.base.StreamingChatBackend`:
        the OpenAI-compatible and transformers backends); a ``model`` event follows each turn either way.
        A ``model`` event's ``scripted`` is true for a turn the run options made (a forced crop request, a
        scripted answer) rather than the backend.
        """
        started, t0 = datetime.now(UTC), time.perf_counter()
        options = _streamed(options, tokens)
        inputs, run_config, label = self._prepare(image, question, thread_id, options)
        state: dict[str, Any] = {}
        stream = self.graph.stream(inputs, run_config, context=options, stream_mode=["custom", "values"])
        for mode, payload in stream:
            if mode == "custom":
                yield AgentEvent(type=payload["type"], data=payload)
            else:
                state = payload
        result = self._result(state, label, started, time.perf_counter() - t0)
        yield AgentEvent(type="result", result=result)

    async def astream(
        self,
        image: ImageInput,
        question: str,
        *,
        thread_id: str | None = None,
        options: RunOptions | None = None,
        tokens: bool = True,
    ) -> AsyncIterator[AgentEvent]:
        """Async :meth:`stream` (same arguments)."""
        started, t0 = datetime.now(UTC), time.perf_counter()
        options = _streamed(options, tokens)
        inputs, run_config, label = await asyncio.to_thread(
            self._prepare, image, question, thread_id, options
        )
        state: dict[str, Any] = {}
        stream = self.graph.astream(inputs, run_config, context=options, stream_mode=["custom", "values"])
        async for mode, payload in stream:
            if mode == "custom":
                yield AgentEvent(type=payload["type"], data=payload)
            else:
                state = payload
        yield AgentEvent(type="result", result=self._result(state, label, started, time.perf_counter() - t0))

    # --- many queries --------------------------------------------------------------------------------

    def ask_many(
        self,
        queries: Iterable[Query],
        *,
        max_concurrency: int = 8,
        return_exceptions: bool = False,
        options: RunOptions | None = None,
    ) -> list[AskResult | AwaresError]:
        """Answer many ``(image, question)`` pairs concurrently (threads), results in input order.

        Args:
            queries: ``(image, question)`` pairs.
            max_concurrency: queries in flight at once.
            return_exceptions: put an :class:`AwaresError` in a failed query's place instead of raising the
                first one (the other queries still complete either way).
            options: run options for every query (see :meth:`ask`); ``None`` runs them as configured.
        """
        items = list(queries)
        with ThreadPoolExecutor(max_workers=max(1, max_concurrency)) as pool:
            futures = [pool.submit(self.ask, image, question, options=options) for image, question in items]
            return self._gather([f.exception() or f.result() for f in futures], return_exceptions)

    async def aask_many(
        self,
        queries: Iterable[Query],
        *,
        max_concurrency: int = 8,
        return_exceptions: bool = False,
        options: RunOptions | None = None,
    ) -> list[AskResult | AwaresError]:
        """Async :meth:`ask_many` (same arguments): at most ``max_concurrency`` queries in flight."""
        gate = asyncio.Semaphore(max(1, max_concurrency))

        async def one(image: ImageInput, question: str) -> AskResult:
            async with gate:
                return await self.aask(image, question, options=options)

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
        self, image: ImageInput, question: str, thread_id: str | None, options: RunOptions | None
    ) -> tuple[dict[str, Any], dict[str, Any], str]:
        if not isinstance(question, str) or not question.strip():
            raise ConfigError("the question must be a non-empty string")
        if options is not None and not isinstance(options, RunOptions):
            raise ConfigError(
                f"options must be a RunOptions (awares_agent.graphs.context), got a {type(options).__name__}"
            )
        source = self.store.add(image)
        inputs = {
            # A question read from argv or a file may carry lone surrogates (undecodable bytes): they could
            # not be sent to any server nor written to the trajectory.
            "question": valid_text(question.strip())[0],
            "source": {"id": source.id, "width": source.width, "height": source.height},
        }
        rounds = options.max_rounds if options is not None else None
        run_config: dict[str, Any] = {"recursion_limit": self._recursion_limit(rounds)}
        if self.checkpointer is not None:
            run_config["configurable"] = {"thread_id": thread_id or uuid.uuid4().hex}
        return inputs, run_config, source.label

    def _recursion_limit(self, max_rounds: int | None = None) -> int:
        # Each correction or crop round is two graph steps; leave room for all of them.
        rounds = self.config.max_rounds if max_rounds is None else max_rounds
        return 10 + 4 * (rounds + self.config.max_corrections)

    def _settings(self) -> AgentSettings:
        """The settings every trajectory of this agent records (its prompt preset resolved for its model)."""
        config = self.config
        custom = config.system_prompt or None  # as the graph reads it: an empty prompt is none
        preset = resolve_preset(
            config.system_prompt_preset, protocol=config.protocol, model_name=self.backend.model_name
        )
        return AgentSettings(
            protocol=config.protocol,
            crop_set=crop_set(config.crop_set).key,
            system_prompt_preset=None if custom is not None else preset,
            system_prompt=custom,
            keep_tools=config.keep_tools,
        )

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
        """Build the :class:`Trajectory` for a finished graph state (e.g. one read back from a checkpoint).

        The visual tokens are the graph's own counts (made as it sent each image); only their sum, the
        ratios and the pixel formula are worked out here.
        """
        src, view = state["source"], state["view"]
        crops = [CropRecord.model_validate(c) for c in state.get("crops", [])]
        # A checkpoint written before the state named its token rule: the rule the graph would have used.
        rule = state.get("token_rule") or backend_token_rule(self.config.token_rule, self.backend).name
        cost = TokenCost.counted(
            rule,
            full_tokens=state["full_tokens"],
            view_tokens=state["view_tokens"],
            crop_tokens=[c.tokens for c in crops],
            pixel_rtr=pixel_rtr(
                (src["width"], src["height"]),
                (view["width"], view["height"]),
                [(c.width, c.height) for c in crops],
            ),
        )
        usage = state.get("usage") or {}
        extra = {"created_at": started} if started is not None else {}
        return Trajectory(
            question=state["question"],
            image=ImageRecord(source=valid_text(source_label)[0] if source_label else source_label, **src),
            view=ImageRecord(**view),
            model=self.backend.model_name,
            backend=type(self.backend).__name__,
            settings=self.settings,
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
            # The budget the query ran under (its run options may have changed the configuration's).
            max_rtr=state.get("max_rtr", self.config.max_rtr),
            latency_s=latency_s,
            **extra,
        )
