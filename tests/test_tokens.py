"""Tests for awares_agent.tokens: visual-token counts and the retained token ratio.

The Qwen rules are checked against transformers' own Qwen2-VL image processor (``image_grid_thw``) and its
``smart_resize``; both are built offline from arguments, with no download and no torchvision.
"""

from __future__ import annotations

import math
import random

import pytest
from pydantic import ValidationError

# transformers' own Qwen2-VL image processor and smart_resize, the reference (the PIL backend: no
# torchvision). Imported, not import-skipped: transformers is a dev dependency, and a reference that moved
# would otherwise turn these tests into silent skips.
from transformers.models.qwen2_vl import image_processing_pil_qwen2_vl as hf_qwen2_vl

from awares_agent.errors import ConfigError
from awares_agent.tokens import (
    QWEN2_5_VL,
    QWEN2_VL,
    QWEN3_VL,
    PixelTokenRule,
    QwenVLTokenRule,
    TokenCost,
    TokenRule,
    backend_token_rule,
    pixel_rtr,
    smart_resize,
    token_cost,
    token_rule,
)

# --- reference sizes -----------------------------------------------------------------------------------

# (width, height): odd sizes, tiny images, extreme-but-allowed aspect ratios, min/max pixel boundaries.
FIXED_SIZES: list[tuple[int, int]] = [
    (1, 1),
    (1, 3),
    (3, 1),
    (2, 2),
    (3, 7),
    (5, 5),
    (13, 14),
    (14, 14),
    (15, 15),
    (27, 29),
    (28, 28),
    (30, 40),
    (41, 13),
    (42, 42),
    (56, 56),
    (99, 101),
    (100, 1),
    (1, 150),
    (112, 223),
    (112, 224),  # exactly min_pixels (25088) for Qwen2.5-VL
    (158, 158),
    (159, 157),
    (168, 150),
    (181, 182),  # around min_pixels for Qwen3-VL (32768)
    (224, 448),
    (333, 777),
    (500, 375),
    (640, 480),
    (1000, 800),
    (1023, 767),
    (1280, 720),
    (1254, 1280),
    (1260, 1260),
    (1264, 1264),  # rounds to 1260x1260 < max_pixels
    (1267, 1267),  # rounds to 1288x1288 > max_pixels
    (1792, 896),  # exactly max_pixels (1605632) for Qwen2.5-VL
    (1793, 897),
    (1806, 890),
    (896, 1792),
    (1448, 1448),  # around max_pixels for Qwen3-VL (2097152)
    (1449, 1448),
    (2048, 1024),
    (1920, 1080),
    (2000, 30),
    (30, 2000),
    (2000, 11),
    (5000, 26),
    (26, 5000),
    (2001, 1999),
    (4000, 3000),
    (3000, 4000),
]


def _random_sizes(n: int, seed: int = 20240601) -> list[tuple[int, int]]:
    """``n`` seeded sizes, log-uniform sides in [1, 2600], aspect ratio < 200."""
    rng = random.Random(seed)
    sizes: list[tuple[int, int]] = []
    while len(sizes) < n:
        width = int(math.exp(rng.uniform(0.0, math.log(2600))))
        height = int(math.exp(rng.uniform(0.0, math.log(2600))))
        if max(width, height) / min(width, height) < 200:
            sizes.append((width, height))
    return sizes


ALL_SIZES = FIXED_SIZES + _random_sizes(60)


# --- the transformers reference --------------------------------------------------------------------------


def _hf_processor(patch_size: int, merge_size: int, min_pixels: int, max_pixels: int):
    """transformers' Qwen2-VL image processor (the PIL/numpy backend: needs no torchvision), offline."""
    return hf_qwen2_vl.Qwen2VLImageProcessorPil(
        size={"shortest_edge": min_pixels, "longest_edge": max_pixels},
        patch_size=patch_size,
        merge_size=merge_size,
    )


