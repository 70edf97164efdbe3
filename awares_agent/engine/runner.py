"""The run engine: an async work function over many samples, concurrently, resumably, exactly once.

:func:`collect` calls ``work(item)`` for every item of a dataset (at most ``concurrency`` calls in flight),
writes each returned row to an append-only shard on disk (:mod:`awares_agent.engine.shards`: the layout and
the exactly-once guarantees), and records every failure with its reason. Run it again with the same output
directory and it resumes: finished samples are skipped, failed and unfinished ones are tried again. Both
``awares collect`` (:mod:`awares_agent.collect`) and ``awares eval`` (:mod:`awares_agent.evals.runner`) run
on it.

Rows are committed in groups (one ``fsync`` of the rows, then one of the index, for every row that finished
meanwhile) on a worker thread, so durability costs neither the event loop nor throughput.

Failures: an exception from ``work`` of a type in ``catch`` (default:
:class:`~awares_agent.errors.AwaresError`, which covers every backend error after the client's own retries,
and bad images) is recorded in ``failures.jsonl`` as ``"<ExceptionType>: <message>"`` (backends already keep
API keys out of their messages; no request payload is stored), and the run goes on; the next run tries the
sample again. Any other exception is a bug in ``work`` and stops the run at once (after making everything
already finished durable) rather than being repeated on every sample. ``KeyboardInterrupt`` and task
cancellation stop the run the same way.

Rate limits: OpenAI-compatible backends already retry 429/5xx/timeouts, honouring ``Retry-After``. A
:class:`RetryPolicy` adds retries at the collector level for the errors worth retrying (rate limit, timeout,
connection, HTTP 408/409/5xx), with exponential backoff; a rate-limit error also pauses the start of new
requests by every worker for the backoff, so a server asking to slow down is not hit by the other requests.

``work`` must be a coroutine function; wrap a blocking one as ``lambda item: asyncio.to_thread(fn, item)``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel, Field, computed_field

from awares_agent.engine.shards import FAILURES_FILE, Failure, ShardSpec, ShardWriter, encode_row
from awares_agent.errors import (
    AwaresError,
    BackendAuthError,
    BackendConnectionError,
    BackendHTTPError,
    BackendRateLimitError,
    BackendTimeoutError,
    ConfigError,
)
from awares_agent.redact import redact

__all__ = ["CollectionStats", "OnDone", "RetryPolicy", "collect", "collect_sync"]

logger = logging.getLogger(__name__)

T = TypeVar("T")
PathLike = str | os.PathLike[str]

#: Rows waiting for the writer thread, beyond which finished work waits (keeps memory flat on a slow disk).
_MAX_PENDING_ROWS = 1024


@dataclass(frozen=True)
class RetryPolicy:
    """Collector-level retries of a sample whose ``work`` raised a transient backend error.

    These come on top of the backend client's own retries (which already honour ``Retry-After``): use them for
    long runs against a rate-limited API, where a sample should wait and try again rather than be left for
    the next run. Retried: :class:`~awares_agent.errors.BackendRateLimitError`,
    :class:`~awares_agent.errors.BackendTimeoutError`, :class:`~awares_agent.errors.BackendConnectionError`,
    and :class:`~awares_agent.errors.BackendHTTPError` with status 408, 409, 429 or 5xx. Not retried: bad
    replies, refused credentials, bad images, anything else.

    Args:
        attempts: tries per sample in one run, the first included (1: no retry).
        backoff_s: wait before the first retry; doubles with each further retry (with up to 50% jitter off).
        max_backoff_s: cap on one wait.

    Raises:
        ConfigError: ``attempts`` < 1 or a negative wait.
    """

    attempts: int = 3
    backoff_s: float = 1.0
    max_backoff_s: float = 30.0

    def __post_init__(self) -> None:
        if not isinstance(self.attempts, int) or self.attempts < 1:
            raise ConfigError(f"RetryPolicy: attempts must be an integer >= 1, got {self.attempts!r}")
        if self.backoff_s < 0 or self.max_backoff_s < 0:
            raise ConfigError("RetryPolicy: backoff_s and max_backoff_s must be >= 0 seconds")

    def retryable(self, exc: BaseException) -> bool:
        """Whether ``exc`` is a transient error worth another try."""
        if isinstance(exc, (BackendRateLimitError, BackendTimeoutError, BackendConnectionError)):
            return True
        if isinstance(exc, BackendHTTPError) and not isinstance(exc, BackendAuthError):
            code = exc.status_code
            return code is not None and (code >= 500 or code in (408, 409, 429))
        return False

    def delay(self, failed: int) -> float:
        """Seconds to wait after the ``failed``-th failed try (1-based)."""
        base = min(self.max_backoff_s, self.backoff_s * 2 ** (failed - 1))
        return base * random.uniform(0.5, 1.0)


class CollectionStats(BaseModel):
    """What one :func:`collect` run did.

    Attributes:
        total: samples in this run's shard (duplicates excluded).
        done: samples finished (row durable and indexed) by this run.
        skipped_done: samples already finished before this run (not redone).
        failed: samples whose last try in this run failed (recorded; retried by the next run).
        elapsed_s: wall-clock seconds of the run.
        failures: ``id -> reason`` for this run's failures.
        shard: the shard, e.g. ``"2/4"``.
        path: the shard's folder.
    """

    total: int
    done: int
    skipped_done: int
    failed: int
    elapsed_s: float
    failures: dict[str, str] = Field(default_factory=dict)
    shard: str = "1/1"
    path: str = ""

    @computed_field  # type: ignore[prop-decorator]
    @property
    def remaining(self) -> int:
        """Samples of the shard still not done (failed, or not reached because the run stopped)."""
        return self.total - self.skipped_done - self.done

    @computed_field  # type: ignore[prop-decorator]
    @property
    def complete(self) -> bool:
        """Whether every sample of the shard is done."""
        return self.remaining == 0


class _Gate:
    """Holds back the start of new requests after a rate-limit error, for every worker."""

    def __init__(self) -> None:
        self._until = 0.0

    def pause(self, seconds: float) -> None:
        self._until = max(self._until, time.monotonic() + seconds)

    async def wait(self) -> None:
        while (left := self._until - time.monotonic()) > 0:
            await asyncio.sleep(left)


#: Called after a sample's outcome is durable: ``(sample id, the row work returned or None, failure reason or
#: None)``.
OnDone = Callable[[str, Any, str | None], None]


@dataclass
class _Outcome:
    """One sample's outcome on its way to the writer: an encoded row, or a failure."""

    sample_id: str
    line: bytes | None
    reason: str | None = None
    error: str | None = None
    item: Mapping[str, Any] | None = None
    row: Any = None  # the row as work returned it, held until committed only for on_done


