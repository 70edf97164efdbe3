"""The Python API: ask/aask/stream, concurrency, checkpoints and resume, bad input, the trajectory schema."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
from pathlib import Path

import pytest
from awares_agent.graphs import RunOptions, build_graph
from chat_server import Completion, Delay, Echo, HTTPError, ScriptedChatServer
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.sqlite import SqliteSaver
from PIL import Image, ImageDraw

from awares_agent import (
    AwaResAgent,
    BackendError,
    ConfigError,
    ImageDecodeError,
    ImageStore,
    ImageTooLargeError,
    OpenAIBackend,
    Trajectory,
)
from awares_agent.config import AgentConfig
from awares_agent.errors import BackendHTTPError, BackendTimeoutError
from awares_agent.images import ViewSpec

SCHEMA_FILE = Path(__file__).resolve().parents[1] / "schemas" / "trajectory.schema.json"


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    img = Image.new("RGB", (1000, 800), (200, 220, 240))
    ImageDraw.Draw(img).text((820, 700), "EXIT 12", fill="black")
    path = tmp_path / "photo.jpg"
    img.save(path, quality=92)
    return path


def backend(server: ScriptedChatServer, **kw: object) -> OpenAIBackend:
    return OpenAIBackend("Qwen/Qwen2.5-VL-7B-Instruct", base_url=server.base_url, max_retries=0, **kw)


def test_three_lines_of_python(chat_server: ScriptedChatServer, photo: Path) -> None:
    chat_server.enqueue(
        Completion(tool_calls=[("get_crops", {"crops": ["bottom-right"]})]), Completion(text="12")
    )
    agent = AwaResAgent(OpenAIBackend("qwen2.5-vl-7b", base_url=chat_server.base_url))
    result = agent.ask(photo, "Which exit?")
    assert (result.answer, [c.name for c in result.crops]) == ("12", ["bottom-right"])
    assert result.trajectory.image.source == str(photo)
    assert result.latency_s > 0


def test_every_input_kind(chat_server: ScriptedChatServer, photo: Path) -> None:
    import base64

    data = photo.read_bytes()
    uri = "data:image/jpeg;base64," + base64.b64encode(data).decode()
    chat_server.enqueue(*[Completion(text="ok")] * 4)
    agent = AwaResAgent(backend(chat_server))
    ids = {agent.ask(src, "q").trajectory.image.id for src in (photo, str(photo), data, uri)}
    assert len(ids) == 1  # same encoded file, same content id
    pil = agent.ask  # a PIL image works too (its own content id)
    chat_server.enqueue(Completion(text="ok"))
    assert pil(Image.open(photo), "q").answer == "ok"


def test_ask_many_threads_in_input_order(chat_server: ScriptedChatServer, tmp_path: Path) -> None:
    images = []
    for i in range(8):
        path = tmp_path / f"{i}.png"
        Image.new("RGB", (300 + i, 200), (i * 20, 0, 0)).save(path)
        images.append(path)
    # Each reply waits until all eight requests are in flight: sequential queries would break the barrier.
    barrier = threading.Barrier(8, timeout=10)

    def together(request: object) -> Echo:
        barrier.wait()
        return Echo()

    chat_server.enqueue(*[together] * 8)
    agent = AwaResAgent(backend(chat_server))
    results = agent.ask_many([(p, f"question {i}") for i, p in enumerate(images)], max_concurrency=8)
    assert [r.answer for r in results] == [f"question {i}" for i in range(8)]
    assert [r.trajectory.image.width for r in results] == [300 + i for i in range(8)]
    assert not barrier.broken


def test_aask_many_and_errors_in_place(chat_server: ScriptedChatServer, photo: Path) -> None:
    chat_server.enqueue(Completion(text="a"), Completion(text="b"))
    agent = AwaResAgent(backend(chat_server))
    queries = [(photo, "q1"), (b"not an image", "q2"), (photo, "q3")]
    results = asyncio.run(agent.aask_many(queries, max_concurrency=2, return_exceptions=True))
    assert isinstance(results[1], ImageDecodeError)
    assert sorted(r.answer for r in (results[0], results[2])) == ["a", "b"]
    with pytest.raises(ImageDecodeError):
        agent.ask_many([(b"", "q")])


def test_aask(chat_server: ScriptedChatServer, photo: Path) -> None:
    chat_server.enqueue(Completion(tool_calls=[("get_crops", {"crops": ["3"]})]), Completion(text="12"))
    result = asyncio.run(AwaResAgent(backend(chat_server)).aask(photo, "Which exit?"))
    assert result.answer == "12" and [c.region_id for c in result.crops] == ["3"]


def test_stream_events_in_order(chat_server: ScriptedChatServer, photo: Path) -> None:
    chat_server.enqueue(Completion(tool_calls=[("get_crops", {"crops": ["3"]})]), Completion(text="12"))
    events = list(AwaResAgent(backend(chat_server)).stream(photo, "Which exit?"))
    assert [e.type for e in events] == ["view", "model", "crops", "model", "answer", "result"]
    assert events[0].data["view"]["width"] == 500
    assert events[1].data["kind"] == "crop" and events[1].data["crops"] == ["3"]
    assert events[-1].result is not None and events[-1].result.answer == "12"


def test_astream(chat_server: ScriptedChatServer, photo: Path) -> None:
    chat_server.enqueue(Completion(text="12"))

    async def collect() -> list[str]:
        return [e.type async for e in AwaResAgent(backend(chat_server)).astream(photo, "q")]

    assert asyncio.run(collect()) == ["view", "model", "answer", "result"]


def test_in_memory_checkpointer(chat_server: ScriptedChatServer, photo: Path) -> None:
    chat_server.enqueue(Completion(text="12"))
    agent = AwaResAgent(backend(chat_server), checkpointer=InMemorySaver())
    result = agent.ask(photo, "q", thread_id="t1")
    state = agent.graph.get_state({"configurable": {"thread_id": "t1"}}).values
    assert state["answer"] == result.answer == "12"


def test_sqlite_checkpoint_round_trip(chat_server: ScriptedChatServer, photo: Path, tmp_path: Path) -> None:
    db, images = tmp_path / "runs.sqlite", tmp_path / "images"
    chat_server.enqueue(Completion(tool_calls=[("get_crops", {"crops": ["3", "0"]})]), Completion(text="12"))
    with sqlite3.connect(db, check_same_thread=False) as conn:
        agent = AwaResAgent(
            backend(chat_server), store=ImageStore(root=images), checkpointer=SqliteSaver(conn)
        )
        first = agent.ask(photo, "Which exit?", thread_id="q-1")

    # A new process: new connection, new store on the same folder, new agent.
    with sqlite3.connect(db, check_same_thread=False) as conn:
        store = ImageStore(root=images)
        agent = AwaResAgent(backend(chat_server), store=store, checkpointer=SqliteSaver(conn))
        state = agent.graph.get_state({"configurable": {"thread_id": "q-1"}}).values
        again = agent.trajectory_from_state(state)
        for crop in again.crops:
            assert store.get(crop.image_id).size == (crop.width, crop.height)
    assert again.answer == first.answer
    assert again.crops == first.trajectory.crops
    assert again.messages == first.trajectory.messages
    assert again.cost == first.trajectory.cost
    # No pixels in the checkpoint: it stays small even with two 500x400 crops and a view.
    assert db.stat().st_size < 400_000


def test_async_sqlite_checkpointer(chat_server: ScriptedChatServer, photo: Path, tmp_path: Path) -> None:
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

    chat_server.enqueue(Completion(tool_calls=[("get_crops", {"crops": ["3"]})]), Completion(text="12"))

    async def run() -> tuple[str | None, dict]:
        async with AsyncSqliteSaver.from_conn_string(str(tmp_path / "a.sqlite")) as saver:
            agent = AwaResAgent(backend(chat_server), checkpointer=saver)
            result = await agent.aask(photo, "Which exit?", thread_id="a-1")
            snapshot = await agent.graph.aget_state({"configurable": {"thread_id": "a-1"}})
            return result.answer, snapshot.values

    answer, values = asyncio.run(run())
    assert answer == values["answer"] == "12"
    assert [c["region_id"] for c in values["crops"]] == ["3"]


def test_resume_after_backend_failure(chat_server: ScriptedChatServer, photo: Path, tmp_path: Path) -> None:
    chat_server.enqueue(
        Completion(tool_calls=[("get_crops", {"crops": ["3"]})]),
        HTTPError(500, headers={"x-should-retry": "false"}),
    )
    agent = AwaResAgent(
        backend(chat_server), store=ImageStore(root=tmp_path / "img"), checkpointer=InMemorySaver()
    )
    with pytest.raises(BackendHTTPError):
        agent.ask(photo, "Which exit?", thread_id="t")
    chat_server.enqueue(Completion(text="12"))
    result = agent.resume("t")
    assert result.answer == "12"
    assert [c.region_id for c in result.crops] == ["3"]
    assert len(chat_server.chat_requests) == 3  # the crop turn was not asked again
    with pytest.raises(ConfigError):
        agent.resume("no-such-thread")


def test_backend_errors_propagate_typed(chat_server: ScriptedChatServer, photo: Path) -> None:
    chat_server.enqueue(Delay(2.0, Completion(text="late")))
    agent = AwaResAgent(backend(chat_server, timeout=0.3))
    with pytest.raises(BackendTimeoutError) as info:
        agent.ask(photo, "q")
    assert isinstance(info.value, BackendError)


def test_bad_input_fails_before_any_request(chat_server: ScriptedChatServer, tmp_path: Path) -> None:
    agent = AwaResAgent(backend(chat_server), max_image_pixels=1_000_000)
    with pytest.raises(ImageDecodeError, match=r"missing\.png"):
        agent.ask(tmp_path / "missing.png", "q")
    with pytest.raises(ImageTooLargeError):
        agent.ask(Image.new("L", (2000, 1000)), "q")
    with pytest.raises(ConfigError):
        agent.ask(Image.new("RGB", (10, 10)), "   ")
    assert chat_server.chat_requests == []


def test_truncated_jpeg_fails_cleanly(chat_server: ScriptedChatServer, photo: Path) -> None:
    data = photo.read_bytes()
    with pytest.raises(ImageDecodeError):
        AwaResAgent(backend(chat_server)).ask(data[: len(data) // 3], "q")
    assert chat_server.chat_requests == []


def test_tiny_and_extreme_images(chat_server: ScriptedChatServer) -> None:
    chat_server.enqueue(Completion(tool_calls=[("get_crops", {"crops": ["0"]})]), Completion(text="dot"))
    chat_server.enqueue(Completion(tool_calls=[("get_crops", {"crops": ["8"]})]), Completion(text="line"))
    agent = AwaResAgent(backend(chat_server))
    tiny = agent.ask(Image.new("RGB", (1, 1), "red"), "colour?")
    assert tiny.answer == "dot" and tiny.crops[0].box == (0, 0, 1, 1)  # under 100 px: sent whole
    wide = agent.ask(Image.new("RGB", (12000, 150), "white"), "text?")
    assert wide.answer == "line" and wide.crops[0].box == (6000, 0, 12000, 150)


def test_config_errors() -> None:
    with pytest.raises(ConfigError, match="crop set"):
        AwaResAgent(OpenAIBackend("m", base_url="http://127.0.0.1:9/v1"), crop_set="hexagons")
    with pytest.raises(ConfigError, match="max_rounds"):
        AwaResAgent(OpenAIBackend("m", base_url="http://127.0.0.1:9/v1"), max_rounds=-1)
    with pytest.raises(ConfigError, match="colour"):
        AwaResAgent(OpenAIBackend("m", base_url="http://127.0.0.1:9/v1"), colour="blue")


def test_trajectory_schema_is_stable() -> None:
    """The committed JSON schema is the generated one, so a schema change is deliberate.

    Regenerate with ``python -m awares_agent.trajectory > schemas/trajectory.schema.json``, and bump
    SCHEMA_VERSION if the change breaks readers.
    """
    generated = Trajectory.model_json_schema()
    assert json.loads(SCHEMA_FILE.read_text()) == generated


def test_trajectory_json_round_trip(chat_server: ScriptedChatServer, photo: Path) -> None:
    chat_server.enqueue(Completion(tool_calls=[("get_crops", {"crops": ["3"]})]), Completion(text="12"))
    result = AwaResAgent(backend(chat_server)).ask(photo, "Which exit?")
    text = result.trajectory.model_dump_json()
    assert Trajectory.model_validate_json(text) == result.trajectory
    assert "base64" not in text  # images are references, never pixels


# --- run options: per-query choices as the graph's run context ----------------------------------------------


def _same_run(a: Trajectory, b: Trajectory) -> None:
    assert a.messages == b.messages and a.crops == b.crops and a.answer == b.answer
    assert (a.calls, a.usage, a.cost, a.max_rtr, a.errors) == (b.calls, b.usage, b.cost, b.max_rtr, b.errors)


def test_no_run_options_is_the_configuration_as_it_is(chat_server: ScriptedChatServer, photo: Path) -> None:
    for _ in range(3):
        chat_server.enqueue(Completion(tool_calls=[("get_crops", {"crops": ["3"]})]), Completion(text="12"))
    agent = AwaResAgent(backend(chat_server), max_rtr=0.6)
    plain = agent.ask(photo, "Which exit?").trajectory
    default = agent.ask(photo, "Which exit?", options=RunOptions()).trajectory
    _same_run(plain, default)
    assert plain.max_rtr == 0.6 and plain.calls == 2 and [c.region_id for c in plain.crops] == ["3"]
    # The graph itself, invoked with no context at all (build_graph's signature, unchanged).
    store = ImageStore()
    graph = build_graph(backend(chat_server), AgentConfig(max_rtr=0.6), store=store)
    source = store.add(photo)
    info = {"id": source.id, "width": source.width, "height": source.height}
    state = graph.invoke({"question": "Which exit?", "source": info})
    assert state["answer"] == "12" and [c["region_id"] for c in state["crops"]] == ["3"]
    assert (state["max_rounds"], state["max_rtr"], state["usage"]["calls"]) == (1, 0.6, 2)


def test_forced_crops_and_a_scripted_answer_call_no_backend(
    chat_server: ScriptedChatServer, photo: Path
) -> None:
    agent = AwaResAgent(backend(chat_server))
    options = RunOptions(crops=["3", "top-left"], answer="12")  # a list and a name are fine
    events = list(agent.stream(photo, "Which exit?", options=options))
    result = events[-1].result
    assert result is not None and chat_server.chat_requests == []
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
    assert chat_server.chat_requests == []


def test_run_options_override_rounds_budget_and_view(chat_server: ScriptedChatServer, photo: Path) -> None:
    agent = AwaResAgent(backend(chat_server), max_rtr=0.9)
    chat_server.enqueue(Completion(text="12"))
    low = agent.ask(photo, "q", options=RunOptions(max_rounds=0))
    assert chat_server.chat_requests[-1].tools is None and low.trajectory.max_rtr == 0.9
    chat_server.enqueue(Completion(text="12"))
    full = agent.ask(photo, "q", options=RunOptions(max_rounds=0, view=ViewSpec(scale=1.0)))
    assert chat_server.chat_requests[-1].images()[0].size == (1000, 800) and full.rtr == pytest.approx(1.0)
    chat_server.enqueue(Completion(tool_calls=[("get_crops", {"crops": ["3"]})]), Completion(text="12"))
    tight = agent.ask(photo, "q", options=RunOptions(max_rtr=0.3))  # the view alone is 0.25: no crop fits
    assert tight.crops == [] and [e.kind for e in tight.trajectory.errors] == ["budget"]
    assert tight.trajectory.max_rtr == 0.3
    chat_server.enqueue(Completion(tool_calls=[("get_crops", {"crops": ["all"]})]), Completion(text="12"))
    free = agent.ask(photo, "q", options=RunOptions(max_rtr=None))  # no budget at all
    assert [c.region_id for c in free.crops] == ["all"] and free.trajectory.max_rtr is None
    chat_server.enqueue(
        Completion(tool_calls=[("get_crops", {"crops": ["3"]})]),
        Completion(tool_calls=[("get_crops", {"crops": ["0"]})]),
        Completion(text="12"),
    )
    two = agent.ask(photo, "q", options=RunOptions(max_rounds=2))
    assert [c.round for c in two.crops] == [1, 2] and two.answer == "12"


def test_run_options_are_checked_before_any_request(chat_server: ScriptedChatServer, photo: Path) -> None:
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
    agent = AwaResAgent(backend(chat_server))
    with pytest.raises(ConfigError, match="hexagon"):
        agent.ask(photo, "q", options=RunOptions(crops=("hexagon",)))
    with pytest.raises(ConfigError, match="max_rounds"):
        agent.ask(photo, "q", options=RunOptions(crops=("3",), max_rounds=0))
    with pytest.raises(ConfigError, match="RunOptions"):
        agent.ask(photo, "q", options={"crops": ["3"]})  # type: ignore[arg-type]
    assert chat_server.chat_requests == []


def test_resume_keeps_the_limits_and_takes_the_options_again(
    chat_server: ScriptedChatServer, photo: Path, tmp_path: Path
) -> None:
    fail = HTTPError(500, headers={"x-should-retry": "false"})
    agent = AwaResAgent(
        backend(chat_server), store=ImageStore(root=tmp_path / "img"), checkpointer=InMemorySaver()
    )
    # The limits are in the checkpointed state: resumed without its options, a low-res query stays low-res.
    chat_server.enqueue(fail)
    with pytest.raises(BackendHTTPError):
        agent.ask(photo, "Which exit?", thread_id="low", options=RunOptions(max_rounds=0))
    chat_server.enqueue(Completion(text="12"))
    assert agent.resume("low").answer == "12" and chat_server.chat_requests[-1].tools is None
    # A forced request is done before the query can stop; the options (here more rounds) are given again.
    chat_server.enqueue(fail)
    forced = RunOptions(crops=("3",), max_rounds=2)
    with pytest.raises(BackendHTTPError):
        agent.ask(photo, "Which exit?", thread_id="forced", options=forced)
    seen = len(chat_server.chat_requests)
    chat_server.enqueue(Completion(tool_calls=[("get_crops", {"crops": ["0"]})]), Completion(text="12"))
    result = agent.resume("forced", options=forced)
    assert result.answer == "12" and [c.region_id for c in result.crops] == ["3", "0"]
    assert len(chat_server.chat_requests) - seen == 2 and result.trajectory.calls == 2  # the failed one: none
