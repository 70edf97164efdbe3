"""The contract every chat-VLM backend fulfils.

A backend is a thin adapter: it turns backend-neutral :class:`~awares_agent.messages.ChatMessage` lists (with
image references resolved through an :class:`~awares_agent.image_store.ImageStore`) and an optional list of
tools into one model turn, and returns a :class:`~awares_agent.messages.ChatReply`. Nothing outside a
backend branches on which backend is in use.

A backend that can send its text as it is generated also fulfils :class:`StreamingChatBackend`: the graph
then passes each piece to an ``on_text`` callback, and the agent's
:meth:`~awares_agent.agent.AwaResAgent.stream` turns the pieces into ``token`` events.

A backend whose turns are synchronous at heart (a local model, a reader) subclasses the protocol and writes
only :meth:`ChatBackend.complete` (and :meth:`StreamingChatBackend.complete_stream`): it inherits the async
methods, which run the synchronous ones in a worker thread.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
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
        """Run one turn asynchronously.

        The default, inherited by a backend that subclasses :class:`ChatBackend`: :meth:`complete` in a
        worker thread (so concurrent calls run in parallel threads).
        """
        return await asyncio.to_thread(self.complete, messages, images=images, tools=tools)


TextSink = Callable[[str], None]
"""Receives each new piece of a reply's text as it is generated (a streaming backend's ``on_text``)."""


@runtime_checkable
class StreamingChatBackend(ChatBackend, Protocol):
    """A :class:`ChatBackend` that can also hand over its text as it is generated.

    The streamed call returns the same :class:`ChatReply` as :meth:`complete` would (text, tool calls,
    usage); ``on_text`` is called along the way with each new piece of the reply's raw text, in order, so
    the pieces joined are the text the model generated (a tool call written as text included). A backend
    whose server sends tool calls as structured deltas passes only their text, if any. ``on_text`` runs
    on the thread (or event loop) that generates: it must be quick and must not raise.
    """

    def complete_stream(
        self,
        messages: Sequence[ChatMessage],
        *,
        images: ImageStore,
        tools: Sequence[ToolSpec] | None = None,
        on_text: TextSink,
    ) -> ChatReply:
        """Run one turn synchronously, streaming its text to ``on_text``."""
        ...

    async def acomplete_stream(
        self,
        messages: Sequence[ChatMessage],
        *,
        images: ImageStore,
        tools: Sequence[ToolSpec] | None = None,
        on_text: TextSink,
    ) -> ChatReply:
        """Run one turn asynchronously, streaming its text to ``on_text``.

        The default, inherited by a backend that subclasses :class:`StreamingChatBackend`:
        :meth:`complete_stream` in a worker thread (``on_text`` is then called on that thread).
        """
        return await asyncio.to_thread(
            self.complete_stream, messages, images=images, tools=tools, on_text=on_text
        )
