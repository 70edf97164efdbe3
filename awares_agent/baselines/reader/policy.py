"""The reader's AwaRes policy: answer from what it has read, or choose the crops that should hold the answer.

1. **Turn 1** (the view and the question): OCR the low-resolution view and parse the question into what it
   asks. If the answer is found, its text is tall enough in the view (``min_text_px``) and read confidently
   (``min_confidence``), it fits what the question asks
   (:func:`~awares_agent.baselines.reader.reading.plausible`) and it lies near its key
   (``max_trusted_gap``), answer at once. Otherwise request the cheapest crop that covers where the answer
   must be: the value's box, or next to the key when the value is missing or untrusted. When the key itself
   cannot be read, the view is read again enlarged (``enlarge``) with the detector's thresholds lowered, and
   the key is looked for loosely; failing that, what holds it is found by its shape: the bar's chart
   (:func:`~awares_agent.baselines.reader.charts.locate_chart`), the cell's table
   (:func:`~awares_agent.baselines.reader.tables.locate_table`) or the sign
   (:func:`~awares_agent.baselines.reader.signs.locate_sign`); failing that too, the crop covering the
   hard-to-read text likeliest to be the key or the value (:func:`~awares_agent.baselines.reader.guess.
   likeliest`). Confidence alone is not enough: OCR reads 6 px text wrongly with high confidence, and only
   the text's height tells that it was too small.
2. **Turn 2** (the crops): OCR the crops at full resolution placed on the original
   (:class:`~awares_agent.baselines.reader.images.ImageReader`) and answer from all of it; a value in small
   text is read again from its patch enlarged.
3. When it may not crop (no tool offered and no ``GET_CROPS`` convention, or a final instruction), it
   answers with the best it has read.
"""

from __future__ import annotations

from awares_agent.baselines.reader.answers import UNKNOWN, best_guess, read
from awares_agent.baselines.reader.charts import locate_chart
from awares_agent.baselines.reader.config import ReaderConfig
from awares_agent.baselines.reader.conversation import Turn
from awares_agent.baselines.reader.guess import likeliest
from awares_agent.baselines.reader.images import ImageReader
from awares_agent.baselines.reader.ocr import TextBox
from awares_agent.baselines.reader.questions import Query, parse_question
from awares_agent.baselines.reader.reading import Reading, next_to, plausible
from awares_agent.baselines.reader.signs import locate_sign
from awares_agent.baselines.reader.tables import locate_table
from awares_agent.baselines.reader.text import is_sentence
from awares_agent.boxes import clip
from awares_agent.image_store import ImageStore
from awares_agent.tools.box_mapping import crops_covering
from awares_agent.tools.crop_sets import CropSet

__all__ = ["ReaderPolicy"]


class ReaderPolicy:
    """Decides a turn: the answer, or the region ids of the crops to request.

    Args:
        crop_set: the agent's crop set.
        config: the reader's thresholds.
    """

    def __init__(self, crop_set: CropSet, config: ReaderConfig) -> None:
        self.crop_set = crop_set
        self.config = config
        self.images = ImageReader(crop_set, config)

    def decide(self, turn: Turn, images: ImageStore) -> str | list[str]:
        """The answer (a string), or the crops to request (region ids, cheapest first as the crop set
        orders them).

        Args:
            turn: what the messages hold.
            images: the store that resolves their images.
        """
        cfg = self.config
        view = turn.view
        if view is None:
            return UNKNOWN
        query = parse_question(turn.question)
        if query.kind == "none":
            return UNKNOWN
        may_crop = not turn.crops and (turn.tool_name is not None or (turn.text_protocol and not turn.final))
        boxes, size, scale = self.images.boxes(turn, images)
        reading = read(query, boxes, cfg)
        if not may_crop:
            if reading is not None and reading.answer:
                return self.images.reread(reading, turn, images, size, scale)
            return best_guess(query, boxes, cfg)
        if reading is not None and reading.answer:
            fits = plausible(query, reading.answer, cfg)
            if self._trusted(reading) and fits and reading.gap <= cfg.max_trusted_gap:
                return reading.answer
            if not fits or reading.gap > cfg.max_trusted_gap:
                # A value of the wrong kind, or far from its key, is someone else's: look next to the key.
                reading = Reading(
                    None, [], reading.anchors, reading.score, where=next_to(reading.anchors, cfg)
                )
        hard: list[TextBox] = []
        if reading is None or reading.evidence is None:
            # The key is not legible in the view: read the view enlarged, where text too small to read
            # correctly is often still detected and spelled closely enough to say where it lies.
            view_boxes = boxes
            boxes = self.images.enlarged_boxes(view, images, scale)
            hard = [b for b in boxes if not b.legible(cfg)]
            reading = read(query, hard, cfg, loose=True)
            if reading is not None and any(is_sentence(a.text, cfg) for a in reading.anchors):
                reading = None  # garbled text matches a key somewhere in a sentence: not a label
            # What holds the unreadable key, found by its shape: the bar's chart (bars can be seen when their
            # labels cannot: always asked for whole), else the cell's table or the sign.
            where = None
            if query.kind == "bar":
                where = locate_chart(
                    query, images.get(view.image_id), scale, size, view_boxes, self.crop_set, cfg
                )
            elif reading is None or reading.evidence is None:
                if query.kind == "cell":
                    where = locate_table(
                        query, images.get(view.image_id), scale, size, hard, self.crop_set, cfg
                    )
                elif query.on_sign:
                    where = locate_sign(query, images.get(view.image_id), scale, hard, cfg)
            if where is not None:
                reading = Reading(None, [], [], 0.0, where=where)
        return self._where(query, reading, hard, boxes, size)

    def _trusted(self, reading: Reading) -> bool:
        """Whether a reading of the view can be answered from: every value box tall and confident enough."""
        return bool(reading.value_boxes) and all(
            b.source == "view" and b.legible(self.config) for b in reading.value_boxes
        )

    def _where(
        self,
        query: Query,
        reading: Reading | None,
        hard: list[TextBox],
        boxes: list[TextBox],
        size: tuple[int, int],
    ) -> list[str]:
        """The crops to request: the cheapest covering the evidence, else the likeliest region(s).

        Args:
            query: the parsed question.
            reading: where the key (and value) were found, if they were.
            hard: the view's text too small to read, guessed from when nothing was found.
            boxes: all the text of the view (it tells which label a value has).
            size: the original image's size.
        """
        width, height = size
        must = reading.evidence if reading is not None else None
        if must is not None:
            return crops_covering(
                clip(must, width, height), self.crop_set, width, height, tolerance=self.config.crop_tolerance
            )
        return likeliest(query, hard, width, height, self.crop_set, self.config, boxes)
