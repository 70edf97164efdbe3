"""Reliability figures for the README: bad images, runs killed with SIGKILL then resumed, hostile replies.

Everything is measured when the script runs, nothing is carried over:

* **bad images**: every case of the bad- and odd-image matrix (``tests/bad_images.py``: corrupt, truncated,
  empty, decompression bombs, extreme sizes, every PIL mode, EXIF rotation, animations, SVG, PDF, a folder,
  URLs, a missing path...) through ``AwaResAgent.ask``, with a stand-in model that answers at once and again
  with one that first requests the ``all`` crop. A case is handled when a valid image is answered and a bad
  one raises a typed :class:`~awares_agent.errors.ImageError` (anything else escaping, or a valid image
  refused, is not);
* **collection killed**: ``tests/collect_worker.py`` (the run engine, 20-60 ms per sample, 8 in
  flight) is killed with SIGKILL ``--kills`` times, each at a random moment after its first write of that
  attempt, resumed each time, then run to the end. Lost = ids missing from the final rows, duplicated = ids
  with more than one row (in the index-aware reader, or as raw lines in ``rows.jsonl``);
* **evaluation killed**: ``tests/eval_worker.py`` (``awares_agent.evals.runner.run_policy`` on the run
  engine, a stand-in model sleeping 2-8 ms per call, one sample in ten with a corrupt image) the same way.
  Lost = ids without a final record in ``read_results``; duplicated = ids with more than one record (in the
  index-aware reader, or as raw lines in the policy's ``rows.jsonl``);

* **hostile replies**: seeded random model replies (``tests/reply_fuzz.py``) through the real agent, in
  process, through ``OpenAIBackend`` and the loopback server, and through ``awares ask``; see
  :func:`fuzz_section`.

A kill counts as survived when the folder it left reads consistently before anyone repairs it (no id is done
twice, none is unknown; a torn line is ignored); the next attempt then resumes from that folder.

    python benchmarks/bench_reliability.py [--quick] [--kills 20] [--seed 0]

The default run takes about 5 minutes on 2 cores, ``--quick`` about 45 s.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from bad_images import CASES, OkBackend  # the shared case builders and stand-in model

from awares_agent.agent import AwaResAgent
from awares_agent.engine.shards import INDEX_FILE, ROWS_FILE, ShardSpec, read_indexed_rows
from awares_agent.errors import ImageError
from awares_agent.evals.runner import read_results

ROOT = Path(__file__).resolve().parents[1]
TESTS = ROOT / "tests"
Row = tuple[str, str]

# Each attempt is killed this long (at most) after its first write: short enough that every kill lands
# mid-run, long enough that some land inside a write.
KILL_WINDOW_S = 0.3
START_TIMEOUT_S = 60.0


# --- bad images ----------------------------------------------------------------------------------------


def bad_image_section(quick: bool) -> list[Row]:
    """Every case of the matrix through ``AwaResAgent.ask``, answering at once and cropping first."""
    modes = [False] if quick else [False, True]
    handled = answered = refused = escaped = wrongly_refused = 0
    slowest_bomb_ms = 0.0
    with tempfile.TemporaryDirectory() as folder:
        for case in CASES:
            image = case.build(Path(folder))
            ok = True
            for crop_first in modes:
                agent = AwaResAgent(OkBackend(crop_first=crop_first))
                started = time.perf_counter()
                try:
                    result = agent.ask(image, "What is in the image?")
                    ok &= case.valid and result.answer == "ok"
                    result.model_dump_json()
                except ImageError:
                    ok &= not case.valid
                    wrongly_refused += case.valid
                except Exception as exc:  # what the matrix exists to catch: report it, do not stop
                    print(f"  {case.name}: {type(exc).__name__} escaped: {exc}", file=sys.stderr)
                    ok = False
                    escaped += 1
                if case.bomb:
                    slowest_bomb_ms = max(slowest_bomb_ms, 1000 * (time.perf_counter() - started))
            handled += ok
            answered += ok and case.valid
            refused += ok and not case.valid
    bombs = sum(c.bomb for c in CASES)
    how = "answering at once" if quick else "answering at once, and cropping first"
    return [
        ("bad/odd images: cases tried", f"{len(CASES)} ({how})"),
        (
            "bad/odd images: handled (answered, or typed ImageError)",
            f"{handled} / {len(CASES)} ({answered} answered, {refused} refused)",
        ),
        (
            "bad/odd images: other exceptions escaping / valid images refused",
            f"{escaped} / {wrongly_refused}",
        ),
        (f"decompression bombs ({bombs}): slowest refusal", f"{slowest_bomb_ms:.1f} ms"),
    ]


# --- kill, resume, repeat ------------------------------------------------------------------------------


def _lines(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def _kill_and_resume(
    command: list[str], progress: Path, kills: int, rng: random.Random, check: Callable[[], bool]
) -> tuple[list[int], int, int, float]:
    """Start ``command`` and SIGKILL it at a random moment after its first write to ``progress``, ``kills``
    times, calling ``check()`` (True: consistent) on what each kill left; then run it to the end.

    Returns:
        (lines in ``progress`` after each kill that landed mid-run, kills survived, exit code of the final
        run, seconds in all).
    """
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    started = time.perf_counter()
    landed: list[int] = []
    survived = 0
    for _ in range(kills):
        before = _lines(progress)
        proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + START_TIMEOUT_S
        while _lines(progress) <= before and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.001)
        time.sleep(rng.uniform(0, KILL_WINDOW_S))
        proc.send_signal(signal.SIGKILL)
        _, err = proc.communicate(timeout=30)
        if proc.returncode != -signal.SIGKILL:  # it finished (or failed) before the kill: not a kill
            print(f"  run exited {proc.returncode} before the kill: {err.decode()[-500:]}", file=sys.stderr)
            continue
        landed.append(_lines(progress))
        survived += bool(check())
    final = subprocess.run(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=600)
    if final.returncode != 0:
        print(f"  final run exited {final.returncode}: {final.stderr.decode()[-1000:]}", file=sys.stderr)
    return landed, survived, final.returncode, time.perf_counter() - started


def _spread(values: list[int]) -> str:
    return f"{min(values)} to {max(values)}" if values else "-"


def collection_section(kills: int, count: int, seed: int) -> list[Row]:
    """The collector killed ``kills`` times over ``count`` samples, resumed each time, then finished."""
    expected = {f"s{n:04d}" for n in range(count)}
    with tempfile.TemporaryDirectory() as out:
        folder = Path(out) / ShardSpec.parse("1/1").name
        command = [sys.executable, str(TESTS / "collect_worker.py"), out, str(count), "8"]

        def consistent() -> bool:
            done = [i for i, _ in read_indexed_rows(Path(out))]
            return len(done) == len(set(done)) and set(done) <= expected

        landed, survived, code, seconds = _kill_and_resume(
            command, folder / INDEX_FILE, kills, random.Random(seed), consistent
        )
        rows = Counter(i for i, _ in read_indexed_rows(Path(out)))
        raw = Counter(json.loads(line)["id"] for line in (folder / ROWS_FILE).read_bytes().splitlines())
    lost = len(expected - set(rows))
    duplicated = len({i for i, n in rows.items() if n > 1} | {i for i, n in raw.items() if n > 1})
    return [
        ("collection: samples / kills (SIGKILL)", f"{count} / {len(landed)} of {kills} landed mid-run"),
        ("collection: records on disk at the kills", _spread(landed)),
        ("collection: samples lost / duplicated", f"{lost} / {duplicated}"),
        (
            "collection: kills survived",
            f"{survived} / {len(landed)} (final run exit {code}, {seconds:.0f} s)",
        ),
    ]


def _left_torn(folder: Path) -> bool:
    """Whether a killed writer left a torn index line or rows never indexed in a shard folder."""
    index, rows = folder / INDEX_FILE, folder / ROWS_FILE
    if not index.exists():
        return rows.exists() and rows.stat().st_size > 0
    data = index.read_bytes()
    if data and not data.endswith(b"\n"):
        return True
    ends = [entry["offset"] + entry["length"] for entry in map(json.loads, data.splitlines()) if entry]
    return rows.exists() and rows.stat().st_size > max(ends, default=0)


def eval_section(kills: int, count: int, seed: int) -> list[Row]:
    """The evaluation runner killed ``kills`` times over ``count`` samples, resumed each time, then done."""
    expected = {f"e{n:04d}" for n in range(count)}
    with tempfile.TemporaryDirectory() as out:
        policy = Path(out) / "awares"
        folder = policy / ShardSpec.parse("1/1").name
        command = [sys.executable, str(TESTS / "eval_worker.py"), out, str(count), "4"]
        torn = 0

        def consistent() -> bool:
            nonlocal torn
            if not folder.exists():
                return True
            torn += _left_torn(folder)
            done = [i for i, _ in read_indexed_rows(policy)]
            recorded = read_results(policy)
            return len(done) == len(set(done)) and set(done) <= expected and set(recorded) <= expected

        landed, survived, code, seconds = _kill_and_resume(
            command, folder / INDEX_FILE, kills, random.Random(seed), consistent
        )
        results = read_results(policy)
        indexed = Counter(i for i, _ in read_indexed_rows(policy))
        raw = Counter(json.loads(line)["id"] for line in (folder / ROWS_FILE).read_bytes().splitlines())
    lost = len(expected - set(results))
    duplicated = len({i for i, n in indexed.items() if n > 1} | {i for i, n in raw.items() if n > 1})
    statuses = Counter(r.status for r in results.values())
    return [
        ("evaluation: samples / kills (SIGKILL)", f"{count} / {len(landed)} of {kills} landed mid-run"),
        ("evaluation: records on disk at the kills", _spread(landed)),
        ("evaluation: samples lost / duplicated", f"{lost} / {duplicated}"),
        (
            "evaluation: final records",
            f"{statuses['ok']} scored, {statuses['skipped']} skipped (corrupt image), "
            f"{statuses['failed']} failed",
        ),
        ("evaluation: kills that left a torn line or unindexed rows (ignored on read)", str(torn)),
        (
            "evaluation: kills survived",
            f"{survived} / {len(landed)} (final run exit {code}, {seconds:.0f} s)",
        ),
    ]


# --- model replies -------------------------------------------------------------------------------------


def fuzz_section(quick: bool, seed: int) -> list[Row]:
    """Randomised hostile model replies through the real agent (``tests/reply_fuzz.py``), as (figure, value)
    rows: per protocol, in process and through ``OpenAIBackend`` and the loopback server, and through
    ``awares ask``.

    A reply is handled when its query answers with a result that serialises and reads back, or raises a typed
    :class:`~awares_agent.errors.AwaresError`; an escape is anything else (an untyped exception, a result
    that does not serialise, a planted key in a result or an error message).

    Args:
        quick: a short run (``--quick``).
        seed: seeds the replies.
    """
    import tempfile

    from PIL import Image
    from reply_fuzz import fuzz_cli, fuzz_http, fuzz_inprocess

    inprocess, http, cli = (2_000, 500, 20) if quick else (20_000, 5_000, 100)
    rows: list[Row] = []
    escapes = 0
    with tempfile.TemporaryDirectory() as tmp:
        image = str(Path(tmp) / "page.png")
        Image.new("RGB", (320, 240), "white").save(image)
        for protocol in ("json", "awares-text"):
            for where, stats in (
                ("in process", fuzz_inprocess(protocol, inprocess, seed=seed)),
                ("loopback server", fuzz_http(protocol, http, seed=seed)),
                ("awares ask", fuzz_cli(protocol, cli, image, seed=seed)),
            ):
                escapes += len(stats.escapes)
                typed = sum(stats.typed_errors.values())
                rows.append(
                    (
                        f"replies, {protocol}, {where}: replies / queries",
                        f"{stats.replies} / {stats.queries} ({stats.answered} answered, {typed} typed "
                        f"errors, {len(stats.escapes)} escapes)",
                    )
                )
    rows.append(("replies: escapes (untyped, unserialisable, key leaked)", str(escapes)))
    return rows


# --- main ------------------------------------------------------------------------------------------------


def markdown(rows: list[Row]) -> str:
    """``rows`` as a two-column markdown table."""
    width = max(len(f) for f, _ in rows)
    lines = [f"| {'figure'.ljust(width)} | value |", f"|{'-' * (width + 2)}|-------|"]
    lines += [f"| {figure.ljust(width)} | {value} |" for figure, value in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Measure and print the figures; 1 if a sample was lost or duplicated or an image case not handled."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer kills and samples (about 20 s)")
    parser.add_argument("--kills", type=int, help="kills per run (default: 20; --quick: 5)")
    parser.add_argument("--seed", type=int, default=0, help="seeds the kill moments (default: 0)")
    args = parser.parse_args(argv)
    kills = args.kills if args.kills is not None else (5 if args.quick else 20)
    collect_count, eval_count = (400, 300) if args.quick else (2000, 1200)

    # torn lines are expected here, and counted
    logging.getLogger("awares_agent.engine").setLevel(logging.ERROR)
    logging.getLogger("awares_agent.evals.runner").setLevel(logging.ERROR)
    started = time.perf_counter()
    rows = bad_image_section(args.quick)
    rows += collection_section(kills, collect_count, args.seed)
    rows += eval_section(kills, eval_count, args.seed)
    rows += fuzz_section(args.quick, args.seed)
    print(markdown(rows))
    print(
        f"\n{'quick run' if args.quick else 'run'}: seed {args.seed}, {time.perf_counter() - started:.0f} s"
    )
    failed = [v for f, v in rows if "lost / duplicated" in f and v != "0 / 0"]
    failed += [v for f, v in rows if f.startswith("replies: escapes") and v != "0"]
    handled = next(v for f, v in rows if f.startswith("bad/odd images: handled"))
    return 1 if failed or not handled.startswith(f"{len(CASES)} /") else 0


if __name__ == "__main__":
    sys.exit(main())
