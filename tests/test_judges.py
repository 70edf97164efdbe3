"""Tests for the labelling judges: the metric judge on every metric, the LLM judge against a real loopback
OpenAI-compatible server with the real openai client (verdicts, parsing, faults, the persistent cache)."""

from __future__ import annotations

import asyncio
import multiprocessing
import sqlite3
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

import pytest
from chat_server import FAST_RETRY, Completion, Garbage, HTTPError, RecordedRequest, ScriptedChatServer

from awares_agent.backends.openai_compat import OpenAIBackend
from awares_agent.collect import Judge, JudgeReplyError, LLMJudge, MetricJudge, Verdict, make_judge
from awares_agent.collect.judges import (
    DEFAULT_THRESHOLDS,
    JUDGE_PROMPT_VERSION,
    JUDGE_SYSTEM_PROMPT,
    _VerdictCache,
    parse_judge_reply,
)
from awares_agent.errors import BackendHTTPError, BackendResponseError, ConfigError
from awares_agent.evals.schema import METRICS

MODEL = "judge-model"
KEY_ENV = "AWARES_TEST_JUDGE_KEY"
SECRET = "sk-judge-SECRET-9f8e7d6c5b4a3210"

VSTAR_QUESTION = "What is the material of the glove?\n(A) rubber\n(B) cotton\n(C) kevlar\n(D) leather"

# --- the metric judge ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("metric", "prediction", "answers", "question", "correct", "score"),
    [
        ("exact", "INVOICE 2024", ["invoice2024"], "", True, 1.0),
        ("exact", "Invoice 2025", ["invoice 2024"], "", False, 0.0),
        ("anls", "Jonh Smith", ["John Smith"], "", True, 0.8),
        ("anls", "Jo", ["John Smith"], "", False, 0.0),
        ("relaxed", "104", ["100"], "", True, 1.0),
        ("relaxed", "106", ["100"], "", False, 0.0),
        ("ocrbench", "The sign says STOP here", ["stop"], "", True, 1.0),
        ("ocrbench", "The sign says GO", ["stop"], "", False, 0.0),
        ("yes_no", "Yes, there is a dog.", ["yes"], "", True, 1.0),
        ("yes_no", "No.", ["yes"], "", False, 0.0),
        ("choice", "(D)", ["D"], VSTAR_QUESTION, True, 1.0),
        ("choice", "leather", ["D"], VSTAR_QUESTION, True, 1.0),
        ("choice", "B", ["D"], VSTAR_QUESTION, False, 0.0),
    ],
)
def test_metric_judge_table(
    metric: str, prediction: str, answers: list[str], question: str, correct: bool, score: float
) -> None:
    verdict = MetricJudge().judge(question, prediction, answers, metric=metric)
    assert verdict.correct is correct
    assert verdict.score == pytest.approx(score)
    assert verdict.judge == f"metric:{metric}>={DEFAULT_THRESHOLDS[metric]:g}"
    assert metric in verdict.reason


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("prediction", [None, "", "   "])
def test_metric_judge_no_answer_is_incorrect(metric: str, prediction: str | None) -> None:
    verdict = MetricJudge().judge("q", prediction, ["yes"], metric=metric)
    assert (verdict.correct, verdict.score) == (False, 0.0)
    assert "no answer" in verdict.reason


def test_metric_judge_thresholds() -> None:
    assert set(DEFAULT_THRESHOLDS) == set(METRICS)
    assert DEFAULT_THRESHOLDS["anls"] == 0.5
    strict = MetricJudge({"anls": 0.9})
    verdict = strict.judge("q", "Jonh Smith", ["John Smith"], metric="anls")  # ANLS 0.8
    assert not verdict.correct and verdict.score == pytest.approx(0.8)
    assert verdict.judge == "metric:anls>=0.9"
    assert "0.8 < 0.9" in verdict.reason
    # Other metrics keep their defaults.
    assert strict.thresholds["exact"] == 1.0
    assert strict.judge("q", "a", ["A"], metric="exact").correct


@pytest.mark.parametrize("thresholds", [{"bleu": 0.5}, {"anls": 0.0}, {"anls": 1.5}, {"exact": "high"}])
def test_metric_judge_rejects_bad_thresholds(thresholds: dict) -> None:
    with pytest.raises(ConfigError, match="MetricJudge"):
        MetricJudge(thresholds)


def test_metric_judge_unknown_metric_and_async() -> None:
    judge = MetricJudge()
    with pytest.raises(ConfigError, match="unknown metric 'bleu'"):
        judge.judge("q", "a", ["a"], metric="bleu")
    verdict = asyncio.run(judge.ajudge("q", "1,000", ["1000"], metric="relaxed"))
    assert verdict.correct
    assert isinstance(judge, Judge)


