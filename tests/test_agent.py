"""The Python API: ask/aask/stream, concurrency, checkpoints and resume, bad input, the trajectory schema.

The agent's loop runs on real LangGraph, real images and real checkpointers; the model's replies come from the
in-process :class:`~scripted_backend.ScriptedBackend`, which records every request (messages, tools, whether
it came through ``acomplete``), so a test asserts what the agent sent as well as what it returned. One test
stays on the loopback HTTP server: a timeout at the OpenAI adapter's boundary, end to end through the agent.
"""

from __future__ import annotations

import asyncio
import base64
import json
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest
from chat_server import Completion, Delay, ScriptedChatServer
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.sqlite import SqliteSaver
from PIL import Image, ImageDraw
from scripted_backend import Request, ScriptedBackend, StreamingScriptedBackend

from awares_agent import (
    AwaResAgent,
    ConfigError,
    ImageDecodeError,
    ImageStore,
    ImageTooLargeError,
    OpenAIBackend,
    Trajectory,
)
from awares_agent.config import AgentConfig
from awares_agent.errors import BackendHTTPError, BackendTimeoutError
from awares_agent.graphs import RunOptions, build_graph
from awares_agent.images import ViewSpec
from awares_agent.messages import ChatReply, ToolCall, Usage

SCHEMA_FILE = Path(__file__).resolve().parents[1] / "schemas" / "trajectory.schema.json"
#: The model name selects the visual-token rule (and so every budget below), as a real server's does.
MODEL = "Qwen/Qwen2.5-VL-7B-Instruct"


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    img = Image.new("RGB", (1000, 800), (200, 220, 240))
    ImageDraw.Draw(img).text((820, 700), "EXIT 12", fill="black")
    path = tmp_path / "photo.jpg"
    img.save(path, quality=92)
    return path


def reply(text: str) -> ChatReply:
    """A text turn, with the usage a server would report."""
    return ChatReply(text=text, usage=Usage(prompt_tokens=10, completion_tokens=5), finish_reason="stop")


def crops(*ids: str) -> ChatReply:
    """A turn holding one structured ``get_crops`` call for ``ids``."""
    return ChatReply(
        tool_calls=[ToolCall(id="call_0", name="get_crops", arguments=json.dumps({"crops": list(ids)}))],
        usage=Usage(prompt_tokens=10, completion_tokens=5),
        finish_reason="tool_calls",
    )


def http_500() -> BackendHTTPError:
    """The error an adapter raises for a server's HTTP 500 that it will not retry."""
    return BackendHTTPError("scripted HTTP 500 (not retried)", status_code=500)


def echo(request: Request) -> ChatReply:
    """A text turn that repeats the text of the request's last user message (images skipped)."""
    return reply(next(m.text for m in reversed(request.messages) if m.role == "user"))


def scripted(*script: Any) -> ScriptedBackend:
    """A scripted backend that reports :data:`MODEL`."""
    return ScriptedBackend(*script, model=MODEL)


def test_three_lines_of_python(photo: Path) -> None:
    backend = ScriptedBackend(crops("bottom-right"), reply("12"), model="qwen2.5-vl-7b")
    agent = AwaResAgent(backend)
    result = agent.ask(photo, "Which exit?")
    assert (result.answer, [c.name for c in result.crops]) == ("12", ["bottom-right"])
    assert result.trajectory.image.source == str(photo)
    assert result.latency_s > 0


def test_every_input_kind(photo: Path) -> None:
    data = photo.read_bytes()
    uri = "data:image/jpeg;base64," + base64.b64encode(data).decode()
    backend = scripted(*[reply("ok")] * 4)
    agent = AwaResAgent(backend)
    ids = {agent.ask(src, "q").trajectory.image.id for src in (photo, str(photo), data, uri)}
    assert len(ids) == 1  # same encoded file, same content id
    pil = agent.ask  # a PIL image works too (its own content id)
    backend.enqueue(reply("ok"))
    assert pil(Image.open(photo), "q").answer == "ok"


def test_ask_many_threads_in_input_order(tmp_path: Path) -> None:
    images = []
    for i in range(8):
        path = tmp_path / f"{i}.png"
        Image.new("RGB", (300 + i, 200), (i * 20, 0, 0)).save(path)
        images.append(path)
    # Each reply waits until all eight requests are in flight: sequential queries would break the barrier.
    barrier = threading.Barrier(8, timeout=10)
    threads: set[int] = set()

    def together(request: Request) -> ChatReply:
        threads.add(threading.get_ident())
        barrier.wait()
        return echo(request)

    backend = scripted(*[together] * 8)
    agent = AwaResAgent(backend)
    results = agent.ask_many([(p, f"question {i}") for i, p in enumerate(images)], max_concurrency=8)
    assert [r.answer for r in results] == [f"question {i}" for i in range(8)]
    assert [r.trajectory.image.width for r in results] == [300 + i for i in range(8)]
    # Eight threads, each through the synchronous complete().
    assert len(threads) == 8 and [r.asynchronous for r in backend.requests] == [False] * 8


