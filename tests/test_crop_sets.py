"""Tests for awares_agent.tools.crop_sets: the paper and grid crop sets, name resolution, and ``crop_set()``
keys.

Paper geometry (the spec): with ``cw = max(100, W // 2)`` and ``ch = max(100, H // 2)``, regions 0-8 are the
quadrants, the centre, the top/bottom halves and the left/right halves, plus ``all``; images under 100 px on
a side are sent whole.
"""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from awares_agent.errors import ConfigError
from awares_agent.tools.crop_sets import (
    ALL,
    MIN_CROP_SIDE,
    Box,
    CropSet,
    GridCropSet,
    PaperCropSet,
    Region,
    crop_set,
    normalize_name,
)

PAPER = PaperCropSet()
PAPER_IDS = ("0", "1", "2", "3", "4", "5", "6", "7", "8", "all")
PAPER_NAMES = (
    "top-left",
    "top-right",
    "bottom-left",
    "bottom-right",
    "center",
    "top",
    "bottom",
    "left",
    "right",
    "all",
)

sizes = st.integers(min_value=1, max_value=20_000)
big_sizes = st.integers(min_value=MIN_CROP_SIDE, max_value=20_000)
PROPERTY = settings(max_examples=300, deadline=None)


def spec_boxes(w: int, h: int) -> dict[str, Box]:
    """The paper's boxes, written straight from the spec (an independent oracle)."""
    if w < 100 or h < 100:
        return dict.fromkeys(PAPER_IDS, (0, 0, w, h))
    cw, ch = max(100, w // 2), max(100, h // 2)
    return {
        "0": (0, 0, cw, ch),
        "1": (w - cw, 0, w, ch),
        "2": (0, h - ch, cw, h),
        "3": (w - cw, h - ch, w, h),
        "4": ((w - cw) // 2, (h - ch) // 2, (w + cw) // 2, (h + ch) // 2),
        "5": (0, 0, w, ch),
        "6": (0, h - ch, w, h),
        "7": (0, 0, cw, h),
        "8": (w - cw, 0, w, h),
        "all": (0, 0, w, h),
    }


def boxes(cs: CropSet, w: int, h: int) -> dict[str, Box]:
    return {r.id: r.box for r in cs.regions(w, h)}


def uncovered(rects: list[Box], w: int, h: int) -> list[Box]:
    """The parts of the ``w`` x ``h`` image that no rectangle covers (exact, by coordinate compression)."""
    xs = sorted({0, w, *(r[0] for r in rects), *(r[2] for r in rects)})
    ys = sorted({0, h, *(r[1] for r in rects), *(r[3] for r in rects)})
    holes = []
    for x0, x1 in itertools.pairwise(xs):
        for y0, y1 in itertools.pairwise(ys):
            if not any(r[0] <= x0 and x1 <= r[2] and r[1] <= y0 and y1 <= r[3] for r in rects):
                holes.append((x0, y0, x1, y1))
    return holes


def overlap(a: Box, b: Box) -> int:
    dx = min(a[2], b[2]) - max(a[0], b[0])
    dy = min(a[3], b[3]) - max(a[1], b[1])
    return max(0, dx) * max(0, dy)


# --- paper set: exact boxes ----------------------------------------------------------------------------

EXACT: dict[tuple[int, int], dict[str, Box]] = {
    # odd sizes: cw = 500, ch = 388
    (1001, 777): {
        "0": (0, 0, 500, 388),
        "1": (501, 0, 1001, 388),
        "2": (0, 389, 500, 777),
        "3": (501, 389, 1001, 777),
        "4": (250, 194, 750, 582),
        "5": (0, 0, 1001, 388),
        "6": (0, 389, 1001, 777),
        "7": (0, 0, 500, 777),
        "8": (501, 0, 1001, 777),
        "all": (0, 0, 1001, 777),
    },
    # cw = max(100, 100) = 100, ch = max(100, 101) = 101
    (201, 203): {
        "0": (0, 0, 100, 101),
        "1": (101, 0, 201, 101),
        "2": (0, 102, 100, 203),
        "3": (101, 102, 201, 203),
        "4": (50, 51, 150, 152),
        "5": (0, 0, 201, 101),
        "6": (0, 102, 201, 203),
        "7": (0, 0, 100, 203),
        "8": (101, 0, 201, 203),
        "all": (0, 0, 201, 203),
    },
    # exactly 100 px: every crop is the full image
    (100, 100): dict.fromkeys(PAPER_IDS, (0, 0, 100, 100)),
    # cw and ch clamp to 100 (150 // 2 = 75): overlapping 100 px crops
    (150, 150): {
        "0": (0, 0, 100, 100),
        "1": (50, 0, 150, 100),
        "2": (0, 50, 100, 150),
        "3": (50, 50, 150, 150),
        "4": (25, 25, 125, 125),
        "5": (0, 0, 150, 100),
        "6": (0, 50, 150, 150),
        "7": (0, 0, 100, 150),
        "8": (50, 0, 150, 150),
        "all": (0, 0, 150, 150),
    },
    # under 100 px on a side: sent whole
    (99, 500): dict.fromkeys(PAPER_IDS, (0, 0, 99, 500)),
    (500, 99): dict.fromkeys(PAPER_IDS, (0, 0, 500, 99)),
    (1, 1): dict.fromkeys(PAPER_IDS, (0, 0, 1, 1)),
    (99, 99): dict.fromkeys(PAPER_IDS, (0, 0, 99, 99)),
    # extreme aspect ratios
    (10000, 100): {
        "0": (0, 0, 5000, 100),
        "1": (5000, 0, 10000, 100),
        "2": (0, 0, 5000, 100),
        "3": (5000, 0, 10000, 100),
        "4": (2500, 0, 7500, 100),
        "5": (0, 0, 10000, 100),
        "6": (0, 0, 10000, 100),
        "7": (0, 0, 5000, 100),
        "8": (5000, 0, 10000, 100),
        "all": (0, 0, 10000, 100),
    },
    (100, 10000): {
        "0": (0, 0, 100, 5000),
        "1": (0, 0, 100, 5000),
        "2": (0, 5000, 100, 10000),
        "3": (0, 5000, 100, 10000),
        "4": (0, 2500, 100, 7500),
        "5": (0, 0, 100, 5000),
        "6": (0, 5000, 100, 10000),
        "7": (0, 0, 100, 10000),
        "8": (0, 0, 100, 10000),
        "all": (0, 0, 100, 10000),
    },
    # ch = max(100, 60) = 100
    (30000, 120): {
        "0": (0, 0, 15000, 100),
        "1": (15000, 0, 30000, 100),
        "2": (0, 20, 15000, 120),
        "3": (15000, 20, 30000, 120),
        "4": (7500, 10, 22500, 110),
        "5": (0, 0, 30000, 100),
        "6": (0, 20, 30000, 120),
        "7": (0, 0, 15000, 120),
        "8": (15000, 0, 30000, 120),
        "all": (0, 0, 30000, 120),
    },
}


@pytest.mark.parametrize(("size", "expected"), list(EXACT.items()), ids=[f"{w}x{h}" for w, h in EXACT])
def test_paper_exact_boxes(size: tuple[int, int], expected: dict[str, Box]) -> None:
    w, h = size
    assert boxes(PAPER, w, h) == expected
    assert spec_boxes(w, h) == expected  # the oracle used by the property tests agrees with the table


def test_paper_ids_names_and_order() -> None:
    regions = PAPER.regions(640, 480)
    assert PAPER.key == "paper"
    assert PAPER.ids == PAPER_IDS
    assert PAPER.names == PAPER_NAMES
    assert [r.id for r in regions] == list(PAPER_IDS)
    assert [r.name for r in regions] == list(PAPER_NAMES)
    assert regions[-1].id == ALL == "all"
    assert repr(PAPER) == "PaperCropSet('paper')"


def test_region_width_height() -> None:
    r = PAPER.region("4", 1001, 777)
    assert r == Region("4", "center", (250, 194, 750, 582))
    assert (r.width, r.height) == (500, 388)


@pytest.mark.parametrize(("w", "h"), [(0, 10), (10, 0), (-1, 100), (100, -5), (0, 0)])
def test_nonpositive_size_is_a_config_error(w: int, h: int) -> None:
    with pytest.raises(ConfigError, match="positive"):
        PAPER.regions(w, h)


# --- paper set: properties ------------------------------------------------------------------------------


@PROPERTY
@given(w=sizes, h=sizes)
def test_paper_boxes_match_the_spec_and_lie_within_the_image(w: int, h: int) -> None:
    regions = PAPER.regions(w, h)
    assert len(regions) == 10
    assert {r.id: r.box for r in regions} == spec_boxes(w, h)
    for r in regions:
        left, top, right, bottom = r.box
        assert 0 <= left < right <= w, r
        assert 0 <= top < bottom <= h, r
        assert r.width > 0 and r.height > 0
    assert regions[-1].box == (0, 0, w, h)
    # all nine crops together always cover the image
    assert uncovered([r.box for r in regions[:-1]], w, h) == []


@PROPERTY
@given(w=sizes, h=sizes)
def test_small_images_are_sent_whole(w: int, h: int) -> None:
    small = w < MIN_CROP_SIDE or h < MIN_CROP_SIDE
    whole = all(r.box == (0, 0, w, h) for r in PAPER.regions(w, h))
    if small:
        assert whole
    elif w >= 200 or h >= 200:
        assert not whole


@PROPERTY
@given(w=big_sizes, h=big_sizes)
def test_paper_crops_are_at_least_min_side_and_about_half(w: int, h: int) -> None:
    for r in PAPER.regions(w, h)[:-1]:
        assert r.width >= min(MIN_CROP_SIDE, w) and r.height >= min(MIN_CROP_SIDE, h), r
        assert r.width in (w, max(MIN_CROP_SIDE, w // 2)), r
        assert r.height in (h, max(MIN_CROP_SIDE, h // 2)), r
    # the halves are the quadrants' unions, and the quadrants are the halves' intersections
    b = boxes(PAPER, w, h)
    assert b["5"] == (0, 0, w, b["0"][3]) and b["6"] == (0, b["2"][1], w, h)
    assert b["7"] == (0, 0, b["0"][2], h) and b["8"] == (b["1"][0], 0, w, h)
    # the centre crop is centred: equal margins, up to one pixel
    left, top, right, bottom = b["4"]
    assert abs(left - (w - right)) <= 1 and abs(top - (h - bottom)) <= 1


@PROPERTY
@given(w=sizes, h=sizes)
def test_quadrants_and_halves_cover_the_image_but_for_a_seam_on_odd_sizes(w: int, h: int) -> None:
    """With the spec's ``cw = W // 2``, an odd ``W >= 201`` leaves its middle column in no quadrant or half.

    E.g. W = 1001: top-left spans x in [0, 500), top-right x in [501, 1001): column 500 is only in the
    centre crop (and ``all``). The same holds for the middle row of an odd ``H >= 201``. This is the spec's
    geometry; the test pins it down and checks that the centre crop spans the seam.
    """
    b = boxes(PAPER, w, h)
    cropped = min(w, h) >= MIN_CROP_SIDE  # smaller images are sent whole
    seam_x = cropped and w >= 200 and w % 2 == 1
    seam_y = cropped and h >= 200 and h % 2 == 1
    quadrants = [b["0"], b["1"], b["2"], b["3"]]
    for group in (quadrants, [b["5"], b["6"]], [b["7"], b["8"]]):
        for x0, y0, x1, y1 in uncovered(group, w, h):
            assert (seam_x and (x0, x1) == (w // 2, w // 2 + 1)) or (
                seam_y and (y0, y1) == (h // 2, h // 2 + 1)
            )
    assert bool(uncovered(quadrants, w, h)) == (seam_x or seam_y)
    assert bool(uncovered([b["5"], b["6"]], w, h)) == seam_y
    assert bool(uncovered([b["7"], b["8"]], w, h)) == seam_x
    # the centre crop spans the seams (all nine crops together cover the image: tested above)
    if seam_x:
        assert b["4"][0] <= w // 2 < b["4"][2]
    if seam_y:
        assert b["4"][1] <= h // 2 < b["4"][3]


@pytest.mark.parametrize(("w", "h"), [(1000, 776), (200, 200), (150, 151), (199, 199), (100, 10000)])
def test_quadrants_cover_even_or_clamped_sizes_exactly(w: int, h: int) -> None:
    b = boxes(PAPER, w, h)
    assert uncovered([b["0"], b["1"], b["2"], b["3"]], w, h) == []
    assert uncovered([b["5"], b["6"]], w, h) == [] and uncovered([b["7"], b["8"]], w, h) == []


def test_odd_size_seam_example() -> None:
    b = boxes(PAPER, 1001, 777)
    assert uncovered([b["0"], b["1"], b["2"], b["3"]], 1001, 777) == [
        (0, 388, 500, 389),
        (500, 0, 501, 388),
        (500, 388, 501, 389),
        (500, 389, 501, 777),
        (501, 388, 1001, 389),
    ]
    assert uncovered([b[i] for i in PAPER_IDS[:-1]], 1001, 777) == []
    # the middle pixel (500, 388) lies only in the centre crop (and ``all``)
    assert [i for i, (x0, y0, x1, y1) in b.items() if x0 <= 500 < x1 and y0 <= 388 < y1] == ["4", "all"]


# --- resolve -------------------------------------------------------------------------------------------

RESOLVE_OK: list[tuple[str | int, str]] = [
    *((i, i) for i in PAPER_IDS),
    *((int(i), i) for i in PAPER_IDS[:-1]),
    *((n, i) for i, n in zip(PAPER_IDS, PAPER_NAMES, strict=True)),
    ("Top Left", "0"),
    ("top_left", "0"),
    ("TOP-LEFT", "0"),
    ("  top  left ", "0"),
    ("top__left", "0"),
    ("Bottom Right", "3"),
    ("bottom_right", "3"),
    ("Center", "4"),
    ("CENTER", "4"),
    ("centre", "4"),
    ("Centre", "4"),
    ("TOP", "5"),
    ("All", "all"),
    ("ALL", "all"),
    (" 0 ", "0"),
    ("'0'", "0"),
    ('"top left"', "0"),
    ("'8'", "8"),
]


@pytest.mark.parametrize(("token", "rid"), RESOLVE_OK, ids=[repr(t) for t, _ in RESOLVE_OK])
def test_resolve(token: str | int, rid: str) -> None:
    assert PAPER.resolve(token) == rid
    assert PAPER.region(token, 640, 480).id == rid


@pytest.mark.parametrize(
    "token",
    [
        "9",
        9,
        -1,
        "-1",
        "_5",
        "--3",
        "0-",
        "10",
        "",
        "  ",
        "topleft",
        "top-middle",
        "middle",
        "0.0",
        "0 5",
        "r1c1",
        "grid",
        True,
        False,
        None,
    ],
    ids=repr,
)
def test_resolve_unknown_is_key_error(token: object) -> None:
    with pytest.raises(KeyError):
        PAPER.resolve(token)  # type: ignore[arg-type]
    with pytest.raises(KeyError):
        PAPER.region(token, 640, 480)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("raw", "norm"),
    [("Top Left", "top-left"), ("top_left", "top-left"), (" --top - left-- ", "top-left"), ("ALL", "all")],
)
def test_normalize_name(raw: str, norm: str) -> None:
    assert normalize_name(raw) == norm


def test_describe_lists_every_region() -> None:
    lines = PAPER.describe().splitlines()
    assert lines == [f"- {i}: {n}" for i, n in zip(PAPER_IDS, PAPER_NAMES, strict=True)]


# --- grid set -------------------------------------------------------------------------------------------


def test_grid_ids_names_and_resolve() -> None:
    g = GridCropSet(2, 3)
    assert g.key == "grid-2x3"
    assert g.ids == ("0", "1", "2", "3", "4", "5", "all")
    assert g.names == ("r1c1", "r1c2", "r1c3", "r2c1", "r2c2", "r2c3", "all")
    assert g.resolve("R2C3") == "5" and g.resolve(4) == "4" and g.resolve("all") == "all"
    for bad in ("6", "r3c1", "top-left", "center"):
        with pytest.raises(KeyError):
            g.resolve(bad)


def test_grid_exact_boxes() -> None:
    assert boxes(GridCropSet(2, 2), 1001, 777) == {
        "0": (0, 0, 500, 388),
        "1": (500, 0, 1001, 388),
        "2": (0, 388, 500, 777),
        "3": (500, 388, 1001, 777),
        "all": (0, 0, 1001, 777),
    }
    # 3x3 over 250 px: cuts at 0, 83, 166, 250 are all < 100 px apart, so each tile is widened to 100 px
    # around its centre and kept inside the image
    b = boxes(GridCropSet(3, 3), 250, 250)
    spans = [(0, 100), (74, 174), (150, 250)]
    assert [b[str(i)] for i in range(9)] == [(x0, y0, x1, y1) for y0, y1 in spans for x0, x1 in spans]
    # 1x8 over 400 x 90: under 100 px on a side, every tile is the full image
    assert set(boxes(GridCropSet(1, 8), 400, 90).values()) == {(0, 0, 400, 90)}


@PROPERTY
@given(rows=st.integers(1, 8), cols=st.integers(1, 8), data=st.data())
def test_grid_tiles_partition_the_image_when_tiles_are_big(rows: int, cols: int, data: st.DataObject) -> None:
    w = data.draw(st.integers(cols * MIN_CROP_SIDE, 20_000), label="w")
    h = data.draw(st.integers(rows * MIN_CROP_SIDE, 20_000), label="h")
    g = GridCropSet(rows, cols)
    regions = g.regions(w, h)
    assert len(regions) == rows * cols + 1
    assert regions[-1].box == (0, 0, w, h) and regions[-1].id == "all"
    tiles = [r.box for r in regions[:-1]]
    # row-major, and the tiles form a grid of consecutive spans that start at 0 and end at the edge
    xs = [tiles[c][0::2] for c in range(cols)]
    ys = [tiles[r * cols][1::2] for r in range(rows)]
    assert tiles == [(x0, y0, x1, y1) for y0, y1 in ys for x0, x1 in xs]
    assert xs[0][0] == 0 and xs[-1][1] == w and ys[0][0] == 0 and ys[-1][1] == h
    assert all(a[1] == b[0] for a, b in itertools.pairwise(xs))
    assert all(a[1] == b[0] for a, b in itertools.pairwise(ys))
    # every pixel exactly once: no holes, no overlap, areas add up
    assert uncovered(tiles, w, h) == []
    assert sum((x1 - x0) * (y1 - y0) for x0, y0, x1, y1 in tiles) == w * h
    for t in tiles:
        assert t[2] - t[0] >= MIN_CROP_SIDE and t[3] - t[1] >= MIN_CROP_SIDE


@PROPERTY
@given(rows=st.integers(1, 8), cols=st.integers(1, 8), w=sizes, h=sizes)
def test_grid_tiles_are_widened_within_the_image_and_still_cover_it(
    rows: int, cols: int, w: int, h: int
) -> None:
    regions = GridCropSet(rows, cols).regions(w, h)
    assert len(regions) == rows * cols + 1
    tiles = [r.box for r in regions[:-1]]
    for left, top, right, bottom in tiles:
        assert 0 <= left < right <= w and 0 <= top < bottom <= h
    assert uncovered(tiles, w, h) == []
    if w < MIN_CROP_SIDE or h < MIN_CROP_SIDE:
        assert set(tiles) == {(0, 0, w, h)}
        return
    for i, (left, top, right, bottom) in enumerate(tiles):
        r, c = divmod(i, cols)
        # the unwidened tile of a plain partition, and the widened tile that contains it
        x0, x1 = w * c // cols, w * (c + 1) // cols
        y0, y1 = h * r // rows, h * (r + 1) // rows
        assert left <= x0 and x1 <= right and top <= y0 and y1 <= bottom
        assert right - left == max(MIN_CROP_SIDE, x1 - x0)
        assert bottom - top == max(MIN_CROP_SIDE, y1 - y0)


@pytest.mark.parametrize(("rows", "cols"), [(0, 3), (3, 0), (9, 1), (1, 9), (-1, 2)])
def test_grid_bounds(rows: int, cols: int) -> None:
    with pytest.raises(ConfigError, match="1-8"):
        GridCropSet(rows, cols)


# --- crop_set() keys ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "cls", "key"),
    [
        ("paper", PaperCropSet, "paper"),
        (" Paper ", PaperCropSet, "paper"),
        ("grid-3x3", GridCropSet, "grid-3x3"),
        ("grid:2x4", GridCropSet, "grid-2x4"),
        ("3x3", GridCropSet, "grid-3x3"),
        ("GRID-1X8", GridCropSet, "grid-1x8"),
        ("8x1", GridCropSet, "grid-8x1"),
    ],
)
def test_crop_set_keys(spec: str, cls: type[CropSet], key: str) -> None:
    cs = crop_set(spec)
    assert type(cs) is cls and cs.key == key
    assert crop_set(cs.key).key == key  # the key round-trips
    if isinstance(cs, GridCropSet):
        rows, cols = map(int, key.removeprefix("grid-").split("x"))
        assert (cs.rows, cs.cols) == (rows, cols)


def test_crop_set_default_and_passthrough() -> None:
    assert isinstance(crop_set(), PaperCropSet)
    g = GridCropSet(2, 2)
    assert crop_set(g) is g


@pytest.mark.parametrize(
    "spec",
    ["", "grid", "papers", "grid-3x", "x3", "3x3x3", "grid-3*3", "grid_3x3", "grid-0x3", "grid-9x9", "1x10"],
)
def test_crop_set_bad_keys(spec: str) -> None:
    with pytest.raises(ConfigError):
        crop_set(spec)