_STOP: Any = object()


async def collect(
    items: Sequence[T],
    work: Callable[[T], Awaitable[Mapping[str, Any] | BaseModel]],
    out_dir: PathLike,
    *,
    id_of: Callable[[T], str],
    concurrency: int = 8,
    shard: ShardSpec | None = None,
    progress: bool = True,
    description: str = "collect",
    retry: RetryPolicy | None = None,
    catch: tuple[type[Exception], ...] = (AwaresError,),
    failure_fields: Callable[[T], Mapping[str, Any]] | None = None,
    on_done: OnDone | None = None,
) -> CollectionStats:
    """Run ``work`` over every not-yet-done item of ``items`` (of this shard) and write one row per item.

    Resumable: run it again with the same ``out_dir`` (and shard) and only the samples not done are run, the
    failed ones included. See the module docstring for the on-disk layout and the guarantees.

    Args:
        items: the dataset. It is read twice: once for every id (to count, shard and skip), then once more for
            each sample run, as ``items[i]``; no row is kept in memory longer than it takes to write it.
        work: ``async`` function from an item to its row (a JSON-serialisable dict, or a pydantic model).
            Wrap a blocking function as ``lambda item: asyncio.to_thread(fn, item)``.
        out_dir: the output directory (the shard's folder is created in it).
        id_of: an item's unique, stable sample id (e.g. ``lambda s: s.id``).
        concurrency: calls of ``work`` in flight at once.
        shard: run only this shard of the dataset (default: all of it).
        progress: show a progress bar (rich) on the terminal.
        description: the progress bar's label.
        retry: collector-level retries of transient backend errors (default: none beyond the backend's own).
        catch: exception types recorded as a sample's failure; any other exception stops the run and is
            raised (after everything finished so far is made durable). Pass ``(Exception,)`` to record all.
        failure_fields: what to keep about an item with each of its failure records (JSON values, e.g. its
            question), stored under ``"item"`` in ``failures.jsonl`` and given back by
            :func:`~awares_agent.engine.shards.read_failures`, so failures can be reported without the
            dataset.
        on_done: called on the event loop with ``(sample id, row, reason)`` for every sample this run
            finishes, once its outcome is durable: the row ``work`` returned (and ``None``), or ``None`` and
            the failure's reason. For progress displays: it must not block, and an error in it is logged.

    Returns:
        The run's :class:`CollectionStats`.

    Raises:
        ConfigError: bad options, a duplicate or empty id, or another process writing the same shard.
    """
    if not isinstance(concurrency, int) or concurrency < 1:
        raise ConfigError(f"collect: concurrency must be an integer >= 1, got {concurrency!r}")
    started = time.perf_counter()
    with ShardWriter(out_dir, shard=shard) as writer:
        spec = writer.shard
        todo, total, skipped = _plan(items, id_of, spec, writer)
        if skipped:
            logger.info("%s: resuming, %d of %d samples already done", writer.path, skipped, total)
        job = _Job(items, work, writer, concurrency, retry, catch, failure_fields, on_done)
        with _progress_bar(progress, description, total, skipped) as bar:
            await _run(job, todo, bar, skipped)
        stats = CollectionStats(
            total=total,
            done=writer.written,
            skipped_done=skipped,
            failed=len(writer.failures),
            elapsed_s=round(time.perf_counter() - started, 4),
            failures=dict(writer.failures),
            shard=str(spec),
            path=str(writer.path),
        )
    if stats.failed:
        logger.warning(
            "%s: %d samples failed (reasons in %s); run again to retry them",
            writer.path,
            stats.failed,
            FAILURES_FILE,
        )
    return stats