# --- reply parsing -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "correct", "reason"),
    [
        ('{"correct": true, "reason": "same number"}', True, "same number"),
        ('{"correct": false, "reason": "different value"}', False, "different value"),
        ('```json\n{"correct": false, "reason": "off by one"}\n```', False, "off by one"),
        (
            'Here is my verdict: {"correct": "yes", "reason": "both say 42"} Hope it helps.',
            True,
            "both say 42",
        ),
        ('{"verdict": "incorrect"}', False, ""),
        ("Yes. Both give 42.", True, "Both give 42"),
        ("Incorrect: the candidate says 41.", False, "the candidate says 41"),
        ("**Correct** - same answer", True, "same answer"),
        ("no", False, ""),
    ],
)
def test_parse_judge_reply(text: str, correct: bool, reason: str) -> None:
    assert parse_judge_reply(text) == (correct, reason)


@pytest.mark.parametrize("text", ["", "I cannot tell without the image.", '{"correct": "maybe"}', "```\n```"])
def test_parse_judge_reply_refuses_garbage(text: str) -> None:
    with pytest.raises(JudgeReplyError) as info:
        parse_judge_reply(text)
    assert info.value.raw == text


# --- the LLM judge against a loopback server ---------------------------------------------------------------


@pytest.fixture
def backend(chat_server: ScriptedChatServer, monkeypatch: pytest.MonkeyPatch) -> OpenAIBackend:
    """A backend whose API key comes from the environment variable, as a user would set it."""
    monkeypatch.setenv(KEY_ENV, SECRET)
    return OpenAIBackend(MODEL, base_url=chat_server.base_url, api_key_env=KEY_ENV, max_retries=2, timeout=5)


def verdict_reply(correct: bool, reason: str = "because") -> Completion:
    return Completion(text=f'{{"correct": {"true" if correct else "false"}, "reason": "{reason}"}}')


def test_llm_judge_correct_and_incorrect(chat_server: ScriptedChatServer, backend: OpenAIBackend) -> None:
    chat_server.enqueue(verdict_reply(True, "same total"), verdict_reply(False, "different total"))
    judge = LLMJudge(backend)
    yes = judge.judge("What is the total?", "$1,284.50", ["1284.50", "1,284.50"], metric="anls")
    no = judge.judge("What is the total?", "1,248.50", ["1284.50"])
    assert yes == Verdict(correct=True, score=1.0, reason="same total", judge=f"llm:{MODEL}")
    assert (no.correct, no.score, no.reason) == (False, 0.0, "different total")
    request = chat_server.requests[0]
    assert request.model == MODEL
    system, user = request.messages
    assert system == {"role": "system", "content": JUDGE_SYSTEM_PROMPT}
    assert user["role"] == "user"
    assert "Question: What is the total?" in user["content"]
    assert 'Reference answers: ["1284.50", "1,284.50"]' in user["content"]
    assert "Candidate answer: $1,284.50" in user["content"]
    assert request.json["temperature"] == 0.0


def test_llm_judge_code_fenced_reply(chat_server: ScriptedChatServer, backend: OpenAIBackend) -> None:
    chat_server.enqueue(Completion(text='```json\n{"correct": true, "reason": "same word"}\n```'))
    verdict = LLMJudge(backend).judge("What does the sign say?", "stop", ["STOP"])
    assert verdict.correct and verdict.reason == "same word"


def test_llm_judge_no_answer_makes_no_request(
    chat_server: ScriptedChatServer, backend: OpenAIBackend
) -> None:
    verdict = LLMJudge(backend).judge("q", None, ["a"])
    assert not verdict.correct and "no answer" in verdict.reason
    assert chat_server.requests == []


def test_llm_judge_garbage_reply_raises_or_falls_back(
    chat_server: ScriptedChatServer, backend: OpenAIBackend, tmp_path: Path
) -> None:
    chat_server.enqueue(Completion(text="As an AI I cannot see the image."))
    with pytest.raises(JudgeReplyError, match="cannot see the image") as info:
        LLMJudge(backend).judge("q", "42", ["42"])
    assert info.value.raw == "As an AI I cannot see the image."

    cache = tmp_path / "verdicts.sqlite"
    judge = LLMJudge(backend, cache=cache, fallback=MetricJudge())
    chat_server.enqueue(Completion(text="hmm"), Completion(text="hmm"))
    verdict = judge.judge("q", "42", ["42"], metric="exact")
    assert verdict.correct and verdict.judge == "metric:exact>=1"
    assert "unreadable reply" in verdict.reason and "llm:judge-model" in verdict.reason
    # A fallback verdict is not cached: the next run asks the model again.
    judge.judge("q", "42", ["42"], metric="exact")
    assert len(chat_server.requests) == 3


