"""Evaluating a trained policy through the real agent on held-out trajectories (``awares train eval``).

The trained checkpoint is loaded by the transformers backend exactly as ``awares ask --model DIR`` loads it,
run as an AwaRes agent (with the protocol, crop set and system prompt it records) on the held-out rows'
original images, and scored by :func:`~awares_agent.evals.decisions.score_decisions`: well-formed replies,
decision and region accuracy against the labels, answer accuracy and RTR. The per-sample results are kept
(``OUT/awares/...``, resumable like any evaluation) and the report is written to ``OUT/policy.json``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from awares_agent.config import AgentConfig
from awares_agent.evals.decisions import DecisionReport, score_decisions
from awares_agent.evals.runner import SampleResult, read_results, run_policy
from awares_agent.evals.schema import EvalSample
from awares_agent.training.data import policy_samples

__all__ = ["REPORT", "evaluate_policy"]

REPORT = "policy.json"


def evaluate_policy(
    model: str | Path | Any,
    data: str | Path | Sequence[EvalSample],
    out_dir: str | Path,
    *,
    limit: int | None = None,
    config: AgentConfig | None = None,
    concurrency: int = 1,
    device: str = "cpu",
    on_result: Callable[[SampleResult], None] | None = None,
) -> DecisionReport:
    """Run a trained model as an AwaRes agent on held-out rows and score what it does.

    Args:
        model: a trained checkpoint directory, or a backend to evaluate.
        data: held-out trajectories (an ``awares collect`` export; see
            :func:`~awares_agent.training.data.policy_samples`), or the samples already read from one.
        out_dir: where the per-sample results and ``policy.json`` are written.
        limit: the first N rows only (of an export read here).
        config: the agent configuration (default: what the checkpoint records).
        concurrency: samples in flight (a local model decodes them in batches).
        device: where a checkpoint directory's model runs.
        on_result: called with every finished sample (a progress bar).

    Returns:
        The report.
    """
    from awares_agent.backends.transformers_backend import TransformersBackend

    if isinstance(data, str | Path):
        samples, benchmark = policy_samples(data, limit=limit), str(data)
    else:
        samples, benchmark = list(data), "held-out"
    if isinstance(model, str | Path):
        config = config or AgentConfig.from_checkpoint(model)
        backend: Any = TransformersBackend(str(model), device=device, local_files_only=True)
    else:
        backend = model
        config = config or AgentConfig()
    out = Path(out_dir)
    run_policy(
        samples,
        backend,
        "awares",
        out,
        config=config,
        benchmark=benchmark,
        concurrency=concurrency,
        on_result=on_result,
    )
    report = score_decisions(read_results(out / "awares"), samples)
    (out / REPORT).write_text(report.model_dump_json(indent=2) + "\n", encoding="utf-8")
    return report
