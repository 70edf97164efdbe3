"""One contract, every backend: the checks each :class:`~awares_agent.backends.base.ChatBackend` must pass.

The suite runs against every backend the project ships, each over a real part:

* ``openai``: :class:`OpenAIBackend` against the loopback chat-completions server, replies scripted;
* ``langchain``: :class:`LangChainBackend` over langchain-openai's ``ChatOpenAI`` pointed at the same server
  (so the adapter's translation both ways runs for real, through a real integration);
* ``transformers``: :class:`TransformersBackend` on the tiny local Qwen2.5-VL (the session fixture);
* ``reader``: the OCR :class:`ReaderBackend`.

The contract: the backend is a ``ChatBackend``; its ``model_name`` is a non-empty string; ``complete`` and
``acomplete`` return a :class:`ChatReply` for a view-and-question conversation, with and without the crop tool
offered, and for a second turn holding crops; usage counts are non-negative ints; ``image_tokens`` is
``None`` or one int per image sent; the input messages and tools are left as they were; an image id missing
from the store raises :class:`~awares_agent.image_store.UnknownImageError` (an
:class:`~awares_agent.errors.AwaresError`) before anything is sent; and ``AwaResAgent(backend).ask`` returns
an :class:`AskResult` whose trajectory survives a JSON round trip and matches the committed schema, whatever
the answer. Backends whose replies are scripted also check that the scripted reply is what comes back.

A backend that streams (:class:`~awares_agent.backends.base.StreamingChatBackend`: the OpenAI-compatible and
transformers ones) also returns from ``complete_stream`` / ``acomplete_stream`` the reply ``complete`` gives,
its text handed over in non-empty pieces that join to it, and the agent's ``stream`` carries those pieces as
``token`` events.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from chat_server import Completion, ScriptedChatServer
from langchain_openai import ChatOpenAI
from PIL import Image, ImageDraw

from awares_agent import AskResult, AwaResAgent, OpenAIBackend, Trajectory
from awares_agent.backends.base import ChatBackend, StreamingChatBackend
from awares_agent.backends.langchain_backend import LangChainBackend
from awares_agent.backends.transformers_backend import TransformersBackend
from awares_agent.baselines.reader import ReaderBackend
from awares_agent.errors import AwaresError, UnknownImageError
from awares_agent.image_store import ImageStore
from awares_agent.images import ViewSpec
from awares_agent.messages import ChatMessage, ChatReply, ImagePart, TextPart, ToolCall, ToolSpec
from awares_agent.tools.crop_sets import PaperCropSet
from awares_agent.tools.protocols import JsonProtocol

SCHEMA_FILE = Path(__file__).resolve().parents[1] / "schemas" / "trajectory.schema.json"
MODEL = "Qwen/Qwen2.5-VL-7B-Instruct"
QUESTION = "What is the invoice number?"
PROTOCOL = JsonProtocol(PaperCropSet())
CROP_TOOL: list[ToolSpec] = PROTOCOL.tools() or []
MISSING_ID = "0" * 64  # shaped like a content id, in no store


# --- the backends under test ---------------------------------------------------------------------------


@dataclass
class Harness:
    """A backend under test, and how to script the remote model behind it.

    Attributes:
        backend: the backend.
        server: the loopback server it talks to (``None``: the model runs in this process and answers for
            itself, so scripted replies are ignored).
    """

    backend: ChatBackend
    server: ScriptedChatServer | None = None

    def script(self, *replies: Completion) -> None:
        """Queue the remote model's replies (a no-op for an in-process model)."""
        if self.server is not None:
            self.server.enqueue(*replies)

    @property
    def sent(self) -> int | None:
        """Requests that reached the remote model so far (``None`` for an in-process model)."""
        return None if self.server is None else len(self.server.chat_requests)


