"""Tests for the OpenAI-compatible backend, against a real loopback server with the real openai client."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time
import traceback

import pytest
from chat_server import (
    FAST_RETRY,
    Completion,
    Delay,
    Garbage,
    HTTPError,
    RawJSON,
    ScriptedChatServer,
)
from PIL import Image

from awares_agent.backends.base import ChatBackend
from awares_agent.backends.openai_compat import (
    MessageTranslationError,
    OpenAIBackend,
    to_openai_messages,
)
from awares_agent.errors import (
    AwaresError,
    BackendAuthError,
    BackendConnectionError,
    BackendHTTPError,
    BackendRateLimitError,
    BackendResponseError,
    BackendTimeoutError,
    ConfigError,
)
from awares_agent.image_store import ImageStore
from awares_agent.images import ViewSpec
from awares_agent.messages import ChatMessage, ImagePart, TextPart, ToolCall, ToolSpec

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
    with pytest.raises(AwaresError):
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
