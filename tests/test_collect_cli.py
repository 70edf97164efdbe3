"""`awares collect` end to end: a teacher and an LLM judge on a loopback server, shards, merge, SIGKILL."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from chat_server import Completion, Delay, HTTPError, RecordedRequest, ScriptedChatServer
from datasets import load_from_disk
from PIL import Image, ImageDraw

from awares_agent.cli import main
from awares_agent.engine import read_failures, read_rows

SECRET = "sk-test-collect-4f1d9b2e7a"
N = 12


def teacher_and_judge(request: RecordedRequest) -> Completion:
    """A teacher that gets even pages right and odd ones wrong, and a judge that compares honestly."""
    system = request.messages[0]["content"] if request.messages else ""
    text = request.messages[-1]["content"]
    if isinstance(text, list):
        text = " ".join(p.get("text", "") for p in text if p.get("type") == "text")
    if "You grade answers" in str(system):
        refs = json.loads(re.search(r"Reference answers: (\[.*\])", text).group(1))  # type: ignore[union-attr]
        candidate = re.search(r"Candidate answer: (.*)\n", text).group(1)  # type: ignore[union-attr]
        correct = candidate.strip() in refs
        return Completion(text=json.dumps({"correct": correct, "reason": "same" if correct else "differs"}))
    page = int(re.search(r"page (\d+)", text).group(1))  # type: ignore[union-attr]
    return Completion(text=f"CODE {page}" if page % 2 == 0 else "no idea")


def page(i: int) -> Image.Image:
    image = Image.new("RGB", (320, 240), "white")
    ImageDraw.Draw(image).text((20 + 10 * (i % 5), 30 + 12 * (i % 7)), f"CODE {i}", fill="black")
    return image


@pytest.fixture
def data(tmp_path: Path) -> Path:
    (tmp_path / "images").mkdir()
    rows = []
    for i in range(N):
        page(i).save(tmp_path / "images" / f"p{i}.png")
        rows.append(
            {
                "id": f"p{i}",
                "image": f"images/p{i}.png",
                "question": f"code of page {i}?",
                "answers": [f"CODE {i}"],
            }
        )
    path = tmp_path / "data.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def rollout_args(data: Path, out: Path, server: ScriptedChatServer, *extra: str) -> list[str]:
    return [
        "collect",
        "rollout",
        "--bench",
        str(data),
        "--out",
        str(out),
        "--base-url",
        server.base_url,
        "--model",
        "teacher-vl",
        "--judge",
        "llm",
        "--judge-model",
        "judge-lm",
        "--judge-base-url",
        server.base_url,
        "--max-retries",
        "0",
        *extra,
    ]


def all_text_under(folder: Path) -> str:
    return "".join(p.read_bytes().decode("latin-1") for p in folder.rglob("*") if p.is_file())


def test_rollout_with_an_llm_judge_writes_a_trl_dataset_and_no_secret(
    data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    out = tmp_path / "run"
    with ScriptedChatServer() as server:
        server.enqueue(*[teacher_and_judge] * (2 * N))
        assert main(rollout_args(data, out, server)) == 0
        asked = len(server.chat_requests)
        assert asked == 2 * N  # one teacher turn and one verdict per sample
        assert all(r.headers.get("authorization") == f"Bearer {SECRET}" for r in server.chat_requests)
        assert main(rollout_args(data, out, server)) == 0  # done: a rerun asks nothing
        assert len(server.chat_requests) == asked
    printed = capsys.readouterr().out
    assert "judged correct" in printed and "dataset:" in printed
    rows = {r["id"]: r for r in read_rows(out)}
    assert len(rows) == N
    for i in range(N):
        verdict = rows[f"p{i}"]["verdict"]
        assert verdict["correct"] is (i % 2 == 0) and verdict["judge"] == "llm:judge-lm"
    dataset = load_from_disk(str(out / "export" / "dataset"))
    assert len(dataset) == N and sorted(dataset["id"]) == sorted(rows)
    assert SECRET not in all_text_under(out)


def test_correct_only_export_and_re_export(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    with ScriptedChatServer() as server:
        server.enqueue(*[teacher_and_judge] * (2 * N))
        assert main(rollout_args(data, out, server, "--correct-only")) == 0
    assert len(load_from_disk(str(out / "export" / "dataset"))) == N // 2
    assert main(["collect", "export", str(out), "--to", str(tmp_path / "all")]) == 0
    assert len(load_from_disk(str(tmp_path / "all" / "dataset"))) == N


def test_failed_samples_are_recorded_and_retried_on_the_next_run(
    data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    with ScriptedChatServer() as server:
        broken = HTTPError(500, headers={"x-should-retry": "false"})
        server.enqueue(*[teacher_and_judge] * (2 * N - 4), broken, broken)
        args = rollout_args(data, out, server, "--concurrency", "1", "--sample-attempts", "1")
        assert main(args) == 1
        failures = read_failures(out)
        assert len(failures) >= 1 and "500" in json.dumps(failures)
        assert "run the same command again" in " ".join(capsys.readouterr().out.split())
        done = len(list(read_rows(out)))
        assert done < N
        server.enqueue(*[teacher_and_judge] * (2 * N))
        assert main(rollout_args(data, out, server)) == 0
    assert sorted(r["id"] for r in read_rows(out)) == sorted(f"p{i}" for i in range(N))


def test_a_transient_server_error_is_retried_within_the_run(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    with ScriptedChatServer() as server:
        broken = HTTPError(503, headers={"x-should-retry": "false"})
        server.enqueue(broken, *[teacher_and_judge] * (2 * N))
        assert main(rollout_args(data, out, server, "--concurrency", "1")) == 0
    assert read_failures(out) == {}
    assert len(list(read_rows(out))) == N


def test_shards_split_the_work_and_merge_into_one_dataset(data: Path, tmp_path: Path) -> None:
    with ScriptedChatServer() as server:
        server.enqueue(*[teacher_and_judge] * (2 * N))
        for i in (1, 2, 3):
            assert main(rollout_args(data, tmp_path / f"m{i}", server, "--shard", f"{i}/3")) == 0
    parts = [sorted(r["id"] for r in read_rows(tmp_path / f"m{i}")) for i in (1, 2, 3)]
    assert sum(map(len, parts)) == N and len({i for p in parts for i in p}) == N
    assert not (tmp_path / "m1" / "export").exists()  # a shard alone is not exported
    merged = tmp_path / "merged"
    assert (
        main(["collect", "merge", *(str(tmp_path / f"m{i}") for i in (1, 2, 3)), "--out", str(merged)]) == 0
    )
    dataset = load_from_disk(str(merged / "export" / "dataset"))
    assert sorted(dataset["id"]) == sorted(f"p{i}" for i in range(N))


@pytest.mark.slow
def test_a_collection_killed_with_sigkill_resumes_to_exactly_one_row_per_sample(
    data: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    command = [sys.executable, "-m", "awares_agent.cli"]
    env = {**os.environ, "OPENAI_API_KEY": SECRET}
    with ScriptedChatServer() as server:
        server.enqueue(*[Delay(0.15, then=teacher_and_judge)] * (4 * N))
        args = rollout_args(data, out, server, "--concurrency", "2")
        process = subprocess.Popen(
            [*command, *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        index = out / "shard-1-of-1" / "done.ids"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and process.poll() is None:
            if index.exists() and index.read_bytes().count(b"\n") >= 3:
                break
            time.sleep(0.02)
        assert process.poll() is None, process.stderr.read().decode() if process.stderr else ""
        process.send_signal(signal.SIGKILL)
        process.wait()
        killed_at = len(list(read_rows(out)))
        assert 3 <= killed_at < N
        server.enqueue(*[teacher_and_judge] * (2 * N))
        finished = subprocess.run([*command, *args], env=env, capture_output=True, timeout=300)
        assert finished.returncode == 0, finished.stderr.decode()
    ids = [r["id"] for r in read_rows(out)]
    assert sorted(ids) == sorted(f"p{i}" for i in range(N))  # each exactly once
    lines = (out / "shard-1-of-1" / "rows.jsonl").read_text().splitlines()
    assert len(lines) == N
    assert len(load_from_disk(str(out / "export" / "dataset"))) == N


@pytest.mark.slow
def test_label_with_the_offline_reader_from_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from awares_agent.evals.dataset import save_samples
    from awares_agent.evals.synthetic import generate

    data = save_samples(generate(4, seed=11, size_range=((800, 600), (960, 720))), tmp_path / "syn")
    out = tmp_path / "labels"
    args = ["collect", "label", "--bench", str(data), "--out", str(out), "--concurrency", "2"]
    assert main(args) == 0
    printed = " ".join(capsys.readouterr().out.split())
    assert "direct" in printed and "dataset:" in printed
    rows = list(read_rows(out))
    assert len(rows) == 4 and all(r["mode"] == "label" for r in rows)
    dataset = load_from_disk(str(out / "export" / "dataset"))
    ok = [r for r in rows if r["status"] == "ok"]
    assert len(dataset) == len(ok) >= 1
    assert set(dataset["label"]) <= {"direct", "tool"}
    for record in dataset:
        assert record["teacher"] == "awares-reader" and record["correct"] is True
