"""Tests for the LangChain backend: a real ``ChatOpenAI`` against the loopback chat-completions server."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import traceback
from pathlib import Path
from typing import Any

import pytest
from chat_server import Completion, Delay, HTTPError, RecordedRequest, ScriptedChatServer
from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatResult
from langchain_openai import ChatOpenAI
from PIL import Image, ImageChops, ImageDraw

from awares_agent import AwaResAgent
from awares_agent.backends.base import ChatBackend
from awares_agent.backends.langchain_backend import LangChainBackend
from awares_agent.errors import (
    BackendAuthError,
    BackendConnectionError,
    BackendError,
    BackendHTTPError,
    BackendTimeoutError,
    ConfigError,
    MessageTranslationError,
)
from awares_agent.image_store import ImageStore
from awares_agent.images import ViewSpec
from awares_agent.messages import ChatMessage, TextPart, ToolCall, ToolSpec
from awares_agent.redact import REDACTED, forget_secret, redact
from awares_agent.tools.crop_sets import PaperCropSet

MODEL = "qwen2.5-vl-7b"
SECRET = "sk-test-SECRET-0123456789abcdef"
W, H = 1200, 900

CROP_TOOL = ToolSpec(
    name="get_crops",
    description="Ask for high-resolution crops.",
    parameters={
        "type": "object",
        "properties": {"crops": {"type": "array", "items": {"type": "string"}}},
        "required": ["crops"],
    },
)


def chat_for(server: ScriptedChatServer, **kwargs: Any) -> ChatOpenAI:
    kwargs.setdefault("api_key", "EMPTY")
    return ChatOpenAI(base_url=server.base_url, model=MODEL, max_retries=0, **kwargs)


def ask(text: str = "What does the sign say?") -> list[ChatMessage]:
    return [ChatMessage.text_message("system", "You are terse."), ChatMessage.text_message("user", text)]


def pattern_image(width: int = 64, height: int = 48) -> Image.Image:
    """An RGB image whose every pixel differs from its neighbours (so any resampling would show)."""
    img = Image.new("RGB", (width, height))
    img.putdata([((x * 7) % 256, (y * 11) % 256, (x * y) % 256) for y in range(height) for x in range(width)])
    return img


def same_pixels(a: Image.Image, b: Image.Image) -> bool:
    return a.size == b.size and ImageChops.difference(a.convert("RGB"), b.convert("RGB")).getbbox() is None


def roles(request: RecordedRequest) -> list[str]:
    return [m["role"] for m in request.messages]


@pytest.fixture
def store() -> ImageStore:
    return ImageStore()


@pytest.fixture
def page(tmp_path: Path) -> Path:
    """A 1200x900 page with small text in each quadrant."""
    img = Image.new("RGB", (W, H), "white")
    draw = ImageDraw.Draw(img)
    for i, (x, y) in enumerate([(50, 50), (700, 60), (60, 700), (800, 800)]):
        draw.text((x, y), f"LABEL-{i}", fill=(20 * i, 0, 0))
    path = tmp_path / "page.png"
    img.save(path)
    return path


# --- one turn ------------------------------------------------------------------------------------------


def test_plain_answer(chat_server: ScriptedChatServer, store: ImageStore) -> None:
    chat_server.enqueue(Completion(text="STOP", prompt_tokens=12, completion_tokens=3))
    backend = LangChainBackend(chat_for(chat_server))
    assert isinstance(backend, ChatBackend)
    assert backend.model_name == MODEL

    reply = backend.complete(ask(), images=store)

    assert reply.text == "STOP" and reply.tool_calls == []
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (12, 3)
    assert reply.finish_reason == "stop" and reply.model == MODEL and reply.latency_s > 0
    req = chat_server.last_request
    assert req.model == MODEL and req.tools is None
    assert req.messages == [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "What does the sign say?"},
    ]


def test_native_tool_call(chat_server: ScriptedChatServer, store: ImageStore) -> None:
    chat_server.enqueue(
        Completion(tool_calls=[("get_crops", {"crops": ["0", "top-left"]})]),
        Completion(tool_calls=[("get_crops", {"crops": ["1"]})], tool_call_ids=[None]),
    )
    backend = LangChainBackend(chat_for(chat_server))

    reply = backend.complete(ask(), images=store, tools=[CROP_TOOL])
    (call,) = reply.tool_calls
    assert (call.id, call.name) == ("call_0", "get_crops")
    assert json.loads(call.arguments) == {"crops": ["0", "top-left"]}
    assert reply.finish_reason == "tool_calls" and reply.text == ""
    assert chat_server.last_request.tools == [CROP_TOOL.to_openai()]

    (unnamed,) = backend.complete(ask(), images=store, tools=[CROP_TOOL]).tool_calls
    assert unnamed.id == "call_0" and json.loads(unnamed.arguments) == {"crops": ["1"]}


def test_malformed_tool_call_is_kept_raw(chat_server: ScriptedChatServer, store: ImageStore) -> None:
    chat_server.enqueue(Completion(tool_calls=[("get_crops", "{not json")]))
    reply = LangChainBackend(chat_for(chat_server)).complete(ask(), images=store, tools=[CROP_TOOL])
    assert reply.tool_calls == [ToolCall(id="call_0", name="get_crops", arguments="{not json")]


def test_tools_sent_only_when_given_and_bound_once(
    chat_server: ScriptedChatServer, store: ImageStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    bound: list[Any] = []
    original = ChatOpenAI.bind_tools

    def counting(self: ChatOpenAI, tools: Any, **kwargs: Any) -> Any:
        bound.append(tools)
        return original(self, tools, **kwargs)

    monkeypatch.setattr(ChatOpenAI, "bind_tools", counting)
    chat_server.enqueue(*(Completion(text="ok") for _ in range(4)))
    backend = LangChainBackend(chat_for(chat_server))

    backend.complete(ask(), images=store)
    backend.complete(ask(), images=store, tools=[CROP_TOOL])
    backend.complete(ask(), images=store, tools=[CROP_TOOL.model_copy()])  # equal spec: cached binding
    backend.complete(ask(), images=store, tools=[])

    assert [r.tools is not None for r in chat_server.chat_requests] == [False, True, True, False]
    assert len(bound) == 1


def test_images_arrive_as_data_uris(chat_server: ScriptedChatServer, store: ImageStore) -> None:
    chat_server.enqueue(Completion(text="ok"), Completion(text="ok"))
    src = store.add(pattern_image(80, 60))
    view = store.view(src.id, ViewSpec())
    crop = store.crop(src.id, (10, 5, 50, 45))
    message = ChatMessage(role="user", content=[TextPart(text="Look:"), view, crop])

    LangChainBackend(chat_for(chat_server)).complete([message], images=store)

    (sent,) = chat_server.last_request.messages
    assert [p["type"] for p in sent["content"]] == ["text", "image_url", "image_url"]
    assert sent["content"][0]["text"] == "Look:"
    assert chat_server.last_request.image_urls() == [
        store.data_uri(view.image_id),
        store.data_uri(crop.image_id),
    ]
    sent_view, sent_crop = chat_server.last_request.images()
    assert same_pixels(sent_view, store.get(view.image_id))
    assert same_pixels(sent_crop, store.get(crop.image_id))

    LangChainBackend(chat_for(chat_server), image_format="jpeg").complete([message], images=store)
    urls = chat_server.last_request.image_urls()
    assert len(urls) == 2 and all(u.startswith("data:image/jpeg;base64,") for u in urls)


def test_history_with_tool_round(chat_server: ScriptedChatServer, store: ImageStore) -> None:
    chat_server.enqueue(Completion(text="42"))
    src = store.add(pattern_image(80, 60))
    view, crop = store.view(src.id, ViewSpec()), store.crop(src.id, (0, 0, 40, 30))
    history = [
        ChatMessage.text_message("system", "sys"),
        ChatMessage(role="user", content=[view, TextPart(text="Total?")]),
        ChatMessage(
            role="assistant",
            tool_calls=[
                ToolCall(id="c1", name="get_crops", arguments='{"crops": ["0"]}'),
                ToolCall(id="c2", name="get_crops", arguments="{not json"),
            ],
        ),
        ChatMessage(role="tool", tool_call_id="c1", content=[TextPart(text="Here is crop 0.")]),
        ChatMessage(role="tool", tool_call_id="c2", content=[TextPart(text="Not valid JSON.")]),
        ChatMessage(role="user", content=[crop, TextPart(text="crop 0")]),
    ]

    assert LangChainBackend(chat_for(chat_server)).complete(history, images=store).text == "42"

    sent = chat_server.last_request.messages
    assert [m["role"] for m in sent] == ["system", "user", "assistant", "tool", "tool", "user"]
    assert [p["type"] for p in sent[1]["content"]] == ["image_url", "text"]
    assistant = sent[2]
    assert assistant["content"] is None
    assert [(c["id"], c["type"], c["function"]["name"]) for c in assistant["tool_calls"]] == [
        ("c1", "function", "get_crops"),
        ("c2", "function", "get_crops"),
    ]
    assert json.loads(assistant["tool_calls"][0]["function"]["arguments"]) == {"crops": ["0"]}
    assert (
        assistant["tool_calls"][1]["function"]["arguments"] == "{not json"
    )  # verbatim, as the model wrote it
    assert sent[3] == {"role": "tool", "tool_call_id": "c1", "content": "Here is crop 0."}
    assert sent[4]["tool_call_id"] == "c2"
    assert [p["type"] for p in sent[5]["content"]] == ["image_url", "text"]
    assert same_pixels(chat_server.last_request.images()[1], store.get(crop.image_id))


@pytest.mark.parametrize("role", ["system", "tool"])
def test_images_outside_user_messages_are_refused(
    chat_server: ScriptedChatServer, store: ImageStore, role: str
) -> None:
    src = store.add(pattern_image(16, 16))
    message = ChatMessage(role=role, tool_call_id="call_0", content=[store.full(src.id)])  # type: ignore[arg-type]
    with pytest.raises(MessageTranslationError, match=f"\\({role}\\) holds 1 image"):
        LangChainBackend(chat_for(chat_server)).complete([message], images=store)
    assert chat_server.requests == []


# --- models other than ChatOpenAI ----------------------------------------------------------------------


class _Broken(BaseChatModel):
    """A chat model whose provider call fails with a non-HTTP error."""

    @property
    def _llm_type(self) -> str:
        return "broken"

    def _generate(self, messages: list[BaseMessage], *args: Any, **kwargs: Any) -> ChatResult:
        raise RuntimeError("provider exploded")


def test_model_without_bind_tools(store: ImageStore) -> None:
    content = [{"type": "reasoning", "reasoning": "hmm"}, {"type": "text", "text": "a "}, "b"]
    chat = GenericFakeChatModel(messages=iter([AIMessage(content=content)]))
    backend = LangChainBackend(chat)
    assert backend.model_name == "GenericFakeChatModel"  # no model attribute: the class name
    assert LangChainBackend(chat, model_name="qwen2.5-vl-3b").model_name == "qwen2.5-vl-3b"

    with pytest.raises(ConfigError, match='protocol="awares-text"'):
        backend.complete(ask(), images=store, tools=[CROP_TOOL])
    assert backend.complete(ask(), images=store).text == "a b"  # text blocks joined, reasoning dropped


def test_other_provider_errors_name_the_model(store: ImageStore) -> None:
    with pytest.raises(BackendError, match=r"_Broken .*RuntimeError: provider exploded") as info:
        LangChainBackend(_Broken(), model_name="m").complete(ask(), images=store)
    assert type(info.value) is BackendError and isinstance(info.value.__cause__, RuntimeError)


def test_not_a_chat_model() -> None:
    with pytest.raises(ConfigError, match="LangChain chat model"):
        LangChainBackend(object())  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="max_retries"):  # bind_tools would silently drop the retry wrapper
        LangChainBackend(_Broken().with_retry())  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="image_format"):
        LangChainBackend(_Broken(), image_format="webp")  # type: ignore[arg-type]


# --- errors --------------------------------------------------------------------------------------------


def test_http_500(chat_server: ScriptedChatServer, store: ImageStore) -> None:
    chat_server.enqueue(
        HTTPError(500, body={"error": {"message": "GPU on fire"}}, headers={"x-should-retry": "false"})
    )
    with pytest.raises(BackendHTTPError, match=r"ChatOpenAI \(model 'qwen2\.5-vl-7b'\).*GPU on fire") as info:
        LangChainBackend(chat_for(chat_server)).complete(ask(), images=store)
    assert info.value.status_code == 500


def test_auth_error_never_shows_the_key(chat_server: ScriptedChatServer, store: ImageStore) -> None:
    chat_server.enqueue(HTTPError(401, body={"error": {"message": f"bad key {SECRET}"}}))
    backend = LangChainBackend(chat_for(chat_server, api_key=SECRET))
    with pytest.raises(BackendAuthError) as info:
        backend.complete(ask(), images=store)
    assert info.value.status_code == 401 and REDACTED in str(info.value)
    assert SECRET not in str(info.value) and SECRET not in str(info.value.__cause__)
    assert SECRET not in repr(backend) and chat_server.last_request.headers["authorization"].endswith(SECRET)


KEY = "Qx7Rv2Lp9Tz4Wm1Kc8Hy3Nb6Fd5Gs0Jh"  # 32 characters, not shaped like any known key format


def leaked(text: str, secret: str = KEY, size: int = 6) -> list[str]:
    """Every fragment of ``secret`` of ``size`` characters that appears in ``text``."""
    return [secret[i : i + size] for i in range(len(secret) - size + 1) if secret[i : i + size] in text]


@pytest.mark.parametrize("status", [400, 401, 500])
def test_a_key_echoed_at_the_excerpt_cut_never_shows(
    chat_server: ScriptedChatServer, store: ImageStore, status: int
) -> None:
    """The key at character 190 of a long server message, where a 200-character excerpt cuts it."""
    forget_secret(KEY)
    body = {"error": {"message": "x" * 190 + KEY + " y" * 200, "key": KEY}}
    chat_server.enqueue(HTTPError(status, body=body, headers={"x-should-retry": "false"}))
    backend = LangChainBackend(chat_for(chat_server, api_key=KEY))
    with pytest.raises(BackendError) as info:
        backend.complete(ask(), images=store)
    cause = info.value.__cause__
    shown = [str(info.value), repr(info.value), "".join(traceback.format_exception(info.value))]
    shown += [
        str(cause),
        repr(cause),
        repr(getattr(cause, "body", None)),
        repr(getattr(cause, "message", None)),
    ]
    assert leaked("\n".join(shown)) == []
    forget_secret(KEY)


def test_the_chat_models_key_is_registered_for_redaction(chat_server: ScriptedChatServer) -> None:
    forget_secret(KEY)
    assert redact(f"key {KEY}") == f"key {KEY}"
    LangChainBackend(chat_for(chat_server, api_key=KEY))
    assert redact(f"key {KEY}") == f"key {REDACTED}"  # for every message of the process, not only ours
    forget_secret(KEY)


def test_timeout(chat_server: ScriptedChatServer, store: ImageStore) -> None:
    chat_server.enqueue(Delay(2.0, Completion(text="late")))
    with pytest.raises(BackendTimeoutError, match="did not answer in time"):
        LangChainBackend(chat_for(chat_server, timeout=0.3)).complete(ask(), images=store)


def test_unreachable_server(store: ImageStore) -> None:
    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    chat = ChatOpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="EMPTY", model=MODEL, max_retries=0)
    with pytest.raises(BackendConnectionError, match=f"could not connect to ChatOpenAI.*{MODEL}"):
        LangChainBackend(chat).complete(ask(), images=store)


def test_acomplete(chat_server: ScriptedChatServer, store: ImageStore) -> None:
    chat_server.enqueue(
        Completion(text="async"),
        Completion(tool_calls=[("get_crops", {"crops": ["2"]})]),
        HTTPError(503, headers={"x-should-retry": "false"}),
    )
    backend = LangChainBackend(chat_for(chat_server))

    async def main() -> None:
        # One event loop for every call: langchain-openai shares its async HTTP client process-wide.
        assert (await backend.acomplete(ask(), images=store)).text == "async"
        reply = await backend.acomplete(ask(), images=store, tools=[CROP_TOOL])
        assert json.loads(reply.tool_calls[0].arguments) == {"crops": ["2"]}
        with pytest.raises(BackendHTTPError) as info:
            await backend.acomplete(ask(), images=store)
        assert info.value.status_code == 503

    asyncio.run(main())


def test_closed_event_loop_gets_a_hint(store: ImageStore) -> None:
    class ClosedLoop(_Broken):
        async def _agenerate(self, *args: Any, **kwargs: Any) -> ChatResult:
            raise RuntimeError("Event loop is closed")

    with pytest.raises(BackendError, match="run every acomplete"):
        asyncio.run(LangChainBackend(ClosedLoop()).acomplete(ask(), images=store))


# --- the agent end to end ------------------------------------------------------------------------------


def agent_for(server: ScriptedChatServer, **options: Any) -> AwaResAgent:
    return AwaResAgent(LangChainBackend(chat_for(server)), **options)


def test_agent_direct_answer(chat_server: ScriptedChatServer, page: Path) -> None:
    chat_server.enqueue(Completion(text="LABEL-0"))
    result = agent_for(chat_server).ask(page, "What does the top-left label say?")

    assert result.answer == "LABEL-0" and result.crops == []
    (req,) = chat_server.chat_requests
    assert roles(req) == ["system", "user"]
    assert req.tools and req.tools[0]["function"]["name"] == "get_crops"
    (view,) = req.images()
    assert view.size == (W // 2, H // 2)
    t = result.trajectory
    assert t.model == MODEL and t.calls == 1 and t.usage.prompt_tokens == 10
    assert result.rtr == pytest.approx(t.cost.view_tokens / t.cost.full_tokens) and result.rtr < 1


def test_agent_one_crop_round(chat_server: ScriptedChatServer, page: Path) -> None:
    chat_server.enqueue(
        Completion(tool_calls=[("get_crops", {"crops": ["3", "top-left"]})]), Completion(text="42")
    )
    result = agent_for(chat_server).ask(page, "What is the total?")

    assert result.answer == "42"
    regions = {r.id: r for r in PaperCropSet().regions(W, H)}
    assert [(c.region_id, c.box) for c in result.crops] == [("3", regions["3"].box), ("0", regions["0"].box)]
    second = chat_server.chat_requests[1]
    assert roles(second) == ["system", "user", "assistant", "tool", "user"]
    assert second.messages[2]["tool_calls"][0]["id"] == "call_0"
    assert second.messages[3]["tool_call_id"] == "call_0"
    assert second.tools is None  # the round is spent: no tools offered
    _, crop3, crop0 = second.images()
    original = Image.open(page).convert("RGB")
    assert same_pixels(crop3, original.crop(regions["3"].box))
    assert same_pixels(crop0, original.crop(regions["0"].box))
    t = result.trajectory
    assert t.rounds == 1 and t.calls == 2 and t.errors == []
    assert result.visual_tokens == t.cost.view_tokens + sum(c.tokens for c in t.crops)
    assert result.rtr == pytest.approx(result.visual_tokens / result.full_tokens)


def test_agent_awares_text_protocol(chat_server: ScriptedChatServer, page: Path) -> None:
    chat_server.enqueue(Completion(text="GET_CROPS: ['0']"), Completion(text="LABEL-0"))
    result = agent_for(chat_server, protocol="awares-text").ask(page, "Top-left label?")

    assert result.answer == "LABEL-0" and [c.region_id for c in result.crops] == ["0"]
    first, second = chat_server.chat_requests
    assert first.tools is None and second.tools is None
    assert "GET_CROPS" in first.messages[0]["content"]
    assert roles(second) == ["system", "user", "assistant", "user"]
    assert second.messages[2] == {"role": "assistant", "content": "GET_CROPS: ['0']"}
    assert [p["type"] for p in second.messages[-1]["content"]] == ["image_url"]
    regions = {r.id: r for r in PaperCropSet().regions(W, H)}
    assert same_pixels(second.images()[1], Image.open(page).crop(regions["0"].box))
    assert 0 < result.rtr < 1


def test_agent_recovers_from_malformed_arguments(chat_server: ScriptedChatServer, page: Path) -> None:
    chat_server.enqueue(
        Completion(tool_calls=[("get_crops", "{not json")]),
        Completion(tool_calls=[("get_crops", {"crops": ["1"]})]),
        Completion(text="LABEL-1"),
    )
    result = agent_for(chat_server).ask(page, "Top-right label?")

    assert result.answer == "LABEL-1" and [c.region_id for c in result.crops] == ["1"]
    (error,) = result.trajectory.errors
    assert error.kind == "invalid_tool_call"
    second = chat_server.chat_requests[1]
    assert roles(second) == ["system", "user", "assistant", "tool"]
    assert second.messages[2]["tool_calls"][0]["function"]["arguments"] == "{not json"
    assert second.messages[3]["tool_call_id"] == "call_0" and second.tools is not None
    assert roles(chat_server.chat_requests[2])[-2:] == ["tool", "user"]


def test_a_bound_model_keeps_its_settings(chat_server: ScriptedChatServer, store: ImageStore) -> None:
    chat_server.enqueue(Completion(tool_calls=[("get_crops", {"crops": ["0"]})]))
    backend = LangChainBackend(chat_for(chat_server).bind(temperature=0.25))
    assert backend.model_name == MODEL and "ChatOpenAI" in repr(backend)

    assert backend.complete(ask(), images=store, tools=[CROP_TOOL]).tool_calls[0].name == "get_crops"
    assert chat_server.last_request.json["temperature"] == 0.25 and chat_server.last_request.tools


def test_importable_without_openai() -> None:
    code = (
        "import sys; sys.modules['openai'] = None\n"
        "from langchain_core.language_models.fake_chat_models import GenericFakeChatModel\n"
        "from langchain_core.messages import AIMessage\n"
        "from awares_agent.backends.langchain_backend import LangChainBackend\n"
        "from awares_agent.image_store import ImageStore\n"
        "from awares_agent.messages import ChatMessage\n"
        "chat = GenericFakeChatModel(messages=iter([AIMessage(content='hi')]))\n"
        "msgs = [ChatMessage.text_message('user', 'hello')]\n"
        "print(LangChainBackend(chat).complete(msgs, images=ImageStore()).text)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "hi"
