"""The collector runtime: run an async work function over many samples, concurrently, resumably, exactly once.

:func:`collect` calls ``work(item)`` for every item of a dataset (at most ``concurrency`` calls in flight),
writes each returned row to an append-only shard on disk, and records every failure with its reason. Run it
again with the same output directory and it resumes: finished samples are skipped, failed and unfinished ones
are tried again. ``--shard i/N`` (:class:`ShardSpec`) splits a dataset across machines by a stable hash of the
sample id; :func:`merge` joins the shards afterwards (from one output directory or several machines').

On-disk layout (one folder per shard; a run without a shard is ``shard-1-of-1``)::

    OUT/
      shard-2-of-4/
        rows.jsonl      the rows, one JSON object per line, exactly as ``work`` returned them
        done.ids        the index: one line {"id": ..., "offset": ..., "length": ...} per finished sample,
                        pointing at its row's bytes in rows.jsonl
        failures.jsonl  one line per failed attempt: {"id", "error", "reason", "attempt", "time"}
        .lock           held (``flock``) by the one process writing this shard

A merged folder (:func:`merge`) has the same ``rows.jsonl`` + ``done.ids`` pair, so it reads like a shard.

Exactly once, whatever instant the process is killed at (``SIGKILL`` included):

* a sample counts as done only when its id is in the index, and its index line is appended only after its row
  is durable (written, flushed and ``fsync``-ed). A row without an index line is ignored and the sample
  redone;
* only newline-terminated index lines count, so a line torn by a kill never marks anything done;
* the next writer to open the shard first cuts both files back to their last good byte (the torn index line;
  every row past the last indexed one), so ``rows.jsonl`` again holds exactly one line per finished id;
* readers (:func:`read_rows`, :func:`merge`) go through the index, so they are right even on a folder left
  by a killed run that nobody has reopened.

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
import fcntl
import hashlib
import json
import logging
import os
import random
import re
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Literal, TypeVar

from pydantic import BaseModel, Field, computed_field

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

__all__ = [
    "FAILURES_FILE",
    "INDEX_FILE",
    "ROWS_FILE",
    "CollectionStats",
    "MergeStats",
    "RetryPolicy",
    "ShardCorruptError",
    "ShardSpec",
    "ShardWriter",
    "collect",
    "collect_sync",
    "encode_row",
    "merge",
    "read_failures",
    "read_indexed_rows",
    "read_rows",
    "shard_of",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")
PathLike = str | os.PathLike[str]

ROWS_FILE = "rows.jsonl"
INDEX_FILE = "done.ids"
FAILURES_FILE = "failures.jsonl"
LOCK_FILE = ".lock"

_SHARD_DIR = re.compile(r"shard-(\d+)-of-(\d+)")
_MAX_REASON_CHARS = 2000
#: Rows waiting for the writer thread, beyond which finished work waits (keeps memory flat on a slow disk).
_MAX_PENDING_ROWS = 1024


class ShardCorruptError(AwaresError):
    """A shard folder's index and rows disagree (edited or truncated by hand, or a different filesystem)."""


# --- shards --------------------------------------------------------------------------------------------


def shard_of(sample_id: str, count: int) -> int:
    """The 1-based shard (of ``count``) that ``sample_id`` belongs to.

    A stable hash (SHA-256 of the UTF-8 id), the same on every machine, Python version and process, unlike
    the built-in ``hash()``.
    """
    digest = hashlib.sha256(sample_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % count + 1


@dataclass(frozen=True)
class ShardSpec:
    """One part of a dataset split across machines: shard ``index`` of ``count``, **1-based** (1/4..4/4).

    A sample belongs to exactly one shard, chosen by :func:`shard_of` from its id alone, so the machines need
    neither the same dataset order nor any coordination.

    Args:
        index: which shard, from 1 to ``count``.
        count: how many shards the dataset is split into.

    Raises:
        ConfigError: ``count`` < 1 or ``index`` outside ``1..count``.
    """

    index: int
    count: int

    def __post_init__(self) -> None:
        if not isinstance(self.count, int) or isinstance(self.count, bool) or self.count < 1:
            raise ConfigError(f"shard count must be an integer >= 1, got {self.count!r}")
        if (
            not isinstance(self.index, int)
            or isinstance(self.index, bool)
            or not 1 <= self.index <= self.count
        ):
            raise ConfigError(
                f"shard {self.index!r}/{self.count}: the shard index is 1-based and must lie in "
                f"1..{self.count} "
                f"(e.g. 1/{self.count} for the first of {self.count} machines)"
            )

    @classmethod
    def parse(cls, text: str) -> ShardSpec:
        """Parse ``"i/N"`` (1-based: ``"1/4"`` is the first of four shards), as given to ``--shard``.

        Raises:
            ConfigError: the text is not ``i/N`` with ``1 <= i <= N``.
        """
        match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text or "")
        if match is None:
            raise ConfigError(
                f"--shard {text!r}: expected i/N with 1 <= i <= N, e.g. --shard 1/4 for the first of four "
                f"machines"
            )
        return cls(int(match[1]), int(match[2]))

    def contains(self, sample_id: str) -> bool:
        """Whether ``sample_id`` belongs to this shard."""
        return self.count == 1 or shard_of(sample_id, self.count) == self.index

    @property
    def name(self) -> str:
        """The shard's folder name, e.g. ``shard-2-of-4``."""
        return f"shard-{self.index}-of-{self.count}"

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


