"""``awares collect``: label a dataset from a teacher, or roll the agent out on it, into a training dataset.

* ``awares collect label --bench DATA --out DIR [teacher options] [--judge metric|llm] [--grounder ...]``
  labels every sample (direct or tool trajectory, see :mod:`awares_agent.collect.pipeline`).
* ``awares collect rollout --bench DATA --out DIR [teacher options] [--judge ...]`` runs the agent with the
  teacher and judges every answer.
* ``awares collect merge SRC... --out DEST`` merges the outputs of ``--shard i/N`` runs (from several
  machines) and exports them.
* ``awares collect export DIR [--to EXPORT] [--correct-only]`` (re)writes the TRL dataset and JSONL.

Each is a row of :data:`COMMANDS`; their flags come from the option configs below and the shared blocks of
:mod:`awares_agent.cli_options` (data, backend, agent).

A run's folder holds the collector's shards (rows, index of finished ids, failures), ``images/`` (every
image the trajectories reference, content-addressed) and, once the run is complete and not sharded,
``export/`` (``dataset/`` for ``datasets.load_from_disk`` and ``trajectories.jsonl``). Run the same command
again to resume a killed run or retry failed samples.
"""

from __future__ import annotations

import argparse
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from awares_agent.backend_factory import BackendOptions, make_backend
from awares_agent.backends.base import ChatBackend
from awares_agent.cli_options import (
    READER_NOTE,
    Command,
    add_agent_options,
    add_backend_options,
    add_data_options,
    agent_config,
    backend_options,
    config_options,
)
from awares_agent.errors import ConfigError

# As in awares_agent.cli, each step imports the pipeline it runs when it runs (LangGraph, datasets and the OCR
# engine take seconds to import), so that `awares collect --help` answers at once.

IMAGES = "images"
EXPORT = "export"


@dataclass(frozen=True)
class CollectOptions:
    """How ``awares collect label|rollout`` runs, beyond the data block (``--bench``, ``--out``...).

    Attributes:
        shard: ``i/N``: collect only this machine's share of the samples.
        sample_attempts: tries per sample on rate limits, timeouts and 5xx, after the client's own retries.
    """

    shard: str | None = field(
        default=None, metadata={"metavar": "i/N", "help": "collect only this machine's share of the samples"}
    )
    sample_attempts: int = field(
        default=3,
        metadata={
            "min": 1,
            "help": "tries per sample on rate limits, timeouts and 5xx after the client's own retries, with "
            "exponential backoff; a rate limit also pauses new requests (default: 3; 1: no collector retry)",
        },
    )


@dataclass(frozen=True)
class ExportOptions:
    """Which rows an export keeps (``awares collect label|rollout|merge|export``)."""

    correct_only: bool = field(default=False, metadata={"help": "export only rows judged correct"})


@dataclass(frozen=True)
class JudgeOptions:
    """Who judges the answers: the benchmark's metric, or an LLM on a server.

    Attributes:
        judge: ``metric`` (offline) or ``llm``.
        judge_model / judge_base_url / judge_api_key_env: the LLM judge's model, server and key variable.
    """

    judge: Literal["metric", "llm"] = field(
        default="metric",
        metadata={
            "help": "metric (the benchmark's metric with a threshold, offline; default) or llm (a chat model)"
        },
    )
    judge_model: str | None = field(default=None, metadata={"help": "the LLM judge's model name"})
    judge_base_url: str | None = field(
        default=None, metadata={"help": "the LLM judge's OpenAI-compatible server"}
    )
    judge_api_key_env: str = field(
        default=BackendOptions.api_key_env,
        metadata={"metavar": "VAR", "help": "environment variable holding the judge server's API key"},
    )


@dataclass(frozen=True)
class LabelOptions:
    """How ``awares collect label`` grounds the evidence and which answers its trajectories carry.

    Attributes:
        grounder: comma-separated grounders tried in order (``dataset``, ``ocr``, ``vlm``).
        grounder_model / grounder_base_url: the VLM grounder's model and server (default: the teacher's).
        answer_source: the trajectories' answers: the dataset's first answer, or the teacher's accepted one.
    """

    grounder: str = field(
        default="dataset,ocr",
        metadata={
            "help": "comma-separated, tried in order: dataset (the sample's bbox), ocr (find the answer's "
            "text offline), vlm (ask --grounder-model for a bbox_2d)"
        },
    )
    grounder_model: str | None = field(
        default=None, metadata={"help": "the VLM grounder's model (default: the teacher)"}
    )
    grounder_base_url: str | None = field(
        default=None, metadata={"help": "the VLM grounder's server (default: the teacher's)"}
    )
    answer_source: Literal["ground-truth", "teacher"] = field(
        default="ground-truth",
        metadata={
            "help": "the trajectories' answers: the dataset's first answer, or the teacher's accepted one"
        },
    )


