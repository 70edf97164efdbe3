"""The console demo: its region view, commands, session, and the Textual app driven headlessly.

The app runs under Textual's own pilot (``App.run_test``) on the embedded reader with the bundled sample
pages, and on the loopback server (streamed replies, a server that is down, one that answers garbage, a
model whose tool call is malformed). What is checked is what the screen shows: the conversation's lines,
the status line, the lit regions and the crops.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from bad_images import png_claiming
from chat_server import Completion, Delay, Garbage, ScriptedChatServer
from PIL import Image
from rich.console import Console
from textual.geometry import Region
from textual.widget import Widget
from textual.widgets import RichLog, Static

from awares_agent.backend_factory import BackendOptions
from awares_agent.cli import main
from awares_agent.demo.app import DemoApp, ImagePanel
from awares_agent.demo.commands import COMMANDS, help_lines, parse_command
from awares_agent.demo.samples import SamplePage, sample_pages
from awares_agent.demo.session import DemoSession
from awares_agent.demo.view import LIT, RegionView
from awares_agent.errors import ConfigError, ImageDecodeError
from awares_agent.tools.crop_sets import crop_set
from awares_agent.trajectory import Trajectory

SIZE = (150, 48)


@pytest.fixture(scope="module")
def samples() -> list[SamplePage]:
    return sample_pages(4)


# --- the region view -----------------------------------------------------------------------------------


def _render(view: RegionView, width: int) -> list[list]:
    console = Console(width=width, color_system="truecolor", file=open("/dev/null", "w"))  # noqa: SIM115
    lines = console.render_lines(view, console.options.update(width=width), pad=False)
    return lines


def test_region_view_keeps_proportions_and_numbers_every_region() -> None:
    image = Image.new("RGB", (400, 200), "white")
    regions = crop_set("paper").regions(800, 400)
    view = RegionView(image, source_size=(800, 400), regions=regions)
    lines = _render(view, 40)
    assert len(lines) == 10  # 40 columns x 20 pixel rows: 2:1, as the image
    text = ["".join(s.text for s in line) for line in lines]
    assert all(len(t) == 40 for t in text)
    labels = [c for t in text for c in t.split() if not set(c) <= {"▀"}]
    assert sorted("".join(labels).replace("▀", "")) == sorted("012345678")  # all but `all`
    # The quadrants' labels sit in their quadrants: 0 top-left, 3 bottom-right.
    row0 = next(i for i, t in enumerate(text) if " 0 " in t)
    row3 = next(i for i, t in enumerate(text) if " 3 " in t)
    assert row0 < 5 <= row3
    assert text[row0].index(" 0 ") < 20 <= text[row3].index(" 3 ")


def test_region_view_lights_the_requested_regions() -> None:
    image = Image.new("RGB", (400, 200), (0, 0, 0))
    regions = crop_set("paper").regions(400, 200)
    dark = _render(RegionView(image, regions=regions), 40)
    lit = _render(RegionView(image, regions=regions, lit={"3"}), 40)

    def colour(lines: list, row: int, col: int) -> tuple[int, int, int]:
        cells = [s for s in lines[row] for _ in s.text]
        triplet = cells[col].style.color.get_truecolor()
        return (triplet.red, triplet.green, triplet.blue)

    # Inside region 3 (bottom-right), away from every outline: black, then tinted towards the lit colour.
    assert colour(dark, 7, 33) == (0, 0, 0)
    tinted = colour(lit, 7, 33)
    assert tinted != (0, 0, 0) and tinted[0] > tinted[2] and tinted[0] <= LIT[0]
    # Region 0 stays dark.
    assert colour(lit, 2, 6) == (0, 0, 0)
    label = next(s for s in lit[7] + lit[8] + lit[6] if s.text.strip() == "3")
    assert label.style.bold


def test_region_view_fits_a_height() -> None:
    view = RegionView(Image.new("RGB", (100, 400)), height=10)
    assert view.cells(80, 10) == (5, 10)


# --- commands ----------------------------------------------------------------------------------------


def test_commands_parse_and_check_their_arguments() -> None:
    assert parse_command("/open 'my scan.png'").args == ("my scan.png",)
    assert parse_command("/server http://h:8000/v1 qwen").args == ("http://h:8000/v1", "qwen")
    assert parse_command("/compare What is the total?").args == ("What is the total?",)
    assert parse_command("/compare").args == ()
    with pytest.raises(ConfigError, match=r"usage: /open PATH"):
        parse_command("/open")
    with pytest.raises(ConfigError, match="unknown command /frobnicate"):
        parse_command("/frobnicate")
    with pytest.raises(ConfigError, match="quote a path"):
        parse_command("/open 'unclosed")
    assert len(help_lines()) == len(COMMANDS)


# --- the session (no screen) ---------------------------------------------------------------------------


def test_session_asks_keeps_history_and_saves(tmp_path: Path, samples: list[SamplePage]) -> None:
    session = DemoSession(out_dir=tmp_path)
    page = samples[0]  # small print: the reader asks for a crop
    image = session.load(page.image, label=page.name, expected=page.answer, question=page.question)
    events = list(session.stream(image, page.question))
    assert events[0].type == "view" and events[-1].type == "result"
    record = session.record()
    assert record.number == 1 and record.correct is True and record.result.crops
    saved = session.save_trajectory(record)
    assert Trajectory.model_validate_json(saved.read_text()).answer == page.answer
    crops = session.save_crops(record, tmp_path / "crops")
    assert [Image.open(p).size for p in crops] == [(c.width, c.height) for c in record.result.crops]
    with pytest.raises(ConfigError, match="no query 2"):
        session.record(2)


def test_session_compares_the_three_policies(samples: list[SamplePage]) -> None:
    session = DemoSession()
    page = samples[0]
    image = session.load(page.image, label=page.name, expected=page.answer, question=page.question)
    rows = session.compare(image, page.question)
    assert [r.policy for r in rows] == ["low-res", "awares", "full-res"]
    by = {r.policy: r for r in rows}
    assert by["low-res"].result.rtr == pytest.approx(0.25, abs=0.01)
    assert by["full-res"].result.rtr == pytest.approx(1.0)
    assert by["awares"].result.rtr > 0.25 and by["awares"].correct is True


def test_session_refuses_bad_changes_and_keeps_what_it_had(tmp_path: Path) -> None:
    session = DemoSession()
    with pytest.raises(ConfigError):
        session.configure(crop_set="hexagons")
    assert session.config.crop_set == "paper"
    with pytest.raises(ConfigError, match="needs --model"):
        session.use_backend(session.backend.server(model=None, base_url="http://127.0.0.1:9/v1"))
    assert session.backend.kind == "reader"
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image at all")
    with pytest.raises(ImageDecodeError):
        session.load(bad)
    with pytest.raises(ConfigError, match="no query yet"):
        session.record()


def test_session_streams_from_a_server(chat_server: ScriptedChatServer, samples: list[SamplePage]) -> None:
    chat_server.enqueue(Completion(text="the value is REF-1"))
    session = DemoSession()
    session.use_backend(session.backend.server(model="scripted-model", base_url=chat_server.base_url))
    image = session.load(samples[1].image, label="p")
    events = list(session.stream(image, "What is it?"))
    assert [e.data["text"] for e in events if e.type == "token"] == ["the", " value", " is", " REF-1"]
    assert chat_server.chat_requests[0].json["stream"] is True
    assert session.record().result.answer == "the value is REF-1"


# --- the app -------------------------------------------------------------------------------------------


def lines(app: DemoApp) -> list[str]:
    """The conversation as shown."""
    return [strip.text.rstrip() for strip in app.query_one("#log", RichLog).lines]


def shown(app: DemoApp) -> str:
    """The conversation as one line of text (the log wraps long lines at spaces)."""
    return " ".join(" ".join(lines(app)).split())


def on_screen(widget: Widget) -> str:
    """The text a widget draws."""
    return "\n".join(strip.text for strip in widget.render_lines(Region(0, 0, *widget.size)))


def status(app: DemoApp) -> str:
    return str(app.query_one("#status", Static).render())


async def submit(app: DemoApp, pilot, text: str | None = None) -> None:
    """Type ``text`` in the input box (or keep what is there) and press Enter; wait for the work to end."""
    if text is not None:
        app.query_one("#ask").value = text
    await pilot.press("enter")
    await app.workers.wait_for_complete()
    await pilot.pause()


def run_app(app: DemoApp, body: Callable[[DemoApp, object], Awaitable[None]]) -> None:
    async def go() -> None:
        async with app.run_test(size=SIZE) as pilot:
            await pilot.pause()
            await body(app, pilot)

    asyncio.run(go())


def test_app_answers_a_sample_on_the_reader(tmp_path: Path, samples: list[SamplePage]) -> None:
    async def body(app: DemoApp, pilot) -> None:
        assert app.query_one("#ask").value == samples[0].question  # the first sample, its question ready
        await submit(app, pilot)
        text = shown(app)
        assert f"you: {samples[0].question}" in text
        assert "model asks for crops" in text
        assert f"answer: {samples[0].answer} (matches the page)" in text
        panel = app.query_one("#view", ImagePanel)
        crops = app.session.record().result.crops
        assert panel.lit == {c.region_id for c in crops}
        assert f"{crops[0].region_id} {crops[0].name}" in on_screen(app.query_one("#crops"))
        assert "RTR 0.50" in status(app) and "2 model calls" in status(app) and "reader" in status(app)

        await submit(app, pilot, "/sample 2")  # large print: answered from the view
        await submit(app, pilot)
        assert f"answer: {samples[1].answer} (matches the page)" in shown(app)
        assert "RTR 0.25" in status(app) and "1 model call" in status(app)
        assert app.query_one("#view", ImagePanel).lit == set()

        await submit(app, pilot, "/history")
        assert "1. document-0" in shown(app) and "2. table-1" in shown(app)
        await submit(app, pilot, "/show 1")
        assert app.query_one("#view", ImagePanel).lit == {c.region_id for c in crops}
        await submit(app, pilot, f"/save {tmp_path / 'q1.json'}")
        assert Trajectory.model_validate_json((tmp_path / "q1.json").read_text()).answer == samples[0].answer
        await submit(app, pilot, f"/crops {tmp_path / 'crops'}")
        assert len(list((tmp_path / "crops").glob("*.png"))) == len(crops)

        await submit(app, pilot, "/compare")
        table = shown(app)
        assert "low-res" in table and "full-res" in table and "1.00" in table and "0.25" in table

    run_app(DemoApp(DemoSession(out_dir=tmp_path), samples=samples), body)


def test_app_streams_from_a_server_and_switches_back(
    chat_server: ScriptedChatServer, samples: list[SamplePage]
) -> None:
    chat_server.enqueue(
        Completion(tool_calls=[("get_crops", {"crops": ["3"]})]),
        Completion(text="the total is 42.00"),
    )

    async def body(app: DemoApp, pilot) -> None:
        await submit(app, pilot, f"/server {chat_server.base_url} scripted-model")
        assert "backend: openai scripted-model" in shown(app)
        await submit(app, pilot, "What is the total?")
        text = shown(app)
        assert "model asks for crops 3" in text
        assert "model (streamed in 4 pieces): the total is 42.00" in text
        assert "answer: the total is 42.00" in text
        assert all(r.json.get("stream") for r in chat_server.chat_requests)
        assert app.query_one("#view", ImagePanel).lit == {"3"}
        assert "openai scripted-model" in status(app) and "2 model calls" in status(app)

        chat_server.enqueue(Completion(text="from the other model"))
        await submit(app, pilot, "/model other-model")  # another model on the same server
        assert f"backend: openai other-model at {chat_server.base_url}" in shown(app)
        await submit(app, pilot, "What is the total?")
        assert chat_server.chat_requests[-1].json["model"] == "other-model"
        assert "answer: from the other model" in shown(app)

        await submit(app, pilot, "/reader")
        await submit(app, pilot, "/sample 2")
        await submit(app, pilot)
        assert f"answer: {samples[1].answer}" in shown(app) and "reader" in status(app)

    run_app(DemoApp(samples=samples), body)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_app_shows_what_goes_wrong_and_carries_on(
    chat_server: ScriptedChatServer, tmp_path: Path, samples: list[SamplePage]
) -> None:
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(bytes(range(256)) * 8)
    huge = tmp_path / "huge.png"
    huge.write_bytes(png_claiming(200_000, 200_000))  # a decompression bomb's header
    chat_server.enqueue(
        Garbage(b"<html>this is not an API</html>"),  # a server that answers garbage
        Completion(tool_calls=[("get_crops", "{not json")]),  # a malformed call: shown back to the model
        Completion(text="sorry, 7"),
    )

    async def body(app: DemoApp, pilot) -> None:
        await submit(app, pilot, f"/open {tmp_path / 'missing.png'}")
        await submit(app, pilot, f"/open {corrupt}")
        await submit(app, pilot, f"/open {huge}")
        await submit(app, pilot, "/frobnicate")
        await submit(app, pilot, "/budget lots")
        await submit(app, pilot, "/crop-set hexagons")
        text = shown(app)
        assert "error (ImageDecodeError)" in text and "missing.png" in text and "corrupt.png" in text
        assert "error (ImageTooLargeError)" in text and "huge.png" in text
        assert "unknown command /frobnicate" in text
        assert "/budget takes a retained token ratio" in text
        assert "error (ConfigError): unknown crop set 'hexagons'" in text

        down = f"http://127.0.0.1:{_closed_port()}/v1"
        await submit(app, pilot, f"/server {down} m")
        await submit(app, pilot, "What is it?")
        assert "error (BackendConnectionError): could not connect" in shown(app)

        await submit(app, pilot, f"/server {chat_server.base_url} scripted-model")
        await submit(app, pilot, "What is it?")
        assert "error (BackendResponseError)" in shown(app) and "is base_url the API root" in shown(app)
        await submit(app, pilot, "What is it?")
        text = shown(app)
        assert "model made an invalid tool call" in text
        assert "answer: sorry, 7" in text
        assert app.is_running

    # No retries, so that the server that is down fails at once (/server keeps these settings).
    session = DemoSession(backend=BackendOptions(max_retries=0, timeout=5))
    run_app(DemoApp(session, samples=samples), body)


def test_app_switches_to_a_local_model_and_streams_it(tiny_vlm_dir: Path, samples: list[SamplePage]) -> None:
    async def body(app: DemoApp, pilot) -> None:
        await submit(app, pilot, f"/model {tiny_vlm_dir}")
        assert f"backend: transformers {tiny_vlm_dir}" in shown(app)
        await submit(app, pilot, "What value is given for Reference?")
        assert "(streamed in" in shown(app) and "answer:" in shown(app)
        record = app.session.record()
        assert record.backend.startswith("transformers") and record.result.trajectory.calls >= 1
        assert f"transformers {tiny_vlm_dir}" in status(app)

    session = DemoSession(backend=BackendOptions(max_new_tokens=8, offline=True))
    run_app(DemoApp(session, samples=samples), body)


def test_app_refuses_a_second_question_while_answering(
    chat_server: ScriptedChatServer, samples: list[SamplePage]
) -> None:
    chat_server.enqueue(Delay(1.0, Completion(text="slow 1")))

    async def body(app: DemoApp, pilot) -> None:
        await submit(app, pilot, f"/server {chat_server.base_url} scripted-model")
        app.query_one("#ask").value = "first?"
        await pilot.press("enter")
        await pilot.pause()
        app.query_one("#ask").value = "second?"
        await pilot.press("enter")
        await pilot.pause()
        assert "busy answering: wait for it to finish" in shown(app)
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert "answer: slow 1" in shown(app) and len(app.session.history) == 1
        assert len(chat_server.chat_requests) == 1

    run_app(DemoApp(samples=samples), body)


def test_app_budget_and_protocol_switches(samples: list[SamplePage]) -> None:
    async def body(app: DemoApp, pilot) -> None:
        await submit(app, pilot, "/budget 0.3")
        await submit(app, pilot, "/protocol awares-text")
        assert "budget 0.3" in status(app) and "protocol awares-text" in status(app)
        await submit(app, pilot, "/sample 1")
        await submit(app, pilot)  # the reader asks for a crop the budget cannot afford
        text = shown(app)
        assert "budget" in text
        assert app.session.record().result.rtr <= 0.3
        await submit(app, pilot, "/crop-set grid-2x2")
        assert "crop set grid-2x2" in status(app)
        assert [r.id for r in app.query_one("#view", ImagePanel).regions if r.id != "all"] == [
            r.id for r in crop_set("grid-2x2").regions(100, 100) if r.id != "all"
        ]

    run_app(DemoApp(samples=samples), body)


def test_cli_demo_help() -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["demo", "--help"])
    assert exit_info.value.code == 0


def test_cli_demo_opens_your_image_on_your_server(
    chat_server: ScriptedChatServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``awares demo IMAGE --base-url URL --model NAME`` as typed; the app runs under the pilot, not a tty."""
    page = tmp_path / "page.png"
    Image.new("RGB", (900, 700), "white").save(page)
    chat_server.enqueue(Completion(text="nothing written here"))
    seen: dict[str, object] = {}

    async def body(app: DemoApp, pilot) -> None:
        assert app.current is not None and app.current.label == str(page)
        await submit(app, pilot, "What does it say?")
        seen["text"], seen["status"] = shown(app), status(app)

    def headless(self: DemoApp) -> None:
        run_app(self, body)

    monkeypatch.setattr(DemoApp, "run", headless)
    code = main(
        [
            "demo",
            str(page),
            "--base-url",
            chat_server.base_url,
            "--model",
            "scripted-model",
            "--protocol",
            "awares-text",
            "--out",
            str(tmp_path / "out"),
        ]
    )
    assert code == 0
    assert "answer: nothing written here" in str(seen["text"])
    assert "openai scripted-model" in str(seen["status"]) and "protocol awares-text" in str(seen["status"])
    assert chat_server.chat_requests[0].json["stream"] is True


def test_trajectory_json_is_the_shared_schema(tmp_path: Path, samples: list[SamplePage]) -> None:
    session = DemoSession(out_dir=tmp_path)
    image = session.load(samples[1].image, label="p")
    list(session.stream(image, samples[1].question))
    data = json.loads(session.save_trajectory(session.record()).read_text())
    assert data["backend"] == "ReaderBackend" and data["answer"] == samples[1].answer
    assert "api_key" not in json.dumps(data).lower()
