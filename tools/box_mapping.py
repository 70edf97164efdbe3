"""Map an evidence box to the crop set: the cheapest crops that show it.

The rule, used by the oracle policy and by trajectory labelling:

1. Candidates are every single region and every pair of regions of the crop set, ``all`` excluded.
2. A candidate qualifies if the union of its boxes covers the evidence box (with ``tolerance`` pixels of
   slack on each side, so a box that grazes a region's edge by a pixel or two still fits).
3. Among qualifying candidates the one that sends the fewest pixels wins (the sum of the crops' areas: what
   the crops cost in visual tokens). Ties go to the candidate whose union has the best IoU with the box, then
   to a single region over a pair, then to the lower ids.
4. If nothing qualifies, or the winner costs as many pixels as the whole image, ``all``; so too for a box
   that lies wholly outside the image (it shows nothing there).

Images under 100 px on a side are sent whole by every region, so the rule returns ``all`` there.
"""

from __future__ import annotations

from itertools import combinations, pairwise

from awares_agent.boxes import Box, BoxLike, clip, iou, union_boxes
from awares_agent.errors import ConfigError
from awares_agent.tools.crop_sets import ALL, CropSet, Region


def crops_covering(
    box: BoxLike, crop_set: CropSet, width: int, height: int, *, tolerance: float = 2.0
) -> list[str]:
    """The region ids of the cheapest single region or pair of regions that covers ``box``.

    Args:
        box: ``[x0, y0, x1, y1]`` in original-image pixels.
        crop_set: the crop set to choose from.
        width: the original image's width.
        height: the original image's height.
        tolerance: pixels the box may stick out of a candidate on each side.

    Returns:
        One or two region ids, or ``["all"]`` when no single region or pair covers the box more cheaply (or
        the box lies wholly outside the image).

    Raises:
        ConfigError: the box is malformed (not 4 numbers, or x1 < x0 / y1 < y0).
    """
    if len(box) != 4:
        raise ConfigError(f"an evidence box has 4 numbers [x0, y0, x1, y1], got {list(box)!r}")
    x0, y0, x1, y1 = (float(v) for v in box)
    if x1 < x0 or y1 < y0:
        raise ConfigError(f"evidence box {list(box)!r} has x1 < x0 or y1 < y0")
    if x0 > width or y0 > height or x1 < 0 or y1 < 0:
        return [ALL]
    # Clip to the image: a box that overshoots the border is about the pixels that exist.
    target = clip((x0, y0, x1, y1), width, height)
    regions = [r for r in crop_set.regions(width, height) if r.id != ALL]
    candidates: list[tuple[Region, ...]] = [(r,) for r in regions]
    candidates += list(combinations(regions, 2))
    best: tuple[tuple[float, float, int, tuple[int, ...]], tuple[Region, ...]] | None = None
    order = {r.id: i for i, r in enumerate(regions)}
    for candidate in candidates:
        if not _covers([r.box for r in candidate], target, tolerance):
            continue
        cost = sum(r.width * r.height for r in candidate)
        key = (
            cost,
            -iou(union_boxes([r.box for r in candidate]), target),
            len(candidate),
            tuple(order[r.id] for r in candidate),
        )
        if best is None or key < best[0]:
            best = (key, candidate)
    if best is None or best[0][0] >= width * height:  # no cheaper than the whole image: send it whole
        return [ALL]
    return [r.id for r in best[1]]


def _covers(boxes: list[tuple[int, int, int, int]], target: Box, tol: float) -> bool:
    """Whether the union of ``boxes``, each grown by ``tol`` on every side, contains ``target``."""
    grown = [(b[0] - tol, b[1] - tol, b[2] + tol, b[3] + tol) for b in boxes]
    x0, y0, x1, y1 = target
    # The target is covered if every cell of the grid that the boxes' edges cut it into lies in one box.
    xs = sorted({x0, x1, *(v for b in grown for v in (b[0], b[2]) if x0 < v < x1)})
    ys = sorted({y0, y1, *(v for b in grown for v in (b[1], b[3]) if y0 < v < y1)})
    x_cells = list(pairwise(xs)) or [(x0, x1)]
    y_cells = list(pairwise(ys)) or [(y0, y1)]
    return all(
        any(b[0] <= xa and b[1] <= ya and b[2] >= xb and b[3] >= yb for b in grown)
        for xa, xb in x_cells
        for ya, yb in y_cells
    )
