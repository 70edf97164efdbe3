"""Generating the synthetic benchmark: which sample gets which category, label and spot, and the dataset.

Sample ``i`` of a seed is drawn from its own ``random.Random`` (seeded with the seed and ``i``), so it does
not depend on how many samples are generated; labels and grid cells are stratified per category, so that
every 20 samples hold exactly the asked fraction of high-resolution ones and every 9 each grid cell once.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from awares_agent.evals.schema import EvalSample, features
from awares_agent.evals.synthetic.builder import DrawnSample, SampleContext
from awares_agent.evals.synthetic.chart import draw_chart
from awares_agent.evals.synthetic.document import draw_document
from awares_agent.evals.synthetic.fonts import DEFAULT_FONT_DIR, LARGE_PX, SMALL_PX, FontBook
from awares_agent.evals.synthetic.layout import NoFit, Spot
from awares_agent.evals.synthetic.receipt import draw_receipt
from awares_agent.evals.synthetic.scene import draw_scene
from awares_agent.evals.synthetic.table import draw_table

CATEGORIES = ("document", "table", "receipt", "chart", "scene")
"""The kinds of image, in the round-robin order of :func:`generate`; each sample's ``category``."""

DEFAULT_SIZE_RANGE = ((1000, 750), (1500, 1100))
"""``((min_width, min_height), (max_width, max_height))`` of the generated images."""

MIN_SIZE = (800, 600)
"""The smallest image size accepted: large evidence (up to 44 px) must fit, with its table or receipt."""

_ATTEMPTS = 20  # layouts drawn for one sample before giving up

_BUILDERS: dict[str, Callable[[SampleContext], DrawnSample]] = {
    "document": draw_document,
    "table": draw_table,
    "receipt": draw_receipt,
    "chart": draw_chart,
    "scene": draw_scene,
}


def _stratified(seed: int, key: str, block: int, options: Sequence[Any], index: int) -> Any:
    """``options`` shuffled per block of ``len(options)`` draws, so that every block holds each once."""
    order = list(options)
    random.Random(f"awares-synthetic:{seed}:{key}:{block}").shuffle(order)
    return order[index]


