"""Conversations in the Hugging Face chat-template format, and Qwen/hermes tool calls read from model text.

Shared by the transformers backend (inference) and the training package (SFT rows), so a model is trained on
exactly the conversations it is later prompted with.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from awares_agent.messages import ChatMessage, ImagePart, TextPart, ToolCall

if TYPE_CHECKING:
    from PIL import Image

    from awares_agent.image_store import ImageStore


def to_hf_messages(
    messages: Sequence[ChatMessage], images: ImageStore
) -> tuple[list[dict[str, Any]], list[Image.Image]]:
    """Translate messages into chat-template dicts, and collect their images in order.

    Content is a list of ``{"type": "text"}`` / ``{"type": "image"}`` parts for user and assistant turns and
    a plain string for system and tool turns (what Qwen templates expect); assistant tool calls become
    ``{"type": "function", "function": {"name", "arguments"}}`` with the arguments parsed from JSON when they
    parse (templates then print them with ``tojson``) and left as the raw string otherwise.

    Args:
        messages: the conversation.
        images: the store that resolves image references.

    Returns:
        ``(hf_messages, pil_images)``; the i-th image part of the conversation is ``pil_images[i]``.
    """
    out: list[dict[str, Any]] = []
    pixels: list[Image.Image] = []
    for msg in messages:
        entry: dict[str, Any] = {"role": msg.role}
        if msg.role in ("system", "tool"):
            entry["content"] = msg.text
        else:
            parts: list[dict[str, Any]] = []
            for part in msg.content:
                if isinstance(part, TextPart):
                    parts.append({"type": "text", "text": part.text})
                elif isinstance(part, ImagePart):
                    parts.append({"type": "image"})
                    pixels.append(images.get(part.image_id))
            entry["content"] = parts
        if msg.tool_calls:
            entry["tool_calls"] = [
                {"type": "function", "function": {"name": c.name, "arguments": _arguments(c.arguments)}}
                for c in msg.tool_calls
            ]
        if msg.tool_call_id is not None:
            entry["tool_call_id"] = msg.tool_call_id
        out.append(entry)
    return out, pixels


def _arguments(raw: str) -> Any:
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        return raw


_BLOCK = re.compile(r"<tool_call>(.*?)</tool_call>", re.DOTALL)


def extract_tool_calls(text: str) -> tuple[str, list[ToolCall]]:
    """Split hermes ``<tool_call>{"name": ..., "arguments": ...}</tool_call>`` blocks out of model text.

    Only when every block is a well-formed call are they returned as structured calls (ids ``call_0``...)
    with the remaining text; otherwise the text is returned untouched and no calls, so the protocol can show
    the model what was malformed.

    Args:
        text: the decoded model output.

    Returns:
        ``(remaining_text, calls)``.
    """
    blocks = _BLOCK.findall(text)
    if not blocks or text.count("<tool_call>") != len(blocks):
        return text, []
    calls = []
    for i, body in enumerate(blocks):
        try:
            payload = json.loads(body)
        except (ValueError, RecursionError):
            return text, []
        if not isinstance(payload, dict) or not isinstance(payload.get("name"), str):
            return text, []
        arguments = payload.get("arguments", payload.get("parameters", {}))
        raw = arguments if isinstance(arguments, str) else json.dumps(arguments)
        calls.append(ToolCall(id=f"call_{i}", name=payload["name"], arguments=raw))
    return _BLOCK.sub("", text).strip(), calls
