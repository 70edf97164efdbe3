"""Building the supervision automatically, and collecting trajectories for training.

As in the AwaRes paper's labelling recipe, a judge decides whether the low- and full-resolution answers are
right; for samples that need a crop a grounder finds the evidence box, which is then mapped onto the crop set
(:class:`Labeler`). :class:`Rollout` collects the agent's own trajectories, judged. :func:`collect` (the run
engine, :mod:`awares_agent.engine`) runs either over a dataset, concurrently and resumably, into shards;
:func:`export_dataset` turns the rows into a TRL-ready dataset. ``awares collect`` is the command line for all
of it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# Public names and their modules, imported on first use: `awares --help` stays fast.
_EXPORTS = {
    "ChainGrounder": "grounders",
    "DatasetGrounder": "grounders",
    "Grounder": "grounders",
    "Grounding": "grounders",
    "OCRGrounder": "grounders",
    "VLMGrounder": "grounders",
    "make_grounder": "grounders",
    "Judge": "judges",
    "JudgeReplyError": "judges",
    "LLMJudge": "judges",
    "MetricJudge": "judges",
    "Verdict": "judges",
    "make_judge": "judges",
    "CollectedRow": "pipeline",
    "Labeler": "pipeline",
    "Rollout": "pipeline",
    "summarize_rows": "pipeline",
    "export_dataset": "export",
}
# The run engine's names, re-exported here where collection's users have always found them.
_ENGINE = {"ShardSpec", "collect", "collect_sync", "merge", "read_rows"}

__all__ = [
    "ChainGrounder",
    "CollectedRow",
    "DatasetGrounder",
    "Grounder",
    "Grounding",
    "Judge",
    "JudgeReplyError",
    "LLMJudge",
    "Labeler",
    "MetricJudge",
    "OCRGrounder",
    "Rollout",
    "ShardSpec",
    "VLMGrounder",
    "Verdict",
    "collect",
    "collect_sync",
    "export_dataset",
    "make_grounder",
    "make_judge",
    "merge",
    "read_rows",
    "summarize_rows",
]

if TYPE_CHECKING:
    from awares_agent.collect.export import export_dataset
    from awares_agent.collect.grounders import (
        ChainGrounder,
        DatasetGrounder,
        Grounder,
        Grounding,
        OCRGrounder,
        VLMGrounder,
        make_grounder,
    )
    from awares_agent.collect.judges import Judge, JudgeReplyError, LLMJudge, MetricJudge, Verdict, make_judge
    from awares_agent.collect.pipeline import CollectedRow, Labeler, Rollout, summarize_rows
    from awares_agent.engine import ShardSpec, collect, collect_sync, merge, read_rows


def __getattr__(name: str) -> Any:
    module = "awares_agent.engine" if name in _ENGINE else _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'awares_agent.collect' has no attribute {name!r}")
    if name not in _ENGINE:
        module = f"awares_agent.collect.{module}"
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
