"""Scoring a crop policy by what it does: its decisions and regions against labels, not its tokens.

A trained AwaRes model is judged on held-out samples run through the real agent (``awares eval``'s
``awares`` policy): did every reply parse (well-formed), did it ask for crops exactly where the labels say
crops were needed (decision), did the crops it asked for cover the labelled evidence (region), was the answer
right, and what did it cost (RTR). Token accuracy is no proxy for any of these: a model can emit perfect call
tokens on every page while deciding at chance.

:func:`score_decisions` computes :class:`DecisionReport` from an evaluation's results and the samples'
labels (``needs_crop``, and ``evidence`` for the evidence box).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import pairwise

from pydantic import BaseModel

from awares_agent.evals.runner import SampleResult
from awares_agent.evals.schema import EvalSample
from awares_agent.trajectory import Trajectory

__all__ = ["COVERAGE", "MALFORMED", "DecisionReport", "evidence_coverage", "score_decisions"]

MALFORMED = frozenset({"invalid_tool_call", "unknown_tool", "empty_reply", "extra_tool_round", "no_answer"})
"""Trajectory error kinds that mean a reply did not follow the protocol."""

COVERAGE = 0.9
"""The share of the evidence box the requested crops must cover for the region to count as right."""


class DecisionReport(BaseModel):
    """A policy's behaviour on labelled samples (shares in 0-1, ``None`` where nothing was there to count).

    Attributes:
        samples: samples scored (results with a trajectory).
        well_formed: samples whose every reply followed the protocol (no malformed call, empty reply or
            missing answer).
        call_validity: valid crop calls over attempted ones (a call that did not parse counts as attempted).
        decision_accuracy: samples where the policy cropped exactly when the label says crops were needed.
        needed_recall: among samples that needed crops, the share where it cropped.
        direct_specificity: among samples that did not, the share it answered directly.
        region_accuracy: among needed samples it cropped (and with an evidence box), the share whose crops
            cover at least :data:`COVERAGE` of the evidence.
        region_recall: the same over every needed sample with an evidence box (not cropping counts as wrong).
        answer_accuracy: mean answer score.
        rtr: mean retained token ratio.
        call_rate: share of samples that received crops.
        confusion: counts of ``needed/cropped``, ``needed/direct``, ``not-needed/cropped``,
            ``not-needed/direct``.
    """

    samples: int
    well_formed: float
    call_validity: float | None
    decision_accuracy: float | None
    needed_recall: float | None
    direct_specificity: float | None
    region_accuracy: float | None
    region_recall: float | None
    answer_accuracy: float
    rtr: float
    call_rate: float
    confusion: dict[str, int]

    def lines(self) -> list[tuple[str, str]]:
        """``(name, value)`` rows for a report table."""

        def pct(value: float | None) -> str:
            return "n/a" if value is None else f"{100 * value:.1f}%"

        return [
            ("samples", str(self.samples)),
            ("well-formed replies", pct(self.well_formed)),
            ("valid crop calls", pct(self.call_validity)),
            ("decision accuracy", pct(self.decision_accuracy)),
            ("  crops when needed", pct(self.needed_recall)),
            ("  direct when not", pct(self.direct_specificity)),
            ("region accuracy (when cropped)", pct(self.region_accuracy)),
            ("region recall (all needed)", pct(self.region_recall)),
            ("answer accuracy", pct(self.answer_accuracy)),
            ("mean RTR", f"{self.rtr:.3f}"),
            ("crop call rate", pct(self.call_rate)),
        ]


def evidence_coverage(trajectory: Trajectory, evidence: Sequence[float]) -> float:
    """The share (0-1) of the evidence box that the trajectory's crops cover together.

    Exact for any number of crops: the covered area is measured on the grid of the boxes' own edges.
    """
    x0, y0, x1, y1 = (float(v) for v in evidence)
    area = max(0.0, x1 - x0) * max(0.0, y1 - y0)
    if area == 0 or not trajectory.crops:
        return 0.0
    boxes = [
        (max(x0, b[0]), max(y0, b[1]), min(x1, b[2]), min(y1, b[3]))
        for b in (c.box for c in trajectory.crops)
    ]
    boxes = [b for b in boxes if b[0] < b[2] and b[1] < b[3]]
    xs = sorted({x0, x1, *(b[0] for b in boxes), *(b[2] for b in boxes)})
    ys = sorted({y0, y1, *(b[1] for b in boxes), *(b[3] for b in boxes)})
    covered = 0.0
    for left, right in pairwise(xs):
        for top, bottom in pairwise(ys):
            cx, cy = (left + right) / 2, (top + bottom) / 2
            if any(b[0] <= cx <= b[2] and b[1] <= cy <= b[3] for b in boxes):
                covered += (right - left) * (bottom - top)
    return covered / area


def _share(hits: int, total: int) -> float | None:
    return hits / total if total else None


def score_decisions(
    results: Mapping[str, SampleResult], samples: Sequence[EvalSample], *, coverage: float = COVERAGE
) -> DecisionReport:
    """Score an ``awares``-policy evaluation's decisions and regions against the samples' labels.

    Args:
        results: the evaluation's results by sample id (:func:`~awares_agent.evals.runner.read_results`).
        samples: the samples, with ``needs_crop`` (crops needed) and ``evidence`` (the evidence box) as
            labels.
        coverage: the share of the evidence the crops must cover.
    """
    confusion = {"needed/cropped": 0, "needed/direct": 0, "not-needed/cropped": 0, "not-needed/direct": 0}
    scored = well = attempted = valid = 0
    region_hits = region_cropped = region_needed = 0
    scores: list[float] = []
    rtrs: list[float] = []
    cropped_count = 0
    for sample in samples:
        result = results.get(sample.id)
        if result is None or result.trajectory is None:
            continue
        trajectory = result.trajectory
        scored += 1
        kinds = [e.kind for e in trajectory.errors]
        well += not any(k in MALFORMED for k in kinds)
        invalid_calls = sum(k in ("invalid_tool_call", "unknown_tool") for k in kinds)
        attempted += trajectory.rounds + invalid_calls
        valid += trajectory.rounds
        cropped = bool(trajectory.crops)
        cropped_count += cropped
        scores.append(result.score or 0.0)
        rtrs.append(result.rtr or 0.0)
        if sample.needs_crop is None:
            continue
        key = f"{'needed' if sample.needs_crop else 'not-needed'}/{'cropped' if cropped else 'direct'}"
        confusion[key] += 1
        if sample.needs_crop and sample.evidence is not None:
            region_needed += 1
            hit = cropped and evidence_coverage(trajectory, sample.evidence) >= coverage
            region_hits += hit
            region_cropped += cropped
    needed = confusion["needed/cropped"] + confusion["needed/direct"]
    not_needed = confusion["not-needed/cropped"] + confusion["not-needed/direct"]
    right = confusion["needed/cropped"] + confusion["not-needed/direct"]
    return DecisionReport(
        samples=scored,
        well_formed=well / scored if scored else 0.0,
        call_validity=_share(valid, attempted),
        decision_accuracy=_share(right, needed + not_needed),
        needed_recall=_share(confusion["needed/cropped"], needed),
        direct_specificity=_share(confusion["not-needed/direct"], not_needed),
        region_accuracy=_share(region_hits, region_cropped),
        region_recall=_share(region_hits, region_needed),
        answer_accuracy=sum(scores) / len(scores) if scores else 0.0,
        rtr=sum(rtrs) / len(rtrs) if rtrs else 0.0,
        call_rate=cropped_count / scored if scored else 0.0,
        confusion=confusion,
    )