@pytest.fixture(scope="module")
def transformers_backend(tiny_vlm_dir: Path) -> TransformersBackend:
    """The tiny local model, loaded once for the module as a user would load a checkpoint folder."""
    return TransformersBackend(tiny_vlm_dir, local_files_only=True, max_new_tokens=8)


@pytest.fixture(scope="module")
def reader_backend() -> ReaderBackend:
    """The OCR reader, made once for the module (its OCR engine loads on first use)."""
    return ReaderBackend()


def _openai(request: pytest.FixtureRequest) -> Harness:
    server: ScriptedChatServer = request.getfixturevalue("chat_server")
    return Harness(OpenAIBackend(MODEL, base_url=server.base_url, max_retries=0, timeout=30), server)


def _langchain(request: pytest.FixtureRequest) -> Harness:
    server: ScriptedChatServer = request.getfixturevalue("chat_server")
    chat = ChatOpenAI(base_url=server.base_url, model=MODEL, api_key="EMPTY", max_retries=0, timeout=30)
    return Harness(LangChainBackend(chat), server)


def _transformers(request: pytest.FixtureRequest) -> Harness:
    return Harness(request.getfixturevalue("transformers_backend"))


def _reader(request: pytest.FixtureRequest) -> Harness:
    return Harness(request.getfixturevalue("reader_backend"))


BACKENDS: dict[str, Callable[[pytest.FixtureRequest], Harness]] = {
    "openai": _openai,
    "langchain": _langchain,
    "transformers": _transformers,
    "reader": _reader,
}


@pytest.fixture(params=list(BACKENDS))
def harness(request: pytest.FixtureRequest) -> Harness:
    """Each backend in turn."""
    return BACKENDS[request.param](request)


# --- conversations -------------------------------------------------------------------------------------


def invoice() -> Image.Image:
    """A small page with one field a reader can be asked about."""
    img = Image.new("RGB", (320, 240), "white")
    draw = ImageDraw.Draw(img)
    draw.text((20, 20), "Invoice No: 4821", fill="black")
    draw.text((20, 200), "Total: 17.50", fill="black")
    return img


def first_turn(
    store: ImageStore, question: str = QUESTION, view: ImagePart | None = None
) -> list[ChatMessage]:
    """The opening turn: the protocol's system prompt, then the low-res view and the question."""
    if view is None:
        view = store.view(store.add(invoice()).id, ViewSpec())
    return [
        ChatMessage.text_message("system", PROTOCOL.system_prompt()),
        ChatMessage(role="user", content=[view, TextPart(text=question)]),
    ]


def second_turn(store: ImageStore, crop: ImagePart | None = None) -> list[ChatMessage]:
    """The turn after a crop request: the opening, the model's call, its tool ack and the crop itself."""
    source = store.add(invoice())
    region = PaperCropSet().region("0", source.width, source.height)
    if crop is None:
        crop = store.crop(source.id, region.box, label=f"crop {region.id} ({region.name})")
    call = ChatReply(tool_calls=[ToolCall(id="call_0", name="get_crops", arguments='{"crops": ["0"]}')])
    decision = PROTOCOL.parse(call)
    return [
        *first_turn(store, view=store.view(source.id, ViewSpec())),
        PROTOCOL.assistant_message(call),
        *PROTOCOL.crops_messages(decision, [(region.id, region.name, crop)]),
    ]


#: name -> (conversation builder, tools offered, the remote's scripted reply)
TURNS: dict[str, tuple[Callable[[ImageStore], list[ChatMessage]], bool, Completion]] = {
    "view-with-tool": (first_turn, True, Completion(tool_calls=[("get_crops", {"crops": ["0"]})])),
    "view-without-tool": (first_turn, False, Completion(text="4821", prompt_tokens=40, completion_tokens=2)),
    "with-crops": (second_turn, False, Completion(text="4821", prompt_tokens=80, completion_tokens=2)),
}


