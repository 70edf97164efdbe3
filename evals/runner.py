"""The evaluation runner: a policy over a benchmark, one JSONL line per sample, a summary, resumable.

``run_policy`` writes ``OUT/<policy>/samples.jsonl`` (one :class:`SampleResult` per line, appended and
flushed as each sample finishes, so a killed run loses at most the samples in flight) and
``OUT/<policy>/summary.json`` (a :class:`Summary`). Run again with the same ``OUT`` and it resumes: samples
already scored or skipped are not redone; samples whose backend call failed are tried again.

A sample whose image is missing or corrupt is reported (``status="skipped"`` with the reason) and left out of
the accuracy; it never stops the run.
"""

from __future__ import annotations

import logging
import math
import os
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any, Literal

from awares_agent.evals.metrics import score
from awares_agent.evals.policies import policy_backend, policy_config
from awares_agent.evals.schema import EvalSample
from pydantic import BaseModel, Field

from awares_agent.agent import AwaResAgent
from awares_agent.backends.base import ChatBackend
from awares_agent.config import AgentConfig
from awares_agent.errors import AwaresError, BackendError, ConfigError, ImageError
from awares_agent.image_store import ImageStore
from awares_agent.redact import redact
from awares_agent.trajectory import Trajectory
from awares_agent.untrusted import valid_text

logger = logging.getLogger(__name__)

SAMPLES_FILE = "samples.jsonl"
SUMMARY_FILE = "summary.json"


class SampleResult(BaseModel):
    """One evaluated sample: the verdict, what it cost, and the whole trajectory.

    ``status`` is ``ok`` (scored), ``skipped`` (bad input: left out of the accuracy for good) or ``failed``
    (the backend failed: tried again on resume).
    """

    id: str
    policy: str
    status: Literal["ok", "skipped", "failed"]
    question: str
    answers: list[str]
    metric: str
    category: str | None = None
    needs_hr: bool | None = None
    prediction: str | None = None
    score: float | None = None
    crops: list[str] = Field(default_factory=list)
    rtr: float | None = None
    pixel_rtr: float | None = None
    visual_tokens: int | None = None
    full_tokens: int | None = None
    latency_s: float | None = None
    error: str | None = None
    trajectory: Trajectory | None = None


class Summary(BaseModel):
    """Aggregate figures of one policy on one benchmark.

    Attributes:
        accuracy: mean score (0-100) over scored samples.
        rtr: mean retained token ratio; ``pixel_rtr`` the paper's pixel formula.
        tool_call_rate: share of scored samples (0-1) that received any crop.
        crop_histogram: how often each region was sent.
        latency_p50: median seconds per query; ``latency_p95`` the 95th percentile.
        by_category: accuracy per category; ``by_needs_hr`` accuracy on samples labelled as needing high
            resolution (``"true"``) or not (``"false"``).
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
    by_needs_hr: dict[str, float] = Field(default_factory=dict)


def read_results(path: Path) -> dict[str, SampleResult]:
    """The results recorded in a ``samples.jsonl`` (last line per id wins; a torn last line is ignored)."""
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
                # A run killed mid-write leaves a partial last line; the sample is simply redone.
                logger.warning("%s:%d is not a complete record; ignoring it", path, number)
                continue
            results[result.id] = result
    return results


def run_policy(
    samples: Sequence[EvalSample],
    backend: ChatBackend,
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

    Args:
        samples: the benchmark's samples.
        backend: the model.
        policy: one of :data:`awares_agent.evals.policies.POLICIES`.
        out_dir: the run directory (shared by the policies of one run).
        config: the base agent configuration (paper defaults).
        benchmark: the benchmark's name, for the summary.
        concurrency: samples in flight at once.
        awares_crops: crop counts per sample id from an ``awares`` run (needed by ``random``).
        seed: seeds the ``random`` policy.
        on_result: called with every new result as it is written (e.g. to advance a progress bar).

    Returns:
        The summary over every recorded sample (earlier runs in ``out_dir`` included).
    """
    base = config or AgentConfig()
    run_config = policy_config(policy, base)
    folder = Path(out_dir) / policy
    folder.mkdir(parents=True, exist_ok=True)
    jsonl = folder / SAMPLES_FILE
    done = {i for i, r in read_results(jsonl).items() if r.status != "failed"}
    todo = [s for s in samples if s.id not in done]
    if len(done):
        logger.info("%s: resuming, %d of %d samples already done", policy, len(done), len(samples))
    if policy == "random" and awares_crops is None:
        raise ConfigError("the random policy needs the awares run: use --policy awares,random")

    store = ImageStore()
    shared = AwaResAgent(backend, run_config, store=store)
    write_lock = threading.Lock()

    def evaluate(sample: EvalSample) -> SampleResult:
        return _evaluate(sample, policy, backend, shared, run_config, store, awares_crops, seed)

    _end_torn_line(jsonl)
    with jsonl.open("a", encoding="utf-8") as fh, ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        futures = [pool.submit(evaluate, s) for s in todo]
        try:
            for future in as_completed(futures):
                result = future.result()
                with write_lock:
                    fh.write(_line(result) + "\n")
                    fh.flush()
                    os.fsync(fh.fileno())
                if on_result is not None:
                    on_result(result)
        except BaseException:
            for future in futures:
                future.cancel()
            raise

    results = read_results(jsonl)
    summary = summarize(
        [results[s.id] for s in samples if s.id in results],
        benchmark=benchmark,
        policy=policy,
        model=backend.model_name,
        backend=type(backend).__name__,
    )
    (folder / SUMMARY_FILE).write_text(summary.model_dump_json(indent=2) + "\n", encoding="utf-8")
    return summary


