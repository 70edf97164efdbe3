"""What ``awares collect`` does to one sample: label it from a teacher, or roll the agent out on it.

**Labelling** (:class:`Labeler`, the paper's automatic supervision):

1. The teacher answers the question twice through the agent graph: on the low-resolution view only, and on
   the full-resolution image only (the ``low-res`` and ``full-res`` policies of :mod:`awares_agent.policies`).
2. A judge compares both answers with the ground truth. Cropping is *needed* where the low-res answer is
   wrong and the full-res one right. Samples where both are wrong are dropped (``both_wrong``).
3. For needed samples a grounder finds the evidence box (the dataset's own box first, by default) and
   :func:`awares_agent.tools.box_mapping.crops_covering` maps it to the crop set: the cheapest region or pair
   of regions
   covering it. A needed sample with no box is dropped (``no_evidence_box``).
4. The label becomes a trajectory written by the same graph the agent runs, so it has exactly the runtime's
   system prompt, tool protocol, crop messages and token accounting: *direct* (view, answer) or *tool*
   (view, crop call, crops, answer). The answer is the first ground-truth answer (``answer_source=
   "ground-truth"``, the default) or the teacher's own answer that the judge accepted (``"teacher"``). The
   crop call and the answer are the run's options (:class:`~awares_agent.graphs.context.RunOptions`: forced
   crops, a scripted answer), so writing a label calls no model.

All three runs of a sample go through one agent (one compiled graph) around the teacher; only their run
options differ.

**Rollout** (:class:`Rollout`, on-policy collection): the agent runs with the teacher as its model, exactly as
at inference; every answer is judged and the verdict kept in the trajectory's labels, so training can filter
or reject.

Both produce a :class:`CollectedRow` per sample (as a JSON-ready dict for the collector). Its trajectory
carries the labels (:class:`~awares_agent.trajectory.TrajectoryLabels`: whether crops were needed, the
evidence box, the verdict, the teacher); the row adds what happened around it (the teacher's two answers,
the grounder's finding, or why the sample was dropped). Backend failures
propagate (the collector records them and retries them on resume); an unreadable image is a permanent
outcome, recorded as a dropped row (``bad_image``).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Literal

from pydantic import BaseModel, Field, computed_field, model_validator

from awares_agent.agent import AwaResAgent
from awares_agent.backends.base import ChatBackend
from awares_agent.collect.grounders import Grounder, Grounding
from awares_agent.collect.judges import Judge, Verdict
from awares_agent.config import AgentConfig
from awares_agent.errors import ConfigError, ImageError
from awares_agent.evals.schema import EvalSample
from awares_agent.graphs.context import RunOptions
from awares_agent.image_store import ImageStore
from awares_agent.images import SourceImage
from awares_agent.policies import policy_options
from awares_agent.tools.box_mapping import crops_covering
from awares_agent.tools.crop_sets import crop_set
from awares_agent.trajectory import SCHEMA_V1, Trajectory, TrajectoryLabels

__all__ = [
    "CollectedRow",
    "CollectionSummary",
    "Labeler",
    "Rollout",
    "TeacherAnswer",
    "summarize_rows",
]

AnswerSource = Literal["ground-truth", "teacher"]


class TeacherAnswer(BaseModel):
    """The teacher's answer under one view of the image, and the judge's verdict on it."""

    answer: str | None
    verdict: Verdict
    rtr: float
    latency_s: float


class CollectedRow(BaseModel):
    """One sample's outcome: a labelled trajectory, or why the sample was dropped.

    The labels travel in the trajectory (``trajectory.labels``); ``needs_crop``, ``verdict``, ``label``,
    ``crops`` and ``rtr`` are read from it (and written out with the row, for whoever reads rows as JSON).

    Attributes:
        id: the sample's id.
        mode: ``"label"`` (teacher labels, :class:`Labeler`) or ``"rollout"`` (:class:`Rollout`).
        status: ``"ok"`` (has a trajectory) or ``"dropped"`` (see ``reason``).
        reason: why the sample was dropped: ``both_wrong``, ``no_evidence_box`` or ``bad_image: ...``.
        question: the question.
        answers: the accepted answers.
        metric: the judge's metric for this sample.
        teacher: the teacher model's name.
        low_res: labelling: the teacher's answer on the low-resolution view.
        full_res: labelling: the teacher's answer on the full image.
        grounding: labelling: what the grounder found for a needed sample (its box is the trajectory's
            ``labels.evidence``; a dropped ``no_evidence_box`` row keeps the grounder's reason here).
        trajectory: the labelled trajectory (``None`` when dropped).
        collected_at: when the row was produced (seconds since the epoch).
    """

    id: str
    mode: Literal["label", "rollout"]
    status: Literal["ok", "dropped"]
    reason: str | None = None
    question: str
    answers: list[str]
    metric: str
    teacher: str
    low_res: TeacherAnswer | None = None
    full_res: TeacherAnswer | None = None
    grounding: Grounding | None = None
    trajectory: Trajectory | None = None
    collected_at: float = Field(default_factory=time.time)

    @model_validator(mode="before")
    @classmethod
    def _upgrade(cls, data: Any) -> Any:
        """A row written with a v1 trajectory kept its labels beside it: move them into the trajectory."""
        if not isinstance(data, dict):
            return data
        trajectory = data.get("trajectory")
        if not isinstance(trajectory, dict) or trajectory.get("schema_version") != SCHEMA_V1:
            return data
        box = (data.get("grounding") or {}).get("box")
        labels = {
            "needs_crop": data.get("needs_crop"),
            "evidence": box,
            "verdict": data.get("verdict"),
            "teacher": data.get("teacher"),
        }
        return {**data, "trajectory": {**trajectory, "labels": labels}}

    @property
    def labels(self) -> TrajectoryLabels | None:
        """The trajectory's labels (``None`` for a dropped row)."""
        return self.trajectory.labels if self.trajectory is not None else None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def needs_crop(self) -> bool | None:
        """Labelling: whether the low-res answer was wrong and the full-res one right.

        A dropped row has no trajectory: its sample needed crops where the grounder was asked for the
        evidence (only needed samples are grounded), else it is unknown.
        """
        if self.labels is not None:
            return self.labels.needs_crop
        return True if self.grounding is not None else None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def verdict(self) -> Verdict | None:
        """The judge's verdict on the trajectory's answer."""
        return self.labels.verdict if self.labels is not None else None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def label(self) -> Literal["direct", "tool"] | None:
        """``"direct"`` (answered from the view) or ``"tool"`` (crops requested); ``None`` when dropped."""
        if self.trajectory is None:
            return None
        return "tool" if self.trajectory.crops else "direct"

    @computed_field  # type: ignore[prop-decorator]
    @property
    def crops(self) -> list[str]:
        """Region ids requested in the trajectory."""
        return [c.region_id for c in self.trajectory.crops] if self.trajectory is not None else []

    @computed_field  # type: ignore[prop-decorator]
    @property
    def rtr(self) -> float | None:
        """The trajectory's retained visual-token ratio."""
        return self.trajectory.cost.rtr if self.trajectory is not None else None


class _Base:
    def __init__(
        self,
        teacher: ChatBackend,
        judge: Judge,
        *,
        config: AgentConfig | None = None,
        store: ImageStore | None = None,
    ) -> None:
        self.teacher = teacher
        self.judge = judge
        self.config = config or AgentConfig()
        self.store = store if store is not None else ImageStore()
        self.crop_set = crop_set(self.config.crop_set)
        # One agent, one compiled graph, for every run of every sample: what differs is the run options.
        self.agent = AwaResAgent(teacher, self.config, store=self.store)

    def _head(self, sample: EvalSample, mode: Literal["label", "rollout"]) -> dict[str, Any]:
        return {
            "id": sample.id,
            "mode": mode,
            "question": sample.question,
            "answers": sample.answers,
            "metric": sample.metric,
            "teacher": self.teacher.model_name,
        }

    async def _on_image(
        self,
        sample: EvalSample,
        head: dict[str, Any],
        run: Callable[[SourceImage], Awaitable[CollectedRow]],
    ) -> CollectedRow:
        """``run(source)`` with the sample's image held in the store; an unreadable image is a dropped row."""
        try:
            source = self.store.hold(sample.image)
        except ImageError as exc:
            return CollectedRow(status="dropped", reason=f"bad_image: {exc}", **head)
        try:
            return await run(source)
        except ImageError as exc:
            return CollectedRow(status="dropped", reason=f"bad_image: {exc}", **head)
        finally:
            self.store.release(source.id)

    async def _judged(self, sample: EvalSample, trajectory: Trajectory) -> Verdict:
        return await self.judge.ajudge(
            sample.question, trajectory.answer, sample.answers, metric=sample.metric
        )


class Labeler(_Base):
    """Label samples from a teacher's low-res and full-res answers (see the module docstring).

    Args:
        teacher: the model whose answers decide where crops are needed.
        judge: compares the teacher's answers with the ground truth.
        grounder: finds the evidence box of needed samples (e.g. ``ChainGrounder([DatasetGrounder(),
            OCRGrounder()])``).
        config: the agent configuration the trajectories are written for (protocol, crop set, view); it
            must allow a crop round.
        store: the image store; give it a ``root`` so the trajectories' images can be exported later.
        answer_source: the trajectory's answer: ``"ground-truth"`` (the first accepted answer) or
            ``"teacher"`` (the accepted teacher answer).

    Raises:
        ConfigError: the configuration allows no crop round, or an unknown ``answer_source``.
    """

    def __init__(
        self,
        teacher: ChatBackend,
        judge: Judge,
        grounder: Grounder,
        *,
        config: AgentConfig | None = None,
        store: ImageStore | None = None,
        answer_source: AnswerSource = "ground-truth",
    ) -> None:
        super().__init__(teacher, judge, config=config, store=store)
        if self.config.max_rounds < 1:
            raise ConfigError(
                "labelling writes tool trajectories: the agent configuration needs max_rounds >= 1"
            )
        if answer_source not in ("ground-truth", "teacher"):
            raise ConfigError(f"answer_source must be 'ground-truth' or 'teacher', got {answer_source!r}")
        self.grounder = grounder
        self.answer_source = answer_source

    async def __call__(self, sample: EvalSample) -> dict[str, Any]:
        """Label one sample; returns the :class:`CollectedRow` as a JSON-ready dict."""
        return (await self.label(sample)).model_dump(mode="json")

    async def label(self, sample: EvalSample) -> CollectedRow:
        """Label one sample.

        Raises:
            BackendError: the teacher, an LLM judge or a VLM grounder failed (retry later).
        """
        head = self._head(sample, "label")
        return await self._on_image(
            sample, head, lambda source: self._label(sample, source.id, source.width, source.height, head)
        )

    async def _label(
        self, sample: EvalSample, source_id: str, width: int, height: int, head: dict[str, Any]
    ) -> CollectedRow:
        where = {"width": width, "height": height, "sample_id": sample.id}
        low_options = policy_options("low-res", self.config, **where)
        full_options = policy_options("full-res", self.config, **where)
        low_result, full_result = await asyncio.gather(
            self.agent.aask(sample.image, sample.question, options=low_options),
            self.agent.aask(sample.image, sample.question, options=full_options),
        )
        low_verdict, full_verdict = await asyncio.gather(
            self._judged(sample, low_result.trajectory), self._judged(sample, full_result.trajectory)
        )
        low = TeacherAnswer(
            answer=low_result.answer, verdict=low_verdict, rtr=low_result.rtr, latency_s=low_result.latency_s
        )
        full = TeacherAnswer(
            answer=full_result.answer,
            verdict=full_verdict,
            rtr=full_result.rtr,
            latency_s=full_result.latency_s,
        )
        head |= {"low_res": low, "full_res": full}
        if not low.verdict.correct and not full.verdict.correct:
            return CollectedRow(status="dropped", reason="both_wrong", **head)
        needs_crop = not low.verdict.correct
        grounding: Grounding | None = None
        crops: list[str] = []
        if needs_crop:
            image = await asyncio.to_thread(self.store.get, source_id)
            grounding = await self.grounder.aground(
                image, sample.question, sample.answers, bbox=sample.evidence
            )
            if grounding.box is None:
                return CollectedRow(status="dropped", reason="no_evidence_box", grounding=grounding, **head)
            crops = crops_covering(grounding.box, self.crop_set, width, height)
        taught = full if needs_crop else low
        if self.answer_source == "teacher" and taught.answer:
            answer, verdict = taught.answer, taught.verdict
        else:
            answer = sample.answers[0]
            verdict = Verdict(correct=True, score=1.0, reason="the ground-truth answer", judge="ground-truth")
        # The label's turns are the run's options, not the teacher's: no model is called to write it. With no
        # crops it is a direct answer from the view.
        options = RunOptions(crops=tuple(crops) or None, answer=answer)
        labelled = await self.agent.aask(sample.image, sample.question, options=options)
        labels = TrajectoryLabels(
            needs_crop=needs_crop,
            evidence=grounding.box if grounding is not None else None,
            verdict=verdict,
            teacher=self.teacher.model_name,
        )
        trajectory = labelled.trajectory.model_copy(update={"labels": labels})
        return CollectedRow(status="ok", grounding=grounding, trajectory=trajectory, **head)


class Rollout(_Base):
    """Run the agent with the teacher as its model over samples and judge every answer (on-policy data).

    Args:
        teacher: the model the agent runs.
        judge: compares each answer with the ground truth.
        config: the agent configuration (as at inference).
        store: the image store; give it a ``root`` so the trajectories' images can be exported later.
    """

    async def __call__(self, sample: EvalSample) -> dict[str, Any]:
        """Roll out one sample; returns the :class:`CollectedRow` as a JSON-ready dict."""
        return (await self.rollout(sample)).model_dump(mode="json")

    async def rollout(self, sample: EvalSample) -> CollectedRow:
        """Run the agent on one sample and judge its answer.

        Raises:
            BackendError: the teacher or an LLM judge failed (retry later).
        """
        head = self._head(sample, "rollout")

        async def run(_: SourceImage) -> CollectedRow:
            trajectory = (await self.agent.aask(sample.image, sample.question)).trajectory
            labels = TrajectoryLabels(
                verdict=await self._judged(sample, trajectory), teacher=self.teacher.model_name
            )
            trajectory = trajectory.model_copy(update={"labels": labels})
            return CollectedRow(status="ok", trajectory=trajectory, **head)

        return await self._on_image(sample, head, run)


class CollectionSummary(BaseModel):
    """Statistics over collected rows (what ``awares collect`` prints at the end).

    Attributes:
        rows: rows read.
        ok: rows with a trajectory.
        direct: ok rows answered from the view.
        tool: ok rows with crops.
        correct: ok rows whose answer the judge accepted.
        dropped: dropped rows by reason (``bad_image: ...`` reasons are grouped as ``bad_image``).
        crops: how often each region id was requested.
        mean_rtr: mean RTR over ok rows.
    """

    rows: int = 0
    ok: int = 0
    direct: int = 0
    tool: int = 0
    correct: int = 0
    dropped: dict[str, int] = Field(default_factory=dict)
    crops: dict[str, int] = Field(default_factory=dict)
    mean_rtr: float = 0.0

    @property
    def direct_share(self) -> float:
        """The share of ok rows answered directly (the paper's labels: about 81%)."""
        return self.direct / self.ok if self.ok else 0.0


def summarize_rows(rows: Iterable[dict[str, Any]]) -> CollectionSummary:
    """Count labels, verdicts, drops and crops over collected rows (dicts as the collector stores them)."""
    summary = CollectionSummary()
    dropped: Counter[str] = Counter()
    crops: Counter[str] = Counter()
    rtr_sum = 0.0
    for row in rows:
        summary.rows += 1
        if row.get("status") != "ok":
            dropped[str(row.get("reason") or "unknown").split(":")[0]] += 1
            continue
        summary.ok += 1
        summary.tool += row.get("label") == "tool"
        summary.direct += row.get("label") == "direct"
        summary.correct += bool((row.get("verdict") or {}).get("correct"))
        crops.update(row.get("crops") or [])
        rtr_sum += float(row.get("rtr") or 0.0)
    summary.dropped = dict(dropped.most_common())
    summary.crops = dict(sorted(crops.items()))
    summary.mean_rtr = rtr_sum / summary.ok if summary.ok else 0.0
    return summary
