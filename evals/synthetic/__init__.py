"""A deterministic synthetic high-resolution benchmark: documents, tables, receipts, charts and scenes.

Every image carries one question whose answer is a short string printed in it (a code, a number, a date).
The evidence (the answer and the label or key next to it) is printed either LARGE, so it stays readable in
the half-size low-resolution view (``needs_crop=False``), or SMALL, so it is readable only at full
resolution or in a crop (``needs_crop=True``). Distractor text of mixed sizes fills the rest of the image,
and the evidence is spread over the whole image: its position is drawn from a seeded distribution over the
3x3 grid, inside one quadrant most of the time and straddling the centre lines otherwise.

Sizes were tuned against the offline OCR reader (``rapidocr-onnxruntime``, see :func:`verify_readability`):
it reads text down to about 4.5-5 px em, so the 6-7 px that 12-14 px text becomes at half size is still often
read. Small evidence is therefore drawn at 8 px (numbers) or 9 px (codes with letters), 4-4.5 px in the view,
in regular weights, with answers of at least four characters; large evidence at 28-44 px.

Usage::

    from awares_agent.evals.synthetic import build_synthetic, generate

    samples = generate(50, seed=0)  # list[EvalSample], PIL images in memory
    build_synthetic("data/synthetic", n=500, seed=0)  # a `datasets` dataset on disk

The package, by concept:

* :mod:`~awares_agent.evals.synthetic.fonts`: the DejaVu fonts, evidence sizes and text metrics;
* :mod:`~awares_agent.evals.synthetic.vocabulary`: words, codes, numbers, dates, money and question templates;
* :mod:`~awares_agent.evals.synthetic.layout`: drawing blocks, the page that places them, where evidence goes;
* :mod:`~awares_agent.evals.synthetic.builder`: what the page builders share; one builder per category in
  :mod:`~awares_agent.evals.synthetic.document`, ``table``, ``receipt``, ``chart`` and ``scene``;
* :mod:`~awares_agent.evals.synthetic.generator`: :func:`generate`, :func:`iter_samples` and
  :func:`build_synthetic`;
* :mod:`~awares_agent.evals.synthetic.readability`: :func:`verify_readability`, the check with the offline
  OCR.
"""

from awares_agent.boxes import Box
from awares_agent.evals.synthetic.fonts import (
    ALL_STYLES,
    DEFAULT_FONT_DIR,
    FONT_FILES,
    LARGE_PX,
    REGULAR_STYLES,
    SMALL_PX,
    Font,
    FontBook,
)
from awares_agent.evals.synthetic.generator import (
    CATEGORIES,
    DEFAULT_SIZE_RANGE,
    MIN_SIZE,
    build_synthetic,
    generate,
    iter_samples,
    to_row,
)
from awares_agent.evals.synthetic.readability import (
    Readability,
    ReadabilityReport,
    holding_region,
    ocr_text,
    verify_readability,
)

__all__ = [
    "ALL_STYLES",
    "CATEGORIES",
    "DEFAULT_FONT_DIR",
    "DEFAULT_SIZE_RANGE",
    "FONT_FILES",
    "LARGE_PX",
    "MIN_SIZE",
    "REGULAR_STYLES",
    "SMALL_PX",
    "Box",
    "Font",
    "FontBook",
    "Readability",
    "ReadabilityReport",
    "build_synthetic",
    "generate",
    "holding_region",
    "iter_samples",
    "ocr_text",
    "to_row",
    "verify_readability",
]