@pytest.mark.parametrize("rule", [QWEN2_5_VL, QWEN2_VL, QWEN3_VL], ids=lambda r: r.name)
def test_counts_match_transformers_image_grid_thw(rule: QwenVLTokenRule) -> None:
    from PIL import Image

    processor = _hf_processor(rule.patch_size, rule.merge_size, rule.min_pixels, rule.max_pixels)
    assert processor.patch_size == rule.patch_size
    assert processor.merge_size == rule.merge_size
    assert (processor.size.shortest_edge, processor.size.longest_edge) == (rule.min_pixels, rule.max_pixels)
    sizes = ALL_SIZES if rule is not QWEN2_VL else FIXED_SIZES  # QWEN2_VL shares QWEN2_5_VL's geometry
    mismatches = []
    for width, height in sizes:
        image = Image.new("RGB", (width, height), (200, 100, 50))
        # Channels-last is explicit: tiny images like 3x5 would make the channel axis ambiguous.
        grid = processor(image, input_data_format="channels_last")["image_grid_thw"]
        t, grid_h, grid_w = (int(v) for v in grid[0])
        expected = t * grid_h * grid_w // rule.merge_size**2
        resized = (grid_w * rule.patch_size, grid_h * rule.patch_size)
        if rule.count(width, height) != expected or rule.resized(width, height) != resized:
            mismatches.append(((width, height), rule.count(width, height), expected))
    assert mismatches == []


@pytest.mark.parametrize(
    ("factor", "min_pixels", "max_pixels"),
    [
        (28, 32 * 28 * 28, 2048 * 28 * 28),  # the paper's Qwen2.5-VL setting
        (32, 32 * 32 * 32, 2048 * 32 * 32),  # our Qwen3-VL setting
        (28, 56 * 56, 28 * 28 * 1280),  # transformers' Qwen2-VL defaults
        (32, 65536, 16777216),  # a Qwen3-VL processor config's defaults
        (28, 4 * 28 * 28, 16 * 28 * 28),  # a small budget: the max branch is hit often
    ],
)
def test_smart_resize_matches_transformers_over_a_grid(factor: int, min_pixels: int, max_pixels: int) -> None:
    sides = [*range(1, 130), *range(130, 1200, 7), *range(1200, 6000, 97)]
    compared = 0
    mismatches = []
    for height in sides:
        for width in sides:
            if max(height, width) / min(height, width) > 200:
                continue
            ours = smart_resize(height, width, factor, min_pixels, max_pixels)
            theirs = hf_qwen2_vl.smart_resize(
                height, width, factor=factor, min_pixels=min_pixels, max_pixels=max_pixels
            )
            compared += 1
            if ours != tuple(theirs):
                mismatches.append(((height, width), ours, theirs))
    assert compared > 50_000
    assert mismatches == []


def test_smart_resize_defaults_match_transformers() -> None:
    for height, width in [(1, 1), (30, 40), (480, 640), (3000, 4000)]:
        assert smart_resize(height, width) == tuple(hf_qwen2_vl.smart_resize(height, width))


# --- smart_resize edge cases ------------------------------------------------------------------------------


@pytest.mark.parametrize(("width", "height"), [(30000, 20), (20, 30000), (10**6, 1), (1, 10**6), (401, 2)])
def test_extreme_aspect_ratio_does_not_raise(width: int, height: int) -> None:
    # transformers refuses an aspect ratio over 200; we still count.
    for rule in (QWEN2_5_VL, QWEN2_VL, QWEN3_VL):
        w_bar, h_bar = rule.resized(width, height)
        assert w_bar % rule.unit == 0 and h_bar % rule.unit == 0
        assert w_bar >= rule.unit and h_bar >= rule.unit
        assert rule.count(width, height) >= 1
    assert PixelTokenRule().count(width, height) >= 1


def test_extreme_aspect_ratio_follows_the_formula() -> None:
    # 30000x20: sides round to 29988x28 (1071 x 1 tokens), an area within [min_pixels, max_pixels].
    assert QWEN2_5_VL.resized(30000, 20) == (29988, 28)
    assert QWEN2_5_VL.resized(20, 30000) == (28, 29988)
    assert QWEN2_5_VL.count(30000, 20) == 1071
    assert QWEN2_5_VL.count(20, 30000) == 1071


def test_smart_resize_never_returns_a_zero_side() -> None:
    # transformers would return a 0 side here (min_pixels=0), which its processor cannot use.
    assert smart_resize(1, 100, 28, min_pixels=0, max_pixels=2048 * 28 * 28) == (28, 112)
    assert smart_resize(10, 10, 28, min_pixels=0, max_pixels=2048 * 28 * 28) == (28, 28)


