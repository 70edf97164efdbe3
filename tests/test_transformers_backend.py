"""Tests for the transformers backend, offline, on a real tiny Qwen2.5-VL (random weights) built on the spot.

Two versions of the tiny model are used: the checkpoint as built (its greedy output is nearly constant), and
the same architecture with its weights redrawn at a larger scale (``lively``), whose greedy output depends on
every prompt token and pixel, so that "identical outputs" comparisons can fail when something is wrong.
Scripted replies, where a test needs a well-formed tool call from an untrained model, come from hooks on the
real model's forward that overwrite its logits, in TRL's style of replacing only the generation.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from PIL import Image
from transformers import AutoModelForImageTextToText, Qwen2_5_VLForConditionalGeneration

from awares_agent import AwaResAgent
from awares_agent.backends.base import ChatBackend, StreamingChatBackend
from awares_agent.backends.hf_batcher import MicroBatcher
from awares_agent.backends.hf_decode import CachedTurn, PrefixCache, PreparedTurn, usable_prefix
from awares_agent.backends.hf_detokenize import IncrementalDetokenizer, decode_text
from awares_agent.backends.hf_processors import load_processor
from awares_agent.backends.transformers_backend import TransformersBackend
from awares_agent.errors import BackendError, ConfigError, MessageTranslationError
from awares_agent.image_store import ImageStore
from awares_agent.images import ViewSpec
from awares_agent.messages import ChatMessage, ChatReply, ImagePart, TextPart, ToolCall
from awares_agent.testing import build_tiny_vlm
from awares_agent.tokens import QWEN2_5_VL
from awares_agent.tools.crop_sets import PaperCropSet
from awares_agent.tools.protocols import AwaresTextProtocol, JsonProtocol

SYSTEM = "You answer questions about an image. Request crops when fine details are needed."
CROP_TOOL = JsonProtocol(PaperCropSet()).tool.spec()

# Qwen2.5-VL-7B-Instruct's chat template: it ignores `tools` and drops assistant `tool_calls`.
QWEN25_VL_7B_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}<|im_start|>system\n"
    "You are a helpful assistant.<|im_end|>\n{% endif %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}Picture "
    "{{ image_count.value }}: {% endif %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}{% set video_count.value = "
    "video_count.value + 1 %}{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>{% elif 'text' in content %}{{ content['text'] }}{% endif %}"
    "{% endfor %}<|im_end|>\n{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n"
    "{% endif %}"
)


# --- fixtures ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_vlm(tmp_path_factory.mktemp("tiny-qwen2.5-vl"))


@pytest.fixture(scope="module")
def processor(tiny_path: Path):
    return load_processor(str(tiny_path), local_files_only=True)


@pytest.fixture(scope="module")
def backend(tiny_path: Path) -> TransformersBackend:
    """The checkpoint loaded from its path, exactly as a user would (no batching, for determinism)."""
    return TransformersBackend(tiny_path, local_files_only=True, max_new_tokens=12, max_batch_size=1)


@pytest.fixture(scope="module")
def lively(tiny_path: Path) -> Qwen2_5_VLForConditionalGeneration:
    """The tiny model with its weight matrices redrawn with std 0.1: input-sensitive greedy output."""
    model = AutoModelForImageTextToText.from_pretrained(tiny_path, local_files_only=True).eval()
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for param in model.parameters():
            if param.dim() >= 2:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.1)
    return model


@pytest.fixture
def store() -> ImageStore:
    return ImageStore()


def make(model, processor, **options) -> TransformersBackend:
    options.setdefault("max_new_tokens", 16)
    options.setdefault("max_batch_size", 1)
    return TransformersBackend(model, processor, **options)


def noise(seed: int, width: int, height: int) -> Image.Image:
    return Image.frombytes("RGB", (width, height), random.Random(seed).randbytes(width * height * 3))


def first_turn(
    store: ImageStore, seed: int, size: tuple[int, int] = (400, 300)
) -> tuple[str, list[ChatMessage]]:
    """A source image and the agent's opening messages: the system prompt, the low-res view, a question."""
    source = store.add(noise(seed, *size))
    view = store.view(source.id, ViewSpec())
    return source.id, [
        ChatMessage.text_message("system", SYSTEM),
        ChatMessage(role="user", content=[view, TextPart(text=f"What is written in corner {seed}?")]),
    ]


def second_turn(
    store: ImageStore, source_id: str, messages: list[ChatMessage], answer: str, crops: int
) -> list[ChatMessage]:
    """The conversation after a crop call: the answer, a tool result, and a user turn with ``crops`` crops."""
    parts = [
        store.crop(source_id, (0, 0, 120 + 40 * k, 90 + 20 * k), label=f"crop {k}") for k in range(crops)
    ]
    return [
        *messages,
        ChatMessage(role="assistant", content=[TextPart(text=answer)]),
        ChatMessage(role="tool", tool_call_id="call_0", content=[TextPart(text="Returned crops.")]),
        ChatMessage(role="user", content=[*parts, TextPart(text="Answer now.")]),
    ]


def vision_ids(model) -> list[int]:
    c = model.config
    return [c.image_token_id, c.video_token_id, c.vision_start_token_id, c.vision_end_token_id]


@contextlib.contextmanager
def hooks(model, *, before=None, after=None) -> Iterator[None]:
    """Temporarily run ``before(kwargs)`` ahead of and ``after(kwargs, output)`` behind each model forward."""
    handles = []
    if before is not None:
        handles.append(model.register_forward_pre_hook(lambda m, a, kw: before(kw), with_kwargs=True))
    if after is not None:
        handles.append(model.register_forward_hook(lambda m, a, kw, out: after(kw, out), with_kwargs=True))
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


