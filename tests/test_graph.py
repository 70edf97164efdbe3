"""Paths through the AwaRes graph, driven by a scripted in-process backend.

Each test builds the graph with its factory, compiled fresh with an in-memory checkpointer, and runs one
query on a real image through real LangGraph; the :class:`~scripted_backend.ScriptedBackend` stands in only
for the model's replies and records every request, so a test asserts both what the graph did (its final
state) and what it sent the model. The OpenAI adapter's own wire format is tested against the loopback
server in ``test_openai_backend.py``.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph.state import CompiledStateGraph
from PIL import Image, ImageChops, ImageDraw
from scripted_backend import ScriptedBackend

from awares_agent import AgentConfig, AwaResAgent, ImageStore
from awares_agent.errors import BackendTimeoutError
from awares_agent.graphs import build_graph
from awares_agent.messages import ChatReply, ToolCall, Usage
from awares_agent.tokens import QWEN2_5_VL
from awares_agent.tools.crop_sets import PaperCropSet

W, H = 1200, 900
#: The model name selects the visual-token rule, as a real server's model name does.
MODEL = "Qwen/Qwen2.5-VL-7B-Instruct"
THREAD = {"configurable": {"thread_id": "query-1"}}


@pytest.fixture
def page(tmp_path: Path) -> Path:
    """A 1200x900 page with small text in each quadrant."""
    img = Image.new("RGB", (W, H), "white")
    draw = ImageDraw.Draw(img)
    for i, (x, y) in enumerate([(50, 50), (700, 60), (60, 700), (800, 800)]):
        draw.text((x, y), f"LABEL-{i}", fill=(20 * i, 0, 0))
    draw.rectangle((560, 420, 640, 480), outline="blue")
    path = tmp_path / "page.png"
    img.save(path)
    return path


def reply(text: str) -> ChatReply:
    """A text turn, with the usage a server would report."""
    return ChatReply(text=text, usage=Usage(prompt_tokens=10, completion_tokens=5), finish_reason="stop")


def call(name: str, arguments: dict[str, Any], call_id: str = "call_0") -> ChatReply:
    """A turn holding one structured function call."""
    return ChatReply(
        tool_calls=[ToolCall(id=call_id, name=name, arguments=json.dumps(arguments))],
        usage=Usage(prompt_tokens=10, completion_tokens=5),
        finish_reason="tool_calls",
    )


def crops(*ids: str) -> ChatReply:
    """A structured ``get_crops`` call for ``ids``."""
    return call("get_crops", {"crops": list(ids)})


@dataclass
class Run:
    """One finished query: the graph, its final state, and the store holding its images."""

    graph: CompiledStateGraph
    state: dict[str, Any]
    store: ImageStore

    @property
    def region_ids(self) -> list[str]:
        """The crops served, in order."""
        return [c["region_id"] for c in self.state["crops"]]

    @property
    def error_kinds(self) -> list[str]:
        """The handled errors, in order."""
        return [e["kind"] for e in self.state["errors"]]

    @property
    def roles(self) -> list[str]:
        """The roles of the conversation the state holds."""
        return [m["role"] for m in self.state["messages"]]

    @property
    def rtr(self) -> float:
        """The retained token ratio the graph spent: the view once plus every crop, over the full image."""
        sent = self.state["view_tokens"] + sum(c["tokens"] for c in self.state["crops"])
        return sent / self.state["full_tokens"]


def compiled(backend: ScriptedBackend, **options: object) -> tuple[CompiledStateGraph, ImageStore]:
    """The graph built by its factory for ``options`` (AgentConfig fields), with an in-memory checkpointer."""
    store = ImageStore()
    config = AgentConfig.from_options(None, **options)
    return build_graph(backend, config, store=store, checkpointer=InMemorySaver()), store


def inputs(store: ImageStore, image: Path, question: str) -> dict[str, Any]:
    """The graph's input for one query: the question and the source image, added to the store."""
    source = store.add(image)
    return {"question": question, "source": {"id": source.id, "width": source.width, "height": source.height}}


