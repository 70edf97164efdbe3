"""The evaluation runner: one policy over a benchmark, on the run engine, with a summary; resumable.

:func:`run_policy` runs every sample through one agent (one compiled graph: the policy is each query's run
options, :func:`awares_agent.policies.policy_options`) on the run engine (:mod:`awares_agent.engine`), which
makes each result durable as it finishes, exactly once, whatever instant the run is killed at. It writes::

    OUT/<policy>/
      shard-1-of-1/       the engine's shard folder (:mod:`awares_agent.engine.shards`)
        rows.jsonl        one SampleResult per scored or skipped sample
        done.ids          the index of finished samples
        failures.jsonl    one line per failed attempt (backend failure, or a bug), with the sample's question
      summary.json        a Summary

Run again with the same ``OUT`` and it resumes: samples already scored or skipped are not redone; samples
whose backend call failed are tried again. :func:`read_results` reads a policy's folder (and the
``samples.jsonl`` of a run made before the engine, so older runs can still be reported on).

Each policy is timed cold: a backend that keeps results between queries (:class:`CachingBackend`, the
offline reader's OCR cache) is told to forget them before the policy runs, so no policy's latency is made
by the one run before it.

A sample whose image is missing or corrupt is reported (``status="skipped"`` with the reason) and left out of
the accuracy; it never stops the run.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

from pydantic import AliasChoices, BaseModel, Field, ValidationError, computed_field, model_validator

from awares_agent.agent import AwaResAgent
from awares_agent.backends.base import ChatBackend
from awares_agent.config import AgentConfig
from awares_agent.engine.runner import collect
from awares_agent.engine.shards import read_failures, read_indexed_rows
from awares_agent.errors import AwaresError, BackendError, ConfigError, ImageError
from awares_agent.evals.metrics import score
from awares_agent.evals.schema import EvalSample
from awares_agent.policies import check_policy, policy_options
from awares_agent.redact import redact
from awares_agent.trajectory import SCHEMA_V1, Trajectory, TrajectoryLabels
from awares_agent.untrusted import valid_text

logger = logging.getLogger(__name__)

SUMMARY_FILE = "summary.json"
#: The one file of a policy's results before evaluation ran on the engine (read, never written).
LEGACY_SAMPLES_FILE = "samples.jsonl"


class SampleResult(BaseModel):
    """One evaluated sample: the score, and the whole trajectory with the sample's labels.

    ``status`` is ``ok`` (scored), ``skipped`` (bad input: left out of the accuracy for good) or ``failed``
    (the backend failed: tried again on resume). What the query cost (``crops``, ``rtr``, ``pixel_rtr``,
    ``visual_tokens``, ``full_tokens``, ``latency_s``) and the sample's ``needs_crop`` label are read from
    the trajectory (and written out with the result, for whoever reads results as JSON); a result without
    a trajectory has none of them.
    """

    id: str
    policy: str
    status: Literal["ok", "skipped", "failed"]
    question: str
    answers: list[str]
    metric: str
    category: str | None = None
    prediction: str | None = None
    score: float | None = None
    error: str | None = None
    trajectory: Trajectory | None = None

    @model_validator(mode="before")
    @classmethod
    def _upgrade(cls, data: Any) -> Any:
        """A result written with a v1 trajectory kept the sample's label beside it (``needs_hr``)."""
        if not isinstance(data, dict):
            return data
        trajectory = data.get("trajectory")
        if not isinstance(trajectory, dict) or trajectory.get("schema_version") != SCHEMA_V1:
            return data
        labels = {"needs_crop": data["needs_hr"]} if data.get("needs_hr") is not None else None
        return {**data, "trajectory": {**trajectory, "labels": labels}}

    @computed_field  # type: ignore[prop-decorator]
    @property
    def needs_crop(self) -> bool | None:
        """The sample's label: whether answering needs more than the low-resolution view, if known."""
        labels = self.trajectory.labels if self.trajectory is not None else None
        return labels.needs_crop if labels is not None else None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def crops(self) -> list[str]:
        """Region ids of the crops sent, in order."""
        return [c.region_id for c in self.trajectory.crops] if self.trajectory is not None else []

    @computed_field  # type: ignore[prop-decorator]
    @property
    def rtr(self) -> float | None:
        """The retained token ratio."""
        return self.trajectory.cost.rtr if self.trajectory is not None else None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def pixel_rtr(self) -> float | None:
        """The paper's pixel formula of the RTR."""
        return self.trajectory.cost.pixel_rtr if self.trajectory is not None else None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def visual_tokens(self) -> int | None:
        """Visual tokens sent: the view and every crop."""
        return self.trajectory.cost.sent_tokens if self.trajectory is not None else None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def full_tokens(self) -> int | None:
        """Visual tokens of the full-resolution image."""
        return self.trajectory.cost.full_tokens if self.trajectory is not None else None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def latency_s(self) -> float | None:
        """Wall-clock seconds of the query."""
        return self.trajectory.latency_s if self.trajectory is not None else None


