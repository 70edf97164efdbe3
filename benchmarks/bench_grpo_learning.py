"""Does multi-turn GRPO cut an over-calling SFT model's needless crops? Collect, SFT, GRPO, evaluate.

The whole pipeline, offline on a CPU, with nothing scripted (extends ``bench_sft_learning.py``):

1. **Collect** ``crop-decision`` pages with the offline teacher and export them (training seed 1, held-out
   seed 2; shared with the SFT benchmark's folder, so a finished collection is reused).
2. **SFT** a fresh tiny Qwen2.5-VL (``tiny-qwen2.5-vl``) with the paper's crop-call weight 5, vision encoder
   frozen: the SFT
   benchmark's run (cosine schedule over 300 steps), stopped at ``--sft-steps``. Short of convergence it
   **over-calls**: it crops on every page that needs it and on most that do
   not, the paper's post-SFT symptom. (This starting point, and GRPO's steps and learning rate, were chosen
   on a validation seed, 3, never on the held-out pages.)
3. **GRPO** (:class:`~awares_agent.training.AwaresGRPOTrainer`): rollouts of the real agent on the training
   pages, G = 8 per prompt, reward ``R_ans - C_tool`` with the default weights, KL to the SFT model
   (beta 0.04), for at most ``--minutes`` of training or ``--steps`` steps. A checkpoint is saved every
   ``--save-every`` steps; the call-rate guard (band [0.05, 0.95]) stops a run whose rollouts stop calling (or
   always call) for ``--guard-patience`` steps, and the checkpoint with the best mean rollout reward is kept.
4. **Evaluate** the SFT model and the GRPO model (and the GRPO model every ``--eval-every`` steps) through the
   agent on the held-out pages: needless crop rate (crops on pages that need none), decision and answer
   accuracy, recall on needed pages, RTR.

    python benchmarks/bench_grpo_learning.py [--steps 300] [--minutes 15] [--sft-steps 50]
        [--lr 3e-4] [--prompts 2] [--eval-every 50] [--out runs/bench-grpo] [--plot docs/grpo-curves.png]

Target: needless crops cut by >= 30% relative, decision and answer accuracy within 1 point or better, with
GRPO's training time at most 15 minutes.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import datasets
import torch
import transformers
from rich.console import Console
from rich.table import Table
from transformers import PrinterCallback, TrainerCallback

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_sft_learning import TEST_SEED, TRAIN_SEED, collect

from awares_agent.training import (
    AwaresGRPOConfig,
    AwaresGRPOTrainer,
    AwaresSFTConfig,
    AwaresSFTTrainer,
    load_for_training,
    load_training_data,
    policy_samples,
)
from awares_agent.training.evaluate import evaluate_policy
from awares_agent.training.models import save_trained


def needless(c: dict[str, int]) -> float:
    """The share of pages that need no crop on which the policy cropped anyway (from a report's confusion)."""
    total = c["not-needed/cropped"] + c["not-needed/direct"]
    return c["not-needed/cropped"] / total if total else 0.0


class Budget(TrainerCallback):
    """Stops training after ``minutes`` of it, and evaluates the policy every ``every`` steps."""

    def __init__(self, trainer: Any, minutes: float, every: int, heldout: list[Any], out: Path) -> None:
        self.trainer, self.limit, self.every, self.heldout, self.out = (
            trainer,
            minutes * 60,
            every,
            heldout,
            out,
        )
        self.train_s = 0.0
        self.points: list[dict[str, Any]] = []
        self._last = time.perf_counter()

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._last = time.perf_counter()

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.train_s += time.perf_counter() - self._last
        if self.train_s >= self.limit:
            control.should_training_stop = True
        if state.global_step % self.every == 0 and not control.should_training_stop:
            snapshot = self.out / f"step-{state.global_step}"
            save_trained(self.trainer, snapshot, self.trainer.agent_config)
            report = evaluate_policy(snapshot, self.heldout, self.out / f"eval-{state.global_step}")
            self.points.append({"step": state.global_step, "train_s": self.train_s, **report.model_dump()})
            shutil.rmtree(snapshot, ignore_errors=True)


class StopAt(TrainerCallback):
    """Ends training after ``step`` steps (the schedule stays the one of the full run)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.global_step >= self.step:
            control.should_training_stop = True


def sft(data: Any, run: Path, steps: int, schedule: int) -> Path:
    """The over-calling starting point: the SFT benchmark's weight-5, frozen-encoder run (a cosine schedule
    over ``schedule`` steps, fresh tiny model, seed 0), stopped after ``steps`` steps."""
    shutil.rmtree(run, ignore_errors=True)
    model, processor, _ = load_for_training("tiny-qwen2.5-vl", work_dir=run)
    config = AwaresSFTConfig(
        output_dir=str(run),
        tool_call_weight=5.0,
        max_steps=schedule,
        per_device_train_batch_size=4,
        learning_rate=3e-3,
        lr_scheduler_type="cosine",
        warmup_steps=0.05,
        logging_steps=25,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        bf16=False,
        activation_checkpointing=False,
        seed=0,
        disable_tqdm=True,
        freeze_vision_tower=True,
    )
    trainer = AwaresSFTTrainer(
        model,
        config,
        train_dataset=data.dataset,
        processing_class=processor,
        protocol=data.protocol,
        crop_set=data.crop_set,
    )
    trainer.add_callback(StopAt(steps))
    trainer.train()
    return save_trained(trainer, run / "model", data.agent_config())


def plot(history: list[dict[str, Any]], held_out: list[tuple[int, dict[str, Any]]], path: Path) -> None:
    """Rollout call rate, needless-crop rate and reward per step (over a 20-step window), and the held-out
    needless-crop rate of the greedy policy at each evaluation (``(step, report)`` pairs)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [h["step"] for h in history]
    k = 20

    def window(num: str | list[str], den: list[str] | None = None) -> list[float]:
        out = []
        for i in range(len(history)):
            rows = history[max(0, i - k + 1) : i + 1]
            top = sum(sum(r[n] for n in ([num] if isinstance(num, str) else num)) for r in rows)
            bottom = sum(sum(r[d] for d in den) for r in rows) if den else len(rows)
            out.append(top / bottom if bottom else float("nan"))
        return out

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.8))
    left.plot(steps, window("crops/call_rate"), label="rollout call rate")
    unneeded = ["decision/not_needed_cropped", "decision/not_needed_direct"]
    left.plot(steps, window("decision/not_needed_cropped", unneeded), label="rollout needless-crop rate")
    left.plot(
        [s for s, _ in held_out],
        [needless(r["confusion"]) for _, r in held_out],
        "o-",
        label="held-out needless-crop rate (greedy)",
    )
    left.set_xlabel("GRPO step")
    left.set_ylim(0, 1.05)
    left.legend(fontsize=8)
    right.plot(steps, window("reward"), label="reward")
    right.plot(steps, window("rewards/answer/mean"), label="R_ans")
    right.plot(steps, window("rewards/crop_cost/mean"), label="-C_tool")
    right.set_xlabel("GRPO step")
    right.legend(fontsize=8)
    fig.suptitle(
        "GRPO from an over-calling SFT model (tiny Qwen2.5-VL, CPU; rollout curves over 20-step windows)"
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train", type=int, default=600, help="training pages (default: 600)")
    parser.add_argument("--test", type=int, default=40, help="held-out pages (default: 40)")
    parser.add_argument(
        "--sft-steps", type=int, default=50, help="SFT steps of the starting model (default: 50)"
    )
    parser.add_argument(
        "--sft-schedule", type=int, default=300, help="the SFT run's schedule length in steps (default: 300)"
    )
    parser.add_argument("--steps", type=int, default=300, help="most GRPO steps (default: 300)")
    parser.add_argument(
        "--minutes", type=float, default=15.0, help="most GRPO training minutes (default: 15)"
    )
    parser.add_argument("--lr", type=float, default=3e-4, help="GRPO learning rate (default: 3e-4)")
    parser.add_argument("--beta", type=float, default=0.04, help="KL coefficient (default: 0.04)")
    parser.add_argument(
        "--prompts", type=int, default=2, help="prompts per step, 8 rollouts each (default: 2)"
    )
    parser.add_argument("--save-every", type=int, default=25, help="checkpoint every N steps (default: 25)")
    parser.add_argument(
        "--guard-patience",
        type=int,
        default=5,
        help="steps outside the call-rate band before the guard stops",
    )
    parser.add_argument("--eval-every", type=int, default=50, help="evaluate the policy every N steps")
    parser.add_argument("--protocol", default="awares-text", choices=["awares-text", "json"])
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default: 2)")
    parser.add_argument(
        "--collection", default="runs/bench-sft", help="collection folder (shared with SFT's)"
    )
    parser.add_argument("--out", default="runs/bench-grpo", help="working folder (default: runs/bench-grpo)")
    parser.add_argument("--plot", default="docs/grpo-curves.png", help="where the curves are drawn")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    datasets.disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    console = Console(width=150)
    out, collection = Path(args.out), Path(args.collection)
    shutil.rmtree(out, ignore_errors=True)
    started = time.perf_counter()

    train_export, train_summary, _ = collect(
        collection / "collect-train", args.train, TRAIN_SEED, args.protocol
    )
    test_export, _, _ = collect(collection / "collect-test", args.test, TEST_SEED, args.protocol)
    data = load_training_data(train_export)
    train_samples = policy_samples(train_export)
    heldout = policy_samples(test_export)
    console.print(
        f"train: {data.describe()}; teacher labels agree with the pages: "
        f"{train_summary['label_agreement']:.0%}; held-out: {len(heldout)} rows"
    )

    t0 = time.perf_counter()
    start = sft(data, out / "sft", args.sft_steps, args.sft_schedule)
    sft_s = time.perf_counter() - t0
    before = evaluate_policy(start, heldout, out / "eval-sft")

    model, processor, _ = load_for_training(str(start), work_dir=out, local_files_only=True)
    config = AwaresGRPOConfig(
        output_dir=str(out / "grpo"),
        max_steps=args.steps,
        num_generations=8,
        per_device_train_batch_size=8 * args.prompts,
        rollout_batch=8 * args.prompts,
        learning_rate=args.lr,
        beta=args.beta,
        max_completion_length=32,
        save_strategy="steps",
        save_steps=args.save_every,
        save_only_model=True,
        guard_action="stop",
        guard_patience=args.guard_patience,
        report_to="none",
        use_cpu=True,
        activation_checkpointing=False,
        seed=0,
        disable_tqdm=True,
    )
    trainer = AwaresGRPOTrainer(
        model,
        config,
        samples=train_samples,
        processing_class=processor,
        agent=data.agent_config(),
    )
    trainer.remove_callback(PrinterCallback)  # the tables below say it; every step's logs go to the JSON
    budget = Budget(trainer, args.minutes, args.eval_every, heldout, out / "grpo")
    trainer.add_callback(budget)
    trainer.train()
    guard, best = trainer.guard, trainer.keep_best()
    kept = f"final weights (step {trainer.state.global_step})"
    if best:
        kept = f"the guard stopped at step {trainer.state.global_step}; kept {Path(best).name}"
    console.print(f"GRPO model: {kept}")
    final = save_trained(trainer, out / "grpo" / "model", trainer.agent_config)
    after = evaluate_policy(final, heldout, out / "eval-grpo")
    history = [h for h in trainer.state.log_history if "crops/call_rate" in h]

    def pct(v: float | None) -> str:
        return "n/a" if v is None else f"{100 * v:.1f}%"

    table = Table(
        title=f"Held-out pages ({before.samples}), through the agent, greedy: SFT (w=5, {args.sft_steps} "
        f"steps) before and after GRPO ({trainer.state.global_step} steps, {budget.train_s / 60:.1f} min)"
    )
    for column in (
        "model",
        "needless crops",
        "decision",
        "crops when needed",
        "answer",
        "region",
        "RTR",
        "call rate",
        "well-formed",
    ):
        table.add_column(column, justify="right")
    for name, r in (("SFT", before), ("SFT + GRPO", after)):
        table.add_row(
            name,
            pct(needless(r.confusion)),
            pct(r.decision_accuracy),
            pct(r.needed_recall),
            pct(r.answer_accuracy),
            pct(r.region_accuracy),
            f"{r.rtr:.3f}",
            pct(r.call_rate),
            pct(r.well_formed),
        )
    console.print(table)
    cut = 1 - needless(after.confusion) / needless(before.confusion) if needless(before.confusion) else 0.0
    ok = (
        cut >= 0.30
        and after.decision_accuracy >= before.decision_accuracy - 0.01
        and after.answer_accuracy >= before.answer_accuracy - 0.01
        and budget.train_s <= 15 * 60
    )
    console.print(
        f"needless crops cut by {100 * cut:.0f}% relative (target >= 30%); decision "
        f"{100 * (after.decision_accuracy - before.decision_accuracy):+.1f} pt, answer "
        f"{100 * (after.answer_accuracy - before.answer_accuracy):+.1f} pt; GRPO training "
        f"{budget.train_s:.0f} s; {'TARGET MET' if ok else 'target not met'}"
    )
    curve = Table(
        title="GRPO curve: held-out policy every few steps, and the rollouts' means over the steps before"
    )
    for column in (
        "step",
        "train s",
        "needless crops",
        "decision",
        "crops when needed",
        "rollout call rate",
        "rollout reward",
    ):
        curve.add_column(column, justify="right")
    last = 0
    for p in budget.points:
        window = [h for h in history if last < h["step"] <= p["step"]]
        last = p["step"]
        curve.add_row(
            str(p["step"]),
            f"{p['train_s']:.0f}",
            pct(needless(p["confusion"])),
            pct(p["decision_accuracy"]),
            pct(p["needed_recall"]),
            pct(sum(h["crops/call_rate"] for h in window) / len(window)),
            f"{sum(h['reward'] for h in window) / len(window):.3f}",
        )
    console.print(curve)
    if args.plot:
        held_out = [(0, before.model_dump()), *((p["step"], p) for p in budget.points)]
        plot(history, [*held_out, (trainer.state.global_step, after.model_dump())], Path(args.plot))
        console.print(f"curves: {args.plot}")
    record = {
        "args": vars(args),
        "kept": kept,
        "guard_events": guard.events,
        "sft_s": sft_s,
        "grpo_train_s": budget.train_s,
        "steps": trainer.state.global_step,
        "before": before.model_dump(),
        "after": after.model_dump(),
        "needless_cut": cut,
        "target_met": ok,
        "points": budget.points,
        "history": history,
        "total_s": time.perf_counter() - started,
    }
    (out / "grpo-curves.json").write_text(json.dumps(record, indent=2, default=str))
    console.print(f"total {record['total_s']:.0f} s")


if __name__ == "__main__":
    main()
