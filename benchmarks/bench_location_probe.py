"""Can the tiny models tell *where*? The quadrant of a black square, probed and then trained.

For each tiny builder (``--model tiny``: Qwen3-VL with sinusoidal vision positions; the same with the stock
random position table; the tiny Qwen2.5-VL):

1. **Probe at step 0**: a 4-way logistic regression on the mean-pooled vision output, fitted on training
   pages and scored on held-out pages (the model untouched): is the quadrant there to be read at all?
2. **Training curve**: the model itself is trained (a plain loop, vision tower frozen, merger and language
   model trained, lr 1e-3, batch 8) to answer "Where is the square?" with the quadrant's name, and scored
   by greedy decoding on the held-out pages at each step of ``--eval-at``.

    python benchmarks/bench_location_probe.py [--train 400] [--test 80] [--eval-at 0,50,100,200,300]

Pages: 224 px, a 48 px black square wholly inside one quadrant; training seed 1, held-out seed 2. Target:
>= 95% held-out within a few minutes of CPU for ``--model tiny``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
import transformers
from rich.console import Console
from rich.table import Table
from transformers import AutoModelForImageTextToText

from awares_agent.backends.hf_processors import load_processor
from awares_agent.testing import build_tiny_qwen3_vl, build_tiny_vlm
from awares_agent.testing.location import linear_probe, square_pages, train_quadrant

BUILDERS = {
    "tiny (Qwen3-VL, sinusoidal positions)": lambda p: build_tiny_qwen3_vl(p),
    "Qwen3-VL, random position table": lambda p: build_tiny_qwen3_vl(p, positions="random"),
    "tiny-qwen2.5-vl": build_tiny_vlm,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train", type=int, default=400, help="training pages, seed 1 (default: 400)")
    parser.add_argument("--test", type=int, default=80, help="held-out pages, seed 2 (default: 80)")
    parser.add_argument("--eval-at", default="0,50,100,200,300", help="steps to score at")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default: 2)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    console = Console(width=140)
    train, test = square_pages(args.train, seed=1), square_pages(args.test, seed=2)
    steps = sorted({int(s) for s in args.eval_at.split(",")})
    table = Table(title=f"Quadrant of a black square, {args.test} held-out pages (chance 25%)")
    table.add_column("model")
    table.add_column("probe, step 0", justify="right")
    for step in steps:
        table.add_column(f"step {step}", justify="right")
    table.add_column("train s", justify="right")
    for name, build in BUILDERS.items():
        with tempfile.TemporaryDirectory() as tmp:
            path = build(Path(tmp) / "model")
            model = AutoModelForImageTextToText.from_pretrained(path, local_files_only=True)
            processor = load_processor(str(path), local_files_only=True)
            probe = linear_probe(model, processor, train[:200], test)
            started = time.perf_counter()
            points = train_quadrant(
                model, processor, train, test, steps=max(steps), eval_at=steps,
                on_point=lambda p, n=name: console.print(f"{n}: step {p.step}, {100 * p.accuracy:.1f}%"),
            )  # fmt: skip
            seconds = points[-1].seconds if points else time.perf_counter() - started
        curve = (f"{100 * p.accuracy:.1f}%" for p in points)
        table.add_row(name, f"{100 * probe:.1f}%", *curve, f"{seconds:.0f}")
    console.print(table)


if __name__ == "__main__":
    main()
