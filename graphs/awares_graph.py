"""The AwaRes loop as a LangGraph state machine: look -> decide -> (crop -> decide)* -> answer.

* ``look``: make the low-resolution view, count its tokens, write the opening messages.
* ``decide``: one model turn; the protocol reads it as an answer, a crop request, or an invalid turn.
  An invalid turn is shown back to the model (``decide`` again) up to ``max_corrections`` times.
* ``crop``: serve the requested regions at full resolution, within the optional RTR budget.
* ``answer``: finish; if the model was cut off (rounds exhausted, budget spent, invalid calls), ask it once
  more for an answer with no tools.

Nodes are plain functions of the state; the backend, image store and protocol are bound by the factory.
``decide`` and ``answer`` have sync and async forms, so the graph runs under ``invoke`` and ``ainvoke``.

The graph is compiled once per agent. Per-run choices (a forced first crop request, a scripted answer, other
limits or view) are its run context, :class:`~awares_agent.graphs.context.RunOptions`
(``graph.invoke(inputs, context=RunOptions(...))``); nodes read it through LangGraph's ``get_runtime``. No
context runs the query exactly as the configuration says.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from langchain_core.runnables import RunnableLambda
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.config import get_stream_writer
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.runtime import get_runtime

from awares_agent.backends.base import ChatBackend, StreamingChatBackend, TextSink
from awares_agent.config import AgentConfig
from awares_agent.errors import AwaresError, BackendResponseError, ConfigError
from awares_agent.graphs.context import FROM_CONFIG, RunOptions
from awares_agent.graphs.state import AwaresState, UsageInfo
from awares_agent.image_store import ImageStore
from awares_agent.messages import ChatMessage, ChatReply, TextPart, ToolSpec
from awares_agent.tokens import TokenRule, backend_token_rule
from awares_agent.tools.crop_sets import Region, crop_set
from awares_agent.tools.prompts import system_prompt_for
from awares_agent.tools.protocols import Decision, ToolProtocol, make_protocol
from awares_agent.trajectory import CropRecord, ErrorRecord
from awares_agent.untrusted import safe_text


def _dump(messages: list[ChatMessage]) -> list[dict[str, Any]]:
    return [m.model_dump(mode="json") for m in messages]


def _emit(event: dict[str, Any]) -> None:
    """Send a node event to ``stream_mode="custom"`` consumers (a no-op under plain ``invoke``)."""
    get_stream_writer()(event)


def run_options() -> RunOptions:
    """The current run's :class:`RunOptions` (the defaults when the run was given no context).

    Call it from inside a node of the graph.

    Raises:
        ConfigError: the run was given a context that is not a :class:`RunOptions` (or a dict of its fields).
    """
    context = get_runtime(RunOptions).context
    if context is None:
        return RunOptions()
    if not isinstance(context, RunOptions):
        raise ConfigError(
            f"the AwaRes graph's run context must be a RunOptions (awares_agent.graphs.context), got a "
            f"{type(context).__name__}"
        )
    return context


def _usage(reply: ChatReply) -> UsageInfo:
    return {
        "prompt_tokens": reply.usage.prompt_tokens,
        "completion_tokens": reply.usage.completion_tokens,
        "calls": 1,
        "backend_s": reply.latency_s,
    }


#: The longest excerpt of a model's output kept in an error record (the whole turn is in the messages).
MAX_ERROR_RAW_CHARS = 4000


def _error(round_no: int, kind: str, message: str, raw: str | None = None) -> dict[str, Any]:
    if raw is not None and len(raw) > MAX_ERROR_RAW_CHARS:
        raw = raw[:MAX_ERROR_RAW_CHARS] + f"... ({len(raw)} chars)"
    return ErrorRecord(round=round_no, kind=kind, message=message, raw=raw).model_dump(mode="json")  # type: ignore[arg-type]


def _checked(backend: ChatBackend, reply: object) -> tuple[ChatReply, list[tuple[str, str]]]:
    """The boundary rule for one model turn: a :class:`ChatReply`, valid UTF-8, credentials redacted.

    Returns:
        The cleaned reply and what was repaired, as ``(error kind, message)`` pairs.

    Raises:
        BackendResponseError: the backend returned something that is not a :class:`ChatReply`.
    """
    if not isinstance(reply, ChatReply):
        raise BackendResponseError(
            f"{type(backend).__name__} returned a {type(reply).__name__}, not a ChatReply; a backend's "
            f"complete() must return awares_agent.messages.ChatReply"
        )
    cleaned, repairs = reply.cleaned()
    return cleaned, list(repairs)


def _backend_failure(backend: ChatBackend, exc: Exception) -> AwaresError:
    """An exception a backend raised that is not one of ours, as a typed error (the original chained)."""
    detail = safe_text(str(exc))
    detail = detail if len(detail) <= 300 else detail[:300] + "..."
    return BackendResponseError(
        f"{type(backend).__name__} ({backend.model_name}) failed with {type(exc).__name__}: {detail}"
    )


class AwaresNodes:
    """The graph's nodes, bound to one backend, configuration and image store.

    Args:
        backend: the chat VLM.
        config: the agent configuration.
        store: where images live; the state holds only their ids.
    """

    def __init__(self, backend: ChatBackend, config: AgentConfig, store: ImageStore) -> None:
        self.backend = backend
        self.config = config
        self.store = store
        self.crop_set = crop_set(config.crop_set)
        self.protocol: ToolProtocol = make_protocol(config.protocol, self.crop_set)
        self.rule: TokenRule = backend_token_rule(config.token_rule, backend)
        self.system_prompt = system_prompt_for(
            self.protocol,
            preset=config.system_prompt_preset,
            model_name=backend.model_name,
            custom=config.system_prompt or None,
        )

    # --- look --------------------------------------------------------------------------------------------

    def look(self, state: AwaresState) -> dict[str, Any]:
        options = run_options()
        max_rounds = self.config.max_rounds if options.max_rounds is None else options.max_rounds
        max_rtr = self.config.max_rtr if options.max_rtr is FROM_CONFIG else options.max_rtr
        if options.crops is not None:
            self._check_forced(options.crops, max_rounds)
        src = state["source"]
        view = self.store.view(src["id"], options.view or self.config.view)
        view_tokens = self.rule.count(view.width, view.height)
        full_tokens = self.rule.count(src["width"], src["height"])
        messages = [
            ChatMessage.text_message("system", self.system_prompt),
            ChatMessage(role="user", content=[view, TextPart(text=state["question"])]),
        ]
        info = {"id": view.image_id, "width": view.width, "height": view.height}
        _emit({"type": "view", "view": info, "view_tokens": view_tokens, "full_tokens": full_tokens})
        return {
            "view": info,
            "token_rule": self.rule.name,
            "view_tokens": view_tokens,
            "full_tokens": full_tokens,
            "messages": _dump(messages),
            # The limits this query runs under, in its state: a resumed thread keeps them (the run context
            # is not checkpointed), and the trajectory records the budget that was in force.
            "max_rounds": max_rounds,
            "max_rtr": max_rtr,
            "rounds": 0,
            "corrections": 0,
            "force": None,
            "answer": None,
            "decision": None,
        }

    # --- decide ------------------------------------------------------------------------------------------

    def _max_rounds(self, state: AwaresState) -> int:
        # A checkpoint written before the limits were kept in the state runs under the configuration's.
        return state.get("max_rounds", self.config.max_rounds)

    def _request(self, state: AwaresState) -> tuple[list[ChatMessage], list[ToolSpec] | None]:
        messages = [ChatMessage.model_validate(m) for m in state["messages"]]
        may_crop = not state.get("force") and state["rounds"] < self._max_rounds(state)
        return messages, self.protocol.tools() if may_crop or self.config.keep_tools else None

    # --- turns that are not the model's (run options) ----------------------------------------------

    def forced_reply(self, crops: Sequence[str]) -> ChatReply:
        """The model turn that requests ``crops``, written as the protocol's own call
        (:meth:`~awares_agent.tools.protocols.ToolProtocol.call_reply`).

        Args:
            crops: region ids or names, as given in :attr:`RunOptions.crops`.
        """
        return self.protocol.call_reply(crops).model_copy(update={"model": self.backend.model_name})

    def _check_forced(self, crops: Sequence[str], max_rounds: int) -> None:
        """Refuse forced crops the run cannot serve, before the query starts."""
        if max_rounds < 1:
            raise ConfigError(
                f"RunOptions.crops {list(crops)} is a crop round, but this run allows none (max_rounds 0); "
                "give it max_rounds >= 1"
            )
        decision = self.protocol.parse(self.forced_reply(crops))
        if decision.kind != "crop":
            raise ConfigError(f"RunOptions.crops {list(crops)}: {decision.error}")

    def _scripted(self, answer: str) -> tuple[ChatReply, list[tuple[str, str]], Decision]:
        """The scripted answer as a model turn: cleaned like any turn (it is stored), read as the answer."""
        reply, repairs = ChatReply(text=answer, model=self.backend.model_name, finish_reason="stop").cleaned()
        # An answer, whatever its text: a label's answer that happens to read like a call is still the answer.
        decision = Decision(kind="answer", answer=reply.text.strip(), raw=reply.text)
        return reply, list(repairs), decision

    def _not_model_turn(self, state: AwaresState) -> dict[str, Any] | None:
        """The update of a decide turn that the run options make (no backend call), or ``None``."""
        options = run_options()
        if options.crops is not None and state.get("decision") is None:  # the first turn of the query
            reply, repairs = self.forced_reply(options.crops).cleaned()
            return self._after_decide(state, reply, list(repairs), scripted=True)
        if options.answer is not None:
            reply, repairs, decision = self._scripted(options.answer)
            return self._after_decide(state, reply, repairs, decision=decision, scripted=True)
        return None

    def _streaming(self, state: AwaresState) -> tuple[StreamingChatBackend, TextSink] | None:
        """The backend and ``on_text`` sink of a turn whose text is streamed as ``token`` events, or ``None``
        (the run does not stream text, or the backend cannot)."""
        if not run_options().stream_text or not isinstance(self.backend, StreamingChatBackend):
            return None
        writer = get_stream_writer()
        round_no = state["rounds"] + 1
        return self.backend, lambda piece: writer({"type": "token", "text": piece, "round": round_no})

    def _call(
        self, state: AwaresState, messages: list[ChatMessage], tools: list[ToolSpec] | None
    ) -> tuple[ChatReply, list[tuple[str, str]]]:
        """One backend turn under the boundary rule: only typed errors escape, the reply is cleaned."""
        streaming = self._streaming(state)
        try:
            if streaming is not None:
                backend, on_text = streaming
                reply = backend.complete_stream(messages, images=self.store, tools=tools, on_text=on_text)
            else:
                reply = self.backend.complete(messages, images=self.store, tools=tools)
        except AwaresError:
            raise
        except Exception as exc:
            raise _backend_failure(self.backend, exc) from exc
        return _checked(self.backend, reply)

    async def _acall(
        self, state: AwaresState, messages: list[ChatMessage], tools: list[ToolSpec] | None
    ) -> tuple[ChatReply, list[tuple[str, str]]]:
        """Async :meth:`_call`."""
        streaming = self._streaming(state)
        try:
            if streaming is not None:
                backend, on_text = streaming
                reply = await backend.acomplete_stream(
                    messages, images=self.store, tools=tools, on_text=on_text
                )
            else:
                reply = await self.backend.acomplete(messages, images=self.store, tools=tools)
        except AwaresError:
            raise
        except Exception as exc:
            raise _backend_failure(self.backend, exc) from exc
        return _checked(self.backend, reply)

    def decide(self, state: AwaresState) -> dict[str, Any]:
        update = self._not_model_turn(state)
        if update is not None:
            return update
        messages, tools = self._request(state)
        return self._after_decide(state, *self._call(state, messages, tools))

    async def adecide(self, state: AwaresState) -> dict[str, Any]:
        update = self._not_model_turn(state)
        if update is not None:
            return update
        messages, tools = self._request(state)
        return self._after_decide(state, *await self._acall(state, messages, tools))

    def _after_decide(
        self,
        state: AwaresState,
        reply: ChatReply,
        repairs: list[tuple[str, str]],
        *,
        decision: Decision | None = None,
        scripted: bool = False,
    ) -> dict[str, Any]:
        """The update of one model turn (``scripted``: made by the run options, so no backend usage)."""
        decision = decision or self.protocol.parse(reply)
        round_no = state["rounds"] + 1
        messages = [self.protocol.assistant_message(reply)]
        update: dict[str, Any] = {"decision": decision.model_dump(mode="json")}
        if not scripted:
            update["usage"] = _usage(reply)
        errors = [_error(round_no, kind, message) for kind, message in repairs]
        if decision.kind == "answer":
            update["answer"] = decision.answer
        elif decision.kind == "crop" and state["rounds"] >= self._max_rounds(state):
            reason = "No more crops can be requested for this question."
            errors.append(_error(round_no, "extra_tool_round", reason, decision.raw))
            messages += self.protocol.refusal_messages(decision, reason)
            update["force"] = "extra_tool_round"
        elif decision.kind == "invalid":
            errors.append(
                _error(
                    round_no, decision.error_kind or "invalid_tool_call", decision.error or "", decision.raw
                )
            )
            if state["corrections"] < self.config.max_corrections:
                messages += self.protocol.feedback_messages(decision)
                update["corrections"] = state["corrections"] + 1
            else:
                messages += self.protocol.refusal_messages(decision, decision.error or "")
                update["force"] = "invalid"
        update["messages"] = _dump(messages)
        update["errors"] = errors
        _emit(
            {
                "type": "model",
                "kind": decision.kind,
                "text": reply.text,
                "crops": decision.crops,
                "error": decision.error,
                "latency_s": reply.latency_s,
                "image_tokens": reply.image_tokens,
                "scripted": scripted,
            }
        )
        return update

    # --- crop --------------------------------------------------------------------------------------------

    def crop(self, state: AwaresState) -> dict[str, Any]:
        decision = Decision.model_validate(state["decision"])
        src = state["source"]
        round_no = state["rounds"] + 1
        full = state["full_tokens"]
        sent = state["view_tokens"] + sum(c["tokens"] for c in state.get("crops", []))
        # The budget the query started under (see look); a checkpoint from before that takes the config's.
        budget = state.get("max_rtr", self.config.max_rtr)
        accepted: list[tuple[Region, int]] = []
        withheld: list[Region] = []
        for rid in decision.crops:
            region = self.crop_set.region(rid, src["width"], src["height"])
            tokens = self.rule.count(region.width, region.height)
            if budget is not None and (sent + tokens) / full > budget + 1e-9:
                withheld.append(region)
                continue
            sent += tokens
            accepted.append((region, tokens))

        errors = []
        if withheld:
            ids = ", ".join(r.id for r in withheld)
            reason = f"Crops {ids} were withheld: they would exceed this question's visual-token budget."
            errors.append(_error(round_no, "budget", reason))
        if not accepted:
            reason = "The visual-token budget for this question does not allow these crops."
            return {
                "messages": _dump(self.protocol.refusal_messages(decision, reason)),
                "errors": errors,
                "force": "budget",
            }

        served = []
        records = []
        for region, tokens in accepted:
            part = self.store.crop(src["id"], region.box, label=f"crop {region.id} ({region.name})")
            served.append((region.id, region.name, part))
            records.append(
                CropRecord(
                    round=round_no,
                    region_id=region.id,
                    name=region.name,
                    box=region.box,
                    image_id=part.image_id,
                    width=part.width,
                    height=part.height,
                    tokens=tokens,
                ).model_dump(mode="json")
            )
        note = errors[0]["message"] if errors else None
        _emit({"type": "crops", "crops": records, "withheld": [r.id for r in withheld]})
        return {
            "messages": _dump(self.protocol.crops_messages(decision, served, note=note)),
            "crops": records,
            "errors": errors,
            "rounds": round_no,
        }

    # --- answer ------------------------------------------------------------------------------------------

    def answer(self, state: AwaresState) -> dict[str, Any]:
        if not self._must_ask(state):
            return self._done(state)
        scripted = self._scripted_final(state)
        if scripted is not None:
            return scripted
        messages, tools = self._request(state)  # tools: only with keep_tools (a call is then refused)
        return self._final(state, *self._call(state, messages, tools))

    async def aanswer(self, state: AwaresState) -> dict[str, Any]:
        if not self._must_ask(state):
            return self._done(state)
        scripted = self._scripted_final(state)
        if scripted is not None:
            return scripted
        messages, tools = self._request(state)
        return self._final(state, *await self._acall(state, messages, tools))

    def _scripted_final(self, state: AwaresState) -> dict[str, Any] | None:
        """The update of an answer turn that the run options script (no backend call), or ``None``."""
        answer = run_options().answer
        if answer is None:
            return None
        reply, repairs, decision = self._scripted(answer)
        return self._final(state, reply, repairs, decision=decision, scripted=True)

    @staticmethod
    def _must_ask(state: AwaresState) -> bool:
        return state.get("answer") is None and bool(state.get("force"))

    def _done(self, state: AwaresState) -> dict[str, Any]:
        _emit({"type": "answer", "answer": state.get("answer")})
        return {}

    def _final(
        self,
        state: AwaresState,
        reply: ChatReply,
        repairs: list[tuple[str, str]],
        *,
        decision: Decision | None = None,
        scripted: bool = False,
    ) -> dict[str, Any]:
        decision = decision or self.protocol.parse(reply)
        round_no = state["rounds"] + 1
        update: dict[str, Any] = {
            "messages": _dump([self.protocol.assistant_message(reply)]),
            "decision": decision.model_dump(mode="json"),
            "errors": [_error(round_no, kind, message) for kind, message in repairs],
        }
        if not scripted:
            update["usage"] = _usage(reply)
        if decision.kind == "answer":
            update["answer"] = decision.answer
        else:
            message = "The model gave no answer when asked to answer without crops."
            update["errors"].append(_error(round_no, "no_answer", message, reply.text))
        _emit({"type": "answer", "answer": update.get("answer")})
        return update


def route_after_decide(state: AwaresState) -> Literal["decide", "crop", "answer"]:
    """Where a model turn leads: a valid request to crop, an invalid one back to decide, else answer."""
    if state.get("answer") is not None or state.get("force"):
        return "answer"
    decision = state.get("decision") or {}
    return "crop" if decision.get("kind") == "crop" else "decide"


def route_after_crop(state: AwaresState) -> Literal["decide", "answer"]:
    """After serving crops the model decides again; if none could be served it must answer."""
    return "answer" if state.get("force") else "decide"


def build_graph(
    backend: ChatBackend,
    config: AgentConfig | None = None,
    *,
    store: ImageStore,
    checkpointer: BaseCheckpointSaver | None = None,
) -> CompiledStateGraph:
    """Build and compile the AwaRes graph.

    Args:
        backend: the chat VLM, any :class:`~awares_agent.backends.base.ChatBackend`.
        config: agent configuration (paper defaults if omitted).
        store: the image store holding the source image named in the input state.
        checkpointer: any LangGraph checkpointer (``InMemorySaver``, ``SqliteSaver``...); runs then need a
            ``thread_id`` in their config.

    Returns:
        A compiled graph. Its input is ``{"question": str, "source": {"id", "width", "height"}}``; its run
        context (``context=`` of ``invoke``/``ainvoke``/``stream``) an optional
        :class:`~awares_agent.graphs.context.RunOptions`.
    """
    nodes = AwaresNodes(backend, config or AgentConfig(), store)
    graph = StateGraph(AwaresState, context_schema=RunOptions)
    graph.add_node("look", nodes.look)
    graph.add_node("decide", RunnableLambda(nodes.decide, afunc=nodes.adecide, name="decide"))
    graph.add_node("crop", nodes.crop)
    graph.add_node("answer", RunnableLambda(nodes.answer, afunc=nodes.aanswer, name="answer"))
    graph.add_edge(START, "look")
    graph.add_edge("look", "decide")
    graph.add_conditional_edges("decide", route_after_decide, ["decide", "crop", "answer"])
    graph.add_conditional_edges("crop", route_after_crop, ["decide", "answer"])
    graph.add_edge("answer", END)
    return graph.compile(checkpointer=checkpointer, name="awares")
