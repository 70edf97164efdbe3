"""How many pixels an image may have, and PIL's process-wide decompression-bomb limit kept out of the way.

PIL checks ``Image.MAX_IMAGE_PIXELS`` (a process-wide global) in ``Image.open`` and ``Image.crop``: it warns
above it and raises above twice it. Our per-call ``max_pixels`` must be the limit that applies, whether higher
or lower, so while we open or decode an image PIL's check is switched off (reference-counted, so overlapping
threads restore it only when the last one leaves). It is switched off only around header reads, which
allocate no pixels, and around decodes of images whose size we have already checked and which PIL would flag.
``warnings.catch_warnings`` is not used because it is not thread-safe.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from PIL import Image

__all__ = ["DEFAULT_MAX_IMAGE_PIXELS", "pil_limit_lifted"]

DEFAULT_MAX_IMAGE_PIXELS = 100_000_000
"""Images with more pixels than this are refused unless a larger ``max_pixels`` is passed."""

_pil_limit_lock = threading.Lock()
_pil_limit_depth = 0
_pil_limit_saved: int | None = None


@contextmanager
def pil_limit_lifted(pixels: int | None) -> Iterator[None]:
    """Switch PIL's bomb check off for the duration, if ``pixels`` would trip it.

    Args:
        pixels: the pixels of the image about to be opened, decoded or cropped; ``None``: not yet known
            (a header read), which always lifts the check.
    """
    global _pil_limit_depth, _pil_limit_saved
    with _pil_limit_lock:
        pil_limit = _pil_limit_saved if _pil_limit_depth else Image.MAX_IMAGE_PIXELS
        lift = pixels is None or (pil_limit is not None and pixels > pil_limit)
        if lift:
            if _pil_limit_depth == 0:
                _pil_limit_saved = Image.MAX_IMAGE_PIXELS
                Image.MAX_IMAGE_PIXELS = None
            _pil_limit_depth += 1
    try:
        yield
    finally:
        if lift:
            with _pil_limit_lock:
                _pil_limit_depth -= 1
                if _pil_limit_depth == 0:
                    Image.MAX_IMAGE_PIXELS = _pil_limit_saved