def _end_torn_line(path: Path) -> None:
    """Terminate a last line cut short by a kill, so the next record starts on a line of its own."""
    if path.exists() and path.stat().st_size:
        with path.open("rb+") as fh:
            fh.seek(-1, os.SEEK_END)
            if fh.read(1) != b"\n":
                fh.write(b"\n")


def _evaluate(
    sample: EvalSample,
    policy: str,
    backend: ChatBackend,
    shared: AwaResAgent,
    config: AgentConfig,
    store: ImageStore,
    awares_crops: dict[str, int] | None,
    seed: int,
) -> SampleResult:
    head: dict[str, Any] = {
        "id": sample.id,
        "policy": policy,
        "question": sample.question,
        "answers": sample.answers,
        "metric": sample.metric,
        "category": sample.category,
        "needs_hr": sample.needs_hr,
    }
    source_id = None
    try:
        source = store.hold(sample.image)
        source_id = source.id
        agent = shared
        if policy in ("all-crops", "random", "oracle"):
            count = (awares_crops or {}).get(sample.id, 0) if policy == "random" else None
            wrapped = policy_backend(
                policy,
                backend,
                sample,
                config,
                width=source.width,
                height=source.height,
                awares_crops=count,
                seed=seed,
            )
            agent = AwaResAgent(wrapped, config, store=store)
        result = agent.ask(sample.image, sample.question)
        t = result.trajectory
        return SampleResult(
            status="ok",
            prediction=result.answer,
            score=score(sample.metric, result.answer, sample.answers, question=sample.question),
            crops=[c.region_id for c in t.crops],
            rtr=t.cost.rtr,
            pixel_rtr=t.cost.pixel_rtr,
            visual_tokens=t.cost.sent_tokens,
            full_tokens=t.cost.full_tokens,
            latency_s=t.latency_s,
            trajectory=t,
            **head,
        )
    except ImageError as exc:
        return SampleResult(status="skipped", error=redact(str(exc)), **head)
    except BackendError as exc:
        return SampleResult(status="failed", error=redact(str(exc)), **head)
    except AwaresError as exc:
        return SampleResult(status="skipped", error=redact(str(exc)), **head)
    except Exception as exc:
        # A bug, not bad input: recorded so the run goes on, and tried again on the next run.
        logger.exception("sample %s (%s) failed unexpectedly", sample.id, policy)
        return SampleResult(
            status="failed", error=redact(f"internal error: {type(exc).__name__}: {exc}"), **head
        )
    finally:
        if source_id is not None:
            store.release(source_id)


def _line(result: SampleResult) -> str:
    """The result as one JSON line; one that cannot be encoded is recorded as failed (retried next run)."""
    try:
        return result.model_dump_json()
    except (ValueError, TypeError, RecursionError) as exc:
        logger.error("sample %s: its result cannot be written (%s); recorded as failed", result.id, exc)
        failed = SampleResult(
            status="failed",
            error=f"the result could not be written as JSON: {type(exc).__name__}",
            **result.model_dump(include={"id", "policy", "metric", "category", "needs_hr"}),
            question=valid_text(result.question)[0],
            answers=[valid_text(a)[0] for a in result.answers],
        )
        return failed.model_dump_json()


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
    by_hr = {str(flag).lower(): [r for r in scored if r.needs_hr is flag] for flag in (True, False)}
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
        latency_p50=round(_percentile(latencies, 50), 4),
        latency_p95=round(_percentile(latencies, 95), 4),
        by_category={c: accuracy([r for r in scored if r.category == c]) for c in categories},
        by_needs_hr={k: accuracy(v) for k, v in by_hr.items() if v},
    )


def _percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    rank = max(0, math.ceil(q / 100 * len(sorted_values)) - 1)
    return sorted_values[rank]


def awares_crop_counts(out_dir: str | os.PathLike[str]) -> dict[str, int]:
    """Crops per sample id in the ``awares`` results under ``out_dir`` (for the ``random`` policy)."""
    results = read_results(Path(out_dir) / "awares" / SAMPLES_FILE)
    return {i: len(r.crops) for i, r in results.items() if r.status == "ok"}
