"""The box module every part shares: clipping that never inverts, areas, overlaps, the crop-box check."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from awares_agent.boxes import (
    area,
    clip,
    contains,
    format_box,
    h_overlap,
    intersection_area,
    iou,
    overlap_of_smaller,
    overlaps,
    shift,
    union_boxes,
    v_overlap,
    validate_box,
)
from awares_agent.errors import ConfigError

coordinate = st.floats(-500, 1500, allow_nan=False)


@pytest.mark.parametrize(
    ("box", "clipped"),
    [
        ((10, 20, 30, 40), (10.0, 20.0, 30.0, 40.0)),  # inside: unchanged
        ((-5, -5, 50, 60), (0.0, 0.0, 50.0, 60.0)),  # overshooting the top-left
        ((90, 70, 150, 120), (90.0, 70.0, 100.0, 80.0)),  # overshooting the bottom-right
        ((120, 10, 150, 20), (100.0, 10.0, 100.0, 20.0)),  # wholly right of the image: empty on its edge
        ((30, 10, 20, 40), (30.0, 10.0, 30.0, 40.0)),  # inverted: empty at its left edge, never x1 < x0
    ],
)
def test_clip(box: tuple[float, float, float, float], clipped: tuple[float, ...]) -> None:
    assert clip(box, 100, 80) == clipped


@settings(max_examples=300, deadline=None)
@given(
    box=st.tuples(coordinate, coordinate, coordinate, coordinate),
    w=st.integers(1, 1000),
    h=st.integers(1, 1000),
)
def test_clip_never_inverts_and_stays_inside(box: tuple[float, float, float, float], w: int, h: int) -> None:
    x0, y0, x1, y1 = clip(box, w, h)
    assert 0 <= x0 <= x1 <= w and 0 <= y0 <= y1 <= h
    assert all(isinstance(v, float) for v in (x0, y0, x1, y1))
    if box[0] <= box[2] and box[1] <= box[3]:
        # A well-formed box loses only what lies outside: clipping it again changes nothing.
        assert clip((x0, y0, x1, y1), w, h) == (x0, y0, x1, y1)
        assert area((x0, y0, x1, y1)) == pytest.approx(intersection_area(box, (0, 0, w, h)))


def test_areas_and_overlaps() -> None:
    a, b = (0, 0, 10, 10), (5, 5, 15, 25)
    assert area(a) == 100 and area((5, 5, 0, 0)) == 0
    assert intersection_area(a, b) == 25 and intersection_area(a, (20, 20, 30, 30)) == 0
    assert iou(a, b) == pytest.approx(25 / (100 + 200 - 25))
    assert iou(a, a) == 1 and iou((0, 0, 0, 0), (0, 0, 0, 0)) == 0
    assert overlap_of_smaller(a, b) == 0.25 and overlap_of_smaller(a, (2, 2, 4, 4)) == 1
    assert v_overlap(a, b) == 0.5 and h_overlap(a, b) == 0.5
    assert overlaps(a, b) and not overlaps(a, (10, 0, 20, 10))  # touching edges share no area
    assert contains(a, (0, 0, 10, 10)) and not contains(a, b)
    assert shift(a, 3, -2) == (3, -2, 13, 8)
    assert union_boxes([a, b]) == (0, 0, 15, 25)
    assert format_box((1.4, 2.6, 30, 40.5)) == "[1, 3, 30, 40]"


def test_validate_box() -> None:
    assert validate_box((1, 2, 3, 4), 10, 10) == (1, 2, 3, 4)
    with pytest.raises(ConfigError, match="four integers"):
        validate_box((1.0, 2, 3, 4), 10, 10)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"outside page\.png \(10x10\)"):
        validate_box((5, 5, 11, 8), 10, 10, label="page.png")
