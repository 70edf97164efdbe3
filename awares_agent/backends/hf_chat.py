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


# Qwen's hermes tools block, as its tool-aware chat templates (and awares' tiny model's) render it.
TOOLS_HEADER = (
    "\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
    "You are provided with function signatures within <tools></tools> XML tags:\n<tools>"
)
TOOLS_FOOTER = (
    "\n</tools>\n\nFor each function call, return a json object with function name and arguments within "
    '<tool_call></tool_call> XML tags:\n<tool_call>\n{"name": <function-name>, "arguments": '
    "<args-json-object>}\n</tool_call>"
)
DEFAULT_SYSTEM = "You are a helpful assistant."


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


def hermes_history(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Assistant tool calls as ``<tool_call>`` text and tool results as a user turn of ``<tool_response>``s.

    For chat templates that drop ``tool_calls`` and have no tool role; the text is what Qwen's tool-aware
    templates render.
    """
    out: list[dict[str, Any]] = []
    previous_was_tool = False
    for msg in messages:
        if msg["role"] == "assistant" and msg.get("tool_calls"):
            parts = list(msg.get("content") or [])
            calls = []
            for call in msg["tool_calls"]:
                fn = call.get("function", call)
                args = fn.get("arguments")
                args = args if isinstance(args, str) else json.dumps(args, ensure_ascii=False)
                calls.append(f'<tool_call>\n{{"name": "{fn["name"]}", "arguments": {args}}}\n</tool_call>')
            text = "\n".join(calls)
            parts.append({"type": "text", "text": ("\n" if parts else "") + text})
            out.append({"role": "assistant", "content": parts})
        elif msg["role"] == "tool":
            block = f"<tool_response>\n{msg.get('content') or ''}\n</tool_response>"
            if out and previous_was_tool:  # consecutive results share one user turn
                out[-1]["content"][0]["text"] += "\n" + block
            else:
                out.append({"role": "user", "content": [{"type": "text", "text": block}]})
        else:
            out.append(msg)
        previous_was_tool = msg["role"] == "tool"
    return out


def with_tools_block(messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Append Qwen's hermes tools block to the system message (adding the default one if there is none)."""
    block = TOOLS_HEADER + "".join("\n" + json.dumps(t, ensure_ascii=False) for t in tools) + TOOLS_FOOTER
    if messages and messages[0]["role"] == "system":
        content = messages[0]["content"]
        if not isinstance(content, str):
            content = "".join(p.get("text", "") for p in content if p.get("type") == "text")
        return [{**messages[0], "content": content + block}, *messages[1:]]
    return [{"role": "system", "content": DEFAULT_SYSTEM + block}, *messages]
