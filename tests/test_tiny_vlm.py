"""The tiny local VLM, the image-only processor loader, and the HF chat-format helpers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from awares_agent.backends.hf_chat import extract_tool_calls, to_hf_messages
from awares_agent.backends.hf_processors import load_processor, pixel_bounds
from awares_agent.errors import ConfigError
from awares_agent.image_store import ImageStore
from awares_agent.messages import ChatMessage, TextPart, ToolCall
from awares_agent.testing import MAX_PIXELS, MIN_PIXELS

TOOLS = [{"type": "function", "function": {"name": "get_crops", "description": "d", "parameters": {}}}]


def test_checkpoint_looks_like_a_real_one(tiny_vlm_dir: Path) -> None:
    files = {p.name for p in tiny_vlm_dir.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "processor_config.json"} <= files
    config = json.loads((tiny_vlm_dir / "config.json").read_text())
    assert config["model_type"] == "qwen2_5_vl"
    assert config["architectures"] == ["Qwen2_5_VLForConditionalGeneration"]
    assert (
        json.loads((tiny_vlm_dir / "processor_config.json").read_text())["processor_class"]
        == "Qwen2_5_VLProcessor"
    )


def test_reloads_offline_through_the_auto_classes(
    tiny_vlm_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from transformers import AutoModelForImageTextToText

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = AutoModelForImageTextToText.from_pretrained(tiny_vlm_dir, local_files_only=True)
    assert type(model).__name__ == "Qwen2_5_VLForConditionalGeneration"
    assert sum(p.numel() for p in model.parameters()) < 1_000_000
    processor = load_processor(str(tiny_vlm_dir), local_files_only=True)
    assert getattr(processor, "video_processor", None) is None
    assert pixel_bounds(processor.image_processor) == (MIN_PIXELS, MAX_PIXELS)
    tok = processor.tokenizer
    for tag in ("<tool_call>", "</tool_call>", "<|image_pad|>", "<|im_end|>"):
        assert len(tok.encode(tag, add_special_tokens=False)) == 1, tag
    assert (
        tok.decode(tok.encode("<tool_call>x</tool_call>"), skip_special_tokens=True)
        == "<tool_call>x</tool_call>"
    )


def test_pixel_bounds_are_configurable(tiny_vlm_dir: Path) -> None:
    processor = load_processor(
        str(tiny_vlm_dir), local_files_only=True, min_pixels=4 * 28 * 28, max_pixels=64 * 28 * 28
    )
    assert pixel_bounds(processor.image_processor) == (4 * 28 * 28, 64 * 28 * 28)
    grid = processor(
        text=["<|vision_start|><|image_pad|><|vision_end|>"], images=[Image.new("RGB", (900, 900))]
    )
    t, h, w = grid["image_grid_thw"][0].tolist()
    assert t * h * w // 4 <= 64


def test_missing_checkpoint_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        load_processor(str(tmp_path / "nothing-here"), local_files_only=True)


def test_chat_template_renders_the_hermes_protocol(tiny_vlm_dir: Path) -> None:
    processor = load_processor(str(tiny_vlm_dir), local_files_only=True)
    messages = [
        {"role": "system", "content": "Look closely."},
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Total?"}]},
        {
            "role": "assistant",
            "content": [],
            "tool_calls": [
                {"type": "function", "function": {"name": "get_crops", "arguments": {"crops": ["3"]}}}
            ],
        },
        {"role": "tool", "content": "Returned crops: 3."},
        {"role": "user", "content": [{"type": "text", "text": "Crop 3:"}, {"type": "image"}]},
    ]
    text = processor.apply_chat_template(messages, tools=TOOLS, add_generation_prompt=True, tokenize=False)
    assert text.startswith("<|im_start|>system\nLook closely.\n\n# Tools\n")
    assert '\n<tools>\n{"type": "function"' in text
    call = '<tool_call>\n{"name": "get_crops", "arguments": {"crops": ["3"]}}\n</tool_call><|im_end|>'
    assert f"<|im_start|>assistant\n{call}\n" in text
    assert "<|im_start|>user\n<tool_response>\nReturned crops: 3.\n</tool_response><|im_end|>\n" in text
    assert text.count("<|image_pad|>") == 2
    assert text.endswith("<|im_start|>assistant\n")
    plain = processor.apply_chat_template(messages[:2], add_generation_prompt=True, tokenize=False)
    assert "# Tools" not in plain and plain.startswith("<|im_start|>system\nLook closely.<|im_end|>\n")


def test_assistant_mask_covers_only_assistant_output(tiny_vlm_dir: Path) -> None:
    processor = load_processor(str(tiny_vlm_dir), local_files_only=True)
    messages = [
        {
            "role": "user",
            "content": [
                {"type": "image", "image": Image.new("RGB", (200, 150))},
                {"type": "text", "text": "Q"},
            ],
        },
        {"role": "assistant", "content": [{"type": "text", "text": "first"}]},
        {"role": "user", "content": [{"type": "text", "text": "again"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "second"}]},
    ]
    out = processor.apply_chat_template(
        messages, tokenize=True, return_dict=True, return_assistant_tokens_mask=True, return_tensors="pt"
    )
    ids, mask = out["input_ids"][0], out["assistant_masks"][0].bool()
    assert processor.tokenizer.decode(ids[mask]) == "first<|im_end|>second<|im_end|>"


def test_to_hf_messages_resolves_images_in_order() -> None:
    store = ImageStore()
    a = store.add(Image.new("RGB", (120, 100), "red"))
    b = store.add(Image.new("RGB", (130, 110), "blue"))
    messages = [
        ChatMessage.text_message("system", "sys"),
        ChatMessage(role="user", content=[store.full(a.id), TextPart(text="q")]),
        ChatMessage(
            role="assistant", tool_calls=[ToolCall(id="c", name="get_crops", arguments='{"crops": ["0"]}')]
        ),
        ChatMessage(role="tool", tool_call_id="c", content=[TextPart(text="ok")]),
        ChatMessage(role="user", content=[store.full(b.id)]),
        ChatMessage(role="assistant", tool_calls=[ToolCall(id="d", name="get_crops", arguments="{broken")]),
    ]
    hf, images = to_hf_messages(messages, store)
    assert [m["role"] for m in hf] == ["system", "user", "assistant", "tool", "user", "assistant"]
    assert hf[0]["content"] == "sys" and hf[3]["content"] == "ok" and hf[3]["tool_call_id"] == "c"
    assert hf[1]["content"] == [{"type": "image"}, {"type": "text", "text": "q"}]
    assert hf[2]["tool_calls"][0]["function"]["arguments"] == {"crops": ["0"]}
    assert hf[5]["tool_calls"][0]["function"]["arguments"] == "{broken"  # left raw, not dropped
    assert [im.size for im in images] == [(120, 100), (130, 110)]


@pytest.mark.parametrize(
    ("text", "rest", "calls"),
    [
        (
            '<tool_call>\n{"name": "get_crops", "arguments": {"crops": ["3"]}}\n</tool_call>',
            "",
            [("get_crops", '{"crops": ["3"]}')],
        ),
        (
            'Let me look.\n<tool_call>{"name": "get_crops", "arguments": {"crops": ["0"]}}</tool_call>',
            "Let me look.",
            [("get_crops", '{"crops": ["0"]}')],
        ),
        (
            '<tool_call>{"name": "a", "arguments": {}}</tool_call>'
            '<tool_call>{"name": "b", "parameters": {"x": 1}}</tool_call>',
            "",
            [("a", "{}"), ("b", '{"x": 1}')],
        ),
        (
            '<tool_call>{"name": "get_crops", "arguments": "{\\"crops\\": [1]}"}</tool_call>',
            "",
            [("get_crops", '{"crops": [1]}')],
        ),
    ],
)
def test_extract_tool_calls(text: str, rest: str, calls: list[tuple[str, str]]) -> None:
    remaining, found = extract_tool_calls(text)
    assert remaining == rest
    assert [(c.name, c.arguments) for c in found] == calls
    assert [c.id for c in found] == [f"call_{i}" for i in range(len(calls))]


@pytest.mark.parametrize(
    "text",
    [
        "just an answer",
        "<tool_call>{not json</tool_call>",
        '<tool_call>{"name": "get_crops"',  # unclosed
        '<tool_call>{"arguments": {}}</tool_call>',  # no name
        '<tool_call>["get_crops"]</tool_call>',
        '<tool_call>{"name": "a"}</tool_call><tool_call>oops</tool_call>',  # one bad block: leave it all
    ],
)
def test_malformed_tool_calls_are_left_for_the_protocol(text: str) -> None:
    assert extract_tool_calls(text) == (text, [])


def test_a_tiny_qwen3_vl_runs_as_an_agent_with_its_own_token_rule(tmp_path: Path) -> None:
    from awares_agent import AwaResAgent
    from awares_agent.backends.transformers_backend import TransformersBackend
    from awares_agent.testing import build_tiny_qwen3_vl

    folder = build_tiny_qwen3_vl(tmp_path / "q3")
    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] == "qwen3_vl"
    assert config["architectures"] == ["Qwen3VLForConditionalGeneration"]
    assert json.loads((folder / "processor_config.json").read_text())["processor_class"] == "Qwen3VLProcessor"
    backend = TransformersBackend(str(folder), local_files_only=True, max_new_tokens=4)
    result = AwaResAgent(backend, protocol="awares-text").ask(Image.new("RGB", (640, 448), "white"), "What?")
    cost = result.trajectory.cost
    # Qwen3-VL's rule: one visual token per 32x32 px (16 px patches, merged 2x2): the 320x224 view is 10x7.
    assert cost.rule == "qwen3-vl" and cost.view_tokens == 70 and cost.full_tokens == 20 * 14
