"""The demo's sample pages: generated here by the synthetic benchmark's own drawing code, never downloaded.

A page of each kind (a form, a table, a receipt, a bar chart, a street scene), some with the evidence large
enough to read in the low-resolution view and some with it too small, so that the demo shows both halves of
the decision: answer at once, or ask for a crop.
"""

from __future__ import annotations

from dataclasses import dataclass

from PIL import Image

from awares_agent.evals.synthetic.generator import iter_samples

#: The seed of the demo's pages. It is not one the offline reader was tuned on or is reported on: the pages
#: are for showing the loop, not for measuring it (``awares eval`` does that).
SAMPLE_SEED = 2026

#: How many pages the demo offers.
SAMPLE_COUNT = 10


@dataclass(frozen=True)
class SamplePage:
    """One bundled page and the question it was drawn for.

    Attributes:
        name: a short name, e.g. ``"chart-3"``.
        image: the page.
        question: the question its evidence answers.
        answer: the printed answer.
        needs_crop: whether the evidence is too small for the low-resolution view.
    """

    name: str
    image: Image.Image
    question: str
    answer: str
    needs_crop: bool

    @property
    def label(self) -> str:
        """How the page is listed: its name, size and whether it needs detail."""
        w, h = self.image.size
        detail = "small print" if self.needs_crop else "large print"
        return f"{self.name} ({w}x{h}, {detail})"


def sample_pages(n: int = SAMPLE_COUNT, *, seed: int = SAMPLE_SEED) -> list[SamplePage]:
    """Draw the demo's pages (about 20 ms each).

    Args:
        n: how many pages (the kinds take turns).
        seed: the synthetic generator's seed.
    """
    pages = []
    for sample in iter_samples(n, seed=seed):
        number = int(sample.id.rsplit("-", 1)[1])
        pages.append(
            SamplePage(
                name=f"{sample.category}-{number}",
                image=sample.image,
                question=sample.question,
                answer=sample.answers[0],
                needs_crop=bool(sample.needs_crop),
            )
        )
    return pages
