"""What the reader sees of a conversation: the question, the view, the crops and where each lies.

The reader receives only what a VLM receives: the messages' text and pixels (and so the images' sizes), the
system prompt and the tools offered. Nothing else of an :class:`~awares_agent.messages.ImagePart` is read:
not its ``kind`` nor its ``label``, which are the graph's own bookkeeping. So:

* the view is the first image of the first user message that holds one; the question is that message's
  text;
* crops are the images of later user messages;
* which region a crop shows is what the model was told or asked for: the text ``"Crop 3 (bottom-right):"``
  right before the image (the ``json`` protocol), else the model's own previous request, in order (a native
  ``get_crops`` call's arguments, a ``<tool_call>`` block, or the ``awares-text`` line ``GET_CROPS: ['3',
  '5']``, whose crops come back as bare images in request order), less the crops the reply says were
  withheld. A crop whose region cannot be told this way has region ``None``: it is not placed on the
  original (see :class:`~awares_agent.baselines.reader.images.ImageReader`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from awares_agent.messages import ChatMessage, ChatReply, ImagePart, TextPart, ToolSpec
from awares_agent.tools.crop_sets import CropSet
from awares_agent.tools.protocols import AwaresTextProtocol, JsonProtocol, ToolProtocol

__all__ = ["Turn", "read_turn"]

# The text the json protocol puts before each crop image: "Crop 3 (bottom-right):".
_CROP_TEXT_RE = re.compile(r"^\s*Crop\s+(?P<rid>\S+)\s+\([^()]*\):\s*$")
# The note a reply carries when the budget withheld some crops: "Crops 5, 6 were withheld: ...".
_WITHHELD_RE = re.compile(r"\bCrops\s+(?P<ids>\S+(?:,\s*\S+)*)\s+were\s+withheld\b")


@dataclass
class Turn:
    """What the messages hold.

    Attributes:
        question: the text of the view's message.
        view: the low-resolution view (``None``: no user message holds an image).
        crops: ``(region id or None, image)`` for each crop returned so far, in order.
        tool_name: the crop tool offered, if one is (function calling).
        text_protocol: the system prompt teaches the ``GET_CROPS`` text convention.
        final: the turn follows anything but the opening view (crops, a refusal, feedback, a final
            instruction): it must answer.
    """

    question: str
    view: ImagePart | None
    crops: list[tuple[str | None, ImagePart]] = field(default_factory=list)
    tool_name: str | None = None
    text_protocol: bool = False
    final: bool = True


def _requested(message: ChatMessage, protocols: Sequence[ToolProtocol]) -> list[str]:
    """The region ids an assistant turn asked for, in its order (read as the graph reads it)."""
    reply = ChatReply(text=message.text, tool_calls=message.tool_calls)
    for protocol in protocols:
        decision = protocol.parse(reply)
        if decision.kind == "crop":
            return decision.crops
    return []


def _resolved(token: str, crop_set: CropSet) -> str | None:
    try:
        return crop_set.resolve(token)
    except KeyError:
        return None


def read_turn(messages: Sequence[ChatMessage], tools: Sequence[ToolSpec] | None, crop_set: CropSet) -> Turn:
    """What ``messages`` hold, from their text and images only (see the module docstring).

    Args:
        messages: the conversation so far.
        tools: the tools offered this turn.
        crop_set: the agent's crop set (region ids and names are resolved in it).
    """
    protocols = (JsonProtocol(crop_set), AwaresTextProtocol(crop_set))
    view: ImagePart | None = None
    view_at: int | None = None
    question = ""
    crops: list[tuple[str | None, ImagePart]] = []
    requested: list[str] = []
    for i, msg in enumerate(messages):
        if msg.role == "assistant":
            requested = _requested(msg, protocols)
            continue
        if msg.role != "user":
            continue
        if view is None:
            if msg.images:
                view, view_at, question = msg.images[0], i, msg.text
            continue
        withheld = {
            rid
            for m in _WITHHELD_RE.finditer(msg.text)
            for token in m.group("ids").split(",")
            if (rid := _resolved(token.strip(), crop_set)) is not None
        }
        pending = [r for r in requested if r not in withheld]
        said: str | None = None
        named = False
        for part in msg.content:
            if isinstance(part, TextPart):
                m = _CROP_TEXT_RE.match(part.text)
                said, named = (_resolved(m.group("rid"), crop_set), True) if m else (None, False)
                continue
            if named:
                rid = said
                if rid in pending:
                    pending.remove(rid)
            else:
                rid = pending.pop(0) if pending else None
            crops.append((rid, part))
            said, named = None, False
        requested = []  # the request is answered: images after this are not its crops
    tool = next((t.name for t in tools or () if "crop" in t.name.lower()), None)
    system = " ".join(m.text for m in messages if m.role == "system")
    final = view_at is None or view_at != len(messages) - 1
    return Turn(question, view, crops, tool, "GET_CROPS" in system, final)
