"""Reading an OpenAI chat-completions body into a :class:`~awares_agent.messages.ChatReply`, leniently.

Servers differ in details the ``openai`` client's typed models insist on (``null`` content, content parts,
tool-call arguments sent as JSON values, odd usage counts); :func:`parse_completion` accepts what is harmless
and turns what is not a chat completion into a :class:`~awares_agent.errors.BackendResponseError` that quotes
the body. The helpers that describe a JSON value in such a message live here too.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from awares_agent.errors import BackendResponseError
from awares_agent.messages import ChatReply, ToolCall, Usage
from awares_agent.redact import excerpt

__all__ = ["error_text", "json_kind", "json_text", "message_text", "parse_completion"]

#: Token counts above this are not believed (no context window is near it); they count as unreported.
_MAX_TOKEN_COUNT = 2**31 - 1


def parse_completion(data: Any, *, where: str) -> ChatReply:
    """Turn a decoded chat-completions response body into a :class:`ChatReply` (``latency_s`` left at 0).

    Lenient where servers differ harmlessly: ``content`` ``null`` becomes ``""``; a list of content parts
    keeps its text parts, joined (a text part's ``null`` text counts as empty; image, refusal, audio and other
    parts are skipped); tool-call ``arguments`` sent as a JSON value are re-encoded, missing/``null``
    ``arguments`` become ``"{}"``; a missing tool-call id becomes ``call_<n>``; a missing ``usage``, and any
    token count that is not a whole number from 0 to 2**31 - 1, counts as zero tokens.

    Args:
        data: the decoded JSON body.
        where: names the server and model in error messages, e.g. ``"http://host/v1 (model 'x')"``.

    Raises:
        BackendResponseError: the body is not a chat completion (no choices, no message, a content part or a
            tool call of the wrong shape, a text part whose text is not a string...).
    """

    def fail(what: str) -> BackendResponseError:
        return BackendResponseError(
            f"{where} returned an invalid chat completion: {what}; body: {excerpt(json_text(data))}"
        )

    if not isinstance(data, dict):
        raise fail(f"expected a JSON object, got {json_kind(data)}")
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices:
        if "error" in data:
            raise fail(f"the server reported an error: {error_text(data['error'])}")
        raise fail("no choices" if not choices else f"'choices' is {json_kind(choices)}, not a list")
    choice = choices[0]
    if not isinstance(choice, dict):
        raise fail(f"choices[0] is {json_kind(choice)}, not an object")
    message = choice.get("message")
    if not isinstance(message, dict):
        raise fail("choices[0] has no 'message' object")

    text = message_text(message.get("content"), fail)

    raw_calls = message.get("tool_calls") or []
    if not isinstance(raw_calls, list):
        raise fail(f"'tool_calls' is {json_kind(raw_calls)}, not a list")
    tool_calls = []
    for n, call in enumerate(raw_calls):
        if not isinstance(call, dict):
            raise fail(f"tool call {n} is {json_kind(call)}, not an object")
        function = call.get("function")
        if not isinstance(function, dict):
            raise fail(f"tool call {n} has no 'function' object")
        name = function.get("name")
        if name is None or name == "":
            raise fail(f"tool call {n} has no function name")
        if not isinstance(name, str):
            raise fail(f"tool call {n} has a function name that is {json_kind(name)}, not a string")
        arguments = function.get("arguments")
        if arguments is None:
            arguments = "{}"
        elif not isinstance(arguments, str):
            try:
                arguments = json.dumps(arguments)
            except (TypeError, ValueError, RecursionError):
                raise fail(f"tool call {n} has arguments that cannot be encoded as JSON") from None
        call_id = call.get("id")
        if isinstance(call_id, int) and not isinstance(call_id, bool):
            call_id = str(call_id)
        tool_calls.append(
            ToolCall(
                id=call_id if isinstance(call_id, str) and call_id else f"call_{n}",
                name=name,
                arguments=arguments,
            )
        )

    usage = data.get("usage")
    finish_reason = choice.get("finish_reason")
    model = data.get("model")
    return ChatReply(
        text=text,
        tool_calls=tool_calls,
        usage=Usage(
            prompt_tokens=_count(usage, "prompt_tokens"),
            completion_tokens=_count(usage, "completion_tokens"),
        ),
        finish_reason=finish_reason if isinstance(finish_reason, str) else None,
        model=model if isinstance(model, str) else None,
    )


def message_text(content: Any, fail: Callable[[str], BackendResponseError]) -> str:
    """The text of a message's (or a delta's) ``content``: a string, ``null``, or a list of parts whose text
    parts are joined; ``fail`` builds the error for content of the wrong shape."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise fail(f"message content is {json_kind(content)}, not a string or a list of parts")
    texts = []
    for i, part in enumerate(content):  # some servers send content parts back
        if isinstance(part, str):
            texts.append(part)
            continue
        if not isinstance(part, dict):
            raise fail(f"content part {i} is {json_kind(part)}, not an object")
        kind = part.get("type")
        if kind != "text" and not (kind is None and "text" in part):
            continue  # image_url, refusal, output_audio...: not text
        value = part.get("text")
        if value is None:
            continue
        if not isinstance(value, str):
            raise fail(f"content part {i} is a text part whose 'text' is {json_kind(value)}, not a string")
        texts.append(value)
    return "".join(texts)


def json_kind(value: Any) -> str:
    """``an int``, ``a list``, ``null``: what a JSON value is, for error messages."""
    if value is None:
        return "null"
    name = type(value).__name__
    return f"{'an' if name[0] in 'aeiou' else 'a'} {name}"


def _count(obj: Any, key: str) -> int:
    value = obj.get(key) if isinstance(obj, dict) else None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= _MAX_TOKEN_COUNT:
        return value
    return 0


def json_text(data: Any) -> str:
    """``data`` as JSON text to quote in a message (its ``repr`` when it is not JSON-encodable)."""
    try:
        return json.dumps(data)
    except (TypeError, ValueError, RecursionError):
        try:
            return repr(data)
        except RecursionError:
            return f"({json_kind(data)} nested too deeply to show)"


def error_text(body: object) -> str:
    """The server's error message out of an error body (OpenAI-style ``{"message": ...}`` or anything)."""
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and isinstance(inner.get("message"), str):
            return excerpt(inner["message"])
        if isinstance(inner, str):
            return excerpt(inner)
    if body is None or body == "":
        return "(empty body)"
    return excerpt(body if isinstance(body, str) else json_text(body))
