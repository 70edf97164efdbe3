"""The reader's one config: its defaults are the frozen, fitted values; it is validated and takes effect."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import math
from pathlib import Path

import pytest
from PIL import Image, ImageDraw, ImageFont

from awares_agent import AwaResAgent
from awares_agent.baselines.reader import (
    DEFAULT_MIN_CONFIDENCE,
    DEFAULT_MIN_TEXT_PX,
    ReaderBackend,
    ReaderConfig,
)
from awares_agent.baselines.reader import config as config_module
from awares_agent.errors import ConfigError

_DEJAVU = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")

# The constants of the reader before its split into a package (fitted on synthetic seeds 101-110, frozen):
# changing one changes the baseline's figures, so it must be a new config, never a new default.
FROZEN = {
    "min_text_px": 12.5,
    "min_confidence": 0.9,
    "max_trusted_gap": 6.0,
    "view_scale": 0.5,
    "cache_size": 128,
    "native_tolerance": 0.02,
    "view_box_slack": 0.25,
    "ocr_box_thresh": 0.5,
    "ocr_text_score": 0.5,
    "ocr_unclip_ratio": 1.6,
    "locate_box_thresh": 0.3,
    "locate_text_score": 0.2,
    "char_width_to_px": 2.5,
    "char_width_min_chars": 4,
    "reread_below_px": 20.0,
    "reread_scale": 2,
    "reread_margin_x": 0.6,
    "reread_margin_y": 0.4,
    "reread_border": 20,
    "reread_confidence_drop": 0.05,
    "enlarge": 2.0,
    "ambiguity": 0.8,
    "crop_tolerance": 4.0,
    "sentence_words": 3,
    "sentence_lower_words": 3,
    "short_key_chars": 3,
    "strict_long_key_chars": 6,
    "strict_chars_per_error": 5,
    "loose_error_share": 0.45,
    "loose_long_key_chars": 6,
    "loose_max_start": 2,
    "label_line_factor": 2,
    "legible_px": 12.5,
    "legible_confidence": 0.95,
    "coverage_weight": 0.15,
    "inside_word_penalty": 0.35,
    "mid_line_penalty": 0.05,
    "key_floor": 0.75,
    "loose_key_floor": 0.55,
    "generic_tail_weight": 0.95,
    "generic_tail_min_chars": 4,
    "key_max_spellings": 32,
    "stem_min_chars": 4,
    "same_line_overlap": 0.5,
    "column_overlap": 0.3,
    "right_of_slack": 0.5,
    "line_height_ratio": 2.5,
    "below_top": 0.5,
    "below_centre": 0.4,
    "below_reach": 1.5,
    "below_indent": 1.0,
    "below_penalty": 0.5,
    "above_slack": 0.3,
    "label_height_min": 0.6,
    "label_height_max": 1.6,
    "bar_row_overlap": 0.6,
    "bar_row_reach": 15.0,
    "bar_column_reach": 6.0,
    "colon_gap": 6.0,
    "right_reach": 80.0,
    "right_candidates": 2,
    "key_candidates": 4,
    "key_tie": 0.1,
    "word_min_chars": 3,
    "word_floor": 0.8,
    "words_min_chars": 4,
    "words_score": 0.75,
    "next_to_width": 6.0,
    "next_to_depth": 1.2,
    "word_gap": 0.6,
    "header_min_rise": 0.5,
    "header_max_rise": 30.0,
    "header_slack": 0.5,
    "header_reach": 60.0,
    "column_lead": 0.5,
    "column_gap": 0.2,
    "column_default_width": 6.0,
    "row_reach": 4.0,
    "block_word_gap": 4.0,
    "block_shared": 0.5,
    "block_pairing": 2 / 3,
    "block_min_pairs": 2,
    "table_min_lines": 3,
    "header_lines": 2,
    "bar_grey": 215,
    "bar_open": 3,
    "bar_min_side": 5,
    "bar_fill": 0.92,
    "bar_slack": 1.5,
    "bar_min_count": 3,
    "chart_label_zone": 60.0,
    "chart_side_label_zones": 8,
    "chart_label_margin": 30.0,
    "chart_value_margin": 40.0,
    "chart_side_labels": 110.0,
    "chart_side_values": 80.0,
    "chart_side_pitch_pad": 0.25,
    "chart_tie": 0.75,
    "chart_pair_area": 0.5,
    "small_label_gap": 4.0,
    "small_label_depth": 20.0,
    "slot_side_pad": 2.0,
    "slot_side_depths": 8,
    "slot_margin": 3.0,
    "ink_contrast": 40,
    "kws_upsample": 2,
    "kws_none": -9.0,
    "kws_unknown_letter": -20.0,
    "patch_margin_x": 0.3,
    "patch_margin_y": 0.2,
    "sign_floor": -2.5,
    "sign_margin": 0.5,
    "sign_chars": 14,
    "sign_max_words": 2,
    "sign_aspect": 10.0,
    "sign_word_gap": 1.5,
    "sign_line_overlap": 0.3,
    "sign_height_tolerance": 0.25,
    "sign_column_overlap": 0.3,
    "sign_box_left": 0.5,
    "sign_box_below": 1.5,
    "tile_slack": 1.01,
    "near_lines": 3.0,
    "guess_key_floor": 0.7,
    "guess_key_weight": 2.0,
    "guess_word_min_chars": 3,
    "guess_min_digits": 2,
    "guess_digits": 6,
    "guess_amount_bonus": 0.5,
    "guess_other_label_share": 0.3,
    "guess_label_floor": 0.5,
    "guess_line_floor": 0.7,
    "guess_word_floor": 0.5,
    "label_lead": 0.5,
    "label_reach": 6.0,
    "label_above_overlap": 0.25,
    "label_above_reach": 1.5,
    "guess_max_regions": 2,
}


def test_defaults_are_the_frozen_constants() -> None:
    config = ReaderConfig()
    values = dataclasses.asdict(config)
    assert values == FROZEN
    # Integers stay integers (slice bounds, counts); everything else is a float.
    assert all(isinstance(values[k], type(v)) for k, v in FROZEN.items())
    assert (DEFAULT_MIN_TEXT_PX, DEFAULT_MIN_CONFIDENCE) == (12.5, 0.9)


def test_every_field_is_documented() -> None:
    """One docstring per field, saying where its value comes from (fitted on the tuning seeds, or not)."""
    tree = ast.parse(inspect.getsource(config_module.ReaderConfig))
    body = tree.body[0].body  # type: ignore[attr-defined]
    docs = {
        node.target.id: " ".join(body[i + 1].value.value.split())
        for i, node in enumerate(body)
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
    }
    assert set(docs) == set(FROZEN)
    for name, doc in docs.items():
        assert "Fitted on seeds 101-110" in doc or "Not fitted" in doc, name


def test_config_is_frozen() -> None:
    config = ReaderConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.enlarge = 3.0  # type: ignore[misc]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("min_text_px", -1.0),
        ("min_confidence", 1.5),
        ("view_scale", 0.0),
        ("view_scale", 1.2),
        ("cache_size", 0),
        ("cache_size", 2.5),
        ("enlarge", 0.5),
        ("ambiguity", -0.1),
        ("key_floor", math.nan),
        ("bar_grey", 300),
        ("sign_floor", 1.0),
        ("key_candidates", True),
        ("block_pairing", "most"),
    ],
)
def test_invalid_values_raise_config_error_naming_the_field(field: str, value: object) -> None:
    with pytest.raises(ConfigError, match=rf"\b{field}\b"):
        ReaderConfig(**{field: value})  # type: ignore[arg-type]


def test_backend_keyword_arguments_map_onto_the_config() -> None:
    base = ReaderConfig(ambiguity=0.5)
    backend = ReaderBackend(config=base, enlarge=3, min_text_px=10)
    assert backend.config == dataclasses.replace(base, enlarge=3.0, min_text_px=10.0)
    assert backend.policy.config is backend.config
    assert ReaderBackend().config == ReaderConfig()
    with pytest.raises(ConfigError, match="view_scale"):
        ReaderBackend(view_scale=2.0)
    with pytest.raises(ConfigError, match="min_confidence"):
        ReaderBackend(config=base, min_confidence=-0.5)


def test_the_config_takes_effect() -> None:
    """The 6 px total (12 px on the page) is too small to trust in the view: the fitted reader crops; told
    to trust any text, it answers from the view."""
    image = Image.new("RGB", (1600, 1200), "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.truetype(str(_DEJAVU), 12) if _DEJAVU.exists() else ImageFont.load_default(12)
    draw.text((1200, 1100), "Total: 1,284.50", font=font, fill="black")
    fitted = AwaResAgent(ReaderBackend()).ask(image, "What is the total?")
    assert [c.region_id for c in fitted.trajectory.crops] == ["3"]
    trusting = ReaderBackend(config=ReaderConfig(min_text_px=0.0, min_confidence=0.0))
    result = AwaResAgent(trusting).ask(image, "What is the total?")
    assert result.trajectory.crops == []
