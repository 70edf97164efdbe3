"""``awares collect``: label a dataset from a teacher, or roll the agent out on it, into a training dataset.

* ``awares collect label --bench DATA --out DIR [teacher options] [--judge metric|llm] [--grounder ...]``
  labels every sample (direct or tool trajectory, see :mod:`awares_agent.collect.pipeline`).
* ``awares collect rollout --bench DATA --out DIR [teacher options] [--judge ...]`` runs the agent with the
  teacher and judges every answer.
* ``awares collect merge SRC... --out DEST`` merges the outputs of ``--shard i/N`` runs (from several
  machines) and exports them.
* ``awares collect export DIR [--to EXPORT] [--correct-only]`` (re)writes the TRL dataset and JSONL.

A run's folder holds the collector's shards (rows, index of finished ids, failures), ``images/`` (every
image the trajectories reference, content-addressed) and, once the run is complete and not sharded,
``export/`` (``dataset/`` for ``datasets.load_from_disk`` and ``trajectories.jsonl``). Run the same command
again to resume a killed run or retry failed samples.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from awares_agent.backend_factory import BackendOptions, make_backend
from awares_agent.backends.base import ChatBackend
from awares_agent.cli_options import add_agent_options, add_backend_options, agent_config, backend_options
from awares_agent.errors import ConfigError

# As in awares_agent.cli, each step imports the pipeline it runs when it runs (LangGraph, datasets and the OCR
# engine take seconds to import), so that `awares collect --help` answers at once.

IMAGES = "images"
EXPORT = "export"


def add_parser(sub: Any, epilog: str | None = None) -> None:
    """Register ``collect`` and its sub-commands on the ``awares`` parser's sub-parsers.

    ``epilog`` (the note on the default offline reader) is shown under the teacher commands' help.
    """
    collect = sub.add_parser(
        "collect",
        help="build training data: teacher labels or on-policy rollouts, as a TRL-ready dataset",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    steps = collect.add_subparsers(dest="collect_command", required=True)

    label = steps.add_parser(
        "label",
        help="label samples from a teacher's low-res and full-res answers (direct or tool trajectories)",
        description=(
            "The teacher answers each question on the low-res view and on the full image; a judge decides "
            "where the view was not enough; a grounder finds the evidence box, mapped to the crop set. Each "
            "sample becomes a direct or a tool trajectory (samples where both answers are wrong are dropped)."
        ),
        epilog=epilog,
    )
    rollout = steps.add_parser(
        "rollout",
        help="run the agent with a teacher model over samples and judge every answer",
        description="On-policy collection: the agent as at inference, every answer judged; verdicts kept.",
        epilog=epilog,
    )
    for parser in (label, rollout):
        _run_options(parser)
        add_backend_options(parser)
        add_agent_options(parser)
        _judge_options(parser)
    grounding = label.add_argument_group("grounding (where the evidence is, for samples that need crops)")
    grounding.add_argument(
        "--grounder",
        default="dataset,ocr",
        help="comma-separated, tried in order: dataset (the sample's bbox), ocr (find the answer's text "
        "offline), vlm (ask --grounder-model for a bbox_2d) (default: dataset,ocr)",
    )
    grounding.add_argument("--grounder-model", help="the VLM grounder's model (default: the teacher)")
    grounding.add_argument("--grounder-base-url", help="the VLM grounder's server (default: the teacher's)")
    label.add_argument(
        "--answer-source",
        choices=["ground-truth", "teacher"],
        default="ground-truth",
        help="the trajectories' answers: the dataset's first answer, or the teacher's accepted one",
    )

    merge = steps.add_parser("merge", help="merge sharded runs (--shard i/N) into one run and export it")
    merge.add_argument("sources", nargs="+", help="run folders written by collect label/rollout --shard")
    merge.add_argument("--out", required=True, help="the merged run folder")
    merge.add_argument("--correct-only", action="store_true", help="export only rows judged correct")

    export = steps.add_parser("export", help="write a run's TRL dataset and JSONL (again)")
    export.add_argument("run", help="a run folder written by collect label/rollout/merge")
    export.add_argument("--to", help="the export folder (default: RUN/export)")
    export.add_argument("--correct-only", action="store_true", help="export only rows judged correct")


def _run_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--bench",
        required=True,
        help="'synthetic', 'crop-decision', 'stripes' (generated), a paper benchmark id, or your own data (a "
        "datasets directory or JSONL + images)",
    )
    parser.add_argument("--split", help="dataset split (default: the benchmark's standard one)")
    parser.add_argument("--limit", type=int, help="the first N samples (synthetic: how many to generate)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic benchmark (default: 0)")
    parser.add_argument("--out", required=True, help="the run folder (resumable)")
    parser.add_argument("--concurrency", type=int, default=8, help="samples in flight at once (default: 8)")
    parser.add_argument("--shard", help="i/N: collect only this machine's share of the samples")
    parser.add_argument(
        "--sample-attempts",
        type=int,
        default=3,
        help="tries per sample on rate limits, timeouts and 5xx after the client's own retries, with "
        "exponential backoff; a rate limit also pauses new requests (default: 3; 1: no collector retry)",
    )
    parser.add_argument("--correct-only", action="store_true", help="export only rows judged correct")


def _judge_options(parser: argparse.ArgumentParser) -> None:
    judge = parser.add_argument_group("judge")
    judge.add_argument(
        "--judge",
        choices=["metric", "llm"],
        default="metric",
        help="metric (the benchmark's metric with a threshold, offline; default) or llm (a chat model)",
    )
    judge.add_argument("--judge-model", help="the LLM judge's model name")
    judge.add_argument("--judge-base-url", help="the LLM judge's OpenAI-compatible server")
    judge.add_argument(
        "--judge-api-key-env",
        default="OPENAI_API_KEY",
        metavar="VAR",
        help="environment variable holding the judge server's API key (default: OPENAI_API_KEY)",
    )


def run(args: argparse.Namespace, console: Console) -> int:
    """Run ``awares collect ...``; returns the exit code."""
    if args.collect_command in ("label", "rollout"):
        return _collect(args, console)
    if args.collect_command == "merge":
        return _merge(args, console)
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


def _collect(args: argparse.Namespace, console: Console) -> int:
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
    if args.collect_command == "label":
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
        f"{args.collect_command}: {len(samples)} samples, teacher {type(teacher).__name__} "
        f"({teacher.model_name}), judge {args.judge} -> {out}" + (f" (shard {args.shard})" if shard else "")
    )
    stats = collect_sync(
        list(samples),
        work,
        out,
        id_of=lambda s: s.id,
        concurrency=args.concurrency,
        shard=shard,
        description=args.collect_command,
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


def _merge(args: argparse.Namespace, console: Console) -> int:
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
