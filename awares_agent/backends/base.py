"""The contract every chat-VLM backend fulfils.

A backend is a thin adapter: it turns backend-neutral :class:`~awares_agent.messages.ChatMessage` lists (with
image references resolved through an :class:`~awares_agent.image_store.ImageStore`) and an optional list of
tools into one model turn, and returns a :class:`ChatReply`. Nothing outside a backend branches on which
backend is in use.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, Field

from awares_agent.messages import ChatMessage, ToolCall, ToolSpec
from awares_agent.redact import redact
from awares_agent.untrusted import valid_text

if TYPE_CHECKING:
    from awares_agent.image_store import ImageStore


class Usage(BaseModel):
    """Token usage of one backend call, as reported by the backend (0 where it reports nothing)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            prompt_tokens=self.prompt_tokens + other.prompt_tokens,
            completion_tokens=self.completion_tokens + other.completion_tokens,
        )


class ChatReply(BaseModel):
    """One model turn.

    Attributes:
        text: the text the model produced (may be empty when it only called a tool).
        tool_calls: structured function calls, for backends with native function calling.
        usage: token usage of the call.
        finish_reason: the backend's finish reason, when it gives one.
        model: the model name the backend reports.
        latency_s: wall-clock seconds the call took, retries included.
        image_tokens: visual tokens of each image in the request, in order, as the model's own processor
            counted them (local backends; ``None`` where the backend cannot know).
    """

    text: str = ""
    tool_calls: list[ToolCall] = Field(default_factory=list)
    usage: Usage = Field(default_factory=Usage)
    finish_reason: str | None = None
    model: str | None = None
    latency_s: float = 0.0
    image_tokens: list[int] | None = None

    def cleaned(self) -> tuple[ChatReply, list[tuple[Repair, str]]]:
        """This reply made safe to store and send back: valid UTF-8 everywhere, credentials redacted.

        The graph applies it to every model turn, whatever the backend, before anything reads the turn.

        Returns:
            The cleaned reply (``self`` when nothing changed) and what was repaired, as ``(kind, message)``
            pairs for the trajectory's error records.
        """
        replaced = 0
        redacted = False

        def clean(text: str) -> str:
            nonlocal replaced, redacted
            text, count = valid_text(text)
            replaced += count
            hidden = redact(text)
            redacted = redacted or hidden != text
            return hidden

        update: dict[str, Any] = {}
        text = clean(self.text)
        if text != self.text:
            update["text"] = text
        calls = [
            ToolCall(id=clean(c.id), name=clean(c.name), arguments=clean(c.arguments))
            for c in self.tool_calls
        ]
        if calls != self.tool_calls:
            update["tool_calls"] = calls
        for key in ("finish_reason", "model"):
            value = getattr(self, key)
            if isinstance(value, str) and clean(value) != value:
                update[key] = clean(value)
        repairs: list[tuple[Repair, str]] = []
        if replaced:
            repairs.append(
                (
                    "invalid_text",
                    f"The reply held {replaced} character(s) that are not valid Unicode (lone surrogates); "
                    "each was replaced with U+FFFD.",
                )
            )
        if redacted:
            repairs.append(("redacted", "The reply held text shaped like a credential; it was redacted."))
        return (self.model_copy(update=update) if update else self), repairs


#: What :meth:`ChatReply.cleaned` may repair (each is also an error kind in the trajectory).
Repair = Literal["invalid_text", "redacted"]


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
