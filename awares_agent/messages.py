"""Backend-neutral chat messages that reference images by id instead of holding pixels.

These are the messages the graph keeps in its state, the trajectory records, and every backend translates into
its own wire format; :class:`ChatReply` is one model turn coming back, whatever the backend. Pixels live in an
:class:`~awares_agent.image_store.ImageStore`; a message holds only the image's content id and size.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from awares_agent.redact import redact
from awares_agent.untrusted import valid_text


class TextPart(BaseModel):
    """A piece of text inside a message."""

    model_config = ConfigDict(frozen=True)

    type: Literal["text"] = "text"
    text: str


class ImagePart(BaseModel):
    """A reference to an image in the image store.

    Attributes:
        image_id: content id of the image in the store.
        width: width in pixels of the image as sent to the model.
        height: height in pixels of the image as sent to the model.
        kind: what the image is: the low-res ``view``, a high-res ``crop``, or the ``full`` image.
        label: a short human-readable label, e.g. ``"crop 0 (top-left)"``.
    """

    model_config = ConfigDict(frozen=True)

    type: Literal["image"] = "image"
    image_id: str
    width: int
    height: int
    kind: Literal["view", "crop", "full"] = "view"
    label: str | None = None


Part = Annotated[TextPart | ImagePart, Field(discriminator="type")]


class ToolCall(BaseModel):
    """A function call emitted by a model; ``arguments`` is the raw JSON text as the model wrote it."""

    model_config = ConfigDict(frozen=True)

    id: str
    name: str
    arguments: str


class ToolSpec(BaseModel):
    """A function offered to the model, with its JSON-schema ``parameters`` (OpenAI ``tools`` shape)."""

    model_config = ConfigDict(frozen=True)

    name: str
    description: str
    parameters: dict[str, Any]

    def to_openai(self) -> dict[str, Any]:
        """The tool in the OpenAI chat-completions ``tools`` format."""
        return {
            "type": "function",
            "function": {"name": self.name, "description": self.description, "parameters": self.parameters},
        }


class ChatMessage(BaseModel):
    """One chat turn.

    Attributes:
        role: ``system``, ``user``, ``assistant`` or ``tool``.
        content: text and image parts, in order.
        tool_calls: function calls made by an assistant turn.
        tool_call_id: for a ``tool`` turn, the id of the call it answers.
    """

    model_config = ConfigDict(frozen=True)

    role: Literal["system", "user", "assistant", "tool"]
    content: list[Part] = Field(default_factory=list)
    tool_calls: list[ToolCall] = Field(default_factory=list)
    tool_call_id: str | None = None

    @classmethod
    def text_message(cls, role: Literal["system", "user", "assistant", "tool"], text: str) -> ChatMessage:
        """A message holding a single text part."""
        return cls(role=role, content=[TextPart(text=text)])

    @property
    def text(self) -> str:
        """The concatenated text parts."""
        return "".join(p.text for p in self.content if isinstance(p, TextPart))

    @property
    def images(self) -> list[ImagePart]:
        """The image parts, in order."""
        return [p for p in self.content if isinstance(p, ImagePart)]


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
            if isinstance(value, str) and (cleaned := clean(value)) != value:
                update[key] = cleaned
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