def run(backend: ScriptedBackend, image: Path, question: str, **options: object) -> Run:
    """Run one query to the end (and check that it got there: nothing is left to run in its thread)."""
    graph, store = compiled(backend, **options)
    state = graph.invoke(inputs(store, image, question), THREAD)
    assert graph.get_state(THREAD).next == ()
    return Run(graph, state, store)


def test_direct_answer(page: Path) -> None:
    backend = ScriptedBackend(reply("LABEL-0"), model=MODEL)
    result = run(backend, page, "What does the top-left label say?")

    assert result.state["answer"] == "LABEL-0"
    assert result.state["crops"] == []
    (req,) = backend.requests
    assert req.roles == ["system", "user"]
    assert req.tools and req.tools[0].name == "get_crops"
    assert [p.kind for p in req.image_parts] == ["view"]
    (view,) = req.pixels()
    assert view.size == (W // 2, H // 2)
    assert result.roles == ["system", "user", "assistant"]
    assert result.state["errors"] == []
    # The graph counts tokens with the model's rule: the view once, and the full image as the denominator.
    assert result.state["view_tokens"] == QWEN2_5_VL.count(W // 2, H // 2)
    assert result.state["full_tokens"] == QWEN2_5_VL.count(W, H)
    assert result.rtr == pytest.approx(result.state["view_tokens"] / result.state["full_tokens"])
    assert result.state["usage"]["calls"] == 1 and result.state["usage"]["prompt_tokens"] == 10


def test_keep_tools_offers_the_tool_on_the_last_turn_and_refuses_a_call_there(page: Path) -> None:
    # What a model trained on whole json conversations saw: the tools block on every turn.
    backend = ScriptedBackend(crops("3"), crops("0"), reply("42"), model=MODEL)
    result = run(backend, page, "What is the total?", keep_tools=True)
    assert [r.tools[0].name if r.tools else None for r in backend.requests] == ["get_crops"] * 3
    assert result.region_ids == ["3"]  # the second request came after the last round: refused
    assert [e["kind"] for e in result.state["errors"]] == ["extra_tool_round"]
    assert result.state["answer"] == "42"
    # Every request extends the one before: the conversation is only appended to.
    for before, after in zip(backend.requests, backend.requests[1:], strict=False):
        assert after.messages[: len(before.messages)] == before.messages


def test_one_crop_round(page: Path) -> None:
    backend = ScriptedBackend(crops("3", "top-left"), reply("42"), model=MODEL)
    result = run(backend, page, "What is the total?")

    assert result.state["answer"] == "42"
    assert result.region_ids == ["3", "0"]
    regions = {r.id: r for r in PaperCropSet().regions(W, H)}
    assert [tuple(c["box"]) for c in result.state["crops"]] == [regions["3"].box, regions["0"].box]
    second = backend.requests[1]
    assert second.roles == ["system", "user", "assistant", "tool", "user"]
    assert second.messages[3].tool_call_id == "call_0"
    assert second.tools is None  # the last round is spent: no tools offered
    # The crops are the original's pixels in the regions' boxes, at full resolution.
    assert [p.kind for p in second.image_parts] == ["view", "crop", "crop"]
    view, crop3, crop0 = second.pixels()
    original = Image.open(page).convert("RGB")
    assert ImageChops.difference(crop3.convert("RGB"), original.crop(regions["3"].box)).getbbox() is None
    assert ImageChops.difference(crop0.convert("RGB"), original.crop(regions["0"].box)).getbbox() is None
    assert view.size == (W // 2, H // 2)
    assert result.state["rounds"] == 1 and result.state["usage"]["calls"] == 2
    assert [c["tokens"] for c in result.state["crops"]] == [
        QWEN2_5_VL.count(regions["3"].width, regions["3"].height),
        QWEN2_5_VL.count(regions["0"].width, regions["0"].height),
    ]


def test_hermes_text_call_gets_crops_in_a_user_turn(page: Path) -> None:
    text_call = '<tool_call>\n{"name": "get_crops", "arguments": {"crops": ["center"]}}\n</tool_call>'
    backend = ScriptedBackend(reply(text_call), reply("a box"))
    result = run(backend, page, "What is in the middle?")

    assert result.state["answer"] == "a box" and result.region_ids == ["4"]
    assert backend.requests[1].roles == ["system", "user", "assistant", "user"]


def test_awares_text_protocol(page: Path) -> None:
    backend = ScriptedBackend(reply("GET_CROPS: ['0', '5']"), reply("LABEL-0"))
    result = run(backend, page, "Top-left label?", protocol="awares-text")

    first, second = backend.requests
    assert first.tools is None and "GET_CROPS" in first.messages[0].text
    assert result.region_ids == ["0", "5"]
    crops_turn = second.messages[-1]
    assert crops_turn.role == "user"
    assert [(p.type, getattr(p, "kind", None)) for p in crops_turn.content] == [
        ("image", "crop"),
        ("image", "crop"),
    ]  # images only, as released


def test_invalid_call_then_recovery(page: Path) -> None:
    backend = ScriptedBackend(crops("9"), crops("1"), reply("LABEL-1"))
    result = run(backend, page, "Top-right label?")

    assert result.state["answer"] == "LABEL-1"
    assert result.region_ids == ["1"]
    (error,) = result.state["errors"]
    assert error["kind"] == "invalid_tool_call" and "'9'" in error["message"]
    feedback = backend.requests[1].messages[-1]
    assert feedback.role == "tool" and "Valid crops are" in feedback.text
    assert backend.requests[1].tools is not None  # it may still crop after correcting itself


def test_invalid_twice_forces_an_answer(page: Path) -> None:
    backend = ScriptedBackend(
        reply("<tool_call>{not json</tool_call>"), call("zoom", {"box": [0, 0, 1, 1]}), reply("no idea")
    )
    result = run(backend, page, "What is it?")

    assert result.state["answer"] == "no idea" and result.state["crops"] == []
    assert result.error_kinds == ["invalid_tool_call", "unknown_tool"]
    last = backend.requests[2]
    assert last.tools is None
    assert "Answer the question now" in last.messages[-1].text


def test_tool_call_in_the_second_turn_is_refused(page: Path) -> None:
    backend = ScriptedBackend(crops("0"), crops("1"), reply("LABEL-0"))
    result = run(backend, page, "Label?")

    assert result.state["answer"] == "LABEL-0"
    assert result.region_ids == ["0"]
    assert result.error_kinds == ["extra_tool_round"]
    # The refused structured call is still answered by a tool message, as OpenAI-style servers require.
    assert backend.requests[2].roles[-2:] == ["tool", "user"]


def test_more_rounds_by_config(page: Path) -> None:
    backend = ScriptedBackend(crops("0"), crops("3"), reply("both"))
    result = run(backend, page, "Labels?", max_rounds=2)

    assert result.state["answer"] == "both"
    assert [(c["round"], c["region_id"]) for c in result.state["crops"]] == [(1, "0"), (2, "3")]
    assert result.state["rounds"] == 2 and result.state["errors"] == []


def test_no_rounds_means_no_tools(page: Path) -> None:
    backend = ScriptedBackend(reply("low-res answer"))
    result = run(backend, page, "Anything?", max_rounds=0)
    assert result.state["answer"] == "low-res answer"
    assert backend.requests[0].tools is None


def test_budget_withholds_crops_that_do_not_fit(page: Path) -> None:
    # Pure pixel accounting: the view is 0.25, a quadrant 0.25, a half 0.5.
    backend = ScriptedBackend(crops("0", "5"), reply("ok"))
    result = run(backend, page, "Label?", max_rtr=0.5, token_rule="pixels:1")

    assert result.region_ids == ["0"]
    assert result.rtr == pytest.approx(0.5)
    (error,) = result.state["errors"]
    assert error["kind"] == "budget" and "5" in error["message"]
    assert "withheld" in backend.requests[1].messages[-1].content[-1].text


def test_budget_spent_forces_an_answer(page: Path) -> None:
    backend = ScriptedBackend(crops("all"), reply("guess"))
    result = run(backend, page, "Label?", max_rtr=0.4, token_rule="pixels:1")

    assert result.state["answer"] == "guess" and result.state["crops"] == []
    assert result.rtr == pytest.approx(0.25)
    assert result.error_kinds == ["budget"]
    assert backend.requests[1].tools is None


def test_empty_replies_end_without_an_answer(page: Path) -> None:
    backend = ScriptedBackend(reply(""), reply("  "), ChatReply())
    result = run(backend, page, "Label?")

    assert result.state["answer"] is None
    assert result.error_kinds == ["empty_reply", "empty_reply", "no_answer"]
    assert len(backend.requests) == 3


@pytest.mark.parametrize("asynchronous", [False, True], ids=["invoke", "ainvoke"])
def test_invoke_and_ainvoke_take_the_same_path(page: Path, asynchronous: bool) -> None:
    """Every model turn, the forced answer included, goes through the call style of the run."""
    backend = ScriptedBackend(crops("9"), call("zoom", {}), reply("no idea"))
    graph, store = compiled(backend)
    query = inputs(store, page, "What is it?")
    state = asyncio.run(graph.ainvoke(query, THREAD)) if asynchronous else graph.invoke(query, THREAD)

    assert state["answer"] == "no idea"
    assert [e["kind"] for e in state["errors"]] == ["invalid_tool_call", "unknown_tool"]
    assert [r.asynchronous for r in backend.requests] == [asynchronous] * 3
    assert backend.requests[2].tools is None


def test_a_failed_turn_resumes_from_its_checkpoint(page: Path) -> None:
    """A backend failure leaves the run at ``decide``; resuming repeats no step that had finished."""
    backend = ScriptedBackend(crops("3"), BackendTimeoutError("the server is slow"), reply("12"))
    graph, store = compiled(backend)
    with pytest.raises(BackendTimeoutError, match="the server is slow"):
        graph.invoke(inputs(store, page, "Which exit?"), THREAD)

    stopped = graph.get_state(THREAD)
    assert stopped.next == ("decide",)
    assert [c["region_id"] for c in stopped.values["crops"]] == ["3"]
    state = graph.invoke(None, THREAD)

    assert state["answer"] == "12" and [c["region_id"] for c in state["crops"]] == ["3"]
    assert len(backend.requests) == 3  # the crop turn was not asked again
    assert backend.requests[2].messages == backend.requests[1].messages  # the failed turn, sent again
    assert state["usage"]["calls"] == 2  # the failed call reported nothing


@pytest.mark.parametrize("script", [["LABEL-0"], ["crops", "42"]], ids=["direct", "one-crop-round"])
def test_the_agent_reports_the_graphs_accounting(page: Path, script: list[str]) -> None:
    """The agent's result and trajectory are the graph's state: messages, tokens, usage and calls."""
    backend = ScriptedBackend(
        *(crops("3", "top-left") if s == "crops" else reply(s) for s in script), model=MODEL
    )
    result = AwaResAgent(backend).ask(page, "What is the total?")

    t = result.trajectory
    assert result.answer == script[-1]
    assert len(t.messages) == 3 + 3 * (len(script) - 1)  # system, user, answer (+ call, ack, crops)
    assert t.cost.view_tokens == QWEN2_5_VL.count(W // 2, H // 2)
    assert t.cost.full_tokens == QWEN2_5_VL.count(W, H)
    assert t.cost.sent_tokens == t.cost.view_tokens + sum(c.tokens for c in t.crops)
    assert result.visual_tokens == t.cost.sent_tokens
    assert result.rtr == pytest.approx(t.cost.sent_tokens / t.cost.full_tokens)
    assert t.calls == len(script) and t.usage.prompt_tokens == 10 * len(script)
    assert t.errors == [] and t.rounds == len(script) - 1
    assert [c.region_id for c in t.crops] == (["3", "0"] if len(script) == 2 else [])


def test_graph_is_drawable_and_has_the_four_nodes() -> None:
    graph = build_graph(ScriptedBackend(), store=ImageStore())
    nodes = set(graph.get_graph().nodes)
    assert {"look", "decide", "crop", "answer"} <= nodes
    mermaid = graph.get_graph().draw_mermaid()
    assert "decide" in mermaid and "crop" in mermaid