def test_tiny_images_are_scaled_up_not_refused() -> None:
    assert smart_resize(1, 1, 28, 32 * 28 * 28, 2048 * 28 * 28) == (168, 168)
    assert QWEN2_5_VL.count(28, 28) == 36
    assert QWEN2_5_VL.count(1, 1) == 36
    assert QWEN2_5_VL.count(30, 40) == 35  # 140 x 196 -> 5 x 7


@pytest.mark.parametrize("bad", [0, -1, 2.5, "10", None])
def test_smart_resize_rejects_bad_sizes(bad: object) -> None:
    with pytest.raises(ConfigError):
        smart_resize(bad, 10)  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        smart_resize(10, bad)  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        QWEN2_5_VL.count(bad, 10)  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        PixelTokenRule().count(10, bad)  # type: ignore[arg-type]


# --- rules --------------------------------------------------------------------------------------------------


def test_qwen_constants() -> None:
    assert (QWEN2_5_VL.name, QWEN2_5_VL.patch_size, QWEN2_5_VL.merge_size) == ("qwen2.5-vl", 14, 2)
    assert (QWEN2_5_VL.min_pixels, QWEN2_5_VL.max_pixels) == (25088, 1605632)
    assert (QWEN2_VL.name, QWEN2_VL.unit, QWEN2_VL.min_pixels, QWEN2_VL.max_pixels) == (
        "qwen2-vl",
        28,
        25088,
        1605632,
    )
    assert (QWEN3_VL.name, QWEN3_VL.patch_size, QWEN3_VL.merge_size, QWEN3_VL.unit) == ("qwen3-vl", 16, 2, 32)
    assert (QWEN3_VL.min_pixels, QWEN3_VL.max_pixels) == (32 * 32 * 32, 2048 * 32 * 32)
    for rule in (QWEN2_5_VL, QWEN2_VL, QWEN3_VL, PixelTokenRule()):
        assert isinstance(rule, TokenRule)


def test_qwen_token_budget() -> None:
    assert QWEN2_5_VL.count(1792, 896) == 2048
    assert QWEN2_5_VL.count(4000, 3000) <= 2048
    assert QWEN2_5_VL.count(112, 224) == 32
    assert QWEN3_VL.count(4000, 3000) <= 2048
    assert QWEN3_VL.count(1, 1) >= 32


def test_qwen_rule_is_frozen_and_validated() -> None:
    with pytest.raises(AttributeError):
        QWEN2_5_VL.max_pixels = 1  # type: ignore[misc]
    with pytest.raises(ConfigError):
        QwenVLTokenRule("x", 0, 2, min_pixels=0, max_pixels=100)
    with pytest.raises(ConfigError):
        QwenVLTokenRule("x", 14, 2, min_pixels=-1, max_pixels=100)
    with pytest.raises(ConfigError):
        QwenVLTokenRule("x", 14, 2, min_pixels=200, max_pixels=100)


def test_pixel_rule_math() -> None:
    rule = PixelTokenRule()
    assert (rule.name, rule.unit, rule.max_tokens) == ("pixels", 28, None)
    assert rule.count(28, 28) == 1
    assert rule.count(29, 28) == 2  # ceil
    assert rule.count(1, 1) == 1  # at least one token
    assert rule.count(56, 56) == 4
    assert rule.count(1000, 800) == math.ceil(800_000 / 784)
    assert PixelTokenRule(unit=1).count(1000, 800) == 800_000
    assert PixelTokenRule(unit=32).count(64, 33) == 3
    # no resize rounding and no max_pixels cap, unlike the Qwen rule
    assert rule.count(4000, 3000) == math.ceil(12_000_000 / 784)


def test_pixel_rule_cap() -> None:
    rule = PixelTokenRule(max_tokens=100)
    assert rule.count(4000, 3000) == 100
    assert rule.count(28, 28) == 1
    assert rule.count(280, 280) == 100
    assert rule.count(281, 280) == 100
    with pytest.raises(ConfigError):
        PixelTokenRule(unit=0)
    with pytest.raises(ConfigError):
        PixelTokenRule(max_tokens=0)


