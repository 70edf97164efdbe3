"""Can cold-start SFT teach a VLM *when* and *where* to crop? Collect, train, evaluate through the agent.

The whole pipeline, offline on a CPU, with nothing scripted:

1. **Collect**: ``crop-decision`` pages (:mod:`awares_agent.evals.synthetic.decision`: the *same question*
   on every page; the code printed large, or small in one of four regions) are labelled by the offline
   teacher (the OCR reader answers on the low-res view and on the full image, the metric judge compares,
   the dataset grounder maps the evidence to the crop set) and exported, for a training seed and a
   held-out seed.
2. **Train**: a fresh tiny model (``--model``: ``tiny-qwen2.5-vl``, as in the README, or ``tiny``) with
   :class:`~awares_agent.training.AwaresSFTTrainer`,
   once per crop-call weight of ``--weights`` (the paper's 5, and 1: plain SFT), on the same rows.
3. **Evaluate**: at each of ``--eval-at`` steps the model is saved and run as an AwaRes agent on the held-out
   pages (:func:`~awares_agent.training.evaluate.evaluate_policy`): well-formed replies, decision accuracy,
   region accuracy, answer accuracy, RTR. The curve is printed as a table.

    python benchmarks/bench_sft_learning.py [--train 600] [--test 40] [--steps 300]
        [--eval-at 0,50,100,200,300] [--weights 5,1] [--lr 3e-3] [--batch 4] [--out runs/bench-sft]

Targets on the held-out pages: 100% well-formed, decision accuracy >= 90%, region accuracy >= 80%. The
collection is resumable: a second run with the same ``--out`` reuses it (``--fresh`` starts again).
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path
from typing import Any

import datasets
import torch
import transformers
from rich.console import Console
from rich.table import Table
from transformers import TrainerCallback

from awares_agent.baselines.reader import ReaderBackend
from awares_agent.collect.export import export_dataset
from awares_agent.collect.grounders import DatasetGrounder
from awares_agent.collect.judges import MetricJudge
from awares_agent.collect.pipeline import Labeler, summarize_rows
from awares_agent.config import AgentConfig
from awares_agent.engine import collect_sync, read_rows
from awares_agent.evals.schema import EvalSample
from awares_agent.evals.synthetic.decision import generate_decision
from awares_agent.image_store import ImageStore
from awares_agent.training import (
    AwaresSFTConfig,
    AwaresSFTTrainer,
    load_for_training,
    load_training_data,
    policy_samples,
)
from awares_agent.training.evaluate import evaluate_policy
from awares_agent.training.models import save_trained

TRAIN_SEED, TEST_SEED = 1, 2


def collect(out: Path, n: int, seed: int, protocol: str) -> tuple[Path, dict[str, Any], float]:
    """Label ``n`` pages of ``seed`` with the offline teacher and export them: (export, summary, seconds)."""
    started = time.perf_counter()
    samples = generate_decision(n, seed=seed)
    store = ImageStore(root=out / "images")
    labeler = Labeler(
        ReaderBackend(), MetricJudge(), DatasetGrounder(), config=AgentConfig(protocol=protocol), store=store
    )
    collect_sync(samples, labeler, out, id_of=lambda s: s.id, concurrency=2, description=f"label seed {seed}")
    rows = list(read_rows(out))
    export_dataset(rows, store, out / "export")
    truth = {s.id: s for s in samples}
    ok = [r for r in rows if r["status"] == "ok"]
    agree = sum(r["needs_crop"] == truth[r["id"]].needs_crop for r in ok)
    summary = summarize_rows(rows).model_dump()
    summary["label_agreement"] = agree / len(ok) if ok else 0.0
    return out / "export", summary, time.perf_counter() - started


class PolicyCurve(TrainerCallback):
    """Saves the model at the given steps and scores its policy through the agent on the held-out pages."""

    def __init__(
        self, trainer: Any, steps: set[int], heldout: list[EvalSample], out: Path, agent: AgentConfig
    ) -> None:
        self.trainer, self.steps, self.heldout = trainer, steps, heldout
        self.out, self.agent = out, agent
        self.points: list[dict[str, Any]] = []
        self.train_s = 0.0
        self._last = time.perf_counter()

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if 0 in self.steps:  # the untrained model, for reference
            self.on_step_end(args, state, control)
        self._last = time.perf_counter()

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.train_s += time.perf_counter() - self._last
        if state.global_step in self.steps:
            snapshot = self.out / f"step-{state.global_step}"
            save_trained(self.trainer, snapshot, self.agent)
            started = time.perf_counter()
            report = evaluate_policy(snapshot, self.heldout, self.out / f"eval-{state.global_step}")
            loss = next((h["loss"] for h in reversed(state.log_history) if "loss" in h), None)
            self.points.append(
                {"step": state.global_step, "train_s": self.train_s, "eval_s": time.perf_counter() - started,
                 "loss": loss, **report.model_dump()}
            )  # fmt: skip
        self._last = time.perf_counter()


def train_curve(
    data: Any, heldout: list[EvalSample], run: Path, args: argparse.Namespace, weight: float
) -> tuple[list[dict[str, Any]], int]:
    """Train a fresh tiny model with crop-call weight ``weight``: the policy's curve, the parameter count."""
    shutil.rmtree(run, ignore_errors=True)
    model, processor, _ = load_for_training(args.model, work_dir=run)
    config = AwaresSFTConfig(
        output_dir=str(run),
        tool_call_weight=weight,
        max_steps=args.steps,
        per_device_train_batch_size=args.batch,
        learning_rate=args.lr,
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
        freeze_vision_tower=args.freeze_vision,
    )
    trainer = AwaresSFTTrainer(
        model, config, train_dataset=data.dataset, processing_class=processor, protocol=data.protocol,
        crop_set=data.crop_set,
    )  # fmt: skip
    steps = {int(s) for s in args.eval_at.split(",")}
    curve = PolicyCurve(trainer, steps, heldout, run, data.agent_config())
    trainer.add_callback(curve)
    trainer.train()
    return curve.points, sum(p.numel() for p in model.parameters())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train", type=int, default=600, help="training pages (default: 600)")
    parser.add_argument("--test", type=int, default=40, help="held-out pages (default: 40)")
    parser.add_argument("--steps", type=int, default=300, help="training steps (default: 300)")
    parser.add_argument("--eval-at", default="0,50,100,200,300", help="steps to evaluate the policy at")
    parser.add_argument(
        "--weights", default="5,1", help="crop-call turn weights, one model each (default: 5,1: paper, plain)"
    )
    parser.add_argument("--lr", type=float, default=3e-3, help="learning rate (default: 3e-3)")
    parser.add_argument("--batch", type=int, default=4, help="rows per step (default: 4)")
    parser.add_argument("--freeze-vision", action="store_true", help="keep the vision encoder fixed")
    parser.add_argument(
        "--model", default="tiny-qwen2.5-vl", help="the tiny model (default: tiny-qwen2.5-vl, as the README)"
    )
    parser.add_argument("--protocol", default="awares-text", choices=["awares-text", "json"])
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default: 2)")
    parser.add_argument("--out", default="runs/bench-sft", help="working folder (default: runs/bench-sft)")
    parser.add_argument("--fresh", action="store_true", help="collect again instead of reusing --out")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    datasets.disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    console = Console(width=150)
    out = Path(args.out)
    if args.fresh:
        shutil.rmtree(out, ignore_errors=True)
    started = time.perf_counter()

    train_export, train_summary, train_collect_s = collect(
        out / "collect-train", args.train, TRAIN_SEED, args.protocol
    )
    test_export, test_summary, test_collect_s = collect(
        out / "collect-test", args.test, TEST_SEED, args.protocol
    )
    data = load_training_data(train_export)
    held_out = load_training_data(test_export)
    heldout_samples = policy_samples(test_export)  # read once, scored at every evaluation step
    console.print(f"train: {data.describe()}; teacher labels agree with the pages: "
                  f"{train_summary['label_agreement']:.0%}")  # fmt: skip
    console.print(f"held-out: {held_out.describe()}")

    def pct(v: float | None) -> str:
        return "n/a" if v is None else f"{100 * v:.1f}%"

    record: dict[str, Any] = {
        "args": vars(args), "train_labels": train_summary, "test_labels": test_summary,
        "collect_s": train_collect_s + test_collect_s, "curves": {},
    }  # fmt: skip
    params = 0
    for weight in (float(w) for w in args.weights.split(",")):
        run = out / f"sft-w{weight:g}{'-frozen' if args.freeze_vision else ''}"
        points, params = train_curve(data, heldout_samples, run, args, weight)
        record["curves"][f"{weight:g}"] = points
        vision = "vision encoder frozen" if args.freeze_vision else "every weight trained"
        table = Table(title=f"{args.model}, crop-call weight w={weight:g}, {vision}: the policy on "
                      f"{len(held_out)} held-out pages, through the agent")  # fmt: skip
        for column in ("step", "train s", "loss", "well-formed", "decision", "crops when needed",
                       "direct when not", "region", "answer", "RTR"):  # fmt: skip
            table.add_column(column, justify="right")
        for p in points:
            table.add_row(
                str(p["step"]), f"{p['train_s']:.0f}", f"{p['loss']:.3f}" if p["loss"] is not None else "",
                pct(p["well_formed"]), pct(p["decision_accuracy"]), pct(p["needed_recall"]),
                pct(p["direct_specificity"]), pct(p["region_accuracy"]), pct(p["answer_accuracy"]),
                f"{p['rtr']:.3f}",
            )  # fmt: skip
        console.print(table)
    record["total_s"] = total_s = time.perf_counter() - started
    record["params"] = params
    console.print(
        f"model {params / 1e6:.2f} M parameters; train {len(data)} rows ({data.labels}); collect "
        f"{record['collect_s']:.0f} s; total {total_s:.0f} s"
    )
    (out / f"curves{'-frozen' if args.freeze_vision else ''}.json").write_text(
        json.dumps(record, indent=2, default=str)
    )


if __name__ == "__main__":
    main()