@dataclass(frozen=True)
class MergeOptions:
    """``awares collect merge``'s sources (its ``--out`` is the data block's)."""

    sources: list[str] = field(
        metadata={
            "positional": True,
            "metavar": "RUN",
            "help": "run folders written by collect label/rollout --shard",
        }
    )


@dataclass(frozen=True)
class ReexportOptions:
    """``awares collect export``: which run, and where its export goes."""

    run: str = field(
        metadata={
            "positional": True,
            "metavar": "RUN",
            "help": "a run folder written by collect label/rollout/merge",
        }
    )
    to: str | None = field(default=None, metadata={"help": "the export folder (default: RUN/export)"})


_TEACHER = (
    add_data_options("bench", "split", "limit", "seed", "out", "concurrency"),
    config_options(CollectOptions),
    config_options(ExportOptions),
    add_backend_options,
    add_agent_options,
    config_options(JudgeOptions, title="judge"),
)


def label(args: argparse.Namespace, console: Console) -> int:
    """``awares collect label``: label samples from a teacher's answers; export when complete."""
    return _collect(args, console, "label")


def rollout(args: argparse.Namespace, console: Console) -> int:
    """``awares collect rollout``: the agent with a teacher, every answer judged; export when complete."""
    return _collect(args, console, "rollout")


def export(args: argparse.Namespace, console: Console) -> int:
    """``awares collect export``: (re)write a run's TRL dataset and JSONL."""
    return _export(Path(args.run), Path(args.to) if args.to else None, args.correct_only, console)


def _judge(args: argparse.Namespace) -> Any:
    from awares_agent.collect.judges import LLMJudge, MetricJudge

    if args.judge == "metric":
        return MetricJudge()
    if not args.judge_model:
        raise ConfigError("--judge llm needs --judge-model (and --judge-base-url for a local server)")
    options = backend_options(args).server(
        model=args.judge_model, base_url=args.judge_base_url, api_key_env=args.judge_api_key_env
    )
    return LLMJudge(make_backend(options), cache=Path(args.out) / "judge_cache.sqlite")


def _grounder(args: argparse.Namespace, teacher: ChatBackend) -> Any:
    from awares_agent.collect.grounders import make_grounder

    names = [n.strip() for n in args.grounder.split(",") if n.strip()]
    kwargs: dict[str, Any] = {}
    if "vlm" in names:
        backend = teacher
        if args.grounder_model or args.grounder_base_url:
            options: BackendOptions = backend_options(args)
            backend = make_backend(
                options.server(
                    model=args.grounder_model or options.model,
                    base_url=args.grounder_base_url or options.base_url,
                )
            )
        kwargs["backend"] = backend
    return make_grounder(",".join(names), **kwargs)


def _collect(args: argparse.Namespace, console: Console, step: Literal["label", "rollout"]) -> int:
    from awares_agent.collect.pipeline import Labeler, Rollout
    from awares_agent.engine import RetryPolicy, ShardSpec, collect_sync, read_rows
    from awares_agent.evals.benchmarks import load_benchmark
    from awares_agent.image_store import ImageStore

    shard = ShardSpec.parse(args.shard) if args.shard else None
    config = agent_config(args)
    teacher = make_backend(backend_options(args), crop_set=config.crop_set)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    store = ImageStore(root=out / IMAGES, max_pixels=config.max_image_pixels)
    judge = _judge(args)
    if step == "label":
        work: Any = Labeler(
            teacher,
            judge,
            _grounder(args, teacher),
            config=config,
            store=store,
            answer_source=args.answer_source,
        )
    else:
        work = Rollout(teacher, judge, config=config, store=store)
    with console.status(f"loading {args.bench}..."):
        samples = load_benchmark(args.bench, split=args.split, limit=args.limit, seed=args.seed)
    for skipped in getattr(samples, "skipped", []) or []:
        console.print(f"[yellow]skipped[/] {escape(str(skipped))}")
    console.print(
        f"{step}: {len(samples)} samples, teacher {type(teacher).__name__} "
        f"({teacher.model_name}), judge {args.judge} -> {out}" + (f" (shard {args.shard})" if shard else "")
    )
    stats = collect_sync(
        list(samples),
        work,
        out,
        id_of=lambda s: s.id,
        concurrency=args.concurrency,
        shard=shard,
        description=step,
        retry=RetryPolicy(attempts=args.sample_attempts) if args.sample_attempts > 1 else None,
        # From the command line a run never dies of one sample: whatever a sample raised is recorded with
        # its reason (failures.jsonl) and tried again on the next run.
        catch=(Exception,),
    )
    _print_summary(console, read_rows(out))
    if stats.failed:
        console.print(
            f"[yellow]{stats.failed} sample(s) failed[/] (reasons in the run folder's failures); run the "
            "same command again to retry them"
        )
        for sample_id, reason in list(stats.failures.items())[:5]:
            console.print(f"  {escape(sample_id)}: {escape(reason)}", highlight=False)
        return 1
    if shard is not None:
        console.print(
            f"shard {args.shard} complete; when every shard is done: awares collect merge RUN... --out MERGED"
        )
        return 0
    return _export(out, None, args.correct_only, console)