@contextlib.contextmanager
def scripted(model, tokenizer, replies: list[str]) -> Iterator[None]:
    """Make the model emit ``replies`` (one per call, each ended by ``<|im_end|>``) by forcing its logits."""
    end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    queue = [[*tokenizer.encode(r, add_special_tokens=False), end] for r in replies]
    state = {"tokens": [], "step": 0}

    def before(kw):
        if kw["input_ids"].shape[1] > 1:  # a prefill starts a new reply
            state["tokens"], state["step"] = queue.pop(0), 0

    def after(kw, out):
        token = state["tokens"][min(state["step"], len(state["tokens"]) - 1)]
        out.logits[:, -1, :] = float("-inf")
        out.logits[:, -1, token] = 0.0
        state["step"] += 1

    with hooks(model, before=before, after=after):
        yield


# --- loading and the basic turn ------------------------------------------------------------------------


def test_loads_through_the_auto_classes_and_load_processor(backend: TransformersBackend, tiny_path: Path):
    assert isinstance(backend, ChatBackend)
    assert isinstance(backend.model, Qwen2_5_VLForConditionalGeneration)
    assert not backend.model.training
    assert hasattr(backend.processor, "image_processor") and backend.processor.chat_template
    assert backend.model_name == str(tiny_path)
    assert str(backend.device) == "cpu"
    # The paper's bounds are set on the processor, so its counts are the accounting module's.
    assert backend.token_rule == QWEN2_5_VL
    assert "TransformersBackend" in repr(backend)


def test_a_loaded_model_and_a_model_name(lively, processor):
    named = make(lively, processor, model_name="Kimhi/AWARES-Qwen2.5-VL-7B")
    assert named.model is lively and named.processor is processor
    assert named.model_name == "Kimhi/AWARES-Qwen2.5-VL-7B"


def test_complete_returns_text_usage_and_image_tokens(backend: TransformersBackend, store: ImageStore):
    _, messages = first_turn(store, 0, (640, 480))
    reply = backend.complete(messages, images=store)
    view = messages[1].images[0]
    inputs = backend.processor(
        text=[backend.render(messages, images=store)], images=[store.get(view.image_id)], return_tensors="pt"
    )
    assert reply.usage.prompt_tokens == inputs["input_ids"].shape[1]
    assert 1 <= reply.usage.completion_tokens <= backend.max_new_tokens
    # "length" exactly when the turn used every token it was allowed
    assert reply.finish_reason == (
        "length" if reply.usage.completion_tokens == backend.max_new_tokens else "stop"
    )
    assert reply.finish_reason in ("stop", "length")
    assert reply.image_tokens == [QWEN2_5_VL.count(view.width, view.height)]
    assert reply.model == backend.model_name
    assert reply.latency_s > 0
    assert reply.tool_calls == []


def test_image_tokens_agree_with_the_accounting_module(backend: TransformersBackend, store: ImageStore):
    sizes = [
        (20, 20),
        (28, 28),
        (100, 37),
        (333, 333),
        (640, 480),
        (1024, 768),
        (1280, 720),
        (57, 1200),
        (3000, 100),
        (2000, 1500),
    ]
    parts: list[ImagePart] = []
    for i, (w, h) in enumerate(sizes):
        parts.append(store.full(store.add(Image.new("RGB", (w, h), (i * 20, 100, 200))).id))
    messages = [ChatMessage(role="user", content=[*parts, TextPart(text="How many images?")])]
    reply = make(backend.model, backend.processor, max_new_tokens=1).complete(messages, images=store)
    assert reply.image_tokens == [QWEN2_5_VL.count(w, h) for w, h in sizes]
    # The paper's bounds: a 20x20 image is scaled up to 32+ tokens, a 3 MP one down to 2048 or fewer.
    assert reply.image_tokens[0] >= 32 and 1900 < reply.image_tokens[-1] <= 2048


def test_prompt_tokens_and_pixels_are_the_processors(backend: TransformersBackend, store: ImageStore):
    """The backend tokenizes from image sizes and preprocesses images one by one: exactly the processor's."""
    sizes = [(20, 20), (100, 37), (333, 333), (640, 480), (1280, 720), (57, 1200), (3000, 100), (2000, 1500)]
    parts = [store.full(store.add(noise(i, w, h)).id) for i, (w, h) in enumerate(sizes)]
    messages = [
        ChatMessage.text_message("system", SYSTEM),
        ChatMessage(role="user", content=[parts[0], TextPart(text="first"), *parts[1:4]]),
        ChatMessage.text_message("assistant", "GET_CROPS: ['0']"),
        ChatMessage(role="user", content=[*parts[4:], TextPart(text="last")]),
    ]
    request = backend._prepare(messages, store, [CROP_TOOL])
    pixels = [store.get(p.image_id) for p in parts]
    text = backend.render(messages, images=store, tools=[CROP_TOOL])
    expected = backend.processor(text=[text], images=pixels, return_tensors="pt")
    assert torch.equal(request.input_ids, expected["input_ids"][0])
    assert torch.equal(request.mm_token_type_ids, expected["mm_token_type_ids"][0])
    assert torch.equal(request.image_grid_thw, expected["image_grid_thw"])
    assert torch.equal(torch.cat(request.pixels), expected["pixel_values"])


def test_text_only_conversation_has_no_image_tokens(backend: TransformersBackend, store: ImageStore):
    reply = backend.complete([ChatMessage.text_message("user", "Hello")], images=store)
    assert reply.image_tokens == []
    assert reply.usage.prompt_tokens > 0


