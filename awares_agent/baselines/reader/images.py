"""OCR of the conversation's images, placed on the original: the view scaled up, the crops at their regions.

Every text box the policy weighs is in original-image pixels. The view is read and scaled by its scale
(measured from a crop's size when one has come, else assumed); crops at full resolution are pasted at their
regions on one canvas and read together (so a line across two crops is read whole); crops the view's box
lies in replace the view's reading there. Results are cached per image (:class:`~awares_agent.backends.
reader.ocr.OcrCache`).
"""

from __future__ import annotations

import re

from PIL import Image

from awares_agent.baselines.reader.config import ReaderConfig
from awares_agent.baselines.reader.conversation import Turn
from awares_agent.baselines.reader.ocr import OcrCache, TextBox, read_text
from awares_agent.baselines.reader.reading import Reading
from awares_agent.baselines.reader.text import norm
from awares_agent.boxes import Box, union_boxes
from awares_agent.errors import ConfigError
from awares_agent.image_store import ImageStore
from awares_agent.messages import ImagePart
from awares_agent.ocr import RawBox
from awares_agent.tools.crop_sets import CropSet

__all__ = ["ImageReader"]


class ImageReader:
    """Reads a turn's images into text boxes in original-image pixels, and re-reads small values.

    Args:
        crop_set: the agent's crop set (where each crop lies).
        config: the reader's thresholds.
    """

    def __init__(self, crop_set: CropSet, config: ReaderConfig) -> None:
        self.crop_set = crop_set
        self.config = config
        self.cache = OcrCache(config.cache_size)

    def read_image(self, part: ImagePart, images: ImageStore, enlarge: float = 1.0) -> list[RawBox]:
        """OCR of a stored image (enlarged ``enlarge`` times first, with the locating thresholds), boxes in
        its own pixels; cached.

        Args:
            part: the image.
            images: the store that holds it.
            enlarge: how many times to enlarge it first (bicubic); ``1``: read as it is.
        """
        cfg = self.config
        key = (
            part.image_id
            if enlarge == 1
            else f"{part.image_id}@x{enlarge:g}@{cfg.locate_box_thresh:g},{cfg.locate_text_score:g}"
        )

        def make() -> list[RawBox]:
            image = images.get(part.image_id)
            if enlarge == 1:
                return read_text(image, cfg)
            size = (round(image.width * enlarge), round(image.height * enlarge))
            return [
                RawBox(
                    r.text,
                    r.confidence,
                    (r.box[0] / enlarge, r.box[1] / enlarge, r.box[2] / enlarge, r.box[3] / enlarge),
                    r.px / enlarge,
                )
                for r in read_text(
                    image.convert("RGB").resize(size, Image.Resampling.BICUBIC), cfg, locate=True
                )
            ]

        return self.cache.get(key, make)

    def read_stitched(self, parts: list[tuple[Box, ImagePart]], images: ImageStore) -> list[RawBox]:
        """OCR of several native-resolution crops pasted at their places on one canvas; boxes in original
        pixels.

        Read one by one, a line that runs over the edge between two crops is cut in two (a key in one crop,
        its value in the other), and the parts two crops share are read twice; on one canvas each line is
        read once and whole.

        Args:
            parts: each crop's box in the original, and the crop.
            images: the store that holds them.
        """
        key = "stitch:" + "+".join(p.image_id for _, p in parts)

        def make() -> list[RawBox]:
            x0, y0, x1, y1 = (round(v) for v in union_boxes([b for b, _ in parts]))
            canvas = Image.new("RGB", (x1 - x0, y1 - y0), "white")
            for box, part in parts:
                canvas.paste(
                    images.get(part.image_id).convert("RGB"), (round(box[0]) - x0, round(box[1]) - y0)
                )
            return [
                RawBox(
                    r.text, r.confidence, (r.box[0] + x0, r.box[1] + y0, r.box[2] + x0, r.box[3] + y0), r.px
                )
                for r in read_text(canvas, self.config)
            ]

        return self.cache.get(key, make)

    def enlarged_boxes(self, view: ImagePart, images: ImageStore, scale: float) -> list[TextBox]:
        """The view read at ``enlarge`` times its size, in original pixels (``px`` still in view pixels).

        Args:
            view: the view.
            images: the store that holds it.
            scale: the view's size relative to the original.
        """
        return [
            TextBox(r.text, r.confidence, tuple(v / scale for v in r.box), r.px, "enlarged")  # type: ignore[arg-type]
            for r in self.read_image(view, images, self.config.enlarge)
        ]

    def reread(
        self, reading: Reading, turn: Turn, images: ImageStore, size: tuple[int, int], scale: float
    ) -> str:
        """The answer, its small characters read again from the value's patch enlarged ``reread_scale`` times.

        OCR misreads digits of small text ("5,325" for "6,325") that it reads right enlarged. The re-reading
        is taken only when it has the same characters' shape (the same length, punctuation at the same
        places, whose marks are kept from the first reading: enlarged, "," and "." are confused instead) and
        about the same confidence.

        Args:
            reading: what was read (its one value box is re-read).
            turn: the conversation's images.
            images: the store that holds them.
            size: the original's size.
            scale: the view's size relative to the original.
        """
        cfg = self.config
        answer = reading.answer or ""
        if len(reading.value_boxes) != 1 or norm(reading.value_boxes[0].text)[0] != norm(answer)[0]:
            return answer
        value = reading.value_boxes[0]
        if value.px >= cfg.reread_below_px:
            return answer
        # The image the value was read in, and where the value lies in it.
        source: tuple[ImagePart, Box] | None = None
        if value.source == "crop":
            for rid, part in turn.crops:
                c = self.crop_box(rid, size)
                if c is None or abs((c[2] - c[0]) / part.width - 1) > cfg.native_tolerance:
                    continue
                if (
                    c[0] <= value.box[0]
                    and value.box[2] <= c[2]
                    and c[1] <= value.box[1]
                    and value.box[3] <= c[3]
                ):
                    source = (part, (c[0], c[1], 1.0, 1.0))
                    break
        elif turn.view is not None:
            source = (turn.view, (0.0, 0.0, scale, scale))
        if source is None:
            return answer
        part, (ox, oy, sx, sy) = source
        x0, y0, x1, y1 = (
            (value.box[0] - ox) * sx,
            (value.box[1] - oy) * sy,
            (value.box[2] - ox) * sx,
            (value.box[3] - oy) * sy,
        )
        h = y1 - y0
        mx, my = cfg.reread_margin_x, cfg.reread_margin_y
        patch = (round(x0 - mx * h), round(y0 - my * h), round(x1 + mx * h), round(y1 + my * h))

        def make() -> list[RawBox]:
            image = images.get(part.image_id).convert("RGB").crop(patch)
            big = image.resize(
                (image.width * cfg.reread_scale, image.height * cfg.reread_scale), Image.Resampling.BICUBIC
            )
            border = cfg.reread_border
            canvas = Image.new("RGB", (big.width + 2 * border, big.height + 2 * border), "white")
            canvas.paste(big, (border, border))
            return read_text(canvas, cfg)

        lines = self.cache.get(f"{part.image_id}#reread{patch}", make)
        if not lines:
            return answer
        best = max(lines, key=lambda r: (r.box[2] - r.box[0]) * (r.box[3] - r.box[1]))
        again = best.text.strip()
        shape = re.sub(r"[A-Za-z0-9]", "a", answer)
        if len(again) != len(answer) or re.sub(r"[A-Za-z0-9]", "a", again).replace(".", ",") != shape.replace(
            ".", ","
        ):
            return answer
        if best.confidence < value.confidence - cfg.reread_confidence_drop:
            return answer
        return "".join(a if not a.isalnum() else b for a, b in zip(answer, again, strict=True))

    def boxes(self, turn: Turn, images: ImageStore) -> tuple[list[TextBox], tuple[int, int], float]:
        """Every text box read so far, in original-image pixels, the original's estimated size and the view's
        scale.

        Crops replace the view where they overlap: a view box whose centre lies inside a crop is dropped.

        Args:
            turn: the conversation's images (it must have a view).
            images: the store that holds them.

        Raises:
            ValueError: the turn has no view.
        """
        cfg = self.config
        view = turn.view
        if view is None:
            raise ValueError("ImageReader.boxes() needs a turn with a view")
        scale = self.measured_scale(view, turn.crops)
        size = (max(1, round(view.width / scale)), max(1, round(view.height / scale)))
        placed: list[tuple[Box, list[TextBox]]] = []
        native: list[tuple[Box, ImagePart]] = []
        for rid, part in turn.crops:
            offset = self.crop_box(rid, size)
            if offset is None:
                continue
            sx = (offset[2] - offset[0]) / part.width
            sy = (offset[3] - offset[1]) / part.height
            if abs(sx - 1) <= cfg.native_tolerance and abs(sy - 1) <= cfg.native_tolerance:
                native.append((offset, part))
                continue
            ox, oy = offset[0], offset[1]
            read_boxes = [
                TextBox(
                    r.text,
                    r.confidence,
                    (ox + r.box[0] * sx, oy + r.box[1] * sy, ox + r.box[2] * sx, oy + r.box[3] * sy),
                    r.px,
                    "crop",
                )
                for r in self.read_image(part, images)
            ]
            placed.append((offset, read_boxes))
        if len(native) == 1:
            (offset, part), ox, oy = native[0], native[0][0][0], native[0][0][1]
            raw = [
                RawBox(
                    r.text, r.confidence, (r.box[0] + ox, r.box[1] + oy, r.box[2] + ox, r.box[3] + oy), r.px
                )
                for r in self.read_image(part, images)
            ]
        else:
            raw = self.read_stitched(native, images) if native else []
        for offset, _ in native:
            placed.append((offset, []))
        if raw:
            placed.append((native[0][0], [TextBox(r.text, r.confidence, r.box, r.px, "crop") for r in raw]))
        out: list[TextBox] = []
        for _, crop_boxes in placed:
            out += crop_boxes
        for r in self.read_image(view, images):
            box = (r.box[0] / scale, r.box[1] / scale, r.box[2] / scale, r.box[3] / scale)
            # A view box inside a crop is replaced by the crop's reading; one the crop's edge cuts is kept
            # (the crop holds only part of its line).
            slack = cfg.view_box_slack * (box[3] - box[1])
            points = [
                (x, y) for x in (box[0] + slack, box[2] - slack) for y in (box[1] + slack, box[3] - slack)
            ]
            if all(any(c[0] <= x <= c[2] and c[1] <= y <= c[3] for c, _ in placed) for x, y in points):
                continue
            out.append(TextBox(r.text, r.confidence, box, r.px, "view"))
        return out, size, scale

    def measured_scale(self, view: ImagePart, crops: list[tuple[str | None, ImagePart]]) -> float:
        """The view's scale: measured from a crop's size and region when there is one, else ``view_scale``.

        Args:
            view: the view.
            crops: the crops, with their region ids (``None``: unknown, not used).
        """
        view_scale = self.config.view_scale
        ref = (max(1, round(view.width / view_scale)), max(1, round(view.height / view_scale)))
        for rid, part in crops:
            if rid is None:
                continue
            try:
                region = self.crop_set.region(rid, *ref)
            except (KeyError, ConfigError):
                continue
            # Regions are fixed fractions of the image, so the crop's width gives the original's.
            original_width = part.width * ref[0] / max(1, region.width)
            return min(1.0, view.width / original_width)
        return view_scale

    def crop_box(self, rid: str | None, size: tuple[int, int]) -> Box | None:
        """Where a crop lies in the original, from its region id; ``None`` if it cannot be placed.

        Args:
            rid: the crop's region id (``None``: unknown).
            size: the original's size.
        """
        if rid is None:
            return None
        try:
            region = self.crop_set.region(rid, *size)
        except (KeyError, ConfigError):
            return None
        return tuple(float(v) for v in region.box)  # type: ignore[return-value]
