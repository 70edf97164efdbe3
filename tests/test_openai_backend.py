"""Tests for the OpenAI-compatible backend, against a real loopback server with the real openai client."""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import socket
import subprocess
import sys
import time
import traceback
from collections.abc import Iterator
from pathlib import Path

import pytest
from chat_server import (
    FAST_RETRY,
    Completion,
    Delay,
    Dropped,
    Garbage,
    HTTPError,
    RawJSON,
    ScriptedChatServer,
    Trickle,
)
from PIL import Image

from awares_agent.backends.base import ChatBackend, StreamingChatBackend
from awares_agent.backends.openai_compat import (
    MessageTranslationError,
    OpenAIBackend,
    parse_completion,
    to_openai_messages,
)
from awares_agent.cli import main
from awares_agent.errors import (
    AwaresError,
    BackendAuthError,
    BackendConnectionError,
    BackendHTTPError,
    BackendRateLimitError,
    BackendResponseError,
    BackendTimeoutError,
    ConfigError,
    UnknownImageError,
)
from awares_agent.image_store import ImageStore
from awares_agent.images import ViewSpec
from awares_agent.messages import ChatMessage, ChatReply, ImagePart, TextPart, ToolCall, ToolSpec
from awares_agent.redact import forget_secret

MODEL = "scripted-vlm"
SECRET = "sk-test-SECRET-0123456789abcdef"

CROP_TOOL = ToolSpec(
    name="request_crops",
    description="Ask for high-resolution crops.",
    parameters={
        "type": "object",
        "properties": {"crops": {"type": "array", "items": {"type": "integer"}}},
        "required": ["crops"],
    },
)


def backend_for(server: ScriptedChatServer, **kwargs: object) -> OpenAIBackend:
    """A backend on the scripted server; fast retries by default (tests script FAST_RETRY headers)."""
    kwargs.setdefault("max_retries", 1)
    kwargs.setdefault("timeout", 5.0)
    return OpenAIBackend(MODEL, base_url=server.base_url, **kwargs)  # type: ignore[arg-type]


def ask(text: str = "What does the sign say?") -> list[ChatMessage]:
    return [ChatMessage.text_message("system", "You are terse."), ChatMessage.text_message("user", text)]


def pattern_image(width: int = 64, height: int = 48) -> Image.Image:
    """An RGB image whose every pixel differs from its neighbours (so any resampling would show)."""
    img = Image.new("RGB", (width, height))
    img.putdata([((x * 7) % 256, (y * 11) % 256, (x * y) % 256) for y in range(height) for x in range(width)])
    return img


@pytest.fixture
def store() -> ImageStore:
    return ImageStore()


# --- successful calls ----------------------------------------------------------------------------------


def test_plain_text_answer(chat_server: ScriptedChatServer, store: ImageStore) -> None:
    chat_server.enqueue(Completion(text="STOP", prompt_tokens=42, completion_tokens=3))
    backend = backend_for(chat_server)

    reply = backend.complete(ask(), images=store)

    assert isinstance(backend, ChatBackend)
    assert backend.model_name == MODEL
    assert reply.text == "STOP"
    assert reply.tool_calls == []
    assert reply.finish_reason == "stop"
    assert reply.model == MODEL
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (42, 3)
    assert 0 < reply.latency_s < 5
    (req,) = chat_server.requests
    assert req.path == "/v1/chat/completions"
    assert req.model == MODEL
    assert req.messages == [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "What does the sign say?"},
    ]
    assert req.json["temperature"] == 0.0
    assert "tools" not in req.json and "tool_choice" not in req.json
    assert "max_tokens" not in req.json


def test_native_tool_call_keeps_raw_arguments(chat_server: ScriptedChatServer, store: ImageStore) -> None:
    raw = '{"crops": [0, 3] ,"why":"tiny text"}'  # odd spacing must survive byte for byte
    chat_server.enqueue(Completion(tool_calls=[("request_crops", raw), ("request_crops", {"crops": [1]})]))

    reply = backend_for(chat_server).complete(ask(), images=store, tools=[CROP_TOOL])

    assert reply.text == ""
    assert reply.finish_reason == "tool_calls"
    assert reply.tool_calls == [
        ToolCall(id="call_0", name="request_crops", arguments=raw),
        ToolCall(id="call_1", name="request_crops", arguments='{"crops": [1]}'),
    ]
    req = chat_server.last_request
    assert req.tools == [CROP_TOOL.to_openai()]
    assert "tool_choice" not in req.json  # left to the server's default, "auto"


@pytest.mark.parametrize("tools", [None, []])
def test_no_tools_payload_without_tools(
    chat_server: ScriptedChatServer, store: ImageStore, tools: list[ToolSpec] | None
) -> None:
    chat_server.enqueue(Completion(text="ok"))
    backend_for(chat_server).complete(ask(), images=store, tools=tools)
    assert "tools" not in chat_server.last_request.json
    assert "tool_choice" not in chat_server.last_request.json


def test_lenient_reply_parsing(chat_server: ScriptedChatServer, store: ImageStore) -> None:
    """No usage, null content, a tool call without id and with object arguments: all still usable."""
    chat_server.enqueue(
        RawJSON(
            {
                "model": "served-name",
                "choices": [
                    {
                        "message": {
                            "role": "assistant",
                            "content": None,
                            "tool_calls": [
                                {"function": {"name": "request_crops", "arguments": {"crops": [2]}}}
                            ],
                        },
                        "finish_reason": "tool_calls",
                    }
                ],
            }
        )
    )
    reply = backend_for(chat_server).complete(ask(), images=store, tools=[CROP_TOOL])
    assert reply.text == ""
    assert reply.tool_calls == [ToolCall(id="call_0", name="request_crops", arguments='{"crops": [2]}')]
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (0, 0)
    assert reply.model == "served-name"


def test_options_reach_the_request(chat_server: ScriptedChatServer, store: ImageStore) -> None:
    chat_server.enqueue(Completion(text="ok"))
    backend = backend_for(
        chat_server,
        temperature=None,
        max_tokens=77,
        extra_body={"top_k": 5},
        default_headers={"X-Trace": "abc"},
    )
    backend.complete(ask(), images=store)
    req = chat_server.last_request
    assert "temperature" not in req.json
    assert req.json["max_tokens"] == 77
    assert req.json["top_k"] == 5
    assert req.headers["x-trace"] == "abc"


def test_acomplete(chat_server: ScriptedChatServer, store: ImageStore) -> None:
    chat_server.enqueue(Completion(text="one"), Completion(tool_calls=[("request_crops", {"crops": [0]})]))
    backend = backend_for(chat_server)

    first = asyncio.run(backend.acomplete(ask(), images=store))
    # A second event loop: the backend must not reuse connections bound to the first (closed) loop.
    second = asyncio.run(backend.acomplete(ask(), images=store, tools=[CROP_TOOL]))

    assert first.text == "one" and first.latency_s > 0
    assert second.tool_calls[0].arguments == '{"crops": [0]}'
    assert len(chat_server.requests) == 2


