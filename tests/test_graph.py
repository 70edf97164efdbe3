"""Paths through the AwaRes graph, driven by a scripted model on a real loopback server."""

from __future__ import annotations

from pathlib import Path

import pytest
from awares_agent.graphs import build_graph
from awares_agent.tools.crop_sets import PaperCropSet
from chat_server import Completion, ScriptedChatServer
from PIL import Image, ImageChops, ImageDraw

from awares_agent import AwaResAgent, OpenAIBackend

W, H = 1200, 900


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


def make_agent(server: ScriptedChatServer, **options: object) -> AwaResAgent:
    backend = OpenAIBackend("Qwen/Qwen2.5-VL-7B-Instruct", base_url=server.base_url, max_retries=0)
    return AwaResAgent(backend, **options)


def roles(request) -> list[str]:
    return [m["role"] for m in request.messages]


def test_direct_answer(chat_server: ScriptedChatServer, page: Path) -> None:
    chat_server.enqueue(Completion(text="LABEL-0"))
    result = make_agent(chat_server).ask(page, "What does the top-left label say?")

    assert result.answer == "LABEL-0"
    assert result.crops == []
    req = chat_server.chat_requests[0]
    assert roles(req) == ["system", "user"]
    assert req.tools and req.tools[0]["function"]["name"] == "get_crops"
    (view,) = req.images()
    assert view.size == (W // 2, H // 2)
    t = result.trajectory
    assert [m.role for m in t.messages] == ["system", "user", "assistant"]
    assert t.cost.view_tokens == result.visual_tokens and t.crops == [] and t.errors == []
    assert result.rtr == pytest.approx(t.cost.view_tokens / t.cost.full_tokens)
    assert t.calls == 1 and t.usage.prompt_tokens == 10


def test_one_crop_round(chat_server: ScriptedChatServer, page: Path) -> None:
    chat_server.enqueue(
        Completion(tool_calls=[("get_crops", {"crops": ["3", "top-left"]})]), Completion(text="42")
    )
    result = make_agent(chat_server).ask(page, "What is the total?")

    assert result.answer == "42"
    assert [c.region_id for c in result.crops] == ["3", "0"]
    regions = {r.id: r for r in PaperCropSet().regions(W, H)}
    assert [c.box for c in result.crops] == [regions["3"].box, regions["0"].box]
    second = chat_server.chat_requests[1]
    assert roles(second) == ["system", "user", "assistant", "tool", "user"]
    assert second.messages[3]["tool_call_id"] == "call_0"
    assert second.tools is None  # the last round is spent: no tools offered
    # The crops arrive at full resolution, pixel for pixel.
    view, crop3, crop0 = second.images()
    original = Image.open(page).convert("RGB")
    assert ImageChops.difference(crop3, original.crop(regions["3"].box)).getbbox() is None
    assert ImageChops.difference(crop0, original.crop(regions["0"].box)).getbbox() is None
    assert view.size == (W // 2, H // 2)
    t = result.trajectory
    assert t.rounds == 1 and t.calls == 2
    assert t.cost.sent_tokens == t.cost.view_tokens + sum(c.tokens for c in t.crops)


def test_hermes_text_call_gets_crops_in_a_user_turn(chat_server: ScriptedChatServer, page: Path) -> None:
    call = '<tool_call>\n{"name": "get_crops", "arguments": {"crops": ["center"]}}\n</tool_call>'
    chat_server.enqueue(Completion(text=call), Completion(text="a box"))
    result = make_agent(chat_server).ask(page, "What is in the middle?")

    assert result.answer == "a box" and [c.region_id for c in result.crops] == ["4"]
    assert roles(chat_server.chat_requests[1]) == ["system", "user", "assistant", "user"]


def test_awares_text_protocol(chat_server: ScriptedChatServer, page: Path) -> None:
    chat_server.enqueue(Completion(text="GET_CROPS: ['0', '5']"), Completion(text="LABEL-0"))
    result = make_agent(chat_server, protocol="awares-text").ask(page, "Top-left label?")

    first, second = chat_server.chat_requests
    assert first.tools is None and "GET_CROPS" in first.messages[0]["content"]
    assert [c.region_id for c in result.crops] == ["0", "5"]
    crops_turn = second.messages[-1]
    assert crops_turn["role"] == "user"
    assert [p["type"] for p in crops_turn["content"]] == [
        "image_url",
        "image_url",
    ]  # images only, as released


def test_invalid_call_then_recovery(chat_server: ScriptedChatServer, page: Path) -> None:
    chat_server.enqueue(
        Completion(tool_calls=[("get_crops", {"crops": ["9"]})]),
        Completion(tool_calls=[("get_crops", {"crops": ["1"]})]),
        Completion(text="LABEL-1"),
    )
    result = make_agent(chat_server).ask(page, "Top-right label?")

    assert result.answer == "LABEL-1"
    assert [c.region_id for c in result.crops] == ["1"]
    (error,) = result.trajectory.errors
    assert error.kind == "invalid_tool_call" and "'9'" in error.message
    feedback = chat_server.chat_requests[1].messages[-1]
    assert feedback["role"] == "tool" and "Valid crops are" in feedback["content"]
    assert chat_server.chat_requests[1].tools is not None  # it may still crop after correcting itself


def test_invalid_twice_forces_an_answer(chat_server: ScriptedChatServer, page: Path) -> None:
    chat_server.enqueue(
        Completion(text="<tool_call>{not json</tool_call>"),
        Completion(tool_calls=[("zoom", {"box": [0, 0, 1, 1]})]),
        Completion(text="no idea"),
    )
    result = make_agent(chat_server).ask(page, "What is it?")

    assert result.answer == "no idea" and result.crops == []
    assert [e.kind for e in result.trajectory.errors] == ["invalid_tool_call", "unknown_tool"]
    last = chat_server.chat_requests[2]
    assert last.tools is None
    assert "Answer the question now" in last.messages[-1]["content"]


def test_tool_call_in_the_second_turn_is_refused(chat_server: ScriptedChatServer, page: Path) -> None:
    chat_server.enqueue(
        Completion(tool_calls=[("get_crops", {"crops": ["0"]})]),
        Completion(tool_calls=[("get_crops", {"crops": ["1"]})]),
        Completion(text="LABEL-0"),
    )
    result = make_agent(chat_server).ask(page, "Label?")

    assert result.answer == "LABEL-0"
    assert [c.region_id for c in result.crops] == ["0"]
    assert [e.kind for e in result.trajectory.errors] == ["extra_tool_round"]
    # The refused structured call is still answered by a tool message, as OpenAI-style servers require.
    assert roles(chat_server.chat_requests[2])[-2:] == ["tool", "user"]


def test_more_rounds_by_config(chat_server: ScriptedChatServer, page: Path) -> None:
    chat_server.enqueue(
        Completion(tool_calls=[("get_crops", {"crops": ["0"]})]),
        Completion(tool_calls=[("get_crops", {"crops": ["3"]})]),
        Completion(text="both"),
    )
    result = make_agent(chat_server, max_rounds=2).ask(page, "Labels?")

    assert result.answer == "both"
    assert [(c.round, c.region_id) for c in result.crops] == [(1, "0"), (2, "3")]
    assert result.trajectory.rounds == 2 and result.trajectory.errors == []


def test_no_rounds_means_no_tools(chat_server: ScriptedChatServer, page: Path) -> None:
    chat_server.enqueue(Completion(text="low-res answer"))
    result = make_agent(chat_server, max_rounds=0).ask(page, "Anything?")
    assert result.answer == "low-res answer"
    assert chat_server.chat_requests[0].tools is None


def test_budget_withholds_crops_that_do_not_fit(chat_server: ScriptedChatServer, page: Path) -> None:
    # Pure pixel accounting: the view is 0.25, a quadrant 0.25, a half 0.5.
    chat_server.enqueue(Completion(tool_calls=[("get_crops", {"crops": ["0", "5"]})]), Completion(text="ok"))
    result = make_agent(chat_server, max_rtr=0.5, token_rule="pixels:1").ask(page, "Label?")

    assert [c.region_id for c in result.crops] == ["0"]
    assert result.rtr == pytest.approx(0.5)
    (error,) = result.trajectory.errors
    assert error.kind == "budget" and "5" in error.message
    assert "withheld" in chat_server.chat_requests[1].messages[-1]["content"][-1]["text"]


def test_budget_spent_forces_an_answer(chat_server: ScriptedChatServer, page: Path) -> None:
    chat_server.enqueue(Completion(tool_calls=[("get_crops", {"crops": ["all"]})]), Completion(text="guess"))
    result = make_agent(chat_server, max_rtr=0.4, token_rule="pixels:1").ask(page, "Label?")

    assert result.answer == "guess" and result.crops == []
    assert result.rtr == pytest.approx(0.25)
    assert [e.kind for e in result.trajectory.errors] == ["budget"]
    assert chat_server.chat_requests[1].tools is None


def test_empty_replies_end_without_an_answer(chat_server: ScriptedChatServer, page: Path) -> None:
    chat_server.enqueue(Completion(text=""), Completion(text="  "), Completion(text=None))
    result = make_agent(chat_server).ask(page, "Label?")

    assert result.answer is None
    assert [e.kind for e in result.trajectory.errors] == ["empty_reply", "empty_reply", "no_answer"]
    assert len(chat_server.chat_requests) == 3


def test_graph_is_drawable_and_has_the_four_nodes(chat_server: ScriptedChatServer) -> None:
    from awares_agent import ImageStore

    graph = build_graph(OpenAIBackend("m", base_url=chat_server.base_url), store=ImageStore())
    nodes = set(graph.get_graph().nodes)
    assert {"look", "decide", "crop", "answer"} <= nodes
    mermaid = graph.get_graph().draw_mermaid()
    assert "decide" in mermaid and "crop" in mermaid