def complete(backend: ChatBackend, asynchronous: bool, messages: list[ChatMessage], **kw: Any) -> Any:
    """One turn through ``complete`` or ``acomplete``."""
    if asynchronous:
        return asyncio.run(backend.acomplete(messages, **kw))
    return backend.complete(messages, **kw)


# --- the contract --------------------------------------------------------------------------------------


def test_is_a_chat_backend_with_a_model_name(harness: Harness) -> None:
    assert isinstance(harness.backend, ChatBackend)
    name = harness.backend.model_name
    assert type(name) is str and name.strip()


@pytest.mark.parametrize("asynchronous", [False, True], ids=["complete", "acomplete"])
@pytest.mark.parametrize("turn", list(TURNS))
def test_a_turn_returns_a_chat_reply(harness: Harness, turn: str, asynchronous: bool) -> None:
    build, offer_tool, scripted = TURNS[turn]
    store = ImageStore()
    messages = build(store)
    tools = list(CROP_TOOL) if offer_tool else None
    before = [m.model_dump() for m in messages]
    originals = list(messages)
    tools_before = [t.model_dump() for t in tools or []]
    harness.script(scripted)

    reply = complete(harness.backend, asynchronous, messages, images=store, tools=tools)

    assert type(reply) is ChatReply
    for count in (reply.usage.prompt_tokens, reply.usage.completion_tokens):
        assert type(count) is int and count >= 0
    images_sent = sum(len(m.images) for m in messages)
    assert images_sent == (2 if turn == "with-crops" else 1)
    if reply.image_tokens is not None:
        assert len(reply.image_tokens) == images_sent
        assert all(type(n) is int and n > 0 for n in reply.image_tokens)
    assert reply.latency_s >= 0
    # The caller's conversation is left exactly as it was: same list, same messages, same contents.
    assert len(messages) == len(originals) and all(a is b for a, b in zip(messages, originals, strict=True))
    assert [m.model_dump() for m in messages] == before
    assert [t.model_dump() for t in tools or []] == tools_before
    if harness.server is not None:
        # A scripted remote: its reply is what comes back, in the backend-neutral form.
        assert harness.sent == 1
        if scripted.tool_calls:
            assert [(c.name, json.loads(c.arguments)) for c in reply.tool_calls] == [
                ("get_crops", {"crops": ["0"]})
            ]
            assert reply.text == ""
        else:
            assert (reply.text, reply.tool_calls) == (scripted.text, [])
            assert reply.usage.prompt_tokens == scripted.prompt_tokens
            assert reply.usage.completion_tokens == scripted.completion_tokens


def _missing_view(store: ImageStore) -> list[ChatMessage]:
    return first_turn(store, view=ImagePart(image_id=MISSING_ID, width=160, height=120))


def _missing_crop(store: ImageStore) -> list[ChatMessage]:
    # Labelled as the graph labels a crop; the reader places crops from the message text, never the label.
    crop = ImagePart(image_id=MISSING_ID, width=160, height=120, kind="crop", label="crop 0 (top-left)")
    return second_turn(store, crop=crop)


def _missing_view_unreadable_question(store: ImageStore) -> list[ChatMessage]:
    # A question the reader does not parse: it must still not answer about an image it cannot see.
    view = ImagePart(image_id=MISSING_ID, width=160, height=120)
    return first_turn(store, question="What colour is the page?", view=view)


MISSING: dict[str, Callable[[ImageStore], list[ChatMessage]]] = {
    "view": _missing_view,
    "crop": _missing_crop,
    "view-any-question": _missing_view_unreadable_question,
}


@pytest.mark.parametrize("asynchronous", [False, True], ids=["complete", "acomplete"])
@pytest.mark.parametrize("missing", list(MISSING))
def test_an_image_missing_from_the_store_is_a_typed_error(
    harness: Harness, missing: str, asynchronous: bool
) -> None:
    store = ImageStore()
    messages = MISSING[missing](store)

    with pytest.raises(UnknownImageError, match=MISSING_ID) as caught:
        complete(harness.backend, asynchronous, messages, images=store, tools=list(CROP_TOOL))

    assert isinstance(caught.value, AwaresError)
    assert harness.sent in (None, 0)  # it failed before sending anything