# --- the writer ----------------------------------------------------------------------------------------


class ShardWriter:
    """The one writer of a shard folder: durable rows, the index of finished ids, and the failure log.

    Opening it takes an exclusive lock on the folder (released when closed or when the process dies) and
    repairs what a killed writer may have left: a torn last index line, rows that were never indexed, a torn
    failure line. All methods are thread-safe. Use it as a context manager, or call :meth:`close`.

    Args:
        out_dir: the output directory; the shard's folder (``out_dir/shard-<i>-of-<N>``) is created in it.
        shard: which shard (default: the whole dataset, ``shard-1-of-1``).

    Raises:
        ConfigError: another process is writing to the same shard folder.
        ShardCorruptError: the index points past the end of the rows (the folder was altered by hand).
    """

    def __init__(self, out_dir: PathLike, *, shard: ShardSpec | None = None) -> None:
        self.shard = shard or ShardSpec(1, 1)
        self.path = Path(out_dir) / self.shard.name
        self.path.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._lock_file = _acquire_lock(self.path / LOCK_FILE)
        self._closed = False
        self._broken: BaseException | None = None
        #: Rows indexed by this writer, and this writer's failures (id -> reason; cleared by a later success).
        self.written = 0
        self.failures: dict[str, str] = {}
        try:
            self._done, rows_end = _recover_index(self.path / INDEX_FILE)
            _truncate_rows(self.path / ROWS_FILE, rows_end)
            self._attempts = Counter(
                f["id"]
                for f in _read_jsonl(self.path / FAILURES_FILE, repair=True)
                if f["id"] not in self._done
            )
            self._rows = (self.path / ROWS_FILE).open("ab")
            self._index = (self.path / INDEX_FILE).open("ab")
            self._failures = (self.path / FAILURES_FILE).open("ab")
        except BaseException:
            self._lock_file.close()
            raise

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def done_ids(self) -> set[str]:
        """The ids already finished in this shard (a copy)."""
        with self._lock:
            return set(self._done)

    def is_done(self, sample_id: str) -> bool:
        """Whether ``sample_id`` is already finished in this shard."""
        with self._lock:
            return sample_id in self._done

    def attempts(self, sample_id: str) -> int:
        """How many failed attempts are recorded for ``sample_id`` (0 once it is done)."""
        with self._lock:
            return 0 if sample_id in self._done else self._attempts[sample_id]

    def write(self, sample_id: str, row: Mapping[str, Any] | BaseModel) -> bool:
        """Append ``row`` for ``sample_id`` durably and mark the id done.

        Returns:
            ``False`` (and writes nothing) when the id was already done: a sample has exactly one row.

        Raises:
            ConfigError: the id does not belong to this writer's shard.
            TypeError, ValueError: the row is not a JSON-serialisable mapping (NaN included).
        """
        return self.commit(rows=[(sample_id, encode_row(row))]) == 1

    def fail(self, sample_id: str, reason: str, *, error: str | None = None) -> None:
        """Record a failed attempt at ``sample_id`` (it stays pending and is retried by the next run).

        Args:
            sample_id: the sample.
            reason: what went wrong (cut to 2000 characters); never put credentials or payloads here.
            error: the exception type's name, if any.
        """
        self.commit(failures=[(sample_id, reason, error)])

    def commit(
        self,
        rows: Sequence[tuple[str, bytes]] = (),
        failures: Sequence[tuple[str, str, str | None]] = (),
    ) -> int:
        """Durably append a group of encoded rows (see :func:`encode_row`) and failures (two syncs in all).

        The rows are written and synced first, then their index lines, so a kill in between leaves rows that
        are simply ignored. Ids already done (or repeated within ``rows``) are skipped.

        Returns:
            How many rows were written.
        """
        for sample_id, _ in rows:
            self._check_id(sample_id)
        for sample_id, _, _ in failures:
            self._check_id(sample_id)
        with self._lock:
            if self._closed:
                raise ConfigError(f"the writer of {self.path} is closed")
            if self._broken is not None:
                raise ConfigError(
                    f"an earlier write to {self.path} failed ({self._broken}); fix the cause and run again: "
                    f"the shard is repaired when it is next opened"
                )
            try:
                return self._commit(rows, failures)
            except BaseException as exc:
                # A failed write (disk full...) may have left a torn line: append nothing more after it. The
                # next writer to open the shard cuts it off.
                self._broken = exc
                raise

    def _commit(
        self, rows: Sequence[tuple[str, bytes]], failures: Sequence[tuple[str, str, str | None]]
    ) -> int:
        fresh: dict[str, bytes] = {}
        for sample_id, line in rows:
            if sample_id not in self._done and sample_id not in fresh:
                fresh[sample_id] = line
        if fresh:
            offset = os.fstat(self._rows.fileno()).st_size
            entries = []
            for sample_id, line in fresh.items():
                entries.append(_index_line(sample_id, offset, len(line)))
                offset += len(line)
            _append(self._rows, b"".join(fresh.values()))
            _append(self._index, b"".join(entries))
            self._done.update(fresh)
            self.written += len(fresh)
            for sample_id in fresh:
                self.failures.pop(sample_id, None)
                self._attempts.pop(sample_id, None)
        if failures:
            now = datetime.now(UTC).isoformat(timespec="seconds")
            lines = []
            for sample_id, reason, error in failures:
                if sample_id in self._done:
                    continue
                self._attempts[sample_id] += 1
                reason = _clip(reason)
                self.failures[sample_id] = reason
                record = {
                    "id": sample_id,
                    "error": error,
                    "reason": reason,
                    "attempt": self._attempts[sample_id],
                    "time": now,
                }
                lines.append(json.dumps(record, ensure_ascii=False).encode() + b"\n")
            _append(self._failures, b"".join(lines))
        return len(fresh)

    def close(self) -> None:
        """Close the files and release the folder's lock (waits for a commit in progress)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for fh in (self._rows, self._index, self._failures):
                fh.close()
            self._lock_file.close()

    def _check_id(self, sample_id: str) -> None:
        if not isinstance(sample_id, str) or not sample_id:
            raise ConfigError(f"sample ids must be non-empty strings, got {sample_id!r}")
        if not self.shard.contains(sample_id):
            raise ConfigError(f"sample id {sample_id!r} does not belong to shard {self.shard} ({self.path})")


def encode_row(row: Mapping[str, Any] | BaseModel) -> bytes:
    """A row as one JSON line (UTF-8, newline-terminated); pydantic models in it are dumped in JSON mode.

    Raises:
        TypeError: the row is not a mapping, or holds something JSON cannot encode.
        ValueError: the row holds NaN or infinity (not valid JSON).
    """
    if isinstance(row, BaseModel):
        return row.model_dump_json().encode() + b"\n"
    if not isinstance(row, Mapping):
        raise TypeError(f"a collected row must be a dict (or a pydantic model), got {type(row).__name__}")
    text = json.dumps(row, ensure_ascii=False, allow_nan=False, separators=(",", ":"), default=_json_default)
    return text.encode() + b"\n"


def _json_default(value: Any) -> Any:
    if isinstance(value, BaseModel):  # e.g. a Trajectory inside the row
        return value.model_dump(mode="json")
    raise TypeError(f"a collected row holds a {type(value).__name__}, which JSON cannot encode")


def _index_line(sample_id: str, offset: int, length: int) -> bytes:
    return (
        json.dumps({"id": sample_id, "offset": offset, "length": length}, ensure_ascii=False).encode() + b"\n"
    )


def _append(fh: IO[bytes], data: bytes) -> None:
    fh.write(data)
    fh.flush()
    # fdatasync skips the inode's timestamps; the data and the file size are what must survive.
    getattr(os, "fdatasync", os.fsync)(fh.fileno())


def _clip(text: str) -> str:
    return text if len(text) <= _MAX_REASON_CHARS else text[:_MAX_REASON_CHARS] + "..."


def _acquire_lock(path: Path) -> IO[bytes]:
    fh = path.open("ab")
    try:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.close()
        raise ConfigError(
            f"another process is collecting into {path.parent}; wait for it to finish, or give this run its "
            f"own --shard or output directory"
        ) from None
    return fh


def _complete_lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """``(end offset, line)`` for every newline-terminated line of ``path`` (a torn last line is left out)."""
    if not path.exists():
        return
    end = 0
    with path.open("rb") as fh:
        for line in fh:
            if not line.endswith(b"\n"):
                return
            end += len(line)
            yield end, line


def _index_entries(path: Path) -> Iterator[tuple[int, str, int, int]]:
    """``(line end, id, offset, length)`` for every valid index line."""
    for end, line in _complete_lines(path):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
            sample_id, offset, length = entry["id"], entry["offset"], entry["length"]
        except (ValueError, KeyError, TypeError):
            logger.warning("%s: skipping a line that is not an index entry: %r", path, line[:120])
            continue
        if not isinstance(sample_id, str) or not isinstance(offset, int) or not isinstance(length, int):
            logger.warning("%s: skipping a malformed index entry: %r", path, line[:120])
            continue
        yield end, sample_id, offset, length


def _recover_index(path: Path) -> tuple[set[str], int]:
    """The done ids and the end of the last indexed row; cuts a torn last line off the index."""
    done: set[str] = set()
    good_end = rows_end = 0
    for end, sample_id, offset, length in _index_entries(path):
        done.add(sample_id)
        rows_end = max(rows_end, offset + length)
        good_end = end
    for end, _ in _complete_lines(path):  # complete lines that were skipped as malformed are kept
        good_end = max(good_end, end)
    if path.exists() and path.stat().st_size > good_end:
        logger.info("%s: dropping a torn last line left by an interrupted run", path)
        with path.open("rb+") as fh:
            fh.truncate(good_end)
    return done, rows_end


def _truncate_rows(path: Path, rows_end: int) -> None:
    size = path.stat().st_size if path.exists() else 0
    if size < rows_end:
        raise ShardCorruptError(
            f"{path.parent}: {INDEX_FILE} lists rows up to byte {rows_end} but {ROWS_FILE} has only {size} "
            f"bytes; the folder was altered. Restore it, or delete {INDEX_FILE} to collect the shard again"
        )
    if size > rows_end:
        # Rows written but never indexed (the process died before indexing them): their samples are redone.
        logger.info(
            "%s: dropping %d bytes of unindexed rows left by an interrupted run", path, size - rows_end
        )
        with path.open("rb+") as fh:
            fh.truncate(rows_end)


def _read_jsonl(path: Path, *, repair: bool = False) -> Iterator[dict[str, Any]]:
    """The JSON objects of complete lines; with ``repair``, first cut off a torn last line."""
    if not path.exists():
        return
    if repair:
        good_end = 0
        for end, _ in _complete_lines(path):
            good_end = end
        if path.stat().st_size > good_end:
            with path.open("rb+") as fh:
                fh.truncate(good_end)
    for _, line in _complete_lines(path):
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and isinstance(record.get("id"), str):
            yield record


# --- reading and merging -------------------------------------------------------------------------------


def _shard_dirs(source: PathLike) -> list[Path]:
    path = Path(source)
    if (path / INDEX_FILE).exists() or _SHARD_DIR.fullmatch(path.name):
        return [path]
    found = sorted(
        (p for p in path.glob("shard-*-of-*") if p.is_dir() and _SHARD_DIR.fullmatch(p.name)),
        key=lambda p: tuple(int(n) for n in _SHARD_DIR.fullmatch(p.name).groups()[::-1]),  # type: ignore[union-attr]
    )
    if not found:
        raise ConfigError(
            f"{path} holds no collected shards (no {INDEX_FILE}, no shard-<i>-of-<N> folders); pass the "
            f"output directory given to collect, a shard folder, or a merged folder"
        )
    return found


def _sources(sources: PathLike | Iterable[PathLike]) -> list[Path]:
    items = [sources] if isinstance(sources, (str, os.PathLike)) else list(sources)
    return [d for s in items for d in _shard_dirs(s)]


def _indexed_lines(shard_dir: Path) -> Iterator[tuple[str, bytes]]:
    """``(id, raw row line)`` for every indexed row of one shard folder, in index order."""
    rows_path = shard_dir / ROWS_FILE
    entries = _index_entries(shard_dir / INDEX_FILE)
    first = next(entries, None)
    if first is None:
        return
    with rows_path.open("rb") as rows:
        for _, sample_id, offset, length in (first, *entries):
            rows.seek(offset)
            line = rows.read(length)
            if len(line) != length or not line.endswith(b"\n"):
                raise ShardCorruptError(
                    f"{rows_path}: the index points sample {sample_id!r} at bytes "
                    f"{offset}..{offset + length}, "
                    f"which do not hold a complete row; the folder was altered. Restore it, or delete "
                    f"{INDEX_FILE} to collect the shard again"
                )
            yield sample_id, line


def read_indexed_rows(sources: PathLike | Iterable[PathLike]) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(sample id, row)`` for every finished sample: only indexed rows, the first one per id.

    Args:
        sources: an output directory of :func:`collect` (every shard folder in it is read), a shard folder, a
            merged folder, or several of these.

    Raises:
        ConfigError: a source holds no collected shard.
        ShardCorruptError: an index entry does not point at a complete row.
    """
    seen: set[str] = set()
    for shard_dir in _sources(sources):
        for sample_id, line in _indexed_lines(shard_dir):
            if sample_id not in seen:
                seen.add(sample_id)
                yield sample_id, json.loads(line)


