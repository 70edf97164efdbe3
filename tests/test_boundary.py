"""The boundary rule: whatever a model or server sends becomes an answer, a recorded error or a typed error.

Regression tests for the defects found by hostile testing (issue 12): lone surrogates in replies, tool calls
nested past the recursion limit, foreign exceptions from a backend, rich markup in answers, one bad sample
ending a whole run, and credentials leaking into what the project prints or stores.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import pytest
from chat_server import Completion, RawJSON, ScriptedChatServer
from PIL import Image
from scripted_backend import ScriptedBackend

from awares_agent import AwaResAgent, ChatReply, OpenAIBackend
from awares_agent.cli import main
from awares_agent.collect.judges import LLMJudge
from awares_agent.engine import collect_sync as collect
from awares_agent.engine import read_failures, read_rows
from awares_agent.errors import AwaresError, BackendResponseError, ImageDecodeError
from awares_agent.evals.runner import read_results, run_policy
from awares_agent.evals.schema import EvalSample
from awares_agent.messages import ToolCall
from awares_agent.redact import REDACTED, RedactingFilter, forget_secret, redact, register_secret
from awares_agent.trajectory import Trajectory
from awares_agent.untrusted import json_text_problem, json_value_problem, valid_text

#: A credential-shaped value made at run time (no key-shaped literal in the repository).
KEY = "sk-" + hashlib.sha256(b"awares boundary test").hexdigest()[:32]


@pytest.fixture
def image() -> Image.Image:
    return Image.new("RGB", (400, 300), "white")


@pytest.fixture
def key() -> str:
    register_secret(KEY)
    yield KEY
    forget_secret(KEY)


def body(content: object, tool_calls: list[dict] | None = None) -> dict:
    message: dict = {"role": "assistant", "content": content}
    if tool_calls:
        message["tool_calls"] = tool_calls
    choice = {"index": 0, "message": message, "finish_reason": "stop"}
    return {"id": "c", "object": "chat.completion", "created": 0, "model": "m", "choices": [choice]}


def http_agent(server: ScriptedChatServer, **options: object) -> AwaResAgent:
    return AwaResAgent(OpenAIBackend("m", base_url=server.base_url, max_retries=0), **options)


# --- lone surrogates (defect 2) ---------------------------------------------------------------------


def test_lone_surrogate_in_a_final_answer_is_replaced_and_recorded(
    chat_server: ScriptedChatServer, image: Image.Image
) -> None:
    chat_server.enqueue(RawJSON(body("total \ud800 42")))
    result = http_agent(chat_server).ask(image, "What is the total?")
    assert result.answer == "total \ufffd 42"
    assert [e.kind for e in result.trajectory.errors] == ["invalid_text"]
    text = result.model_dump_json()  # raised PydanticSerializationError before
    assert Trajectory.model_validate_json(result.trajectory.model_dump_json()) == result.trajectory
    text.encode("utf-8")


def test_lone_surrogate_in_a_turn_that_continues(chat_server: ScriptedChatServer, image: Image.Image) -> None:
    call = {
        "id": "c0",
        "type": "function",
        "function": {"name": "get_crops", "arguments": '{"crops": ["\ud800"]}'},
    }
    chat_server.enqueue(RawJSON(body("", [call])), Completion(text="42"))
    result = http_agent(chat_server).ask(
        image, "What is the total?"
    )  # UnicodeEncodeError in the client before
    assert result.answer == "42"
    second = chat_server.chat_requests[1]
    assert second.body is not None and "\ufffd" in second.raw_body.decode("utf-8")
    assert [e.kind for e in result.trajectory.errors] == ["invalid_text", "invalid_tool_call"]


def test_awares_ask_json_prints_a_surrogate_answer(
    chat_server: ScriptedChatServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "page.png"
    Image.new("RGB", (400, 300), "white").save(path)
    chat_server.enqueue(RawJSON(body("\ud800")))
    code = main(["ask", str(path), "q?", "--base-url", chat_server.base_url, "--model", "m", "--json"])
    assert code == 0
    assert json.loads(capsys.readouterr().out)["answer"] == "\ufffd"


def test_a_question_with_undecodable_bytes_still_runs(image: Image.Image) -> None:
    backend = ScriptedBackend("42")
    result = AwaResAgent(backend).ask(image, "total\udcff?")  # argv's surrogateescape of a bad byte
    assert result.trajectory.question == "total\ufffd?"
    result.model_dump_json()


def test_valid_text() -> None:
    assert valid_text("a\ud800b\udfff") == ("a\ufffdb\ufffd", 2)
    assert valid_text("😀 ok") == ("😀 ok", 0)


# --- nesting and size of tool calls (defect 3) ------------------------------------------------------


@pytest.mark.parametrize("depth", [17, 1000, 100_000])
@pytest.mark.parametrize("form", ["hermes", "structured"])
def test_deeply_nested_tool_calls_are_refused_before_parsing(
    image: Image.Image, depth: int, form: str
) -> None:
    arguments = '{"crops": ' + "[" * depth + '"0"' + "]" * depth + "}"
    if form == "hermes":
        reply = ChatReply(text=f'<tool_call>{{"name": "get_crops", "arguments": {arguments}}}</tool_call>')
    else:
        reply = ChatReply(tool_calls=[ToolCall(id="c", name="get_crops", arguments=arguments)])
    result = AwaResAgent(ScriptedBackend(reply, "42"), max_corrections=1).ask(image, "q?")
    assert result.answer == "42"
    (error,) = result.trajectory.errors
    assert error.kind == "invalid_tool_call" and "too large to read" in error.message
    assert "more than 16 levels deep" in error.message or "characters long" in error.message
    assert len(error.raw or "") <= 4100  # the record keeps an excerpt; the whole turn is in the messages
    result.model_dump_json()


def test_huge_tool_call_arguments_are_refused_unread(image: Image.Image) -> None:
    arguments = '{"crops": ["' + "0" * 1_000_000 + '"]}'
    reply = ChatReply(tool_calls=[ToolCall(id="c", name="get_crops", arguments=arguments)])
    result = AwaResAgent(ScriptedBackend(reply, "42")).ask(image, "q?")
    (error,) = result.trajectory.errors
    assert "characters long" in error.message and len(error.raw or "") < 10_000


def test_json_bounds() -> None:
    assert json_text_problem('{"crops": ["0", "5"]}') is None
    assert json_text_problem('{"a": "[[[[[[[[[[[[[[[[[[[[[[[[["}') is None  # brackets inside strings
    assert json_text_problem('{"a": "\\"[[[[[[[[[[[[[[[[[[[[["}') is None  # an escaped quote
    assert "deep" in (json_text_problem("[" * 17 + "]" * 17) or "")
    nested: list = []
    for _ in range(20):
        nested = [nested]
    assert "deep" in (json_value_problem({"crops": nested}) or "")
    assert json_value_problem({"crops": ["0"]}) is None


# --- what a backend may do (the boundary in the graph) ----------------------------------------------


@pytest.mark.parametrize("bad", [KeyError("choices"), ValueError("\ud800"), None, "plain", 42])
def test_a_broken_backend_becomes_a_typed_error(image: Image.Image, bad: object) -> None:
    # A string is a valid script entry (a reply with that text): wrap it in an object that is not a reply.
    backend = ScriptedBackend((lambda _request: _Raw(bad)) if isinstance(bad, str) else bad)
    with pytest.raises(BackendResponseError) as info:
        AwaResAgent(backend).ask(image, "q?")
    str(info.value).encode("utf-8")
    if isinstance(bad, Exception):
        assert info.value.__cause__ is bad and type(bad).__name__ in str(info.value)
    else:
        assert "not a ChatReply" in str(info.value)


class _Raw:
    """Something that is not a ChatReply, returned by a broken backend."""

    def __init__(self, text: str) -> None:
        self.text = text


def test_async_path_has_the_same_boundary(image: Image.Image) -> None:
    import asyncio

    backend = ScriptedBackend(RuntimeError("boom"))
    with pytest.raises(BackendResponseError, match="RuntimeError: boom"):
        asyncio.run(AwaResAgent(backend).aask(image, "q?"))
    result = asyncio.run(AwaResAgent(ScriptedBackend("a \ud800")).aask(image, "q?"))
    assert result.answer == "a \ufffd"


def test_rich_markup_in_an_answer_is_printed_as_text(
    chat_server: ScriptedChatServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "page.png"
    Image.new("RGB", (400, 300), "white").save(path)
    chat_server.enqueue(Completion(text="[/bold] [red]42"))
    code = main(["ask", str(path), "q?", "--base-url", chat_server.base_url, "--model", "m"])
    assert code == 0  # MarkupError escaped before
    assert "[/bold] [red]42" in capsys.readouterr().out


# --- a run never dies of one sample -----------------------------------------------------------------


def test_eval_records_every_sample_whatever_the_replies(tmp_path: Path) -> None:
    samples = [
        EvalSample(id=f"s{i}", image=Image.new("RGB", (300, 200), "white"), question="q?", answers=["42"])
        for i in range(6)
    ]
    samples.append(EvalSample(id="bad", image=b"not an image", question="q?", answers=["42"]))
    replies = ["42 \ud800", RuntimeError("boom"), "\ud800", "42", "[/b]", None]
    backend = ScriptedBackend(*replies, default="42")
    summary = run_policy(samples, backend, "awares", tmp_path, concurrency=1)
    results = read_results(tmp_path / "awares")
    assert len(results) == 7 and summary.samples == 7
    statuses = sorted(r.status for r in results.values())
    assert statuses == ["failed", "failed", "ok", "ok", "ok", "ok", "skipped"]
    # The failed ones (a foreign exception, a non-reply) are tried again, and succeed now.
    summary = run_policy(samples, backend, "awares", tmp_path, concurrency=1)
    assert summary.failed == 0 and summary.scored == 6 and summary.skipped == 1


def test_collect_records_an_unencodable_row_and_goes_on(tmp_path: Path) -> None:
    async def work(sample_id: str) -> dict[str, object]:
        if sample_id == "s3":
            return {"id": sample_id, "value": float("nan")}  # not JSON
        if sample_id == "s5":
            return {"id": sample_id, "value": object()}
        return {"id": sample_id, "value": 1}

    stats = collect([f"s{i}" for i in range(8)], work, tmp_path, id_of=str, progress=False)
    assert stats.done == 6 and stats.failed == 2
    assert sorted(r["id"] for r in read_rows(tmp_path)) == [f"s{i}" for i in range(8) if i not in (3, 5)]
    reasons = {i: f["reason"] for i, f in read_failures(tmp_path).items()}
    assert "could not be encoded as JSON" in reasons["s3"] and "could not be encoded" in reasons["s5"]


def test_a_bad_image_is_an_image_error_not_a_crash() -> None:
    with pytest.raises(ImageDecodeError):
        AwaResAgent(ScriptedBackend("42")).ask(b"\x89PNG\r\n\x1a\n broken", "q?")


# --- credentials ------------------------------------------------------------------------------------


def test_redact_hides_registered_keys_and_credential_shapes(key: str) -> None:
    text = (
        f"echo: Authorization: Bearer {key} and {key[:-1]} and bearer abcdefgh12345678 sk-proj-abcdefghij12"
    )
    hidden = redact(text)
    assert key not in hidden and key[:-1] not in hidden and "abcdefgh12345678" not in hidden
    assert "sk-proj-abcdefghij12" not in hidden and hidden.count(REDACTED) >= 3
    assert redact("the total is 42") == "the total is 42"
    assert redact("x-api-key: secretvalue1234567890") == f"x-api-key: {REDACTED}"
    # Ordinary words and the short codes a document prints are not credentials.
    for text in ("Authorization: 004512", "bearer instruments and bearerbonds", "task-list", "sk-ii"):
        assert redact(text) == text
    assert redact(f"{key[:20]}", extra=[key[:20]]) == REDACTED


def test_error_messages_are_safe_from_construction(key: str) -> None:
    err = AwaresError(f"server said \ud800: {key}")
    assert str(err) == f"server said \ufffd: {REDACTED}"


def test_log_records_are_redacted(key: str) -> None:
    record = logging.LogRecord("openai", logging.DEBUG, __file__, 1, "headers %s", (f"Bearer {key}",), None)
    assert RedactingFilter().filter(record)
    assert key not in record.getMessage() and REDACTED in record.getMessage()


def test_a_key_echoed_in_a_reply_never_reaches_the_trajectory(
    chat_server: ScriptedChatServer, image: Image.Image, key: str
) -> None:
    chat_server.enqueue(Completion(text=f"my key is {key}"))
    backend = OpenAIBackend("m", base_url=chat_server.base_url, api_key=key, max_retries=0)
    result = AwaResAgent(backend).ask(image, "q?")
    assert key not in result.model_dump_json() and result.answer == f"my key is {REDACTED}"
    assert [e.kind for e in result.trajectory.errors] == ["redacted"]


def test_judge_cache_survives_surrogates_and_stores_no_key(tmp_path: Path, key: str) -> None:
    cache = tmp_path / "verdicts.sqlite"
    judge = LLMJudge(ScriptedBackend(f'{{"correct": true, "reason": "\ud800 {key}"}}'), cache=cache)
    verdict = judge.judge("q?", "42", ["42"])
    assert verdict.correct and key not in verdict.reason
    assert key.encode() not in cache.read_bytes()


def test_a_checkpointed_run_stores_no_key(tmp_path: Path, image: Image.Image, key: str) -> None:
    import sqlite3

    from langgraph.checkpoint.sqlite import SqliteSaver

    path = tmp_path / "checkpoints.sqlite"
    with sqlite3.connect(path, check_same_thread=False) as conn:
        backend = ScriptedBackend(f"GET_CROPS: ['0'] {key}", f"Authorization: Bearer {key}")
        agent = AwaResAgent(backend, protocol="awares-text", checkpointer=SqliteSaver(conn))
        result = agent.ask(image, "q?", thread_id="t1")
        assert result.answer == f"Authorization: Bearer {REDACTED}"
    data = path.read_bytes()
    assert key.encode() not in data and key[3:20].encode() not in data


def test_a_repaired_model_name_is_counted_once() -> None:
    cleaned, repairs = ChatReply(text="ok", model="qwen\ud800", finish_reason="stop\ud800").cleaned()
    assert (cleaned.model, cleaned.finish_reason) == ("qwen\ufffd", "stop\ufffd")
    assert [kind for kind, _ in repairs] == ["invalid_text"]
    assert "held 2 character(s)" in repairs[0][1]
