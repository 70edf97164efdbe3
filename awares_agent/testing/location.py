"""Can a VLM tell *where* something is? The quadrant of a black square, probed and trained.

AwaRes asks a model to name the region that holds a detail, so the model must carry an absolute image
position. This module measures it on the simplest task there is: a white image with one black square in one
of its four quadrants.

* :func:`square_pages` draws the pages (deterministic by seed, exactly balanced over the quadrants).
* :func:`linear_probe` reads the model's pooled vision output (no training of the model) and fits a 4-way
  logistic regression on one set of pages, scored on another: can the quadrant be read off at all?
* :func:`train_quadrant` trains the model itself (a plain loop, the answer tokens only) to *say* the quadrant,
  and scores it on held-out pages with greedy decoding at the steps asked for.

``benchmarks/bench_location_probe.py`` runs them on the tiny builders; the tests check the probe at step 0.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from PIL import Image, ImageDraw

__all__ = ["QUADRANTS", "QuadrantPoint", "linear_probe", "square_pages", "train_quadrant"]

QUADRANTS = ("top-left", "top-right", "bottom-left", "bottom-right")
"""The four answers, in the paper's crop-id order (0-3)."""
QUESTION = "Where is the square?"


def square_pages(n: int, *, seed: int, size: int = 224, square: int = 48) -> list[tuple[Image.Image, int]]:
    """``n`` white ``size`` px images with a black ``square`` px square in one quadrant: (image, quadrant).

    Quadrants are balanced exactly (``n // 4`` each, the rest spread) and shuffled; the square lies wholly
    inside its quadrant at a random place.
    """
    rng = random.Random(seed)
    labels = [i % 4 for i in range(n)]
    rng.shuffle(labels)
    half = size // 2
    pages = []
    for q in labels:
        x0 = (q % 2) * half + rng.randint(0, half - square)
        y0 = (q // 2) * half + rng.randint(0, half - square)
        img = Image.new("RGB", (size, size), "white")
        ImageDraw.Draw(img).rectangle((x0, y0, x0 + square - 1, y0 + square - 1), fill="black")
        pages.append((img, q))
    return pages


def _pooled_vision(model: Any, processor: Any, images: Sequence[Image.Image]) -> Any:
    """The mean over its visual tokens of the vision tower's merged output, one row per image."""
    import torch

    rows = []
    with torch.no_grad():
        for image in images:
            batch = processor.image_processor(images=[image], return_tensors="pt")
            out = model.model.visual(batch["pixel_values"], grid_thw=batch["image_grid_thw"])
            pooled = out.pooler_output if hasattr(out, "pooler_output") else out
            rows.append(pooled.float().mean(0))
    return torch.stack(rows)


Pages = Sequence[tuple[Image.Image, int]]


def linear_probe(model: Any, processor: Any, train: Pages, test: Pages) -> float:
    """Held-out accuracy of a 4-way logistic regression on the pooled vision output (the model untouched).

    Args:
        model: a loaded Qwen2-VL / Qwen2.5-VL / Qwen3-VL model (``model.model.visual`` is its vision tower).
        processor: its processor.
        train: the pages the probe is fitted on.
        test: the pages it is scored on.

    Returns:
        The share of ``test`` pages whose quadrant the probe names.
    """
    import torch

    x_train = _pooled_vision(model, processor, [img for img, _ in train])
    x_test = _pooled_vision(model, processor, [img for img, _ in test])
    mean, std = x_train.mean(0), x_train.std(0) + 1e-6
    x_train, x_test = (x_train - mean) / std, (x_test - mean) / std
    y_train = torch.tensor([q for _, q in train])
    y_test = torch.tensor([q for _, q in test])
    gen = torch.Generator().manual_seed(0)
    probe = torch.nn.Linear(x_train.shape[1], 4)
    torch.nn.init.normal_(probe.weight, std=0.01, generator=gen)
    torch.nn.init.zeros_(probe.bias)
    optim = torch.optim.LBFGS(probe.parameters(), max_iter=200, line_search_fn="strong_wolfe")

    def closure() -> Any:
        optim.zero_grad()
        loss = torch.nn.functional.cross_entropy(probe(x_train), y_train) + 1e-3 * probe.weight.pow(2).sum()
        loss.backward()
        return loss

    optim.step(closure)
    with torch.no_grad():
        return float((probe(x_test).argmax(1) == y_test).float().mean())


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
    import torch

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
    import torch

    from awares_agent.training.sft import freeze_vision_tower

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
            total += float(loss)
        optim.step()
        seconds += time.perf_counter() - started
        last_loss = total
        if step in wanted:
            record(step)
    return points