def test_acomplete_maps_errors(chat_server: ScriptedChatServer, store: ImageStore) -> None:
    chat_server.enqueue(HTTPError(503, headers=FAST_RETRY), HTTPError(503, headers=FAST_RETRY))
    with pytest.raises(BackendHTTPError) as info:
        asyncio.run(backend_for(chat_server).acomplete(ask(), images=store))
    assert info.value.status_code == 503


# --- images and history --------------------------------------------------------------------------------


def test_images_travel_as_data_uris_in_a_user_message(
    chat_server: ScriptedChatServer, store: ImageStore
) -> None:
    original = pattern_image(64, 48)
    src = store.add(original)
    full = store.full(src.id)
    view = store.view(src.id, ViewSpec())
    chat_server.enqueue(Completion(text="seen"))
    messages = [ChatMessage(role="user", content=[TextPart(text="Look:"), view, TextPart(text="and"), full])]

    backend_for(chat_server).complete(messages, images=store)

    req = chat_server.last_request
    (user,) = req.messages
    assert user["role"] == "user"
    assert [p["type"] for p in user["content"]] == ["text", "image_url", "text", "image_url"]
    assert user["content"][0] == {"type": "text", "text": "Look:"}
    urls = req.image_urls()
    assert all(u.startswith("data:image/png;base64,") for u in urls)
    assert urls == [store.data_uri(view.image_id, "png"), store.data_uri(full.image_id, "png")]
    sent_view, sent_full = req.images()
    assert sent_full.format == "PNG"
    assert sent_full.size == original.size == (full.width, full.height)
    assert sent_full.convert("RGB").tobytes() == original.tobytes()
    assert sent_view.size == (view.width, view.height) == (32, 24)
    assert sent_view.convert("RGB").tobytes() == store.get(view.image_id).convert("RGB").tobytes()


def test_jpeg_image_format(chat_server: ScriptedChatServer, store: ImageStore) -> None:
    src = store.add(pattern_image(32, 32))
    chat_server.enqueue(Completion(text="ok"))
    message = ChatMessage(role="user", content=[store.full(src.id)])
    backend_for(chat_server, image_format="jpeg").complete([message], images=store)
    (url,) = chat_server.last_request.image_urls()
    assert url.startswith("data:image/jpeg;base64,")
    assert chat_server.last_request.images()[0].size == (32, 32)


@pytest.mark.parametrize("detail", [None, "high"])
def test_image_detail(chat_server: ScriptedChatServer, store: ImageStore, detail: str | None) -> None:
    src = store.add(pattern_image(32, 32))
    chat_server.enqueue(Completion(text="ok"))
    message = ChatMessage(role="user", content=[store.full(src.id)])
    backend_for(chat_server, image_detail=detail).complete([message], images=store)
    (part,) = chat_server.last_request.messages[0]["content"]
    assert part["image_url"].get("detail") == detail


def test_tool_call_history_is_translated(chat_server: ScriptedChatServer, store: ImageStore) -> None:
    src = store.add(pattern_image(80, 60))
    view = store.view(src.id, ViewSpec())
    crop = store.full(src.id)
    history = [
        ChatMessage.text_message("system", "sys"),
        ChatMessage(role="user", content=[TextPart(text="Q?"), view]),
        ChatMessage(
            role="assistant",
            tool_calls=[ToolCall(id="call_7", name="request_crops", arguments='{"crops":[1]}')],
        ),
        ChatMessage(role="tool", tool_call_id="call_7", content=[TextPart(text="1 crop follows")]),
        ChatMessage(role="user", content=[TextPart(text="crop 1:"), crop]),
        ChatMessage(
            role="assistant",
            content=[TextPart(text="Checking.")],
            tool_calls=[ToolCall(id="c8", name="request_crops", arguments="{}")],
        ),
        ChatMessage.text_message("tool", "nothing"),
    ]
    history[-1] = history[-1].model_copy(update={"tool_call_id": "c8"})
    chat_server.enqueue(Completion(text="done"))

    backend_for(chat_server).complete(history, images=store, tools=[CROP_TOOL])

    sent = chat_server.last_request.messages
    assert sent[0] == {"role": "system", "content": "sys"}
    assert [p["type"] for p in sent[1]["content"]] == ["text", "image_url"]
    assert sent[2] == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_7",
                "type": "function",
                "function": {"name": "request_crops", "arguments": '{"crops":[1]}'},
            }
        ],
    }
    assert sent[3] == {"role": "tool", "tool_call_id": "call_7", "content": "1 crop follows"}
    assert sent[4]["role"] == "user"
    assert sent[4]["content"][0] == {"type": "text", "text": "crop 1:"}
    assert sent[4]["content"][1]["image_url"]["url"] == store.data_uri(crop.image_id, "png")
    assert sent[5]["content"] == "Checking." and sent[5]["tool_calls"][0]["id"] == "c8"
    assert sent[6] == {"role": "tool", "tool_call_id": "c8", "content": "nothing"}


def test_images_in_a_tool_message_are_refused(store: ImageStore) -> None:
    src = store.add(pattern_image(16, 16))
    bad = ChatMessage(
        role="tool", tool_call_id="call_0", content=[TextPart(text="crop:"), store.full(src.id)]
    )
    with pytest.raises(MessageTranslationError, match="user message") as info:
        to_openai_messages([bad], store, "png")
    assert isinstance(info.value, AwaresError) and isinstance(info.value, ValueError)
    with pytest.raises(MessageTranslationError, match="tool_call_id"):
        to_openai_messages([ChatMessage.text_message("tool", "x")], store)


def test_unknown_image_part_is_not_silently_dropped(store: ImageStore) -> None:
    ghost = ImagePart(image_id="no-such-image", width=4, height=4)
    with pytest.raises(UnknownImageError, match="no-such-image"):
        to_openai_messages([ChatMessage(role="user", content=[ghost])], store)


# --- retries and failures ------------------------------------------------------------------------------


def test_429_then_success_is_retried(chat_server: ScriptedChatServer, store: ImageStore) -> None:
    chat_server.enqueue(HTTPError(429, headers=FAST_RETRY), Completion(text="finally"))
    reply = backend_for(chat_server, max_retries=2).complete(ask(), images=store)
    assert reply.text == "finally"
    first, second = chat_server.requests
    assert first.json == second.json
    assert second.headers["x-stainless-retry-count"] == "1"


def test_500_past_max_retries(chat_server: ScriptedChatServer, store: ImageStore) -> None:
    chat_server.enqueue(*[HTTPError(500, {"error": {"message": "CUDA out of memory"}}, FAST_RETRY)] * 3)
    with pytest.raises(BackendHTTPError) as info:
        backend_for(chat_server, max_retries=2).complete(ask(), images=store)
    err = info.value
    assert err.status_code == 500
    assert len(chat_server.requests) == 3
    assert "CUDA out of memory" in str(err) and chat_server.base_url in str(err) and MODEL in str(err)
    assert err.__cause__ is not None


