"""The lmms-eval plugin: ``lmms-eval --model awares`` through lmms-eval's own CLI, on a local task.

The end-to-end test runs lmms-eval as a user would (``python -m lmms_eval --model awares ... --include_path``)
on a task folder written by ``awares lmms-task``, then reads its output with ``awares report``. The others
drive the plugin class in process with lmms-eval's own ``Instance`` requests (what its evaluator builds), to
check each policy's cost, the side file and the errors quickly.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from lmms_eval.api.instance import GenerationResult, Instance
from lmms_eval.models.model_utils.gen_metrics import get_logged_metrics_history, reset_logged_metrics

from awares_agent.cli import main
from awares_agent.errors import ConfigError
from awares_agent.evals.lmms import AwaresLMM, manifest
from awares_agent.evals.lmms_results import lmms_summaries, parse_model_args
from awares_agent.evals.report import load_summaries
from awares_agent.evals.synthetic.generator import generate

TASK = "awares_synthetic"


@pytest.fixture(scope="module")
def task_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A local lmms-eval task of 3 synthetic pages, written as ``awares lmms-task`` writes it."""
    folder = tmp_path_factory.mktemp("lmms-task")
    assert main(["lmms-task", "--bench", "synthetic", "--limit", "3", "--out", str(folder)]) == 0
    assert (folder / f"{TASK}.yaml").is_file() and (folder / "utils.py").is_file()
    return folder


def _docs(n: int = 3) -> list[dict]:
    return [{"image": s.image, "question": s.question, "answers": s.answers} for s in generate(n, seed=0)]


def _requests(docs: list[dict], task: str = TASK) -> list[Instance]:
    def doc_to_visual(doc: dict) -> list:
        return [doc["image"]]

    return [
        Instance(
            request_type="generate_until",
            arguments=(doc["question"], {"max_new_tokens": 64}, doc_to_visual, i, task, "test"),
            idx=0,
            metadata={"task": task, "doc_id": i, "repeats": 1},
        )
        for i, doc in enumerate(docs)
    ]


def _model(docs: list[dict], task: str = TASK, **args: object) -> AwaresLMM:
    lm = AwaresLMM(**args)
    lm.task_dict = {task: {"test": docs}}
    return lm


def test_the_entry_point_is_registered() -> None:
    from importlib.metadata import entry_points

    (point,) = [ep for ep in entry_points(group="lmms_eval.models") if ep.name == "awares"]
    assert point.load() is manifest
    assert manifest().simple_class_path == "awares_agent.evals.lmms.AwaresLMM"


def test_lmms_eval_cli_runs_a_local_task_with_rtr_beside_accuracy(task_dir: Path, tmp_path: Path) -> None:
    out, side = tmp_path / "results", tmp_path / "trajectories.jsonl"
    command = [
        sys.executable, "-m", "lmms_eval", "--model", "awares",
        "--model_args", f"backend=reader,trajectories={side}",
        "--tasks", TASK, "--include_path", str(task_dir), "--output_path", str(out), "--batch_size", "1",
    ]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    # Run from elsewhere: a build's awares.egg-info left in the checkout would shadow the installed metadata.
    run = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600, cwd=tmp_path)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    printed = run.stdout + run.stderr
    assert TASK in printed and "accuracy" in printed and "avg_rtr" in printed

    (results_file,) = list(out.rglob("*_results.json"))
    data = json.loads(results_file.read_text())
    accuracy = data["results"][TASK]["accuracy,none"]
    records = [json.loads(line) for line in side.read_text().splitlines()]
    assert sorted(r["doc_id"] for r in records) == [0, 1, 2]
    assert all(
        r["task"] == TASK and r["split"] == "test" and r["trajectory"]["answer"] == r["answer"]
        for r in records
    )
    rtr = sum(r["rtr"] for r in records) / 3
    assert data["throughput"]["avg_rtr"] == pytest.approx(rtr)
    assert data["throughput"]["avg_model_calls"] == pytest.approx(sum(r["model_calls"] for r in records) / 3)

    (summary,) = load_summaries([out])
    assert (summary.benchmark, summary.policy, summary.model) == (TASK, "awares", "reader")
    assert summary.accuracy == pytest.approx(100 * accuracy) and summary.rtr == pytest.approx(rtr, abs=1e-4)
    assert main(["report", str(out), "--markdown", str(tmp_path / "report.md")]) == 0
    assert f"{100 * accuracy:.2f} / {rtr:.2f}" in (tmp_path / "report.md").read_text()


@pytest.mark.parametrize(("policy", "rtr"), [("low-res", 0.25), ("full-res", 1.0)])
def test_each_policy_costs_what_it_should(policy: str, rtr: float, tmp_path: Path) -> None:
    docs = _docs(2)
    side = tmp_path / "side.jsonl"
    reset_logged_metrics()
    lm = _model(docs, backend="reader", policy=policy, trajectories=str(side))
    answers = lm.generate_until(_requests(docs))
    assert all(isinstance(a, GenerationResult) for a in answers)
    records = [json.loads(line) for line in side.read_text().splitlines()]
    assert [r["policy"] for r in records] == [policy, policy]
    assert all(r["rtr"] == pytest.approx(rtr, abs=0.02) and r["crops"] == [] for r in records)
    logged = get_logged_metrics_history()
    assert sorted(m["rtr"] for m in logged) == sorted(r["rtr"] for r in records)
    assert all(m["crop_calls"] == 0 and m["model_calls"] == 1 for m in logged)