def test_vision_tokens_are_never_generated(lively, processor, store: ImageStore):
    """Even when the model prefers image/video/vision pads above all else, greedy or sampled."""
    _, messages = first_turn(store, 1)
    banned = vision_ids(lively)
    plain = make(lively, processor, kv_reuse=False).complete(messages, images=store)
    fed: list[int] = []

    def boost(kw, out):
        out.logits[:, -1, banned] += 1e4

    def record(kw):
        if kw["input_ids"].shape[1] == 1:
            fed.extend(kw["input_ids"].flatten().tolist())

    with hooks(lively, before=record, after=boost):
        greedy = make(lively, processor, kv_reuse=False).complete(messages, images=store)
        torch.manual_seed(0)
        sampled = make(lively, processor, kv_reuse=False, do_sample=True, top_p=0.9).complete(
            messages, images=store
        )
        with torch.inference_mode():
            logits = lively(
                **processor(
                    text=[make(lively, processor).render(messages, images=store)],
                    images=[store.get(messages[1].images[0].image_id)],
                    return_tensors="pt",
                )
            ).logits
        assert int(logits[0, -1].argmax()) in banned  # the boost works: unsuppressed, a pad would come next
    assert greedy.text == plain.text and greedy.usage.completion_tokens == 16
    assert sampled.usage.completion_tokens >= 1
    assert len(fed) >= 15 and not set(fed) & set(banned)


# --- prompts and tools ---------------------------------------------------------------------------------


def test_tools_are_in_the_prompt_only_when_given(backend: TransformersBackend, store: ImageStore):
    _, messages = first_turn(store, 2)
    with_tools = backend.render(messages, images=store, tools=[CROP_TOOL])
    without = backend.render(messages, images=store)
    assert "<tools>" in with_tools and '"name": "get_crops"' in with_tools and SYSTEM in with_tools
    assert "<tools>" not in without and "get_crops" not in without and SYSTEM in without
    assert without.endswith("<|im_start|>assistant\n")


def test_tools_fallback_for_a_template_that_ignores_them(backend: TransformersBackend, tiny_path, store):
    """Under Qwen2.5-VL-7B-Instruct's template, tools, calls and results read as a tool-aware template's."""
    processor = load_processor(str(tiny_path), local_files_only=True)
    processor.chat_template = QWEN25_VL_7B_TEMPLATE
    fallback = make(backend.model, processor)
    source_id, messages = first_turn(store, 3)
    crop = store.crop(source_id, (0, 0, 100, 100))
    history = [
        *messages,
        ChatMessage(
            role="assistant",
            tool_calls=[ToolCall(id="call_0", name="get_crops", arguments='{"crops": ["0"]}')],
        ),
        ChatMessage(role="tool", tool_call_id="call_0", content=[TextPart(text="Returned crops: 0.")]),
        ChatMessage(role="tool", tool_call_id="call_1", content=[TextPart(text="And another.")]),
        ChatMessage(role="user", content=[crop, TextPart(text="Answer now.")]),
    ]
    for conversation in (messages, history, history[1:]):  # history[1:]: no system message
        for tools in ([CROP_TOOL], None):
            native = backend.render(conversation, images=store, tools=tools)
            assert fallback.render(conversation, images=store, tools=tools) == native
    assert "<tool_response>\nReturned crops: 0.\n</tool_response>\n<tool_response>" in native


def test_images_in_a_tool_message_are_refused(backend: TransformersBackend, store: ImageStore):
    source_id, messages = first_turn(store, 4)
    bad = [*messages, ChatMessage(role="tool", tool_call_id="c", content=[store.full(source_id)])]
    with pytest.raises(MessageTranslationError, match="tool"):
        backend.complete(bad, images=store)


# --- scripted replies: tool calls and the GET_CROPS text -----------------------------------------------


def test_hermes_tool_call_becomes_a_structured_call(backend: TransformersBackend, store: ImageStore):
    backend = make(backend.model, backend.processor, max_new_tokens=64)
    _, messages = first_turn(store, 5)
    call = '<tool_call>\n{"name": "get_crops", "arguments": {"crops": ["0", "5"]}}\n</tool_call>'
    with scripted(backend.model, backend.tokenizer, [call, call]):
        offered = backend.complete(messages, images=store, tools=[CROP_TOOL])
        plain = backend.complete(messages, images=store)
    assert offered.tool_calls == [ToolCall(id="call_0", name="get_crops", arguments='{"crops": ["0", "5"]}')]
    assert offered.text == ""
    assert offered.finish_reason == "stop"
    assert offered.usage.completion_tokens == len(backend.tokenizer.encode(call)) + 1  # + <|im_end|>
    assert JsonProtocol(PaperCropSet()).parse(offered).crops == ["0", "5"]
    assert plain.text == call and plain.tool_calls == []  # no tools offered: the text as generated


def test_get_crops_text_protocol_runs_as_released(backend: TransformersBackend):
    """The released model's protocol end to end: GET_CROPS, then an answer after the crops."""
    agent = AwaResAgent(make(backend.model, backend.processor, max_new_tokens=64), protocol="awares-text")
    with scripted(backend.model, backend.tokenizer, ["GET_CROPS: ['0', '5']", "The total is 42."]):
        result = agent.ask(noise(6, 640, 480), "What is the total?")
    assert result.answer == "The total is 42."
    assert [c.region_id for c in result.crops] == ["0", "5"]
    assert AwaresTextProtocol(PaperCropSet()).key == result.trajectory.settings.protocol


