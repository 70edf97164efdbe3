"""Bar charts found by their bars, and the chart a question's bar is in when its label cannot be read.

Bars stay visible at any resolution, even where their labels are too small to read: :func:`find_bar_charts`
finds charts in the view's pixels, and :func:`locate_chart` picks the one whose labels read most like the
question's bar (by keyword spotting).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from PIL import Image

from awares_agent.baselines.reader.config import DEFAULT_CONFIG, ReaderConfig
from awares_agent.baselines.reader.keywords import key_likelihood
from awares_agent.baselines.reader.ocr import TextBox
from awares_agent.baselines.reader.questions import Query
from awares_agent.baselines.reader.text import has_word
from awares_agent.boxes import Box, clip, union_boxes
from awares_agent.tools.box_mapping import crops_covering
from awares_agent.tools.crop_sets import ALL, CropSet

__all__ = ["BarChart", "find_bar_charts", "locate_chart"]


@dataclass(frozen=True)
class BarChart:
    """A bar chart found by its bars, in the pixels of the image searched.

    Attributes:
        vertical: bars stand on one baseline (labels under it, values over the bars); else they start at one
            axis (labels left of it, values right of the bars).
        boxes: the bars, in order (left to right, or top to bottom).
        pitch: the distance from one bar to the next.
    """

    vertical: bool
    boxes: tuple[Box, ...]
    pitch: float

    @property
    def bars(self) -> Box:
        """The union of the bars."""
        return union_boxes(self.boxes)

    @property
    def count(self) -> int:
        """How many bars."""
        return len(self.boxes)


def find_bar_charts(image: Image.Image, config: ReaderConfig = DEFAULT_CONFIG) -> list[BarChart]:
    """Bar charts in ``image``: runs of ``bar_min_count`` or more filled rectangles of one thickness on one
    baseline at a regular pitch, not all of one length.

    Bars stay visible at any resolution, even where their labels are too small to read, so this tells where
    a chart is when the bar a question names cannot be read. Text strokes are opened away first (a
    ``bar_open`` square opening keeps only solid areas), so letters of large text do not pass for bars.

    Args:
        image: the image searched.
        config: the reader's thresholds (``bar_grey``, ``bar_open``, ``bar_min_side``, ``bar_fill``,
            ``bar_slack``, ``bar_min_count``).
    """
    import cv2
    import numpy as np

    cfg = config
    slack = cfg.bar_slack
    grey = np.asarray(image.convert("L"))
    opening = np.ones((cfg.bar_open, cfg.bar_open), np.uint8)
    mask = cv2.morphologyEx((grey < cfg.bar_grey).astype(np.uint8), cv2.MORPH_OPEN, opening)
    _, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=4)
    rects = [
        (float(x), float(y), float(x + w), float(y + h))
        for x, y, w, h, area in stats[1:].tolist()
        if min(w, h) >= cfg.bar_min_side and area >= cfg.bar_fill * w * h
    ]
    found: list[BarChart] = []
    for vertical in (True, False):
        axis = 0 if vertical else 1  # bars are laid out along x (vertical bars) or y

        def base(r: Box, vertical: bool = vertical) -> float:
            return r[3] if vertical else r[0]

        def thick(r: Box, axis: int = axis) -> float:
            return r[axis + 2] - r[axis]

        taken: set[Box] = set()
        for r in sorted(rects, key=lambda r, axis=axis: r[axis]):  # type: ignore[misc]
            if r in taken:
                continue
            same = sorted(
                (
                    s
                    for s in rects
                    if s not in taken
                    and abs(base(s) - base(r)) <= slack
                    and abs(thick(s) - thick(r)) <= slack
                ),
                key=lambda s, axis=axis: s[axis],  # type: ignore[misc]
            )
            run: list[Box] = []
            for i, first in enumerate(same):
                for second in same[i + 1 :]:
                    pitch = second[axis] - first[axis]
                    if pitch <= thick(first):
                        continue
                    chain = [first, second]
                    for s in same:
                        if abs(s[axis] - chain[-1][axis] - pitch) <= slack:
                            chain.append(s)
                    if len(chain) > len(run):
                        run = chain
            lengths = [r[3 - axis] - r[1 - axis] for r in run]
            # Bars show different values; strokes of large letters ("IIII") are all one length.
            if len(run) >= cfg.bar_min_count and max(lengths) - min(lengths) > 2 * slack:
                taken.update(run)
                pitch = (run[-1][axis] - run[0][axis]) / (len(run) - 1)
                found.append(BarChart(vertical, tuple(run), pitch))
    return found


def _label_slots(chart: BarChart, scale: float, config: ReaderConfig) -> list[tuple[int, int, int, int]]:
    """Where each bar's label lies in the image searched, if its text is small: under a vertical bar (the
    bar's share of the baseline), or left of a horizontal one. ``scale``: the image's size relative to the
    original (the slots are as deep as small text in the original)."""
    cfg = config
    depth = cfg.small_label_depth * scale
    slots = []
    for x0, y0, x1, y1 in chart.boxes:
        if chart.vertical:
            side = (chart.pitch - (x1 - x0)) / 2 + cfg.slot_side_pad
            slot = (x0 - side, y1 + cfg.small_label_gap * scale, x1 + side, y1 + depth)
        else:
            slot = (
                x0 - cfg.slot_side_depths * depth,
                y0 - cfg.slot_margin,
                x0 - cfg.small_label_gap * scale,
                y1 + cfg.slot_margin,
            )
        slots.append(tuple(round(v) for v in slot))
    return slots  # type: ignore[return-value]


def _cost(ids: list[str], crops: CropSet, size: tuple[int, int]) -> int:
    """The pixels of the regions ``ids``."""
    return sum(crops.region(i, *size).width * crops.region(i, *size).height for i in ids)


def locate_chart(
    query: Query,
    image: Image.Image,
    scale: float,
    size: tuple[int, int],
    view_boxes: Sequence[TextBox],
    crop_set: CropSet,
    config: ReaderConfig,
) -> Box | None:
    """Where the chart with the bar a question names lies (original pixels), when its label is unreadable.

    The view's bar charts (:func:`find_bar_charts`) whose labels can be read are not it (the key would have
    been found); of the others, the one with the label most like the key
    (:func:`~awares_agent.baselines.reader.keywords.key_likelihood` of the text beside each bar, which is
    the label's whole text), and the runner-up too when it is about as likely (``chart_tie``) and one half
    of the image shows both. The box spans the bars, the labels beside their baseline and the values past
    their ends, in small text (larger text would have been read).

    Args:
        query: the parsed question (``kind="bar"``).
        image: the view's pixels.
        scale: the view's size relative to the original.
        size: the original's size.
        view_boxes: the text read in the view, in original pixels.
        crop_set: the agent's crop set.
        config: the reader's thresholds.

    Returns:
        The box to crop, or ``None`` when the view shows no chart whose labels cannot be read.
    """
    cfg = config
    found: list[tuple[float, Box]] = []
    for chart in find_bar_charts(image, cfg):
        x0, y0, x1, y1 = (v / scale for v in chart.bars)
        pitch = chart.pitch / scale
        if chart.vertical:
            labels = (x0 - pitch / 2, y1, x1 + pitch / 2, y1 + cfg.chart_label_zone)
            extent = (
                x0 - pitch / 2,
                y0 - cfg.chart_value_margin,
                x1 + pitch / 2,
                y1 + cfg.chart_label_margin,
            )
        else:
            labels = (x0 - cfg.chart_side_label_zones * cfg.chart_label_zone, y0, x0, y1)
            pad = pitch * cfg.chart_side_pitch_pad
            extent = (x0 - cfg.chart_side_labels, y0 - pad, x1 + cfg.chart_side_values, y1 + pad)
        if any(
            labels[0] <= b.cx <= labels[2]
            and labels[1] <= b.cy <= labels[3]
            and b.legible(cfg)
            and has_word(b.text)
            for b in view_boxes
        ):
            continue  # its labels can be read, and the key is not among them
        likeness = max(
            (
                score
                for slot in _label_slots(chart, scale, cfg)
                if (score := key_likelihood(image.crop(slot), query.key, whole=True, config=cfg)) is not None
            ),
            default=-1e9,
        )
        found.append((likeness, extent))
    if not found:
        return None
    found.sort(key=lambda f: -f[0])
    (top, extent), runner = found[0], found[1] if len(found) > 1 else None
    if runner is not None and runner[0] >= top - cfg.chart_tie:
        # Two charts about as likely: both, if one half of the image (or two quadrants) shows them.
        width, height = size
        both = clip(union_boxes([extent, runner[1]]), width, height)
        ids = crops_covering(both, crop_set, width, height, tolerance=cfg.crop_tolerance)
        if ALL not in ids and _cost(ids, crop_set, size) <= cfg.chart_pair_area * width * height + 1:
            return both
    return extent
