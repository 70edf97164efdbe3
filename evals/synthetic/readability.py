"""Checking the synthetic labels with the offline OCR reader: is the answer read where the label says?

A ``needs_crop=False`` sample should be read in the full image and in the half-size view; a
``needs_crop=True`` one in the full image and in the crop that holds its evidence, but not in the half-size
view.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from PIL import Image

from awares_agent.boxes import contains
from awares_agent.evals.schema import EvalSample
from awares_agent.evals.synthetic.vocabulary import normalize
from awares_agent.images import ViewSpec
from awares_agent.tools.crop_sets import CropSet, PaperCropSet, Region


@dataclass(frozen=True)
class Readability:
    """What the OCR reader found for one sample.

    Attributes:
        id: the sample id.
        category: the sample's category.
        needs_crop: the sample's label.
        full: the answer was read in the full-resolution image.
        half: the answer was read in the half-size (LANCZOS) view.
        crop: the answer was read in the smallest crop-set region holding the bbox (None: not checked).
        region: that region's name.
    """

    id: str
    category: str | None
    needs_crop: bool
    full: bool
    half: bool
    crop: bool | None
    region: str

    @property
    def ok(self) -> bool:
        """Whether the sample behaves as labelled: read in both views, or only in the full image and crop."""
        if self.needs_crop:
            return self.full and not self.half and self.crop is not False
        return self.full and self.half


@dataclass
class ReadabilityReport:
    """The results of :func:`verify_readability`.

    Attributes:
        results: one per sample, in order.
    """

    results: list[Readability]

    def fraction(self, needs_crop: bool | None = None, attr: str = "ok") -> float:
        """The fraction of samples (all, or those with the given label) for which ``attr`` is true.

        Args:
            needs_crop: only the samples with this label (None: all).
            attr: the :class:`Readability` attribute counted (``"ok"``, ``"full"``, ``"half"``, ``"crop"``).
        """
        rs = [r for r in self.results if needs_crop is None or r.needs_crop == needs_crop]
        return sum(bool(getattr(r, attr)) for r in rs) / len(rs) if rs else float("nan")

    def summary(self) -> str:
        """A few lines of figures: overall and per label, per category."""
        lines = [f"{len(self.results)} samples: {self.fraction():.1%} behave as labelled"]
        for label in (False, True):
            rs = [r for r in self.results if r.needs_crop == label]
            if not rs:
                continue
            part = f"  needs_crop={label} ({len(rs)}): ok {self.fraction(label):.1%}, read full "
            part += f"{self.fraction(label, 'full'):.1%}, read half {self.fraction(label, 'half'):.1%}"
            if label:
                part += f", read crop {sum(r.crop is True for r in rs) / len(rs):.1%}"
            lines.append(part)
        for cat in sorted({r.category or "" for r in self.results}):
            rs = [r for r in self.results if (r.category or "") == cat]
            lines.append(f"  {cat}: {sum(r.ok for r in rs)}/{len(rs)} ok")
        return "\n".join(lines)


def ocr_text(image: Image.Image, ocr: Any, *, use_cls: bool = False) -> str:
    """All text ``ocr`` (a ``RapidOCR``) reads in ``image``, normalized (no whitespace, case folded).

    Args:
        image: the image.
        ocr: a ``rapidocr_onnxruntime.RapidOCR``.
        use_cls: run RapidOCR's 0/180-degree line classifier; off by default, since these images are upright
            and on text of 8-9 px it sometimes turns a correctly read line upside down ("D-569" -> "695-0").
    """
    result, _ = ocr(image.convert("RGB"), use_cls=use_cls)
    return "|".join(normalize(item[1]) for item in result or [])


def holding_region(bbox: Sequence[float], width: int, height: int, crop_set: CropSet | None = None) -> Region:
    """The smallest single region of ``crop_set`` (``all`` included) that holds ``bbox`` whole.

    This is the one crop the readability check OCRs. It is not
    :func:`~awares_agent.tools.box_mapping.crops_covering`, the oracle's choice, on purpose: that rule may
    answer with a pair of regions and lets the box stick out by its tolerance, while the check needs one
    image holding every pixel of the evidence.

    Args:
        bbox: ``(x0, y0, x1, y1)`` inside the image.
        width: the image's width.
        height: the image's height.
        crop_set: the crop set (default: the paper's).
    """
    regions = (crop_set or PaperCropSet()).regions(width, height)
    holding = [r for r in regions if contains(r.box, bbox)]
    return min(holding, key=lambda r: r.width * r.height)  # "all" always holds it


def verify_readability(
    samples: Iterable[EvalSample],
    *,
    ocr: Any = None,
    check_crop: bool = True,
    max_side_len: int = 4096,
    use_cls: bool = False,
    progress: Callable[[Readability], None] | None = None,
) -> ReadabilityReport:
    """Check each sample's ``needs_crop`` label with the offline OCR reader (``rapidocr-onnxruntime``).

    The answer counts as read in an image when the OCR text, whitespace removed and case folded, contains
    the answer so normalized. A ``needs_crop=False`` sample behaves as labelled when its answer is read in
    both the full image and the half-size view (``awares_agent.images.ViewSpec()``, LANCZOS); a
    ``needs_crop=True`` sample when it is read in the full image and in the smallest crop-set region holding
    its evidence, but not in the half-size view.

    Args:
        samples: samples with PIL images, answers and (for the crop) bboxes.
        ocr: a ``RapidOCR`` instance (default: one with ``max_side_len``).
        check_crop: also OCR the crop of ``needs_crop=True`` samples.
        max_side_len: the OCR's input limit; the default 4096 reads these images at full resolution
            (RapidOCR's own default, 2000, would shrink the widest ones).
        use_cls: run RapidOCR's angle classifier (see :func:`ocr_text`).
        progress: called with each sample's result as it is done.

    Returns:
        the per-sample results and summary figures.
    """
    if ocr is None:
        from rapidocr_onnxruntime import RapidOCR

        ocr = RapidOCR(max_side_len=max_side_len)
    spec = ViewSpec()
    results = []
    for sample in samples:
        img = sample.image if isinstance(sample.image, Image.Image) else Image.open(sample.image)
        img = img.convert("RGB")
        answer = normalize(sample.answers[0])
        w, h = img.size
        full = answer in ocr_text(img, ocr, use_cls=use_cls)
        half = answer in ocr_text(img.resize(spec.size(w, h), Image.Resampling.LANCZOS), ocr, use_cls=use_cls)
        bbox = sample.evidence or (0, 0, w, h)
        region = holding_region(bbox, w, h)
        crop = None
        if check_crop and sample.needs_crop:
            crop = answer in ocr_text(img.crop(region.box), ocr, use_cls=use_cls)
        needed = bool(sample.needs_crop)
        result = Readability(sample.id, sample.category, needed, full, half, crop, region.name)
        results.append(result)
        if progress is not None:
            progress(result)
    return ReadabilityReport(results)
