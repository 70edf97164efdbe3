"""The AwaRes reward, R = R_ans - C_tool, on a table of hand cases."""

from __future__ import annotations

from pathlib import Path

import pytest

from awares_agent.collect.judges import MetricJudge
from awares_agent.errors import ConfigError
from awares_agent.training.rewards import (
    CropCost,
    JudgeSimilarity,
    LexicalSimilarity,
    MetricSimilarity,
    awares_reward,
    make_similarity,
)

# prediction, answers, needs_crop, crops requested -> (R_ans, C_tool) with the default costs
CASES = [
    ("B7", ["B7"], True, 1, 1.0, 0.1 + 0.05),  # needed, one crop, right: the best a needed sample gets
    ("B7", ["B7"], True, 0, 1.0, 0.5),  # needed but answered from the view: alpha_miss
    ("B7", ["B7"], False, 0, 1.0, 0.0),  # not needed, direct, right: no cost
    ("B7", ["B7"], False, 2, 1.0, 0.1 + 0.1),  # not needed, two crops anyway
    ("B8", ["B7"], False, 0, 0.5, 0.0),  # a near miss keeps half the answer reward
    (None, ["B7"], True, 1, 0.0, 0.15),  # no answer at all
    ("b7 ", ["x", "B7"], None, 0, 1.0, 0.0),  # case and spaces ignored, best over answers; unlabelled
    ("1234", ["9"], True, 9, 0.0, 0.1 + 0.45),  # all nine regions
]


@pytest.mark.parametrize(("prediction", "answers", "needs_crop", "crops", "answer", "cost"), CASES)
def test_reward_parts_on_hand_cases(
    prediction: str | None,
    answers: list[str],
    needs_crop: bool | None,
    crops: int,
    answer: float,
    cost: float,
) -> None:
    parts = awares_reward(prediction, answers, needs_crop=needs_crop, crops=crops)
    assert parts.answer == pytest.approx(answer) and parts.cost == pytest.approx(cost)
    assert parts.total == pytest.approx(answer - cost)


def test_missing_a_needed_crop_costs_more_than_an_unneeded_request() -> None:
    cost = CropCost()
    assert cost(needs_crop=True, crops=0) > cost(needs_crop=False, crops=1) > cost(needs_crop=False, crops=0)
    custom = CropCost(alpha_miss=1.0, alpha_use=0.0, crop_cost=0.2)
    assert custom(needs_crop=True, crops=0) == 1.0 and custom(needs_crop=None, crops=3) == pytest.approx(0.6)
    with pytest.raises(ConfigError, match="alpha_use"):
        CropCost(alpha_use=-0.1)
    with pytest.raises(ConfigError, match="crop_cost"):
        CropCost(crop_cost=float("nan"))


def test_answer_similarities() -> None:
    assert make_similarity("lexical")("B7", ["B7"]) == 1.0
    assert isinstance(make_similarity("lexical"), LexicalSimilarity)
    judge = JudgeSimilarity(MetricJudge(), metric="exact")
    assert judge("B7", ["b7"], question="which?") == 1.0 and judge("B8", ["B7"]) == 0.0
    assert judge.name == "judge:metric"
    with pytest.raises(ConfigError, match="unknown answer similarity"):
        make_similarity("cosine")


def test_the_metric_similarity_pays_no_blend_of_two_answers() -> None:
    # Seen in a GRPO run with the lexical reward on a two-answer task: the policy learned to answer a blend.
    lexical, metric = make_similarity("lexical"), make_similarity("metric")
    assert isinstance(metric, MetricSimilarity) and metric.name == "metric"
    blend = "vertizontal"
    assert lexical(blend, ["vertical"]) > 0.5 and lexical(blend, ["horizontal"]) > 0.5
    assert metric(blend, ["vertical"], metric="exact") == 0.0 and metric(blend, ["horizontal"]) == 0.0
    assert metric("Vertical.", ["vertical"], metric="exact") == 1.0
    # The sample's own metric is used unless one is fixed: "relaxed" accepts a number within 5%.
    assert metric("103", ["100"], metric="relaxed") == 1.0 and metric("103", ["100"], metric="exact") == 0.0
    assert MetricSimilarity("exact")("103", ["100"], metric="relaxed") == 0.0
    parts = awares_reward(blend, ["vertical"], needs_crop=True, crops=1, similarity=metric, metric="exact")
    assert parts.answer == 0.0 and parts.total == pytest.approx(-0.15)


def test_embedding_similarity_runs_a_local_sentence_transformers_model(tmp_path: Path) -> None:
    from tiny_sentence_model import build_tiny_sentence_model

    from awares_agent.training.rewards import EmbeddingSimilarity

    folder = build_tiny_sentence_model(tmp_path / "st")
    similarity = make_similarity(f"st:{folder}")
    assert isinstance(similarity, EmbeddingSimilarity) and similarity.name == "embedding:st"
    assert similarity("exit B7 north", ["the invoice", "exit B7 north"]) == pytest.approx(1.0)
    other = similarity("the invoice total", ["exit north"])
    assert 0.0 <= other < 1.0
    assert similarity(None, ["x"]) == similarity("  ", ["x"]) == 0.0
    parts = awares_reward("exit B7 north", ["exit B7 north"], needs_crop=True, crops=1, similarity=similarity)
    assert parts.total == pytest.approx(1.0 - 0.15)
    with pytest.raises(ConfigError, match="is not a directory"):
        EmbeddingSimilarity(tmp_path / "missing")