def _needs_crop(seed: int, kind: str, j: int, hr_fraction: float) -> bool:
    """Whether the ``j``-th sample of ``kind`` needs high resolution: exactly ``hr_fraction`` per 20."""
    n_hr = round(20 * hr_fraction)
    return _stratified(seed, f"hr:{kind}", j // 20, [True] * n_hr + [False] * (20 - n_hr), j % 20)


def _spot(seed: int, kind: str, j: int, rng: random.Random, straddle_fraction: float) -> Spot:
    cell = _stratified(seed, f"cell:{kind}", j // 9, range(9), j % 9)
    straddle = rng.choice(("v", "h", "both")) if rng.random() < straddle_fraction else None
    return Spot(cell // 3, cell % 3, straddle)


def iter_samples(
    n: int,
    *,
    seed: int = 0,
    size_range: tuple[tuple[int, int], tuple[int, int]] = DEFAULT_SIZE_RANGE,
    hr_fraction: float = 0.4,
    straddle_fraction: float = 0.2,
    categories: Sequence[str] = CATEGORIES,
    small_px: tuple[int, int] = SMALL_PX,
    large_px: tuple[int, int] = LARGE_PX,
    label_same_size: bool = True,
    font_dir: str | Path | None = DEFAULT_FONT_DIR,
) -> Iterator[EvalSample]:
    """Yield the samples of :func:`generate` one at a time (same arguments), holding one image at a time."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if not 0 <= hr_fraction <= 1 or not 0 <= straddle_fraction <= 1:
        raise ValueError("hr_fraction and straddle_fraction must be in [0, 1]")
    unknown = [c for c in categories if c not in _BUILDERS]
    if unknown or not categories:
        raise ValueError(f"unknown categories {unknown}; use some of {', '.join(CATEGORIES)}")
    (wmin, hmin), (wmax, hmax) = size_range
    if not (MIN_SIZE[0] <= wmin <= wmax and MIN_SIZE[1] <= hmin <= hmax):
        raise ValueError(f"size_range {size_range!r} must be ordered and at least {MIN_SIZE}")
    fonts = FontBook(font_dir)
    for i in range(n):
        kind = categories[i % len(categories)]
        j = i // len(categories)
        needs = _needs_crop(seed, kind, j, hr_fraction)
        for attempt in range(_ATTEMPTS):  # a layout that does not fit the image is drawn again
            rng = random.Random(f"awares-synthetic:{seed}:{i}" + (f":{attempt}" if attempt else ""))
            size = (rng.randint(wmin, wmax), rng.randint(hmin, hmax))
            spot = _spot(seed, kind, j, rng, straddle_fraction)
            ctx = SampleContext(rng, fonts, size, needs, spot, small_px, large_px, label_same_size)
            try:
                result = _BUILDERS[kind](ctx)
            except NoFit:
                continue
            x0, y0, x1, y1 = result.bbox
            if 0 <= x0 < x1 <= size[0] and 0 <= y0 < y1 <= size[1]:
                break
        else:
            raise RuntimeError(
                f"sample {i} ({kind}) does not fit a {size[0]}x{size[1]} image; use larger sizes"
            )
        yield EvalSample(
            id=f"syn-{i:06d}",
            image=result.image,
            question=result.question,
            answers=[result.answer],
            evidence=result.bbox,
            needs_crop=needs,
            metric="exact",
            category=kind,
        )


def generate(
    n: int,
    *,
    seed: int = 0,
    size_range: tuple[tuple[int, int], tuple[int, int]] = DEFAULT_SIZE_RANGE,
    hr_fraction: float = 0.4,
    straddle_fraction: float = 0.2,
    categories: Sequence[str] = CATEGORIES,
    small_px: tuple[int, int] = SMALL_PX,
    large_px: tuple[int, int] = LARGE_PX,
    label_same_size: bool = True,
    font_dir: str | Path | None = DEFAULT_FONT_DIR,
) -> list[EvalSample]:
    """Generate ``n`` synthetic samples, deterministically from ``seed``.

    Sample ``i`` depends only on ``seed`` and ``i`` (not on ``n``), so a smaller ``n`` gives a prefix.

    Args:
        n: number of samples; ids are ``syn-000000`` onwards.
        seed: the seed; the same seed (and fonts) gives byte-identical images and the same questions.
        size_range: ``((min_w, min_h), (max_w, max_h))``; each side is drawn uniformly.
        hr_fraction: the fraction of samples whose evidence is small (``needs_crop=True``); exact within
            every 20 samples of a category (rounded to a multiple of 1/20).
        straddle_fraction: the fraction of samples whose evidence straddles a centre line (the rest lie
            inside one quadrant); positions are otherwise spread evenly over the 3x3 grid.
        categories: the kinds of image, used round-robin (:data:`CATEGORIES`).
        small_px: font sizes (px) of evidence that needs high resolution: ``(size for answers of digits and
            punctuation only, size for answers with letters)``, see :data:`SMALL_PX`.
        large_px: font sizes (inclusive range, px) of evidence readable in the half-size view.
        label_same_size: print the evidence's label in the value's size (default); when False, the label of
            small evidence is printed large, so that it can be found in the low-resolution view.
        font_dir: folder of the DejaVu fonts; missing files fall back to PIL's default font.

    Returns:
        the samples, images as RGB PIL images, ``answers`` the exact printed string, ``metric="exact"``.
    """
    return list(
        iter_samples(
            n,
            seed=seed,
            size_range=size_range,
            hr_fraction=hr_fraction,
            straddle_fraction=straddle_fraction,
            categories=categories,
            small_px=small_px,
            large_px=large_px,
            label_same_size=label_same_size,
            font_dir=font_dir,
        )
    )


def to_row(sample: EvalSample) -> dict[str, Any]:
    """A sample as a row of the :func:`awares_agent.evals.schema.features` dataset."""
    return {
        "id": sample.id,
        "image": sample.image,
        "question": sample.question,
        "answers": list(sample.answers),
        "evidence": list(sample.evidence) if sample.evidence is not None else None,
        "needs_crop": sample.needs_crop,
        "metric": sample.metric,
        "category": sample.category,
    }


def build_synthetic(path: str | Path, n: int = 500, seed: int = 0, *, chunk: int = 32, **kwargs: Any) -> Path:
    """Generate the synthetic benchmark and save it as a `datasets` dataset (``save_to_disk``) at ``path``.

    Images are stored in the Arrow files (PNG, lossless); load it with ``datasets.load_from_disk(path)``.

    Args:
        path: the folder to write (created if missing; a dataset saved there before is overwritten).
        n: number of samples.
        seed: the seed (see :func:`generate`).
        chunk: samples encoded at a time, which bounds memory (images are freed once encoded).
        **kwargs: passed to :func:`iter_samples` (``size_range``, ``hr_fraction``, ``font_dir``...).

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    from datasets import Dataset, concatenate_datasets

    feats = features()
    parts = []
    rows: list[dict[str, Any]] = []
    for sample in iter_samples(n, seed=seed, **kwargs):
        rows.append(to_row(sample))
        if len(rows) >= chunk:
            parts.append(Dataset.from_list(rows, features=feats))
            rows = []
    if rows or not parts:
        parts.append(Dataset.from_list(rows, features=feats))
    dataset = parts[0] if len(parts) == 1 else concatenate_datasets(parts)
    out = Path(path)
    dataset.save_to_disk(str(out))
    return out
