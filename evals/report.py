"""Reports over evaluation runs: a Table-1-style markdown table and an accuracy-vs-RTR plot.

The table has one row per (model, policy) and one ``accuracy / RTR`` column per benchmark, plus the average
when there are several benchmarks, as in the AwaRes paper's Table 1.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from awares_agent.errors import ConfigError
from awares_agent.evals.lmms_results import lmms_summaries
from awares_agent.evals.runner import SUMMARY_FILE, Summary
from awares_agent.policies import POLICIES


def load_summaries(dirs: Iterable[str | os.PathLike[str]]) -> list[Summary]:
    """Every ``summary.json`` under the given run directories, and every ``lmms-eval --model awares`` run's
    results (:mod:`awares_agent.evals.lmms_results`).

    Raises:
        ConfigError: a directory does not exist, or none holds a summary.
    """
    summaries = []
    for d in dirs:
        root = Path(d)
        if not root.exists():
            raise ConfigError(f"no such run directory: {root}")
        summaries += [Summary.model_validate_json(p.read_text()) for p in sorted(root.rglob(SUMMARY_FILE))]
        summaries += lmms_summaries(root)
    if not summaries:
        raise ConfigError(
            "no summary.json and no lmms-eval results of --model awares found: run `awares eval ... --out "
            "DIR` (or lmms-eval --model awares ... --output_path DIR) first, then report on DIR"
        )
    return summaries


def _row_order(key: tuple[str, str]) -> tuple[str, int, str]:
    model, policy = key
    return (model, POLICIES.index(policy) if policy in POLICIES else len(POLICIES), policy)


def markdown_table(summaries: Sequence[Summary]) -> str:
    """A markdown table: rows (model, policy), columns ``accuracy / RTR`` per benchmark (+ average)."""
    benchmarks = sorted({s.benchmark for s in summaries})
    rows: dict[tuple[str, str], dict[str, Summary]] = {}
    for s in summaries:
        rows.setdefault((s.model, s.policy), {})[s.benchmark] = s
    several_models = len({m for m, _ in rows}) > 1
    head = ["model", "policy"] if several_models else ["policy"]
    head += benchmarks + (["avg"] if len(benchmarks) > 1 else []) + ["tool calls", "crops/query", "p50 s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for key in sorted(rows, key=_row_order):
        cells = rows[key]
        row = [key[0], key[1]] if several_models else [key[1]]
        row += [f"{cells[b].accuracy:.2f} / {cells[b].rtr:.2f}" if b in cells else "" for b in benchmarks]
        present = list(cells.values())
        if len(benchmarks) > 1:
            acc = sum(s.accuracy for s in present) / len(present)
            rtr = sum(s.rtr for s in present) / len(present)
            row.append(f"**{acc:.2f} / {rtr:.2f}**")
        row.append(f"{100 * sum(s.tool_call_rate for s in present) / len(present):.0f}%")
        row.append(f"{sum(s.mean_crops for s in present) / len(present):.2f}")
        row.append(f"{sum(s.latency_p50 for s in present) / len(present):.2f}")
        lines.append("| " + " | ".join(row) + " |")
    note = "Cells are accuracy / RTR (retained visual-token ratio; lower is cheaper)."
    return "\n".join(lines) + f"\n\n{note}\n"


def plot(summaries: Sequence[Summary], path: str | os.PathLike[str]) -> Path:
    """Save an accuracy-vs-RTR scatter plot as a PNG: one point per run, labelled by policy.

    Each benchmark (and each model, when the runs are of several) is one series with its own marker and
    legend entry; runs that land on the same point share one label.
    """
    import matplotlib

    matplotlib.use("Agg")  # no display: render to a file
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.6, 4.8), dpi=120)
    markers = "osD^vP*X"
    several_models = len({s.model for s in summaries}) > 1

    def series_of(s: Summary) -> str:
        # A checkpoint path is named by its folder.
        return f"{s.benchmark}, {Path(s.model).name or s.model}" if several_models else s.benchmark

    labels: dict[tuple[float, float], list[str]] = {}
    for i, series in enumerate(sorted({series_of(s) for s in summaries})):
        points = [s for s in summaries if series_of(s) == series]
        marker = markers[i % len(markers)]
        xs, ys = [s.rtr for s in points], [s.accuracy for s in points]
        ax.scatter(xs, ys, marker=marker, label=series, alpha=0.8)
        for s in points:
            names = labels.setdefault((round(s.rtr, 2), round(s.accuracy, 0)), [])
            if s.policy not in names:
                names.append(s.policy)
    for (rtr, accuracy), names in labels.items():
        ax.annotate(", ".join(names), (rtr, accuracy), textcoords="offset points", xytext=(6, 4), fontsize=7)
    ax.set_xlabel("retained token ratio (RTR, lower is cheaper)")
    ax.set_ylabel("accuracy (%)")
    ax.set_title("Accuracy vs visual-token cost")
    ax.grid(alpha=0.3)
    ax.margins(x=0.12, y=0.08)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out)
    plt.close(fig)
    return out
