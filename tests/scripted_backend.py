"""An in-process chat backend that answers from a script: the stand-in for a remote model's replies.

It drives the project's own loop (graph, protocols, agent, runners) with no HTTP in between; the loopback
server (``chat_server.py``) is for testing the OpenAI adapter itself. A script entry is a
:class:`~awares_agent.messages.ChatReply`, a string (a reply with that text), an exception (raised by
the call, as a broken backend would), or a callable of the request returning one of those::

    backend = ScriptedBackend("GET_CROPS: ['0']", ChatReply(text="42"))
    AwaResAgent(backend, protocol="awares-text").ask(image, "What is the total?")
    assert len(backend.requests) == 2
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

from awares_agent.image_store import ImageStore
from awares_agent.messages import ChatMessage, ChatReply, ToolSpec

__all__ = ["Request", "ScriptedBackend"]


@dataclass(frozen=True)
class Request:
    """One call the backend received: the messages and the tools offered."""

    messages: list[ChatMessage]
    tools: list[ToolSpec] | None


Entry: TypeAlias = "ChatReply | str | BaseException | object | Callable[[Request], Any]"


class ScriptedBackend:
    """A :class:`~awares_agent.backends.base.ChatBackend` whose replies come from a script, in order.

    Args:
        *script: the replies, consumed one per call (see the module docstring for what an entry may be).
        model: the model name it reports.
        default: what to answer when the script is empty (``None``: raise ``AssertionError``, so an
            under-scripted test fails loudly).
    """

    def __init__(self, *script: Entry, model: str = "scripted-model", default: Entry | None = None) -> None:
        self._script: deque[Entry] = deque(script)
        self._lock = threading.Lock()
        self._model = model
        self._default = default
        self.requests: list[Request] = []

    @property
    def model_name(self) -> str:
        """The model name reported in trajectories."""
        return self._model

    def enqueue(self, *entries: Entry) -> None:
        """Append replies to the script."""
        with self._lock:
            self._script.extend(entries)

    @property
    def pending(self) -> int:
        """Replies not consumed yet."""
        with self._lock:
            return len(self._script)

    def complete(
        self, messages: Sequence[ChatMessage], *, images: ImageStore, tools: Sequence[ToolSpec] | None = None
    ) -> ChatReply:
        """Answer with the next scripted entry."""
        request = Request(list(messages), list(tools) if tools else None)
        with self._lock:
            self.requests.append(request)
            if self._script:
                entry = self._script.popleft()
            elif self._default is not None:
                entry = self._default
            else:
                raise AssertionError(
                    f"ScriptedBackend: no scripted reply left for call #{len(self.requests)}"
                )
        while callable(entry) and not isinstance(entry, type):
            entry = entry(request)
        if isinstance(entry, BaseException):
            raise entry
        if isinstance(entry, str):
            return ChatReply(text=entry)
        return entry  # type: ignore[return-value]  # a test may script a non-ChatReply on purpose

    async def acomplete(
        self, messages: Sequence[ChatMessage], *, images: ImageStore, tools: Sequence[ToolSpec] | None = None
    ) -> ChatReply:
        """Async :meth:`complete`."""
        return self.complete(messages, images=images, tools=tools)
