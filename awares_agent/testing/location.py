"""Can a VLM tell *where* something is? The quadrant of a black square, probed and trained.

AwaRes asks a model to name the region that holds a detail, so the model must carry an absolute image
position. This module measures it on the simplest task there is: a white image with one black square in one
of its four quadrants.

* :func:`square_pages` draws the pages (deterministic by seed, exactly balanced over the quadrants).
* :func:`linear_probe` reads the model's pooled vision output (no training of the model) and fits a 4-way
  logistic regression on one set of pages, scored on another: can the quadrant be read off at all?

``benchmarks/bench_location_probe.py`` runs the probe on the tiny builders and then trains each to *say* the
quadrant; the tests check the probe at step 0.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from PIL import Image, ImageDraw

__all__ = ["QUADRANTS", "QUESTION", "linear_probe", "square_pages"]

QUADRANTS = ("top-left", "top-right", "bottom-left", "bottom-right")
"""The four answers, in the paper's crop-id order (0-3)."""
QUESTION = "Where is the square?"
"""The question the trained model answers with a quadrant's name."""


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
