"""What a chat API's message translation refuses, said the same way by every backend that sends one.

Images travel only in user messages (many servers and chat models reject them in ``system`` and ``tool``
messages: crops go in a user message after the tool result), and a ``tool`` message must name the assistant
tool call it answers.
"""

from __future__ import annotations

from awares_agent.errors import MessageTranslationError
from awares_agent.messages import ChatMessage

__all__ = ["check_message"]


def check_message(index: int, msg: ChatMessage, *, refusers: str) -> None:
    """Raise for a message that a chat API would refuse.

    Args:
        index: the message's place in the conversation (for the error message).
        msg: the message.
        refusers: who rejects images outside user messages, e.g. ``"many chat models"``.

    Raises:
        MessageTranslationError: images in a ``system`` or ``tool`` message, or a ``tool`` message without
            ``tool_call_id``.
    """
    if msg.role in ("system", "tool") and msg.images:
        raise MessageTranslationError(
            f"message {index} ({msg.role}) holds {len(msg.images)} image(s), but images may only be sent in "
            f"user messages ({refusers} reject images elsewhere); put the crops in a user message after the "
            f"tool result"
        )
    if msg.role == "tool" and not msg.tool_call_id:
        raise MessageTranslationError(
            f"message {index} (tool) has no tool_call_id; it must name the assistant tool call it answers"
        )