# --- the decode loop, KV reuse and batching -----------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_decode_loop_matches_model_generate(lively, processor, store: ImageStore, seed: int):
    source_id, messages = first_turn(store, seed, (300 + 50 * seed, 200 + 70 * seed))
    if seed == 2:
        messages = second_turn(store, source_id, messages, "I need crops.", 2)
    backend = make(lively, processor, kv_reuse=False, max_new_tokens=24)
    reply = backend.complete(messages, images=store)
    pixels = [store.get(p.image_id) for m in messages for p in m.images]
    inputs = processor(text=[backend.render(messages, images=store)], images=pixels, return_tensors="pt")
    out = lively.generate(
        **inputs,
        do_sample=False,
        max_new_tokens=24,
        suppress_tokens=vision_ids(lively),
        eos_token_id=processor.tokenizer.convert_tokens_to_ids("<|im_end|>"),
    )
    new = out[0, inputs["input_ids"].shape[1] :]
    assert reply.usage.completion_tokens == len(new)
    assert reply.text == processor.tokenizer.decode(new, skip_special_tokens=True)
    assert len(set(new.tolist())) > 1  # the lively model's output is not a constant


@pytest.mark.parametrize(("seed", "crops"), [(0, 1), (1, 2), (2, 1), (3, 2)])
def test_kv_reuse_gives_identical_outputs(lively, processor, store: ImageStore, seed: int, crops: int):
    reusing = make(lively, processor, max_new_tokens=20)
    fresh = make(lively, processor, max_new_tokens=20, kv_reuse=False)
    source_id, messages = first_turn(store, seed, (320 + 64 * seed, 240 + 16 * seed))
    one = reusing.complete(messages, images=store)
    assert one.text == fresh.complete(messages, images=store).text
    assert reusing.stats["reused_tokens"] == 0 and reusing.stats["cache_entries"] == 1

    conversation = second_turn(store, source_id, messages, one.text, crops)
    two = reusing.complete(conversation, images=store)
    stats = reusing.stats
    assert two.text == fresh.complete(conversation, images=store).text
    assert two.usage.prompt_tokens == stats["prompt_tokens"] - one.usage.prompt_tokens  # the full prompt
    reused = stats["reused_tokens"]
    assert reused >= one.usage.prompt_tokens  # the system prompt, the view and the question at least
    assert stats["prefilled_tokens"] - one.usage.prompt_tokens == two.usage.prompt_tokens - reused
    assert stats["cache_hits"] == 1
    assert stats["preprocessed_images"] == 1 + crops  # the view once, in the first turn


def test_kv_reuse_after_a_structured_tool_call(lively, processor, store: ImageStore):
    """The re-rendered history differs from what was generated: less is reused, the output is the same."""
    reusing = make(lively, processor, max_new_tokens=20)
    fresh = make(lively, processor, max_new_tokens=20, kv_reuse=False)
    source_id, messages = first_turn(store, 7)
    reusing.complete(messages, images=store, tools=[CROP_TOOL])
    conversation = [
        *messages,
        ChatMessage(
            role="assistant",
            tool_calls=[ToolCall(id="call_0", name="get_crops", arguments='{"crops": ["4"]}')],
        ),
        ChatMessage(
            role="tool", tool_call_id="call_0", content=[TextPart(text="Returned crops: 4 (center).")]
        ),
        ChatMessage(
            role="user", content=[store.crop(source_id, (100, 75, 300, 225)), TextPart(text="Crop 4.")]
        ),
    ]
    before = reusing.stats["reused_tokens"]
    two = reusing.complete(conversation, images=store, tools=[CROP_TOOL])
    assert two.text == fresh.complete(conversation, images=store, tools=[CROP_TOOL]).text
    assert reusing.stats["reused_tokens"] - before > 100  # system prompt, tools block and the view


def test_kv_reuse_never_reuses_a_different_image_of_the_same_size(lively, processor, store: ImageStore):
    reusing = make(lively, processor, max_new_tokens=12)
    fresh = make(lively, processor, max_new_tokens=12, kv_reuse=False)
    _, first = first_turn(store, 8)
    reusing.complete(first, images=store)
    other = store.view(store.add(noise(9, 400, 300)).id, ViewSpec())
    second = [first[0], ChatMessage(role="user", content=[other, *first[1].content[1:]])]
    assert other.image_id != first[1].images[0].image_id
    before = reusing.stats["reused_tokens"]
    reply = reusing.complete(second, images=store)
    reused = reusing.stats["reused_tokens"] - before
    prompt_ids = processor.tokenizer(reusing.render(second, images=store))["input_ids"]
    vision_start = prompt_ids.index(lively.config.vision_start_token_id)
    assert reused == vision_start + 1  # the system prompt up to the image, not the same-sized image
    assert reply.text == fresh.complete(second, images=store).text


def test_kv_cache_is_bounded(lively, processor, store: ImageStore):
    backend = make(lively, processor, max_new_tokens=2, kv_cache_entries=2)
    for seed in range(4):
        backend.complete(first_turn(store, seed)[1], images=store)
    assert backend.stats["cache_entries"] == 2
    backend.clear_cache()
    assert backend.stats["cache_entries"] == 0


def batch_conversations(store: ImageStore) -> list[list[ChatMessage]]:
    """Prompts of different lengths: 0, 1 and 2 images, short and long texts."""
    out = [first_turn(store, 10 + s, (200 + 97 * s, 150 + 61 * s))[1] for s in range(4)]
    out[1] = [
        out[1][0],
        ChatMessage(role="user", content=[*out[1][1].content, TextPart(text=" Be brief." * 9)]),
    ]
    out[2] = [ChatMessage.text_message("system", "Be precise."), *out[2][1:]]
    two = [store.full(store.add(noise(20 + k, 90 + 30 * k, 60)).id) for k in range(2)]
    out.append([ChatMessage(role="user", content=[*two, TextPart(text="Compare.")])])
    out.append([ChatMessage.text_message("user", "Hello there, no image.")])
    return out


