"""`awares eval` and `awares report` end to end: custom JSONL data, a scripted model, resume, report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from chat_server import ScriptedChatServer
from test_eval_runner import model, page

from awares_agent.cli import main


@pytest.fixture
def jsonl(tmp_path: Path) -> Path:
    (tmp_path / "images").mkdir()
    rows = []
    for i in range(4):
        page(i).save(tmp_path / "images" / f"p{i}.png")
        size = "small" if i % 2 == 0 else "large"
        rows.append(
            {
                "id": f"p{i}",
                "image": f"images/p{i}.png",
                "question": f"{size} code of page {i}?",
                "answers": [f"CODE {i}"],
            }
        )
    rows.append(
        {"id": "broken", "image": "images/missing.png", "question": "small code of page 9?", "answers": ["x"]}
    )
    path = tmp_path / "data.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def test_eval_then_report(jsonl: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    with ScriptedChatServer() as server:
        server.enqueue(*[model] * 40)
        args = ["eval", "--bench", str(jsonl), "--base-url", server.base_url, "--model", "qwen2.5-vl-7b"]
        args += ["--policy", "low-res,awares", "--out", str(out), "--max-retries", "0"]
        assert main(args) == 0
        first = len(server.chat_requests)
        assert main(args) == 0  # everything is done: the rerun asks nothing
        assert len(server.chat_requests) == first
    printed = capsys.readouterr().out
    assert "low-res" in printed and "awares" in printed and "1 skipped" in printed
    awares = json.loads((out / "awares" / "summary.json").read_text())
    assert (awares["scored"], awares["skipped"], awares["accuracy"]) == (4, 1, 100.0)
    assert json.loads((out / "low-res" / "summary.json").read_text())["accuracy"] == 50.0

    assert main(["report", str(out)]) == 0
    assert (out / "report.md").read_text().startswith("| policy |")
    assert (out / "accuracy_vs_rtr.png").stat().st_size > 1000


def test_unknown_benchmark_lists_the_known_ones(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eval", "--bench", "imagenet", "--out", str(tmp_path), "--policy", "low-res"]) == 2
    err = capsys.readouterr().err
    assert "chartqa" in err and "docvqa" in err and "Traceback" not in err


def test_unknown_policy(jsonl: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eval", "--bench", str(jsonl), "--out", str(tmp_path), "--policy", "zoom-everything"]) == 2
    assert "awares, low-res" in capsys.readouterr().err


def test_report_needs_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", str(tmp_path)]) == 2
    assert "awares eval" in capsys.readouterr().err
