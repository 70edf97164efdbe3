"""Tests for the run engine (collection's and evaluation's): durable shards, resume, sharding, merge, fault
injection, kill -9."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from chat_server import FAST_RETRY, Completion, Echo, Garbage, HTTPError, ScriptedChatServer
from PIL import Image

from awares_agent.agent import AwaResAgent
from awares_agent.backends.openai_compat import OpenAIBackend
from awares_agent.engine.runner import RetryPolicy, collect, collect_sync
from awares_agent.engine.shards import (
    FAILURES_FILE,
    INDEX_FILE,
    ROWS_FILE,
    ShardSpec,
    ShardWriter,
    merge,
    read_failures,
    read_indexed_rows,
    read_rows,
    shard_of,
)
from awares_agent.errors import (
    BackendHTTPError,
    BackendRateLimitError,
    BackendResponseError,
    ConfigError,
)

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent


def ids(count: int, prefix: str = "s") -> list[str]:
    return [f"{prefix}{n:04d}" for n in range(count)]


async def echo_work(sample_id: str) -> dict[str, object]:
    await asyncio.sleep(0)
    return {"id": sample_id, "value": sample_id.upper()}


def run(items: list[str], work=echo_work, out: Path | None = None, **kw: object):  # type: ignore[no-untyped-def]
    kw.setdefault("progress", False)
    return collect_sync(items, work, out, id_of=lambda s: s, **kw)  # type: ignore[arg-type]


def shard_dir(out: Path, spec: str = "1/1") -> Path:
    return out / ShardSpec.parse(spec).name


def row_ids(source: Path) -> list[str]:
    return [i for i, _ in read_indexed_rows(source)]


# --- shards --------------------------------------------------------------------------------------------


def test_shard_spec_parse_is_one_based_with_clear_errors() -> None:
    spec = ShardSpec.parse(" 2/4 ")
    assert (spec.index, spec.count, spec.name, str(spec)) == (2, 4, "shard-2-of-4", "2/4")
    for bad, hint in (("0/4", "1-based"), ("5/4", "1..4"), ("1/0", ">= 1"), ("a/b", "i/N"), ("3", "i/N")):
        with pytest.raises(ConfigError, match=hint):
            ShardSpec.parse(bad)


def test_shards_are_disjoint_covering_balanced_and_stable_across_processes() -> None:
    names = [*ids(2000), "ünïcode/id 1", "with space", "0"]
    for count in (1, 3, 4):
        owners = [[s for s in range(1, count + 1) if ShardSpec(s, count).contains(i)] for i in names]
        assert all(len(o) == 1 for o in owners)  # each id in exactly one shard
        sizes = Counter(o[0] for o in owners)
        assert set(sizes) == set(range(1, count + 1))
        assert min(sizes.values()) > 0.8 * len(names) / count
    # Golden values: a change of the hash would send samples to other shards on machines with other versions.
    assert [shard_of(f"sample-{i}", 4) for i in range(8)] == [3, 4, 4, 4, 2, 2, 3, 2]
    assert shard_of("ünïcode/id 1", 7) == 6
    # The built-in hash() differs between processes; the shard must not.
    code = (
        "import json, sys; from awares_agent.engine.shards import shard_of; "
        "print(json.dumps([shard_of(i, 5) for i in json.loads(sys.argv[1])]))"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run(
        [sys.executable, "-c", code, json.dumps(names[:300])],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == [shard_of(i, 5) for i in names[:300]]


# --- writing, resuming, torn files ---------------------------------------------------------------------


def test_collect_writes_one_indexed_row_per_sample(tmp_path: Path) -> None:
    stats = run(ids(25), out=tmp_path)
    assert (stats.total, stats.done, stats.skipped_done, stats.failed, stats.complete) == (25, 25, 0, 0, True)
    folder = shard_dir(tmp_path)
    assert stats.path == str(folder)
    rows = list(read_rows(tmp_path))
    assert sorted(r["id"] for r in rows) == ids(25)
    assert all(r["value"] == r["id"].upper() for r in rows)
    # The index points at each row's exact bytes.
    lines = (folder / ROWS_FILE).read_bytes().splitlines(keepends=True)
    index = [json.loads(line) for line in (folder / INDEX_FILE).read_text().splitlines()]
    assert len(lines) == len(index) == 25
    data = (folder / ROWS_FILE).read_bytes()
    for entry in index:
        assert json.loads(data[entry["offset"] : entry["offset"] + entry["length"]])["id"] == entry["id"]

    again = run(ids(30), out=tmp_path)  # resume with more items: only the new ones run
    assert (again.total, again.done, again.skipped_done) == (30, 5, 25)
    assert sorted(row_ids(tmp_path)) == ids(30)


def test_failures_are_recorded_with_reason_and_retried_on_resume(tmp_path: Path) -> None:
    calls: list[str] = []
    bad = {"s0003", "s0007", "s0011"}

    async def flaky(sample_id: str) -> dict[str, object]:
        calls.append(sample_id)
        if sample_id in bad:
            raise BackendHTTPError(f"server answered HTTP 503 for {sample_id}", status_code=503)
        return {"id": sample_id}

    first = run(ids(15), flaky, tmp_path, concurrency=4)
    assert (first.done, first.failed, first.complete, first.remaining) == (12, 3, False, 3)
    assert set(first.failures) == bad
    assert first.failures["s0003"] == "BackendHTTPError: server answered HTTP 503 for s0003"
    logged = [json.loads(line) for line in (shard_dir(tmp_path) / FAILURES_FILE).read_text().splitlines()]
    assert sorted(r["id"] for r in logged) == sorted(bad)
    assert {r["error"] for r in logged} == {"BackendHTTPError"} and {r["attempt"] for r in logged} == {1}
    assert set(read_failures(tmp_path)) == bad

    calls.clear()
    second = run(ids(15), flaky, tmp_path)  # still failing: a second attempt is logged
    assert sorted(calls) == sorted(bad) and second.failed == 3 and second.skipped_done == 12
    assert {r["attempt"] for r in read_failures(tmp_path).values()} == {2}

    bad.clear()
    calls.clear()
    third = run(ids(15), flaky, tmp_path)
    assert sorted(calls) == ["s0003", "s0007", "s0011"]
    assert (third.done, third.failed, third.complete) == (3, 0, True)
    assert read_failures(tmp_path) == {}
    assert sorted(row_ids(tmp_path)) == ids(15)


def test_failures_keep_their_item_and_on_done_hears_each_durable_outcome(tmp_path: Path) -> None:
    async def work(sample_id: str) -> dict[str, object]:
        if sample_id == "s0002":
            raise BackendHTTPError("HTTP 503", status_code=503)
        return {"id": sample_id}

    heard: list[tuple[str, object, str | None, bool]] = []

    def on_done(sample_id: str, row: object, reason: str | None) -> None:
        durable = sample_id in row_ids(tmp_path) or sample_id in read_failures(tmp_path)
        heard.append((sample_id, row, reason, durable))

    def fields(sample_id: str) -> dict[str, object]:
        return {"question": f"what is {sample_id}?", "raw": "bad \ud800 byte"}

    run(ids(4), work, tmp_path, failure_fields=fields, on_done=on_done)
    assert sorted(heard) == [
        ("s0000", {"id": "s0000"}, None, True),
        ("s0001", {"id": "s0001"}, None, True),
        ("s0002", None, "BackendHTTPError: HTTP 503", True),
        ("s0003", {"id": "s0003"}, None, True),
    ]
    failure = read_failures(tmp_path)["s0002"]
    assert failure["item"] == {"question": "what is s0002?", "raw": "bad \ud800 byte"}  # a lone surrogate too
    assert failure["reason"] == "BackendHTTPError: HTTP 503" and failure["attempt"] == 1

    # A callback that raises is logged; the run, its rows and its failures go on regardless.
    def broken(*_: object) -> dict[str, object]:
        raise RuntimeError("the display broke")

    stats = run(ids(6), work, tmp_path, failure_fields=broken, on_done=broken)
    assert (stats.done, stats.failed) == (2, 1)
    assert sorted(row_ids(tmp_path)) == sorted(set(ids(6)) - {"s0002"})
    assert read_failures(tmp_path)["s0002"]["attempt"] == 2 and "item" not in read_failures(tmp_path)["s0002"]


def test_torn_lines_and_unindexed_rows_are_ignored_then_repaired(tmp_path: Path) -> None:
    run(ids(6), out=tmp_path)
    folder = shard_dir(tmp_path)
    size = (folder / ROWS_FILE).stat().st_size
    # What a kill can leave: a complete row that never got indexed, a torn row, and in the index a torn line
    # (here even a whole JSON entry without its newline, pointing at the unindexed row).
    stray = json.dumps({"id": "s0006", "value": "STALE"}).encode() + b"\n"
    with (folder / ROWS_FILE).open("ab") as fh:
        fh.write(stray + b'{"id": "s0007", "val')
    entry = json.dumps({"id": "s0006", "offset": size, "length": len(stray)})
    with (folder / INDEX_FILE).open("a") as fh:
        fh.write(entry)
    with (folder / FAILURES_FILE).open("a") as fh:
        fh.write('{"id": "s0001", "rea')

    assert sorted(row_ids(tmp_path)) == ids(6)  # readers see only indexed, complete rows
    assert read_failures(tmp_path) == {}

    stats = run(ids(9), out=tmp_path)  # the writer repairs the files, then redoes s0006
    assert (stats.done, stats.skipped_done) == (3, 6)
    rows = {r["id"]: r for r in read_rows(tmp_path)}
    assert sorted(rows) == ids(9) and rows["s0006"]["value"] == "S0006"
    # After the repair the files hold exactly one complete line per finished sample.
    for name in (ROWS_FILE, INDEX_FILE):
        text = (folder / name).read_bytes()
        assert text.endswith(b"\n") and len(text.splitlines()) == 9
        assert [json.loads(line)["id"] for line in text.splitlines()].count("s0006") == 1
    assert (folder / FAILURES_FILE).read_bytes() == b""


def test_writer_is_exclusive_idempotent_and_checks_the_shard(tmp_path: Path) -> None:
    spec = ShardSpec(1, 2)
    mine = next(i for i in ids(50) if spec.contains(i))
    other = next(i for i in ids(50) if not spec.contains(i))
    with ShardWriter(tmp_path, shard=spec) as writer:
        with pytest.raises(ConfigError, match="another process"):
            ShardWriter(tmp_path, shard=spec)
        assert writer.write(mine, {"v": 1}) is True
        assert writer.write(mine, {"v": 2}) is False  # exactly one row per id
        with pytest.raises(ConfigError, match="does not belong to shard 1/2"):
            writer.write(other, {"v": 1})
        with pytest.raises(TypeError, match="must be a dict"):
            writer.write(mine, ["not", "a", "dict"])  # type: ignore[arg-type]
        ShardWriter(tmp_path, shard=ShardSpec(2, 2)).close()  # another shard: its own lock
    with ShardWriter(tmp_path, shard=spec) as writer:  # the lock was released
        assert writer.done_ids() == {mine}
    assert list(read_rows(tmp_path)) == [{"v": 1}]


def test_progress_bar_shows_done_and_failed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    async def work(sample_id: str) -> dict[str, object]:
        if sample_id == "s0001":
            raise BackendHTTPError("HTTP 503", status_code=503)
        return {"id": sample_id}

    run(ids(5), work, tmp_path, progress=True, description="labelling")
    out = capsys.readouterr().out
    assert "labelling" in out and "5/5" in out and "1 failed" in out


def test_duplicate_ids_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="'s0001' appears twice"):
        run(["s0000", "s0001", "s0001"], out=tmp_path)


# --- concurrency, retries, errors, cancellation ---------------------------------------------------------


def test_concurrency_bound_is_respected_and_reached(tmp_path: Path) -> None:
    in_flight = peak = 0

    async def slow(sample_id: str) -> dict[str, object]:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.01)
        in_flight -= 1
        return {"id": sample_id}

    t0 = time.perf_counter()
    stats = run(ids(60), slow, tmp_path, concurrency=6)
    assert peak == 6 and stats.done == 60
    assert time.perf_counter() - t0 < 60 * 0.01  # really concurrent, not one at a time


def test_retry_policy_retries_transient_errors_only(tmp_path: Path) -> None:
    tries: Counter[str] = Counter()

    async def work(sample_id: str) -> dict[str, object]:
        tries[sample_id] += 1
        if sample_id == "rate" and tries[sample_id] <= 2:
            raise BackendRateLimitError("kept answering HTTP 429")
        if sample_id == "garbage":
            raise BackendResponseError("returned a body that is not JSON")
        if sample_id == "auth":
            raise BackendHTTPError("HTTP 400: bad request", status_code=400)
        return {"id": sample_id}

    items = ["rate", "garbage", "auth", "fine"]
    stats = run(items, work, tmp_path / "a", retry=RetryPolicy(attempts=3, backoff_s=0.01))
    assert tries == {"rate": 3, "garbage": 1, "auth": 1, "fine": 1}
    assert sorted(stats.failures) == ["auth", "garbage"] and stats.done == 2

    tries.clear()
    stats = run(items, work, tmp_path / "b", retry=RetryPolicy(attempts=2, backoff_s=0))
    assert tries["rate"] == 2 and stats.failures["rate"].startswith("BackendRateLimitError: kept answering")
    with pytest.raises(ConfigError, match="attempts"):
        RetryPolicy(attempts=0)


def test_a_rate_limit_pauses_every_worker(tmp_path: Path) -> None:
    starts: list[tuple[str, float]] = []
    limited_at: list[float] = []

    async def work(sample_id: str) -> dict[str, object]:
        starts.append((sample_id, time.monotonic()))
        if sample_id == "s0002" and not limited_at:
            limited_at.append(time.monotonic())
            raise BackendRateLimitError("kept answering HTTP 429")
        await asyncio.sleep(0.005)
        return {"id": sample_id}

    # Backoff 0.4 s (0.2-0.4 s with jitter): nobody starts a request in the first 0.2 s after the 429.
    stats = run(ids(12), work, tmp_path, concurrency=3, retry=RetryPolicy(attempts=2, backoff_s=0.4))
    assert stats.complete and limited_at
    after = [t - limited_at[0] for _, t in starts if t > limited_at[0]]
    assert after and min(after) >= 0.19


def test_a_bug_in_work_stops_the_run_with_finished_rows_durable(tmp_path: Path) -> None:
    async def buggy(sample_id: str) -> dict[str, object]:
        await asyncio.sleep(0.002 if sample_id != "s0020" else 0.03)
        if sample_id == "s0020":
            raise KeyError("oops")
        return {"id": sample_id}

    with pytest.raises(KeyError, match="oops"):
        run(ids(40), buggy, tmp_path, concurrency=4)
    done = row_ids(tmp_path)
    assert 10 <= len(done) < 40 and len(set(done)) == len(done) and "s0020" not in done

    stats = run(ids(40), buggy, tmp_path, concurrency=4, catch=(Exception,))  # recorded instead
    assert stats.failures == {"s0020": "KeyError: 'oops'"}
    assert sorted(row_ids(tmp_path)) == sorted(set(ids(40)) - {"s0020"})


def test_cancellation_keeps_every_finished_row_and_resume_completes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A slow disk (20 ms per sync): the cancel then lands while a group is being written and more finished
    # rows wait in the queue, which must be written too.
    real_sync = os.fdatasync

    def slow_sync(fd: int) -> None:
        time.sleep(0.02)
        real_sync(fd)

    monkeypatch.setattr(os, "fdatasync", slow_sync)
    started: list[str] = []
    finished: list[str] = []

    async def slow(sample_id: str) -> dict[str, object]:
        started.append(sample_id)
        await asyncio.sleep(0.002)
        finished.append(sample_id)
        return {"id": sample_id}

    async def interrupted() -> None:
        task = asyncio.create_task(
            collect(ids(600), slow, tmp_path, id_of=str, concurrency=32, progress=False)
        )
        while len(started) < 200:
            await asyncio.sleep(0.001)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(interrupted())
    # Every sample whose work returned before the cancel is durable, those still in the writer's queue
    # included; only the ones in flight are lost.
    done = row_ids(tmp_path)
    assert sorted(done) == sorted(finished) and len(done) < 600
    stats = run(ids(600), slow, tmp_path, concurrency=32)
    assert stats.skipped_done == len(done) and stats.complete
    assert sorted(row_ids(tmp_path)) == ids(600)


def test_a_failing_disk_stops_the_run_and_the_shard_recovers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run(ids(10), out=tmp_path)
    real_sync, syncs = os.fdatasync, 0

    def full_disk(fd: int) -> None:
        nonlocal syncs
        syncs += 1
        if syncs == 2:  # the rows of the first group are synced, then the index sync fails
            raise OSError(28, "No space left on device")
        real_sync(fd)

    monkeypatch.setattr(os, "fdatasync", full_disk)
    with pytest.raises(OSError, match="No space left"):
        run(ids(40), out=tmp_path, concurrency=4)
    monkeypatch.setattr(os, "fdatasync", real_sync)
    done = row_ids(tmp_path)
    assert len(set(done)) == len(done) >= 10
    stats = run(ids(40), out=tmp_path)
    assert stats.complete and stats.skipped_done == len(done)
    assert sorted(row_ids(tmp_path)) == ids(40)
    assert len((shard_dir(tmp_path) / ROWS_FILE).read_bytes().splitlines()) == 40


def test_collect_sync_refuses_a_running_loop(tmp_path: Path) -> None:
    async def inside() -> None:
        with pytest.raises(ConfigError, match="await collect"):
            run(ids(2), out=tmp_path)

    asyncio.run(inside())


# --- merge ---------------------------------------------------------------------------------------------


def test_merge_of_shards_from_several_machines(tmp_path: Path) -> None:
    items = ids(90)
    machine_a, machine_b = tmp_path / "a", tmp_path / "b"
    sizes = {}
    for spec, out in (("1/3", machine_a), ("2/3", machine_a), ("3/3", machine_b), ("1/3", machine_b)):
        stats = run(items, out=out, shard=ShardSpec.parse(spec))
        sizes[spec] = stats.total
        assert all(ShardSpec.parse(spec).contains(i) for i in row_ids(shard_dir(out, spec)))
    assert sum(sizes.values()) == 90  # the three shards partition the items

    merged = merge([machine_a, machine_b], tmp_path / "merged")
    assert (merged.rows, merged.duplicates, merged.conflicts, merged.missing_shards) == (
        90,
        sizes["1/3"],
        0,
        [],
    )
    assert len(merged.shards) == 4
    rows = list(read_rows(tmp_path / "merged"))
    assert sorted(r["id"] for r in rows) == items and len(rows) == 90
    assert len((tmp_path / "merged" / ROWS_FILE).read_bytes().splitlines()) == 90

    # Merging again (into the same folder, or the merged folder with a shard) still gives one row per id.
    again = merge([tmp_path / "merged", shard_dir(machine_a, "2/3")], tmp_path / "merged")
    assert (again.rows, again.duplicates) == (90, sizes["2/3"])
    assert sorted(row_ids(tmp_path / "merged")) == items

    partial = merge([shard_dir(machine_a, "1/3"), shard_dir(machine_b, "3/3")], tmp_path / "partial")
    assert partial.missing_shards == ["shard-2-of-3"] and partial.rows == sizes["1/3"] + sizes["3/3"]


def test_merge_conflicting_rows_first_wins_or_error(tmp_path: Path) -> None:
    async def other(sample_id: str) -> dict[str, object]:
        return {"id": sample_id, "value": "different"}

    run(ids(5), out=tmp_path / "a")
    run(ids(5), other, tmp_path / "b")
    stats = merge([tmp_path / "a", tmp_path / "b"], tmp_path / "m")
    assert (stats.rows, stats.conflicts, stats.duplicates) == (5, 5, 0)
    assert {r["value"] for r in read_rows(tmp_path / "m")} == {i.upper() for i in ids(5)}
    with pytest.raises(ConfigError, match="different rows"):
        merge([tmp_path / "a", tmp_path / "b"], tmp_path / "m2", on_conflict="error")
    with pytest.raises(ConfigError, match="no collected shards"):
        merge([tmp_path / "nothing-here"], tmp_path / "m3")


# --- the real agent against a scripted server ----------------------------------------------------------


def images(count: int) -> list[tuple[str, Image.Image]]:
    return [(f"img{n:02d}", Image.new("RGB", (96, 64), (n * 9 % 256, 80, 160))) for n in range(count)]


def agent_work(agent: AwaResAgent):  # type: ignore[no-untyped-def]
    async def work(sample: tuple[str, Image.Image]) -> dict[str, object]:
        sample_id, image = sample
        result = await agent.aask(image, f"What is on sample {sample_id}?")
        return {"sample_id": sample_id, "answer": result.answer, "trajectory": result.trajectory}

    return work


def test_agent_end_to_end_with_429_500_and_garbage(chat_server: ScriptedChatServer, tmp_path: Path) -> None:
    retry_after_0 = {"retry-after": "0"}
    chat_server.enqueue(
        *[Echo("seen: ")] * 10,
        HTTPError(429, {"error": {"message": "slow down"}}, retry_after_0),
        HTTPError(429, {"error": {"message": "slow down"}}, retry_after_0),
        HTTPError(500, {"error": {"message": "CUDA out of memory"}}),
        HTTPError(500, {"error": {"message": "CUDA out of memory"}}),
        Garbage(b'{"id": "chatcmpl-1", "choices": [{"mess'),
        Garbage(b"<html>502 Bad Gateway</html>", content_type="text/html"),
    )
    # No client retries here: each request consumes exactly one scripted reply, whatever the interleaving.
    agent = AwaResAgent(OpenAIBackend("scripted-vlm", base_url=chat_server.base_url, max_retries=0))
    samples = images(16)
    first = collect_sync(
        samples, agent_work(agent), tmp_path, id_of=lambda s: s[0], concurrency=4, progress=False
    )
    assert (first.done, first.failed, first.total) == (10, 6, 16)
    kinds = Counter(r["error"] for r in read_failures(tmp_path).values())
    assert kinds == {"BackendRateLimitError": 2, "BackendHTTPError": 2, "BackendResponseError": 2}
    reasons = " ".join(first.failures.values())
    assert "429" in reasons and "CUDA out of memory" in reasons and "not JSON" in reasons
    assert chat_server.pending == 0 and chat_server.unscripted == 0

    chat_server.enqueue(*[Echo("seen: ")] * 6)
    second = collect_sync(
        samples, agent_work(agent), tmp_path, id_of=lambda s: s[0], concurrency=4, progress=False
    )
    assert (second.done, second.skipped_done, second.failed, second.complete) == (6, 10, 0, True)
    assert len(chat_server.chat_requests) == 22  # the 10 done samples were not asked again
    rows = list(read_rows(tmp_path))
    assert sorted(r["sample_id"] for r in rows) == [s for s, _ in samples]
    for row in rows:  # each row is its own sample's trajectory
        assert row["answer"].startswith("seen: ") and row["sample_id"] in row["answer"]
        assert row["trajectory"]["calls"] == 1 and row["trajectory"]["image"]["width"] == 96
    assert read_failures(tmp_path) == {}


def test_agent_client_and_collector_retries_honour_rate_limits(
    chat_server: ScriptedChatServer, tmp_path: Path
) -> None:
    slow_down = HTTPError(429, {"error": {"message": "slow down"}}, FAST_RETRY)
    chat_server.enqueue(
        slow_down, slow_down, Completion(text="a"),  # sample 0: client retry fails, collector retry succeeds
        HTTPError(500, headers=FAST_RETRY), Completion(text="b"),  # sample 1: the client's own retry succeeds
        Garbage(b"not json"),  # sample 2: a bad reply is not retried
    )  # fmt: skip
    agent = AwaResAgent(OpenAIBackend("scripted-vlm", base_url=chat_server.base_url, max_retries=1))
    samples = images(3)
    stats = collect_sync(
        samples,
        agent_work(agent),
        tmp_path,
        id_of=lambda s: s[0],
        concurrency=1,
        progress=False,
        retry=RetryPolicy(attempts=3, backoff_s=0.01),
    )
    assert (stats.done, stats.failed) == (2, 1) and list(stats.failures) == ["img02"]
    assert "not JSON" in stats.failures["img02"]
    assert {r["sample_id"]: r["answer"] for r in read_rows(tmp_path)} == {"img00": "a", "img01": "b"}
    assert len(chat_server.chat_requests) == 6 and chat_server.pending == 0


# --- kill -9 and resume --------------------------------------------------------------------------------


def _indexed_count(folder: Path) -> int:
    try:
        return (folder / INDEX_FILE).read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def test_sigkill_mid_run_then_resume_gives_exactly_one_row_per_sample(tmp_path: Path) -> None:
    count = 200
    folder = shard_dir(tmp_path)
    command = [sys.executable, str(TESTS / "collect_worker.py"), str(tmp_path), str(count), "8"]
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    killed_at = []
    for threshold in (40, 120):
        proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while _indexed_count(folder) < threshold and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.002)
        proc.send_signal(signal.SIGKILL)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == -signal.SIGKILL, err.decode()[-2000:]
        killed_at.append(_indexed_count(folder))
        # A folder left by a kill reads correctly before anyone repairs it.
        done = row_ids(tmp_path)
        assert len(done) == len(set(done)) >= threshold
    assert killed_at[-1] < count  # the kills really landed mid-run

    final = subprocess.run(command, env=env, capture_output=True, timeout=120)
    assert final.returncode == 0, final.stderr.decode()[-2000:]
    rows = list(read_rows(tmp_path))
    assert sorted(r["id"] for r in rows) == ids(count)  # every sample, exactly once
    assert all(r["payload"] == "x" * (200 + (r["n"] * 397) % 4000) for r in rows)  # and intact
    for name in (ROWS_FILE, INDEX_FILE):
        assert len((folder / name).read_bytes().splitlines()) == count


def test_ctrl_c_stops_cleanly_and_resume_completes(tmp_path: Path) -> None:
    count = 200
    folder = shard_dir(tmp_path)
    # Concurrency 2: slow enough (about 4 s) that the signal lands mid-run even on a busy machine.
    command = [sys.executable, str(TESTS / "collect_worker.py"), str(tmp_path), str(count), "2"]
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while _indexed_count(folder) < 40 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.002)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode != 0 and b"KeyboardInterrupt" in err, err.decode()[-2000:]
    raised = set(re.findall(r"^[\w.]*?(\w+(?:Error|Exception))\b", err.decode(), flags=re.MULTILINE))
    assert raised <= {"CancelledError"}, err.decode()[-2000:]  # nothing else broke on the way out
    done = row_ids(tmp_path)
    assert 40 <= len(done) < count and len(set(done)) == len(done)
    # A clean stop leaves no unindexed or torn rows behind, and releases the shard's lock.
    assert len((folder / ROWS_FILE).read_bytes().splitlines()) == len(done)
    with ShardWriter(tmp_path) as writer:
        assert writer.done_ids() == set(done)
    stats = run([f"s{n:04d}" for n in range(count)], out=tmp_path)
    assert stats.skipped_done == len(done) and stats.complete