# --- token_rule ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("qwen2.5-vl", QWEN2_5_VL),
        ("Qwen2.5-VL", QWEN2_5_VL),
        ("  QWEN2.5-VL ", QWEN2_5_VL),
        ("qwen2-vl", QWEN2_VL),
        ("qwen3-vl", QWEN3_VL),
        ("pixels", PixelTokenRule()),
        ("PIXELS", PixelTokenRule()),
        ("pixels:32", PixelTokenRule(unit=32)),
        ("pixels: 14", PixelTokenRule(unit=14)),
    ],
)
def test_token_rule_names(spec: str, expected: TokenRule) -> None:
    assert token_rule(spec) == expected


def test_token_rule_passes_a_rule_through() -> None:
    custom = PixelTokenRule(unit=7, max_tokens=9)
    assert token_rule(custom) is custom
    assert token_rule(QWEN3_VL, model_name="qwen2.5-vl") is QWEN3_VL


@pytest.mark.parametrize(
    ("model_name", "expected"),
    [
        ("Qwen/Qwen3-VL-8B-Instruct", QWEN3_VL),
        ("qwen3_vl", QWEN3_VL),
        ("Qwen/Qwen2.5-VL-7B-Instruct", QWEN2_5_VL),
        ("qwen2_5_vl-3b", QWEN2_5_VL),
        ("my-org/AwaRes-7B", QWEN2_5_VL),
        ("Qwen/Qwen2-VL-7B-Instruct", QWEN2_VL),
        ("gpt-4o", PixelTokenRule()),
        ("Qwen/Qwen2.5-7B-Instruct", PixelTokenRule()),  # not a VL model
        (None, PixelTokenRule()),
    ],
)
def test_token_rule_inference(model_name: str | None, expected: TokenRule) -> None:
    assert token_rule(None, model_name=model_name) == expected
    assert token_rule("auto", model_name=model_name) == expected
    assert token_rule("AUTO", model_name=model_name) == expected


@pytest.mark.parametrize("spec", ["qwen4-vl", "", "pixel", "pixels:", "pixels:0", "pixels:-3", "pixels:2.5"])
def test_token_rule_unknown_name(spec: str) -> None:
    with pytest.raises(ConfigError) as info:
        token_rule(spec)
    if not spec.startswith("pixels:"):
        message = str(info.value)
        for name in ("qwen2.5-vl", "qwen2-vl", "qwen3-vl", "pixels"):
            assert name in message


def test_token_rule_rejects_other_types() -> None:
    with pytest.raises(ConfigError):
        token_rule(42)  # type: ignore[arg-type]


# --- token_cost and pixel_rtr ------------------------------------------------------------------------------

FULL = (1000, 800)
VIEW = (500, 400)
QUARTER = (500, 400)
HALF = (1000, 400)


@pytest.mark.parametrize(
    ("crops", "expected"),
    [
        ([], 0.25),  # direct answer
        ([QUARTER], 0.50),
        ([HALF], 0.75),
        ([QUARTER] * 4, 1.25),  # "all"
    ],
)
def test_paper_ratios_with_pure_pixels(crops: list[tuple[int, int]], expected: float) -> None:
    cost = token_cost(PixelTokenRule(unit=1), FULL, VIEW, crops)
    assert cost.rtr == expected
    assert cost.pixel_rtr == expected
    assert pixel_rtr(FULL, VIEW, crops) == expected


def test_direct_answer_is_the_view_only() -> None:
    cost = token_cost(QWEN2_5_VL, FULL, VIEW)
    assert cost == TokenCost(
        rule="qwen2.5-vl",
        full_tokens=QWEN2_5_VL.count(*FULL),
        view_tokens=QWEN2_5_VL.count(*VIEW),
        crop_tokens=[],
        sent_tokens=QWEN2_5_VL.count(*VIEW),
        rtr=QWEN2_5_VL.count(*VIEW) / QWEN2_5_VL.count(*FULL),
        pixel_rtr=0.25,
    )


