"""The ``awares`` command line.

* ``awares ask IMAGE QUESTION [--base-url URL] [--model NAME]`` runs one AwaRes query (on a server, a local
  model, or the offline reader) and shows the answer, the crops and what they cost in visual tokens;
  ``--json`` prints the result as one JSON object instead.
* ``awares eval --bench NAME_OR_PATH --policy awares,low-res,full-res --out DIR`` evaluates policies.
* ``awares report DIR...`` renders a markdown table and an accuracy-vs-RTR plot over runs (``awares eval``
  runs, and ``lmms-eval --model awares`` output folders).
* ``awares lmms-task --bench NAME --out DIR`` writes a benchmark as a local lmms-eval task
  (:mod:`awares_agent.evals.lmms_task`).
* ``awares collect label|rollout|merge|export`` builds training data (:mod:`awares_agent.collect.command`).
* ``awares train sft|grpo|eval`` fine-tunes a VLM on it and scores the trained policy
  (:mod:`awares_agent.training.cli`).
* ``awares demo [IMAGE]`` opens the interactive console demo (:mod:`awares_agent.demo.app`).
* ``awares serve --upstream URL --model NAME`` serves the OpenAI API with AwaRes over an upstream server
  (:mod:`awares_agent.serve`).

Every command is a row of :data:`COMMANDS` (with ``collect``'s and ``train``'s rows): its name, help, the
configs its flags are generated from (:mod:`awares_agent.cli_options`) and its handler. One parser tree is
built from the table, and the parsed command's handler is called; ``-h``/``--help`` works at every level.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from awares_agent.backend_factory import make_backend
from awares_agent.backends.base import ChatBackend
from awares_agent.cli_options import (
    EXIT_BACKEND,
    EXIT_INPUT,
    EXIT_INTERNAL,
    EXIT_OK,
    READER_NOTE,
    Command,
    add_agent_options,
    add_backend_options,
    add_data_options,
    agent_config,
    backend_options,
    build_parser,
    config_options,
)
from awares_agent.cli_options import run as run_command
from awares_agent.collect.command import COMMANDS as COLLECT_COMMANDS
from awares_agent.serve.command import COMMAND as SERVE_COMMAND
from awares_agent.training.cli import COMMANDS as TRAIN_COMMANDS
from awares_agent.training.cli import COMMANDS_HELP as TRAIN_HELP

__all__ = ["COMMANDS", "EXIT_BACKEND", "EXIT_INPUT", "EXIT_INTERNAL", "EXIT_OK", "main"]

# Each command imports what it runs when it runs: the agent (LangGraph), datasets and matplotlib take seconds
# to import, and `awares --help` or a bad option should not wait for them.


@dataclass(frozen=True)
class AskOptions:
    """``awares ask``'s own options (with the backend's and the agent's)."""

    image: str = field(
        metadata={"positional": True, "help": "path to the image (PNG, JPEG, WebP, GIF, TIFF...)"}
    )
    question: str = field(metadata={"positional": True, "help": "the question to answer"})
    json: bool = field(default=False, metadata={"help": "print the result as one JSON object"})
    no_stream: bool = field(
        default=False,
        metadata={
            "help": "take each model turn whole instead of showing its text as it is generated (for a server "
            "that cannot stream)"
        },
    )


@dataclass(frozen=True)
class EvalOptions:
    """``awares eval``'s own options (with the data block, the backend's and the agent's)."""

    policy: str = field(
        default="awares",
        metadata={"help": "comma-separated: awares, low-res, full-res, all-crops, random, oracle"},
    )


@dataclass(frozen=True)
class ReportOptions:
    """``awares report``'s options."""

    runs: list[str] = field(
        metadata={
            "positional": True,
            "metavar": "RUN",
            "help": "run directories written by `awares eval --out`",
        }
    )
    markdown: str | None = field(
        default=None,
        metadata={"help": "write the table here (default: report.md in the first run directory)"},
    )
    plot: str | None = field(
        default=None, metadata={"help": "write the plot here (default: accuracy_vs_rtr.png beside the table)"}
    )


@dataclass(frozen=True)
class DemoOptions:
    """``awares demo``'s own options (with the backend's and the agent's)."""

    image: str | None = field(
        default=None,
        metadata={"positional": True, "help": "an image to open (default: the first sample page)"},
    )
    out: str = field(default="awares-demo", metadata={"help": "where /save and /crops write"})


