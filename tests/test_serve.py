"""``awares serve`` with real clients: the openai package (sync, async, streaming), LangChain's ``ChatOpenAI``
and curl, against a real uvicorn server on loopback in front of the scripted upstream (``chat_server``).

What is checked: a question about one image is answered by AwaRes (the view, the crops asked for, the answer)
as an ordinary chat completion with the ``awares`` field and ``x-awares-*`` headers; streaming sends the
answer and never a crop request; per-request options; every passthrough row of the package's table reaches
the upstream unchanged; ``/v1/models``, ``/health``, ``/metrics``; the trajectories folder is a collection run
``awares collect export`` reads; ``--workers 2`` serves from two processes.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from chat_server import Completion, HTTPError, ScriptedChatServer
from PIL import Image
from serve_live import (
    IMAGE,
    MODEL,
    RULE,
    LiveServer,
    data_uri,
    image_request,
    serve_options,
    view_and_full_tokens,
)

from awares_agent.config import AgentConfig

QUESTION = "What is written on the page?"


@pytest.fixture(scope="module")
def upstream() -> Iterator[ScriptedChatServer]:
    with ScriptedChatServer(models=(MODEL, "other-model")) as server:
        yield server


@pytest.fixture(scope="module")
def server(upstream: ScriptedChatServer) -> Iterator[LiveServer]:
    with LiveServer(serve_options(upstream.base_url)) as live:
        yield live


@pytest.fixture(autouse=True)
def fresh_script(upstream: ScriptedChatServer) -> Iterator[None]:
    upstream.clear()
    yield
    assert upstream.unscripted == 0, "the server made more upstream calls than the test scripted"


@pytest.fixture
def client(server: LiveServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0)


def _crop_then_answer(
    upstream: ScriptedChatServer, answer: str = "It reads: The Lion and the Mouse."
) -> None:
    upstream.enqueue(
        Completion(tool_calls=[("get_crops", {"crops": ["0"]})], prompt_tokens=100, completion_tokens=7),
        Completion(text=answer, prompt_tokens=160, completion_tokens=11),
    )


# --- AwaRes, whole -----------------------------------------------------------------------------------------


def test_the_openai_client_gets_an_awares_answer(client: openai.OpenAI, upstream: ScriptedChatServer) -> None:
    _crop_then_answer(upstream)
    raw = client.chat.completions.with_raw_response.create(**image_request(QUESTION))
    reply = raw.parse()

    assert reply.choices[0].message.content == "It reads: The Lion and the Mouse."
    assert reply.choices[0].finish_reason == "stop" and reply.model == MODEL
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens, reply.usage.total_tokens) == (
        260,
        18,
        278,
    )
    view, full = view_and_full_tokens()
    awares = reply.model_extra["awares"]
    (crop,) = awares["crops"]
    assert (crop["region_id"], crop["name"], crop["box"][:2]) == ("0", "top-left", [0, 0])
    assert awares["model_calls"] == 2 and awares["rounds"] == 1 and awares["policy"] == "awares"
    assert awares["full_tokens"] == full and awares["visual_tokens"] > view
    assert awares["rtr"] == pytest.approx(awares["visual_tokens"] / full, abs=1e-4)
    assert raw.headers["x-awares-rtr"] == f"{awares['rtr']:.4f}"
    assert raw.headers["x-awares-crops"] == "0" and raw.headers["x-awares-model-calls"] == "2"
    assert raw.headers["x-awares-route"] == "awares" and reply.id == f"chatcmpl-{raw.headers['x-request-id']}"

    # Upstream: the half-size view with the question and the crop tool, then the crop, then the answer.
    first, second = upstream.chat_requests
    assert first.model == MODEL and [t["function"]["name"] for t in first.tools] == ["get_crops"]
    width, height = Image.open(io.BytesIO(IMAGE)).size
    assert [im.size for im in first.images()] == [(width // 2, height // 2)]
    assert QUESTION in json.dumps(first.messages)
    left, top, right, bottom = crop["box"]
    assert [im.size for im in second.images()] == [(width // 2, height // 2), (right - left, bottom - top)]


def test_a_direct_answer_costs_the_view_only(client: openai.OpenAI, upstream: ScriptedChatServer) -> None:
    upstream.enqueue(Completion(text="A page of a book."))
    reply = client.chat.completions.create(**image_request())
    view, full = view_and_full_tokens()
    awares = reply.model_extra["awares"]
    assert reply.choices[0].message.content == "A page of a book."
    assert (awares["visual_tokens"], awares["full_tokens"], awares["crops"]) == (view, full, [])
    assert len(upstream.chat_requests) == 1


def test_the_async_client_and_concurrent_requests(server: LiveServer, upstream: ScriptedChatServer) -> None:
    upstream.enqueue(*(Completion(text=f"answer {i}") for i in range(6)))

    async def ask_all() -> list[str]:
        client = openai.AsyncOpenAI(base_url=server.base_url, api_key="unused", max_retries=0)
        async with client:
            replies = await asyncio.gather(
                *(client.chat.completions.create(**image_request()) for _ in range(6))
            )
        return sorted(r.choices[0].message.content for r in replies)

    assert asyncio.run(ask_all()) == [f"answer {i}" for i in range(6)]


def test_request_options_choose_the_policy_and_the_budget(
    client: openai.OpenAI, upstream: ScriptedChatServer
) -> None:
    upstream.enqueue(Completion(text="From the view."))
    low = client.chat.completions.create(**image_request(), extra_body={"awares": {"policy": "low-res"}})
    assert low.model_extra["awares"]["policy"] == "low-res"
    assert upstream.chat_requests[0].tools is None  # no crop round: the tool is not offered

    upstream.clear()
    _crop_then_answer(upstream, "Within budget.")
    tight = client.chat.completions.create(**image_request(), extra_body={"awares": {"max_rtr": 0.4}})
    awares = tight.model_extra["awares"]
    view, _ = view_and_full_tokens()  # the view alone is 37% of the full image: no crop fits in 40%
    assert awares["crops"] == [] and "budget" in awares["errors"] and awares["visual_tokens"] == view

    upstream.clear()
    upstream.enqueue(Completion(text="All of it."))
    forced = client.chat.completions.create(**image_request(), extra_body={"awares": {"policy": "all-crops"}})
    assert (
        len(forced.model_extra["awares"]["crops"]) == 9
    )  # every region but `all`, with no model call for it
    assert len(upstream.chat_requests) == 1


def test_ignored_sampling_fields_are_reported(client: openai.OpenAI, upstream: ScriptedChatServer) -> None:
    upstream.enqueue(Completion(text="ok"))
    reply = client.chat.completions.create(**image_request(), temperature=0.9, max_tokens=3, seed=1)
    assert reply.model_extra["awares"]["ignored"] == ["max_tokens", "seed", "temperature"]


@pytest.mark.parametrize(
    ("awares", "message"),
    [
        ({"policy": "oracle"}, "policy"),
        ({"max_rounds": 1, "policy": "low-res"}, "max_rounds"),
        ({"x": 1}, "x"),
    ],
)
def test_bad_request_options_are_a_400(client: openai.OpenAI, awares: dict, message: str) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(**image_request(), extra_body={"awares": awares})
    assert refused.value.code == "invalid_awares_options" and message in refused.value.message


# --- AwaRes, streamed --------------------------------------------------------------------------------------


def test_streaming_sends_the_answer_as_it_is_generated(
    client: openai.OpenAI, upstream: ScriptedChatServer
) -> None:
    _crop_then_answer(upstream, "The Lion and the Mouse, a fable.")
    stream = client.chat.completions.create(
        **image_request(), stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    deltas = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert "".join(deltas) == "The Lion and the Mouse, a fable." and len(deltas) > 3  # word by word
    finish = next(c for c in chunks if c.choices and c.choices[0].finish_reason)
    assert finish.choices[0].finish_reason == "stop"
    assert finish.model_extra["awares"]["crops"][0]["region_id"] == "0"
    assert chunks[-1].usage.total_tokens == 278 and chunks[-1].choices == []
    assert all(c.id == chunks[0].id for c in chunks)
    assert all(r.json.get("stream") for r in upstream.chat_requests)  # the upstream streams too


def test_a_streamed_crop_request_written_as_text_is_never_sent(upstream: ScriptedChatServer) -> None:
    options = serve_options(upstream.base_url, agent=AgentConfig(protocol="awares-text", token_rule=RULE))
    upstream.enqueue(Completion(text="GET_CROPS: ['0', '1']"), Completion(text="It is a fable."))
    with LiveServer(options) as live:
        client = openai.OpenAI(base_url=live.base_url, api_key="unused", max_retries=0)
        chunks = list(client.chat.completions.create(**image_request(), stream=True))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "It is a fable."
    assert [c["region_id"] for c in chunks[-1].model_extra["awares"]["crops"]] == ["0", "1"]


def test_an_upstream_failure_mid_stream_is_an_error_event(
    client: openai.OpenAI, upstream: ScriptedChatServer
) -> None:
    upstream.enqueue(HTTPError(500, headers={"x-should-retry": "false"}))
    stream = client.chat.completions.create(**image_request(), stream=True)
    with pytest.raises(openai.APIError) as failed:
        list(stream)
    assert "upstream" in failed.value.message and "Traceback" not in failed.value.message


# --- other clients -----------------------------------------------------------------------------------------


def test_langchain_chat_openai(server: LiveServer, upstream: ScriptedChatServer) -> None:
    langchain_openai = pytest.importorskip("langchain_openai")
    from langchain_core.messages import HumanMessage

    chat = langchain_openai.ChatOpenAI(model=MODEL, base_url=server.base_url, api_key="unused", max_retries=0)
    message = HumanMessage(
        content=[{"type": "text", "text": QUESTION}, {"type": "image_url", "image_url": {"url": data_uri()}}]
    )
    _crop_then_answer(upstream, "A fable.")
    reply = chat.invoke([message])
    assert reply.content == "A fable." and reply.usage_metadata["total_tokens"] == 278

    upstream.clear()
    upstream.enqueue(Completion(text="A fable, streamed."))
    pieces = [piece.content for piece in chat.stream([message])]
    assert "".join(pieces) == "A fable, streamed."


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl(server: LiveServer, upstream: ScriptedChatServer, tmp_path: Path) -> None:
    upstream.enqueue(Completion(text="Seen by curl."))
    body = tmp_path / "body.json"
    body.write_text(json.dumps(image_request()))
    headers = tmp_path / "headers.txt"
    done = subprocess.run(
        ["curl", "-sS", "--dump-header", str(headers), "-H", "Content-Type: application/json",
         "--data-binary", f"@{body}", f"{server.base_url}/chat/completions"],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    head, payload = headers.read_text(), done.stdout
    assert head.startswith("HTTP/1.1 200") and "x-awares-rtr:" in head.lower()
    assert json.loads(payload)["choices"][0]["message"]["content"] == "Seen by curl."


# --- passthrough -------------------------------------------------------------------------------------------

IMAGE_PART = {"type": "image_url", "image_url": {"url": data_uri()}}
TEXT_PART = {"type": "text", "text": QUESTION}
PASSTHROUGH_ROWS = {
    "model": {"model": "other-model"},
    "option:tools": {"tools": [{"type": "function", "function": {"name": "lookup", "parameters": {}}}]},
    "option:n": {"n": 2},
    "option:response_format": {"response_format": {"type": "json_object"}},
    "option:logprobs": {"logprobs": True},
    "no_image": {"messages": [{"role": "user", "content": "Hello there"}]},
    "several_images": {"messages": [{"role": "user", "content": [IMAGE_PART, IMAGE_PART, TEXT_PART]}]},
    "no_question": {"messages": [{"role": "user", "content": [IMAGE_PART]}]},
    "history": {
        "messages": [
            {"role": "user", "content": [IMAGE_PART, TEXT_PART]},
            {"role": "assistant", "content": "A fable."},
            {"role": "user", "content": [IMAGE_PART, {"type": "text", "text": "Which one?"}]},
        ]
    },
    "other_content": {
        "messages": [
            {"role": "user", "content": [IMAGE_PART, TEXT_PART, {"type": "file", "file": {"file_id": "f"}}]}
        ]
    },
    "last_turn_not_user": {
        "messages": [
            {"role": "user", "content": [IMAGE_PART, TEXT_PART]},
            {"role": "assistant", "content": "A"},
        ]
    },
}


@pytest.mark.parametrize("reason", list(PASSTHROUGH_ROWS))
def test_each_passthrough_row_reaches_the_upstream_unchanged(
    server: LiveServer, upstream: ScriptedChatServer, reason: str
) -> None:
    body = {**image_request(), **PASSTHROUGH_ROWS[reason], "awares": {"policy": "low-res"}}
    upstream.enqueue(Completion(text="from the upstream"))
    reply = httpx.post(f"{server.base_url}/chat/completions", json=body, timeout=30)
    assert reply.status_code == 200, reply.text
    assert reply.headers["x-awares-route"] == "passthrough"
    assert reply.headers["x-awares-passthrough-reason"] == reason
    assert reply.json()["choices"][0]["message"]["content"] == "from the upstream"
    (forwarded,) = upstream.chat_requests
    body.pop("awares")  # the server's own field is the only change
    assert forwarded.json == body


def test_a_streamed_passthrough_streams_back(client: openai.OpenAI, upstream: ScriptedChatServer) -> None:
    upstream.enqueue(Completion(text="one two three four"))
    stream = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Hi"}], stream=True
    )
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == "one two three four"
    assert upstream.chat_requests[0].json["stream"] is True


def test_an_upstream_error_on_passthrough_comes_back_as_it_is(
    client: openai.OpenAI, upstream: ScriptedChatServer
) -> None:
    upstream.enqueue(
        HTTPError(400, body={"error": {"message": "bad tools", "type": "invalid_request_error"}})
    )
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hi"}])
    assert refused.value.body == {"message": "bad tools", "type": "invalid_request_error"}


def test_other_endpoints_are_passed_through(server: LiveServer, upstream: ScriptedChatServer) -> None:
    reply = httpx.post(f"{server.base_url}/embeddings?x=1", json={"model": MODEL, "input": "hi"}, timeout=30)
    assert reply.status_code == 404 and "no route for POST /v1/embeddings" in reply.json()["error"]["message"]
    assert reply.headers["x-awares-passthrough-reason"] == "endpoint"
    (forwarded,) = upstream.requests
    assert forwarded.path == "/v1/embeddings" and forwarded.json == {"model": MODEL, "input": "hi"}


def test_models_lists_the_upstream_models_or_the_served_one(
    client: openai.OpenAI, server: LiveServer
) -> None:
    assert [m.id for m in client.models.list()] == [MODEL, "other-model"]
    with ScriptedChatServer() as gone:
        url = gone.base_url
    with LiveServer(serve_options(url)) as lonely:
        listed = openai.OpenAI(base_url=lonely.base_url, api_key="x", max_retries=0).models.list()
        assert [m.id for m in listed] == [MODEL]


def test_health_metrics_and_unknown_paths(
    server: LiveServer, client: openai.OpenAI, upstream: ScriptedChatServer
) -> None:
    assert httpx.get(f"{server.url}/health").json() == {"status": "ok"}
    before = _metrics(server)
    upstream.enqueue(Completion(text="ok"))
    client.chat.completions.create(**image_request())
    httpx.post(f"{server.base_url}/chat/completions", content=b"{nope")
    after = _metrics(server)
    grew = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    assert grew['awares_serve_requests_total{route="awares"}'] == 1
    assert grew['awares_serve_errors_total{code="invalid_json"}'] == 1
    assert grew["awares_serve_rtr_count"] == 1 and grew["awares_serve_model_calls_total"] == 1
    view, full = view_and_full_tokens()
    assert grew["awares_serve_visual_tokens_saved_total"] == full - view
    assert grew['awares_serve_request_duration_seconds_count{route="awares"}'] == 1

    missing = httpx.get(f"{server.url}/admin")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    wrong = httpx.post(f"{server.url}/health")
    assert wrong.status_code == 405 and wrong.json()["error"]["code"] == "method_not_allowed"
    listed = httpx.get(f"{server.base_url}/chat/completions")  # OpenAI's stored completions: the upstream's
    assert listed.headers["x-awares-route"] == "passthrough"


def _metrics(server: LiveServer) -> dict[str, float]:
    values = {}
    for line in httpx.get(f"{server.url}/metrics").text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return values


# --- trajectories and workers ------------------------------------------------------------------------------


def test_served_queries_are_a_collection_run_that_export_reads(
    upstream: ScriptedChatServer, tmp_path: Path
) -> None:
    from datasets import load_from_disk

    from awares_agent.cli import main
    from awares_agent.engine import read_rows

    run = tmp_path / "served"
    with LiveServer(serve_options(upstream.base_url, trajectories=str(run))) as live:
        client = openai.OpenAI(base_url=live.base_url, api_key="client-key-0123456789", max_retries=0)
        _crop_then_answer(upstream)
        client.chat.completions.create(**image_request())
        upstream.enqueue(Completion(text="Streamed and kept."))
        list(client.chat.completions.create(**image_request(), stream=True))
        upstream.enqueue(Completion(text="not kept"))
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "no image"}])

    rows = list(read_rows(run))
    assert [r["trajectory"]["answer"] for r in rows] == [
        "It reads: The Lion and the Mouse.",
        "Streamed and kept.",
    ]
    assert {r["mode"] for r in rows} == {"rollout"} and rows[0]["teacher"] == MODEL
    assert main(["collect", "export", str(run)]) == 0
    dataset = load_from_disk(str(run / "export" / "dataset"))
    assert len(dataset) == 2 and dataset[0]["crops"] == ["0"]
    stored = b"".join(p.read_bytes() for p in run.rglob("*") if p.is_file())
    assert b"client-key-0123456789" not in stored and b"Bearer" not in stored and b"127.0.0.1" not in stored


@pytest.mark.parametrize("workers", [1, 2])
def test_the_command_serves_with_workers(upstream: ScriptedChatServer, tmp_path: Path, workers: int) -> None:
    """``awares serve --workers N``, as an operator starts it: N processes, their metrics added up, each
    writing its own shard of the trajectories folder."""
    upstream.enqueue(*(Completion(text=f"answer {i}") for i in range(8)))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    run = tmp_path / "served"
    command = [
        str(Path(sys.executable).with_name("awares")), "serve", "--upstream", upstream.base_url,
        "--model", MODEL, "--port", str(port), "--workers", str(workers), "--trajectories", str(run),
        "--token-rule", RULE, "--max-retries", "0",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_healthy(url, process)
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0)
        answers = sorted(
            client.chat.completions.create(**image_request()).choices[0].message.content for _ in range(8)
        )
        assert answers == [f"answer {i}" for i in range(8)]
        text = httpx.get(f"{url}/metrics").text
        assert 'awares_serve_requests_total{route="awares"} 8.0' in text
        shards = [f"shard-{i}-of-{workers}" for i in range(1, workers + 1)]
        assert sorted(p.name for p in run.glob("shard-*")) == shards
    finally:
        process.send_signal(signal.SIGINT)
        try:
            output, _ = process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            output, _ = process.communicate()
    assert "Traceback" not in output, output
    from awares_agent.engine import read_rows

    assert len(list(read_rows(run))) == 8


def _wait_healthy(url: str, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(
                f"awares serve exited early:\n{process.stdout.read() if process.stdout else ''}"
            )
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError("awares serve did not become healthy in 120 s")


# --- the command line --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--upstream-api-key-env", "AWARES_TEST_UNSET_KEY"], "AWARES_TEST_UNSET_KEY is not set"),
        (["--api-keys-file", "/nonexistent/keys.txt"], "cannot read the API keys file"),
        (["--allow-image-networks", "10.0.0.0/33"], "allow_image_networks"),
        (["--max-rtr", "-1"], "max_rtr"),
    ],
)
def test_awares_serve_refuses_options_that_cannot_work(
    flags: list[str], message: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from awares_agent.cli import main

    monkeypatch.delenv("AWARES_TEST_UNSET_KEY", raising=False)
    argv = ["serve", "--upstream", "http://127.0.0.1:9/v1", "--model", MODEL, "--port", "0", *flags]
    assert main(argv) == 2  # refused before anything listens
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_awares_serve_refuses_an_upstream_that_is_not_a_url(capsys: pytest.CaptureFixture[str]) -> None:
    from awares_agent.cli import main

    assert main(["serve", "--upstream", "localhost:8000", "--model", MODEL]) == 2
    assert "http:// or https://" in capsys.readouterr().err