def test_one_quarter_crop() -> None:
    cost = token_cost(QWEN2_5_VL, FULL, VIEW, [QUARTER])
    assert cost.crop_tokens == [QWEN2_5_VL.count(*QUARTER)]
    assert cost.sent_tokens == cost.view_tokens + cost.crop_tokens[0]
    assert cost.rtr == cost.sent_tokens / cost.full_tokens
    assert cost.pixel_rtr == 0.5
    # 1000x800 -> 1008x812 (36x29 tokens); 500x400 -> 504x392 (18x14 tokens)
    assert (cost.full_tokens, cost.view_tokens, cost.sent_tokens) == (1044, 252, 504)


def test_view_counted_once_with_two_crops() -> None:
    rule = PixelTokenRule(unit=1)
    cost = token_cost(rule, FULL, VIEW, [QUARTER, HALF])
    assert cost.view_tokens == 200_000
    assert cost.crop_tokens == [200_000, 400_000]
    assert cost.sent_tokens == 800_000  # not 2 * view + crops
    assert cost.rtr == 1.0
    assert cost.pixel_rtr == 1.0
    qwen = token_cost(QWEN2_5_VL, FULL, VIEW, [QUARTER, HALF])
    assert qwen.sent_tokens == qwen.view_tokens + sum(qwen.crop_tokens)
    assert qwen.sent_tokens == QWEN2_5_VL.count(*VIEW) + QWEN2_5_VL.count(*QUARTER) + QWEN2_5_VL.count(*HALF)


def test_token_cost_accepts_any_sequence_and_is_frozen() -> None:
    cost = token_cost(QWEN3_VL, FULL, VIEW, ((500, 400), (500, 400)))
    assert cost.rule == "qwen3-vl"
    assert len(cost.crop_tokens) == 2
    with pytest.raises(ValidationError, match="frozen"):
        cost.rtr = 0.0  # type: ignore[misc]
    assert cost.rtr != 0.0
    assert TokenCost.model_validate_json(cost.model_dump_json()) == cost


def test_token_cost_extreme_sizes_do_not_raise() -> None:
    cost = token_cost(QWEN2_5_VL, (30000, 20), (15000, 10), [(7500, 20)])
    assert cost.full_tokens >= 1 and cost.sent_tokens >= 1


@pytest.mark.parametrize(
    ("full", "view", "crops"),
    [
        ((0, 10), (5, 5), []),
        ((10, 10), (5, -5), []),
        ((10, 10), (5, 5), [(1,)]),
        ((10, 10), (5, 5), [(1, 0)]),
    ],
)
def test_token_cost_rejects_bad_sizes(full, view, crops) -> None:
    with pytest.raises(ConfigError):
        token_cost(QWEN2_5_VL, full, view, crops)
    with pytest.raises(ConfigError):
        pixel_rtr(full, view, crops)


class _Backend:
    def __init__(self, model_name: str, rule: object = None) -> None:
        self.model_name = model_name
        if rule is not None:
            self.token_rule = rule


def test_backend_token_rule_prefers_the_backends_own() -> None:
    own = QwenVLTokenRule("own", 14, 2, min_pixels=4 * 28 * 28, max_pixels=64 * 28 * 28)
    assert backend_token_rule(None, _Backend("/models/checkpoint-7", own)) is own
    assert backend_token_rule("auto", _Backend("/models/checkpoint-7", own)) is own
    # A configured rule wins; without an own rule the model name decides.
    assert backend_token_rule("qwen3-vl", _Backend("x", own)) is QWEN3_VL
    assert backend_token_rule(None, _Backend("Qwen/Qwen2.5-VL-7B-Instruct")) is QWEN2_5_VL
    assert isinstance(backend_token_rule(None, _Backend("/models/checkpoint-7")), PixelTokenRule)
    assert isinstance(backend_token_rule(None, _Backend("m", rule="not a rule")), PixelTokenRule)


def test_an_unknown_model_name_counts_pixels_and_says_so_once(caplog: pytest.LogCaptureFixture) -> None:
    from awares_agent.tokens import PixelTokenRule, token_rule

    with caplog.at_level("WARNING", logger="awares_agent.tokens"):
        assert isinstance(token_rule(model_name="my-local-vlm-7b"), PixelTokenRule)
        assert isinstance(token_rule(model_name="my-local-vlm-7b"), PixelTokenRule)
    warned = [r for r in caplog.records if "my-local-vlm-7b" in r.getMessage()]
    assert len(warned) == 1 and "--token-rule" in warned[0].getMessage()
