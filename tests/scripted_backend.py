"""An in-process chat backend that answers from a script: the stand-in for a remote model's replies.

It drives the project's own loop (graph, protocols, agent, runners) with no HTTP in between; the loopback
server (``chat_server.py``) is for testing the OpenAI adapter itself. A script entry is a
:class:`~awares_agent.messages.ChatReply`, a string (a reply with that text), an exception (raised by
the call, as a broken backend would), or a callable of the request returning one of those. Every call is
recorded as a :class:`Request` (messages, tools, the image store, and whether it came through
``acomplete``), so a test can assert what the graph sent::

    backend = ScriptedBackend("GET_CROPS: ['0']", ChatReply(text="42"))
    AwaResAgent(backend, protocol="awares-text").ask(image, "What is the total?")
    assert len(backend.requests) == 2
    assert backend.requests[1].messages[-1].role == "user"
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

from PIL import Image

from awares_agent.image_store import ImageStore
from awares_agent.messages import ChatMessage, ChatReply, ImagePart, ToolSpec

__all__ = ["Request", "ScriptedBackend", "StreamingScriptedBackend"]


@dataclass(frozen=True)
class Request:
    """One call the backend received.

    Attributes:
        messages: the conversation sent, in order.
        tools: the tools offered (``None`` when none were).
        images: the image store the call was given (it resolves the messages' image parts).
        asynchronous: the call came through ``acomplete`` rather than ``complete``.
    """

    messages: list[ChatMessage]
    tools: list[ToolSpec] | None
    images: ImageStore | None = None
    asynchronous: bool = False

    @property
    def roles(self) -> list[str]:
        """The role of each message, in order."""
        return [m.role for m in self.messages]

    @property
    def image_parts(self) -> list[ImagePart]:
        """Every image part of the conversation, in order."""
        return [part for message in self.messages for part in message.images]

    def pixels(self) -> list[Image.Image]:
        """The pixels behind every image part, in order, as the backend would have read them from the store.

        Raises:
            AssertionError: the request was recorded without its image store.
        """
        if self.images is None:
            raise AssertionError("this Request was recorded without its image store")
        return [self.images.get(part.image_id) for part in self.image_parts]


Entry: TypeAlias = "ChatReply | str | BaseException | object | Callable[[Request], Any]"


class ScriptedBackend:
    """A :class:`~awares_agent.backends.base.ChatBackend` whose replies come from a script, in order.

    Args:
        *script: the replies, consumed one per call (see the module docstring for what an entry may be).
        model: the model name it reports (it selects the agent's visual-token rule, as a real model's does).
        default: what to answer when the script is empty (``None``: raise ``AssertionError``, so an
            under-scripted test fails loudly).

    Attributes:
        requests: every call received, in order (a :class:`Request` each).
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
        """Append replies to the script.

        Args:
            *entries: replies, as for the constructor's ``script``.
        """
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
        """Record the call and answer with the next scripted entry.

        Args:
            messages: the conversation.
            images: the image store that resolves the messages' image parts (recorded with the call).
            tools: the tools offered.
        """
        return self._answer(messages, images, tools, asynchronous=False)

    async def acomplete(
        self, messages: Sequence[ChatMessage], *, images: ImageStore, tools: Sequence[ToolSpec] | None = None
    ) -> ChatReply:
        """Async :meth:`complete` (recorded with ``asynchronous=True``).

        Args:
            messages: the conversation.
            images: the image store that resolves the messages' image parts.
            tools: the tools offered.
        """
        return self._answer(messages, images, tools, asynchronous=True)

    def _answer(
        self,
        messages: Sequence[ChatMessage],
        images: ImageStore,
        tools: Sequence[ToolSpec] | None,
        *,
        asynchronous: bool,
    ) -> ChatReply:
        # An empty tools list is recorded as given, so a test can tell it from "no tools".
        request = Request(list(messages), list(tools) if tools is not None else None, images, asynchronous)
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


class StreamingScriptedBackend(ScriptedBackend):
    """A :class:`ScriptedBackend` that also streams
    (a :class:`~awares_agent.backends.base.StreamingChatBackend`): each reply's text is handed to
    ``on_text`` word by word before the call returns.

    Attributes:
        streamed: for each call, whether it came through ``complete_stream`` / ``acomplete_stream``.
    """

    def __init__(self, *script: Entry, model: str = "scripted-model", default: Entry | None = None) -> None:
        super().__init__(*script, model=model, default=default)
        self.streamed: list[bool] = []

    def complete(
        self, messages: Sequence[ChatMessage], *, images: ImageStore, tools: Sequence[ToolSpec] | None = None
    ) -> ChatReply:
        """As :meth:`ScriptedBackend.complete` (recorded as not streamed)."""
        self.streamed.append(False)
        return super().complete(messages, images=images, tools=tools)

    def complete_stream(
        self,
        messages: Sequence[ChatMessage],
        *,
        images: ImageStore,
        tools: Sequence[ToolSpec] | None = None,
        on_text: Callable[[str], None],
    ) -> ChatReply:
        """Answer with the next scripted entry, its text sent to ``on_text`` a word at a time first.

        Args:
            messages: the conversation.
            images: the image store.
            tools: the tools offered.
            on_text: the sink of the text pieces.
        """
        self.streamed.append(True)
        reply = self._answer(messages, images, tools, asynchronous=False)
        _send_words(reply, on_text)
        return reply

    async def acomplete_stream(
        self,
        messages: Sequence[ChatMessage],
        *,
        images: ImageStore,
        tools: Sequence[ToolSpec] | None = None,
        on_text: Callable[[str], None],
    ) -> ChatReply:
        """Async :meth:`complete_stream`."""
        self.streamed.append(True)
        reply = self._answer(messages, images, tools, asynchronous=True)
        _send_words(reply, on_text)
        return reply


def _send_words(reply: object, on_text: Callable[[str], None]) -> None:
    text = reply.text if isinstance(reply, ChatReply) else ""
    words = text.split(" ")
    for i, word in enumerate(words):
        piece = word if i == 0 else " " + word
        if piece:
            on_text(piece)
