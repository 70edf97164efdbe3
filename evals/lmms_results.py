"""lmms-eval output folders, read into the :class:`~awares_agent.evals.runner.Summary` rows that
``awares report`` tabulates.

An ``lmms-eval --model awares`` run writes ``<time>_results.json`` under its ``--output_path``. Its accuracy
is lmms-eval's own (the task's first metric); what the answers cost comes from the plugin's side file
(``trajectories=PATH`` in the run's ``model_args``: one line per sample, so every figure is per task, as
``awares eval`` gives them), or, without one, from lmms-eval's throughput summary of the run (means over all
the run's samples: per task only when the run had one task).

This module reads files only; it does not need lmms-eval.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

from awares_agent.errors import ConfigError
from awares_agent.evals.runner import Summary, percentile

#: The plugin's lmms-eval model name (:data:`awares_agent.evals.lmms.MODEL_ID`, which needs lmms-eval).
LMMS_MODEL = "awares"


def parse_model_args(text: str) -> dict[str, str]:
    """``key=value,key=value`` as lmms-eval's ``--model_args`` (values kept as text; quotes and braces may
    hold commas)."""
    args: dict[str, str] = {}
    for item in re.findall(r"""(?:[^,"'{}]|"[^"]*"|'[^']*'|\{[^}]*\})+""", text or ""):
        key, sep, value = item.partition("=")
        if sep:
            args[key.strip()] = value.strip().strip("\"'")
    return args


def results_files(root: str | Path) -> list[Path]:
    """The lmms-eval results files of ``awares`` runs under ``root``, oldest first."""
    found = []
    for path in sorted(Path(root).rglob("*results*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if (
            isinstance(data, dict)
            and isinstance(data.get("results"), dict)
            and (data.get("config") or {}).get("model") == LMMS_MODEL
        ):
            found.append(path)
    return found


def lmms_summaries(root: str | Path) -> list[Summary]:
    """A :class:`Summary` per task of every ``awares`` lmms-eval run under ``root``.

    Raises:
        ConfigError: a results file that is not what lmms-eval writes.
    """
    summaries = []
    for path in results_files(root):
        summaries += _run_summaries(path)
    return summaries


def _run_summaries(path: Path) -> list[Summary]:
    data = json.loads(path.read_text(encoding="utf-8"))
    args = parse_model_args(str(data["config"].get("model_args") or ""))
    policy = args.get("policy", "awares")
    kind = args.get("backend", "auto")
    if kind == "auto":
        kind = "openai" if args.get("base_url") else "transformers" if args.get("model") else "reader"
    model = args.get("model") or ("reader" if kind == "reader" else "?")
    side = _side_records(args.get("trajectories"), path.parent)
    tasks = [t for t in data["results"] if t in (data.get("configs") or {})]
    summaries = []
    for task in tasks:
        accuracy = _accuracy(data, task, path)
        records = [r for r in side if r.get("task") == task and r.get("policy", "awares") == policy]
        samples = int(((data.get("n-samples") or {}).get(task) or {}).get("effective", len(records)))
        head = {"benchmark": task, "policy": policy, "model": model, "backend": kind, "accuracy": accuracy}
        if records:
            summaries.append(_from_records(head, records, samples))
        elif len(tasks) == 1:
            summaries.append(_from_throughput(head, data.get("throughput") or {}, samples))
        else:
            raise ConfigError(
                f"{path}: {len(tasks)} tasks in one run and no trajectories file to split their costs; run "
                "with --model_args ...,trajectories=PATH (or one task per run)"
            )
    return summaries


def _accuracy(data: dict[str, Any], task: str, path: Path) -> float:
    """The task's first metric, as a percentage."""
    scores = data["results"][task]
    metrics = (data["configs"][task].get("metric_list") or [{}])[0].get("metric")
    key = next((k for k in scores if metrics and k.split(",")[0] == metrics), None)
    if key is None:
        key = next((k for k, v in scores.items() if "stderr" not in k and isinstance(v, int | float)), None)
    if key is None:
        raise ConfigError(f"{path}: no score for task {task!r}")
    value = float(scores[key])
    return round(100 * value if value <= 1.0 else value, 2)


def _side_records(file: str | None, base: Path) -> list[dict[str, Any]]:
    """The side file's records, the last one of each (task, split, doc id, policy) kept."""
    if not file:
        return []
    path = Path(file).expanduser()
    if not path.is_absolute() and not path.exists():
        path = base / path
    if not path.is_file():
        return []
    latest: dict[tuple[Any, ...], dict[str, Any]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue  # a line cut short by a killed run
        if isinstance(record, dict):
            key = (record.get("task"), record.get("split"), record.get("doc_id"), record.get("policy"))
            latest[key] = record
    return list(latest.values())


def _mean(values: list[float]) -> float:
    return round(sum(values) / len(values), 4) if values else 0.0


def _from_records(head: dict[str, Any], records: list[dict[str, Any]], samples: int) -> Summary:
    ok = [r for r in records if "error" not in r]
    latencies = sorted(float(r.get("latency_s") or 0.0) for r in ok)
    pixel = [float(((r.get("trajectory") or {}).get("cost") or {}).get("pixel_rtr") or 0.0) for r in ok]
    return Summary(
        **head,
        samples=samples,
        scored=len(ok),
        skipped=0,
        failed=len(records) - len(ok),
        rtr=_mean([float(r["rtr"]) for r in ok]),
        pixel_rtr=_mean(pixel),
        tool_call_rate=_mean([1.0 if r.get("crops") else 0.0 for r in ok]),
        mean_crops=_mean([float(len(r.get("crops") or [])) for r in ok]),
        crop_histogram=dict(sorted(Counter(c for r in ok for c in r.get("crops") or []).items())),
        latency_p50=round(percentile(latencies, 50), 4),
        latency_p95=round(percentile(latencies, 95), 4),
    )


def _from_throughput(head: dict[str, Any], throughput: dict[str, Any], samples: int) -> Summary:
    if "avg_rtr" not in throughput:
        raise ConfigError(
            "an awares lmms-eval run without its per-sample costs (no avg_rtr in its throughput summary, no "
            "trajectories file): run it again with this version of awares"
        )
    latency = float(throughput.get("total_elapsed_time") or 0.0) / max(samples, 1)
    return Summary(
        **head,
        samples=samples,
        scored=samples,
        skipped=0,
        failed=0,
        rtr=round(float(throughput["avg_rtr"]), 4),
        pixel_rtr=0.0,  # not in the throughput summary
        tool_call_rate=round(float(throughput.get("avg_crop_calls") or 0.0), 4),
        mean_crops=round(float(throughput.get("avg_crops") or 0.0), 4),
        crop_histogram={},
        latency_p50=round(latency, 4),  # the mean: the summary keeps no distribution
        latency_p95=round(latency, 4),
    )