def test_batched_equals_sequential(lively, processor, store: ImageStore):
    conversations = batch_conversations(store)
    batched = make(lively, processor, max_batch_size=8, max_new_tokens=16)
    sequential = make(lively, processor, kv_reuse=False, max_new_tokens=16)
    replies = batched.complete_batch([(c, None) for c in conversations], images=store)
    expected = [sequential.complete(c, images=store) for c in conversations]
    assert [r.text for r in replies] == [e.text for e in expected]
    assert [r.usage for r in replies] == [e.usage for e in expected]
    assert [r.image_tokens for r in replies] == [e.image_tokens for e in expected]
    assert len({r.usage.prompt_tokens for r in replies}) == len(replies)  # really different lengths
    assert batched.stats["batch_sizes"] == {len(conversations): 1}

    # Second turns in one batch, each row continuing from its own cached first turn.
    seconds = []
    for c, r in zip(conversations, replies, strict=True):
        extra = [store.crop(store.add(noise(len(seconds), 150, 120)).id, (0, 0, 100, 90))]
        seconds.append(
            [
                *c,
                ChatMessage.text_message("assistant", r.text),
                ChatMessage(role="user", content=[*extra, TextPart(text="And now?")]),
            ]
        )
    before = batched.stats
    again = batched.complete_batch([(c, None) for c in seconds], images=store)
    assert [r.text for r in again] == [sequential.complete(c, images=store).text for c in seconds]
    assert batched.stats["cache_hits"] - before["cache_hits"] == len(seconds)


def test_complete_batch_respects_max_batch_size(lively, processor, store: ImageStore):
    conversations = batch_conversations(store)[:5]
    backend = make(lively, processor, max_batch_size=2, max_new_tokens=2, kv_reuse=False)
    backend.complete_batch([(c, None) for c in conversations], images=store)
    assert backend.stats["batch_sizes"] == {2: 2, 1: 1}


def test_concurrent_complete_calls_are_batched(lively, processor, store: ImageStore):
    conversations = batch_conversations(store)[:4]
    expected = [make(lively, processor, kv_reuse=False).complete(c, images=store).text for c in conversations]
    backend = make(lively, processor, max_batch_size=4, batch_wait_ms=2000)
    barrier = threading.Barrier(len(conversations))
    results: dict[int, str] = {}

    def ask(i: int) -> None:
        barrier.wait()
        results[i] = backend.complete(conversations[i], images=store).text

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(conversations))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert [results[i] for i in range(len(conversations))] == expected
    assert backend.stats["batch_sizes"] == {4: 1}


