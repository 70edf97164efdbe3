"""The AwaRes miniature: the paper's pipeline end to end on a CPU, through the public command line.

Every step is an ``awares`` command a user could type (each is printed as it runs, its output kept under
``--out/logs``); nothing reads the generator's answers except the judge's ground truth and the dataset
grounder's box, as in the paper:

1. **Label**: ``awares collect label --bench stripes --backend pattern-reader`` on training pages (seed 1)
   and on choice pages (seed 2). The teacher, :class:`~awares_agent.baselines.pattern_reader.PatternReader`,
   reads only the pixels it is sent, on the low-res view and on the full image; the metric judge compares its
   answers with the ground truth; the dataset grounder maps the patch to the crop set.
2. **SFT**: ``awares train sft --model tiny`` (a fresh tiny Qwen3-VL whose vision positions start as 2-D
   sinusoids, its vision tower frozen), crop-call weight w = 5, scored on the choice pages.
3. **GRPO**: ``awares train grpo`` from the SFT model with the AwaRes reward (the benchmark's own metric,
   exact match, minus the crop cost: a lexical similarity paid a blend of the two answers), G = 8 rollouts
   for each of 4 pages a step, the call-rate guard on.
4. **Evaluate**: ``awares eval --bench stripes --seed 3`` (held out, for reporting only) with the low-res,
   full-res, all-crops, oracle and awares policies, for the teacher, the SFT and the GRPO model; and on the
   ``stripes-tinted`` look (seed 3), which no choice was made on. ``awares report`` draws accuracy against
   RTR; the training curves are drawn from the trainers' logs.

    python benchmarks/bench_miniature.py [--train 800] [--choice 48] [--test 100] [--sft-steps 1200]
        [--grpo-steps 100] [--out runs/miniature] [--plots docs] [--fresh]

Seeds: training pages 1; choice pages 2 (the recipe, its step counts and rates, was chosen on them); reported
pages 3 (both looks; never used for a choice). A second run with the same ``--out`` reuses what is done.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from awares_agent.evals.benchmarks import load_benchmark
from awares_agent.evals.decisions import score_decisions
from awares_agent.evals.runner import Summary, read_results
from awares_agent.evals.schema import EvalSample

TRAIN_SEED, CHOICE_SEED, REPORT_SEED = 1, 2, 3
BASELINES = ("low-res", "full-res", "all-crops", "oracle")


class Pipeline:
    """Runs ``awares`` commands in order, skipping those whose output is already there."""

    def __init__(self, out: Path, console: Console) -> None:
        self.out, self.console = out, console
        self.logs = out / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.seconds: dict[str, float] = {}
        self.awares = Path(sys.executable).with_name("awares")

    def run(self, name: str, args: list[str], done: Path) -> None:
        """Run ``awares ARGS`` unless ``done`` exists; its output goes to ``logs/NAME.log``."""
        command = [str(self.awares), *args]
        if done.exists():
            self.console.print(f"[dim]{name}: done before ({done})[/]")
            return
        self.console.print(f"[bold]{name}[/]: awares {shlex.join(args)}")
        started = time.perf_counter()
        log = self.logs / f"{name}.log"
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TQDM_DISABLE": "1"}
        with log.open("w") as sink:
            code = subprocess.call(command, stdout=sink, stderr=subprocess.STDOUT, env=env)
        self.seconds[name] = time.perf_counter() - started
        if code != 0:
            tail = log.read_text(errors="replace")[-3000:]
            raise SystemExit(f"{name} failed (exit {code}); the end of {log}:\n{tail}")
        self.console.print(f"  {self.seconds[name]:.0f} s")


def _pct(value: float | None) -> str:
    return "" if value is None else f"{100 * value:.1f}"


def _row(run: Path, policy: str, samples: list[EvalSample]) -> dict[str, Any]:
    """One policy's figures: accuracy overall and on fine / coarse pages, RTR, decision and region."""
    summary = Summary.model_validate_json((run / policy / "summary.json").read_text())
    report = score_decisions(read_results(run / policy), samples)
    return {
        "policy": policy,
        "accuracy": summary.accuracy,
        "fine": summary.by_category.get("fine"),
        "coarse": summary.by_category.get("coarse"),
        "rtr": summary.rtr,
        "decision": report.decision_accuracy,
        "region": report.region_accuracy,
        "well_formed": report.well_formed,
    }