def test_the_agent_answers_and_its_trajectory_round_trips(harness: Harness) -> None:
    harness.script(Completion(tool_calls=[("get_crops", {"crops": ["0"]})]), Completion(text="4821"))

    result = AwaResAgent(harness.backend).ask(invoice(), QUESTION)

    assert type(result) is AskResult
    t = result.trajectory
    assert t.model == harness.backend.model_name and t.backend == type(harness.backend).__name__
    assert t.calls >= 1 and t.messages[-1].role == "assistant"
    text = t.model_dump_json()
    assert Trajectory.model_validate_json(text) == t
    data = json.loads(text)
    schema = json.loads(SCHEMA_FILE.read_text())
    assert set(data) <= set(schema["properties"])
    assert set(schema["required"]) <= set(data)
    assert data["schema_version"] == schema["properties"]["schema_version"]["const"]
    assert "base64" not in text  # images are references, never pixels
    if harness.server is not None:
        assert (result.answer, [c.region_id for c in result.crops]) == ("4821", ["0"])


def _same_reply(a: ChatReply, b: ChatReply) -> bool:
    keep = {"latency_s"}
    return a.model_dump(exclude=keep) == b.model_dump(exclude=keep)


@pytest.mark.parametrize("asynchronous", [False, True], ids=["complete_stream", "acomplete_stream"])
@pytest.mark.parametrize("turn", ["view-with-tool", "with-crops"])
def test_a_streamed_turn_is_the_same_reply_in_pieces(harness: Harness, turn: str, asynchronous: bool) -> None:
    backend = harness.backend
    if not isinstance(backend, StreamingChatBackend):  # the LangChain adapter and the reader answer whole
        assert not hasattr(backend, "complete_stream") and not hasattr(backend, "acomplete_stream")
        return
    build, offer_tool, scripted = TURNS[turn]
    store = ImageStore()
    messages = build(store)
    tools = list(CROP_TOOL) if offer_tool else None
    harness.script(scripted, scripted)
    whole = backend.complete(messages, images=store, tools=tools)
    pieces: list[str] = []
    if asynchronous:
        streamed = asyncio.run(
            backend.acomplete_stream(messages, images=store, tools=tools, on_text=pieces.append)
        )
    else:
        streamed = backend.complete_stream(messages, images=store, tools=tools, on_text=pieces.append)
    assert type(streamed) is ChatReply and _same_reply(streamed, whole)
    assert all(type(p) is str and p for p in pieces)
    if not whole.tool_calls:
        assert "".join(pieces) == whole.text
    if harness.server is not None:
        assert [r.json.get("stream") for r in harness.server.chat_requests] == [None, True]


def test_the_agents_stream_carries_the_text_as_it_is_generated(harness: Harness) -> None:
    harness.script(Completion(tool_calls=[("get_crops", {"crops": ["0"]})]), Completion(text="it is 4821"))
    events = list(AwaResAgent(harness.backend).stream(invoice(), QUESTION))
    tokens = [e.data for e in events if e.type == "token"]
    if not isinstance(harness.backend, StreamingChatBackend):
        assert tokens == []
        return
    assert tokens and all(t["text"] for t in tokens)
    rounds = [t["round"] for t in tokens]
    assert rounds == sorted(rounds)
    result = events[-1].result
    assert result is not None and events[-1].type == "result"
    if harness.server is not None:
        assert "".join(t["text"] for t in tokens) == "it is 4821" == result.answer


@pytest.fixture(autouse=True)
def _no_leftover_script(harness: Harness) -> Iterator[None]:
    """A scripted remote must have been asked exactly as often as it was scripted."""
    yield
    if harness.server is not None:
        assert (harness.server.pending, harness.server.unscripted) == (0, 0)