class Summary(BaseModel):
    """Aggregate figures of one policy on one benchmark.

    Attributes:
        accuracy: mean score (0-100) over scored samples.
        rtr: mean retained token ratio; ``pixel_rtr`` the paper's pixel formula.
        tool_call_rate: share of scored samples (0-1) that received any crop.
        crop_histogram: how often each region was sent.
        latency_p50: median seconds per query; ``latency_p95`` the 95th percentile.
        by_category: accuracy per category; ``by_needs_crop`` accuracy on samples labelled as needing crops
            (``"true"``) or not (``"false"``) (read from ``by_needs_hr`` too, its name in older summaries).
    """

    benchmark: str
    policy: str
    model: str
    backend: str
    samples: int
    scored: int
    skipped: int
    failed: int
    accuracy: float
    rtr: float
    pixel_rtr: float
    tool_call_rate: float
    mean_crops: float
    crop_histogram: dict[str, int]
    latency_p50: float
    latency_p95: float
    by_category: dict[str, float] = Field(default_factory=dict)
    by_needs_crop: dict[str, float] = Field(
        default_factory=dict, validation_alias=AliasChoices("by_needs_crop", "by_needs_hr")
    )


def read_results(folder: str | os.PathLike[str]) -> dict[str, SampleResult]:
    """The results recorded in a policy's folder (``OUT/<policy>``), by sample id.

    Scored and skipped samples come from the engine's rows (only finished, indexed ones: a run killed
    mid-write is read correctly); samples whose last attempt failed and that are not done are ``failed``
    results, with the failure's reason as their ``error``. A folder written before evaluation ran on the
    engine (a ``samples.jsonl``) is read too, last line per id winning.
    """
    path = Path(folder)
    if not path.is_dir() or not any(path.glob("shard-*-of-*")):
        return _read_legacy(path / LEGACY_SAMPLES_FILE)
    results: dict[str, SampleResult] = {}
    for sample_id, row in read_indexed_rows(path):
        try:
            results[sample_id] = SampleResult.model_validate(row)
        except ValidationError:
            logger.warning("%s: the row of %s is not a SampleResult; ignoring it", path, sample_id)
    for sample_id, failure in read_failures(path).items():
        if sample_id not in results:
            results[sample_id] = _failed(sample_id, failure.get("item") or {}, failure.get("reason") or "")
    return results