def _ask(args: argparse.Namespace, console: Console) -> int:
    from awares_agent.agent import AwaResAgent

    config = agent_config(args)
    agent = AwaResAgent(_backend(args, config.crop_set), config)
    if args.json:
        result = agent.ask(args.image, args.question)
        sys.stdout.write(result.model_dump_json() + "\n")
        return EXIT_OK

    result = None
    with console.status("looking at the low-resolution view...") as status:
        streamed = ""
        for event in agent.stream(args.image, args.question, tokens=not args.no_stream):
            if event.type == "token":  # the turn's text so far, on the status line, as it is generated
                # only the tail is shown: keeping the whole turn would make a long reply quadratic
                streamed = (streamed + event.data["text"])[-200:]
                status.update(f"model: {escape(' '.join(streamed.split())[-70:])}")
            elif event.type == "view":
                view = event.data["view"]
                console.print(
                    f"[dim]view[/] {view['width']}x{view['height']} px, "
                    f"{event.data['view_tokens']} visual tokens (full image: {event.data['full_tokens']})"
                )
                status.update("asking the model...")
            elif event.type == "model":
                streamed = ""
                _show_turn(console, event.data)
            elif event.type == "crops":
                shown = ", ".join(f"{c['region_id']} ({c['name']})" for c in event.data["crops"])
                console.print(f"[dim]crops[/] sent {escape(shown)}")
                status.update("asking the model with the crops...")
            elif event.type == "result":
                result = event.result
    assert result is not None  # the stream always ends with a result event
    _show_result(console, result)
    return EXIT_OK


def _demo(args: argparse.Namespace, console: Console) -> int:
    from pathlib import Path

    from awares_agent.demo.app import DemoApp
    from awares_agent.demo.session import DemoSession

    session = DemoSession(backend=backend_options(args), config=agent_config(args), out_dir=Path(args.out))
    if session.backend.kind == "transformers":  # load the model before the screen is taken over
        with console.status(f"loading {session.backend.model}..."):
            session.use_backend(session.backend)
    DemoApp(session, image=args.image).run()
    return EXIT_OK


def _backend(args: argparse.Namespace, crop_set: str) -> ChatBackend:
    """The backend the flags name: a server, a local model, or the offline reader (see --backend)."""
    return make_backend(backend_options(args), crop_set=crop_set)


def _eval(args: argparse.Namespace, console: Console) -> int:
    from pathlib import Path

    from rich.markdown import Markdown
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from awares_agent.agent import AwaResAgent
    from awares_agent.evals.benchmarks import load_benchmark
    from awares_agent.evals.report import markdown_table
    from awares_agent.evals.runner import awares_crop_counts, run_policy
    from awares_agent.policies import check_policy

    policies = [p.strip() for p in args.policy.split(",") if p.strip()]
    for policy in policies:
        check_policy(policy)
    if "random" in policies and "awares" in policies:  # random copies awares' crop counts: run awares first
        policies = ["awares"] + [p for p in policies if p != "awares"]
    config = agent_config(args)
    backend = _backend(args, config.crop_set)
    with console.status(f"loading {args.bench}..."):
        samples = load_benchmark(args.bench, split=args.split, limit=args.limit, seed=args.seed)
    out = Path(args.out)
    name = Path(args.bench).name if Path(args.bench).exists() else args.bench
    console.print(f"{name}: {len(samples)} samples, {type(backend).__name__} ({backend.model_name}) -> {out}")
    summaries = []
    agent = AwaResAgent(backend, config)  # one agent, one compiled graph, for every policy
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        for policy in policies:
            task = progress.add_task(f"{policy:>9}", total=len(samples))
            done_before = _recorded(out / policy)
            progress.advance(task, min(done_before, len(samples)))
            summaries.append(
                run_policy(
                    samples,
                    agent,
                    policy,
                    out,
                    benchmark=name,
                    concurrency=args.concurrency,
                    awares_crops=awares_crop_counts(out) if policy == "random" else None,
                    seed=args.seed,
                    on_result=lambda _r, t=task: progress.advance(t),
                )
            )
    table = markdown_table(summaries)
    (out / "report.md").write_text(table, encoding="utf-8")
    console.print(Markdown(table))
    for s in summaries:
        if s.skipped or s.failed:
            console.print(
                f"[yellow]{s.policy}[/]: {s.skipped} skipped (bad input), {s.failed} failed (backend; "
                f"run the same command again to retry them); details under {out / s.policy}"
            )
    return EXIT_OK


def _recorded(folder: Any) -> int:
    from awares_agent.evals.runner import read_results

    return sum(r.status != "failed" for r in read_results(folder).values())


def _report(args: argparse.Namespace, console: Console) -> int:
    from pathlib import Path

    from rich.markdown import Markdown

    from awares_agent.evals.report import load_summaries, markdown_table, plot

    summaries = load_summaries(args.runs)
    table = markdown_table(summaries)
    markdown = Path(args.markdown) if args.markdown else Path(args.runs[0]) / "report.md"
    markdown.write_text(table, encoding="utf-8")
    figure = plot(summaries, Path(args.plot) if args.plot else markdown.with_name("accuracy_vs_rtr.png"))
    console.print(Markdown(table))
    console.print(f"table: {markdown}\nplot:  {figure}")
    return EXIT_OK


