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
import random
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import transformers
from PIL import Image
from rich.console import Console
from rich.table import Table
from transformers import AutoModelForImageTextToText

from awares_agent.backends.hf_processors import load_processor
from awares_agent.testing import build_tiny_qwen3_vl, build_tiny_vlm
from awares_agent.testing.location import QUADRANTS, QUESTION, linear_probe, square_pages
from awares_agent.training.sft import freeze_vision_tower


@dataclass(frozen=True)
class QuadrantPoint:
    """One point of a training curve: held-out accuracy after ``step`` steps and ``seconds`` of training."""

    step: int
    accuracy: float
    seconds: float
    loss: float | None


def _encode(processor: Any, image: Image.Image, answer: str | None) -> dict[str, Any]:
    messages: list[dict[str, Any]] = [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": QUESTION}]}
    ]
    prompt = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    text = prompt + (f"{answer}<|im_end|>" if answer is not None else "")
    batch = processor(text=[text], images=[image], return_tensors="pt")
    if answer is not None:
        prompt_len = processor(text=[prompt], images=[image], return_tensors="pt")["input_ids"].shape[1]
        labels = batch["input_ids"].clone()
        labels[:, :prompt_len] = -100
        batch["labels"] = labels
    return dict(batch)


def _accuracy(model: Any, processor: Any, pages: Sequence[tuple[Image.Image, int]]) -> float:
    """Share of pages whose greedy answer starts with their quadrant's name."""
    tokenizer = processor.tokenizer
    right = 0
    model.eval()
    with torch.no_grad():
        for image, q in pages:
            batch = _encode(processor, image, None)
            out = model.generate(**batch, max_new_tokens=6, do_sample=False)
            text = tokenizer.decode(out[0, batch["input_ids"].shape[1] :], skip_special_tokens=True)
            right += text.strip().startswith(QUADRANTS[q])
    model.train()
    return right / len(pages)


def train_quadrant(
    model: Any,
    processor: Any,
    train: Sequence[tuple[Image.Image, int]],
    test: Sequence[tuple[Image.Image, int]],
    *,
    steps: int,
    eval_at: Sequence[int],
    lr: float = 1e-3,
    batch: int = 8,
    freeze_vision: bool = True,
    seed: int = 0,
    on_point: Callable[[QuadrantPoint], None] | None = None,
) -> list[QuadrantPoint]:
    """Train ``model`` to answer "Where is the square?" with its quadrant; score it through ``generate``.

    A plain loop (AdamW, constant ``lr``, loss on the answer tokens only) over pages drawn with replacement.

    Args:
        model: a loaded VLM with ``model.model.visual``.
        processor: its processor.
        train: training pages.
        test: held-out pages (greedy decoding, the answer must start with the quadrant's name).
        steps: optimisation steps.
        eval_at: the steps to score at (0 scores the untrained model).
        lr: learning rate.
        batch: pages per step (gradients accumulated one page at a time).
        freeze_vision: keep the vision tower fixed, its merger excepted.
        seed: the page order.
        on_point: called with each point as it is measured.

    Returns:
        The curve, one :class:`QuadrantPoint` per step of ``eval_at``.
    """
    if freeze_vision:
        freeze_vision_tower(model)
    params = [p for p in model.parameters() if p.requires_grad]
    optim = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    encoded = [_encode(processor, img, QUADRANTS[q]) for img, q in train]
    rng = random.Random(seed)
    points: list[QuadrantPoint] = []
    seconds, last_loss = 0.0, None
    wanted = set(eval_at)

    def record(step: int) -> None:
        point = QuadrantPoint(step, _accuracy(model, processor, test), seconds, last_loss)
        points.append(point)
        if on_point is not None:
            on_point(point)

    model.train()
    if 0 in wanted:
        record(0)
    for step in range(1, steps + 1):
        started = time.perf_counter()
        optim.zero_grad()
        total = 0.0
        for item in rng.choices(encoded, k=batch):
            loss = model(**item).loss / batch
            loss.backward()
            total += float(loss.detach())
        optim.step()
        seconds += time.perf_counter() - started
        last_loss = total
        if step in wanted:
            record(step)
    return points


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
