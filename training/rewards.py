"""The AwaRes reward: answer quality minus an asymmetric cost for crops, ``R = R_ans - C_tool``.

* ``R_ans`` compares the predicted answer with the accepted ones (best over them), by one of:
  :class:`LexicalSimilarity` (offline, the default: ANLS's normalised edit similarity with no threshold),
  :class:`EmbeddingSimilarity` (cosine similarity of sentence-transformers embeddings, the paper's choice,
  from a local model directory), :class:`MetricSimilarity` (the sample's own benchmark metric: right or wrong
  for a closed answer set, where partial credit for spelling invites blends of two answers), or
  :class:`JudgeSimilarity` (a judge of ``awares collect``: its verdict's score).
* ``C_tool`` (:class:`CropCost`): ``alpha_miss`` when crops were needed (the sample's label) and none were
  requested; ``alpha_use + crop_cost * |C|`` whenever ``|C| > 0`` crops were requested; 0 for a direct answer
  where none were needed. Missing a needed crop costs more than an unneeded request. The paper prints no
  values; the defaults are this project's starting point (alpha_miss 0.5, alpha_use 0.1, lambda 0.05).

:func:`awares_reward` returns the parts (:class:`RewardParts`), so a trainer can log each one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from awares_agent.errors import ConfigError
from awares_agent.evals.metrics import anls, score

__all__ = [
    "AnswerSimilarity",
    "CropCost",
    "EmbeddingSimilarity",
    "JudgeSimilarity",
    "LexicalSimilarity",
    "MetricSimilarity",
    "RewardParts",
    "awares_reward",
    "make_similarity",
]


class AnswerSimilarity(Protocol):
    """How close a predicted answer is to the accepted ones, in ``[0, 1]`` (``None`` or empty: 0).

    ``metric`` is the sample's benchmark metric, for the similarities that score by it.
    """

    name: str

    def __call__(
        self, prediction: str | None, answers: Sequence[str], *, question: str = "", metric: str | None = None
    ) -> float: ...


class LexicalSimilarity:
    """ANLS's similarity without its threshold: ``1 - edit distance / longer length``, best over answers.

    Offline and deterministic; a near miss ("B7" for "B7.") earns most of the reward, unlike exact match.
    """

    name = "lexical"

    def __call__(
        self, prediction: str | None, answers: Sequence[str], *, question: str = "", metric: str | None = None
    ) -> float:
        return anls(prediction, answers, threshold=0.0)


class EmbeddingSimilarity:
    """Cosine similarity of sentence embeddings (a local sentence-transformers model), best over answers.

    Negative cosines count as 0. The model is loaded once, offline, from ``path`` (a directory saved by
    ``SentenceTransformer.save``, e.g. all-MiniLM-L6-v2 downloaded beforehand).

    Raises:
        ConfigError: sentence-transformers is not installed, or ``path`` is not a model directory.
    """

    name = "embedding"

    def __init__(self, path: str | Path, *, device: str = "cpu") -> None:
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:
            raise ConfigError(
                "--similarity st:PATH needs sentence-transformers (pip install sentence-transformers)"
            ) from exc
        folder = Path(path).expanduser()
        if not folder.is_dir():
            raise ConfigError(f"sentence-transformers model {str(path)!r} is not a directory")
        try:
            self.model = SentenceTransformer(str(folder), device=device, local_files_only=True)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot load a sentence-transformers model from {str(path)!r}: {exc}") from exc
        self.name = f"embedding:{folder.name}"

    def __call__(
        self, prediction: str | None, answers: Sequence[str], *, question: str = "", metric: str | None = None
    ) -> float:
        if not prediction or not prediction.strip() or not answers:
            return 0.0
        vectors = self.model.encode([prediction, *answers], normalize_embeddings=True)
        best = max(float(vectors[0] @ v) for v in vectors[1:])
        return max(0.0, min(1.0, best)) if math.isfinite(best) else 0.0


class JudgeSimilarity:
    """A judge of ``awares collect`` (metric or LLM) as the answer reward: its verdict's score.

    Args:
        judge: a :class:`~awares_agent.collect.judges.Judge`.
        metric: the benchmark metric passed to the judge.
    """

    def __init__(self, judge: Any, *, metric: str = "exact") -> None:
        self.judge, self.metric = judge, metric
        self.name = f"judge:{judge.name}"

    def __call__(
        self, prediction: str | None, answers: Sequence[str], *, question: str = "", metric: str | None = None
    ) -> float:
        return float(self.judge.judge(question, prediction, list(answers), metric=self.metric).score)


class MetricSimilarity:
    """The sample's own benchmark metric (:func:`~awares_agent.evals.metrics.score`) as the answer reward.

    For a closed answer set ("horizontal" / "vertical") the metric is right or wrong: a lexical similarity
    pays a blend such as "vertizontal" more than an honest guess, and GRPO finds it.

    Args:
        metric: a metric of :data:`~awares_agent.evals.schema.METRICS` to use for every sample (default:
            each sample's own, ``exact`` where none is given).
    """

    def __init__(self, metric: str | None = None) -> None:
        self.metric = metric
        self.name = f"metric:{metric}" if metric else "metric"

    def __call__(
        self, prediction: str | None, answers: Sequence[str], *, question: str = "", metric: str | None = None
    ) -> float:
        return float(score(self.metric or metric or "exact", prediction, answers, question=question))


def make_similarity(spec: str) -> AnswerSimilarity:
    """``lexical``, ``metric`` (each sample's benchmark metric) or ``st:PATH`` (a local sentence-transformers
    model) as an :class:`AnswerSimilarity`.

    Raises:
        ConfigError: an unknown spec.
    """
    if spec == "lexical":
        return LexicalSimilarity()
    if spec == "metric":
        return MetricSimilarity()
    if spec.startswith("st:") and spec[3:]:
        return EmbeddingSimilarity(spec[3:])
    raise ConfigError(f"unknown answer similarity {spec!r}; use lexical, metric or st:PATH")


@dataclass(frozen=True)
class CropCost:
    """The asymmetric crop cost ``C_tool``.

    Attributes:
        alpha_miss: the cost of answering without crops where they were needed.
        alpha_use: the fixed cost of a crop request.
        crop_cost: the cost of each crop requested (the paper's lambda).
    """

    alpha_miss: float = 0.5
    alpha_use: float = 0.1
    crop_cost: float = 0.05

    def __post_init__(self) -> None:
        for name in ("alpha_miss", "alpha_use", "crop_cost"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ConfigError(f"{name} must be a finite number >= 0, got {value}")

    def __call__(self, *, needs_crop: bool | None, crops: int) -> float:
        """The cost of a rollout that requested ``crops`` crops on a sample labelled ``needs_crop``."""
        if crops > 0:
            return self.alpha_use + self.crop_cost * crops
        return self.alpha_miss if needs_crop else 0.0


@dataclass(frozen=True)
class RewardParts:
    """One rollout's reward and its parts: ``total = answer - cost``."""

    answer: float
    cost: float

    @property
    def total(self) -> float:
        return self.answer - self.cost


def awares_reward(
    prediction: str | None,
    answers: Sequence[str],
    *,
    needs_crop: bool | None,
    crops: int,
    similarity: AnswerSimilarity | None = None,
    cost: CropCost | None = None,
    question: str = "",
    metric: str | None = None,
) -> RewardParts:
    """``R = R_ans - C_tool`` for one rollout.

    Args:
        prediction: the rollout's final answer (``None``: it gave none).
        answers: the accepted answers.
        needs_crop: the sample's label (``None``: unknown, so a direct answer costs nothing).
        crops: how many crops the rollout requested in all.
        similarity: ``R_ans`` (default: :class:`LexicalSimilarity`).
        cost: ``C_tool`` (default: :class:`CropCost` defaults).
        question: the question, for a judge.
        metric: the sample's benchmark metric, for :class:`MetricSimilarity`.
    """
    similarity = similarity or LexicalSimilarity()
    cost = cost or CropCost()
    return RewardParts(
        answer=similarity(prediction, answers, question=question, metric=metric),
        cost=cost(needs_crop=needs_crop, crops=crops),
    )