def test_a_failing_request_fails_alone_in_a_batch(lively, processor, store: ImageStore):
    """An error during a batched generation reaches only the caller whose request causes it."""
    width, height = QWEN2_5_VL.resized(600, 120)
    poisoned = torch.tensor([[1, height // 14, width // 14]])  # the grid of a 600x120 image, and only its
    conversations = batch_conversations(store)[:3]
    conversations.append([ChatMessage(role="user", content=[store.full(store.add(noise(30, 600, 120)).id)])])
    expected = [
        make(lively, processor, kv_reuse=False).complete(c, images=store).text for c in conversations[:3]
    ]
    backend = make(lively, processor, max_batch_size=4, batch_wait_ms=2000)
    barrier = threading.Barrier(len(conversations))
    results: dict[int, object] = {}

    def explode(kw):
        grids = kw.get("image_grid_thw")
        if grids is not None and (grids == poisoned).all(dim=1).any():
            raise RuntimeError("boom")

    def ask(i: int) -> None:
        barrier.wait()
        try:
            results[i] = backend.complete(conversations[i], images=store).text
        except BackendError as exc:
            results[i] = exc

    with hooks(lively, before=explode):
        threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(conversations))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
    assert [results[i] for i in range(3)] == expected
    assert isinstance(results[3], BackendError) and "boom" in str(results[3]) and "cpu" in str(results[3])


def test_acomplete(lively, processor, store: ImageStore):
    conversations = batch_conversations(store)[:2]
    backend = make(lively, processor, max_batch_size=4)
    expected = [make(lively, processor, kv_reuse=False).complete(c, images=store).text for c in conversations]

    async def main():
        return await asyncio.gather(*(backend.acomplete(c, images=store) for c in conversations))

    assert [r.text for r in asyncio.run(main())] == expected


def test_generate_path_for_models_without_mrope(lively, processor, store: ImageStore):
    """Models outside the Qwen-VL family go through model.generate(); forced here on the tiny model."""
    _, messages = first_turn(store, 11)
    expected = make(lively, processor, kv_reuse=False).complete(messages, images=store)
    backend = make(lively, processor, kv_reuse=False)
    backend._mrope = False
    reply = backend.complete(messages, images=store)
    assert (reply.text, reply.usage, reply.image_tokens) == (
        expected.text,
        expected.usage,
        expected.image_tokens,
    )


# --- streaming -----------------------------------------------------------------------------------------


def same_reply(a: ChatReply, b: ChatReply) -> bool:
    """Equal in everything but the wall-clock latency."""
    return a.model_copy(update={"latency_s": 0.0}) == b.model_copy(update={"latency_s": 0.0})


class Recorder:
    """An ``on_text`` sink that notes how many model forwards had run when each piece arrived."""

    def __init__(self) -> None:
        self.forwards = 0
        self.pieces: list[str] = []
        self.seen_at: list[int] = []

    def count(self, kw) -> None:
        self.forwards += 1

    def __call__(self, piece: str) -> None:
        self.pieces.append(piece)
        self.seen_at.append(self.forwards)

    @property
    def text(self) -> str:
        return "".join(self.pieces)


def test_the_backend_is_a_streaming_backend(backend: TransformersBackend):
    assert isinstance(backend, StreamingChatBackend)


def test_streamed_pieces_arrive_during_generation_and_join_to_the_reply(lively, processor, store):
    _, messages = first_turn(store, 60)
    expected = make(lively, processor, kv_reuse=False).complete(messages, images=store)
    recorder = Recorder()
    with hooks(lively, before=recorder.count):
        reply = make(lively, processor).complete_stream(messages, images=store, on_text=recorder)
    assert same_reply(reply, expected)
    assert recorder.text == reply.text and all(recorder.pieces)
    assert len(recorder.pieces) > 1
    # In order, and as generated: the first piece came after the prefill, well before the last forward.
    assert recorder.seen_at == sorted(recorder.seen_at)
    assert recorder.seen_at[0] < recorder.forwards


def test_a_streamed_tool_call_is_streamed_as_text_and_parsed_in_the_reply(backend, store):
    # No reuse: a repeated prompt would prefill one token, which `scripted` does not take for a new reply.
    backend = make(backend.model, backend.processor, max_new_tokens=64, kv_reuse=False)
    _, messages = first_turn(store, 61)
    call = '<tool_call>\n{"name": "get_crops", "arguments": {"crops": ["0", "5"]}}\n</tool_call>'
    pieces: list[str] = []
    with scripted(backend.model, backend.tokenizer, [call, call]):
        streamed = backend.complete_stream(messages, images=store, tools=[CROP_TOOL], on_text=pieces.append)
        plain = backend.complete(messages, images=store, tools=[CROP_TOOL])
    assert "".join(pieces) == call and len(pieces) > 1
    assert streamed.tool_calls == [ToolCall(id="call_0", name="get_crops", arguments='{"crops": ["0", "5"]}')]
    assert streamed.text == ""
    assert same_reply(streamed, plain)


def test_a_streaming_call_batches_with_a_plain_one(lively, processor, store):
    conversations = batch_conversations(store)[:2]
    expected = [make(lively, processor, kv_reuse=False).complete(c, images=store) for c in conversations]
    backend = make(lively, processor, max_batch_size=2, batch_wait_ms=2000)
    barrier = threading.Barrier(2)
    pieces: list[str] = []
    results: dict[int, ChatReply] = {}

    def ask(i: int) -> None:
        barrier.wait()
        if i == 0:
            results[i] = backend.complete_stream(conversations[i], images=store, on_text=pieces.append)
        else:
            results[i] = backend.complete(conversations[i], images=store)

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert backend.stats["batch_sizes"] == {2: 1}
    assert all(same_reply(results[i], expected[i]) for i in range(2))
    assert "".join(pieces) == results[0].text and len(pieces) > 1


def test_a_raising_sink_is_dropped_and_its_batch_goes_on(lively, processor, store, caplog):
    conversations = batch_conversations(store)[2:4]
    expected = [make(lively, processor, kv_reuse=False).complete(c, images=store) for c in conversations]
    backend = make(lively, processor, max_batch_size=2, batch_wait_ms=2000)
    barrier = threading.Barrier(2)
    calls: list[str] = []
    pieces: list[str] = []
    results: dict[int, ChatReply] = {}

    def explode(piece: str) -> None:
        calls.append(piece)
        raise ValueError("the client went away")

    def ask(i: int) -> None:
        barrier.wait()
        sink = explode if i == 0 else pieces.append
        results[i] = backend.complete_stream(conversations[i], images=store, on_text=sink)

    with caplog.at_level(logging.WARNING, logger="awares_agent.backends.hf_detokenize"):
        threads = [threading.Thread(target=ask, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
    assert backend.stats["batch_sizes"] == {2: 1}  # one batch: the error did not make it rerun
    assert all(same_reply(results[i], expected[i]) for i in range(2))
    assert len(calls) == 1  # called once, then never again
    assert "".join(pieces) == results[1].text
    warnings = [r for r in caplog.records if "on_text raised" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].levelno == logging.WARNING


def test_a_batch_rerun_after_a_failure_streams_each_piece_once(lively, processor, store):
    """A batch that fails mid-decode is rerun one row at a time; the tokens start again, the text does not."""
    conversations = batch_conversations(store)[:2]
    expected = [make(lively, processor, kv_reuse=False).complete(c, images=store) for c in conversations]
    backend = make(lively, processor, max_batch_size=2, batch_wait_ms=2000)
    barrier = threading.Barrier(2)
    pieces: dict[int, list[str]] = {0: [], 1: []}
    before_failure: dict[int, int] = {0: 0, 1: 0}
    results: dict[int, ChatReply] = {}
    steps = {"batched": 0}

    def sink(i: int):
        def on_text(piece: str) -> None:
            pieces[i].append(piece)
            before_failure[i] += steps["batched"] < 8

        return on_text

    def fail_late(kw):
        if kw["input_ids"].shape == (2, 1):
            steps["batched"] += 1
            if steps["batched"] == 8:
                raise RuntimeError("boom")

    def ask(i: int) -> None:
        barrier.wait()
        results[i] = backend.complete_stream(conversations[i], images=store, on_text=sink(i))

    with hooks(lively, before=fail_late):
        threads = [threading.Thread(target=ask, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
    assert backend.stats["batch_sizes"] == {1: 2}  # the batch of two failed; each reran alone
    for i in range(2):
        assert same_reply(results[i], expected[i])
        assert "".join(pieces[i]) == results[i].text
        assert 0 < before_failure[i] < len(pieces[i])  # streamed both before the failure and after it


def test_acomplete_stream(lively, processor, store):
    _, messages = first_turn(store, 62)
    expected = make(lively, processor, kv_reuse=False).complete(messages, images=store)
    pieces: list[str] = []
    reply = asyncio.run(
        make(lively, processor, max_batch_size=4).acomplete_stream(
            messages, images=store, on_text=pieces.append
        )
    )
    assert same_reply(reply, expected)
    assert "".join(pieces) == reply.text and len(pieces) > 1


def test_the_generate_path_streams(lively, processor, store):
    _, messages = first_turn(store, 63)
    expected = make(lively, processor, kv_reuse=False).complete(messages, images=store)
    backend = make(lively, processor, kv_reuse=False)
    backend._mrope = False
    recorder = Recorder()
    with hooks(lively, before=recorder.count):
        reply = backend.complete_stream(messages, images=store, on_text=recorder)
    assert same_reply(reply, expected)
    assert recorder.text == reply.text and len(recorder.pieces) > 1
    assert recorder.seen_at == sorted(recorder.seen_at) and recorder.seen_at[0] < recorder.forwards


def split_characters(tokenizer, text: str) -> list[int]:
    """``text``'s token ids, checked to contain a prefix whose decode ends inside a multi-byte character."""
    ids = tokenizer.encode(text, add_special_tokens=False)
    partial = [decode_text(tokenizer, ids[:k]) for k in range(1, len(ids))]
    assert any(p.endswith("\ufffd") for p in partial)  # the byte-level tokenizer splits these characters
    return ids


def test_the_detokenizer_never_sends_half_a_character(processor):
    tokenizer = processor.tokenizer
    ids = split_characters(tokenizer, "Total: 日本語 🙂 ok")
    ids = [*ids, tokenizer.convert_tokens_to_ids("<|im_end|>")]  # a special token adds no text
    pieces: list[str] = []
    stream = IncrementalDetokenizer(tokenizer, pieces.append)
    for k in range(1, len(ids) + 1):
        stream.update(ids[:k])
    stream.finish(ids)
    assert "".join(pieces) == decode_text(tokenizer, ids) == "Total: 日本語 🙂 ok"
    assert all(pieces) and not any("\ufffd" in p for p in pieces)
    assert len(pieces) < len(ids) - 1  # pieces that would have ended halfway were held back and merged


def test_the_detokenizer_flushes_a_truncated_character_and_survives_a_restart(processor):
    tokenizer = processor.tokenizer
    ids = split_characters(tokenizer, "ok 🙂")[:-1]  # the turn ran out of tokens inside the emoji
    pieces: list[str] = []
    stream = IncrementalDetokenizer(tokenizer, pieces.append)
    for k in range(1, len(ids) + 1):
        stream.update(ids[:k])
    held = "".join(pieces)
    assert not held.endswith("\ufffd")
    for k in range(1, len(ids) + 1):  # a rerun: the same tokens from the start
        stream.update(ids[:k])
    assert "".join(pieces) == held  # nothing sent twice
    stream.finish(ids)
    assert "".join(pieces) == decode_text(tokenizer, ids) and pieces[-1].endswith("\ufffd")


def test_the_detokenizer_sends_nothing_a_diverging_rerun_contradicts(processor, caplog):
    tokenizer = processor.tokenizer
    first, second = (
        tokenizer.encode(t, add_special_tokens=False) for t in ("the cat sat", "a dog ran far away")
    )
    pieces: list[str] = []
    stream = IncrementalDetokenizer(tokenizer, pieces.append, name="tiny")
    stream.update(first)
    with caplog.at_level(logging.WARNING, logger="awares_agent.backends.hf_detokenize"):
        for k in range(1, len(second) + 1):  # a sampled rerun generated something else
            stream.update(second[:k])
        stream.finish(second)
    assert pieces == ["the cat sat"]
    assert "not a prefix of the reply" in caplog.text


# --- errors --------------------------------------------------------------------------------------------


def test_missing_model_directory(tmp_path: Path):
    with pytest.raises(ConfigError, match="does not exist"):
        TransformersBackend(tmp_path / "nowhere")


def test_uncached_hub_model_offline_says_how_to_get_it():
    with pytest.raises(ConfigError, match="huggingface-cli download awares-test/no-such-model"):
        TransformersBackend("awares-test/no-such-model", local_files_only=True)


def test_a_directory_that_is_not_a_model(tmp_path: Path):
    with pytest.raises(ConfigError, match="cannot load"):
        TransformersBackend(tmp_path)


@pytest.mark.parametrize(
    "options",
    [
        {"max_new_tokens": 0},
        {"max_batch_size": 0},
        {"batch_wait_ms": -1},
        {"temperature": 0},
        {"top_p": 1.5},
        {"min_pixels": 10_000, "max_pixels": 100},
        {"dtype": "float13"},
        {"device": "tpu:x"},
        {"kv_cache_entries": -1},
    ],
)
def test_bad_options(tiny_path: Path, options: dict):
    with pytest.raises(ConfigError):
        TransformersBackend(tiny_path, local_files_only=True, **options)


def test_not_a_model():
    with pytest.raises(ConfigError, match="model must be"):
        TransformersBackend(42)  # type: ignore[arg-type]


def test_generation_failure_is_a_backend_error(backend: TransformersBackend, store: ImageStore):
    def fail(kw):
        raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")

    _, messages = first_turn(store, 12)
    with hooks(backend.model, before=fail), pytest.raises(BackendError, match="out of memory") as info:
        backend.complete(messages, images=store)
    assert "cpu" in str(info.value) and "max_pixels" in str(info.value)


# --- the agent on the random tiny model ----------------------------------------------------------------


@pytest.mark.parametrize("protocol", ["json", "awares-text"])
def test_agent_runs_end_to_end_on_the_random_model(tiny_path: Path, protocol: str):
    agent = AwaResAgent(
        TransformersBackend(tiny_path, local_files_only=True, max_new_tokens=24), protocol=protocol
    )
    result = agent.ask(noise(13, 640, 480), "What is the total?")
    trajectory = result.trajectory
    assert trajectory.calls >= 1
    assert trajectory.answer is not None or trajectory.errors  # an answer, or recorded invalid turns


def test_ask_many_with_batching_and_reuse_matches_sequential(lively, processor):
    """The agent's concurrent queries, batched and continuing from cached turns, get the same model turns."""
    images = [noise(40 + i, 320 + 32 * i, 240) for i in range(4)]
    queries = [(image, q) for q in ("What is the total?", "Which exit is it?") for image in images]
    fast = AwaResAgent(make(lively, processor, max_batch_size=4, batch_wait_ms=500), protocol="awares-text")
    slow = AwaResAgent(make(lively, processor, kv_reuse=False), protocol="awares-text")
    got = fast.ask_many(queries[:4], max_concurrency=4) + fast.ask_many(queries[4:], max_concurrency=4)
    expected = [slow.ask(image, q) for image, q in queries]

    def turns(result) -> list[str]:
        return [m.text for m in result.trajectory.messages if m.role == "assistant"]

    assert [turns(r) for r in got] == [turns(r) for r in expected]
    stats = fast.backend.stats
    assert max(stats["batch_sizes"]) > 1
    assert (
        stats["cache_hits"] >= 4
    )  # the second questions continue from the first ones' system prompt and view


def test_trajectory_view_tokens_are_the_processors(tiny_path: Path):
    backend = TransformersBackend(
        tiny_path, local_files_only=True, max_new_tokens=8, model_name="tiny-qwen2.5-vl"
    )
    agent = AwaResAgent(backend)
    trajectory = agent.ask(noise(14, 1024, 768), "What is the total?").trajectory
    reply = backend.complete(trajectory.messages[:2], images=agent.store)
    assert reply.image_tokens == [trajectory.cost.view_tokens]
    assert trajectory.cost.full_tokens == QWEN2_5_VL.count(1024, 768)


# --- the parts beside the backend ----------------------------------------------------------------------


def test_options_changed_after_construction_apply_to_the_next_turn(lively, processor, store: ImageStore):
    """max_new_tokens and kv_cache_entries are read per turn, as plain attributes a caller may set."""
    backend = make(lively, processor, max_new_tokens=16, kv_cache_entries=8)
    backend.max_new_tokens = 3
    reply = backend.complete(first_turn(store, 50)[1], images=store)
    assert reply.usage.completion_tokens <= 3
    backend.kv_cache_entries = 1
    for seed in range(51, 54):
        backend.complete(first_turn(store, seed)[1], images=store)
    assert backend.kv_cache_entries == 1 and backend.stats["cache_entries"] == 1


def turn(ids: list[int], image_ids: list[str], spans: list[tuple[int, int]]) -> PreparedTurn:
    return PreparedTurn(
        input_ids=torch.tensor(ids),
        mm_token_type_ids=torch.zeros(len(ids), dtype=torch.long),
        position_ids=None,
        images=[],
        image_grid_thw=None,
        pixels=[],
        image_ids=image_ids,
        spans=spans,
        image_tokens=None,
        tools_offered=False,
    )


def test_usable_prefix_stops_before_a_different_picture():
    ids = list(range(40))
    cached = CachedTurn(ids=torch.tensor(ids[:30]), image_ids=["a"], spans=[(18, 24)], kv=[])
    assert usable_prefix(cached, turn(ids, ["a"], [(18, 24)])) == 30
    assert usable_prefix(cached, turn(ids, ["b"], [(18, 24)])) == 18  # same pads, other pixels
    assert usable_prefix(cached, turn([*ids[:25], 99, *ids[26:]], ["a"], [(18, 24)])) == 25
    assert usable_prefix(cached, turn(ids[:30], ["a"], [(18, 24)])) == 29  # one token left to prefill
    cache = PrefixCache(capacity=4)
    assert cache.lookup(turn(ids, ["a"], [(18, 24)])) == (None, 0)  # empty
    assert len(cache) == 0


def test_micro_batcher_gathers_concurrent_calls_and_isolates_a_failure():
    batches: list[list[str]] = []

    def run(requests: list[str]) -> list[str]:
        batches.append(list(requests))
        if "bad" in requests:
            raise ValueError("bad request")
        return [r.upper() for r in requests]

    batcher: MicroBatcher[str, str] = MicroBatcher(run, max_size=4, wait_s=5.0)
    requests = ["a", "b", "bad", "c"]
    barrier = threading.Barrier(len(requests))
    results: dict[str, object] = {}

    def submit(r: str) -> None:
        barrier.wait()
        try:
            results[r] = batcher.submit(r)
        except ValueError as exc:
            results[r] = exc

    threads = [threading.Thread(target=submit, args=(r,)) for r in requests]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert sorted(batches[0]) == sorted(requests)  # one batch of all four, gathered before the wait ran out
    assert sorted(len(b) for b in batches[1:]) == [1, 1, 1, 1]  # it failed: each reran alone
    assert {r: results[r] for r in ("a", "b", "c")} == {"a": "A", "b": "B", "c": "C"}
    assert isinstance(results["bad"], ValueError)