def test_429_past_max_retries(chat_server: ScriptedChatServer, store: ImageStore) -> None:
    chat_server.enqueue(*[HTTPError(429, {"error": {"message": "slow down"}}, FAST_RETRY)] * 2)
    with pytest.raises(BackendRateLimitError, match="slow down"):
        backend_for(chat_server, max_retries=1).complete(ask(), images=store)
    assert len(chat_server.requests) == 2


def test_timeout(chat_server: ScriptedChatServer, store: ImageStore) -> None:
    chat_server.enqueue(Delay(5, then=Completion(text="too late")))
    backend = backend_for(chat_server, timeout=0.3, max_retries=0)
    start = time.perf_counter()
    with pytest.raises(BackendTimeoutError) as info:
        backend.complete(ask(), images=store)
    assert time.perf_counter() - start < 2
    assert "0.3 s" in str(info.value) and "timeout=" in str(info.value)


@pytest.mark.parametrize(
    "reply",
    [
        Garbage(b'{"id": "chatcmpl-1", "choices": [{"mess'),  # truncated JSON
        Garbage(b"<html><body>502 Bad Gateway</body></html>" * 20, content_type="text/html"),
        Garbage(b""),
        Garbage(b"\xff\xfe\x00garbage"),
        RawJSON(None),
        RawJSON([1, 2, 3]),
        RawJSON({"object": "chat.completion"}),
        RawJSON({"choices": []}),
        RawJSON({"choices": [{"index": 0}]}),
        RawJSON({"choices": [{"message": {"tool_calls": [{"id": "x", "function": {}}]}}]}),
        RawJSON({"error": {"message": "model overloaded"}}),
    ],
    ids=[
        "truncated",
        "html",
        "empty",
        "binary",
        "null",
        "list",
        "no-choices",
        "empty-choices",
        "no-message",
        "nameless-tool",
        "error-200",
    ],
)
def test_unusable_body(chat_server: ScriptedChatServer, store: ImageStore, reply: Garbage | RawJSON) -> None:
    chat_server.enqueue(reply)
    with pytest.raises(BackendResponseError) as info:
        backend_for(chat_server).complete(ask(), images=store)
    message = str(info.value)
    assert chat_server.base_url in message and MODEL in message
    assert len(message) < 600  # the echoed body is truncated


def test_connection_refused(store: ImageStore) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    base_url = f"http://127.0.0.1:{port}/v1"
    backend = OpenAIBackend(MODEL, base_url=base_url, max_retries=0, timeout=2)
    with pytest.raises(BackendConnectionError) as info:
        backend.complete(ask(), images=store)
    assert base_url in str(info.value) and "running" in str(info.value)


def test_404_names_the_model(chat_server: ScriptedChatServer, store: ImageStore) -> None:
    chat_server.enqueue(HTTPError(404, {"error": {"message": "The model `scripted-vlm` does not exist."}}))
    with pytest.raises(BackendHTTPError) as info:
        backend_for(chat_server).complete(ask(), images=store)
    assert info.value.status_code == 404
    assert "model name 'scripted-vlm' may be wrong" in str(info.value)


def test_400_carries_the_server_message(chat_server: ScriptedChatServer, store: ImageStore) -> None:
    chat_server.enqueue(HTTPError(400, "image_url is not supported by this model " + "x" * 500))
    with pytest.raises(BackendHTTPError) as info:
        backend_for(chat_server).complete(ask(), images=store)
    assert info.value.status_code == 400
    assert "image_url is not supported" in str(info.value) and len(str(info.value)) < 500
    assert len(chat_server.requests) == 1  # 4xx are not retried


def test_unscripted_request_fails_loudly(chat_server: ScriptedChatServer, store: ImageStore) -> None:
    with pytest.raises(BackendHTTPError, match="no scripted reply left") as info:
        backend_for(chat_server, max_retries=3).complete(ask(), images=store)
    assert info.value.status_code == 500
    assert len(chat_server.requests) == 1 and chat_server.unscripted == 1


# --- credentials ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [401, 403])
def test_auth_error_hides_the_key(chat_server: ScriptedChatServer, store: ImageStore, status: int) -> None:
    # A careless server echoes the key back; the error must still not contain it.
    chat_server.enqueue(HTTPError(status, {"error": {"message": f"Incorrect API key provided: {SECRET}"}}))
    backend = backend_for(chat_server, api_key=SECRET, api_key_env="AWARES_TEST_KEY")
    with pytest.raises(BackendAuthError) as info:
        backend.complete(ask(), images=store)
    err = info.value
    assert err.status_code == status
    assert SECRET not in str(err) and SECRET not in repr(err)
    assert "AWARES_TEST_KEY" in str(err)


def test_key_from_env_var_never_leaks(
    chat_server: ScriptedChatServer,
    store: ImageStore,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("AWARES_TEST_KEY", SECRET)
    caplog.set_level(logging.DEBUG)
    chat_server.enqueue(
        Completion(text="ok"),
        HTTPError(500, {"error": {"message": f"echo {SECRET}"}}, FAST_RETRY),
        Garbage(f"not json {SECRET}".encode()),
    )
    backend = backend_for(chat_server, api_key_env="AWARES_TEST_KEY", max_retries=0)

    backend.complete(ask(), images=store)
    errors = []
    for _ in range(2):
        with pytest.raises(AwaresError) as info:
            backend.complete(ask(), images=store)
        errors.append(info.value)

    assert chat_server.requests[0].headers["authorization"] == f"Bearer {SECRET}"
    assert SECRET not in repr(backend) and SECRET not in str(backend)
    for err in errors:
        assert SECRET not in "".join(traceback.format_exception(err))  # the chained openai error too
    assert caplog.records  # the openai client did log at DEBUG...
    assert all(SECRET not in r.getMessage() for r in caplog.records)  # ...but never the key


def test_explicit_key_wins_over_env(
    chat_server: ScriptedChatServer, store: ImageStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "from-env")
    chat_server.enqueue(Completion(text="ok"))
    backend_for(chat_server, api_key="explicit").complete(ask(), images=store)
    assert chat_server.last_request.headers["authorization"] == "Bearer explicit"


def test_local_server_needs_no_key(
    chat_server: ScriptedChatServer, store: ImageStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    chat_server.enqueue(Completion(text="ok"))
    backend_for(chat_server).complete(ask(), images=store)
    assert chat_server.last_request.headers["authorization"] == "Bearer EMPTY"


def test_openai_without_key_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(ConfigError, match="OPENAI_API_KEY"):
        OpenAIBackend("gpt-4o")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"timeout": 0},
        {"max_retries": -1},
        {"image_format": "gif"},
        {"max_tokens": 0},
        {"base_url": "localhost:8000/v1"},
    ],
)
def test_invalid_options(kwargs: dict[str, object]) -> None:
    kwargs = {"base_url": "http://127.0.0.1:9/v1", **kwargs}
    with pytest.raises(ConfigError):
        OpenAIBackend(MODEL, **kwargs)  # type: ignore[arg-type]


# --- the scripted server itself ------------------------------------------------------------------------


