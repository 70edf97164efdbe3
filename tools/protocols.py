"""Tool-call protocols: how the crop tool is offered to a model, and how its replies are read.

Two protocols produce one typed result, :class:`Decision`:

* :class:`JsonProtocol` (``"json"``): function calling. The tool is offered as an OpenAI ``tools`` entry; a
  call arrives either as a structured ``tool_calls`` entry or as Qwen/hermes text
  ``<tool_call>{"name": "get_crops", "arguments": {...}}</tool_call>``.
* :class:`AwaresTextProtocol` (``"awares-text"``): the released AwaRes model's plain-text call
  ``GET_CROPS: ['0', '5']``, taught by a system prompt listing the crop map.

Both return crops to the model in a **user** turn (portable: many servers drop images in tool messages).
Parsers never raise on model output: malformed calls become ``Decision(kind="invalid")`` with a message
for the model.
"""

from __future__ import annotations

import json
import re
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, Field

from awares_agent.errors import ConfigError, CropRequestError
from awares_agent.messages import ChatMessage, ChatReply, ImagePart, Part, TextPart, ToolCall, ToolSpec
from awares_agent.tools.crop_sets import CropSet
from awares_agent.tools.crop_tool import CropTool
from awares_agent.untrusted import json_text_problem


class Decision(BaseModel):
    """What a model turn amounts to.

    Attributes:
        kind: ``answer`` (final text), ``crop`` (a valid crop request) or ``invalid`` (a malformed or
            invalid tool call, or an empty reply).
        answer: the answer text, for ``answer``.
        crops: canonical region ids requested, for ``crop``.
        error: a message for the model explaining what was wrong, for ``invalid``.
        error_kind: a short machine-readable reason, for ``invalid``.
        call_id: id of the structured tool call, when the call was one (the reply must answer it).
        call_ids: ids of every structured tool call of the turn (``call_id`` first); each must be answered.
        raw: the model's text, for the record.
    """

    kind: Literal["answer", "crop", "invalid"]
    answer: str | None = None
    crops: list[str] = Field(default_factory=list)
    error: str | None = None
    error_kind: str | None = None
    call_id: str | None = None
    call_ids: list[str] = Field(default_factory=list)
    raw: str = ""


_FINAL_INSTRUCTION = (
    "Answer the question now from the images you already have. "
    "Do not request crops; reply with the answer only."
)


class ToolProtocol(ABC):
    """How a tool-call convention is taught, parsed and answered. Stateless; one instance serves any query."""

    key: str

    def __init__(self, crop_set: CropSet) -> None:
        self.crop_set = crop_set
        self.tool = CropTool(crop_set)

    @abstractmethod
    def system_prompt(self) -> str:
        """The system prompt that teaches the convention."""

    def tools(self) -> list[ToolSpec] | None:
        """Tools to offer while crops may still be requested (``None``: the system prompt teaches it)."""
        return None

    @abstractmethod
    def parse(self, reply: ChatReply) -> Decision:
        """Read a model turn. Never raises on model output."""

    @abstractmethod
    def call_reply(self, crops: Sequence[str]) -> ChatReply:
        """The model turn that requests ``crops``, as a model trained on this protocol would write it.

        Used where the request is not the model's (a policy that forces crops); :meth:`parse` reads it back.

        Args:
            crops: region ids or names.
        """

    def assistant_message(self, reply: ChatReply) -> ChatMessage:
        """The model turn as it goes into the conversation history."""
        return ChatMessage(
            role="assistant",
            content=[TextPart(text=reply.text)] if reply.text else [],
            tool_calls=reply.tool_calls,
        )

    def crops_messages(
        self, decision: Decision, crops: list[tuple[str, str, ImagePart]], *, note: str | None = None
    ) -> list[ChatMessage]:
        """Messages that hand the crops back: a user turn with the images (and a tool ack for native calls).

        Args:
            decision: the crop decision being answered.
            crops: ``(region id, region name, image part)`` for each crop returned, in request order.
            note: text appended after the images (e.g. which crops the budget withheld).
        """
        ids = ", ".join(f"{rid} ({name})" for rid, name, _ in crops)
        out = self._ack(decision, f"Returned crops: {ids}. They follow as images in the next message.")
        parts = self._crop_parts(crops)
        if note:
            parts.append(TextPart(text=note))
        out.append(ChatMessage(role="user", content=parts))
        return out

    def refusal_messages(self, decision: Decision, reason: str) -> list[ChatMessage]:
        """Messages telling the model that a crop request was not served (budget spent, rounds exhausted)."""
        return [
            *self._ack(decision, reason),
            ChatMessage.text_message("user", f"{reason} {_FINAL_INSTRUCTION}"),
        ]

    def feedback_messages(self, decision: Decision) -> list[ChatMessage]:
        """Messages showing the model what was wrong with its turn, so it can correct itself."""
        text = f"{decision.error} Either request valid crops or answer the question."
        if decision.call_id is not None:
            return _tool_messages(decision, text)
        return [ChatMessage.text_message("user", text)]

    def final_instruction(self) -> ChatMessage:
        """A user turn asking for the answer with no more crops."""
        return ChatMessage.text_message("user", _FINAL_INSTRUCTION)

    def _ack(self, decision: Decision, text: str) -> list[ChatMessage]:
        # A structured call must be answered by a tool message with its id, or OpenAI-style servers refuse
        # the next request. Images cannot portably ride in it, so it carries only text.
        if decision.call_id is None:
            return []
        return _tool_messages(decision, text)

    def _crop_parts(self, crops: list[tuple[str, str, ImagePart]]) -> list[Part]:
        parts: list[Part] = []
        for rid, name, image in crops:
            parts += [TextPart(text=f"Crop {rid} ({name}):"), image]
        return parts

    def _answer_or_empty(self, text: str) -> Decision:
        answer = text.strip()
        if not answer:
            return Decision(
                kind="invalid",
                error="Your reply was empty.",
                error_kind="empty_reply",
                raw=text,
            )
        return Decision(kind="answer", answer=answer, raw=text)

    def _validated(self, fn: Any, *args: Any, call_id: str | None, raw: str) -> Decision:
        try:
            crops = fn(*args)
        except CropRequestError as exc:
            return Decision(
                kind="invalid", error=str(exc), error_kind="invalid_tool_call", call_id=call_id, raw=raw
            )
        return Decision(kind="crop", crops=crops, call_id=call_id, raw=raw)


