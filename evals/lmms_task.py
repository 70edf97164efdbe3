"""A local lmms-eval task from any awares benchmark: ``awares lmms-task --bench synthetic --out DIR``.

lmms-eval reads a task from a YAML file in an ``--include_path`` folder; the task's data may be a
``datasets`` folder on disk (``dataset_path: DIR`` with ``load_from_disk``). :func:`write_lmms_task` writes
both, and a ``utils.py`` whose functions give lmms-eval the image, the question and the score, so that::

    awares lmms-task --bench synthetic --limit 40 --out runs/lmms-task
    lmms-eval --model awares --model_args backend=reader,trajectories=runs/lmms/traj.jsonl \\
        --tasks awares_synthetic --include_path runs/lmms-task --output_path runs/lmms

runs the benchmark offline in lmms-eval, scored with the metric awares itself uses for each sample
(:func:`awares_agent.evals.metrics.score`), so its accuracy is comparable with ``awares eval``'s.
"""

from __future__ import annotations

import re
from pathlib import Path

from awares_agent.errors import ConfigError
from awares_agent.evals.schema import EvalSample, features
from awares_agent.evals.synthetic.generator import to_row

#: The data split the task reads.
SPLIT = "test"

_UTILS = '''"""lmms-eval hooks of an awares task (by `awares lmms-task`): image, question, score."""

from awares_agent.evals.metrics import score


def doc_to_visual(doc):
    return [doc["image"].convert("RGB")]


def doc_to_text(doc, lmms_eval_specific_kwargs=None):
    return doc["question"]


def process_results(doc, results):
    prediction = results[0] if results else ""
    return {"accuracy": score(doc["metric"], prediction, doc["answers"], question=doc["question"])}
'''

_YAML = """# An awares benchmark as a local lmms-eval task (written by `awares lmms-task`).
task: {task}
dataset_path: {data}
dataset_kwargs:
  load_from_disk: true
test_split: {split}
output_type: generate_until
doc_to_visual: !function utils.doc_to_visual
doc_to_text: !function utils.doc_to_text
doc_to_target: answers
generation_kwargs:
  max_new_tokens: 64
  temperature: 0
  do_sample: false
process_results: !function utils.process_results
metric_list:
  - metric: accuracy
    aggregation: mean
    higher_is_better: true
metadata:
  - version: 1.0
"""


def task_name(benchmark: str) -> str:
    """The lmms-eval task name of a benchmark: ``awares_`` and its name in lower-case word characters."""
    return "awares_" + (re.sub(r"\W+", "_", Path(benchmark).name.lower()).strip("_") or "bench")


def write_lmms_task(samples: list[EvalSample], folder: str | Path, *, benchmark: str) -> Path:
    """Write ``samples`` as a local lmms-eval task in ``folder``: the data, the task YAML and its hooks.

    Args:
        samples: the benchmark's samples (:func:`~awares_agent.evals.benchmarks.load_benchmark`).
        folder: the task folder (created; a task written there before is replaced).
        benchmark: the benchmark's name, for the task's name (:func:`task_name`).

    Returns:
        The task YAML's path; pass its folder to ``lmms-eval --include_path``.

    Raises:
        ConfigError: no samples.
    """
    from datasets import Dataset, DatasetDict

    if not samples:
        raise ConfigError(f"{benchmark}: no samples to write as an lmms-eval task")
    root = Path(folder).expanduser().resolve()
    root.mkdir(parents=True, exist_ok=True)
    data = root / "data"
    rows = [to_row(s) for s in samples]
    DatasetDict({SPLIT: Dataset.from_list(rows, features=features())}).save_to_disk(str(data))
    (root / "utils.py").write_text(_UTILS, encoding="utf-8")
    name = task_name(benchmark)
    task = root / f"{name}.yaml"
    task.write_text(_YAML.format(task=name, data=data, split=SPLIT), encoding="utf-8")
    return task