def test_server_streams_chunks(chat_server: ScriptedChatServer) -> None:
    import openai

    chat_server.enqueue(Completion(text="a b c", tool_calls=[("request_crops", {"crops": [4]})]))
    client = openai.OpenAI(base_url=chat_server.base_url, api_key="x", max_retries=0)
    stream = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "hi"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    args = "".join(
        tc.function.arguments or ""
        for c in chunks
        if c.choices
        for tc in c.choices[0].delta.tool_calls or []
        if tc.function
    )
    assert text == "a b c"
    assert json.loads(args) == {"crops": [4]}
    assert chunks[-1].usage is not None and chunks[-1].usage.prompt_tokens == 10
    client.close()


# --- hostile reply shapes ------------------------------------------------------------------------------


def completion_body(**message: object) -> dict[str, object]:
    """A minimal valid chat completion whose message fields are ``message``."""
    return {
        "model": MODEL,
        "choices": [{"index": 0, "message": {"role": "assistant", **message}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 2},
    }


def test_non_string_text_part_is_an_invalid_reply(chat_server: ScriptedChatServer, store: ImageStore) -> None:
    chat_server.enqueue(
        RawJSON(completion_body(content=[{"type": "text", "text": "ok"}, {"type": "text", "text": 5}]))
    )
    with pytest.raises(
        BackendResponseError, match=r"content part 1 is a text part whose 'text' is an int, not a string"
    ) as info:
        backend_for(chat_server).complete(ask(), images=store)
    assert chat_server.base_url in str(info.value) and MODEL in str(info.value)


def test_content_parts_keep_text_and_skip_the_rest(
    chat_server: ScriptedChatServer, store: ImageStore
) -> None:
    parts = [
        {"type": "text", "text": "The sign "},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
        {"type": "refusal", "refusal": "no"},
        {"type": "output_audio", "data": 5},
        {"type": "text", "text": "says STOP."},
    ]
    chat_server.enqueue(RawJSON(completion_body(content=parts)))
    assert backend_for(chat_server).complete(ask(), images=store).text == "The sign says STOP."


HOSTILE_VALUES: list[object] = [
    None, 0, -1, 5, 1.5, 12.0, float("inf"), True, "", "x", [], [1], [[]], {}, {"a": 1}, [None], ["s"],
    [{"type": "text"}], [{"type": "text", "text": None}], [{"type": "text", "text": 5}], [{"text": {"a": 1}}],
    10**30,
]  # fmt: skip


def _paths(value: object, prefix: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    """Every path (dict keys and list indexes) inside a JSON value, the value itself included."""
    out = [prefix]
    if isinstance(value, dict):
        for key, inner in value.items():
            out += _paths(inner, (*prefix, key))
    elif isinstance(value, list):
        for i, inner in enumerate(value):
            out += _paths(inner, (*prefix, i))
    return out


def _replaced(value: object, path: tuple[object, ...], new: object) -> object:
    if not path:
        return new
    copy = json.loads(json.dumps(value))
    target = copy
    for step in path[:-1]:
        target = target[step]  # type: ignore[index]
    target[path[-1]] = new  # type: ignore[index]
    return copy


def test_every_mutated_body_parses_or_is_a_response_error() -> None:
    """Each field of a full completion (tool calls, content parts, usage) replaced by each hostile value:
    ``parse_completion`` returns a reply or raises BackendResponseError, never anything else."""
    base = completion_body(
        content=[{"type": "text", "text": "a"}, {"type": "image_url", "image_url": {"url": "x"}}],
        tool_calls=[
            {"id": "c1", "type": "function", "function": {"name": "request_crops", "arguments": "{}"}}
        ],
    )
    checked = 0
    for path in _paths(base):
        for value in HOSTILE_VALUES:
            body = _replaced(base, path, value)
            try:
                reply = parse_completion(body, where="srv (model 'm')")
            except BackendResponseError as err:
                assert str(err).startswith("srv (model 'm') returned an invalid chat completion")
            else:
                # An accepted reply is one the trajectory can store and read back as it was.
                assert ChatReply.model_validate_json(reply.model_dump_json()) == reply
                assert all(isinstance(c.name, str) and c.name for c in reply.tool_calls)
                assert 0 <= reply.usage.prompt_tokens < 2**53 and 0 <= reply.usage.completion_tokens < 2**53
            checked += 1
    assert checked > 500


@pytest.mark.parametrize(
    ("usage", "expected"),
    [
        ({"prompt_tokens": 7, "completion_tokens": 2}, (7, 2)),
        ({"prompt_tokens": 7.0, "completion_tokens": 2.5}, (7, 0)),
        ({"prompt_tokens": True, "completion_tokens": False}, (0, 0)),
        ({"prompt_tokens": 10**30, "completion_tokens": -3}, (0, 0)),
        ({"prompt_tokens": "7", "completion_tokens": None}, (0, 0)),
        ([7, 2], (0, 0)),
    ],
)
def test_odd_usage_counts_as_unreported(usage: object, expected: tuple[int, int]) -> None:
    reply = parse_completion({"choices": [{"message": {"content": "x"}}], "usage": usage}, where="srv")
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == expected


@pytest.mark.parametrize(
    "body",
    [
        {"choices": [[{"message": {"content": "x"}}]]},
        {"choices": [{"message": {"tool_calls": [{"function": {"name": {"a": 1}}}]}}]},
        {"choices": [{"message": {"tool_calls": [{"function": ["request_crops"]}]}}]},
        {"choices": [{"message": {"tool_calls": ["request_crops"]}}]},
        {"choices": [{"message": {"content": [5]}}]},
    ],
    ids=["choice-is-a-list", "name-is-a-dict", "function-is-a-list", "call-is-a-string", "part-is-a-number"],
)
def test_malformed_parts_are_response_errors(
    chat_server: ScriptedChatServer, store: ImageStore, body: object
) -> None:
    chat_server.enqueue(RawJSON(body))
    with pytest.raises(BackendResponseError, match="invalid chat completion"):
        backend_for(chat_server).complete(ask(), images=store)


def test_deeply_nested_body_is_a_response_error(chat_server: ScriptedChatServer, store: ImageStore) -> None:
    chat_server.enqueue(Garbage(b'{"choices": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"))
    with pytest.raises(BackendResponseError):
        backend_for(chat_server).complete(ask(), images=store)


# --- whole-request timeouts, retries and the deadline --------------------------------------------------


@pytest.mark.parametrize("headers_too", [False, True], ids=["body", "headers"])
def test_trickling_reply_is_cut_at_the_timeout(
    chat_server: ScriptedChatServer, store: ImageStore, headers_too: bool
) -> None:
    """A server that sends a byte every 50 ms never trips a per-read timeout; the attempt's must still end."""
    chat_server.enqueue(Trickle(Completion(text="slowly"), interval=0.05, headers_too=headers_too))
    backend = backend_for(chat_server, timeout=0.5, max_retries=0)
    start = time.perf_counter()
    with pytest.raises(BackendTimeoutError, match=r"0\.5 s timeout"):
        backend.complete(ask(), images=store)
    assert time.perf_counter() - start < 1.2


def test_trickling_reply_is_cut_at_the_timeout_async(
    chat_server: ScriptedChatServer, store: ImageStore
) -> None:
    chat_server.enqueue(Trickle(Completion(text="slowly"), interval=0.05))
    backend = backend_for(chat_server, timeout=0.5, max_retries=0)
    start = time.perf_counter()
    with pytest.raises(BackendTimeoutError, match=r"0\.5 s timeout"):
        asyncio.run(backend.acomplete(ask(), images=store))
    assert time.perf_counter() - start < 1.2


def test_a_reply_that_trickles_within_the_timeout_arrives(
    chat_server: ScriptedChatServer, store: ImageStore
) -> None:
    chat_server.enqueue(Trickle(Completion(text="in pieces"), interval=0.01, chunk=16, headers_too=True))
    assert (
        backend_for(chat_server, timeout=3, max_retries=0).complete(ask(), images=store).text == "in pieces"
    )


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
def test_retry_after_past_the_deadline_gives_up_at_once(
    chat_server: ScriptedChatServer, store: ImageStore, asynchronous: bool
) -> None:
    chat_server.enqueue(HTTPError(429, {"error": {"message": "slow down"}}, {"retry-after": "61"}))
    backend = backend_for(chat_server, timeout=1, max_retries=3, deadline=30)
    start = time.perf_counter()
    with pytest.raises(BackendRateLimitError) as info:
        if asynchronous:
            asyncio.run(backend.acomplete(ask(), images=store))
        else:
            backend.complete(ask(), images=store)
    assert time.perf_counter() - start < 1
    message = str(info.value)
    assert "slow down" in message and chat_server.base_url in message
    assert "asked to retry after 61 s, which is past the 30 s deadline; gave up after 1 attempt" in message
    assert "(after" not in message  # no retry was made (it used to say "after 3 retries")
    assert len(chat_server.requests) == 1


def test_retry_after_as_http_date_past_the_deadline(
    chat_server: ScriptedChatServer, store: ImageStore
) -> None:
    when = email.utils.formatdate(time.time() + 300, usegmt=True)
    chat_server.enqueue(HTTPError(503, headers={"retry-after": when}))
    with pytest.raises(
        BackendHTTPError, match=r"asked to retry after (29\d|300) s, which is past the 10 s deadline"
    ):
        backend_for(chat_server, timeout=1, max_retries=3, deadline=10).complete(ask(), images=store)
    assert len(chat_server.requests) == 1


def test_retry_after_within_the_deadline_is_honoured(
    chat_server: ScriptedChatServer, store: ImageStore
) -> None:
    chat_server.enqueue(HTTPError(503, headers={"retry-after-ms": "300"}), Completion(text="rested"))
    start = time.perf_counter()
    reply = backend_for(chat_server, max_retries=1).complete(ask(), images=store)
    assert reply.text == "rested"
    assert 0.3 <= time.perf_counter() - start < 2
    assert [r.headers["x-stainless-retry-count"] for r in chat_server.requests] == ["0", "1"]


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
def test_deadline_bounds_every_attempt_and_wait(
    chat_server: ScriptedChatServer, store: ImageStore, asynchronous: bool
) -> None:
    chat_server.enqueue(*[Delay(5, then=Completion(text="too late"))] * 6)
    backend = backend_for(chat_server, timeout=0.4, max_retries=5, deadline=1.0)
    start = time.perf_counter()
    with pytest.raises(BackendTimeoutError) as info:
        if asynchronous:
            asyncio.run(backend.acomplete(ask(), images=store))
        else:
            backend.complete(ask(), images=store)
    elapsed = time.perf_counter() - start
    assert 0.9 < elapsed < 1.4
    assert "1 s deadline" in str(info.value) and "deadline=" in str(info.value)
    assert 2 <= len(chat_server.requests) <= 3


def test_retry_count_in_the_message_is_the_retries_made(
    chat_server: ScriptedChatServer, store: ImageStore
) -> None:
    chat_server.enqueue(*[HTTPError(502, headers=FAST_RETRY)] * 3)
    with pytest.raises(BackendHTTPError, match=r"HTTP 502 \(after 2 retries\)"):
        backend_for(chat_server, max_retries=2).complete(ask(), images=store)
    chat_server.enqueue(HTTPError(502, headers={"x-should-retry": "false"}))
    with pytest.raises(BackendHTTPError) as info:
        backend_for(chat_server, max_retries=2).complete(ask(), images=store)
    assert "retr" not in str(info.value)  # the server said not to retry: none was made


def test_x_should_retry_true_retries_a_400(chat_server: ScriptedChatServer, store: ImageStore) -> None:
    chat_server.enqueue(
        HTTPError(400, headers={"x-should-retry": "true", **FAST_RETRY}), Completion(text="ok")
    )
    assert backend_for(chat_server, max_retries=1).complete(ask(), images=store).text == "ok"
    assert len(chat_server.requests) == 2


def test_default_deadline_and_bad_deadlines() -> None:
    backend = OpenAIBackend(MODEL, base_url="http://127.0.0.1:9/v1", timeout=3, max_retries=3)
    assert backend.deadline == 3 * 4 + 30
    assert OpenAIBackend(MODEL, base_url="http://127.0.0.1:9/v1", deadline=7.5).deadline == 7.5
    for bad in (0, -1, float("nan"), float("inf"), "10"):
        with pytest.raises(ConfigError, match="deadline"):
            OpenAIBackend(MODEL, base_url="http://127.0.0.1:9/v1", deadline=bad)  # type: ignore[arg-type]


def test_cli_deadline_option(
    chat_server: ScriptedChatServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--timeout 3`` with the default retries: a Retry-After of 61 s is past the default 42 s deadline, and
    past an explicit ``--deadline 5``; either way the query ends at once."""
    image = tmp_path / "sign.png"
    Image.new("RGB", (64, 48), "white").save(image)
    args = ["ask", str(image), "q", "--base-url", chat_server.base_url, "--model", MODEL, "--timeout", "3"]
    for extra, deadline in (([], 42), (["--deadline", "5"], 5)):
        chat_server.enqueue(HTTPError(429, headers={"retry-after": "61"}))
        start = time.perf_counter()
        assert main([*args, *extra]) == 1
        assert time.perf_counter() - start < 2
        err = capsys.readouterr().err
        assert f"past the {deadline} s deadline" in err and "--deadline" in err


def test_environment_proxy_is_used(
    chat_server: ScriptedChatServer, store: ImageStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sync client's own transport still goes through the proxy the environment names (as httpx would)."""
    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", chat_server.url)
    backend = OpenAIBackend(MODEL, base_url="http://model.invalid/v1", max_retries=0, timeout=2)
    with pytest.raises(BackendHTTPError) as info:  # the scripted server is no real proxy: it answers 404
        backend.complete(ask(), images=store)
    assert info.value.status_code == 404
    (request,) = chat_server.requests
    assert request.path == "http://model.invalid/v1/chat/completions"  # the absolute form sent to proxies


def test_no_proxy_is_honoured(
    chat_server: ScriptedChatServer, store: ImageStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as sock:  # nothing listens there
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}"
    for name in ("no_proxy", "ALL_PROXY", "all_proxy", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", dead)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    chat_server.enqueue(Completion(text="direct"))
    assert backend_for(chat_server).complete(ask(), images=store).text == "direct"


# --- credentials in error messages ---------------------------------------------------------------------

KEY = "Qx7Rv2Lp9Tz4Wm1Kc8Hy3Nb6Fd5Gs0Jh"  # 32 characters, not shaped like any known key format


@pytest.fixture
def key() -> Iterator[str]:
    """KEY, not registered as a secret before the test (the backend must register it), forgotten after."""
    forget_secret(KEY)
    yield KEY
    forget_secret(KEY)


def leaked(text: str, secret: str = KEY, size: int = 6) -> list[str]:
    """Every fragment of ``secret`` of ``size`` characters that appears in ``text``."""
    return [secret[i : i + size] for i in range(len(secret) - size + 1) if secret[i : i + size] in text]


def at_190(prefix: str, secret: str, shift: int = 0) -> str:
    """A long message with ``secret`` starting at character ``190 - shift`` (a 200-character excerpt of the
    message with ``shift`` characters before it would cut the key after its 10th character)."""
    return prefix + "x" * (190 - shift - len(prefix)) + secret + " and more" + " y" * 200


ECHOES = {
    "auth-header-text": lambda req: HTTPError(
        400, f"bad request; headers: Authorization: {req.headers['authorization']}"
    ),
    "auth-header-json": lambda req: HTTPError(
        400, {"error": {"message": "bad request", "headers": {"authorization": req.headers["authorization"]}}}
    ),
    "key-in-json-message": lambda req: HTTPError(
        400, {"error": {"message": f"key {req.headers['authorization'].split()[-1]} lacks access"}}
    ),
    "key-at-190-json": lambda req: HTTPError(
        400, {"error": {"message": at_190("invalid: ", req.headers["authorization"].split()[-1])}}
    ),
    "key-at-190-text": lambda req: HTTPError(
        400, at_190("invalid: ", req.headers["authorization"].split()[-1])
    ),
    "key-at-190-401": lambda req: HTTPError(401, at_190("no: ", req.headers["authorization"].split()[-1])),
    "key-at-190-500": lambda req: HTTPError(
        500, {"error": at_190("oops ", req.headers["authorization"].split()[-1])}, {"x-should-retry": "false"}
    ),
    "key-at-190-bad-body": lambda req: RawJSON(  # the excerpt is of '{"detail": "...'
        {"detail": at_190("", req.headers["authorization"].split()[-1], shift=12), "choices": []}
    ),
    "key-at-190-not-json": lambda req: Garbage(
        at_190("<html>", req.headers["authorization"].split()[-1]).encode(), content_type="text/html"
    ),
}


def all_texts(err: BaseException) -> str:
    """Everything an error shows: str, repr, the traceback with its chain, and the cause's fields."""
    texts = [str(err), repr(err), "".join(traceback.format_exception(err))]
    cause = err.__cause__
    while cause is not None:
        texts += [str(cause), repr(cause), repr(cause.args)]
        texts += [repr(getattr(cause, name, None)) for name in ("message", "body")]
        cause = cause.__cause__
    return "\n".join(texts)


@pytest.mark.parametrize("echo", list(ECHOES), ids=list(ECHOES))
def test_an_echoed_key_never_shows(
    chat_server: ScriptedChatServer, store: ImageStore, key: str, echo: str
) -> None:
    chat_server.enqueue(ECHOES[echo])
    backend = backend_for(chat_server, api_key=key, max_retries=0)
    with pytest.raises(AwaresError) as info:
        backend.complete(ask(), images=store)
    assert chat_server.last_request.headers["authorization"] == f"Bearer {key}"
    assert leaked(all_texts(info.value)) == []


def test_an_echoed_key_never_shows_in_the_cli(
    chat_server: ScriptedChatServer,
    tmp_path: Path,
    key: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", key)
    image = tmp_path / "sign.png"
    Image.new("RGB", (64, 48), "white").save(image)
    args = [
        "ask",
        str(image),
        "q",
        "--base-url",
        chat_server.base_url,
        "--model",
        MODEL,
        "--max-retries",
        "0",
    ]
    for echo in ECHOES.values():
        chat_server.enqueue(echo)
        assert main(args) == 1
        captured = capsys.readouterr()
        assert captured.err.startswith("error:")
        assert leaked(captured.out + captured.err) == []


# --- async clients and event loops ---------------------------------------------------------------------

LOOPS_SCRIPT = """
import asyncio, gc, sys
sys.path.insert(0, {tests!r})
from chat_server import Completion, ScriptedChatServer
from awares_agent.backends.openai_compat import OpenAIBackend
from awares_agent.image_store import ImageStore
from awares_agent.messages import ChatMessage

with ScriptedChatServer(*[Completion(text=str(i)) for i in range(4)]) as server:
    backend = OpenAIBackend("m", base_url=server.base_url, max_retries=0)
    question = [ChatMessage.text_message("user", "hi")]
    for _ in range(3):
        print(asyncio.run(backend.acomplete(question, images=ImageStore())).text)
    print(backend.complete(question, images=ImageStore()).text)
    del backend
    gc.collect()
print("done")
"""


def test_async_clients_close_with_their_event_loop(tmp_path: Path) -> None:
    """Three ``asyncio.run`` calls and a sync call on one backend, then the backend dropped: nothing printed
    on stderr (no "Event loop is closed" from a client that outlived its loop, no unclosed-socket warning)."""
    script = tmp_path / "loops.py"
    script.write_text(LOOPS_SCRIPT.format(tests=str(Path(__file__).parent)))
    proc = subprocess.run(
        [sys.executable, "-W", "always::ResourceWarning", str(script)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).parent.parent,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["0", "1", "2", "3", "done"]
    assert proc.stderr == ""


def test_aclose_closes_the_async_client(chat_server: ScriptedChatServer, store: ImageStore) -> None:
    chat_server.enqueue(Completion(text="a"), Completion(text="b"))
    backend = backend_for(chat_server)

    async def twice() -> list[str]:
        first = await backend.acomplete(ask(), images=store)
        await backend.aclose()
        second = await backend.acomplete(ask(), images=store)  # reopens a client
        await backend.aclose()
        return [first.text, second.text]

    assert asyncio.run(twice()) == ["a", "b"]


# --- streaming -----------------------------------------------------------------------------------------


def sse(*events: object, done: bool = True, end: str = "\n") -> bytes:
    """A server-sent event stream: one ``data:`` event per item (JSON-encoded, a str sent as it is), then
    ``[DONE]`` unless ``done`` is false; ``end`` is the line end."""
    lines = [f"data: {e if isinstance(e, str) else json.dumps(e)}{end}{end}" for e in events]
    if done:
        lines.append(f"data: [DONE]{end}{end}")
    return "".join(lines).encode()


def delta(content: object = None, finish: str | None = None, **fields: object) -> dict[str, object]:
    """A ``chat.completion.chunk`` whose one choice has ``content`` (and any other delta ``fields``)."""
    return {
        "object": "chat.completion.chunk",
        "model": MODEL,
        "choices": [{"index": 0, "delta": {"content": content, **fields}, "finish_reason": finish}],
    }


def streamed(body: bytes) -> Garbage:
    """``body`` sent as it is, as ``text/event-stream``."""
    return Garbage(body, content_type="text/event-stream")


def stream_ask(
    backend: OpenAIBackend,
    store: ImageStore,
    *,
    asynchronous: bool = False,
    tools: list[ToolSpec] | None = None,
) -> tuple[ChatReply, list[str]]:
    """``complete_stream`` (or ``acomplete_stream``) on :func:`ask`; returns the reply and the pieces."""
    pieces: list[str] = []
    if asynchronous:
        coroutine = backend.acomplete_stream(ask(), images=store, tools=tools, on_text=pieces.append)
        return asyncio.run(coroutine), pieces
    return backend.complete_stream(ask(), images=store, tools=tools, on_text=pieces.append), pieces


def test_stream_text_pieces_arrive_in_order(chat_server: ScriptedChatServer, store: ImageStore) -> None:
    chat_server.enqueue(Completion(text="The sign says STOP.", prompt_tokens=42, completion_tokens=3))
    backend = backend_for(chat_server)

    reply, pieces = stream_ask(backend, store)

    assert isinstance(backend, StreamingChatBackend)
    assert pieces == ["The", " sign", " says", " STOP."]  # the server's word-sized deltas, in order
    assert reply.text == "".join(pieces) == "The sign says STOP."
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (42, 3)  # from the last chunk
    assert reply.finish_reason == "stop" and reply.model == MODEL and 0 < reply.latency_s < 5
    req = chat_server.last_request
    assert req.json["stream"] is True and req.json["stream_options"] == {"include_usage": True}
    assert req.messages[-1] == {"role": "user", "content": "What does the sign say?"}


def test_stream_text_is_passed_on_before_the_stream_ends(
    chat_server: ScriptedChatServer, store: ImageStore
) -> None:
    first = sse(delta("Hello"), done=False)
    body = first + sse(delta(" world", "stop"))
    chat_server.enqueue(Trickle(streamed(body), interval=0.4, chunk=len(first)))
    start = time.perf_counter()
    seen: list[float] = []

    reply = backend_for(chat_server).complete_stream(
        ask(), images=store, on_text=lambda piece: seen.append(time.perf_counter() - start)
    )

    assert reply.text == "Hello world"
    assert len(seen) == 2 and seen[1] - seen[0] > 0.3  # the first piece came while the server paused


STREAMED_COMPLETIONS = {
    "text": Completion(text="The sign says STOP.", prompt_tokens=42, completion_tokens=3),
    "tool-calls": Completion(
        tool_calls=[
            ("request_crops", '{"crops": [0, 3] ,"why":"tiny text"}'),
            ("request_crops", {"crops": [1]}),
        ]
    ),
    "text-and-call": Completion(
        text="Let me look closer.", tool_calls=[("request_crops", {"crops": [2]})], tool_call_ids=[None]
    ),
    "no-usage-length": Completion(
        text="cut off", finish_reason="length", prompt_tokens=None, completion_tokens=None, model="served"
    ),
    "empty": Completion(text=None),
}


@pytest.mark.parametrize("scripted", list(STREAMED_COMPLETIONS.values()), ids=list(STREAMED_COMPLETIONS))
def test_stream_reply_equals_complete(
    chat_server: ScriptedChatServer, store: ImageStore, scripted: Completion
) -> None:
    chat_server.enqueue(scripted, scripted)
    backend = backend_for(chat_server)

    whole = backend.complete(ask(), images=store, tools=[CROP_TOOL])
    reply, pieces = stream_ask(backend, store, tools=[CROP_TOOL])

    assert reply.latency_s > 0
    assert reply.model_copy(update={"latency_s": 0}) == whole.model_copy(update={"latency_s": 0})
    assert "".join(pieces) == whole.text and all(pieces)  # never an empty piece
    assert [r.json.get("stream") for r in chat_server.requests] == [None, True]


def test_stream_native_tool_calls_in_pieces(chat_server: ScriptedChatServer, store: ImageStore) -> None:
    """Two calls interleaved by index, their name and arguments in pieces; content as null, as a string
    and as text parts; CRLF line ends, a comment, a raw U+2028 in the text; usage in a last choice-less
    chunk."""

    def call(index: int, **fields: object) -> dict[str, object]:
        return {"tool_calls": [{"index": index, **fields}]}

    body = sse(
        delta(None, role="assistant"),
        delta([{"type": "text", "text": "Looking"}, {"type": "image_url", "image_url": {"url": "x"}}]),
        delta(" at\u2028both."),
        delta(None, **call(0, id="call_a", type="function", function={"name": "request_", "arguments": ""})),
        delta(None, **call(0, function={"name": "crops", "arguments": '{"cro'})),
        delta(
            None, **call(1, id="call_b", function={"name": "request_crops", "arguments": '{"crops": [5]}'})
        ),
        delta(None, **call(0, function={"arguments": 'ps": [1, 2]}'})),
        delta(None, "tool_calls"),
        {"object": "chat.completion.chunk", "model": MODEL, "choices": [], "usage": {"prompt_tokens": 9}},
        end="\r\n",
    )
    chat_server.enqueue(streamed(b": keep-alive\r\n\r\n" + body))

    reply, pieces = stream_ask(backend_for(chat_server), store, tools=[CROP_TOOL])

    assert pieces == ["Looking", " at\u2028both."]
    assert reply.text == "Looking at\u2028both."
    assert reply.tool_calls == [
        ToolCall(id="call_a", name="request_crops", arguments='{"crops": [1, 2]}'),
        ToolCall(id="call_b", name="request_crops", arguments='{"crops": [5]}'),
    ]
    assert reply.finish_reason == "tool_calls"
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (9, 0)


def test_acomplete_stream(chat_server: ScriptedChatServer, store: ImageStore) -> None:
    scripted = Completion(text="One moment.", tool_calls=[("request_crops", {"crops": [0]})])
    chat_server.enqueue(scripted, scripted, Completion(text="again"))
    backend = backend_for(chat_server)

    whole = backend.complete(ask(), images=store, tools=[CROP_TOOL])
    reply, pieces = stream_ask(backend, store, asynchronous=True, tools=[CROP_TOOL])
    # A second event loop: the backend must not reuse connections bound to the first (closed) loop.
    again, more = stream_ask(backend, store, asynchronous=True)

    assert pieces == ["One", " moment."]
    assert reply.model_copy(update={"latency_s": 0}) == whole.model_copy(update={"latency_s": 0})
    assert (again.text, more) == ("again", ["again"])


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
def test_stream_retries_before_any_text(
    chat_server: ScriptedChatServer, store: ImageStore, asynchronous: bool
) -> None:
    chat_server.enqueue(HTTPError(503, headers=FAST_RETRY), Completion(text="finally here"))

    reply, pieces = stream_ask(backend_for(chat_server, max_retries=2), store, asynchronous=asynchronous)

    assert pieces == ["finally", " here"] and reply.text == "finally here"
    assert [r.headers["x-stainless-retry-count"] for r in chat_server.requests] == ["0", "1"]
    assert all(r.json["stream"] is True for r in chat_server.requests)


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
def test_stream_broken_after_text_is_not_retried(
    chat_server: ScriptedChatServer, store: ImageStore, asynchronous: bool
) -> None:
    """A stream that trickles 64 bytes every 50 ms never trips a per-read timeout; the attempt's timeout cuts
    it after some text has been passed on, and then no retry may send that text again."""
    body = sse(*[delta(f"w{i} ") for i in range(200)], delta(None, "stop"))
    chat_server.enqueue(Trickle(streamed(body), interval=0.05, chunk=64), Completion(text="not asked for"))
    backend = backend_for(chat_server, timeout=0.5, max_retries=2)
    start = time.perf_counter()

    pieces: list[str] = []
    with pytest.raises(BackendTimeoutError) as info:
        if asynchronous:
            asyncio.run(backend.acomplete_stream(ask(), images=store, on_text=pieces.append))
        else:
            backend.complete_stream(ask(), images=store, on_text=pieces.append)

    assert time.perf_counter() - start < 1.2
    streamed_text = "".join(pieces)
    assert streamed_text.startswith("w0 w1 ")
    message = str(info.value)
    assert "0.5 s timeout" in message and MODEL in message
    assert (
        f"the stream broke after {len(streamed_text)} chars of text" in message and "not retried" in message
    )
    assert len(chat_server.requests) == 1 and chat_server.pending == 1


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
def test_stream_connection_dropped(
    chat_server: ScriptedChatServer, store: ImageStore, asynchronous: bool
) -> None:
    """A connection that dies before any text is retried; one that dies after some text is not."""
    body = sse(delta("Hello"), delta(" world", "stop"))
    hello = len(sse(delta("Hello"), done=False))
    chat_server.enqueue(
        Dropped(streamed(body), after=10), Dropped(streamed(body), after=hello + 5), Completion(text="unused")
    )
    backend = backend_for(chat_server, max_retries=2)

    pieces: list[str] = []
    with pytest.raises(BackendConnectionError) as info:
        if asynchronous:
            asyncio.run(backend.acomplete_stream(ask(), images=store, on_text=pieces.append))
        else:
            backend.complete_stream(ask(), images=store, on_text=pieces.append)

    assert pieces == ["Hello"]
    message = str(info.value)
    assert "(after 1 retry)" in message and "RemoteProtocolError" in message
    assert "the stream broke after 5 chars of text had been passed on, so it was not retried" in message
    assert len(chat_server.requests) == 2 and chat_server.pending == 1


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        (streamed(sse(delta("Hi"), "not json {")), r"stream event whose data is not JSON .*after 2 chars"),
        (
            streamed(sse(delta("Hi"), {"error": {"message": "model overloaded"}})),
            r"reported an error mid-stream: model overloaded \(the stream broke after 2 chars of text\)",
        ),
        (streamed(b'event: error\ndata: {"message": "boom"}\n\n'), r"reported an error mid-stream: boom$"),
        (streamed(sse(delta("Hi there"), done=False)), r"without \[DONE\] or a finish_reason.*after 8 chars"),
        (
            streamed(sse({"object": "chat.completion.chunk", "choices": [], "usage": {"prompt_tokens": 1}})),
            "without any choice",
        ),
        (streamed(sse(delta(5))), "invalid chat completion chunk: message content is an int"),
        (streamed(sse(delta(None, tool_calls=[{"index": 0, "function": {}}]), delta(None, "stop"))),
         "tool call 0 has no function name"),
        (Garbage(b"<html>502</html>", content_type="text/html"), "no server-sent event and no JSON"),
        (Garbage(b"", content_type="text/event-stream"), "not JSON"),
    ],
    ids=["garbage", "error-event", "error-typed-event", "truncated", "no-choices", "bad-content", "nameless",
         "html", "empty"],
)  # fmt: skip
def test_stream_unusable_reply(
    chat_server: ScriptedChatServer, store: ImageStore, reply: Garbage, expected: str
) -> None:
    chat_server.enqueue(reply)
    with pytest.raises(BackendResponseError, match=expected) as info:
        stream_ask(backend_for(chat_server, max_retries=2), store)
    message = str(info.value)
    assert chat_server.base_url in message and MODEL in message and len(message) < 800
    assert len(chat_server.requests) == 1  # an unusable reply is not retried


def test_stream_to_a_server_that_answers_plain_json(
    chat_server: ScriptedChatServer, store: ImageStore
) -> None:
    body = completion_body(content="The sign says STOP.")
    chat_server.enqueue(RawJSON(body), RawJSON(body))  # RawJSON ignores the request's stream=true
    backend = backend_for(chat_server)

    whole = backend.complete(ask(), images=store)
    reply, pieces = stream_ask(backend, store)

    assert pieces == ["The sign says STOP."]  # the whole text, once
    assert reply.model_copy(update={"latency_s": 0}) == whole.model_copy(update={"latency_s": 0})
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (3, 2)


def test_stream_http_error_before_the_stream(chat_server: ScriptedChatServer, store: ImageStore) -> None:
    chat_server.enqueue(HTTPError(400, "image_url is not supported by this model"))
    pieces: list[str] = []
    with pytest.raises(BackendHTTPError, match="answered HTTP 400: image_url is not supported") as info:
        backend_for(chat_server).complete_stream(ask(), images=store, on_text=pieces.append)
    assert info.value.status_code == 400 and pieces == []
    assert len(chat_server.requests) == 1


STREAM_ECHOES = {
    "error-event": lambda req: streamed(
        sse(delta("Hi"), {"error": {"message": at_190("bad: ", req.headers["authorization"].split()[-1])}})
    ),
    "not-json": lambda req: streamed(sse(at_190("{", req.headers["authorization"].split()[-1]))),
    "401": lambda req: HTTPError(401, at_190("no: ", req.headers["authorization"].split()[-1])),
}


@pytest.mark.parametrize("echo", list(STREAM_ECHOES), ids=list(STREAM_ECHOES))
def test_an_echoed_key_never_shows_in_a_stream_error(
    chat_server: ScriptedChatServer, store: ImageStore, key: str, echo: str
) -> None:
    chat_server.enqueue(STREAM_ECHOES[echo])
    with pytest.raises(AwaresError) as info:
        stream_ask(backend_for(chat_server, api_key=key, max_retries=0), store)
    assert chat_server.last_request.headers["authorization"] == f"Bearer {key}"
    assert leaked(all_texts(info.value)) == []