def test_aask_many_and_errors_in_place(photo: Path) -> None:
    backend = scripted(reply("a"), reply("b"))
    agent = AwaResAgent(backend)
    queries = [(photo, "q1"), (b"not an image", "q2"), (photo, "q3")]
    results = asyncio.run(agent.aask_many(queries, max_concurrency=2, return_exceptions=True))
    assert isinstance(results[1], ImageDecodeError)
    assert sorted(r.answer for r in (results[0], results[2])) == ["a", "b"]
    assert [r.asynchronous for r in backend.requests] == [True, True]
    with pytest.raises(ImageDecodeError):
        agent.ask_many([(b"", "q")])
    assert len(backend.requests) == 2


def test_aask(photo: Path) -> None:
    backend = scripted(crops("3"), reply("12"))
    result = asyncio.run(AwaResAgent(backend).aask(photo, "Which exit?"))
    assert result.answer == "12" and [c.region_id for c in result.crops] == ["3"]
    assert [r.asynchronous for r in backend.requests] == [True, True]


def test_stream_events_in_order(photo: Path) -> None:
    events = list(AwaResAgent(scripted(crops("3"), reply("12"))).stream(photo, "Which exit?"))
    assert [e.type for e in events] == ["view", "model", "crops", "model", "answer", "result"]
    assert events[0].data["view"]["width"] == 500
    assert events[1].data["kind"] == "crop" and events[1].data["crops"] == ["3"]
    assert events[-1].result is not None and events[-1].result.answer == "12"


def test_astream(photo: Path) -> None:
    backend = scripted(reply("12"))

    async def collect() -> list[str]:
        return [e.type async for e in AwaResAgent(backend).astream(photo, "q")]

    assert asyncio.run(collect()) == ["view", "model", "answer", "result"]
    assert [r.asynchronous for r in backend.requests] == [True]


def test_stream_sends_the_text_as_it_is_generated(photo: Path) -> None:
    backend = StreamingScriptedBackend("GET_CROPS: ['3']", reply("exit twelve it says"), model=MODEL)
    events = list(AwaResAgent(backend, protocol="awares-text").stream(photo, "Which exit?"))
    kinds = [e.type for e in events]
    assert kinds == ["view", *["token"] * 2, "model", "crops", *["token"] * 4, "model", "answer", "result"]
    tokens = [e.data for e in events if e.type == "token"]
    assert "".join(t["text"] for t in tokens if t["round"] == 1) == "GET_CROPS: ['3']"
    assert "".join(t["text"] for t in tokens if t["round"] == 2) == "exit twelve it says"
    assert backend.streamed == [True, True]
    assert events[-1].result is not None and events[-1].result.answer == "exit twelve it says"


def test_stream_without_tokens_and_ask_do_not_stream(photo: Path) -> None:
    backend = StreamingScriptedBackend(reply("12"), reply("12"), model=MODEL)
    agent = AwaResAgent(backend)
    events = list(agent.stream(photo, "Which exit?", tokens=False))
    assert "token" not in [e.type for e in events]
    assert agent.ask(photo, "Which exit?").answer == "12"
    assert backend.streamed == [False, False]


def test_stream_keeps_the_run_options_it_is_given(photo: Path) -> None:
    backend = StreamingScriptedBackend(reply("twelve"), model=MODEL)
    options = RunOptions(crops=("3",))
    events = list(AwaResAgent(backend).stream(photo, "Which exit?", options=options))
    assert [e.data["scripted"] for e in events if e.type == "model"] == [True, False]
    assert [e.data["text"] for e in events if e.type == "token"] == ["twelve"]
    assert options.stream_text is False  # the caller's options are not changed


def test_a_backend_that_cannot_stream_answers_whole(photo: Path) -> None:
    events = list(AwaResAgent(scripted(reply("12"))).stream(photo, "Which exit?"))
    assert [e.type for e in events] == ["view", "model", "answer", "result"]