def _read_legacy(path: Path) -> dict[str, SampleResult]:
    """The results in an older run's ``samples.jsonl`` (an id's last line wins; a torn line is ignored)."""
    results: dict[str, SampleResult] = {}
    if not path.exists():
        return results
    with path.open(encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                result = SampleResult.model_validate_json(line)
            except ValueError:
                logger.warning("%s:%d is not a complete record; ignoring it", path, number)
                continue
            results[result.id] = result
    return results


def _head(sample: EvalSample, policy: str) -> dict[str, Any]:
    """What a result says about its sample, whatever its status (text made valid UTF-8: it is stored)."""
    return {
        "policy": policy,
        "question": valid_text(sample.question)[0],
        "answers": [valid_text(a)[0] for a in sample.answers],
        "metric": sample.metric,
        "category": sample.category,
    }


def _failed(sample_id: str, head: dict[str, Any], reason: str) -> SampleResult:
    """A ``failed`` result from a failure record: the sample as the record keeps it, and the reason."""
    fields = {"policy": "", "question": "", "answers": [], "metric": "exact", **head}
    return SampleResult.model_validate({**fields, "id": sample_id, "status": "failed", "error": reason})


@runtime_checkable
class CachingBackend(Protocol):
    """A backend that keeps results between queries (the offline reader's OCR) and can forget them."""

    def clear_cache(self) -> None:
        """Forget every kept result."""


def run_policy(
    samples: Sequence[EvalSample],
    agent: AwaResAgent | ChatBackend,
    policy: str,
    out_dir: str | os.PathLike[str],
    *,
    config: AgentConfig | None = None,
    benchmark: str = "custom",
    concurrency: int = 4,
    awares_crops: dict[str, int] | None = None,
    seed: int = 0,
    on_result: Callable[[SampleResult], None] | None = None,
) -> Summary:
    """Evaluate ``policy`` on ``samples`` and write per-sample results and a summary under ``out_dir/policy``.

    Blocking: it runs the engine's event loop itself (:func:`arun_policy`), also when called from a worker
    thread; called where an event loop is already running (a notebook), it runs it on a thread of its own.

    Args:
        samples: the benchmark's samples (ids unique).
        agent: the agent to evaluate, or a backend to build one around with ``config``. Pass one agent to
            several calls (one per policy) and every policy and sample runs through its one compiled graph.
        policy: one of :data:`awares_agent.policies.POLICIES`.
        out_dir: the run directory (shared by the policies of one run).
        config: the agent configuration, when ``agent`` is a backend (paper defaults if omitted).
        benchmark: the benchmark's name, for the summary.
        concurrency: samples in flight at once.
        awares_crops: crop counts per sample id from an ``awares`` run (needed by ``random``).
        seed: seeds the ``random`` policy.
        on_result: called with every new result once it is durable (e.g. to advance a progress bar).

    Returns:
        The summary over every recorded sample (earlier runs in ``out_dir`` included).

    Raises:
        ConfigError: an unknown policy, ``random`` without ``awares_crops``, an agent with a ``config``, a
            duplicate sample id, or another process writing the same folder.
    """

    def run() -> Summary:
        return asyncio.run(
            arun_policy(
                samples,
                agent,
                policy,
                out_dir,
                config=config,
                benchmark=benchmark,
                concurrency=concurrency,
                awares_crops=awares_crops,
                seed=seed,
                on_result=on_result,
            )
        )

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return run()
    # An event loop is running in this thread (asyncio.run would refuse): give the run a thread of its own.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="awares-eval-loop") as thread:
        return thread.submit(run).result()


async def arun_policy(
    samples: Sequence[EvalSample],
    agent: AwaResAgent | ChatBackend,
    policy: str,
    out_dir: str | os.PathLike[str],
    *,
    config: AgentConfig | None = None,
    benchmark: str = "custom",
    concurrency: int = 4,
    awares_crops: dict[str, int] | None = None,
    seed: int = 0,
    on_result: Callable[[SampleResult], None] | None = None,
) -> Summary:
    """Async :func:`run_policy` (same arguments), on the caller's event loop.

    Each query runs the agent's blocking path (:meth:`~awares_agent.agent.AwaResAgent.ask`, the backend's
    ``complete``) on a pool of ``concurrency`` threads, as the evaluation always has, so a backend's results
    do not depend on its async path.
    """
    check_policy(policy)
    if policy == "random" and awares_crops is None:
        raise ConfigError("the random policy needs the awares run: use --policy awares,random")
    if isinstance(agent, AwaResAgent):
        if config is not None:
            raise ConfigError("run_policy: pass a config with a backend, not with an agent (it has its own)")
    else:
        agent = AwaResAgent(agent, config or AgentConfig())
    folder = Path(out_dir) / policy
    by_id = {s.id: s for s in samples}
    workers = max(1, concurrency)
    if isinstance(agent.backend, CachingBackend):
        # Each policy is timed cold: a cache warmed by the policy run before (the reader's OCR of the same
        # view) would make this one's latency mean nothing. Answers do not change: a cache only saves reads.
        agent.backend.clear_cache()

    def done(sample_id: str, row: SampleResult | None, reason: str | None) -> None:
        if on_result is None:
            return
        if row is None:
            row = _failed(sample_id, _head(by_id[sample_id], policy), reason or "")
        on_result(row)

    loop = asyncio.get_running_loop()
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="awares-eval") as pool:

        async def work(sample: EvalSample) -> SampleResult:
            return await loop.run_in_executor(pool, _evaluate, sample, policy, agent, awares_crops, seed)

        stats = await collect(
            samples,
            work,
            folder,
            id_of=lambda s: s.id,
            concurrency=workers,
            progress=False,
            # Backend failures and bugs alike are recorded and retried by the next run; one sample never
            # stops the evaluation.
            catch=(Exception,),
            failure_fields=lambda s: _head(s, policy),
            on_done=done,
        )
    if stats.skipped_done:
        logger.info("%s: resumed; %d of %d samples already done", policy, stats.skipped_done, stats.total)

    results = read_results(folder)
    summary = summarize(
        [results[s.id] for s in samples if s.id in results],
        benchmark=benchmark,
        policy=policy,
        model=agent.backend.model_name,
        backend=type(agent.backend).__name__,
    )
    (folder / SUMMARY_FILE).write_text(summary.model_dump_json(indent=2) + "\n", encoding="utf-8")
    return summary


