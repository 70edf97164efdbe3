"""Every bad or odd image (``tests/bad_images.py``) through the entry points a user touches, end to end.

* ``AwaResAgent.ask`` (and ``ask_many``/``aask_many``): a valid odd image is answered and its result
  serialises; a bad one raises the expected :class:`~awares_agent.errors.ImageError` naming the input, before
  the model is called, and nothing else escapes;
* ``awares_agent.evals.runner.run_policy``: bad samples are ``skipped`` with the reason, good ones scored,
  and a rerun
  redoes nothing;
* ``awares ask``: exit code 2 and one ``error: ...`` line on stderr, against a loopback server and with the
  offline reader.

The unit-level behaviour (ids, colour conversion, orientation, the bomb guard's arithmetic) is tested in
``test_images.py`` and ``test_image_store.py``.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from bad_images import BAD, CASES, VALID, ImageCase, OkBackend, label
from chat_server import Completion, ScriptedChatServer

from awares_agent.agent import AskResult, AwaResAgent
from awares_agent.cli import main
from awares_agent.evals.runner import read_results, run_policy
from awares_agent.evals.schema import EvalSample
from awares_agent.images import ImageInput

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
QUESTION = "What is in the image?"
ON_DISK = [c for c in CASES if c.given_as in ("path", "url")]  # what a command line can name


def ids(case: ImageCase) -> str:
    return case.name


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, ImageInput]:
    """Every case's input, built once as real files under one folder."""
    folder = tmp_path_factory.mktemp("bad-images")
    return {case.name: case.build(folder) for case in CASES}


def close(colour: tuple[int, ...], expected: tuple[int, int, int], tolerance: int = 40) -> bool:
    return all(abs(c - e) <= tolerance for c, e in zip(colour, expected, strict=True))


def check_refusal(case: ImageCase, image: ImageInput, error: BaseException) -> None:
    """``error`` is the case's ImageError subclass, and its message names the input and what is wrong."""
    assert type(error) is case.error, f"{case.name}: {type(error).__name__}: {error}"
    message = str(error)
    assert label(image) in message
    assert case.says in message
    assert error.source == label(image)  # type: ignore[attr-defined]
    assert "\n" not in message


def test_the_matrix_covers_what_it_claims() -> None:
    names = [c.name for c in CASES]
    assert len(names) == len(set(names))
    modes = {"1", "L", "LA", "P", "PA", "RGB", "RGBA", "CMYK", "YCbCr", "LAB", "HSV", "I", "I;16", "F"}
    assert {n for n in names if n.startswith("mode-") and n.endswith("-pil")} == {
        f"mode-{m.replace(';', '-').lower()}-pil" for m in modes
    }
    assert sum(c.bomb for c in CASES) >= 5 and len(VALID) >= 30 and len(BAD) >= 25


# --- a) the Python API ---------------------------------------------------------------------------------