def test_astream_streams_text(photo: Path) -> None:
    backend = StreamingScriptedBackend(reply("exit 12"), model=MODEL)

    async def collect() -> list[str]:
        return [e.data["text"] async for e in AwaResAgent(backend).astream(photo, "q") if e.type == "token"]

    assert asyncio.run(collect()) == ["exit", " 12"]
    assert [r.asynchronous for r in backend.requests] == [True]


def test_in_memory_checkpointer(photo: Path) -> None:
    agent = AwaResAgent(scripted(reply("12")), checkpointer=InMemorySaver())
    result = agent.ask(photo, "q", thread_id="t1")
    state = agent.graph.get_state({"configurable": {"thread_id": "t1"}}).values
    assert state["answer"] == result.answer == "12"


def test_sqlite_checkpoint_round_trip(photo: Path, tmp_path: Path) -> None:
    db, images = tmp_path / "runs.sqlite", tmp_path / "images"
    backend = scripted(crops("3", "0"), reply("12"))
    with sqlite3.connect(db, check_same_thread=False) as conn:
        agent = AwaResAgent(backend, store=ImageStore(root=images), checkpointer=SqliteSaver(conn))
        first = agent.ask(photo, "Which exit?", thread_id="q-1")

    # A new process: new connection, new store on the same folder, new agent.
    with sqlite3.connect(db, check_same_thread=False) as conn:
        store = ImageStore(root=images)
        agent = AwaResAgent(scripted(), store=store, checkpointer=SqliteSaver(conn))
        state = agent.graph.get_state({"configurable": {"thread_id": "q-1"}}).values
        again = agent.trajectory_from_state(state)
        assert [c.region_id for c in again.crops] == ["3", "0"]
        for crop in again.crops:
            assert store.get(crop.image_id).size == (crop.width, crop.height)
    assert again.answer == first.answer
    assert again.crops == first.trajectory.crops
    assert again.messages == first.trajectory.messages
    assert again.cost == first.trajectory.cost
    # No pixels in the checkpoint: it stays small even with two 500x400 crops and a view.
    assert db.stat().st_size < 400_000


def test_async_sqlite_checkpointer(photo: Path, tmp_path: Path) -> None:
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

    backend = scripted(crops("3"), reply("12"))

    async def run() -> tuple[str | None, dict]:
        async with AsyncSqliteSaver.from_conn_string(str(tmp_path / "a.sqlite")) as saver:
            agent = AwaResAgent(backend, checkpointer=saver)
            result = await agent.aask(photo, "Which exit?", thread_id="a-1")
            snapshot = await agent.graph.aget_state({"configurable": {"thread_id": "a-1"}})
            return result.answer, snapshot.values

    answer, values = asyncio.run(run())
    assert answer == values["answer"] == "12"
    assert [c["region_id"] for c in values["crops"]] == ["3"]


def test_resume_after_backend_failure(photo: Path, tmp_path: Path) -> None:
    backend = scripted(crops("3"), http_500())
    agent = AwaResAgent(backend, store=ImageStore(root=tmp_path / "img"), checkpointer=InMemorySaver())
    with pytest.raises(BackendHTTPError):
        agent.ask(photo, "Which exit?", thread_id="t")
    backend.enqueue(reply("12"))
    result = agent.resume("t")
    assert result.answer == "12"
    assert [c.region_id for c in result.crops] == ["3"]
    assert len(backend.requests) == 3  # the crop turn was not asked again
    assert backend.requests[2].messages == backend.requests[1].messages  # the failed turn, sent again
    with pytest.raises(ConfigError):
        agent.resume("no-such-thread")


def test_backend_errors_propagate_typed(chat_server: ScriptedChatServer, photo: Path) -> None:
    """A timeout at the OpenAI adapter's HTTP boundary reaches the caller of ``ask`` as the adapter raised it.

    It stays on the loopback server: the point is the real adapter under the agent (its ``timeout=``
    honoured, its typed error neither wrapped by LangGraph nor re-typed by the graph's boundary rule).
    """
    chat_server.enqueue(Delay(2.0, Completion(text="late")))
    backend = OpenAIBackend(MODEL, base_url=chat_server.base_url, max_retries=0, timeout=0.3)
    agent = AwaResAgent(backend)
    with pytest.raises(BackendTimeoutError) as info:
        agent.ask(photo, "q")
    message = str(info.value)
    assert type(info.value) is BackendTimeoutError
    assert chat_server.base_url in message and repr(MODEL) in message  # where it failed
    assert "0.3 s timeout" in message and "timeout=" in message  # which limit, and the fix


