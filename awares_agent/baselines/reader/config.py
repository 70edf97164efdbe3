"""Every tuned threshold and constant of the reader, in one frozen, validated config.

The reader is a heuristic baseline fitted to the synthetic generator (:mod:`awares_agent.evals.synthetic`):
its thresholds were tuned on seeds 101-110 and are frozen; the held-out seeds (0, 2027, 4242) are for
reporting only. A field marked *fitted* was chosen on those tuning seeds; the others are the OCR engine's
own defaults or the agent's conventions. Lengths are in line heights of the text concerned unless a field
says otherwise; "original pixels" are pixels of the full-resolution image.

Changing a fitted value changes the baseline's figures: make a new config (``ReaderConfig(enlarge=3.0)``),
do not edit the defaults.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any

from awares_agent.errors import ConfigError

__all__ = ["DEFAULT_CONFIG", "DEFAULT_MIN_CONFIDENCE", "DEFAULT_MIN_TEXT_PX", "ReaderConfig"]

# How each field is checked: a name of _CHECKS, kept in the field's metadata.
_CHECKS: dict[str, tuple[str, Any]] = {
    "fraction": ("in [0, 1]", lambda v: 0 <= v <= 1),
    "scale": ("in (0, 1]", lambda v: 0 < v <= 1),
    "positive": ("> 0", lambda v: v > 0),
    "non-negative": (">= 0", lambda v: v >= 0),
    "at-least-one": (">= 1", lambda v: v >= 1),
    "non-positive": ("<= 0", lambda v: v <= 0),
    "grey": ("in [0, 255]", lambda v: 0 <= v <= 255),
}


def _field(default: float, check: str) -> Any:
    return field(default=default, metadata={"check": check})


@dataclass(frozen=True, kw_only=True)
class ReaderConfig:
    """The reader's thresholds: what it trusts, how it matches keys, and how its finders and policy decide.

    Every field is validated on construction; see the module docstring for units and provenance.

    Raises:
        ConfigError: a field has the wrong type or is out of range (the message names the field).
    """

    # --- trusting a reading of the view ---------------------------------------------------------------
    min_text_px: float = _field(12.5, "non-negative")
    """Smallest height (view pixels) of a text box whose reading of the view is trusted; shorter text is read
    again from a crop. RapidOCR's boxes are about ``0.95 * em + 4`` px tall, so this is text of about 9 px em:
    below it digits and punctuation are misread with high confidence. Fitted on seeds 101-110."""
    min_confidence: float = _field(0.9, "fraction")
    """Lowest recognition confidence for a reading of the view to be trusted. Fitted on seeds 101-110."""
    max_trusted_gap: float = _field(6.0, "non-negative")
    """Farthest a value read in the view may lie from its key (key line heights) to be trusted. Fitted on
    seeds 101-110."""

    # --- the view and the crops -----------------------------------------------------------------------
    view_scale: float = _field(0.5, "scale")
    """The view's size relative to the original, assumed until a crop gives the scale. Not fitted: the agent's
    default half-size view."""
    cache_size: int = _field(128, "at-least-one")
    """How many OCR results are kept (least recently used first out). Not fitted: memory, not accuracy."""
    native_tolerance: float = _field(0.02, "non-negative")
    """A crop whose size is within this fraction of its region's is at full resolution (pasted on one canvas
    with the other such crops, not rescaled). Fitted on seeds 101-110."""
    view_box_slack: float = _field(0.25, "fraction")
    """A view box is replaced by the crops' reading when its corners, moved inwards by this fraction of its
    height, lie in the crops. Fitted on seeds 101-110."""

    # --- the OCR engine -------------------------------------------------------------------------------
    ocr_box_thresh: float = _field(0.5, "fraction")
    """The detector's box score threshold for ordinary reading. Not fitted: RapidOCR's default."""
    ocr_text_score: float = _field(0.5, "fraction")
    """The recogniser's lowest kept score for ordinary reading. Not fitted: RapidOCR's default."""
    ocr_unclip_ratio: float = _field(1.6, "positive")
    """How far the detector grows a text region into its box. Not fitted: RapidOCR's default."""
    locate_box_thresh: float = _field(0.3, "fraction")
    """The detector's box score threshold when locating text too small to read (fainter boxes kept). Fitted
    on seeds 101-110."""
    locate_text_score: float = _field(0.2, "fraction")
    """The recogniser's lowest kept score when locating (garbled readings kept: enough to locate). Fitted on
    seeds 101-110."""
    char_width_to_px: float = _field(2.5, "positive")
    """A line's text height is at most this many times its mean character width (ordinary text: 2.0-2.4), so
    a box caught around two lines still gets its text's height. Fitted on seeds 101-110."""
    char_width_min_chars: int = _field(4, "at-least-one")
    """Lines of at least this many characters have their height capped by ``char_width_to_px``. Fitted on
    seeds 101-110."""

    # --- re-reading small values ----------------------------------------------------------------------
    reread_below_px: float = _field(20.0, "non-negative")
    """Values read from text shorter than this (pixels of the image read) are read again enlarged. Fitted on
    seeds 101-110."""
    reread_scale: int = _field(2, "at-least-one")
    """How many times a value's patch is enlarged to be read again. Fitted on seeds 101-110."""
    reread_margin_x: float = _field(0.6, "non-negative")
    """The re-read patch's margin left and right of the value. Fitted on seeds 101-110."""
    reread_margin_y: float = _field(0.4, "non-negative")
    """The re-read patch's margin above and below the value. Fitted on seeds 101-110."""
    reread_border: int = _field(20, "non-negative")
    """White border (pixels) around the enlarged patch, so the detector sees the text whole. Fitted on seeds
    101-110."""
    reread_confidence_drop: float = _field(0.05, "fraction")
    """A re-reading is taken only when its confidence is at most this much below the first reading's. Fitted
    on seeds 101-110."""

    # --- locating a key that cannot be read -----------------------------------------------------------
    enlarge: float = _field(2.0, "at-least-one")
    """When the question's key cannot be read in the view, the view is read again enlarged this many times
    (bicubic) to locate it: text too small to read is often still detected and spelled closely enough. Fitted
    on seeds 101-110."""
    ambiguity: float = _field(0.8, "non-negative")
    """When the key cannot be found even so, the runner-up's crop is requested too if it scores at least this
    fraction of the likeliest's (``1.0`` or more: never two). Fitted on seeds 101-110."""
    crop_tolerance: float = _field(4.0, "non-negative")
    """Pixels of evidence a requested crop may leave out (``crops_covering``'s tolerance). Fitted on seeds
    101-110."""

    # --- what text is ---------------------------------------------------------------------------------
    sentence_words: int = _field(3, "at-least-one")
    """A line of more than this many words (two letters or more) is a sentence, not a label or a value.
    Fitted on seeds 101-110."""
    sentence_lower_words: int = _field(3, "at-least-one")
    """A value holding this many lower-case words is a sentence: no field's, cell's or bar's value. Fitted
    on seeds 101-110."""

    # --- matching a key -------------------------------------------------------------------------------
    short_key_chars: int = _field(3, "at-least-one")
    """Keys of at most this many characters must be found exactly, as a word of their own ("no" is not the
    start of "north"). Fitted on seeds 101-110."""
    strict_long_key_chars: int = _field(6, "at-least-one")
    """Longer keys than this may have one error per ``strict_chars_per_error`` characters (at least two);
    shorter ones one. Fitted on seeds 101-110."""
    strict_chars_per_error: int = _field(5, "at-least-one")
    """Characters of a long key per error allowed. Fitted on seeds 101-110."""
    loose_error_share: float = _field(0.45, "fraction")
    """Matching loosely (text read far below its legible size), the share of a long key's characters that
    may be wrong. Fitted on seeds 101-110."""
    loose_long_key_chars: int = _field(6, "at-least-one")
    """Matching loosely, keys of at least this many characters are long; shorter ones may have one error
    ("riga" is not "lima"). Fitted on seeds 101-110."""
    loose_max_start: int = _field(2, "non-negative")
    """Matching loosely, a key must start within this many characters of its line's start (garbled text
    matches anywhere inside a long line). Fitted on seeds 101-110."""
    label_line_factor: int = _field(2, "at-least-one")
    """A near-miss that does not start its line is another word when the line is more than this many times
    the key's length (a label starts its line). Fitted on seeds 101-110."""
    legible_px: float = _field(12.5, "non-negative")
    """Text at least this tall (view pixels) and read at ``legible_confidence`` is read right, so a near-miss
    inside it is another word ("contact" is not "contract"). Fitted on seeds 101-110."""
    legible_confidence: float = _field(0.95, "fraction")
    """See ``legible_px``. Fitted on seeds 101-110."""
    coverage_weight: float = _field(0.15, "non-negative")
    """Weight of how much of a line's label the key covers, in a match's score. Fitted on seeds 101-110."""
    inside_word_penalty: float = _field(0.35, "non-negative")
    """Score taken off a key found inside a longer word ("total" in "subtotal", "stand" in "standard").
    Fitted on seeds 101-110."""
    mid_line_penalty: float = _field(0.05, "non-negative")
    """Score taken off a key that does not start its line. Fitted on seeds 101-110."""
    key_floor: float = _field(0.75, "non-negative")
    """Lowest score of a key match. Fitted on seeds 101-110."""
    loose_key_floor: float = _field(0.55, "non-negative")
    """Lowest score of a loose key match. Fitted on seeds 101-110."""
    generic_tail_weight: float = _field(0.95, "fraction")
    """Weight of a key's spelling without its generic last word ("reference code" printed "Reference").
    Fitted on seeds 101-110."""
    generic_tail_min_chars: int = _field(4, "at-least-one")
    """A key's generic last word is dropped only when the words before it hold this many letters. Fitted on
    seeds 101-110."""
    key_max_spellings: int = _field(32, "at-least-one")
    """Most spellings of a key tried (synonyms multiply them). Fitted on seeds 101-110."""
    stem_min_chars: int = _field(4, "at-least-one")
    """A question word is stemmed ("issued": "issu") only when this many letters remain. Fitted on seeds
    101-110."""

    # --- fields: a value next to its key --------------------------------------------------------------
    same_line_overlap: float = _field(0.5, "fraction")
    """Two boxes share a line when they overlap across this fraction of the shorter one's height. Fitted on
    seeds 101-110."""
    column_overlap: float = _field(0.3, "fraction")
    """Two boxes share a column when they overlap across this fraction of the narrower one's width. Fitted on
    seeds 101-110."""
    right_of_slack: float = _field(0.5, "non-negative")
    """A value right of its key may start this far before the key's end. Fitted on seeds 101-110."""
    line_height_ratio: float = _field(2.5, "at-least-one")
    """A value on its key's line is at most this many times taller or shorter than the key. Fitted on seeds
    101-110."""
    below_top: float = _field(0.5, "non-negative")
    """A value under its key starts at least this far below the key's top. Fitted on seeds 101-110."""
    below_centre: float = _field(0.4, "non-negative")
    """... and its centre lies at least this far below the key's centre. Fitted on seeds 101-110."""
    below_reach: float = _field(1.5, "non-negative")
    """... and it starts at most this far below the key's bottom. Fitted on seeds 101-110."""
    below_indent: float = _field(1.0, "non-negative")
    """... and it shares the key's column or starts within this of the key's left edge. Fitted on seeds
    101-110."""
    below_penalty: float = _field(0.5, "non-negative")
    """Distance (line heights) added to a value under its key when ranking it against values beside it.
    Fitted on seeds 101-110."""
    above_slack: float = _field(0.3, "non-negative")
    """A bar's value over its label ends at most this far below the label's top. Fitted on seeds 101-110."""
    label_height_min: float = _field(0.6, "non-negative")
    """Another label of the same kind is at least this many times a label's height... Fitted on seeds
    101-110."""
    label_height_max: float = _field(1.6, "at-least-one")
    """... and at most this many times. Fitted on seeds 101-110."""
    bar_row_overlap: float = _field(0.6, "fraction")
    """Bar labels side by side (vertical bars) overlap across this fraction of their height. Fitted on seeds
    101-110."""
    bar_row_reach: float = _field(15.0, "positive")
    """... and lie within this many line heights of each other. Fitted on seeds 101-110."""
    bar_column_reach: float = _field(6.0, "positive")
    """Bar labels stacked in a column (horizontal bars) lie within this many line heights. Fitted on seeds
    101-110."""
    colon_gap: float = _field(6.0, "non-negative")
    """A "1" or "l" glued to a key is its misread colon when a value follows within this many line heights.
    Fitted on seeds 101-110."""
    right_reach: float = _field(80.0, "positive")
    """Farthest a field's value lies right of its key. Fitted on seeds 101-110."""
    right_candidates: int = _field(2, "at-least-one")
    """How many boxes right of a key are weighed as its value. Fitted on seeds 101-110."""
    key_candidates: int = _field(4, "at-least-one")
    """How many of the best key matches (rows, for a cell) are tried. Fitted on seeds 101-110."""
    key_tie: float = _field(0.1, "non-negative")
    """Key matches within this score of the best are about as good: the value that fits the question wins.
    Fitted on seeds 101-110."""
    word_min_chars: int = _field(3, "at-least-one")
    """Content words of the question looked for on their own have at least this many letters. Fitted on
    seeds 101-110."""
    word_floor: float = _field(0.8, "non-negative")
    """Lowest match score of a content word. Fitted on seeds 101-110."""
    words_min_chars: int = _field(4, "at-least-one")
    """A box holding content words is a key when the words found hold at least this many letters. Fitted on
    seeds 101-110."""
    words_score: float = _field(0.75, "non-negative")
    """The match score given to a key found by its content words. Fitted on seeds 101-110."""
    next_to_width: float = _field(6.0, "non-negative")
    """Where a key's unread value should be: this many line heights right of it (or the key's width)...
    Fitted on seeds 101-110."""
    next_to_depth: float = _field(1.2, "non-negative")
    """... and this many under it. Fitted on seeds 101-110."""

    # --- tables ---------------------------------------------------------------------------------------
    word_gap: float = _field(0.6, "non-negative")
    """Tokens of one cell are at most this many line heights apart. Fitted on seeds 101-110."""
    header_min_rise: float = _field(0.5, "non-negative")
    """A column's header lies at least this far above the row... Fitted on seeds 101-110."""
    header_max_rise: float = _field(30.0, "positive")
    """... and at most this far. Fitted on seeds 101-110."""
    header_slack: float = _field(0.5, "non-negative")
    """A column's header may start this far before the row label's end... Fitted on seeds 101-110."""
    header_reach: float = _field(60.0, "positive")
    """... and at most this far after it. Fitted on seeds 101-110."""
    column_lead: float = _field(0.5, "non-negative")
    """A column starts this far before its header. Fitted on seeds 101-110."""
    column_gap: float = _field(0.2, "non-negative")
    """A column ends this far before the next header. Fitted on seeds 101-110."""
    column_default_width: float = _field(6.0, "positive")
    """The last column runs this far past its header's end. Fitted on seeds 101-110."""
    row_reach: float = _field(4.0, "non-negative")
    """A row runs on to text at most this far past the last box of it. Fitted on seeds 101-110."""
    block_word_gap: float = _field(4.0, "non-negative")
    """Boxes of one line in a block are at most this many line heights apart. Fitted on seeds 101-110."""
    block_shared: float = _field(0.5, "fraction")
    """Lines of one block share this fraction of the narrower one's width. Fitted on seeds 101-110."""
    block_pairing: float = _field(2 / 3, "fraction")
    """A column of amounts joins a block of labels when this share of the smaller one's lines pair up.
    Fitted on seeds 101-110."""
    block_min_pairs: int = _field(2, "at-least-one")
    """... and the smaller one has at least this many lines. Fitted on seeds 101-110."""
    table_min_lines: int = _field(3, "at-least-one")
    """A block of small text may be a table when it has this many lines. Fitted on seeds 101-110."""
    header_lines: int = _field(2, "at-least-one")
    """How many first lines of a block may hold its column header. Fitted on seeds 101-110."""

    # --- bar charts -----------------------------------------------------------------------------------
    bar_grey: int = _field(215, "grey")
    """Darkest grey a page or panel has (bars are darker). Fitted on seeds 101-110."""
    bar_open: int = _field(3, "at-least-one")
    """Side of the opening that removes text strokes before bars are looked for. Fitted on seeds 101-110."""
    bar_min_side: int = _field(5, "at-least-one")
    """Smallest bar side (pixels of the image searched). Fitted on seeds 101-110."""
    bar_fill: float = _field(0.92, "fraction")
    """A bar fills at least this share of its box. Fitted on seeds 101-110."""
    bar_slack: float = _field(1.5, "non-negative")
    """Pixels that bars of one chart may differ by on their baseline, thickness and pitch. Fitted on seeds
    101-110."""
    bar_min_count: int = _field(3, "at-least-one")
    """A chart has at least this many bars. Fitted on seeds 101-110."""
    chart_label_zone: float = _field(60.0, "positive")
    """Original pixels under a vertical chart's baseline where its labels are looked for (to tell whether
    they can be read); a horizontal chart's reach ``chart_side_label_zones`` times this left. Fitted on seeds
    101-110."""
    chart_side_label_zones: int = _field(8, "at-least-one")
    """See ``chart_label_zone``. Fitted on seeds 101-110."""
    chart_label_margin: float = _field(30.0, "non-negative")
    """Original pixels a vertical chart in small text reaches under its baseline (its labels). Fitted on
    seeds 101-110."""
    chart_value_margin: float = _field(40.0, "non-negative")
    """Original pixels it reaches over its bars (their values). Fitted on seeds 101-110."""
    chart_side_labels: float = _field(110.0, "non-negative")
    """Original pixels a horizontal chart in small text reaches left of its axis (its labels). Fitted on
    seeds 101-110."""
    chart_side_values: float = _field(80.0, "non-negative")
    """Original pixels it reaches right of its bars (their values). Fitted on seeds 101-110."""
    chart_side_pitch_pad: float = _field(0.25, "non-negative")
    """A horizontal chart reaches this many pitches above its first bar and below its last. Fitted on seeds
    101-110."""
    chart_tie: float = _field(0.75, "non-negative")
    """Charts whose labels are within this of the likeliest's (``key_likelihood``) are about as likely.
    Fitted on seeds 101-110."""
    chart_pair_area: float = _field(0.5, "fraction")
    """Two charts about as likely are both requested when the crops covering them hold at most this share of
    the image. Fitted on seeds 101-110."""
    small_label_gap: float = _field(4.0, "non-negative")
    """Original pixels from the axis to where a small label starts (past the axis line). Fitted on seeds
    101-110."""
    small_label_depth: float = _field(20.0, "positive")
    """Original pixels under the baseline a small label reaches (8-10 px text set 6 px under it). Fitted on
    seeds 101-110."""
    slot_side_pad: float = _field(2.0, "non-negative")
    """Pixels a vertical bar's label slot reaches past its share of the baseline. Fitted on seeds 101-110."""
    slot_side_depths: int = _field(8, "at-least-one")
    """A horizontal bar's label slot is this many label depths wide. Fitted on seeds 101-110."""
    slot_margin: float = _field(3.0, "non-negative")
    """Pixels a horizontal bar's label slot reaches above and below the bar. Fitted on seeds 101-110."""

    # --- keyword spotting -----------------------------------------------------------------------------
    ink_contrast: int = _field(40, "grey")
    """How far (grey levels) from a patch's background a pixel must be to count as ink. Fitted on seeds
    101-110."""
    kws_upsample: int = _field(2, "at-least-one")
    """How many times a patch is enlarged before the recogniser reads it. Fitted on seeds 101-110."""
    kws_none: float = _field(-9.0, "non-positive")
    """The likelihood given a patch without ink: a clear miss. Fitted on seeds 101-110."""
    kws_unknown_letter: float = _field(-20.0, "non-positive")
    """Log-probability of a letter the recogniser's alphabet lacks: a clear miss. Fitted on seeds 101-110."""
    patch_margin_x: float = _field(0.3, "non-negative")
    """A text box's patch reaches this far left and right of it. Fitted on seeds 101-110."""
    patch_margin_y: float = _field(0.2, "non-negative")
    """... and this far above and below. Fitted on seeds 101-110."""

    # --- signs ----------------------------------------------------------------------------------------
    sign_floor: float = _field(-2.5, "non-positive")
    """A sign's label found by ``key_likelihood`` scores at least this... Fitted on seeds 101-110."""
    sign_margin: float = _field(0.5, "non-negative")
    """... and beats the next likeliest short text by this. Fitted on seeds 101-110."""
    sign_chars: int = _field(14, "at-least-one")
    """Short text (a sign's) is at most this many characters read... Fitted on seeds 101-110."""
    sign_max_words: int = _field(2, "at-least-one")
    """... and this many words. Fitted on seeds 101-110."""
    sign_aspect: float = _field(10.0, "positive")
    """A sign's line is at most this many times as wide as it is tall (a longer line is a sentence's).
    Fitted on seeds 101-110."""
    sign_word_gap: float = _field(1.5, "non-negative")
    """Text of one line on a sign is at most this many line heights apart. Fitted on seeds 101-110."""
    sign_line_overlap: float = _field(0.3, "fraction")
    """A sign's next line may start this far above the previous one's bottom... Fitted on seeds 101-110."""
    sign_height_tolerance: float = _field(0.25, "fraction")
    """... and is about the main line's height, within this fraction. Fitted on seeds 101-110."""
    sign_column_overlap: float = _field(0.3, "fraction")
    """... and overlaps it across more than this fraction of the narrower one's width. Fitted on seeds
    101-110."""
    sign_box_left: float = _field(0.5, "non-negative")
    """The crop around a sign's label reaches this many label widths left of it (and a line up), one right
    and ``sign_box_below`` line heights under it. Fitted on seeds 101-110."""
    sign_box_below: float = _field(1.5, "non-negative")
    """See ``sign_box_left``. Fitted on seeds 101-110."""

    # --- the last-resort guess ------------------------------------------------------------------------
    tile_slack: float = _field(1.01, "at-least-one")
    """Regions at most this many times the smallest one's area are tiles (the centre one is the guess when
    nothing else is). Fitted on seeds 101-110."""
    near_lines: float = _field(3.0, "non-negative")
    """Two boxes within this many line heights are one place (a runner-up there adds no crop). Fitted on
    seeds 101-110."""
    guess_key_floor: float = _field(0.7, "fraction")
    """Garbled text is like the key (or one of its words) when this share of its characters agree. Fitted on
    seeds 101-110."""
    guess_key_weight: float = _field(2.0, "non-negative")
    """Weight of the squared similarity to the key in a guess's score. Fitted on seeds 101-110."""
    guess_word_min_chars: int = _field(3, "at-least-one")
    """A key's words weighed on their own have at least this many letters. Fitted on seeds 101-110."""
    guess_min_digits: int = _field(2, "at-least-one")
    """Garbled text looks like a number when it holds this many digits... Fitted on seeds 101-110."""
    guess_digits: int = _field(6, "at-least-one")
    """... the more the likelier, up to this many. Fitted on seeds 101-110."""
    guess_amount_bonus: float = _field(0.5, "non-negative")
    """Added for an amount when the question asks for one. Fitted on seeds 101-110."""
    guess_other_label_share: float = _field(0.3, "fraction")
    """Share of its value score kept by a value with another field's label. Fitted on seeds 101-110."""
    guess_label_floor: float = _field(0.5, "fraction")
    """A value's own label is another field's when it is less similar to every key than this... Fitted on
    seeds 101-110."""
    guess_line_floor: float = _field(0.7, "fraction")
    """... and its whole line is less similar than this. Fitted on seeds 101-110."""
    guess_word_floor: float = _field(0.5, "fraction")
    """A value beside words all less similar than this to the key's words is under another label. Fitted on
    seeds 101-110."""
    label_lead: float = _field(0.5, "non-negative")
    """A value's label on its line may overlap it by this many of the label's line heights... Fitted on
    seeds 101-110."""
    label_reach: float = _field(6.0, "non-negative")
    """... and end at most this far before it. Fitted on seeds 101-110."""
    label_above_overlap: float = _field(0.25, "non-negative")
    """A value's label over it may overlap it by this many line heights... Fitted on seeds 101-110."""
    label_above_reach: float = _field(1.5, "non-negative")
    """... and end at most this far above it. Fitted on seeds 101-110."""
    guess_max_regions: int = _field(2, "at-least-one")
    """The likeliest and the runner-up are both requested only in at most this many regions. Fitted on seeds
    101-110."""

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            integral = f.type == "int"
            if isinstance(value, bool) or not isinstance(value, int if integral else (int, float)):
                kind = "an integer" if integral else "a number"
                raise ConfigError(f"ReaderConfig: {f.name} must be {kind}, got {value!r}")
            if not math.isfinite(value):
                raise ConfigError(f"ReaderConfig: {f.name} must be finite, got {value!r}")
            allowed, ok = _CHECKS[f.metadata["check"]]
            if not ok(value):
                raise ConfigError(f"ReaderConfig: {f.name} must be {allowed}, got {value!r}")
            if not integral:
                object.__setattr__(self, f.name, float(value))


#: The reader's fitted defaults.
DEFAULT_CONFIG = ReaderConfig()

#: The default of :attr:`ReaderConfig.min_text_px`.
DEFAULT_MIN_TEXT_PX: float = DEFAULT_CONFIG.min_text_px

#: The default of :attr:`ReaderConfig.min_confidence`.
DEFAULT_MIN_CONFIDENCE: float = DEFAULT_CONFIG.min_confidence