def _tool_messages(decision: Decision, text: str) -> list[ChatMessage]:
    """One tool message per structured call of the turn: each call id must be answered, not only the first."""
    ids = dict.fromkeys(i for i in [decision.call_id, *decision.call_ids] if i is not None)
    return [ChatMessage(role="tool", tool_call_id=i, content=[TextPart(text=text)]) for i in ids]


_TOOL_CALL_RE = re.compile(r"<tool_call>(.*?)(?:</tool_call>|$)", re.DOTALL)


class JsonProtocol(ToolProtocol):
    """Function calling with a JSON-schema tool: native ``tool_calls`` or hermes ``<tool_call>`` text."""

    key = "json"

    def system_prompt(self) -> str:
        return (
            "You answer questions about an image. You are shown a low-resolution view of it (half its "
            "width and height), which is often enough. When fine details such as small text are needed, "
            f"call the {self.tool.name} tool once with the regions you need and you will receive those "
            "regions at full resolution; then answer. Request only the regions that matter. Regions:\n"
            f"{self.crop_set.describe()}\n"
            "Answer concisely."
        )

    def tools(self) -> list[ToolSpec] | None:
        return [self.tool.spec()]

    def call_reply(self, crops: Sequence[str]) -> ChatReply:
        call = ToolCall(id="call_0", name=self.tool.name, arguments=json.dumps({"crops": list(crops)}))
        return ChatReply(tool_calls=[call])

    def parse(self, reply: ChatReply) -> Decision:
        if reply.tool_calls:
            decision = self._parse_structured(reply.tool_calls, reply.text)
            return decision.model_copy(update={"call_ids": [c.id for c in reply.tool_calls]})
        text = reply.text or ""
        if "<tool_call>" in text:
            return self._parse_hermes(text)
        return self._answer_or_empty(text)

    def _parse_structured(self, calls: list[ToolCall], text: str) -> Decision:
        call_id = calls[0].id
        wrong = [c.name for c in calls if c.name != self.tool.name]
        if wrong:
            return Decision(
                kind="invalid",
                error=f"Unknown tool {wrong[0]!r}; the only tool is {self.tool.name}.",
                error_kind="unknown_tool",
                call_id=call_id,
                raw=text,
            )
        if len(calls) > 1:
            # Several calls in one turn are merged into one request; duplicates across them are an error.
            arguments = [c.arguments for c in calls]
            return self._validated(self._merged_arguments, arguments, call_id=call_id, raw=text)
        return self._validated(self.tool.parse_arguments, calls[0].arguments, call_id=call_id, raw=text)

    def _merged_arguments(self, arguments: list[Any]) -> list[str]:
        tokens: list[str] = []
        for args in arguments:
            tokens += self.tool.parse_arguments(args)
        return self.tool.validate(tokens)

    def _parse_hermes(self, text: str) -> Decision:
        # Several <tool_call> blocks in one turn are merged into one request, as structured calls are.
        arguments: list[Any] = []
        for body in _TOOL_CALL_RE.findall(text) or [""]:
            problem = json_text_problem(body)
            if problem is not None:
                return Decision(
                    kind="invalid",
                    error=(
                        f"The tool call is too large to read: {problem}. Write it as <tool_call>"
                        f'{{"name": "{self.tool.name}", "arguments": {{"crops": ["0"]}}}}</tool_call>.'
                    ),
                    error_kind="invalid_tool_call",
                    raw=text,
                )
            try:
                payload = json.loads(body.strip())
            except (ValueError, RecursionError) as exc:  # JSONDecodeError, over-long ints, deep nesting
                reason = exc.msg if isinstance(exc, json.JSONDecodeError) else type(exc).__name__
                return Decision(
                    kind="invalid",
                    error=(
                        f"The tool call is not valid JSON ({reason}). Write it as <tool_call>"
                        f'{{"name": "{self.tool.name}", "arguments": {{"crops": ["0"]}}}}</tool_call>.'
                    ),
                    error_kind="invalid_tool_call",
                    raw=text,
                )
            if not isinstance(payload, dict) or payload.get("name") != self.tool.name:
                name = payload.get("name") if isinstance(payload, dict) else None
                return Decision(
                    kind="invalid",
                    error=f"Unknown tool {name!r}; the only tool is {self.tool.name}.",
                    error_kind="unknown_tool",
                    raw=text,
                )
            arguments.append(payload.get("arguments", payload.get("parameters", {})))
        if len(arguments) > 1:
            return self._validated(self._merged_arguments, arguments, call_id=None, raw=text)
        return self._validated(self.tool.parse_arguments, arguments[0], call_id=None, raw=text)