def test_bad_input_fails_before_any_request(tmp_path: Path) -> None:
    backend = scripted()
    agent = AwaResAgent(backend, max_image_pixels=1_000_000)
    with pytest.raises(ImageDecodeError, match=r"missing\.png"):
        agent.ask(tmp_path / "missing.png", "q")
    with pytest.raises(ImageTooLargeError):
        agent.ask(Image.new("L", (2000, 1000)), "q")
    with pytest.raises(ConfigError):
        agent.ask(Image.new("RGB", (10, 10)), "   ")
    assert backend.requests == []


def test_truncated_jpeg_fails_cleanly(photo: Path) -> None:
    backend = scripted()
    data = photo.read_bytes()
    with pytest.raises(ImageDecodeError):
        AwaResAgent(backend).ask(data[: len(data) // 3], "q")
    assert backend.requests == []


def test_tiny_and_extreme_images() -> None:
    backend = scripted(crops("0"), reply("dot"), crops("8"), reply("line"))
    agent = AwaResAgent(backend)
    tiny = agent.ask(Image.new("RGB", (1, 1), "red"), "colour?")
    assert tiny.answer == "dot" and tiny.crops[0].box == (0, 0, 1, 1)  # under 100 px: sent whole
    wide = agent.ask(Image.new("RGB", (12000, 150), "white"), "text?")
    assert wide.answer == "line" and wide.crops[0].box == (6000, 0, 12000, 150)


def test_config_errors() -> None:
    with pytest.raises(ConfigError, match="crop set"):
        AwaResAgent(scripted(), crop_set="hexagons")
    with pytest.raises(ConfigError, match="max_rounds"):
        AwaResAgent(scripted(), max_rounds=-1)
    with pytest.raises(ConfigError, match="colour"):
        AwaResAgent(scripted(), colour="blue")


def test_trajectory_schema_is_stable() -> None:
    """The committed JSON schema is the generated one, so a schema change is deliberate.

    Regenerate with ``python -m awares_agent.trajectory > schemas/trajectory.schema.json``, and bump
    SCHEMA_VERSION if the change breaks readers.
    """
    generated = Trajectory.model_json_schema()
    assert json.loads(SCHEMA_FILE.read_text()) == generated


def test_trajectory_json_round_trip(photo: Path) -> None:
    result = AwaResAgent(scripted(crops("3"), reply("12"))).ask(photo, "Which exit?")
    text = result.trajectory.model_dump_json()
    assert Trajectory.model_validate_json(text) == result.trajectory
    assert "base64" not in text  # images are references, never pixels


# --- run options: per-query choices as the graph's run context ----------------------------------------------


def _same_run(a: Trajectory, b: Trajectory) -> None:
    assert a.messages == b.messages and a.crops == b.crops and a.answer == b.answer
    assert (a.calls, a.usage, a.cost, a.max_rtr, a.errors) == (b.calls, b.usage, b.cost, b.max_rtr, b.errors)


def test_no_run_options_is_the_configuration_as_it_is(photo: Path) -> None:
    backend = scripted(*[crops("3"), reply("12")] * 3)
    agent = AwaResAgent(backend, max_rtr=0.6)
    plain = agent.ask(photo, "Which exit?").trajectory
    default = agent.ask(photo, "Which exit?", options=RunOptions()).trajectory
    _same_run(plain, default)
    assert plain.max_rtr == 0.6 and plain.calls == 2 and [c.region_id for c in plain.crops] == ["3"]
    # The graph itself, invoked with no context at all (build_graph's signature, unchanged).
    store = ImageStore()
    graph = build_graph(backend, AgentConfig(max_rtr=0.6), store=store)
    source = store.add(photo)
    info = {"id": source.id, "width": source.width, "height": source.height}
    state = graph.invoke({"question": "Which exit?", "source": info})
    assert state["answer"] == "12" and [c["region_id"] for c in state["crops"]] == ["3"]
    assert (state["max_rounds"], state["max_rtr"], state["usage"]["calls"]) == (1, 0.6, 2)


def test_forced_crops_and_a_scripted_answer_call_no_backend(photo: Path) -> None:
    backend = scripted()
    agent = AwaResAgent(backend)
    options = RunOptions(crops=["3", "top-left"], answer="12")  # a list and a name are fine
    events = list(agent.stream(photo, "Which exit?", options=options))
    result = events[-1].result
    assert result is not None and backend.requests == []
    t = result.trajectory
    assert (t.answer, [c.region_id for c in t.crops]) == ("12", ["3", "0"])
    assert (t.calls, t.usage.prompt_tokens) == (0, 0)
    assert [m.role for m in t.messages] == ["system", "user", "assistant", "tool", "user", "assistant"]
    assert json.loads(t.messages[2].tool_calls[0].arguments) == {"crops": ["3", "top-left"]}
    models = [e.data for e in events if e.type == "model"]
    assert [(d["kind"], d["scripted"]) for d in models] == [("crop", True), ("answer", True)]
    # A scripted answer alone: the first turn is the answer, as the label of a direct sample.
    direct = asyncio.run(agent.aask(photo, "Which exit?", options=RunOptions(answer=" GET_CROPS: ['0'] ")))
    assert direct.answer == "GET_CROPS: ['0']" and direct.crops == []  # an answer, whatever it reads like
    assert backend.requests == []


def test_run_options_override_rounds_budget_and_view(photo: Path) -> None:
    backend = scripted()
    agent = AwaResAgent(backend, max_rtr=0.9)
    backend.enqueue(reply("12"))
    low = agent.ask(photo, "q", options=RunOptions(max_rounds=0))
    assert backend.requests[-1].tools is None and low.trajectory.max_rtr == 0.9
    backend.enqueue(reply("12"))
    full = agent.ask(photo, "q", options=RunOptions(max_rounds=0, view=ViewSpec(scale=1.0)))
    assert backend.requests[-1].pixels()[0].size == (1000, 800) and full.rtr == pytest.approx(1.0)
    backend.enqueue(crops("3"), reply("12"))
    tight = agent.ask(photo, "q", options=RunOptions(max_rtr=0.3))  # the view alone is 0.25: no crop fits
    assert tight.crops == [] and [e.kind for e in tight.trajectory.errors] == ["budget"]
    assert tight.trajectory.max_rtr == 0.3
    backend.enqueue(crops("all"), reply("12"))
    free = agent.ask(photo, "q", options=RunOptions(max_rtr=None))  # no budget at all
    assert [c.region_id for c in free.crops] == ["all"] and free.trajectory.max_rtr is None
    backend.enqueue(crops("3"), crops("0"), reply("12"))
    two = agent.ask(photo, "q", options=RunOptions(max_rounds=2))
    assert [c.round for c in two.crops] == [1, 2] and two.answer == "12"


def test_run_options_are_checked_before_any_request(photo: Path) -> None:
    for bad, hint in (
        ({"crops": ()}, "at least one region"),
        ({"answer": "  "}, "non-empty"),
        ({"max_rounds": 9}, "0..8"),
        ({"max_rtr": 0}, "> 0"),
        ({"max_rtr": float("inf")}, "finite"),
        ({"view": 0.5}, "ViewSpec"),
    ):
        with pytest.raises(ConfigError, match=hint):
            RunOptions(**bad)  # type: ignore[arg-type]
    backend = scripted()
    agent = AwaResAgent(backend)
    with pytest.raises(ConfigError, match="hexagon"):
        agent.ask(photo, "q", options=RunOptions(crops=("hexagon",)))
    with pytest.raises(ConfigError, match="max_rounds"):
        agent.ask(photo, "q", options=RunOptions(crops=("3",), max_rounds=0))
    with pytest.raises(ConfigError, match="RunOptions"):
        agent.ask(photo, "q", options={"crops": ["3"]})  # type: ignore[arg-type]
    assert backend.requests == []


def test_resume_keeps_the_limits_and_takes_the_options_again(photo: Path, tmp_path: Path) -> None:
    backend = scripted()
    agent = AwaResAgent(backend, store=ImageStore(root=tmp_path / "img"), checkpointer=InMemorySaver())
    # The limits are in the checkpointed state: resumed without its options, a low-res query stays low-res.
    backend.enqueue(http_500())
    with pytest.raises(BackendHTTPError):
        agent.ask(photo, "Which exit?", thread_id="low", options=RunOptions(max_rounds=0))
    backend.enqueue(reply("12"))
    assert agent.resume("low").answer == "12" and backend.requests[-1].tools is None
    # A forced request is done before the query can stop; the options (here more rounds) are given again.
    backend.enqueue(http_500())
    forced = RunOptions(crops=("3",), max_rounds=2)
    with pytest.raises(BackendHTTPError):
        agent.ask(photo, "Which exit?", thread_id="forced", options=forced)
    seen = len(backend.requests)
    backend.enqueue(crops("0"), reply("12"))
    result = agent.resume("forced", options=forced)
    assert result.answer == "12" and [c.region_id for c in result.crops] == ["3", "0"]
    assert len(backend.requests) - seen == 2 and result.trajectory.calls == 2  # the failed one: none
