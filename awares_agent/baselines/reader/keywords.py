"""Keyword spotting: how likely a key is written in a patch of text too small to read.

OCR's best reading of 4 px text is garbled, but its recogniser's per-frame letter probabilities still tell
which of a few candidate lines holds the key; :func:`key_likelihood` scores that with a CTC alignment. The
locators of tables, charts and signs rank the view's unreadable text with it.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from PIL import Image

from awares_agent.baselines.reader.config import DEFAULT_CONFIG, ReaderConfig
from awares_agent.baselines.reader.ocr import TextBox
from awares_agent.ocr import OCR_LOCK, engine

__all__ = ["box_patch", "key_likelihood"]


def box_patch(image: Image.Image, box: TextBox, scale: float, config: ReaderConfig) -> Image.Image:
    """A text box's patch of the view (``scale`` view pixels per original pixel), with a little margin.

    Args:
        image: the view.
        box: the text box, in original pixels.
        scale: the view's size relative to the original.
        config: the reader's thresholds (``patch_margin_x``, ``patch_margin_y``).
    """
    x0, y0, x1, y1 = (v * scale for v in box.box)
    h = y1 - y0
    mx, my = config.patch_margin_x, config.patch_margin_y
    return image.crop((round(x0 - mx * h), round(y0 - my * h), round(x1 + mx * h), round(y1 + my * h)))


@lru_cache(maxsize=1)
def _alphabet(recogniser: Any) -> dict[str, int]:
    """The recogniser's output column of each character (its alphabet has thousands: built once)."""
    return {c: i for i, c in enumerate(recogniser.postprocess_op.character)}


def key_likelihood(
    patch: Image.Image, key: str, *, whole: bool = False, config: ReaderConfig = DEFAULT_CONFIG
) -> float | None:
    """How well ``key`` can be read somewhere in ``patch``, a line of text too small to read.

    OCR's best reading of 4 px text is garbled, but its recogniser still gives the key's letters some
    probability where they are written. This is the recogniser's best CTC alignment of the key's letters
    (either case; spaces and blanks between them free) to a run of the line's frames, each frame counted
    against the recogniser's own best guess for it: about 0 when the key is what it reads, more negative
    the less it looks like the key; per letter, so keys of different lengths compare.

    Args:
        patch: the line (any size; it is enlarged and cut to its ink).
        key: the text to look for.
        whole: the key is all the patch holds (a bar's label): frames before and after the key count as
            gap too, so a longer word that contains the key ("Pinewood" for "pine") scores lower.
        config: the reader's thresholds (``kws_upsample``, ``ink_contrast``, ``kws_unknown_letter``).

    Returns:
        The score, or ``None`` when the patch holds no ink, the key is empty or the engine cannot be asked.
    """
    import numpy as np

    letters = [c for c in key if not c.isspace()]
    if not letters or patch.width < 2 or patch.height < 2:
        return None
    # Enlarged first: LANCZOS keeps strokes a pixel or two apart better than the recogniser's own resize.
    patch = patch.convert("RGB")
    patch = patch.resize(
        (patch.width * config.kws_upsample, patch.height * config.kws_upsample), Image.Resampling.LANCZOS
    )
    # The recogniser reads text that fills the line's height: cut the patch to its ink (what differs from
    # its background, the median) with a pixel of margin.
    grey = np.asarray(patch.convert("L"), dtype=np.int16)
    ink = np.abs(grey - int(np.median(grey))) > config.ink_contrast
    rows, cols = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
    if rows.size == 0:
        return None
    x0, x1 = max(0, cols[0] - 1), min(patch.width, cols[-1] + 2)
    y0, y1 = max(0, rows[0] - 1), min(patch.height, rows[-1] + 2)
    patch = patch.crop((int(x0), int(y0), int(x1), int(y1)))
    rec = getattr(engine(), "text_rec", None)
    try:
        index = _alphabet(rec)
        height = int(rec.rec_image_shape[1])  # type: ignore[union-attr]
        width = max(2, round(patch.width * height / patch.height))
        rgb = np.asarray(patch.resize((width, height), Image.Resampling.BICUBIC))[:, :, ::-1]
        batch = rec.resize_norm_img(np.ascontiguousarray(rgb), width / height)[None]  # type: ignore[union-attr]
        with OCR_LOCK:
            probs = rec.session(batch.astype(np.float32))[0][0]  # type: ignore[union-attr]
    except (AttributeError, IndexError, TypeError, ValueError):  # pragma: no cover - another engine version
        return None
    logp = np.log(np.maximum(probs, 1e-9))
    best = logp.max(axis=1)
    columns = []
    for c in letters:
        cols = [index[v] for v in dict.fromkeys((c, c.upper(), c.lower())) if v in index]
        # A letter the recogniser does not know (none in its alphabet) counts as a clear miss.
        column = (
            np.log(np.maximum(probs[:, cols].sum(1), 1e-9))
            if cols
            else np.full(len(probs), config.kws_unknown_letter)
        )
        columns.append(column)
    emit = np.stack(columns, axis=1) - best[:, None]
    gap = np.maximum(logp[:, 0], logp[:, index[" "]] if " " in index else logp[:, 0]) - best
    n = len(letters)
    repeat = np.array([j > 0 and letters[j] == letters[j - 1] for j in range(n)])
    neg = -1e9
    on = np.full(n, neg)  # best score ending on letter j at this frame
    off = np.full(n, neg)  # best score in the gap after letter j
    top = neg
    before = 0.0  # whole: the frames before the first letter are all gap
    for t in range(len(probs)):
        start = before if whole else 0.0
        enter = np.concatenate(([start], np.maximum(off[:-1], np.where(repeat[1:], neg, on[:-1]))))
        on, off = np.maximum(on, enter) + emit[t], np.maximum(off, on) + gap[t]
        before += float(gap[t])
        top = max(top, float(on[-1]))
    if whole:
        top = max(float(on[-1]), float(off[-1]))
    return top / n
