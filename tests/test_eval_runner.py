"""Policies as run options of one agent, the evaluation runner on the run engine (resume, kill -9), and
reports, with a scripted remote model on the loopback server."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from chat_server import Completion, HTTPError, RecordedRequest, ScriptedChatServer
from PIL import Image, ImageDraw

import awares_agent.agent
from awares_agent import AwaResAgent, OpenAIBackend
from awares_agent.config import AgentConfig
from awares_agent.engine.shards import INDEX_FILE, ROWS_FILE, ShardSpec
from awares_agent.errors import ConfigError
from awares_agent.evals.report import load_summaries, markdown_table, plot
from awares_agent.evals.runner import awares_crop_counts, read_results, run_policy
from awares_agent.evals.schema import EvalSample
from awares_agent.graphs.context import FROM_CONFIG, RunOptions
from awares_agent.images import ViewSpec
from awares_agent.policies import POLICIES, policy_crops, policy_options
from awares_agent.tools.box_mapping import crops_covering
from awares_agent.tools.crop_sets import crop_set

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent

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
            evidence=(640, 510, 720, 540) if i % 2 == 0 else (10, 10, 200, 60),
            needs_crop=i % 2 == 0,
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


def shard(folder: Path) -> Path:
    """The engine's shard folder of a policy's results."""
    return folder / ShardSpec(1, 1).name


def test_awares_policy(server: ScriptedChatServer, tmp_path: Path) -> None:
    summary = run(server, "awares", tmp_path)
    assert (summary.samples, summary.scored, summary.accuracy) == (6, 6, 100.0)
    assert summary.tool_call_rate == 0.5 and summary.crop_histogram == {"3": 3}
    assert summary.by_needs_crop == {"true": 100.0, "false": 100.0}
    assert summary.rtr == pytest.approx((3 * 0.25 + 3 * (0.25 + 0.25)) / 6, abs=0.03)
    records = read_results(tmp_path / "awares")
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
    records = read_results(tmp_path / "oracle")
    assert records["s0"].crops == ["3"] and records["s1"].crops == ["0"]
    assert oracle.accuracy == 100.0 and oracle.tool_call_rate == 1.0

    everything = run(server, "all-crops", tmp_path)
    assert everything.mean_crops == 9.0 and everything.accuracy == 100.0

    run(server, "awares", tmp_path)
    counts = awares_crop_counts(tmp_path)
    assert counts == {"s0": 1, "s1": 0, "s2": 1, "s3": 0, "s4": 1, "s5": 0}
    run(server, "random", tmp_path, awares_crops=counts, seed=7)
    random_records = read_results(tmp_path / "random")
    assert {i: len(r.crops) for i, r in random_records.items()} == counts
    again = tmp_path / "again"
    run(server, "random", again, awares_crops=counts, seed=7)
    assert {i: r.crops for i, r in read_results(again / "random").items()} == {
        i: r.crops for i, r in random_records.items()
    }


def test_bad_images_are_skipped_not_fatal(server: ScriptedChatServer, tmp_path: Path) -> None:
    data = samples(3)
    data[1] = data[1].model_copy(update={"image": b"not an image"})
    data[2] = data[2].model_copy(update={"image": tmp_path / "missing.png"})
    summary = run(server, "awares", tmp_path, data)
    assert (summary.scored, summary.skipped) == (1, 2)
    records = read_results(tmp_path / "awares")
    assert "missing.png" in (records["s2"].error or "")


def test_resume_after_a_kill(server: ScriptedChatServer, tmp_path: Path) -> None:
    run(server, "low-res", tmp_path, samples(4))
    index = shard(tmp_path / "low-res") / INDEX_FILE
    lines = index.read_text().splitlines()
    # A run killed mid-write: two samples indexed and a torn third index line (all four rows on disk).
    index.write_text("\n".join(lines[:2]) + "\n" + lines[2][: len(lines[2]) // 2])
    assert len(read_results(tmp_path / "low-res")) == 2  # what the kill left reads as two done
    seen = len(server.chat_requests)
    summary = run(server, "low-res", tmp_path, samples(4))
    assert len(server.chat_requests) - seen == 2  # only the two lost samples were asked again
    assert summary.samples == 4 and summary.scored == 4
    assert sorted(read_results(tmp_path / "low-res")) == ["s0", "s1", "s2", "s3"]
    # Repaired: one row per sample, no unindexed or torn line left.
    rows = (shard(tmp_path / "low-res") / ROWS_FILE).read_text().splitlines()
    assert sorted(json.loads(line)["id"] for line in rows) == ["s0", "s1", "s2", "s3"]


def test_backend_failures_are_retried_on_resume(tmp_path: Path) -> None:
    with ScriptedChatServer() as server:
        server.enqueue(HTTPError(500, headers={"x-should-retry": "false"}), *[model] * 5)
        seen: list[tuple[str, str]] = []
        first = run_policy(
            samples(2),
            backend(server),
            "low-res",
            tmp_path,
            concurrency=1,
            on_result=lambda r: seen.append((r.id, r.status)),
        )
        assert (first.scored, first.failed) == (1, 1)
        assert sorted(seen) == [("s0", "failed"), ("s1", "ok")]  # on_result hears of failures too
        failed = read_results(tmp_path / "low-res")["s0"]
        assert failed.status == "failed" and "500" in (failed.error or "")
        assert (failed.question, failed.answers) == ("small code of page 0?", ["CODE 0"])  # kept with it
        second = run_policy(samples(2), backend(server), "low-res", tmp_path, concurrency=1)
        assert (second.scored, second.failed) == (2, 0)
        assert len(server.chat_requests) == 3  # the failed sample only was asked again


def test_forced_crops_are_the_protocols_own_call(server: ScriptedChatServer) -> None:
    for protocol in ("json", "awares-text"):
        agent = AwaResAgent(backend(server), protocol=protocol)
        seen = len(server.chat_requests)
        result = agent.ask(page(2), "small code of page 2?", options=RunOptions(crops=("0", "3")))
        assert [c.region_id for c in result.crops] == ["0", "3"] and result.answer == "CODE 2"
        forced = result.trajectory.messages[2]
        assert forced.role == "assistant"
        if protocol == "json":  # a native tool call, answered by a tool message
            assert [c.name for c in forced.tool_calls] == ["get_crops"]
            assert json.loads(forced.tool_calls[0].arguments) == {"crops": ["0", "3"]}
            assert result.trajectory.messages[3].role == "tool"
        else:
            assert forced.text == "GET_CROPS: ['0', '3']" and not forced.tool_calls
        # The forced turn called no backend: the model was asked once, for its answer, with that turn in the
        # conversation it was sent.
        assert len(server.chat_requests) - seen == 1 and result.trajectory.calls == 1
        sent = server.chat_requests[-1].messages
        assert [m["role"] for m in sent][:3] == ["system", "user", "assistant"]
        if protocol == "json":
            assert sent[2]["tool_calls"][0]["function"]["name"] == "get_crops"
        else:
            assert "GET_CROPS: ['0', '3']" in json.dumps(sent[2])


def test_policy_options() -> None:
    base = AgentConfig(max_rtr=0.5)
    where: dict[str, Any] = {"width": W, "height": H, "sample_id": "s0"}
    assert policy_options("awares", base, **where) == RunOptions()
    assert policy_options("awares", base, **where).max_rtr is FROM_CONFIG  # awares keeps the budget
    assert policy_options("low-res", base, **where) == RunOptions(max_rounds=0)
    full = policy_options("full-res", base, **where)
    assert full.view == ViewSpec(scale=1.0) and full.max_rounds == 0
    oracle = policy_options("oracle", base, evidence=(640, 510, 720, 540), **where)
    assert oracle.max_rtr is None  # forced crops are not trimmed by a budget
    assert oracle.max_rounds == 1 and oracle.crops == ("3",)
    assert oracle.crops == tuple(crops_covering((640, 510, 720, 540), crop_set("paper"), W, H))
    assert policy_options("oracle", base, **where).crops is None  # no box: the model's own first turn
    everything = policy_options("all-crops", base, **where)
    assert everything.crops == tuple(str(i) for i in range(9))  # every region but "all"
    assert policy_options("all-crops", AgentConfig(max_rounds=3), **where).max_rounds == 3
    picks = policy_options("random", base, awares_crops=2, seed=7, **where).crops
    assert picks is not None and len(picks) == 2 and set(picks) <= set(everything.crops)
    assert policy_options("random", base, awares_crops=2, seed=7, **where).crops == picks  # seeded
    draws = {policy_crops("random", base, awares_crops=2, seed=s, **where)[0] for s in range(20)}
    assert len(draws) > 1  # and random across seeds
    assert policy_options("random", base, awares_crops=0, **where).crops is None
    with pytest.raises(ConfigError, match="awares run's crop count"):
        policy_options("random", base, **where)
    with pytest.raises(ConfigError, match="unknown policy"):
        policy_options("zoom", base, **where)


def test_every_policy_runs_through_one_compiled_graph(
    server: ScriptedChatServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    built: list[object] = []
    real_build = awares_agent.agent.build_graph

    def counting_build(*args: Any, **kwargs: Any) -> Any:
        built.append(graph := real_build(*args, **kwargs))
        return graph

    monkeypatch.setattr(awares_agent.agent, "build_graph", counting_build)
    agent = AwaResAgent(backend(server))
    graph = agent.graph
    contexts: list[tuple[int, RunOptions]] = []
    real_invoke = graph.invoke

    def spying_invoke(*args: Any, **kwargs: Any) -> Any:
        contexts.append((id(graph), kwargs["context"]))
        return real_invoke(*args, **kwargs)

    monkeypatch.setattr(graph, "invoke", spying_invoke)
    summaries = {}
    for policy in ("awares", *[p for p in POLICIES if p != "awares"]):
        counts = awares_crop_counts(tmp_path) if policy == "random" else None
        summaries[policy] = run_policy(samples(), agent, policy, tmp_path, awares_crops=counts, concurrency=3)
    assert len(built) == 1 and built[0] is graph  # compiled once, for six policies and 36 queries
    assert len(contexts) == 6 * 6 and {g for g, _ in contexts} == {id(graph)}
    forced = [c for _, c in contexts if c.crops is not None]
    assert len(forced) == 6 + 6 + 3  # all-crops, oracle, and random where awares cropped
    # The same figures as the policies always gave on this toy benchmark.
    assert summaries["low-res"].accuracy == 50.0 and summaries["full-res"].rtr == pytest.approx(1.0)
    assert summaries["oracle"].accuracy == 100.0 and summaries["all-crops"].mean_crops == 9.0
    with pytest.raises(ConfigError, match="not with an agent"):
        run_policy(samples(), agent, "awares", tmp_path, config=AgentConfig())


def test_run_policy_from_a_thread_and_from_inside_an_event_loop(
    server: ScriptedChatServer, tmp_path: Path
) -> None:
    outcomes: dict[str, object] = {}

    def in_thread() -> None:
        outcomes["thread"] = run(server, "low-res", tmp_path / "thread", samples(2))

    worker = threading.Thread(target=in_thread)
    worker.start()
    worker.join(60)

    async def in_loop() -> object:
        return run(server, "low-res", tmp_path / "loop", samples(2))  # a notebook's situation

    outcomes["loop"] = asyncio.run(in_loop())
    for where in ("thread", "loop"):
        summary = outcomes[where]
        assert getattr(summary, "scored", None) == 2, where
        assert sorted(read_results(tmp_path / where / "low-res")) == ["s0", "s1"]


def _indexed(folder: Path) -> int:
    try:
        return (folder / INDEX_FILE).read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def test_sigkill_mid_evaluation_then_resume_redoes_nothing_and_loses_nothing(tmp_path: Path) -> None:
    count = 150
    folder = shard(tmp_path / "awares")
    command = [sys.executable, str(TESTS / "eval_worker.py"), str(tmp_path), str(count), "4"]
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + str(TESTS)}
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while _indexed(folder) < 40 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL, err.decode()[-2000:]
    before = read_results(tmp_path / "awares")  # the folder as the kill left it, read before any repair
    assert 40 <= len(before) < count and all(r.status in ("ok", "skipped") for r in before.values())
    rows_before = {i: r.model_dump_json() for i, r in before.items()}

    final = subprocess.run(command, env=env, capture_output=True, timeout=300)
    assert final.returncode == 0, final.stderr.decode()[-2000:]
    ran = json.loads(final.stdout.decode().strip().splitlines()[-1])
    assert sorted(ran) == sorted(set(ran))  # each sample evaluated once by the resumed run
    assert set(ran) == {f"e{n:04d}" for n in range(count)} - set(before)  # and none that was done
    after = read_results(tmp_path / "awares")
    assert sorted(after) == [f"e{n:04d}" for n in range(count)]  # nothing lost
    assert {i: after[i].model_dump_json() for i in before} == rows_before  # the earlier results kept as-is
    lines = (folder / ROWS_FILE).read_bytes().splitlines()
    assert len(lines) == count and len({json.loads(line)["id"] for line in lines}) == count  # no duplicate
    assert sum(r.status == "skipped" for r in after.values()) == count // 10  # the corrupt images


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


def test_each_policy_is_timed_cold(tmp_path: Path) -> None:
    """A cache the policy before warmed (the reader's OCR of the same view) is forgotten before the next."""
    from awares_agent.baselines.reader import ReaderBackend
    from awares_agent.evals.runner import CachingBackend

    reader = ReaderBackend()
    assert isinstance(reader, CachingBackend)
    cache = reader.policy.images.cache
    cache.get("warmed-by-an-earlier-policy", lambda: [])
    run_policy(samples(1), reader, "low-res", tmp_path, concurrency=1)
    assert cache.get("warmed-by-an-earlier-policy", lambda: ["read again"]) == ["read again"]
