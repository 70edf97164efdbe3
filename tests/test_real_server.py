"""The OpenAI adapter, and ``awares serve`` in front of it, against a real third-party server: ``transformers
serve`` running the tiny Qwen2.5-VL.

The scripted loopback server (``tests/chat_server.py``) checks the adapter against the contract as this
project reads it; here it meets a server somebody else wrote, over real HTTP, with nothing scripted. One
``transformers serve`` process (``tests/transformers_server.py``) serves two checkpoints for the module:

* ``random``: the session's random tiny model, whose replies mean nothing (it fills its token budget with
  whitespace): every check on it is about the reply's shape, never its content;
* ``trained``: the same model over-fitted (``tests/tiny_overfit.py``) to answer the background question
  directly and to ask for crop 3 before answering the corner question. Through this server its
  ``<tool_call>`` block comes back as a native tool call, so the agent's whole loop runs for real.

Decoding is greedy (the backend's temperature 0), so each reply is the same every time it is asked for.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from PIL import Image, ImageDraw
from tiny_overfit import CROP_A, CROP_Q, DIRECT_A, DIRECT_Q, sign_image
from transformers_server import TransformersServer, servable_copy

from awares_agent import AskResult, AwaResAgent, OpenAIBackend, Trajectory
from awares_agent.backends.base import StreamingChatBackend
from awares_agent.cli import main
from awares_agent.errors import BackendHTTPError
from awares_agent.image_store import ImageStore
from awares_agent.images import ViewSpec
from awares_agent.messages import ChatMessage, ChatReply, TextPart, ToolCall, ToolSpec
from awares_agent.tokens import QWEN2_5_VL
from awares_agent.tools.crop_sets import PaperCropSet
from awares_agent.tools.protocols import JsonProtocol

PROTOCOL = JsonProtocol(PaperCropSet())
CROP_TOOL: list[ToolSpec] = PROTOCOL.tools() or []
#: Enough for the trained model's tool call (about 20 tokens); the random model always uses all of them.
MAX_TOKENS = 48
#: Tokens an image adds around its visual tokens in Qwen2.5-VL's prompt: <|vision_start|> and <|vision_end|>.
IMAGE_DELIMITERS = 2
MODELS = ("random", "trained")


@dataclass(frozen=True)
class Served:
    """The running server and the checkpoints it serves, by role (``random``, ``trained``)."""

    server: TransformersServer
    paths: dict[str, str]

    def backend(self, which: str, *, max_tokens: int = MAX_TOKENS) -> OpenAIBackend:
        """An :class:`OpenAIBackend` for one served checkpoint (its path is the model's name), no retries."""
        return OpenAIBackend(
            self.paths[which], base_url=self.server.base_url, max_tokens=max_tokens, max_retries=0, timeout=60
        )


@pytest.fixture(scope="module")
def served(
    tiny_vlm_dir: Path, trained_tiny_vlm_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    """One ``transformers serve`` for the module, both checkpoints loaded before the first test."""
    root = tmp_path_factory.mktemp("transformers-serve")
    # Named as a real checkpoint is: the path is the model's name, and the agent infers its token rule
    # from it (a name without "qwen2.5" and "vl" would be counted by the pixel fallback instead).
    paths = {
        "random": servable_copy(tiny_vlm_dir, root / "Qwen2.5-VL-tiny-random"),
        "trained": servable_copy(trained_tiny_vlm_dir, root / "Qwen2.5-VL-tiny-trained"),
    }
    with TransformersServer(list(paths.values()), workdir=root / "server") as server:
        yield Served(server, {role: str(path) for role, path in paths.items()})


# --- conversations, as the agent builds them -------------------------------------------------------------


def view_turn(store: ImageStore, question: str) -> list[ChatMessage]:
    """The opening turn: the protocol's system prompt, then the low-res view of the sign and the question."""
    source = store.add(sign_image())
    return [
        ChatMessage.text_message("system", PROTOCOL.system_prompt()),
        ChatMessage(role="user", content=[store.view(source.id, ViewSpec()), TextPart(text=question)]),
    ]


def crops_turn(store: ImageStore) -> list[ChatMessage]:
    """The turn after the model asked for crop 3: its call, the tool's ack and the crop itself."""
    source = store.add(sign_image())
    region = PaperCropSet().region("3", source.width, source.height)
    crop = store.crop(source.id, region.box, label=f"crop {region.id} ({region.name})")
    call = ChatReply(tool_calls=[ToolCall(id="call_0", name="get_crops", arguments='{"crops": ["3"]}')])
    return [
        *view_turn(store, CROP_Q),
        PROTOCOL.assistant_message(call),
        *PROTOCOL.crops_messages(PROTOCOL.parse(call), [(region.id, region.name, crop)]),
    ]


@dataclass(frozen=True)
class Turn:
    """A conversation to send, whether the crop tool is offered, and what the trained model replies."""

    build: Callable[[ImageStore], list[ChatMessage]]
    tools: bool
    trained_text: str
    trained_calls: list[tuple[str, dict[str, object]]]


TURNS = {
    "crop-question": Turn(lambda s: view_turn(s, CROP_Q), True, "", [("get_crops", {"crops": ["3"]})]),
    "direct-question": Turn(lambda s: view_turn(s, DIRECT_Q), True, DIRECT_A, []),
    "with-crops": Turn(crops_turn, False, CROP_A, []),
}


def visual_tokens(messages: list[ChatMessage]) -> int:
    """Visual tokens of every image in ``messages``, by the accounting module's Qwen2.5-VL rule."""
    return sum(QWEN2_5_VL.count(part.width, part.height) for m in messages for part in m.images)


def calls(reply: ChatReply) -> list[tuple[str, object]]:
    """A reply's tool calls as ``(name, decoded arguments)``: the server makes up fresh ids every time."""
    return [(c.name, json.loads(c.arguments)) for c in reply.tool_calls]


def assert_reply_shape(reply: ChatReply, messages: list[ChatMessage], tools: list[ToolSpec] | None) -> None:
    """The contract a reply keeps whatever the model generated."""
    assert type(reply) is ChatReply
    # The server counts the whole prompt, so it holds at least the visual tokens of every image sent.
    assert reply.usage.prompt_tokens > visual_tokens(messages)
    assert 1 <= reply.usage.completion_tokens <= MAX_TOKENS
    assert reply.finish_reason in ("stop", "length", "tool_calls")
    assert (reply.finish_reason == "tool_calls") == bool(reply.tool_calls)
    offered = {t.name for t in tools or []}
    for call in reply.tool_calls:
        assert call.name in offered
        assert isinstance(json.loads(call.arguments), dict)  # a JSON string, as the OpenAI contract says
        assert call.id
    assert len({c.id for c in reply.tool_calls}) == len(reply.tool_calls)
    assert reply.latency_s > 0


# --- one turn ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("turn", list(TURNS))
@pytest.mark.parametrize("which", MODELS)
def test_a_turn_keeps_the_reply_contract(served: Served, which: str, turn: str) -> None:
    spec = TURNS[turn]
    store = ImageStore()
    messages = spec.build(store)
    tools = list(CROP_TOOL) if spec.tools else None

    reply = served.backend(which).complete(messages, images=store, tools=tools)

    assert_reply_shape(reply, messages, tools)
    assert reply.model == served.paths[which]
    if which == "trained":
        # The server parsed the model's <tool_call> block into a native call, or left the answer as text.
        assert (reply.text, calls(reply)) == (spec.trained_text, spec.trained_calls)
        assert reply.finish_reason == ("tool_calls" if spec.trained_calls else "stop")


@pytest.mark.parametrize("asynchronous", [False, True], ids=["complete_stream", "acomplete_stream"])
@pytest.mark.parametrize("turn", list(TURNS))
@pytest.mark.parametrize("which", MODELS)
def test_a_streamed_turn_is_the_whole_reply_in_pieces(
    served: Served, which: str, turn: str, asynchronous: bool
) -> None:
    spec = TURNS[turn]
    store = ImageStore()
    messages = spec.build(store)
    tools = list(CROP_TOOL) if spec.tools else None
    backend = served.backend(which)
    assert isinstance(backend, StreamingChatBackend)
    whole = backend.complete(messages, images=store, tools=tools)
    pieces: list[str] = []

    if asynchronous:
        streamed = asyncio.run(
            backend.acomplete_stream(messages, images=store, tools=tools, on_text=pieces.append)
        )
    else:
        streamed = backend.complete_stream(messages, images=store, tools=tools, on_text=pieces.append)

    assert_reply_shape(streamed, messages, tools)
    assert all(type(p) is str and p for p in pieces)
    assert "".join(pieces) == streamed.text
    assert calls(streamed) == calls(whole)
    assert (streamed.usage, streamed.finish_reason, streamed.model) == (
        whole.usage,
        whole.finish_reason,
        whole.model,
    )
    # transformers serve (5.24) strips the whitespace around a whole reply's content but streams the text as
    # generated: the random model's whitespace comes back as "" whole and as itself streamed.
    assert streamed.text.strip() == whole.text
    if which == "trained":
        assert streamed.text == whole.text == spec.trained_text


# --- token accounting ------------------------------------------------------------------------------------


def _picture(width: int, height: int) -> Image.Image:
    """A picture with some detail, so the PNG the server decodes is not a trivial one."""
    img = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(img)
    draw.rectangle((width // 8, height // 8, width // 2, height // 2), outline="black", width=3)
    draw.text((width // 4, height // 4), f"{width}x{height}", fill="black")
    return img


def _prompt_tokens(backend: OpenAIBackend, store: ImageStore, sizes: list[tuple[int, int]]) -> int:
    images = [store.full(store.add(_picture(w, h)).id) for w, h in sizes]
    message = ChatMessage(role="user", content=[*images, TextPart(text="hi")])
    return backend.complete([message], images=store).usage.prompt_tokens


@pytest.mark.parametrize(
    "sizes",
    [
        [(640, 480)],
        [(1240, 877)],
        [(333, 211)],
        [(3000, 2000)],  # above the 2048-token budget: scaled down
        [(56, 56)],  # below the 32-token floor: scaled up
        [(640, 480), (320, 240)],  # a view and a crop in one message
    ],
    ids=lambda sizes: "+".join(f"{w}x{h}" for w, h in sizes),
)
def test_the_servers_prompt_tokens_match_the_token_rule(served: Served, sizes: list[tuple[int, int]]) -> None:
    backend = served.backend("random", max_tokens=1)
    store = ImageStore()

    added = _prompt_tokens(backend, store, sizes) - _prompt_tokens(backend, store, [])

    expected = sum(QWEN2_5_VL.count(w, h) for w, h in sizes) + IMAGE_DELIMITERS * len(sizes)
    assert added == expected


# --- the agent ---------------------------------------------------------------------------------------------


def _round_trips(trajectory: Trajectory) -> None:
    text = trajectory.model_dump_json()
    assert Trajectory.model_validate_json(text) == trajectory
    assert "base64" not in text  # images are references, never pixels


def test_the_agent_answers_directly(served: Served) -> None:
    result = AwaResAgent(served.backend("trained")).ask(sign_image(), DIRECT_Q)

    assert result.answer == DIRECT_A
    assert result.crops == [] and result.trajectory.errors == []
    t = result.trajectory
    assert (t.backend, t.model, t.calls) == ("OpenAIBackend", served.paths["trained"], 1)
    assert result.visual_tokens == QWEN2_5_VL.count(t.view.width, t.view.height)
    _round_trips(t)


def test_the_agent_asks_for_a_crop_then_answers(served: Served) -> None:
    result = AwaResAgent(served.backend("trained")).ask(sign_image(), CROP_Q)

    assert result.answer == CROP_A
    assert [c.region_id for c in result.crops] == ["3"]
    t = result.trajectory
    assert t.errors == [] and t.calls == 2
    call = t.messages[2].tool_calls
    assert [(c.name, json.loads(c.arguments)) for c in call] == [("get_crops", {"crops": ["3"]})]
    crop = result.crops[0]
    assert result.visual_tokens == QWEN2_5_VL.count(t.view.width, t.view.height) + crop.tokens
    assert crop.tokens == QWEN2_5_VL.count(crop.width, crop.height)
    _round_trips(t)


def test_the_agents_stream_carries_the_servers_text(served: Served) -> None:
    events = list(AwaResAgent(served.backend("trained")).stream(sign_image(), CROP_Q))

    result = events[-1].result
    assert events[-1].type == "result" and isinstance(result, AskResult)
    assert (result.answer, [c.region_id for c in result.crops]) == (CROP_A, ["3"])
    tokens = [e.data for e in events if e.type == "token"]
    assert tokens and all(t["text"] for t in tokens)
    # Turn 1's tool call came as a structured delta, with no text; turn 2's answer came in pieces.
    assert [e.data["text"] for e in events if e.type == "model"] == ["", CROP_A]
    assert "".join(t["text"] for t in tokens) == CROP_A
    assert {t["round"] for t in tokens} == {2}
    assert [e.data.get("answer") for e in events if e.type == "answer"] == [CROP_A]


@pytest.mark.parametrize("stream", [False, True], ids=["ask", "stream"])
def test_the_agent_survives_whatever_the_random_model_says(served: Served, stream: bool) -> None:
    agent = AwaResAgent(served.backend("random"))
    if stream:
        result = list(agent.stream(sign_image(), CROP_Q))[-1].result
    else:
        result = agent.ask(sign_image(), CROP_Q)

    assert isinstance(result, AskResult)
    t = result.trajectory
    assert t.calls >= 1 and t.backend == "OpenAIBackend"
    assert result.visual_tokens >= QWEN2_5_VL.count(t.view.width, t.view.height)
    _round_trips(t)


# --- the command line and errors ---------------------------------------------------------------------------


def test_awares_ask_against_the_server(
    served: Served, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = tmp_path / "sign.png"
    sign_image().save(image)
    server, model = served.server.base_url, served.paths["trained"]
    base = ["ask", str(image), CROP_Q, "--base-url", server, "--model", model, "--max-retries", "0"]

    assert main([*base, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["answer"] == CROP_A
    assert [c["region_id"] for c in result["crops"]] == ["3"]
    assert result["trajectory"]["backend"] == "OpenAIBackend"

    # Shown as it streams: the view, the crop sent, the answer.
    assert main(base) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "3 (bottom-right)" in out and CROP_A in out


def test_an_unknown_model_is_a_typed_error_naming_it(served: Served, tmp_path: Path) -> None:
    missing = str(tmp_path / "no-such-model")
    backend = OpenAIBackend(missing, base_url=served.server.base_url, max_retries=0, timeout=60)

    # transformers serve answers a model it cannot load with HTTP 500, not 404.
    with pytest.raises(BackendHTTPError) as caught:
        backend.complete([ChatMessage.text_message("user", "hi")], images=ImageStore())

    assert caught.value.status_code == 500
    assert missing in str(caught.value) and served.server.base_url in str(caught.value)


# --- awares serve in front of it --------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_awares_serve_in_front_of_transformers_serve(served: Served, stream: bool) -> None:
    """The openai client, through ``awares serve``, to ``transformers serve``: the crop round runs upstream
    for real, and the client gets the answer and what AwaRes did."""
    import base64
    import io

    import openai
    from serve_live import LiveServer

    from awares_agent.backend_factory import BackendOptions
    from awares_agent.config import AgentConfig
    from awares_agent.serve import ServeOptions

    options = ServeOptions.of(
        upstream=served.server.base_url,
        model=served.paths["trained"],
        port=0,
        backend=BackendOptions(timeout=60, max_retries=0, max_new_tokens=MAX_TOKENS),
        agent=AgentConfig(),
    )
    png = io.BytesIO()
    sign_image().save(png, "PNG")
    url = "data:image/png;base64," + base64.b64encode(png.getvalue()).decode()
    content = [{"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": CROP_Q}]
    messages = [{"role": "user", "content": content}]
    with LiveServer(options) as live:
        client = openai.OpenAI(base_url=live.base_url, api_key="unused", max_retries=0)
        if stream:
            chunks = list(
                client.chat.completions.create(model=served.paths["trained"], messages=messages, stream=True)
            )
            answer = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
            awares = next(c.model_extra["awares"] for c in reversed(chunks) if c.model_extra.get("awares"))
        else:
            reply = client.chat.completions.create(model=served.paths["trained"], messages=messages)
            answer = reply.choices[0].message.content
            awares = reply.model_extra["awares"]
            assert reply.usage.prompt_tokens > 0
    assert answer == CROP_A
    assert [c["region_id"] for c in awares["crops"]] == ["3"]
    assert awares["model_calls"] == 2 and 0 < awares["rtr"] < 1
