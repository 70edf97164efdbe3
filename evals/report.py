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
    """Save an accuracy-vs-RTR scatter plot (one point per run, labelled by policy) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")  # no display: render to a file
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=120)
    markers = "osD^vP*X"
    several_models = len({s.model for s in summaries}) > 1

    def label(s: Summary) -> str:
        # Runs of several models on one plot: name the model too (a checkpoint path by its folder name).
        return f"{s.policy} ({Path(s.model).name or s.model})" if several_models else s.policy

    for i, benchmark in enumerate(sorted({s.benchmark for s in summaries})):
        points = [s for s in summaries if s.benchmark == benchmark]
        marker = markers[i % len(markers)]
        ax.scatter([s.rtr for s in points], [s.accuracy for s in points], marker=marker, label=benchmark)
        for s in points:
            ax.annotate(label(s), (s.rtr, s.accuracy), textcoords="offset points", xytext=(5, 4), fontsize=7)
    ax.set_xlabel("retained token ratio (RTR, lower is cheaper)")
    ax.set_ylabel("accuracy (%)")
    ax.set_title("Accuracy vs visual-token cost")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out)
    plt.close(fig)
    return out
