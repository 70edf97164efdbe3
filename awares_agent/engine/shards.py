"""Shard folders: the on-disk store of a resumable run, one row per sample, exactly once, read by its index.

A run (:func:`awares_agent.engine.runner.collect`) writes each finished sample's row to an append-only shard
folder and every failed attempt to a failure log; :class:`ShardWriter` is the one writer of a folder, the
readers (:func:`read_rows`, :func:`read_indexed_rows`, :func:`read_failures`) and :func:`merge` go through its
index. ``--shard i/N`` (:class:`ShardSpec`) splits a dataset across machines by a stable hash of the sample
id; :func:`merge` joins the shards afterwards (from one output directory or several machines').

On-disk layout (one folder per shard; a run without a shard is ``shard-1-of-1``)::

    OUT/
      shard-2-of-4/
        rows.jsonl      the rows, one JSON object per line, exactly as the work returned them
        done.ids        the index: one line {"id": ..., "offset": ..., "length": ...} per finished sample,
                        pointing at its row's bytes in rows.jsonl
        failures.jsonl  one line per failed attempt: {"id", "error", "reason", "attempt", "time"} and, when
                        the run was given ``failure_fields``, "item": what it keeps about the sample
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
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import re
import threading
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Literal, NamedTuple

from pydantic import BaseModel, Field

from awares_agent.errors import AwaresError, ConfigError

__all__ = [
    "FAILURES_FILE",
    "INDEX_FILE",
    "LOCK_FILE",
    "ROWS_FILE",
    "Failure",
    "MergeStats",
    "ShardCorruptError",
    "ShardSpec",
    "ShardWriter",
    "encode_row",
    "merge",
    "read_failures",
    "read_indexed_rows",
    "read_rows",
    "shard_of",
]

logger = logging.getLogger(__name__)

PathLike = str | os.PathLike[str]

ROWS_FILE = "rows.jsonl"
INDEX_FILE = "done.ids"
FAILURES_FILE = "failures.jsonl"
LOCK_FILE = ".lock"

_SHARD_DIR = re.compile(r"shard-(\d+)-of-(\d+)")
_MAX_REASON_CHARS = 2000


class ShardCorruptError(AwaresError):
    """A shard folder's index and rows disagree (edited or truncated by hand, or a different filesystem)."""


class Failure(NamedTuple):
    """One failed attempt at a sample, as :meth:`ShardWriter.commit` records it.

    Attributes:
        sample_id: the sample.
        reason: what went wrong (cut to 2000 characters); never put credentials or payloads here.
        error: the exception type's name, if any.
        item: what the run keeps about the sample with its failure (JSON values, e.g. its question), so that
            a reader of the failures can report it without the dataset; ``None``: nothing.
    """

    sample_id: str
    reason: str
    error: str | None = None
    item: Mapping[str, Any] | None = None


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

    def fail(
        self,
        sample_id: str,
        reason: str,
        *,
        error: str | None = None,
        item: Mapping[str, Any] | None = None,
    ) -> None:
        """Record a failed attempt at ``sample_id`` (it stays pending and is retried by the next run).

        Args:
            sample_id: the sample.
            reason: what went wrong (cut to 2000 characters); never put credentials or payloads here.
            error: the exception type's name, if any.
            item: what to keep about the sample with the failure (see :class:`Failure`).
        """
        self.commit(failures=[Failure(sample_id, reason, error, item)])

    @property
    def broken(self) -> BaseException | None:
        """The error of a write that failed (the writer then refuses to append more), or ``None``."""
        return self._broken

    def commit(
        self,
        rows: Sequence[tuple[str, bytes]] = (),
        failures: Sequence[Failure] = (),
    ) -> int:
        """Durably append a group of encoded rows (see :func:`encode_row`) and failures (two syncs in all).

        The rows are written and synced first, then their index lines, so a kill in between leaves rows that
        are simply ignored. Ids already done (or repeated within ``rows``) are skipped.

        Returns:
            How many rows were written.
        """
        for sample_id, _ in rows:
            self._check_id(sample_id)
        for failure in failures:
            self._check_id(failure.sample_id)
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

    def _commit(self, rows: Sequence[tuple[str, bytes]], failures: Sequence[Failure]) -> int:
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
            for sample_id, reason, error, item in failures:
                if sample_id in self._done:
                    continue
                self._attempts[sample_id] += 1
                reason = _clip(reason)
                self.failures[sample_id] = reason
                record: dict[str, Any] = {
                    "id": sample_id,
                    "error": error,
                    "reason": reason,
                    "attempt": self._attempts[sample_id],
                    "time": now,
                }
                if item is not None:
                    record["item"] = item
                lines.append(_failure_line(record))
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


def _failure_line(record: dict[str, Any]) -> bytes:
    """A failure record as one JSON line; it never fails, since a failure must always be recordable."""
    try:
        return json.dumps(record, ensure_ascii=False, default=_json_default).encode() + b"\n"
    except UnicodeEncodeError:
        # A lone surrogate (undecodable bytes in a reason or an item): escaped, it is still valid JSON.
        return json.dumps(record, default=_json_default).encode() + b"\n"
    except (TypeError, ValueError, RecursionError) as exc:
        logger.warning("%s: the failure's item cannot be written (%s); recorded without", record["id"], exc)
        record.pop("item", None)
        return json.dumps(record).encode() + b"\n"


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
            f"another process is writing to {path.parent}; wait for it to finish, or give this run its "
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
