"""Backend-neutral chat messages that reference images by id instead of holding pixels.

These are the messages the graph keeps in its state, the trajectory records, and every backend translates
into its own wire format. Pixels live in an :class:`~awares_agent.image_store.ImageStore`; a message holds
only the image's content id and size.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field


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