def test_llm_judge_garbage_http_body_is_a_backend_error(
    chat_server: ScriptedChatServer, backend: OpenAIBackend
) -> None:
    chat_server.enqueue(Garbage(b"<html>oops</html>"))
    # Even with a fallback: a broken server must not silently change who judges.
    with pytest.raises(BackendResponseError, match="not JSON"):
        LLMJudge(backend, fallback=MetricJudge()).judge("q", "42", ["42"])


def test_llm_judge_retries_500_then_succeeds(chat_server: ScriptedChatServer, backend: OpenAIBackend) -> None:
    chat_server.enqueue(HTTPError(500, headers=FAST_RETRY), verdict_reply(True))
    assert LLMJudge(backend).judge("q", "42", ["42"]).correct
    assert len(chat_server.requests) == 2


def test_llm_judge_honours_retry_after_on_429(
    chat_server: ScriptedChatServer, backend: OpenAIBackend
) -> None:
    chat_server.enqueue(HTTPError(429, headers={"retry-after": "1"}), verdict_reply(False))
    start = time.perf_counter()
    verdict = LLMJudge(backend).judge("q", "41", ["42"])
    assert not verdict.correct
    assert len(chat_server.requests) == 2
    assert time.perf_counter() - start >= 0.9  # waited as the server asked


def test_llm_judge_500_past_retries_propagates(
    chat_server: ScriptedChatServer, backend: OpenAIBackend
) -> None:
    chat_server.enqueue(*[HTTPError(500, headers=FAST_RETRY)] * 3)
    with pytest.raises(BackendHTTPError) as info:
        LLMJudge(backend, fallback=MetricJudge()).judge("q", "42", ["42"])
    assert info.value.status_code == 500


def test_llm_judge_cache_hit_makes_no_request(
    chat_server: ScriptedChatServer, backend: OpenAIBackend, tmp_path: Path
) -> None:
    cache = tmp_path / "cache" / "verdicts.sqlite"
    judge = LLMJudge(backend, cache=cache)
    chat_server.enqueue(verdict_reply(True, "same"), verdict_reply(False, "other prediction"))
    first = judge.judge("What is the total?", "12.50", ["12.50", "$12.50"])
    again = judge.judge("What is the total?", "12.50", ["$12.50", "12.50"])  # answers in another order
    assert again == first
    assert len(chat_server.requests) == 1
    assert (judge.requests, judge.cache_hits) == (1, 1)
    judge.judge("What is the total?", "12.60", ["12.50", "$12.50"])  # another prediction: a new request
    assert len(chat_server.requests) == 2

    # A new judge on the same file (a rerun) pays nothing; the server has no reply left to give.
    rerun = LLMJudge(backend, cache=cache)
    assert rerun.judge("What is the total?", "12.50", ["12.50", "$12.50"]) == first
    assert not rerun.judge("What is the total?", "12.60", ["12.50", "$12.50"]).correct
    assert len(chat_server.requests) == 2 and chat_server.unscripted == 0

    # The key names the model and the prompt version: another judge model is asked again.
    other = OpenAIBackend("other-judge", base_url=chat_server.base_url, max_retries=0)
    chat_server.enqueue(verdict_reply(False))
    assert not LLMJudge(other, cache=cache).judge("What is the total?", "12.50", ["12.50", "$12.50"]).correct
    assert len(chat_server.requests) == 3

    with sqlite3.connect(cache) as conn:
        rows = conn.execute(
            "SELECT prompt_version, model, prediction FROM verdicts ORDER BY created"
        ).fetchall()
    assert rows == [
        (JUDGE_PROMPT_VERSION, MODEL, "12.50"),
        (JUDGE_PROMPT_VERSION, MODEL, "12.60"),
        (JUDGE_PROMPT_VERSION, "other-judge", "12.50"),
    ]


def test_llm_judge_never_stores_the_api_key(
    chat_server: ScriptedChatServer, backend: OpenAIBackend, tmp_path: Path
) -> None:
    chat_server.enqueue(verdict_reply(True, "fine"))
    judge = LLMJudge(backend, cache=tmp_path / "verdicts.sqlite")
    judge.judge("q", "42", ["42"])
    assert chat_server.requests[0].headers["authorization"] == f"Bearer {SECRET}"  # the key was really used
    files = list(tmp_path.iterdir())
    assert tmp_path / "verdicts.sqlite" in files  # the verdict was stored: there is something to search
    for path in files:
        assert SECRET.encode() not in path.read_bytes(), path
    assert SECRET not in repr(judge)


