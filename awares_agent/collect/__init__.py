"""Building the supervision automatically, and collecting trajectories for training.

As in the AwaRes paper's labelling recipe, a judge decides whether the low- and full-resolution answers are
right; for samples that need a crop a grounder finds the evidence box, which is then mapped onto the crop set
(:class:`Labeler`). :class:`Rollout` collects the agent's own trajectories, judged. :func:`collect` (the run
engine, :mod:`awares_agent.engine`) runs either over a dataset, concurrently and resumably, into shards;
:func:`export_dataset` turns the rows into a TRL-ready dataset. ``awares collect`` is the command line for all
of it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from awares_agent.lazy_exports import lazy_exports

# Public names and their modules, imported on first use: `awares --help` stays fast. The run engine's names
# are re-exported here, where collection's users have always found them.
_EXPORTS = {
    "ChainGrounder": "awares_agent.collect.grounders",
    "DatasetGrounder": "awares_agent.collect.dataset_grounder",
    "Grounder": "awares_agent.collect.grounding",
    "GrounderOptions": "awares_agent.collect.grounders",
    "Grounding": "awares_agent.collect.grounding",
    "OCRGrounder": "awares_agent.collect.ocr_grounder",
    "VLMGrounder": "awares_agent.collect.vlm_grounder",
    "make_grounder": "awares_agent.collect.grounders",
    "Judge": "awares_agent.collect.judges",
    "JudgeReplyError": "awares_agent.collect.judges",
    "LLMJudge": "awares_agent.collect.judges",
    "MetricJudge": "awares_agent.collect.judges",
    "Verdict": "awares_agent.collect.judges",
    "make_judge": "awares_agent.collect.judges",
    "CollectedRow": "awares_agent.collect.pipeline",
    "Labeler": "awares_agent.collect.pipeline",
    "Rollout": "awares_agent.collect.pipeline",
    "summarize_rows": "awares_agent.collect.pipeline",
    "export_dataset": "awares_agent.collect.export",
    **dict.fromkeys(["ShardSpec", "collect", "collect_sync", "merge", "read_rows"], "awares_agent.engine"),
}

__all__ = [
    "ChainGrounder",
    "CollectedRow",
    "DatasetGrounder",
    "Grounder",
    "GrounderOptions",
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
    from awares_agent.collect.dataset_grounder import DatasetGrounder
    from awares_agent.collect.export import export_dataset
    from awares_agent.collect.grounders import ChainGrounder, GrounderOptions, make_grounder
    from awares_agent.collect.grounding import Grounder, Grounding
    from awares_agent.collect.judges import Judge, JudgeReplyError, LLMJudge, MetricJudge, Verdict, make_judge
    from awares_agent.collect.ocr_grounder import OCRGrounder
    from awares_agent.collect.pipeline import CollectedRow, Labeler, Rollout, summarize_rows
    from awares_agent.collect.vlm_grounder import VLMGrounder
    from awares_agent.engine import ShardSpec, collect, collect_sync, merge, read_rows

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