def read_rows(sources: PathLike | Iterable[PathLike]) -> Iterator[dict[str, Any]]:
    """The rows of every finished sample, one per id, streamed (see :func:`read_indexed_rows`).

    Rows written but never indexed (a run killed at that instant) and torn last lines are ignored.
    """
    for _, row in read_indexed_rows(sources):
        yield row


def read_failures(sources: PathLike | Iterable[PathLike]) -> dict[str, dict[str, Any]]:
    """The latest failure record of every sample that failed and is still not done.

    Returns:
        ``{id: {"id", "error", "reason", "attempt", "time"}}``.
    """
    pending: dict[str, dict[str, Any]] = {}
    for shard_dir in _sources(sources):
        done = {sample_id for _, sample_id, _, _ in _index_entries(shard_dir / INDEX_FILE)}
        for record in _read_jsonl(shard_dir / FAILURES_FILE):
            if record["id"] not in done:
                pending[record["id"]] = record
    return pending


class MergeStats(BaseModel):
    """What :func:`merge` did.

    Attributes:
        dest: the merged folder.
        rows: rows written to ``dest/rows.jsonl`` (one per id).
        duplicates: rows seen again for an id with identical content (dropped).
        conflicts: rows seen again for an id with different content (dropped: the first source wins).
        shards: the shard folders read, in order.
        missing_shards: shards absent from a split (e.g. ``shard-3-of-4`` when only 1, 2 and 4 were given).
    """

    dest: str
    rows: int
    duplicates: int
    conflicts: int
    shards: list[str]
    missing_shards: list[str] = Field(default_factory=list)