def _evaluate(
    sample: EvalSample,
    policy: str,
    agent: AwaResAgent,
    awares_crops: dict[str, int] | None,
    seed: int,
) -> SampleResult:
    """One sample under ``policy``: scored, or skipped for bad input.

    Raises:
        BackendError: the backend failed (the engine records it; the next run tries again).
        Exception: a bug, likewise recorded and retried.
    """
    head = {"id": sample.id, **_head(sample, policy)}
    try:
        source = agent.store.hold(sample.image)
    except ImageError as exc:
        return SampleResult(status="skipped", error=redact(str(exc)), **head)
    try:
        count = (awares_crops or {}).get(sample.id, 0) if policy == "random" else None
        options = policy_options(
            policy,
            agent.config,
            width=source.width,
            height=source.height,
            sample_id=sample.id,
            evidence=sample.evidence,
            awares_crops=count,
            seed=seed,
        )
        result = agent.ask(sample.image, sample.question, options=options)
    except BackendError:
        raise
    except AwaresError as exc:  # bad input (an image that cannot be used...): final, not retried
        return SampleResult(status="skipped", error=redact(str(exc)), **head)
    finally:
        agent.store.release(source.id)
    trajectory = result.trajectory
    if sample.needs_crop is not None or sample.evidence is not None:
        labels = TrajectoryLabels(needs_crop=sample.needs_crop, evidence=sample.evidence)
        trajectory = trajectory.model_copy(update={"labels": labels})
    return SampleResult(
        status="ok",
        prediction=result.answer,
        score=score(sample.metric, result.answer, sample.answers, question=sample.question),
        trajectory=trajectory,
        **head,
    )


def summarize(
    results: Iterable[SampleResult], *, benchmark: str, policy: str, model: str, backend: str
) -> Summary:
    """Aggregate per-sample results into a :class:`Summary`."""
    results = list(results)
    scored = [r for r in results if r.status == "ok"]
    latencies = sorted(r.latency_s or 0.0 for r in scored)
    histogram = Counter(c for r in scored for c in r.crops)

    def accuracy(rows: list[SampleResult]) -> float:
        return round(100 * sum(r.score or 0.0 for r in rows) / len(rows), 2) if rows else 0.0

    def mean(values: list[float]) -> float:
        return round(sum(values) / len(values), 4) if values else 0.0

    categories = sorted({r.category for r in scored if r.category})
    by_hr = {str(flag).lower(): [r for r in scored if r.needs_crop is flag] for flag in (True, False)}
    return Summary(
        benchmark=benchmark,
        policy=policy,
        model=model,
        backend=backend,
        samples=len(results),
        scored=len(scored),
        skipped=sum(r.status == "skipped" for r in results),
        failed=sum(r.status == "failed" for r in results),
        accuracy=accuracy(scored),
        rtr=mean([r.rtr or 0.0 for r in scored]),
        pixel_rtr=mean([r.pixel_rtr or 0.0 for r in scored]),
        tool_call_rate=mean([1.0 if r.crops else 0.0 for r in scored]),
        mean_crops=mean([float(len(r.crops)) for r in scored]),
        crop_histogram=dict(sorted(histogram.items())),
        latency_p50=round(percentile(latencies, 50), 4),
        latency_p95=round(percentile(latencies, 95), 4),
        by_category={c: accuracy([r for r in scored if r.category == c]) for c in categories},
        by_needs_crop={k: accuracy(v) for k, v in by_hr.items() if v},
    )


def percentile(sorted_values: list[float], q: float) -> float:
    """The nearest-rank ``q``-th percentile of ``sorted_values`` (0.0 for none)."""
    if not sorted_values:
        return 0.0
    rank = max(0, math.ceil(q / 100 * len(sorted_values)) - 1)
    return sorted_values[rank]


def awares_crop_counts(out_dir: str | os.PathLike[str]) -> dict[str, int]:
    """Crops per sample id in the ``awares`` results under ``out_dir`` (for the ``random`` policy)."""
    results = read_results(Path(out_dir) / "awares")
    return {i: len(r.crops) for i, r in results.items() if r.status == "ok"}