# "GET_CROPS" always starts a call; "GET CROPS" / "GETCROPS" only with ":", "=" or a list after it, so that an
# answer that merely says "get crops" is not read as a malformed call.
_GET_CROPS_RE = re.compile(r"\bGET(?:_CROPS|[ ]?CROPS(?=\s*[:=\[(]))\s*[:=]?\s*(?P<args>.*)", re.IGNORECASE)


class AwaresTextProtocol(ToolProtocol):
    """The released AwaRes text protocol: ``GET_CROPS: ['0', '5']`` on its own line.

    Parsed robustly: several crops, any spacing, single, double or no quotes, brackets or none, ids or names.
    (The released parser returned nothing for a multi-crop call or a space after the colon, and then silently
    sent the full image; here every such form parses, and anything else is an explicit ``invalid``.)
    """

    key = "awares-text"

    def system_prompt(self) -> str:
        return (
            "You answer questions about an image. You are shown a low-resolution view of it (half its "
            "width and height). If the view is enough, answer directly. If you need fine details, reply "
            "with a single line\n"
            "GET_CROPS: ['<id>', ...]\n"
            "listing the regions you need; you will then receive them at full resolution and answer. "
            f"Regions:\n{self.crop_set.describe()}\n"
            "Request only the regions that matter. Answer concisely."
        )

    def call_reply(self, crops: Sequence[str]) -> ChatReply:
        listed = ", ".join(f"'{c}'" for c in crops)
        return ChatReply(text=f"GET_CROPS: [{listed}]")

    def parse(self, reply: ChatReply) -> Decision:
        text = reply.text or ""
        match = _GET_CROPS_RE.search(text)
        if match is None:
            return self._answer_or_empty(text)
        tokens = self._tokens(match.group("args"))
        if tokens is None:
            return Decision(
                kind="invalid",
                error="Could not read the crop list. Write it as GET_CROPS: ['0', '5'].",
                error_kind="invalid_tool_call",
                raw=text,
            )
        return self._validated(self.tool.validate, tokens, call_id=None, raw=text)

    def _tokens(self, args: str) -> list[str] | None:
        """Crop tokens from the text after ``GET_CROPS:``; ``None`` if it cannot be read."""
        bracket = re.search(r"[\[(](.*?)(?:[\])]|$)", args, re.DOTALL)
        inner = bracket.group(1) if bracket else args.splitlines()[0] if args.strip() else ""
        inner = inner.strip()
        if re.search(r"[\[\]{}()<>]", inner):
            return None
        quoted_re = r"['\"`]([^'\"`]*)['\"`]"
        quoted = re.findall(quoted_re, inner)
        if quoted and not re.sub(quoted_re, "", inner).strip(" ,.;:"):
            return [q.strip() for q in quoted]
        # Mixed or unbalanced quotes (['0', 5] or '0', '5): read it unquoted rather than drop crops.
        inner = re.sub(r"['\"`]", "", inner).strip(" .;:")
        if not inner:
            return []
        if "," in inner:
            return [t.strip() for t in inner.split(",") if t.strip()]
        try:
            # Unquoted multi-word names ("top left") read as one region when they name one.
            self.crop_set.resolve(inner)
            return [inner]
        except KeyError:
            return inner.split()

    def _crop_parts(self, crops: list[tuple[str, str, ImagePart]]) -> list[Part]:
        # As released: the crops come back as a user turn holding only the images.
        return [image for _, _, image in crops]


PROTOCOLS: dict[str, type[ToolProtocol]] = {
    JsonProtocol.key: JsonProtocol,
    AwaresTextProtocol.key: AwaresTextProtocol,
}


def make_protocol(key: str, crop_set: CropSet) -> ToolProtocol:
    """The protocol named ``key`` (``"json"`` or ``"awares-text"``) bound to ``crop_set``.

    Raises:
        ConfigError: unknown protocol.
    """
    try:
        return PROTOCOLS[key](crop_set)
    except KeyError:
        raise ConfigError(f"unknown protocol {key!r}: choose one of {', '.join(PROTOCOLS)}") from None