def _plan(
    items: Sequence[T], id_of: Callable[[T], str], spec: ShardSpec, writer: ShardWriter
) -> tuple[list[tuple[int, str]], int, int]:
    """``(position, id)`` of each item still to run, the shard's size, and how many are already done."""
    done = writer.done_ids()
    first_seen: dict[str, int] = {}
    todo: list[tuple[int, str]] = []
    skipped = 0
    for position, item in enumerate(items):
        sample_id = id_of(item)
        if not isinstance(sample_id, str) or not sample_id:
            raise ConfigError(
                f"collect: item {position} has id {sample_id!r}; id_of must return a non-empty string"
            )
        if not spec.contains(sample_id):
            continue
        if sample_id in first_seen:
            raise ConfigError(
                f"collect: sample id {sample_id!r} appears twice "
                f"(items {first_seen[sample_id]} and {position}); "
                f"ids must be unique, since the collector keeps exactly one row per id"
            )
        first_seen[sample_id] = position
        if sample_id in done:
            skipped += 1
        else:
            todo.append((position, sample_id))
    return todo, len(first_seen), skipped


@dataclass
class _Job:
    """What one :func:`collect` call runs: its arguments, bound to the shard's writer."""

    items: Sequence[Any]
    work: Callable[[Any], Awaitable[Mapping[str, Any] | BaseModel]]
    writer: ShardWriter
    concurrency: int
    retry: RetryPolicy | None
    catch: tuple[type[Exception], ...]
    failure_fields: Callable[[Any], Mapping[str, Any]] | None
    on_done: OnDone | None


