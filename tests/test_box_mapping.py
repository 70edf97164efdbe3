"""The evidence-box to crop-set rule."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from awares_agent.errors import ConfigError
from awares_agent.tools.box_mapping import crops_covering
from awares_agent.tools.crop_sets import GridCropSet, PaperCropSet

W, H = 1000, 800  # quadrants 500x400, centre (250, 200, 750, 600)


@pytest.mark.parametrize(
    ("box", "expected"),
    [
        ((10, 10, 100, 50), ["0"]),  # inside the top-left quadrant
        ((900, 700, 990, 790), ["3"]),  # bottom-right
        ((600, 20, 700, 60), ["1"]),
        ((300, 250, 700, 550), ["4"]),  # around the centre: the centre crop, not a pair
        (
            (100, 100, 900, 150),
            ["5"],
        ),  # straddles left/right at the top: the top half (ties a pair, single wins)
        ((20, 300, 80, 500), ["7"]),  # straddles top/bottom on the left
        ((900, 350, 990, 450), ["8"]),
        ((100, 700, 900, 790), ["6"]),
        ((498, 10, 501, 50), ["0"]),  # grazes the centre line by 1 px: tolerance keeps it in one quadrant
        ((499, 10, 502, 50), ["1"]),  # mostly right of the line: the better-overlapping quadrant
        ((10, 10, 990, 790), ["all"]),  # nothing smaller covers it
        ((0, 0, 0, 0), ["0"]),  # a degenerate box: its point
        ((-50, -50, 40, 40), ["0"]),  # overshooting the border is clipped
    ],
)
def test_paper_cases(box: tuple[int, int, int, int], expected: list[str]) -> None:
    assert crops_covering(box, PaperCropSet(), W, H) == expected


def test_a_pair_when_it_is_cheaper_than_any_single_region() -> None:
    # On a 3x3 grid a box over the two top-left tiles needs both; a pair of tiles beats `all`.
    grid = GridCropSet(3, 3)
    assert crops_covering((50, 50, 600, 200), grid, 900, 900) == ["0", "1"]


def test_tiny_images_are_sent_whole() -> None:
    # Under 100 px every region is the whole image: no crop is cheaper than `all`.
    assert crops_covering((5, 5, 60, 40), PaperCropSet(), 80, 60) == ["all"]


def test_a_box_wholly_outside_the_image_shows_nothing_there() -> None:
    # Clipped, it would be an empty box on the edge that a region grazes; it is not evidence in the image.
    assert crops_covering((1100, 10, 1200, 50), PaperCropSet(), W, H) == ["all"]
    assert crops_covering((10, -60, 100, -5), PaperCropSet(), W, H) == ["all"]
    assert crops_covering((1000, 10, 1010, 50), PaperCropSet(), W, H) == ["1"]  # touching the edge: inside


def test_malformed_boxes() -> None:
    with pytest.raises(ConfigError):
        crops_covering((10, 10, 5, 50), PaperCropSet(), W, H)
    with pytest.raises(ConfigError):
        crops_covering((1, 2, 3), PaperCropSet(), W, H)


@settings(max_examples=300, deadline=None)
@given(
    w=st.integers(100, 4000),
    h=st.integers(100, 4000),
    fx=st.tuples(st.floats(0, 1), st.floats(0, 1)),
    fy=st.tuples(st.floats(0, 1), st.floats(0, 1)),
)
def test_the_chosen_crops_cover_the_box(
    w: int, h: int, fx: tuple[float, float], fy: tuple[float, float]
) -> None:
    x0, x1 = sorted(v * w for v in fx)
    y0, y1 = sorted(v * h for v in fy)
    crop_set = PaperCropSet()
    ids = crops_covering((x0, y0, x1, y1), crop_set, w, h, tolerance=0)
    regions = {r.id: r.box for r in crop_set.regions(w, h)}
    boxes = [regions[i] for i in ids]
    # Every corner-adjacent sample point of the box lies in some chosen crop.
    for px in (x0, (x0 + x1) / 2, x1):
        for py in (y0, (y0 + y1) / 2, y1):
            assert any(b[0] <= px <= b[2] and b[1] <= py <= b[3] for b in boxes)
    assert 1 <= len(ids) <= 2
