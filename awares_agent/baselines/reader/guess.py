"""The last-resort crop guess: which region holds the answer, from text too small to read.

When neither the key nor the value can be read, and no table, chart or sign locates it, the reader still
has the view's garbled readings of small text. :func:`likeliest` scores each by how much it looks like the
key and like the value asked for, and requests the cheapest crop covering the best (and the runner-up's,
when it is about as likely).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from awares_agent.baselines.reader.config import ReaderConfig
from awares_agent.baselines.reader.geometry import near
from awares_agent.baselines.reader.keys import GENERIC_TAIL, similarity
from awares_agent.baselines.reader.ocr import TextBox
from awares_agent.baselines.reader.questions import Query
from awares_agent.baselines.reader.text import DIGIT_RE, MONEY_RE, has_word, is_sentence
from awares_agent.boxes import Box, clip, contains, h_overlap, v_overlap
from awares_agent.tools.box_mapping import crops_covering
from awares_agent.tools.crop_sets import ALL, CropSet

__all__ = ["likeliest"]


def likeliest(
    query: Query,
    hard: Sequence[TextBox],
    width: int,
    height: int,
    crop_set: CropSet,
    config: ReaderConfig,
    context: Sequence[TextBox] = (),
) -> list[str]:
    """A guess from text too small to read: the crop covering the hard-to-read text likeliest to be the key
    or the value.

    Each box scores its similarity to the key (squared, weighted by ``guess_key_weight``; only when
    ``guess_key_floor`` of the characters agree), plus how much it looks like the value asked for: digits
    (up to ``guess_digits``), an amount when the question asks for one; a value printed beside a word unlike
    the key (another sign's or field's label) counts ``guess_other_label_share`` of that. The cheapest crop
    covering the best box (with a line of margin) is requested; when a box elsewhere scores nearly as high
    (``ambiguity``), its crop too, if the two requests come to at most ``guess_max_regions`` regions. With
    nothing to go on, the centre (or everything).

    Args:
        query: the parsed question.
        hard: the view's text too small to read, in original pixels.
        width: the original's width.
        height: the original's height.
        crop_set: the agent's crop set.
        config: the reader's thresholds.
        context: all the text of the view (it tells which label a value has).

    Returns:
        The region ids to request, in the crop set's order when there are two.
    """
    cfg = config
    regions = [r for r in crop_set.regions(width, height) if r.id != ALL]
    smallest = min(r.width * r.height for r in regions)
    tiles = [r for r in regions if r.width * r.height <= smallest * cfg.tile_slack]
    centre = [r.id for r in tiles if r.name == "center"] or [ALL]
    keys = [k for k in (query.key, query.column) if k]

    def key_like(b: TextBox) -> float:
        low = b.text.lower()
        sim = max(
            (
                similarity(k, b.text, cfg)
                for k in keys
                # Only inside a longer word ("total" in "SUBTOTAL") the key is another label.
                if not (k.lower() in low and not re.search(rf"(?<![a-z]){re.escape(k.lower())}", low))
            ),
            default=0.0,
        )
        if sim >= cfg.guess_key_floor:
            return cfg.guess_key_weight * sim * sim
        # One distinctive word of a longer key ("Dat" of "Issue Date"), for its share of the key.
        key_chars = sum(len(w) for k in keys for w in k.split()) or 1
        parts = (
            (len(w), similarity(w, t, cfg))
            for k in keys
            for w in k.split()
            if len(w) >= cfg.guess_word_min_chars and w not in GENERIC_TAIL and len(k.split()) > 1
            for t in re.findall(r"[A-Za-z]{3,}", b.text)
        )
        return max(
            (n / key_chars * cfg.guess_key_weight * ws * ws for n, ws in parts if ws >= cfg.guess_key_floor),
            default=0.0,
        )

    def labels_of(b: TextBox) -> list[TextBox]:
        """Words right before ``b`` on its line, or right over it: its label, if it is a field's value."""
        return [
            k
            for k in context
            if k is not b
            and has_word(k.text)
            and not is_sentence(k.text, cfg)
            and (
                (
                    v_overlap(k.box, b.box) >= cfg.same_line_overlap
                    and -cfg.label_lead * k.height <= b.box[0] - k.box[2] <= cfg.label_reach * k.height
                )
                or (
                    h_overlap(k.box, b.box) >= cfg.column_overlap
                    and -cfg.label_above_overlap * k.height
                    <= b.box[1] - k.box[3]
                    <= cfg.label_above_reach * k.height
                )
            )
        ]

    # The keys and their distinctive words ("issue" and "date" of "issue date", not "no" of "invoice no").
    distinct = [
        *keys,
        *(w for k in keys for w in k.split() if len(w) >= cfg.guess_word_min_chars and w not in GENERIC_TAIL),
    ]

    def score(b: TextBox) -> float:
        own = key_like(b)
        if is_sentence(b.text, cfg):
            return own  # a sentence, not a value
        digits = len(DIGIT_RE.findall(b.text))
        number = min(1.0, digits / cfg.guess_digits) if digits >= cfg.guess_min_digits else 0.0
        amount = cfg.guess_amount_bonus if query.money and MONEY_RE.search(b.text) else 0.0
        value = number + amount
        if value <= 0:
            return own
        words = re.findall(r"[A-Za-z]{3,}", b.text)
        label = b.text.split(":")[0] if ":" in b.text else ""
        if (
            label
            and re.search(r"[A-Za-z]{2}", label)
            and max((similarity(k, label, cfg) for k in keys), default=0.0) < cfg.guess_label_floor
            and max((similarity(k, b.text, cfg) for k in keys), default=0.0) < cfg.guess_line_floor
        ):
            # A value after its own label, another field's ("Tax ID: 10-70").
            return own + cfg.guess_other_label_share * value
        if words and all(
            max((similarity(x, w, cfg) for x in distinct), default=0.0) < cfg.guess_word_floor for w in words
        ):
            # A value under another label ("GATE 78-584" when the question is about the DOCK sign).
            return own + cfg.guess_other_label_share * value
        labels = labels_of(b)
        label_score = max((key_like(k) for k in labels), default=0.0)
        if label_score > 0:
            return own + value + label_score  # a field: its key and its value both count
        if labels:
            # Another field's value ("Contract No: K184-325" for the phone).
            return own + cfg.guess_other_label_share * value
        return own + value

    scored = sorted(((score(b), b) for b in hard), key=lambda sb: -sb[0])
    if not scored or scored[0][0] <= 0:
        return centre

    def margin(b: TextBox) -> Box:
        h = b.height
        return clip((b.box[0] - h, b.box[1] - h, b.box[2] + h, b.box[3] + h), width, height)

    best_score, best = scored[0]
    must = margin(best)
    runner = next(
        (b for sc, b in scored[1:] if sc >= cfg.ambiguity * best_score and not near(b, best, cfg.near_lines)),
        None,
    )
    one = crops_covering(must, crop_set, width, height, tolerance=cfg.crop_tolerance)
    if runner is not None:
        other = crops_covering(margin(runner), crop_set, width, height, tolerance=cfg.crop_tolerance)
        both = [r for r in dict.fromkeys([*one, *other]) if r != ALL]
        boxes = {r: crop_set.region(r, width, height).box for r in both}
        # A region inside another requested one adds nothing ("3" in "8").
        both = [r for r in both if not any(o != r and contains(boxes[o], boxes[r]) for o in both)]
        if len(both) <= cfg.guess_max_regions and ALL not in one and ALL not in other:
            return sorted(both, key=crop_set.ids.index)
    return one