def test_llm_judge_cache_is_thread_safe(
    chat_server: ScriptedChatServer, backend: OpenAIBackend, tmp_path: Path
) -> None:
    def answer(request: RecordedRequest) -> Completion:
        # Correct exactly when the candidate is even: each verdict must land under its own key.
        candidate = int(request.messages[-1]["content"].rsplit("Candidate answer: ", 1)[1].split("\n")[0])
        return verdict_reply(candidate % 2 == 0, f"candidate {candidate}")

    chat_server.enqueue(*[answer] * 16)
    cache = tmp_path / "verdicts.sqlite"
    judge = LLMJudge(backend, cache=cache)
    with ThreadPoolExecutor(8) as pool:
        verdicts = list(pool.map(lambda n: judge.judge("q", str(n), ["0"]), range(16)))
    assert [v.correct for v in verdicts] == [n % 2 == 0 for n in range(16)]
    assert [v.reason for v in verdicts] == [f"candidate {n}" for n in range(16)]
    rerun = LLMJudge(backend, cache=cache)
    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(lambda n: rerun.judge("q", str(n), ["0"]), range(16))) == verdicts
    assert len(chat_server.requests) == 16


def _write_verdicts(path: str, first: int, count: int) -> None:
    """Run in another process: store ``count`` verdicts in the cache file at ``path``."""
    cache = _VerdictCache(Path(path))
    for n in range(first, first + count):
        inputs = {
            "prompt_version": "v",
            "model": "m",
            "question": "q",
            "prediction": str(n),
            "answers": ["0"],
        }
        cache.put(
            f"key-{n}", inputs, Verdict(correct=n % 2 == 0, score=1.0 - n % 2, reason=str(n), judge="j")
        )


def test_verdict_cache_is_process_safe(tmp_path: Path) -> None:
    path = tmp_path / "verdicts.sqlite"
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        list(pool.map(_write_verdicts, [str(path)] * 2, [0, 40], [40, 40]))
    cache = _VerdictCache(path)
    assert len(cache) == 80
    assert all(
        cache.get(f"key-{n}") is not None and cache.get(f"key-{n}").reason == str(n) for n in range(80)
    )


def test_llm_judge_async(chat_server: ScriptedChatServer, backend: OpenAIBackend, tmp_path: Path) -> None:
    chat_server.enqueue(HTTPError(500, headers=FAST_RETRY), verdict_reply(True, "same"))
    judge = LLMJudge(backend, cache=tmp_path / "v.sqlite")

    async def main() -> list[Verdict]:
        first = await judge.ajudge("q", "42", ["42"])
        second = await judge.ajudge("q", "42", ["42"])
        return [first, second]

    first, second = asyncio.run(main())
    assert first == second and first.correct
    assert len(chat_server.requests) == 2  # the 500 and its retry; the second call was a cache hit


def test_llm_judge_needs_a_backend_and_a_usable_cache(backend: OpenAIBackend, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="chat backend"):
        LLMJudge("gpt-4o")  # type: ignore[arg-type]
    broken = tmp_path / "verdicts.sqlite"
    broken.write_text("not a database, " * 100)
    with pytest.raises(ConfigError, match="not a usable SQLite file"):
        LLMJudge(backend, cache=broken)


# --- the factory -------------------------------------------------------------------------------------------


def test_make_judge(chat_server: ScriptedChatServer, backend: OpenAIBackend, tmp_path: Path) -> None:
    metric = make_judge("metric", thresholds={"anls": 0.7})
    assert isinstance(metric, MetricJudge) and metric.thresholds["anls"] == 0.7

    llm = make_judge("llm", backend=backend, cache=tmp_path / "c.sqlite", fallback="metric")
    assert isinstance(llm, LLMJudge) and isinstance(llm.fallback, MetricJudge)
    assert llm.cache_path == tmp_path / "c.sqlite"

    built = make_judge("LLM", model="judge-2", base_url=chat_server.base_url, max_retries=0)
    assert isinstance(built, LLMJudge) and built.name == "llm:judge-2"
    chat_server.enqueue(verdict_reply(True))
    assert built.judge("q", "a", ["a"]).correct
    assert chat_server.requests[0].model == "judge-2"


@pytest.mark.parametrize(
    ("kind", "kwargs", "message"),
    [
        ("bleu", {}, "unknown judge kind 'bleu'"),
        ("metric", {"cache": "x"}, "unknown option"),
        ("llm", {}, "needs backend="),
        ("llm", {"model": "m", "temperature": 1}, "unknown option"),
        ("llm", {"model": "m", "base_url": "http://127.0.0.1:9/v1", "fallback": "vibes"}, "fallback must be"),
    ],
)
def test_make_judge_errors(kind: str, kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        make_judge(kind, **kwargs)