@pytest.mark.parametrize("crop_first", [False, True], ids=["answer-at-once", "crop-all-first"])
@pytest.mark.parametrize("case", CASES, ids=ids)
def test_agent_ask(case: ImageCase, crop_first: bool, built: dict[str, ImageInput]) -> None:
    backend = OkBackend(crop_first=crop_first)
    agent = AwaResAgent(backend)
    image = built[case.name]
    if not case.valid:
        with pytest.raises(case.error) as info:  # type: ignore[arg-type]
            agent.ask(image, QUESTION)
        check_refusal(case, image, info.value)
        assert backend.calls == 0  # refused before the model saw anything
        return

    result = agent.ask(image, QUESTION)
    assert result.answer == "ok"
    record = json.loads(result.model_dump_json())
    assert record["answer"] == "ok"
    assert (record["trajectory"]["image"]["width"], record["trajectory"]["image"]["height"]) == case.size
    width, height = case.size  # type: ignore[misc]
    view = agent.store.get(result.trajectory.view.id)
    assert view.mode == "RGB" and view.size == (max(1, width // 2), max(1, height // 2))
    if case.corner is not None:
        assert close(view.getpixel((0, 0)), case.corner), view.getpixel((0, 0))  # type: ignore[arg-type]
    if crop_first:
        assert backend.calls == 2
        assert [(c.region_id, tuple(c.box)) for c in result.crops] == [("all", (0, 0, width, height))]
        crop = agent.store.get(result.crops[0].image_id)
        assert crop.mode == "RGB" and crop.size == (width, height)
        if case.corner is not None:
            assert close(crop.getpixel((0, 0)), case.corner)  # type: ignore[arg-type]
    else:
        assert backend.calls == 1 and result.crops == []


@pytest.mark.parametrize("runner", ["ask_many", "aask_many"])
def test_many_queries_keep_every_outcome_in_its_place(runner: str, built: dict[str, ImageInput]) -> None:
    agent = AwaResAgent(OkBackend(crop_first=True))
    queries = [(built[c.name], QUESTION) for c in CASES]
    if runner == "ask_many":
        outcomes = agent.ask_many(queries, max_concurrency=8, return_exceptions=True)
    else:
        outcomes = asyncio.run(agent.aask_many(queries, max_concurrency=8, return_exceptions=True))
    for case, outcome in zip(CASES, outcomes, strict=True):
        if case.valid:
            assert isinstance(outcome, AskResult) and outcome.answer == "ok", case.name
        else:
            check_refusal(case, built[case.name], outcome)


BOMB_PROBE = """
import json, resource, sys, tempfile, time
from pathlib import Path
from bad_images import CASES, OkBackend
from awares_agent.agent import AwaResAgent
from awares_agent.errors import ImageError

bombs = [(case, case.build(Path(tempfile.mkdtemp()))) for case in CASES if case.bomb]
agent = AwaResAgent(OkBackend())
vm = next(int(l.split()[1]) * 1024 for l in open("/proc/self/status") if l.startswith("VmSize:"))
# From here on, reserving more than 512 MiB more (even memory never touched) fails.
resource.setrlimit(resource.RLIMIT_AS, (vm + (512 << 20), resource.RLIM_INFINITY))
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
outcomes = {}
for case, image in bombs:
    started = time.perf_counter()
    try:
        agent.ask(image, "What is in the image?")
        outcome = "answered"
    except ImageError as exc:
        outcome = type(exc).__name__
    outcomes[case.name] = [outcome, time.perf_counter() - started]
grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024
print(json.dumps({"outcomes": outcomes, "rss_growth": grown}))
"""


@pytest.mark.skipif(sys.platform != "linux", reason="uses RLIMIT_AS and /proc")
def test_bombs_are_refused_at_once_without_allocating() -> None:
    # In a fresh process whose address space is capped just above what it already uses: a decode, or even a
    # canvas reserved and never touched (PIL's WebP reader does that while opening), fails there.
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(TESTS), os.environ.get("PYTHONPATH", "")]),
    }
    done = subprocess.run(
        [sys.executable, "-c", BOMB_PROBE], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    expected = {c.name: c.error.__name__ for c in CASES if c.bomb}  # type: ignore[union-attr]
    assert {name: outcome for name, (outcome, _) in report["outcomes"].items()} == expected
    assert all(seconds < 0.5 for _, seconds in report["outcomes"].values()), report
    assert report["rss_growth"] < 32 << 20, report


# --- b) the evaluation runner --------------------------------------------------------------------------


@pytest.mark.parametrize("policy", ["awares", "full-res"])
def test_eval_run_skips_bad_images_scores_good_ones_and_resumes(
    policy: str, built: dict[str, ImageInput], tmp_path: Path
) -> None:
    samples = [
        EvalSample(id=c.name, image=built[c.name], question=QUESTION, answers=["ok"], category=c.given_as)
        for c in CASES
    ]
    backend = OkBackend()
    summary = run_policy(samples, backend, policy, tmp_path, concurrency=4)

    jsonl = tmp_path / policy / "shard-1-of-1" / "rows.jsonl"  # the run engine's rows
    results = read_results(tmp_path / policy)
    assert set(results) == {c.name for c in CASES}
    for case in CASES:
        result = results[case.name]
        if case.valid:
            assert (result.status, result.prediction, result.score) == ("ok", "ok", 1.0), case.name
            assert result.trajectory is not None and result.trajectory.image.width == case.size[0]  # type: ignore[index]
        else:
            assert result.status == "skipped" and result.score is None, case.name
            assert label(built[case.name]) in (result.error or "") and case.says in (result.error or "")
    assert (summary.samples, summary.scored, summary.skipped, summary.failed) == (
        len(CASES),
        len(VALID),
        len(BAD),
        0,
    )
    assert summary.accuracy == 100.0
    assert backend.calls == len(VALID)

    lines = jsonl.read_bytes()
    again = run_policy(samples, backend, policy, tmp_path, concurrency=4)
    assert backend.calls == len(VALID)  # nothing redone: the skipped samples are final too
    assert jsonl.read_bytes() == lines
    assert again == summary


# --- c) the command line -------------------------------------------------------------------------------


def cli_error(capsys: pytest.CaptureFixture[str]) -> str:
    """The one line the command wrote to stderr (and nothing to stdout)."""
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "Traceback" not in captured.err
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), captured.err
    return lines[0]


