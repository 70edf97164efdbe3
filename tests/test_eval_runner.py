"""Policies, the resumable runner and reports, with a scripted remote model on the loopback server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from awares_agent.evals.policies import FixedCropsBackend, policy_config
from awares_agent.evals.report import load_summaries, markdown_table, plot
from awares_agent.evals.runner import SAMPLES_FILE, awares_crop_counts, read_results, run_policy
from awares_agent.evals.schema import EvalSample
from chat_server import Completion, HTTPError, RecordedRequest, ScriptedChatServer
from PIL import Image, ImageDraw

from awares_agent import OpenAIBackend
from awares_agent.config import AgentConfig

W, H = 800, 600


def page(i: int) -> Image.Image:
    img = Image.new("RGB", (W, H), (255, 255 - i, 255))
    ImageDraw.Draw(img).text((650, 520), f"CODE {i}", fill="black")
    return img


def samples(n: int = 6) -> list[EvalSample]:
    """Even samples are 'small' (need crop 3 to answer), odd ones are readable from the view."""
    return [
        EvalSample(
            id=f"s{i}",
            image=page(i),
            question=f"{'small' if i % 2 == 0 else 'large'} code of page {i}?",
            answers=[f"CODE {i}"],
            bbox=(640, 510, 720, 540) if i % 2 == 0 else (10, 10, 200, 60),
            needs_hr=i % 2 == 0,
            category="even" if i % 2 == 0 else "odd",
        )
        for i in range(n)
    ]


def model(request: RecordedRequest) -> Completion:
    """A stand-in VLM: reads the question; asks for crop 3 on 'small' questions unless it already has crops
    (or cannot crop), and answers right only when it saw a full-resolution image or a crop."""
    messages = request.messages
    question = next(p["text"] for p in messages[1]["content"] if p["type"] == "text")
    number = int(question.rsplit(" ", 1)[1].rstrip("?"))
    images = request.images()
    sharp = len(images) > 1 or images[0].size == (W, H)
    if "small" in question and not sharp and request.tools:
        return Completion(tool_calls=[("get_crops", {"crops": ["3"]})])
    return Completion(text=f"CODE {number}" if sharp or "large" in question else "CODE ?")


@pytest.fixture
def server() -> ScriptedChatServer:
    with ScriptedChatServer() as s:
        s.enqueue(*[model] * 200)
        yield s


def backend(server: ScriptedChatServer) -> OpenAIBackend:
    return OpenAIBackend("Qwen/Qwen2.5-VL-7B-Instruct", base_url=server.base_url, max_retries=0)


def run(
    server: ScriptedChatServer, policy: str, out: Path, data: list[EvalSample] | None = None, **kw: object
):
    return run_policy(data or samples(), backend(server), policy, out, benchmark="toy", **kw)


def test_awares_policy(server: ScriptedChatServer, tmp_path: Path) -> None:
    summary = run(server, "awares", tmp_path)
    assert (summary.samples, summary.scored, summary.accuracy) == (6, 6, 100.0)
    assert summary.tool_call_rate == 0.5 and summary.crop_histogram == {"3": 3}
    assert summary.by_needs_hr == {"true": 100.0, "false": 100.0}
    assert summary.rtr == pytest.approx((3 * 0.25 + 3 * (0.25 + 0.25)) / 6, abs=0.03)
    records = read_results(tmp_path / "awares" / SAMPLES_FILE)
    assert records["s0"].crops == ["3"] and records["s1"].crops == []
    assert records["s0"].trajectory is not None and records["s0"].trajectory.answer == "CODE 0"
    assert json.loads((tmp_path / "awares" / "summary.json").read_text())["accuracy"] == 100.0


def test_low_and_full_resolution(server: ScriptedChatServer, tmp_path: Path) -> None:
    low = run(server, "low-res", tmp_path)
    assert low.accuracy == 50.0 and low.tool_call_rate == 0.0
    assert all(r.tools is None for r in server.chat_requests)
    seen = len(server.chat_requests)
    full = run(server, "full-res", tmp_path)
    assert full.accuracy == 100.0 and full.rtr == pytest.approx(1.0)
    assert {r.images()[0].size for r in server.chat_requests[seen:]} == {(W, H)}
    assert low.by_category == {"even": 0.0, "odd": 100.0}


def test_oracle_all_crops_and_random(server: ScriptedChatServer, tmp_path: Path) -> None:
    oracle = run(server, "oracle", tmp_path)
    records = read_results(tmp_path / "oracle" / SAMPLES_FILE)
    assert records["s0"].crops == ["3"] and records["s1"].crops == ["0"]
    assert oracle.accuracy == 100.0 and oracle.tool_call_rate == 1.0

    everything = run(server, "all-crops", tmp_path)
    assert everything.mean_crops == 9.0 and everything.accuracy == 100.0

    run(server, "awares", tmp_path)
    counts = awares_crop_counts(tmp_path)
    assert counts == {"s0": 1, "s1": 0, "s2": 1, "s3": 0, "s4": 1, "s5": 0}
    run(server, "random", tmp_path, awares_crops=counts, seed=7)
    random_records = read_results(tmp_path / "random" / SAMPLES_FILE)
    assert {i: len(r.crops) for i, r in random_records.items()} == counts
    again = tmp_path / "again"
    run(server, "random", again, awares_crops=counts, seed=7)
    assert {i: r.crops for i, r in read_results(again / "random" / SAMPLES_FILE).items()} == {
        i: r.crops for i, r in random_records.items()
    }


def test_bad_images_are_skipped_not_fatal(server: ScriptedChatServer, tmp_path: Path) -> None:
    data = samples(3)
    data[1] = data[1].model_copy(update={"image": b"not an image"})
    data[2] = data[2].model_copy(update={"image": tmp_path / "missing.png"})
    summary = run(server, "awares", tmp_path, data)
    assert (summary.scored, summary.skipped) == (1, 2)
    records = read_results(tmp_path / "awares" / SAMPLES_FILE)
    assert "missing.png" in (records["s2"].error or "")


def test_resume_after_a_kill(server: ScriptedChatServer, tmp_path: Path) -> None:
    run(server, "low-res", tmp_path, samples(4))
    jsonl = tmp_path / "low-res" / SAMPLES_FILE
    lines = jsonl.read_text().splitlines()
    # A run killed mid-write: two complete records and a torn third.
    jsonl.write_text("\n".join(lines[:2]) + "\n" + lines[2][: len(lines[2]) // 2])
    seen = len(server.chat_requests)
    summary = run(server, "low-res", tmp_path, samples(4))
    assert len(server.chat_requests) - seen == 2  # only the two lost samples were asked again
    assert summary.samples == 4 and summary.scored == 4
    assert sorted(read_results(jsonl)) == ["s0", "s1", "s2", "s3"]


def test_backend_failures_are_retried_on_resume(tmp_path: Path) -> None:
    with ScriptedChatServer() as server:
        server.enqueue(HTTPError(500, headers={"x-should-retry": "false"}), *[model] * 5)
        first = run_policy(samples(2), backend(server), "low-res", tmp_path, concurrency=1)
        assert (first.scored, first.failed) == (1, 1)
        second = run_policy(samples(2), backend(server), "low-res", tmp_path, concurrency=1)
        assert (second.scored, second.failed) == (2, 0)


def test_fixed_crops_backend_speaks_both_protocols(server: ScriptedChatServer) -> None:
    from awares_agent import AwaResAgent

    for protocol in ("json", "awares-text"):
        wrapped = FixedCropsBackend(backend(server), ["0", "3"])
        result = AwaResAgent(wrapped, protocol=protocol).ask(page(2), "small code of page 2?")
        assert [c.region_id for c in result.crops] == ["0", "3"] and result.answer == "CODE 2"


def test_policy_configs() -> None:
    base = AgentConfig(max_rtr=0.5)
    assert policy_config("low-res", base).max_rounds == 0
    full = policy_config("full-res", base)
    assert full.view_scale == 1.0 and full.max_rounds == 0
    assert policy_config("oracle", base).max_rtr is None  # forced crops are not trimmed by a budget
    assert policy_config("awares", base) == base


def test_report_table_and_plot(server: ScriptedChatServer, tmp_path: Path) -> None:
    for policy in ("awares", "low-res", "full-res"):
        run(server, policy, tmp_path / "run")
    summaries = load_summaries([tmp_path / "run"])
    table = markdown_table(summaries)
    lines = table.splitlines()
    assert lines[0].startswith("| policy | toy |")
    assert [line.split("|")[1].strip() for line in lines[2:5]] == ["awares", "low-res", "full-res"]
    assert "100.00 / 1.00" in table  # full-res
    png = plot(summaries, tmp_path / "plot.png")
    assert Image.open(png).size[0] > 300