def merge(
    sources: PathLike | Sequence[PathLike],
    dest: PathLike,
    *,
    on_conflict: Literal["first", "error"] = "first",
) -> MergeStats:
    """Merge shard folders (from one or several machines' output directories) into ``dest``.

    ``dest`` gets ``rows.jsonl`` and ``done.ids`` with exactly one row per id, in source order; it can be read
    with :func:`read_rows` or merged again. A sample found in several sources (a shard run twice, or split
    counts that overlap) keeps its first row; copies with identical bytes count as ``duplicates``, others as
    ``conflicts`` (a warning, or an error with ``on_conflict="error"``). The files are written aside and moved
    into place at the end, so a merge that dies leaves ``dest`` as it was or with no index (empty), never
    half-indexed.

    Args:
        sources: output directories of :func:`collect`, shard folders or merged folders.
        dest: the merged folder (created; an earlier merge there is replaced).
        on_conflict: ``"first"`` keeps the first row of an id; ``"error"`` raises on differing rows.

    Raises:
        ConfigError: a source holds no shard, or conflicting rows with ``on_conflict="error"``.
        ShardCorruptError: a source's index does not point at complete rows.
    """
    if on_conflict not in ("first", "error"):
        raise ConfigError(f"merge: on_conflict must be 'first' or 'error', got {on_conflict!r}")
    shard_dirs = _sources(sources)
    out = Path(dest)
    out.mkdir(parents=True, exist_ok=True)
    tmp_rows, tmp_index = out / f".{ROWS_FILE}.tmp", out / f".{INDEX_FILE}.tmp"
    digests: dict[str, bytes] = {}
    duplicates = conflicts = 0
    with tmp_rows.open("wb") as rows, tmp_index.open("wb") as index:
        offset = 0
        for shard_dir in shard_dirs:
            for sample_id, line in _indexed_lines(shard_dir):
                digest = hashlib.blake2b(line, digest_size=16).digest()
                if sample_id in digests:
                    if digests[sample_id] == digest:
                        duplicates += 1
                        continue
                    if on_conflict == "error":
                        raise ConfigError(
                            f"merge: sample {sample_id!r} has different rows in two sources (the second in "
                            f"{shard_dir}); remove the stale source, or pass on_conflict='first'"
                        )
                    conflicts += 1
                    logger.warning(
                        "merge: %s has differing rows; keeping the first (%s)", sample_id, shard_dir
                    )
                    continue
                digests[sample_id] = digest
                rows.write(line)
                index.write(_index_line(sample_id, offset, len(line)))
                offset += len(line)
        for fh in (rows, index):
            fh.flush()
            os.fsync(fh.fileno())
    # Index last: in between, dest holds rows without an index, which reads as nothing done.
    (out / INDEX_FILE).unlink(missing_ok=True)
    os.replace(tmp_rows, out / ROWS_FILE)
    os.replace(tmp_index, out / INDEX_FILE)

    splits: dict[int, set[int]] = {}
    for shard_dir in shard_dirs:
        match = _SHARD_DIR.fullmatch(shard_dir.name)
        if match:
            splits.setdefault(int(match[2]), set()).add(int(match[1]))
    missing = [
        f"shard-{i}-of-{n}" for n, seen in sorted(splits.items()) for i in range(1, n + 1) if i not in seen
    ]
    if missing:
        logger.warning("merge: missing %s; their samples are not in %s", ", ".join(missing), out)
    return MergeStats(
        dest=str(out),
        rows=len(digests),
        duplicates=duplicates,
        conflicts=conflicts,
        shards=[str(d) for d in shard_dirs],
        missing_shards=missing,
    )