def server_args(server: ScriptedChatServer) -> list[str]:
    return ["--base-url", server.base_url, "--model", "scripted-model", "--max-retries", "0"]


@pytest.mark.parametrize("case", [c for c in ON_DISK if not c.valid], ids=ids)
def test_cli_bad_image_is_exit_2_and_one_line(
    case: ImageCase,
    built: dict[str, ImageInput],
    chat_server: ScriptedChatServer,
    capsys: pytest.CaptureFixture[str],
) -> None:
    image = os.fspath(built[case.name])  # type: ignore[arg-type]
    assert main(["ask", image, QUESTION, *server_args(chat_server)]) == 2
    line = cli_error(capsys)
    assert label(image) in line and case.says in line
    assert chat_server.chat_requests == []


@pytest.mark.parametrize("output", ["human", "json"])
@pytest.mark.parametrize("case", [c for c in ON_DISK if c.valid], ids=ids)
def test_cli_odd_image_is_answered(
    case: ImageCase,
    output: str,
    built: dict[str, ImageInput],
    chat_server: ScriptedChatServer,
    capsys: pytest.CaptureFixture[str],
) -> None:
    chat_server.enqueue(Completion(text="ok"))
    image = os.fspath(built[case.name])  # type: ignore[arg-type]
    extra = ["--json"] if output == "json" else []
    assert main(["ask", image, QUESTION, *server_args(chat_server), *extra]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    if output == "json":
        record = json.loads(captured.out)
        assert record["answer"] == "ok" and record["trajectory"]["image"]["source"] == image
        assert (record["trajectory"]["image"]["width"], record["trajectory"]["image"]["height"]) == case.size
    else:
        assert "Answer: ok" in captured.out
    sent = chat_server.chat_requests[0].images()
    width, height = case.size  # type: ignore[misc]
    assert [im.size for im in sent] == [(max(1, width // 2), max(1, height // 2))]


READER_BAD = ["missing-path", "corrupt-file", "truncated-jpeg", "bomb-png", "url-https", "directory"]
READER_VALID = ["exif-rotated-jpeg", "mode-cmyk-jpg"]  # a few seconds each: the reader runs its OCR


@pytest.mark.parametrize(
    "name", READER_BAD + [pytest.param(name, marks=pytest.mark.slow) for name in READER_VALID]
)
def test_cli_with_the_offline_reader(
    name: str, built: dict[str, ImageInput], capsys: pytest.CaptureFixture[str]
) -> None:
    case = next(c for c in CASES if c.name == name)
    image = os.fspath(built[name])  # type: ignore[arg-type]
    code = main(["ask", image, "What is the invoice number?"])
    if case.valid:
        assert code == 0
        captured = capsys.readouterr()
        assert "Answer:" in captured.out and "Traceback" not in captured.err
    else:
        assert code == 2
        line = cli_error(capsys)
        assert label(image) in line and case.says in line