def _print_summary(console: Console, rows: Any) -> None:
    from awares_agent.collect.pipeline import summarize_rows

    s = summarize_rows(rows)
    table = Table(title="collected", show_edge=False)
    for column in ("rows", "trajectories", "direct", "tool", "judged correct", "mean RTR"):
        table.add_column(column, justify="right")
    share = f"{s.direct} ({s.direct_share:.0%})"
    tool = f"{s.tool} ({1 - s.direct_share:.0%})" if s.ok else "0"
    table.add_row(str(s.rows), str(s.ok), share, tool, str(s.correct), f"{s.mean_rtr:.2f}")
    console.print(table)
    if s.crops:
        console.print("crops requested: " + ", ".join(f"{k}: {v}" for k, v in s.crops.items()))
    if s.dropped:
        console.print("dropped: " + ", ".join(f"{k}: {v}" for k, v in s.dropped.items()))


def _export(run_dir: Path, to: Path | None, correct_only: bool, console: Console) -> int:
    from awares_agent.collect.export import export_dataset
    from awares_agent.engine import read_rows
    from awares_agent.image_store import ImageStore

    if not run_dir.is_dir():
        raise ConfigError(f"no run folder at {run_dir}")
    target = to or run_dir / EXPORT
    with console.status("exporting the dataset..."):
        stats = export_dataset(
            read_rows(run_dir), ImageStore(root=run_dir / IMAGES), target, correct_only=correct_only
        )
    console.print(f"dataset: {stats.dataset} ({stats.rows} rows)  jsonl: {stats.jsonl}")
    if stats.skipped:
        console.print("left out: " + ", ".join(f"{k}: {v}" for k, v in stats.reasons.items()))
    return 0


def merge(args: argparse.Namespace, console: Console) -> int:
    """``awares collect merge``: merge sharded runs into one run and export it."""
    from awares_agent.engine import merge, read_rows

    sources = [Path(s) for s in args.sources]
    for source in sources:
        if not source.is_dir():
            raise ConfigError(f"no run folder at {source}")
    dest = Path(args.out)
    dest.mkdir(parents=True, exist_ok=True)
    merge(sources, dest)
    for source in sources:  # images are content-addressed: copying is idempotent
        for folder in ("sources", "derived"):
            src = source / IMAGES / folder
            if src.is_dir():
                shutil.copytree(src, dest / IMAGES / folder, dirs_exist_ok=True)
    _print_summary(console, read_rows(dest))
    return _export(dest, None, args.correct_only, console)


COMMANDS = (
    Command(
        "label",
        help="label samples from a teacher's low-res and full-res answers (direct or tool trajectories)",
        description=(
            "The teacher answers each question on the low-res view and on the full image; a judge decides "
            "where the view was not enough; a grounder finds the evidence box, mapped to the crop set. Each "
            "sample becomes a direct or a tool trajectory (samples where both answers are wrong are dropped)."
        ),
        epilog=READER_NOTE,
        run=label,
        options=(
            *_TEACHER,
            config_options(
                LabelOptions,
                title="labelling (where the evidence is, for samples that need crops; the answers)",
            ),
        ),
    ),
    Command(
        "rollout",
        help="run the agent with a teacher model over samples and judge every answer",
        description="On-policy collection: the agent as at inference, every answer judged; verdicts kept.",
        epilog=READER_NOTE,
        run=rollout,
        options=_TEACHER,
    ),
    Command(
        "merge",
        help="merge sharded runs (--shard i/N) into one run and export it",
        run=merge,
        options=(config_options(MergeOptions), add_data_options("out"), config_options(ExportOptions)),
    ),
    Command(
        "export",
        help="write a run's TRL dataset and JSONL (again)",
        run=export,
        options=(config_options(ReexportOptions), config_options(ExportOptions)),
    ),
)
"""The ``awares collect`` commands (``awares_agent.cli`` puts them under ``collect``)."""