def test_all_crops_sends_every_region_and_answers_in_order(tmp_path: Path) -> None:
    docs = _docs(2)
    lm = _model(docs, backend="reader", policy="all-crops", concurrency=2)
    answers = lm.generate_until(_requests(docs))
    assert [a.text for a in answers] == [d["answers"][0] for d in docs]


def test_a_failed_sample_is_answered_empty_and_recorded(tmp_path: Path) -> None:
    docs = _docs(1)
    side = tmp_path / "side.jsonl"
    lm = _model(
        docs, backend="openai", base_url="http://127.0.0.1:9/v1", model="m", max_retries=0, timeout=2,
        trajectories=str(side),
    )  # fmt: skip
    assert [a.text for a in lm.generate_until(_requests(docs))] == [""]
    (record,) = [json.loads(line) for line in side.read_text().splitlines()]
    assert record["doc_id"] == 0 and "BackendConnectionError" in record["error"]


def test_bad_model_args_are_refused() -> None:
    with pytest.raises(ConfigError, match="unknown awares model_args frobnicate"):
        AwaresLMM(frobnicate=1)
    with pytest.raises(ConfigError, match="oracle needs evidence boxes"):
        AwaresLMM(policy="oracle")
    with pytest.raises(ConfigError, match="invalid agent configuration"):
        AwaresLMM(max_rtr=-1)
    with pytest.raises(ConfigError, match="no loglikelihood"):
        AwaresLMM().loglikelihood([])


def test_model_args_are_read_as_lmms_eval_writes_them() -> None:
    text = (
        'backend=openai,base_url=http://h:8000/v1,model=Qwen/Qwen2.5-VL-7B,extra={"a":1,"b":2},policy=low-res'
    )
    args = parse_model_args(text)
    assert args == {
        "backend": "openai",
        "base_url": "http://h:8000/v1",
        "model": "Qwen/Qwen2.5-VL-7B",
        "extra": '{"a":1,"b":2}',
        "policy": "low-res",
    }
    # lmms-eval turns "2.5" into a float: a model name stays text.
    assert AwaresLMM(model=2.5, backend="openai", base_url="http://h/v1").backend_options.model == "2.5"


def _results(folder: Path, tasks: dict[str, float], model_args: str, throughput: dict | None = None) -> None:
    data = {
        "results": {
            t: {"alias": t, "accuracy,none": a, "accuracy_stderr,none": 0.0} for t, a in tasks.items()
        },
        "configs": {t: {"metric_list": [{"metric": "accuracy"}]} for t in tasks},
        "n-samples": {t: {"original": 4, "effective": 4} for t in tasks},
        "config": {"model": "awares", "model_args": model_args},
        "throughput": throughput or {},
    }
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "20261202_000000_results.json").write_text(json.dumps(data))


def test_report_without_a_side_file_uses_the_throughput_summary(tmp_path: Path) -> None:
    throughput = {"avg_rtr": 0.25, "avg_crops": 0.0, "avg_crop_calls": 0.0, "total_elapsed_time": 8.0}
    _results(tmp_path / "one", {"t1": 0.5}, "backend=reader,policy=low-res", throughput)
    (summary,) = lmms_summaries(tmp_path / "one")
    assert (summary.accuracy, summary.rtr, summary.policy, summary.latency_p50) == (
        50.0,
        0.25,
        "low-res",
        2.0,
    )
    _results(tmp_path / "two", {"t1": 0.5, "t2": 1.0}, "backend=reader", {"avg_rtr": 0.3})
    with pytest.raises(ConfigError, match="2 tasks in one run and no trajectories file"):
        lmms_summaries(tmp_path / "two")


def test_report_splits_a_run_of_two_tasks_by_its_side_file(tmp_path: Path) -> None:
    side = tmp_path / "side.jsonl"
    lines = [
        {
            "task": "t1",
            "split": "test",
            "doc_id": 0,
            "policy": "awares",
            "rtr": 0.25,
            "crops": [],
            "latency_s": 1,
        },
        {
            "task": "t2",
            "split": "test",
            "doc_id": 0,
            "policy": "awares",
            "rtr": 0.5,
            "crops": ["3"],
            "latency_s": 2,
        },
        {
            "task": "t2",
            "split": "test",
            "doc_id": 1,
            "policy": "awares",
            "error": "BackendTimeoutError: slow",
        },
    ]
    side.write_text("\n".join(json.dumps(x) for x in lines) + "\n{cut short")
    _results(tmp_path / "run", {"t1": 1.0, "t2": 0.5}, f"backend=reader,trajectories={side}")
    by = {s.benchmark: s for s in lmms_summaries(tmp_path / "run")}
    assert (by["t1"].rtr, by["t1"].tool_call_rate) == (0.25, 0.0)
    assert (by["t2"].rtr, by["t2"].tool_call_rate, by["t2"].failed, by["t2"].crop_histogram) == (
        0.5,
        1.0,
        1,
        {"3": 1},
    )
