"""The one evaluation-sample schema: every benchmark, the synthetic one and users' own data map onto it.

A sample is an image, a question, the accepted answers and, when known, the box of the evidence in original
pixels and whether answering needs crops (more than the low-resolution view). On disk it is a `datasets`
dataset (``save_to_disk``) with :data:`FEATURES`, or a JSONL file with one object per line whose ``image`` is
a path relative to the file (see :mod:`awares_agent.evals.dataset`).

:class:`EvalSample` is where a sample is checked, whatever it comes from (a benchmark's loader, a JSONL
line, a saved dataset's row, Python code): a value it accepts is usable, and a bad one is refused with a
message that names the field as the input spelled it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from awares_agent.boxes import Box

#: Metric names understood by :func:`awares_agent.evals.metrics.score`.
METRICS = ("exact", "anls", "relaxed", "ocrbench", "yes_no", "choice")

#: The fields a sample cannot do without (``None`` counts as missing).
REQUIRED_FIELDS = ("id", "image", "question", "answers")

#: Keys of sample files written before the labels had one name across awares, read as the field they became.
RENAMED_KEYS = {"bbox": "evidence", "needs_hr": "needs_crop"}


def _evidence(value: Any, key: str = "evidence") -> Box | None:
    """``value`` as an evidence box, or a ``ValueError`` naming ``key`` (the input's own spelling)."""
    if value is None:
        return None
    if isinstance(value, str | bytes) or not isinstance(value, Sequence) or len(value) != 4:
        raise ValueError(f"{key} must be [x0, y0, x1, y1], got {value!r}")
    if any(isinstance(v, bool) or not isinstance(v, int | float) for v in value):
        raise ValueError(f"{key} must hold 4 numbers, got {value!r}")
    x0, y0, x1, y1 = (float(v) for v in value)
    if not all(math.isfinite(v) for v in (x0, y0, x1, y1)):
        raise ValueError(f"{key} must hold finite numbers, got {value!r}")
    if min(x0, y0) < 0 or x1 <= x0 or y1 <= y0:
        raise ValueError(f"{key} must satisfy 0 <= x0 < x1 and 0 <= y0 < y1 (original pixels), got {value!r}")
    return (x0, y0, x1, y1)


def _needs_crop(value: Any, key: str = "needs_crop") -> bool | None:
    if value is not None and not isinstance(value, bool):
        raise ValueError(f"{key} must be true, false or null, got {value!r}")
    return value


_RENAMED_CHECKS = {"evidence": _evidence, "needs_crop": _needs_crop}


class EvalSample(BaseModel):
    """One evaluation question.

    Attributes:
        id: unique within its dataset (a string; an integer is converted).
        image: the image: a path, encoded bytes or a PIL image (anything the agent accepts).
        question: the question, including any multiple-choice options.
        answers: accepted answers (at least one that is not blank; one answer may be given as a string,
            numbers are converted).
        evidence: ``[x0, y0, x1, y1]`` of the evidence in original-image pixels, if known (read from
            ``bbox`` too, its name in older files).
        needs_crop: whether answering needs more than the low-resolution view, if known (read from
            ``needs_hr`` too, its name in older files).
        metric: how answers are scored (one of :data:`METRICS`, ``"exact"`` when not given); the benchmark's
            standard metric.
        category: an optional grouping for per-category results (``"receipt"``, ``"chart"``...).

    Raises:
        pydantic.ValidationError: (a ``ValueError``) a required field missing, or a value that cannot be
            used; the message names the field.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    id: str
    image: Any = Field(repr=False)
    question: str
    answers: list[str] = Field(min_length=1)
    evidence: Box | None = None
    needs_crop: bool | None = None
    metric: str = "exact"
    category: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _input(cls, data: Any) -> Any:
        """Required fields present, and the older keys read as the fields they became."""
        if not isinstance(data, Mapping):
            return data
        missing = [key for key in REQUIRED_FIELDS if data.get(key) is None]
        if missing:
            raise ValueError(f"missing required field(s): {', '.join(missing)}")
        data = dict(data)
        for old, new in RENAMED_KEYS.items():
            if old in data:
                value = _RENAMED_CHECKS[new](data.pop(old), old)
                if data.get(new) is None:
                    data[new] = value
        return data

    @field_validator("id", mode="before")
    @classmethod
    def _id(cls, value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, str | int) or str(value) == "":
            raise ValueError(f"id must be a non-empty string or an integer, got {value!r}")
        return str(value)

    @field_validator("question", mode="before")
    @classmethod
    def _question(cls, value: Any) -> Any:
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"question must be a non-empty string, got {value!r}")
        return value

    @field_validator("answers", mode="before")
    @classmethod
    def _answers(cls, value: Any) -> list[str]:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, Sequence) or isinstance(value, bytes):
            raise ValueError(f"answers must be a list of strings or a string, got {type(value).__name__}")
        answers = []
        for answer in value:
            if isinstance(answer, bool) or not isinstance(answer, str | int | float):
                raise ValueError(f"answers must be strings, got {answer!r}")
            answers.append(str(answer))
        if not any(answer.strip() for answer in answers):
            raise ValueError("answers is empty")
        return answers

    @field_validator("evidence", mode="before")
    @classmethod
    def _evidence(cls, value: Any) -> Box | None:
        return _evidence(value)

    @field_validator("needs_crop", mode="before")
    @classmethod
    def _needs_crop(cls, value: Any) -> bool | None:
        return _needs_crop(value)

    @field_validator("metric", mode="before")
    @classmethod
    def _metric(cls, value: Any) -> Any:
        if value is None or value == "":
            return "exact"
        if value not in METRICS:
            raise ValueError(f"unknown metric {value!r}; use one of {', '.join(METRICS)}")
        return value

    @field_validator("category", mode="before")
    @classmethod
    def _category(cls, value: Any) -> Any:
        if value is None or value == "":
            return None
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise ValueError(f"category must be a string, got {value!r}")
        return str(value)


def features() -> Any:
    """The `datasets` features of a saved evaluation dataset (images stored in the Arrow file)."""
    from datasets import Features, Image, Sequence, Value

    return Features(
        {
            "id": Value("string"),
            "image": Image(),
            "question": Value("string"),
            "answers": Sequence(Value("string")),
            "evidence": Sequence(Value("float32"), length=4),
            "needs_crop": Value("bool"),
            "metric": Value("string"),
            "category": Value("string"),
        }
    )
