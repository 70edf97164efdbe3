"""The one evaluation-sample schema: every benchmark, the synthetic one and users' own data map onto it.

A sample is an image, a question, the accepted answers and, when known, the box of the evidence in original
pixels and whether answering needs high resolution. On disk it is a `datasets` dataset (``save_to_disk``)
with :data:`FEATURES`, or a JSONL file with one object per line whose ``image`` is a path relative to the
file (see :mod:`awares_agent.evals.dataset`).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

#: Metric names understood by :func:`awares_agent.evals.metrics.score`.
METRICS = ("exact", "anls", "relaxed", "ocrbench", "yes_no", "choice")


class EvalSample(BaseModel):
    """One evaluation question.

    Attributes:
        id: unique within its dataset (a string; numbers are converted).
        image: the image: a path, encoded bytes or a PIL image (anything the agent accepts).
        question: the question, including any multiple-choice options.
        answers: accepted answers (at least one).
        bbox: ``[x0, y0, x1, y1]`` of the evidence in original-image pixels, if known.
        needs_hr: whether answering needs more than the low-resolution view, if known.
        metric: how answers are scored (one of :data:`METRICS`); the benchmark's standard metric.
        category: an optional grouping for per-category results (``"receipt"``, ``"chart"``...).
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    id: str
    image: Any = Field(repr=False)
    question: str
    answers: list[str] = Field(min_length=1)
    bbox: tuple[float, float, float, float] | None = None
    needs_hr: bool | None = None
    metric: str = "exact"
    category: str | None = None

    @field_validator("id", mode="before")
    @classmethod
    def _id_to_str(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int) else value

    @field_validator("answers", mode="before")
    @classmethod
    def _answers_to_list(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, value: str) -> str:
        if value not in METRICS:
            raise ValueError(f"unknown metric {value!r}; use one of {', '.join(METRICS)}")
        return value


def features() -> Any:
    """The `datasets` features of a saved evaluation dataset (images stored in the Arrow file)."""
    from datasets import Features, Image, Sequence, Value

    return Features(
        {
            "id": Value("string"),
            "image": Image(),
            "question": Value("string"),
            "answers": Sequence(Value("string")),
            "bbox": Sequence(Value("float32"), length=4),
            "needs_hr": Value("bool"),
            "metric": Value("string"),
            "category": Value("string"),
        }
    )
