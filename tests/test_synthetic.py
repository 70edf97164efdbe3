"""Tests of the synthetic high-resolution benchmark (awares_agent.evals.synthetic)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageChops

from awares_agent.evals.schema import EvalSample, features
from awares_agent.evals.synthetic import (
    CATEGORIES,
    DEFAULT_FONT_DIR,
    DEFAULT_SIZE_RANGE,
    FontBook,
    build_synthetic,
    generate,
    holding_region,
    ocr_text,
    verify_readability,
)
from awares_agent.tools.box_mapping import crops_covering
from awares_agent.tools.crop_sets import GridCropSet, PaperCropSet

N = 100


@pytest.fixture(scope="module")
def samples() -> list[EvalSample]:
    """100 samples of seed 0 (about 4 s)."""
    return generate(N, seed=0)


def _same(a: list[EvalSample], b: list[EvalSample]) -> bool:
    return all(
        x.id == y.id
        and x.question == y.question
        and x.answers == y.answers
        and x.evidence == y.evidence
        and x.needs_crop == y.needs_crop
        and x.image.size == y.image.size
        and x.image.tobytes() == y.image.tobytes()
        for x, y in zip(a, b, strict=True)
    )


def test_deterministic_by_seed() -> None:
    first, again = generate(6, seed=3), generate(6, seed=3)
    assert _same(first, again)
    other = generate(6, seed=4)
    assert not any(x.image.tobytes() == y.image.tobytes() for x, y in zip(first, other, strict=True))
    assert [s.question for s in first] != [s.question for s in other]


def test_smaller_n_is_a_prefix(samples: list[EvalSample]) -> None:
    assert _same(generate(4, seed=0), samples[:4])


def test_schema(samples: list[EvalSample]) -> None:
    assert [s.id for s in samples] == [f"syn-{i:06d}" for i in range(N)]
    for s in samples:
        assert isinstance(s.image, Image.Image) and s.image.mode == "RGB"
        w, h = s.image.size
        (wmin, hmin), (wmax, hmax) = DEFAULT_SIZE_RANGE
        assert wmin <= w <= wmax and hmin <= h <= hmax
        assert s.metric == "exact"
        assert len(s.answers) == 1 and s.answers[0] == s.answers[0].strip() and 3 <= len(s.answers[0]) <= 14
        assert s.question.strip() and s.question != s.answers[0]
        assert s.answers[0].casefold() not in s.question.casefold()
        assert isinstance(s.needs_crop, bool)
        assert s.category in CATEGORIES
    # round-robin over the categories
    assert [s.category for s in samples[:10]] == [*CATEGORIES, *CATEGORIES]


def test_answers_are_mostly_unique_and_phrasings_vary(samples: list[EvalSample]) -> None:
    answers = [s.answers[0] for s in samples]
    assert len(set(answers)) >= 0.97 * len(answers)
    for category in CATEGORIES:
        questions = {re.sub(r'"[^"]*"', "", s.question) for s in samples if s.category == category}
        assert len(questions) >= 5, category


def test_bbox_inside_image_and_on_ink(samples: list[EvalSample]) -> None:
    for s in samples:
        assert s.evidence is not None
        x0, y0, x1, y1 = s.evidence
        w, h = s.image.size
        assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h, s.id
        # something is drawn inside the box: it is not one flat colour
        extrema = s.image.crop((int(x0), int(y0), int(x1), int(y1))).convert("L").getextrema()
        assert extrema[1] - extrema[0] > 60, s.id


def test_label_balance(samples: list[EvalSample]) -> None:
    assert sum(s.needs_crop for s in samples) == 40  # exactly 40% per 20 samples of each category
    for category in CATEGORIES:
        assert sum(s.needs_crop for s in samples if s.category == category) == 8
    quarter = generate(20, seed=1, hr_fraction=0.25, categories=("document",))
    assert sum(s.needs_crop for s in quarter) == 5


def test_evidence_spread_over_regions(samples: list[EvalSample]) -> None:
    quadrants, cells, inside = set(), set(), 0
    for s in samples:
        assert s.evidence is not None
        x0, y0, x1, y1 = s.evidence
        w, h = s.image.size
        cw, ch = w // 2, h // 2
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        cells.add((min(2, int(3 * cy / h)), min(2, int(3 * cx / w))))
        left, right = x1 <= cw, x0 >= w - cw
        top, bottom = y1 <= ch, y0 >= h - ch
        if (left or right) and (top or bottom):
            inside += 1
            quadrants.add((top, left))
    assert len(quadrants) == 4
    assert len(cells) == 9
    assert 0.65 * N <= inside <= 0.95 * N  # ~80% inside one quadrant, the rest straddle a centre line


def test_font_fallback(tmp_path: Path) -> None:
    book = FontBook(tmp_path)  # no font files there
    assert book.fallback and book.styles(["sans", "serif"]) == ["default"]
    assert book.font("sans", 20).getbbox("Hello")[2] > 0
    plain = generate(5, seed=0, font_dir=tmp_path)
    assert _same(plain, generate(5, seed=0, font_dir=tmp_path))
    assert len({s.category for s in plain}) == 5
    if DEFAULT_FONT_DIR.is_dir() and not FontBook(DEFAULT_FONT_DIR).fallback:
        dejavu = generate(5, seed=0)
        assert not any(a.image.tobytes() == b.image.tobytes() for a, b in zip(plain, dejavu, strict=True))


def test_dejavu_fonts_found() -> None:
    if not DEFAULT_FONT_DIR.is_dir():
        pytest.skip("no DejaVu fonts on this machine")
    book = FontBook(DEFAULT_FONT_DIR)
    assert not book.fallback and {"sans", "serif", "mono", "sans-bold", "sans-condensed"} <= set(book.paths)
    assert book.bold("serif") == "serif-bold"


def test_label_size_option() -> None:
    same = generate(5, seed=2, categories=("document",), hr_fraction=1.0)
    big = generate(5, seed=2, categories=("document",), hr_fraction=1.0, label_same_size=False)
    for a, b in zip(same, big, strict=True):
        assert a.answers == b.answers
        assert a.evidence is not None and b.evidence is not None
        assert b.evidence[3] - b.evidence[1] > a.evidence[3] - a.evidence[1]  # the label is printed large


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        generate(2, categories=("poems",))
    with pytest.raises(ValueError):
        generate(2, hr_fraction=1.5)
    with pytest.raises(ValueError):
        generate(-1)
    with pytest.raises(ValueError):
        generate(2, size_range=((400, 300), (900, 700)))
    assert generate(0) == []


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    from datasets import load_from_disk

    expected = generate(5, seed=7, size_range=((800, 600), (1000, 800)))
    path = build_synthetic(tmp_path / "syn", n=5, seed=7, chunk=2, size_range=((800, 600), (1000, 800)))
    assert path == tmp_path / "syn"
    loaded = load_from_disk(str(path))
    assert loaded.features == features()
    assert len(loaded) == 5
    for row, sample in zip(loaded, expected, strict=True):
        assert row["id"] == sample.id and row["question"] == sample.question
        assert row["answers"] == sample.answers and row["needs_crop"] == sample.needs_crop
        assert row["metric"] == "exact" and row["category"] == sample.category
        assert row["evidence"] == pytest.approx(list(sample.evidence))
        image = row["image"].convert("RGB")
        assert ImageChops.difference(image, sample.image).getbbox() is None  # stored losslessly
        EvalSample(**row)  # a row is a valid sample


class _FakeOCR:
    """Reads every answer in the full images and their crop-set crops, and nothing in resized views."""

    def __init__(self, samples: list[EvalSample]) -> None:
        from awares_agent.tools.crop_sets import PaperCropSet

        self.answers = [s.answers[0] for s in samples]
        self.known = set()
        for s in samples:
            for region in PaperCropSet().regions(*s.image.size):
                self.known.add(s.image.crop(region.box).tobytes())

    def __call__(self, image: Image.Image, **_: Any) -> tuple[list[Any], None]:
        if image.tobytes() not in self.known:
            return [], None
        return [[[[0, 0]] * 4, f" {a.lower()} ", 0.9] for a in self.answers], None


def test_verify_readability_logic(samples: list[EvalSample]) -> None:
    picked = samples[:6]
    fake = _FakeOCR(picked)
    report = verify_readability(picked, ocr=fake)
    for r, s in zip(report.results, picked, strict=True):
        assert r.full and not r.half
        assert r.ok == bool(s.needs_crop)
        assert (r.crop is None) == (not s.needs_crop)
        assert r.region in {
            "top-left",
            "top-right",
            "bottom-left",
            "bottom-right",
            "center",
            "top",
            "bottom",
        } | {
            "left",
            "right",
            "all",
        }
    assert report.fraction() == pytest.approx(sum(bool(s.needs_crop) for s in picked) / 6)
    assert "behave as labelled" in report.summary()
    assert ocr_text(picked[0].image, fake) == "|".join(a.lower() for a in fake.answers).replace(" ", "")


def test_holding_region_is_the_smallest_single_region_holding_the_box() -> None:
    """The one crop the readability check reads: every pixel of the box, in the cheapest single region."""
    w, h = 1000, 800
    assert holding_region((10, 10, 200, 100), w, h).name == "top-left"
    assert holding_region((400, 300, 600, 500), w, h).name == "center"
    assert holding_region((100, 10, 900, 100), w, h).name == "top"
    assert holding_region((10, 10, 990, 790), w, h).name == "all"
    # One pixel past the top-left quadrant: no slack, the next region that holds it.
    region = holding_region((10, 10, 501, 100), w, h)
    assert (region.name, region.box) == ("top", (0, 0, 1000, 400))
    # The oracle's rule may answer a pair for the same box; the check needs one image.
    assert crops_covering((344, 360, 873, 405), PaperCropSet(), 1033, 947, tolerance=0) == ["1", "4"]
    assert holding_region((344, 360, 873, 405), 1033, 947).name == "top"
    grid = holding_region((10, 10, 200, 100), w, h, GridCropSet(4, 4))
    assert grid.name == "r1c1"


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_readability_with_real_ocr(samples: list[EvalSample]) -> None:
    """The labels hold for the real offline OCR reader on a few samples (~40 s; 100 are in the report)."""
    pytest.importorskip("rapidocr_onnxruntime")
    picked = [samples[i] for i in (1, 3, 5, 8, 10)]  # a table, chart, document...; both labels
    assert {s.needs_crop for s in picked} == {True, False}
    report = verify_readability(picked)
    assert report.fraction() >= 0.8, report.summary()