def _table(title: str, rows: list[tuple[str, dict[str, Any]]]) -> Table:
    table = Table(title=title)
    columns = ("model", "policy", "accuracy", "fine", "coarse", "RTR", "decision", "region", "well-formed")
    for column in columns:
        table.add_column(column, justify="left" if column in ("model", "policy") else "right")
    for model, r in rows:
        table.add_row(
            model, r["policy"], f"{r['accuracy']:.1f}", "" if r["fine"] is None else f"{r['fine']:.1f}",
            "" if r["coarse"] is None else f"{r['coarse']:.1f}", f"{r['rtr']:.3f}", _pct(r["decision"]),
            _pct(r["region"]), _pct(r["well_formed"]),
        )  # fmt: skip
    return table


def _curves(sft: Path, grpo: Path, path: Path) -> dict[str, Any]:
    """Plot SFT loss and GRPO reward / call rate / RTR per step from the trainers' logs; return the series."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sft_log = json.loads((sft / "trainer_state.json").read_text())["log_history"]
    grpo_log = json.loads((grpo / "trainer_state.json").read_text())["log_history"]
    loss = [(h["step"], h["loss"]) for h in sft_log if "loss" in h]
    steps = [h for h in grpo_log if "reward" in h]
    series = {
        "sft_loss": loss,
        "grpo_reward": [(h["step"], h["reward"]) for h in steps],
        "grpo_call_rate": [(h["step"], h.get("crops/call_rate")) for h in steps],
        "grpo_rtr": [(h["step"], h.get("crops/rtr")) for h in steps],
        "grpo_decision": [(h["step"], h.get("decision/accuracy")) for h in steps],
    }
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6), dpi=110)
    axes[0].plot(*zip(*loss, strict=True))
    axes[0].set(title="SFT (w = 5): training loss", xlabel="step", yscale="log")
    panels = (
        (axes[1], "GRPO: per-step reward and decisions", (("grpo_reward", "reward"),
                                                          ("grpo_decision", "decision accuracy"))),
        (axes[2], "GRPO: crop calls and cost per step", (("grpo_call_rate", "crop-call rate"),
                                                         ("grpo_rtr", "RTR"))),
    )  # fmt: skip
    for ax, title, lines in panels:
        for key, label in lines:
            points = [(s, v) for s, v in series[key] if v is not None]
            if points:
                ax.plot(*zip(*points, strict=True), label=label, alpha=0.8)
        ax.set(title=title, xlabel="step")
        ax.legend(fontsize=8)
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return series


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train", type=int, default=800, help="training pages, seed 1 (default: 800)")
    parser.add_argument("--choice", type=int, default=48, help="choice pages, seed 2 (default: 48)")
    parser.add_argument("--test", type=int, default=100, help="reported pages a look, seed 3 (default: 100)")
    parser.add_argument("--sft-steps", type=int, default=1200, help="SFT steps (default: 1200)")
    parser.add_argument("--grpo-steps", type=int, default=100, help="GRPO steps (default: 100)")
    parser.add_argument("--out", default="runs/miniature", help="working folder (default: runs/miniature)")
    parser.add_argument("--plots", default="docs", help="where the two plots go (default: docs)")
    parser.add_argument("--fresh", action="store_true", help="start again instead of reusing --out")
    args = parser.parse_args()
    console = Console(width=150)
    out = Path(args.out)
    if args.fresh:
        shutil.rmtree(out, ignore_errors=True)
    started = time.perf_counter()
    run = Pipeline(out, console)

    label = ["collect", "label", "--bench", "stripes", "--backend", "pattern-reader",
             "--protocol", "awares-text"]  # fmt: skip
    for name, n, seed in (("train", args.train, TRAIN_SEED), ("choice", args.choice, CHOICE_SEED)):
        folder = out / f"label-{name}"
        run.run(f"label-{name}", [*label, "--limit", str(n), "--seed", str(seed), "--out", str(folder)],
                folder / "export" / "trajectories.jsonl")  # fmt: skip
    sft, grpo = out / "sft", out / "grpo"
    run.run("sft", ["train", "sft", "--data", str(out / "label-train" / "export"), "--model", "tiny",
                    "--out", str(sft), "--tool_call_weight", "5", "--max_steps", str(args.sft_steps),
                    "--per_device_train_batch_size", "4", "--lr_scheduler_type", "cosine",
                    "--warmup_steps", "0.05", "--logging_steps", "20", "--save_strategy", "no",
                    "--report_to", "none", "--eval_data", str(out / "label-choice" / "export")],
            sft / "policy-eval" / "policy.json")  # fmt: skip
    run.run("grpo", ["train", "grpo", "--data", str(out / "label-train" / "export"), "--model", str(sft),
                     "--out", str(grpo), "--max_steps", str(args.grpo_steps), "--num_generations", "8",
                     "--per_device_train_batch_size", "32", "--rollout_batch", "32",
                     "--learning_rate", "3e-4",
                     "--beta", "0.04", "--similarity", "metric", "--max_completion_length", "32",
                     "--freeze_vision_tower", "true",
                     "--guard_action", "stop", "--guard_patience", "5",
                     "--save_strategy", "steps", "--save_steps", "25", "--save_only_model", "true",
                     "--report_to", "none", "--eval_data", str(out / "label-choice" / "export")],
            grpo / "policy-eval" / "policy.json")  # fmt: skip

    evals: dict[str, tuple[Path, str, str]] = {}
    for bench in ("stripes", "stripes-tinted"):
        common = ["eval", "--bench", bench, "--limit", str(args.test), "--seed", str(REPORT_SEED)]
        teacher = out / f"eval-{bench}-teacher"
        run.run(f"eval-{bench}-teacher", [*common, "--backend", "pattern-reader", "--policy",
                                          ",".join(BASELINES), "--out", str(teacher)],
                teacher / "report.md")  # fmt: skip
        evals[f"{bench}/teacher"] = (teacher, bench, ",".join(BASELINES))
        for name, model in (("sft", sft), ("grpo", grpo)):
            folder = out / f"eval-{bench}-{name}"
            policies = ",".join((*BASELINES, "awares"))
            run.run(f"eval-{bench}-{name}", [*common, "--model", str(model), "--policy", policies,
                                              "--out", str(folder)], folder / "report.md")  # fmt: skip
            evals[f"{bench}/{name}"] = (folder, bench, policies)
    plots = Path(args.plots)
    plots.mkdir(parents=True, exist_ok=True)
    run.run("report", ["report", *(str(out / f"eval-stripes-{m}") for m in ("teacher", "sft", "grpo")),
                       "--plot", str(plots / "miniature.png")], out / "never")  # fmt: skip

    record: dict[str, Any] = {"args": vars(args), "seconds": run.seconds, "tables": {}}
    names = {"teacher": "teacher (pattern reader)", "sft": "SFT", "grpo": "SFT + GRPO"}
    for bench in ("stripes", "stripes-tinted"):
        rows = []
        samples = list(load_benchmark(bench, limit=args.test, seed=REPORT_SEED))  # drawn once, for every row
        for who in ("teacher", "sft", "grpo"):
            folder, _, policies = evals[f"{bench}/{who}"]
            for policy in policies.split(","):
                rows.append((names[who], _row(folder, policy, samples)))
        record["tables"][bench] = [{"model": m, **r} for m, r in rows]
        seen = "the look the recipe was chosen on" if bench == "stripes" else "a look no choice was made on"
        console.print(_table(f"{bench}, seed {REPORT_SEED} ({args.test} held-out pages; {seen})", rows))

    series = _curves(sft, grpo, plots / "miniature-curves.png")
    rewards = [v for _, v in series["grpo_reward"]]
    fifth = max(1, len(rewards) // 5)
    record["grpo_reward_first_fifth"] = first = _mean(rewards[:fifth])
    record["grpo_reward_last_fifth"] = last = _mean(rewards[-fifth:])
    record["total_s"] = time.perf_counter() - started
    console.print(f"GRPO mean reward: first 20% of steps {first:.3f}, last 20% {last:.3f}")
    console.print("steps: " + ", ".join(f"{k} {v:.0f} s" for k, v in run.seconds.items()))
    console.print(f"total {record['total_s']:.0f} s; plots {plots / 'miniature.png'}, "
                  f"{plots / 'miniature-curves.png'}")  # fmt: skip
    (out / "miniature.json").write_text(json.dumps(record, indent=2, default=str))


if __name__ == "__main__":
    main()
