"""Signs: the main text of an image, and the short line a sign's label is when it cannot be read.

"What does the sign say?" is answered with the tallest line and the lines of its height right under it
(:func:`read_sign`). "What code follows LEVEL on the sign?" is a field on a sign; when its label is too
small to read, :func:`locate_sign` picks the short text whose blurred pixels read most like it.
"""

from __future__ import annotations

from collections.abc import Sequence

from PIL import Image

from awares_agent.baselines.reader.config import ReaderConfig
from awares_agent.baselines.reader.geometry import near
from awares_agent.baselines.reader.keywords import box_patch, key_likelihood
from awares_agent.baselines.reader.ocr import TextBox
from awares_agent.baselines.reader.questions import Query
from awares_agent.baselines.reader.reading import Reading
from awares_agent.baselines.reader.text import word_count
from awares_agent.boxes import Box, h_overlap, union_boxes, v_overlap

__all__ = ["locate_sign", "read_sign"]


def read_sign(boxes: Sequence[TextBox], config: ReaderConfig) -> Reading | None:
    """The main text: the tallest line, with lines of about its height right below it (a multi-line sign).

    Args:
        boxes: the text boxes, in original pixels.
        config: the reader's thresholds (``sign_line_overlap``, ``sign_height_tolerance``,
            ``sign_column_overlap``).

    Returns:
        The reading; ``None`` when there is no text.
    """
    cfg = config
    if not boxes:
        return None
    top = max(boxes, key=lambda b: (b.height, len(b.text)))
    lines = [top]
    for b in sorted(boxes, key=lambda b: b.box[1]):
        last = lines[-1]
        if (
            b is not top
            and b.box[1] >= last.box[3] - cfg.sign_line_overlap * last.height
            and b.box[1] - last.box[3] <= last.height
            and abs(b.height - top.height) <= cfg.sign_height_tolerance * top.height
            and h_overlap(b.box, top.box) > cfg.sign_column_overlap
        ):
            lines.append(b)
    return Reading(" ".join(b.text for b in lines), lines, [], 1.0)


def locate_sign(
    query: Query, image: Image.Image, scale: float, hard: Sequence[TextBox], config: ReaderConfig
) -> Box | None:
    """Where the sign a question names lies (original pixels), when its label cannot be read.

    A sign is short text on its own. Of the view's short text too small to read, the one most like the key
    (:func:`~awares_agent.baselines.reader.keywords.key_likelihood` of its patch in the view) is the sign's
    label, if it scores at least ``sign_floor`` and clearly beats the next (by ``sign_margin``). The box
    reaches a line up and left, and to the right and below as far as a value written after the label or
    under it goes.

    Args:
        query: the parsed question (a field ``on_sign``).
        image: the view's pixels.
        scale: the view's size relative to the original.
        hard: the view's text too small to read, in original pixels.
        config: the reader's thresholds.

    Returns:
        The box to crop; ``None`` when no short text clearly is the label (the guess then falls to
        :func:`~awares_agent.baselines.reader.guess.likeliest`).
    """
    cfg = config

    def line_of(b: TextBox) -> Box:
        """The box with the text beside it on its line (a sign's short line, or a longer line's)."""
        line, grew = b.box, True
        while grew:
            grew = False
            for o in hard:
                x0, x1 = line[0], line[2]
                if (
                    v_overlap(o.box, line) >= cfg.same_line_overlap
                    and o.box[0] - cfg.sign_word_gap * o.height <= x1
                    and x0 <= o.box[2] + cfg.sign_word_gap * o.height
                    and not (x0 <= o.box[0] and o.box[2] <= x1)
                ):
                    line, grew = union_boxes([line, o.box]), True
        return line

    short = [
        b
        for b in hard
        if len(b.text.strip()) <= cfg.sign_chars
        and word_count(b.text) <= cfg.sign_max_words
        and (span := line_of(b))[2] - span[0] <= cfg.sign_aspect * b.height
    ]
    if not short or not query.key:
        return None
    scored: list[tuple[float, TextBox]] = []
    for b in short:
        if (score := key_likelihood(box_patch(image, b, scale, cfg), query.key, config=cfg)) is not None:
            scored.append((score, b))
    if not scored:
        return None
    scored.sort(key=lambda sb: -sb[0])
    top, label = scored[0]
    runner = next((sc for sc, b in scored[1:] if not near(b, label, cfg.near_lines)), None)
    if top < cfg.sign_floor or (runner is not None and top - runner < cfg.sign_margin):
        return None
    x0, y0, x1, y1 = label.box
    w, h = x1 - x0, y1 - y0
    return (x0 - cfg.sign_box_left * w - h, y0 - h, x1 + w + h, y1 + cfg.sign_box_below * h)