# --- the collector -------------------------------------------------------------------------------------


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


_Outcome = tuple[str, bytes | None, str | None, str | None]  # id, row line | None, reason, error type
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
        with _progress_bar(progress, description, total, skipped) as bar:
            await _run(items, todo, work, writer, concurrency, retry, catch, bar, skipped)
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


async def _run(
    items: Sequence[T],
    todo: list[tuple[int, str]],
    work: Callable[[T], Awaitable[Mapping[str, Any] | BaseModel]],
    writer: ShardWriter,
    concurrency: int,
    retry: RetryPolicy | None,
    catch: tuple[type[Exception], ...],
    bar: _Bar,
    skipped: int,
) -> None:
    """Workers take items from one shared iterator; a writer task commits their outcomes in groups."""
    loop = asyncio.get_running_loop()
    # A thread of its own for the group commits: a 10 ms fsync never holds up the work's asyncio.to_thread
    # calls in the default executor.
    commits = ThreadPoolExecutor(max_workers=1, thread_name_prefix="awares-collect-writer")
    queue: asyncio.Queue[_Outcome] = asyncio.Queue(maxsize=_MAX_PENDING_ROWS)
    gate = _Gate()
    pending = iter(todo)

    def report() -> None:
        bar.update(skipped + writer.written + len(writer.failures), len(writer.failures))

    async def attempt(item: T, sample_id: str) -> _Outcome:
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
                return sample_id, None, redact(f"{type(exc).__name__}: {exc}"), type(exc).__name__
            try:
                return sample_id, encode_row(row), None, None
            except (TypeError, ValueError, RecursionError) as exc:
                # One sample's unencodable row is that sample's failure, never the run's end.
                reason = redact(f"its row could not be encoded as JSON: {type(exc).__name__}: {exc}")
                return sample_id, None, reason, type(exc).__name__

    async def worker() -> None:
        for position, sample_id in pending:  # one shared iterator: every item goes to exactly one worker
            await queue.put(await attempt(items[position], sample_id))

    def commit(batch: list[_Outcome]) -> None:
        writer.commit(
            rows=[(i, line) for i, line, _, _ in batch if line is not None],
            failures=[(i, reason or "", error) for i, line, reason, error in batch if line is None],
        )

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
            if stop:
                return

    writer_task = asyncio.create_task(write_loop())
    workers = [asyncio.create_task(worker()) for _ in range(min(concurrency, len(todo)))]
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
        if writer._broken is None:  # after a failed write, the error being raised says it all
            commit(rest)
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
        )
    )