async def _run(job: _Job, todo: list[tuple[int, str]], bar: _Bar, skipped: int) -> None:
    """Workers take items from one shared iterator; a writer task commits their outcomes in groups."""
    items, work, writer, retry, catch = job.items, job.work, job.writer, job.retry, job.catch
    loop = asyncio.get_running_loop()
    # A thread of its own for the group commits: a 10 ms fsync never holds up the work's asyncio.to_thread
    # calls in the default executor.
    commits = ThreadPoolExecutor(max_workers=1, thread_name_prefix="awares-collect-writer")
    queue: asyncio.Queue[_Outcome] = asyncio.Queue(maxsize=_MAX_PENDING_ROWS)
    gate = _Gate()
    pending = iter(todo)

    def report() -> None:
        bar.update(skipped + writer.written + len(writer.failures), len(writer.failures))

    def failure(item: Any, sample_id: str, reason: str, error: str) -> _Outcome:
        fields = None
        if job.failure_fields is not None:
            try:
                fields = job.failure_fields(item)
            except Exception:  # the failure is still recorded, only without its item
                logger.exception("%s: failure_fields raised", sample_id)
        return _Outcome(sample_id, None, reason, error, item=fields)

    async def attempt(item: Any, sample_id: str) -> _Outcome:
        failed = 0
        while True:
            await gate.wait()
            try:
                row = await work(item)
            except catch as exc:
                failed += 1
                if retry is not None and failed < retry.attempts and retry.retryable(exc):
                    delay = retry.delay(failed)
                    if isinstance(exc, BackendRateLimitError):
                        gate.pause(delay)
                    logger.info("%s: %s; retrying in %.2f s", sample_id, type(exc).__name__, delay)
                    await asyncio.sleep(delay)
                    continue
                if not isinstance(exc, AwaresError):  # not bad input: a bug worth its traceback in the log
                    logger.error("%s failed unexpectedly", sample_id, exc_info=exc)
                return failure(item, sample_id, redact(f"{type(exc).__name__}: {exc}"), type(exc).__name__)
            try:
                line = encode_row(row)
            except (TypeError, ValueError, RecursionError) as exc:
                # One sample's unencodable row is that sample's failure, never the run's end.
                reason = redact(f"its row could not be encoded as JSON: {type(exc).__name__}: {exc}")
                return failure(item, sample_id, reason, type(exc).__name__)
            return _Outcome(sample_id, line, row=row if job.on_done is not None else None)

    async def worker() -> None:
        for position, sample_id in pending:  # one shared iterator: every item goes to exactly one worker
            await queue.put(await attempt(items[position], sample_id))

    def commit(batch: list[_Outcome]) -> None:
        writer.commit(
            rows=[(o.sample_id, o.line) for o in batch if o.line is not None],
            failures=[Failure(o.sample_id, o.reason or "", o.error, o.item) for o in batch if o.line is None],
        )

    def done(batch: list[_Outcome]) -> None:
        if job.on_done is None:
            return
        for o in batch:
            try:
                job.on_done(o.sample_id, o.row, o.reason if o.line is None else None)
            except Exception:  # a progress display's bug must not stop a run whose rows are durable
                logger.exception("%s: on_done raised", o.sample_id)

    async def write_loop() -> None:
        while True:
            batch = [await queue.get()]
            while not queue.empty():
                batch.append(queue.get_nowait())
            stop = any(o is _STOP for o in batch)
            batch = [o for o in batch if o is not _STOP]
            if batch:
                # Shielded: if this task is cancelled, the group being written still completes.
                await asyncio.shield(loop.run_in_executor(commits, commit, batch))
                report()
                done(batch)
            if stop:
                return

    writer_task = asyncio.create_task(write_loop())
    workers = [asyncio.create_task(worker()) for _ in range(min(job.concurrency, len(todo)))]
    try:
        running: set[asyncio.Task[None]] = {*workers, writer_task}
        while not all(w.done() for w in workers):
            finished, running = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
            for task in finished:
                if task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
        await queue.put(_STOP)
        await writer_task
    finally:
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        writer_task.cancel()
        await asyncio.gather(writer_task, return_exceptions=True)
        commits.shutdown(wait=True)  # a group handed to the thread before a cancel is still written
        # Outcomes still queued (the run was interrupted): make them durable too.
        rest = []
        while not queue.empty():
            outcome = queue.get_nowait()
            if outcome is not _STOP:
                rest.append(outcome)
        if writer.broken is None:  # after a failed write, the error being raised says it all
            commit(rest)
            done(rest)
        report()


class _Bar:
    """A rich progress bar, or nothing."""

    def __init__(self, progress: Any = None, task: Any = None) -> None:
        self._progress, self._task = progress, task

    def update(self, completed: int, failed: int) -> None:
        if self._progress is not None:
            self._progress.update(self._task, completed=completed, failed=failed)


@contextlib.contextmanager
def _progress_bar(enabled: bool, description: str, total: int, completed: int) -> Iterator[_Bar]:
    if not enabled:
        yield _Bar()
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TaskProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TextColumn("[red]{task.fields[failed]} failed"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, transient=False) as progress:
        task = progress.add_task(description, total=total, completed=completed, failed=0)
        yield _Bar(progress, task)


def collect_sync(
    items: Sequence[T],
    work: Callable[[T], Awaitable[Mapping[str, Any] | BaseModel]],
    out_dir: PathLike,
    *,
    id_of: Callable[[T], str],
    concurrency: int = 8,
    shard: ShardSpec | None = None,
    progress: bool = True,
    description: str = "collect",
    retry: RetryPolicy | None = None,
    catch: tuple[type[Exception], ...] = (AwaresError,),
    failure_fields: Callable[[T], Mapping[str, Any]] | None = None,
    on_done: OnDone | None = None,
) -> CollectionStats:
    """Blocking :func:`collect` (runs its own event loop), for the CLI and scripts; same arguments.

    Ctrl-C stops the run with everything finished so far durable, then raises ``KeyboardInterrupt``.

    Raises:
        ConfigError: called from inside a running event loop (``await collect(...)`` there instead).
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        raise ConfigError("collect_sync() cannot run inside an event loop; use `await collect(...)` there")
    return asyncio.run(
        collect(
            items,
            work,
            out_dir,
            id_of=id_of,
            concurrency=concurrency,
            shard=shard,
            progress=progress,
            description=description,
            retry=retry,
            catch=catch,
            failure_fields=failure_fields,
            on_done=on_done,
        )
    )
