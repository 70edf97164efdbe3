"""Backend-neutral messages as OpenAI chat-completions ``messages``.

Images travel as base64 ``data:`` URIs inside user messages (many OpenAI-compatible servers reject them
anywhere else); an assistant turn's tool calls keep their raw ``arguments``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

from awares_agent.backends.message_checks import check_message
from awares_agent.messages import ChatMessage, ImagePart, TextPart

if TYPE_CHECKING:
    from awares_agent.image_store import ImageStore

__all__ = ["to_openai_messages"]


def to_openai_messages(
    messages: Sequence[ChatMessage],
    images: ImageStore,
    image_format: Literal["png", "jpeg"] = "png",
    image_detail: Literal["auto", "low", "high"] | None = None,
) -> list[dict[str, Any]]:
    """Translate backend-neutral messages into OpenAI chat-completions ``messages``.

    Args:
        messages: the conversation, in order.
        images: the store that resolves each :class:`ImagePart` to a ``data:`` URI.
        image_format: how images are encoded in the data URIs.
        image_detail: OpenAI's ``detail`` for every image (``None``: not sent, the server decides).

    Returns:
        A list of JSON-ready message dicts: ``system`` and ``tool`` contents are strings; a text-only
        ``user``/``assistant`` message has a string content, one with images a list of ``text`` and
        ``image_url`` parts in their original order; an assistant turn's ``tool_calls`` are passed through
        with their raw ``arguments`` (its ``content`` is ``None`` when it has no text).

    Raises:
        MessageTranslationError: images in a ``system`` or ``tool`` message (crops travel in a user message:
            many servers reject images in tool messages), or a ``tool`` message without ``tool_call_id``.
    """
    out: list[dict[str, Any]] = []
    for i, msg in enumerate(messages):
        check_message(i, msg, refusers="many OpenAI-compatible servers")
        if msg.role == "system":
            out.append({"role": "system", "content": msg.text})
        elif msg.role == "tool":
            out.append({"role": "tool", "tool_call_id": msg.tool_call_id, "content": msg.text})
        elif msg.role == "assistant" and msg.tool_calls:
            out.append(
                {
                    "role": "assistant",
                    "content": _content(msg, images, image_format, image_detail) if msg.content else None,
                    "tool_calls": [
                        {
                            "id": c.id,
                            "type": "function",
                            "function": {"name": c.name, "arguments": c.arguments},
                        }
                        for c in msg.tool_calls
                    ],
                }
            )
        else:
            out.append({"role": msg.role, "content": _content(msg, images, image_format, image_detail)})
    return out


def _content(
    msg: ChatMessage,
    images: ImageStore,
    image_format: Literal["png", "jpeg"],
    image_detail: Literal["auto", "low", "high"] | None,
) -> str | list[dict[str, Any]]:
    if not msg.images:
        return msg.text
    parts: list[dict[str, Any]] = []
    for part in msg.content:
        if isinstance(part, TextPart):
            parts.append({"type": "text", "text": part.text})
        elif isinstance(part, ImagePart):
            image_url = {"url": images.data_uri(part.image_id, image_format)}
            if image_detail is not None:
                image_url["detail"] = image_detail
            parts.append({"type": "image_url", "image_url": image_url})
    return parts