def _lmms_task(args: argparse.Namespace, console: Console) -> int:
    from pathlib import Path

    import datasets

    from awares_agent.evals.benchmarks import load_benchmark
    from awares_agent.evals.lmms_task import write_lmms_task

    datasets.disable_progress_bars()  # the status line says what is happening
    with console.status(f"loading {args.bench}..."):
        samples = load_benchmark(args.bench, split=args.split, limit=args.limit, seed=args.seed)
        name = Path(args.bench).name if Path(args.bench).exists() else args.bench
        task = write_lmms_task(list(samples), args.out, benchmark=name)
    console.print(
        f"{len(samples)} samples -> {task}\nrun: lmms-eval --model awares --model_args backend=reader,"
        f"trajectories={Path(args.out) / 'trajectories.jsonl'} --tasks {task.stem} "
        f"--include_path {task.parent} --output_path {Path(args.out) / 'results'}",
        soft_wrap=True,
        highlight=False,
    )
    return EXIT_OK


def _show_turn(console: Console, data: dict[str, Any]) -> None:
    if data["kind"] == "crop":
        console.print(f"[dim]model[/] requests crops {escape(', '.join(data['crops']))}")
    elif data["kind"] == "invalid":
        console.print(f"[yellow]model[/] made an invalid turn: {escape(data['error'] or '')}")


def _show_result(console: Console, result: Any) -> None:
    t = result.trajectory
    console.print()
    # Model text is never read as rich markup: an answer like "[/b]" would otherwise raise MarkupError.
    shown = escape(result.answer) if result.answer is not None else "[red](no answer)[/]"
    console.print(f"[bold]Answer:[/] {shown}")
    if result.crops:
        table = Table(title="Crops", show_edge=False)
        for column in ("id", "region", "box (l, t, r, b)", "size", "tokens"):
            table.add_column(column)
        for c in result.crops:
            table.add_row(c.region_id, c.name, str(tuple(c.box)), f"{c.width}x{c.height}", str(c.tokens))
        console.print(table)
    else:
        console.print("[dim]No crops: answered from the low-resolution view.[/]")
    console.print(
        f"visual tokens {result.visual_tokens} / {result.full_tokens} full resolution, "
        f"[bold]RTR {result.rtr:.2f}[/] ({t.cost.rule})  |  {t.calls} model call(s), {result.latency_s:.2f} s"
    )
    for error in t.errors:
        console.print(f"[yellow]note[/] round {error.round}: {error.kind}: {escape(error.message)}")


_AGENT = (add_backend_options, add_agent_options)

COMMANDS: tuple[Command, ...] = (
    Command(
        "ask",
        help="answer a question about an image",
        description=(
            "Answer a question about an image with an AwaRes agent: on an OpenAI-compatible server "
            "(--base-url), a local Hugging Face model (--model PATH_OR_HUB_ID), or the offline reader."
        ),
        epilog=READER_NOTE,
        run=_ask,
        options=(config_options(AskOptions), *_AGENT),
    ),
    Command(
        "eval",
        help="evaluate policies on a benchmark: accuracy and visual-token cost",
        description=(
            "Run policies over a benchmark and write per-sample JSONL and a summary per policy under --out. "
            "Resumable: run the same command again to finish a killed run."
        ),
        epilog=READER_NOTE,
        run=_eval,
        options=(
            add_data_options("bench", "split", "limit", "seed", "out", "concurrency"),
            config_options(EvalOptions),
            *_AGENT,
        ),
    ),
    Command(
        "report",
        help="a markdown table and an accuracy-vs-RTR plot over evaluation runs",
        description="Render a Table-1-style markdown table and an accuracy-vs-RTR plot over run directories.",
        run=_report,
        options=(config_options(ReportOptions),),
    ),
    Command(
        "lmms-task",
        help="write a benchmark as a local lmms-eval task (for lmms-eval --model awares)",
        description=(
            "Write a benchmark (its data, a task YAML and its hooks) as a local lmms-eval task folder; run "
            "it with `lmms-eval --model awares --tasks awares_NAME --include_path DIR`, scored with the same "
            "metric as `awares eval`."
        ),
        run=_lmms_task,
        options=(add_data_options("bench", "split", "limit", "seed", "out"),),
    ),
    Command(
        "collect",
        help="build training data: teacher labels or on-policy rollouts, as a TRL-ready dataset",
        commands=COLLECT_COMMANDS,
    ),
    Command("train", help=TRAIN_HELP, commands=TRAIN_COMMANDS),
    Command(
        "demo",
        help="the interactive console demo: watch the model look, crop and answer",
        description=(
            "A full-screen terminal app: the low-resolution view with the crop regions, the crops the model "
            "asks for as they arrive, its answer streamed, and what it cost. With no arguments it runs "
            "offline on the embedded reader with bundled sample pages; point it at your own image and "
            "server (or local model) with IMAGE and --base-url/--model. Type /help in the app for commands."
        ),
        epilog=READER_NOTE,
        run=_demo,
        options=(config_options(DemoOptions), *_AGENT),
    ),
    SERVE_COMMAND,
)
"""Every ``awares`` command: the one table the parser tree and the dispatch are built from."""


def _parser() -> argparse.ArgumentParser:
    return build_parser(
        "awares",
        COMMANDS,
        description="AwaRes: a VLM looks at a low-resolution view and fetches only the crops it needs.",
        epilog=READER_NOTE,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``awares`` command. Returns the process exit code."""
    return run_command(_parser(), argv)


if __name__ == "__main__":
    raise SystemExit(main())
