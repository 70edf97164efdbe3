"""The contract every chat-VLM backend fulfils.

A backend is a thin adapter: it turns backend-neutral :class:`~awares_agent.messages.ChatMessage` lists (with
image references resolved through an :class:`~awares_agent.image_store.ImageStore`) and an optional list of
tools into one model turn, and returns a :class:`~awares_agent.messages.ChatReply`. Nothing outside a
backend branches on which backend is in use.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from awares_agent.messages import ChatMessage, ChatReply, ToolSpec

if TYPE_CHECKING:
    from awares_agent.image_store import ImageStore


@runtime_checkable
class ChatBackend(Protocol):
    """One chat-VLM turn: messages with image references and optional tools in, a :class:`ChatReply` out.

    Implementations raise subclasses of :class:`~awares_agent.errors.BackendError` on failure. A backend that
    knows its model's exact visual-token geometry may also offer a ``token_rule`` attribute
    (a :class:`~awares_agent.tokens.TokenRule`); the agent then uses it unless a rule is configured.
    """

    @property
    def model_name(self) -> str:
        """The model the backend talks to (used for token accounting and trajectories)."""
        ...

    def complete(
        self,
        messages: Sequence[ChatMessage],
        *,
        images: ImageStore,
        tools: Sequence[ToolSpec] | None = None,
    ) -> ChatReply:
        """Run one turn synchronously."""
        ...

    async def acomplete(
        self,
        messages: Sequence[ChatMessage],
        *,
        images: ImageStore,
        tools: Sequence[ToolSpec] | None = None,
    ) -> ChatReply:
        """Run one turn asynchronously."""
        ...
