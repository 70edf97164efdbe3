"""A chat backend for any OpenAI-compatible chat-completions server (api.openai.com, vLLM, Ollama, SGLang...).

Images travel as base64 ``data:`` URIs inside user messages; the crop tool is offered through native function
calling (``tools``).

:meth:`OpenAIBackend.complete_stream` asks for the same turn with ``stream: true`` and reads the server-sent
events itself, leniently as :func:`parse_completion` reads a whole body (servers differ in the details the
``openai`` client's typed chunks insist on); the chunks add up to the chat completion the server would have
sent whole, which :func:`parse_completion` then reads, so a streamed turn and a whole one give the same reply.

Time is bounded twice. ``timeout`` bounds each attempt as a whole (connecting, sending, and receiving the
complete body), not each socket read: a server that trickles its reply a byte at a time is cut off when the
attempt's time is up. ``deadline`` bounds one :meth:`OpenAIBackend.complete` call, every attempt and every
wait between them included. The retries are this module's own (the ``openai`` client is created with
``max_retries=0``): connection errors, timeouts, 408/409/429 and 5xx are retried (a server's
``x-should-retry: true/false`` overrides), after an exponential backoff (0.5 s doubling, capped at 8 s, with
a little jitter) or the wait a server asks for with a positive ``Retry-After`` (seconds or an HTTP date) or
``retry-after-ms``. A wait that would end past the deadline is not taken: the call gives up at once and says
why. A streamed attempt is retried only until its first text has been passed on: text cannot be taken back.

Every failure surfaces as a :class:`~awares_agent.errors.BackendError` subclass that names the server and the
model. The API key is registered with :mod:`awares_agent.redact`, and every text an error carries (its
message, and the chained ``openai`` exception's message, arguments and body) is redacted in full before it is
cut to an excerpt, so the key never appears in ``repr()``, log records or error messages, not even in part.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import json
import logging
import math
import os
import random
import re
import ssl
import threading
import time
import weakref
from collections.abc import AsyncGenerator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC
from typing import TYPE_CHECKING, Any, Literal

import httpx2
import openai

from awares_agent.backends.base import TextSink
from awares_agent.backends.http_deadline import ATTEMPT_END, DeadlineTransport, HttpClient
from awares_agent.errors import (
    BackendAuthError,
    BackendConnectionError,
    BackendError,
    BackendHTTPError,
    BackendRateLimitError,
    BackendResponseError,
    BackendTimeoutError,
    ConfigError,
    MessageTranslationError,
)
from awares_agent.messages import ChatMessage, ChatReply, ImagePart, TextPart, ToolCall, ToolSpec, Usage
from awares_agent.redact import redact, redact_value, register_secret

if TYPE_CHECKING:
    from awares_agent.image_store import ImageStore

__all__ = [
    "OPENAI_BASE_URL",
    "MessageTranslationError",
    "OpenAIBackend",
    "parse_completion",
    "to_openai_messages",
]

log = logging.getLogger(__name__)

#: The base URL used when ``base_url`` is not given.
OPENAI_BASE_URL = "https://api.openai.com/v1"

#: The key sent to servers that need none (vLLM, Ollama); the openai client refuses an empty key.
PLACEHOLDER_API_KEY = "EMPTY"

_EXCERPT_CHARS = 200


# --- request translation -------------------------------------------------------------------------------


def to_openai_messages(
    messages: Sequence[ChatMessage],
    images: ImageStore,
    image_format: Literal["png", "jpeg"] = "png",
    image_detail: Literal["auto", "low", "high"] | None = None,
) -> list[dict[str, Any]]:
    """Translate backend-neutral messages into OpenAI chat-completions ``messages``.

    Args:
        messages: the conversation, in order.
        images: the store that resolves each :class:`ImagePart` to a ``data:`` URI.
        image_format: how images are encoded in the data URIs.
        image_detail: OpenAI's ``detail`` for every image (``None``: not sent, the server decides).

    Returns:
        A list of JSON-ready message dicts: ``system`` and ``tool`` contents are strings; a text-only
        ``user``/``assistant`` message has a string content, one with images a list of ``text`` and
        ``image_url`` parts in their original order; an assistant turn's ``tool_calls`` are passed through
        with their raw ``arguments`` (its ``content`` is ``None`` when it has no text).

    Raises:
        MessageTranslationError: images in a ``system`` or ``tool`` message (crops travel in a user message:
            many servers reject images in tool messages), or a ``tool`` message without ``tool_call_id``.
    """
    out: list[dict[str, Any]] = []
    for i, msg in enumerate(messages):
        if msg.role in ("system", "tool") and msg.images:
            raise MessageTranslationError(
                f"message {i} ({msg.role}) holds {len(msg.images)} image(s), but images may only be sent in "
                f"user messages (many OpenAI-compatible servers reject images elsewhere); put the crops in a "
                f"user message after the tool result"
            )
        if msg.role == "system":
            out.append({"role": "system", "content": msg.text})
        elif msg.role == "tool":
            if not msg.tool_call_id:
                raise MessageTranslationError(
                    f"message {i} (tool) has no tool_call_id; it must name the assistant tool call it answers"
                )
            out.append({"role": "tool", "tool_call_id": msg.tool_call_id, "content": msg.text})
        elif msg.role == "assistant" and msg.tool_calls:
            out.append(
                {
                    "role": "assistant",
                    "content": _content(msg, images, image_format, image_detail) if msg.content else None,
                    "tool_calls": [
                        {
                            "id": c.id,
                            "type": "function",
                            "function": {"name": c.name, "arguments": c.arguments},
                        }
                        for c in msg.tool_calls
                    ],
                }
            )
        else:
            out.append({"role": msg.role, "content": _content(msg, images, image_format, image_detail)})
    return out


def _content(
    msg: ChatMessage,
    images: ImageStore,
    image_format: Literal["png", "jpeg"],
    image_detail: Literal["auto", "low", "high"] | None,
) -> str | list[dict[str, Any]]:
    if not msg.images:
        return msg.text
    parts: list[dict[str, Any]] = []
    for part in msg.content:
        if isinstance(part, TextPart):
            parts.append({"type": "text", "text": part.text})
        elif isinstance(part, ImagePart):
            image_url = {"url": images.data_uri(part.image_id, image_format)}
            if image_detail is not None:
                image_url["detail"] = image_detail
            parts.append({"type": "image_url", "image_url": image_url})
    return parts


# --- reply parsing -------------------------------------------------------------------------------------

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
            f"{where} returned an invalid chat completion: {what}; body: {_excerpt(_dumps(data))}"
        )

    if not isinstance(data, dict):
        raise fail(f"expected a JSON object, got {_kind(data)}")
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices:
        if "error" in data:
            raise fail(f"the server reported an error: {_error_text(data['error'])}")
        raise fail("no choices" if not choices else f"'choices' is {_kind(choices)}, not a list")
    choice = choices[0]
    if not isinstance(choice, dict):
        raise fail(f"choices[0] is {_kind(choice)}, not an object")
    message = choice.get("message")
    if not isinstance(message, dict):
        raise fail("choices[0] has no 'message' object")

    text = _message_text(message.get("content"), fail)

    raw_calls = message.get("tool_calls") or []
    if not isinstance(raw_calls, list):
        raise fail(f"'tool_calls' is {_kind(raw_calls)}, not a list")
    tool_calls = []
    for n, call in enumerate(raw_calls):
        if not isinstance(call, dict):
            raise fail(f"tool call {n} is {_kind(call)}, not an object")
        function = call.get("function")
        if not isinstance(function, dict):
            raise fail(f"tool call {n} has no 'function' object")
        name = function.get("name")
        if name is None or name == "":
            raise fail(f"tool call {n} has no function name")
        if not isinstance(name, str):
            raise fail(f"tool call {n} has a function name that is {_kind(name)}, not a string")
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


def _message_text(content: Any, fail: Callable[[str], BackendResponseError]) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise fail(f"message content is {_kind(content)}, not a string or a list of parts")
    texts = []
    for i, part in enumerate(content):  # some servers send content parts back
        if isinstance(part, str):
            texts.append(part)
            continue
        if not isinstance(part, dict):
            raise fail(f"content part {i} is {_kind(part)}, not an object")
        kind = part.get("type")
        if kind != "text" and not (kind is None and "text" in part):
            continue  # image_url, refusal, output_audio...: not text
        value = part.get("text")
        if value is None:
            continue
        if not isinstance(value, str):
            raise fail(f"content part {i} is a text part whose 'text' is {_kind(value)}, not a string")
        texts.append(value)
    return "".join(texts)


def _kind(value: Any) -> str:
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


def _dumps(data: Any) -> str:
    try:
        return json.dumps(data)
    except (TypeError, ValueError, RecursionError):
        try:
            return repr(data)
        except RecursionError:
            return f"({_kind(data)} nested too deeply to show)"


def _excerpt(text: str, limit: int = _EXCERPT_CHARS) -> str:
    """``text`` on one line, credentials redacted, cut to ``limit`` characters.

    Redaction comes first: a cut through the middle of a key would leave a fragment that no longer matches
    the key, so the key's replacement would miss it.
    """
    text = redact(" ".join(text.split()))
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} chars)"


def _error_text(body: object) -> str:
    """The server's error message out of an error body (OpenAI-style ``{"message": ...}`` or anything)."""
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and isinstance(inner.get("message"), str):
            return _excerpt(inner["message"])
        if isinstance(inner, str):
            return _excerpt(inner)
    if body is None or body == "":
        return "(empty body)"
    return _excerpt(body if isinstance(body, str) else _dumps(body))


# --- streamed replies ----------------------------------------------------------------------------------

#: What a streamed request adds to the body: token usage comes in a last chunk (with ``choices: []``).
_STREAM_FIELDS: dict[str, Any] = {"stream": True, "stream_options": {"include_usage": True}}

#: SSE ends lines at CRLF, LF or CR only (a lone CR at the end of a read may be the first half of a CRLF).
_LINE_END = re.compile(rb"\r\n|\r|\n")

#: Bytes of the reply's start kept to show when it is neither server-sent events nor JSON.
_HEAD_BYTES = 4096


class _ChunkReader:
    """Reads the reply to a ``stream: true`` request, fed its raw bytes, into the equivalent chat completion.

    The events are split into lines here, not by httpx's ``iter_lines``: that splits on every line break
    ``str.splitlines`` knows (U+2028, U+0085...), which a JSON string in a ``data:`` line may hold raw.

    Each non-empty piece of content goes to ``on_text`` as it arrives; tool-call deltas are merged by their
    ``index``. A server that ignores ``stream`` and answers one JSON body is accepted too: the body is kept
    whole (see :attr:`plain_body`).

    Args:
        where: names the server and model in error messages.
        on_text: receives each non-empty content delta.
        redact: redacts an error message (the backend's key included).
    """

    def __init__(self, where: str, on_text: TextSink, redact: Callable[[str], str]) -> None:
        self._where = where
        self._on_text = on_text
        self._redact = redact
        #: Characters of text passed to ``on_text`` so far.
        self.streamed = 0
        #: Whether ``data: [DONE]`` arrived (anything after it is not read).
        self.done = False
        self._head = bytearray()
        self._buffer = bytearray()
        self._sse = False  # decided by the reply's first non-blank byte
        self._plain: bytearray | None = None
        self._data: list[str] = []  # the current event's data lines
        self._event = ""  # the current event's type
        self._events = 0  # data events, [DONE] included
        self._chunks = 0  # data events but [DONE]
        self._choices = False
        self._text: list[str] = []
        self._calls: dict[int, dict[str, str]] = {}
        self._finish_reason: Any = None
        self._model: Any = None
        self._usage: Any = None

    @property
    def plain_body(self) -> bytes | None:
        """The whole body when it was not server-sent events (JSON, or nothing but blanks); else ``None``."""
        if self._plain is not None:
            return bytes(self._plain)
        return None if self._sse else bytes(self._buffer)

    def feed(self, data: bytes) -> None:
        """Read the next bytes of the reply.

        Raises:
            BackendResponseError: an event that is not JSON, is not a chunk, or reports an error.
        """
        if len(self._head) < _HEAD_BYTES:
            self._head += data[: _HEAD_BYTES - len(self._head)]
        if self._plain is not None:
            self._plain += data
            return
        if not self._sse:
            start = data.lstrip()
            if not start:
                self._buffer += data
                return
            if start[:1] in (b"{", b"["):  # a JSON body: this server ignored stream=True
                self._plain = self._buffer + data
                self._buffer = bytearray()
                return
            self._sse = True
        self._buffer += data
        used = 0
        for cut in _LINE_END.finditer(self._buffer):
            if cut.group() == b"\r" and cut.end() == len(self._buffer):
                break
            self._line(bytes(self._buffer[used : cut.start()]))
            used = cut.end()
            if self.done:
                return
        del self._buffer[:used]

    def finish(self) -> dict[str, Any]:
        """The chat completion the events add up to, once the reply has ended (not for a plain body).

        Raises:
            BackendResponseError: the reply held no events, was cut short (no ``[DONE]`` and no
                ``finish_reason``), or held no choices.
        """
        if not self.done:
            if self._buffer:  # a last line without its line end still counts
                self._line(bytes(self._buffer.removesuffix(b"\r")))
                self._buffer.clear()
            self._dispatch()
        if not self._events:
            raise self._fail(
                "returned a reply with no server-sent event and no JSON body",
                fix="is base_url the API root of an OpenAI-compatible server?",
                shown=self._head.decode("utf-8", "replace"),
                label="body",
            )
        if not self.done and self._finish_reason is None:
            raise self._fail(
                f"ended the stream after {self._chunks} chunk(s) without [DONE] or a finish_reason: it was "
                f"cut short (by the server or a proxy)",
                fix="try again, or check the server's log",
            )
        if not self._choices:
            raise self._fail(
                f"sent a stream of {self._chunks} chunk(s) without any choice; it is not a chat completion "
                f"stream"
            )
        message: dict[str, Any] = {"role": "assistant", "content": "".join(self._text)}
        if self._calls:
            message["tool_calls"] = [
                {"type": "function", **({"id": c["id"]} if "id" in c else {}), "function": _function(c)}
                for _, c in sorted(self._calls.items())
            ]
        return {
            "object": "chat.completion",
            "model": self._model,
            "choices": [{"index": 0, "message": message, "finish_reason": self._finish_reason}],
            "usage": self._usage,
        }

    # -- internals --

    def _fail(
        self, what: str, *, fix: str = "", shown: str | None = None, label: str = "data"
    ) -> BackendResponseError:
        broke = f" (the stream broke after {self.streamed} chars of text)" if self.streamed else ""
        fix = f"; {fix}" if fix else ""
        body = f"; {label}: {_excerpt(shown) or '(empty)'}" if shown is not None else ""
        return BackendResponseError(self._redact(f"{self._where} {what}{broke}{fix}{body}"))

    def _line(self, raw: bytes) -> None:
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as err:
            raise self._fail(f"sent a stream line that is not UTF-8 ({err})", shown=repr(raw)) from None
        if not line:
            self._dispatch()
            return
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "data":
            self._data.append(value)
        elif field == "event":
            self._event = value
        # Comments (": keep-alive"), id and retry lines carry nothing a chat turn needs.

    def _dispatch(self) -> None:
        """Handle the event whose lines were read (a blank line ends an event)."""
        data, event = "\n".join(self._data), self._event
        has_data = bool(self._data)
        self._data, self._event = [], ""
        if not has_data:
            return
        self._events += 1
        if data.strip() == "[DONE]":
            self.done = True
            return
        self._chunks += 1
        try:
            chunk = json.loads(data)
        except ValueError as err:
            raise self._fail(f"sent a stream event whose data is not JSON ({err})", shown=data) from None
        except RecursionError:
            raise self._fail("sent a stream event nested too deeply to decode") from None
        if event == "error" or (isinstance(chunk, dict) and chunk.get("error") is not None):
            raise self._fail(f"reported an error mid-stream: {_error_text(chunk)}")
        self._chunk(chunk, data)

    def _chunk(self, chunk: Any, data: str) -> None:
        def bad(what: str) -> BackendResponseError:
            return self._fail(f"sent an invalid chat completion chunk: {what}", shown=data)

        if not isinstance(chunk, dict):
            raise bad(f"expected a JSON object, got {_kind(chunk)}")
        if isinstance(chunk.get("model"), str) and chunk["model"]:
            self._model = chunk["model"]
        if chunk.get("usage") is not None:  # the last one wins: some servers report it on every chunk
            self._usage = chunk["usage"]
        choices = chunk.get("choices")
        if choices is None:
            return
        if not isinstance(choices, list):
            raise bad(f"'choices' is {_kind(choices)}, not a list")
        for choice in choices:
            if not isinstance(choice, dict):
                raise bad(f"a choice is {_kind(choice)}, not an object")
            if choice.get("index") not in (0, None):  # only one choice is asked for; the first is the reply
                continue
            self._choices = True
            delta = choice.get("delta")
            if delta is None:
                delta = {}
            if not isinstance(delta, dict):
                raise bad(f"'delta' is {_kind(delta)}, not an object")
            piece = _message_text(delta.get("content"), bad)
            if piece:
                self._text.append(piece)
                self.streamed += len(piece)
                self._on_text(piece)
            self._tool_calls(delta.get("tool_calls"), bad)
            if choice.get("finish_reason") is not None:
                self._finish_reason = choice["finish_reason"]

    def _tool_calls(self, calls: Any, bad: Callable[[str], BackendResponseError]) -> None:
        if calls is None:
            return
        if not isinstance(calls, list):
            raise bad(f"'tool_calls' is {_kind(calls)}, not a list")
        for n, call in enumerate(calls):
            if not isinstance(call, dict):
                raise bad(f"tool call delta {n} is {_kind(call)}, not an object")
            call_id = call.get("id")
            if isinstance(call_id, int) and not isinstance(call_id, bool):
                call_id = str(call_id)
            index = call.get("index")
            if index is None:
                index = self._unindexed(call_id)
            elif not isinstance(index, int) or isinstance(index, bool):
                raise bad(f"tool call delta {n} has an index that is {_kind(index)}, not an int")
            merged = self._calls.setdefault(index, {})
            if isinstance(call_id, str):
                _merge_piece(merged, "id", call_id)
            function = call.get("function")
            if function is None:
                continue
            if not isinstance(function, dict):
                raise bad(f"tool call delta {n} has a 'function' that is {_kind(function)}, not an object")
            name = function.get("name")
            if name is not None and not isinstance(name, str):
                raise bad(f"tool call {index} has a function name that is {_kind(name)}, not a string")
            _merge_piece(merged, "name", name)
            arguments = function.get("arguments")
            if arguments is None:
                continue
            if not isinstance(arguments, str):  # a JSON value, as parse_completion accepts it
                try:
                    arguments = json.dumps(arguments)
                except (TypeError, ValueError, RecursionError):
                    raise bad(f"tool call {index} has arguments that cannot be encoded as JSON") from None
            merged["arguments"] = merged.get("arguments", "") + arguments

    def _unindexed(self, call_id: Any) -> int:
        """The index of a tool-call delta that has none. Some servers send each call whole and without an
        index: a delta with a new id starts a new call; one without continues the last."""
        last = max(self._calls, default=None)
        if last is None:
            return 0
        if isinstance(call_id, str) and call_id and call_id != self._calls[last].get("id"):
            return last + 1
        return last


def _merge_piece(merged: dict[str, str], key: str, piece: str | None) -> None:
    """Add a piece of a tool call's id or name. Servers send these once, in pieces, or (some) again on every
    delta: a piece equal to what is there already is such a repeat, not more of it."""
    if not piece:
        return
    current = merged.get(key)
    if current is None:
        merged[key] = piece
    elif piece != current:
        merged[key] = current + piece


def _function(call: dict[str, str]) -> dict[str, str]:
    """A merged tool call's ``function`` object; what the server never sent stays out (parse_completion then
    judges it as it would in a whole body: no name is an error, no arguments are ``"{}"``)."""
    return {key: call[key] for key in ("name", "arguments") if key in call}


# --- retries and the deadline ------------------------------------------------------------------------------

#: Seconds a call may spend waiting between attempts when no deadline is given (see ``OpenAIBackend``).
DEFAULT_WAIT_ALLOWANCE = 30.0

_INITIAL_BACKOFF, _MAX_BACKOFF = 0.5, 8.0


def _retry_after(headers: Mapping[str, str]) -> float | None:
    """The seconds a server asked to wait before retrying (``retry-after-ms``, then ``retry-after`` in
    seconds or as an HTTP date); ``None`` when it asked for nothing usable (a wait of 0 or less, or junk)."""
    for name, scale in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            seconds = float(value) / scale
        except ValueError:
            if name == "retry-after-ms":
                continue
            try:
                when = email.utils.parsedate_to_datetime(value)
            except (TypeError, ValueError, IndexError, OverflowError):
                return None
            if when.tzinfo is None:
                when = when.replace(tzinfo=UTC)
            seconds = when.timestamp() - time.time()
        if math.isnan(seconds):
            continue
        return seconds if seconds > 0 else None
    return None


def _should_retry(err: BaseException) -> bool:
    """Whether a failed attempt is worth another (the openai client's own rules)."""
    if isinstance(err, (TimeoutError, openai.APITimeoutError, openai.APIConnectionError)):
        return True
    if not isinstance(err, openai.APIStatusError):
        return False
    verdict = err.response.headers.get("x-should-retry")
    if verdict in ("true", "false"):
        return verdict == "true"
    return err.status_code in (408, 409, 429) or err.status_code >= 500


def _seconds(value: float) -> str:
    return f"{value:.0f}" if value >= 10 or math.isinf(value) else f"{value:.2g}"


def _attempts(n: int) -> str:
    return f"{n} attempt{'' if n == 1 else 's'}"


@dataclass
class _Call:
    """Where one ``complete()`` call stands: its end, the retries made, how the last attempt was bounded."""

    end: float  # time.monotonic() by which the call must be over
    retries: int = 0
    cut_by_deadline: bool = False  # the last attempt had less than the full timeout


# --- the backend ---------------------------------------------------------------------------------------


class _Secret:
    """Holds the API key so that it never shows up in a repr or a traceback's locals."""

    __slots__ = ("value",)

    def __init__(self, value: str) -> None:
        self.value = value

    def __repr__(self) -> str:
        return "<secret>"


@dataclass
class _LoopClient:
    """The async client of one event loop, and the async generator that closes it with the loop."""

    client: openai.AsyncOpenAI
    closer: AsyncGenerator[None, None]


async def _close_with_the_loop(client: openai.AsyncOpenAI) -> AsyncGenerator[None, None]:
    """Suspended at its ``yield`` for the loop's life. Async generators are registered with the loop that
    first runs them, and ``asyncio.run`` (like ``loop.shutdown_asyncgens()``) closes them before the loop
    closes: the ``finally`` then closes the client's pooled connections on their own loop, instead of leaving
    them to a garbage collection that would find the loop closed ("Event loop is closed")."""
    try:
        yield
    finally:
        await client.close()


class OpenAIBackend:
    """A :class:`~awares_agent.backends.base.StreamingChatBackend` for OpenAI-compatible chat-completions
    servers.

    Args:
        model: the model name sent with every request.
        base_url: the server's API root, e.g. ``http://localhost:8000/v1`` for vLLM; ``None`` means
            api.openai.com (the ``OPENAI_BASE_URL`` environment variable is deliberately not consulted).
        api_key: the API key; defaults to the environment variable named by ``api_key_env``, and, for a
            custom ``base_url`` (local servers need none), to the placeholder ``"EMPTY"``. It is registered
            with :func:`awares_agent.redact.register_secret`, so no message of the process shows it.
        api_key_env: the environment variable holding the key.
        timeout: seconds allowed for each attempt as a whole: connecting, sending the request and receiving
            the complete reply (a reply that trickles in is cut off when the time is up); every retry gets a
            fresh allowance, within the deadline.
        max_retries: retries on connection errors, timeouts, 408/409/429 and 5xx (``x-should-retry`` from the
            server overrides), after an exponential backoff or the server's positive ``Retry-After``; 0
            disables them.
        deadline: seconds allowed for one :meth:`complete` / :meth:`acomplete` call, every attempt and every
            wait between attempts included; a ``Retry-After`` that would end past it makes the call give up
            at once. ``None`` (the default): ``timeout * (max_retries + 1) + 30``, every attempt's full
            allowance plus 30 s of waiting.
        image_format: how images are encoded in the ``data:`` URIs.
        image_detail: OpenAI's image ``detail`` (``"high"`` keeps crops at full resolution on
            api.openai.com; ``None`` sends none, which local servers expect).
        temperature: sampling temperature; ``None`` leaves it to the server.
        max_tokens: cap on generated tokens; ``None`` leaves it to the server.
        extra_body: extra JSON fields merged into every request body (e.g. vLLM's ``top_k``).
        default_headers: extra HTTP headers sent with every request.

    Raises:
        ConfigError: no API key for api.openai.com, or an invalid option.
    """

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        api_key_env: str = "OPENAI_API_KEY",
        timeout: float = 60.0,
        max_retries: int = 3,
        deadline: float | None = None,
        image_format: Literal["png", "jpeg"] = "png",
        image_detail: Literal["auto", "low", "high"] | None = None,
        temperature: float | None = 0.0,
        max_tokens: int | None = None,
        extra_body: dict[str, Any] | None = None,
        default_headers: dict[str, str] | None = None,
    ) -> None:
        if not model:
            raise ConfigError("OpenAIBackend: model must be a non-empty model name")
        if not _positive_seconds(timeout):
            raise ConfigError(f"OpenAIBackend: timeout must be a positive number of seconds, got {timeout!r}")
        if not isinstance(max_retries, int) or isinstance(max_retries, bool) or max_retries < 0:
            raise ConfigError(f"OpenAIBackend: max_retries must be an integer >= 0, got {max_retries!r}")
        if deadline is not None and not _positive_seconds(deadline):
            raise ConfigError(
                f"OpenAIBackend: deadline must be a positive number of seconds or None (the default: "
                f"timeout * (max_retries + 1) + {DEFAULT_WAIT_ALLOWANCE:g}), got {deadline!r}"
            )
        if image_format not in ("png", "jpeg"):
            raise ConfigError(f"OpenAIBackend: image_format must be 'png' or 'jpeg', got {image_format!r}")
        if image_detail not in (None, "auto", "low", "high"):
            raise ConfigError(f"OpenAIBackend: image_detail must be auto/low/high/None, got {image_detail!r}")
        if max_tokens is not None and max_tokens <= 0:
            raise ConfigError(f"OpenAIBackend: max_tokens must be positive or None, got {max_tokens!r}")
        if base_url is not None and not base_url.startswith(("http://", "https://")):
            raise ConfigError(
                f"OpenAIBackend: base_url must start with http:// or https://, got {base_url!r} "
                f"(e.g. http://localhost:8000/v1)"
            )

        key = api_key or os.environ.get(api_key_env) or None
        if key is None:
            if base_url is None:
                raise ConfigError(
                    f"OpenAIBackend: no API key for {OPENAI_BASE_URL}: set the {api_key_env} environment "
                    f"variable or pass api_key=...; for a local OpenAI-compatible server (vLLM, Ollama) pass "
                    f"its base_url"
                )
            key = PLACEHOLDER_API_KEY
        register_secret(key)  # ignores placeholders and other values too short to protect anything

        self._model = model
        self._base_url = (base_url or OPENAI_BASE_URL).rstrip("/")
        self._api_key = _Secret(key)
        self._api_key_env = api_key_env
        self._timeout = float(timeout)
        self._max_retries = max_retries
        self._deadline = (
            float(deadline)
            if deadline is not None
            else self._timeout * (max_retries + 1) + DEFAULT_WAIT_ALLOWANCE
        )
        self._image_format: Literal["png", "jpeg"] = image_format
        self._image_detail = image_detail
        self._temperature = temperature
        self._max_tokens = max_tokens
        self._extra_body = dict(extra_body) if extra_body else None
        self._default_headers = dict(default_headers) if default_headers else None
        self._lock = threading.Lock()
        self._client: openai.OpenAI | None = None
        # One AsyncOpenAI per event loop: its pooled connections belong to the loop that opened them.
        self._async_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopClient] = (
            weakref.WeakKeyDictionary()
        )

    # -- public surface --

    @property
    def model_name(self) -> str:
        """The model sent with every request."""
        return self._model

    @property
    def base_url(self) -> str:
        """The server's API root (no trailing slash)."""
        return self._base_url

    @property
    def deadline(self) -> float:
        """Seconds allowed for one call, every attempt and wait included (the default resolved)."""
        return self._deadline

    def __repr__(self) -> str:
        return (
            f"OpenAIBackend(model={self._model!r}, base_url={self._base_url!r}, timeout={self._timeout:g}, "
            f"max_retries={self._max_retries}, deadline={self._deadline:g}, "
            f"image_format={self._image_format!r})"
        )

    def complete(
        self,
        messages: Sequence[ChatMessage],
        *,
        images: ImageStore,
        tools: Sequence[ToolSpec] | None = None,
    ) -> ChatReply:
        """Run one chat turn.

        Args:
            messages: the conversation; image parts are resolved through ``images``.
            images: the image store holding every referenced image.
            tools: functions offered to the model (``tool_choice`` is left to the server's ``"auto"``).

        Returns:
            The model's reply, with token usage and the wall-clock latency (retries included).

        Raises:
            BackendError: a subclass saying what went wrong (timeout, deadline, connection, rate limit, HTTP
                status, credentials, or an unusable reply).
            MessageTranslationError: the messages cannot be expressed in the OpenAI format.
        """
        request = self._request(messages, images, tools)
        client = self._sync_client()
        start = time.perf_counter()
        call = _Call(end=time.monotonic() + self._deadline)
        while True:
            allowance = self._allowance(call)
            token = ATTEMPT_END.set(time.monotonic() + allowance)
            try:
                raw = client.chat.completions.with_raw_response.create(
                    **request, timeout=allowance, extra_headers=self._retry_header(call)
                )
                body = raw.content
            except openai.OpenAIError as err:
                wait = self._next_wait(err, call)
            else:
                return self._reply(body, time.perf_counter() - start)
            finally:
                ATTEMPT_END.reset(token)
            time.sleep(wait)

    async def acomplete(
        self,
        messages: Sequence[ChatMessage],
        *,
        images: ImageStore,
        tools: Sequence[ToolSpec] | None = None,
    ) -> ChatReply:
        """Run one chat turn asynchronously (same contract as :meth:`complete`).

        Args:
            messages: the conversation; image parts are resolved through ``images``.
            images: the image store holding every referenced image.
            tools: functions offered to the model.
        """
        request = self._request(messages, images, tools)
        client = await self._async_client_for_loop()
        start = time.perf_counter()
        call = _Call(end=time.monotonic() + self._deadline)
        while True:
            allowance = self._allowance(call)
            try:
                async with asyncio.timeout(allowance):
                    raw = await client.chat.completions.with_raw_response.create(
                        **request, timeout=allowance, extra_headers=self._retry_header(call)
                    )
                    body = raw.content
            except (openai.OpenAIError, TimeoutError) as err:
                wait = self._next_wait(err, call)
            else:
                return self._reply(body, time.perf_counter() - start)
            await asyncio.sleep(wait)

    def complete_stream(
        self,
        messages: Sequence[ChatMessage],
        *,
        images: ImageStore,
        tools: Sequence[ToolSpec] | None = None,
        on_text: TextSink,
    ) -> ChatReply:
        """Run one chat turn as a stream, passing its text to ``on_text`` as it arrives.

        The request is :meth:`complete`'s with ``stream: true`` (and usage asked for in the last chunk); the
        reply is the one :meth:`complete` would return for the same generation. A server that ignores
        ``stream`` and answers one JSON body is accepted: its text goes to ``on_text`` in one piece.
        Timeouts, the deadline and retries are :meth:`complete`'s, except that an attempt that fails once
        text has been passed on is not retried (the text cannot be taken back).

        Args:
            messages: the conversation; image parts are resolved through ``images``.
            images: the image store holding every referenced image.
            tools: functions offered to the model (their calls arrive as structured deltas: none of their
                text goes to ``on_text``).
            on_text: receives each new, non-empty piece of the reply's text, in order; it must be quick and
                must not raise.

        Returns:
            The model's reply, with token usage and the wall-clock latency (retries included).

        Raises:
            BackendError: a subclass, as for :meth:`complete`; also a :class:`BackendResponseError` for a
                stream that cannot be read (an event that is not JSON, an error event, a stream cut short, no
                choices), and one saying how many characters had streamed when the stream broke.
            MessageTranslationError: the messages cannot be expressed in the OpenAI format.
        """
        request = {**self._request(messages, images, tools), **_STREAM_FIELDS}
        client = self._sync_client()
        start = time.perf_counter()
        call = _Call(end=time.monotonic() + self._deadline)
        while True:
            allowance = self._allowance(call)
            reader = _ChunkReader(self._where, on_text, self._redact)
            # The transport caps every socket read at the attempt's end, so the whole stream is bounded.
            token = ATTEMPT_END.set(time.monotonic() + allowance)
            try:
                with (
                    client.chat.completions.with_streaming_response.create(
                        **request, timeout=allowance, extra_headers=self._retry_header(call)
                    ) as raw,
                    _read_errors(raw.http_response),
                ):
                    for data in raw.iter_bytes():
                        reader.feed(data)
                        if reader.done:
                            break
            except openai.OpenAIError as err:
                wait = self._stream_wait(err, call, reader.streamed)
            else:
                return self._streamed_reply(reader, on_text, time.perf_counter() - start)
            finally:
                ATTEMPT_END.reset(token)
            time.sleep(wait)

    async def acomplete_stream(
        self,
        messages: Sequence[ChatMessage],
        *,
        images: ImageStore,
        tools: Sequence[ToolSpec] | None = None,
        on_text: TextSink,
    ) -> ChatReply:
        """Run one chat turn as a stream, asynchronously (same contract as :meth:`complete_stream`).

        Args:
            messages: the conversation; image parts are resolved through ``images``.
            images: the image store holding every referenced image.
            tools: functions offered to the model.
            on_text: receives each new, non-empty piece of the reply's text, in order (on the event loop).
        """
        request = {**self._request(messages, images, tools), **_STREAM_FIELDS}
        client = await self._async_client_for_loop()
        start = time.perf_counter()
        call = _Call(end=time.monotonic() + self._deadline)
        while True:
            allowance = self._allowance(call)
            reader = _ChunkReader(self._where, on_text, self._redact)
            try:
                async with (
                    asyncio.timeout(allowance),
                    client.chat.completions.with_streaming_response.create(
                        **request, timeout=allowance, extra_headers=self._retry_header(call)
                    ) as raw,
                ):
                    with _read_errors(raw.http_response):
                        async with contextlib.aclosing(raw.iter_bytes()) as pieces:
                            async for data in pieces:
                                reader.feed(data)
                                if reader.done:
                                    break
            except (openai.OpenAIError, TimeoutError) as err:
                wait = self._stream_wait(err, call, reader.streamed)
            else:
                return self._streamed_reply(reader, on_text, time.perf_counter() - start)
            await asyncio.sleep(wait)

    def close(self) -> None:
        """Close the synchronous HTTP client (the backend reopens one if used again).

        Async clients close with their event loop (when ``asyncio.run`` ends it), or with :meth:`aclose`.
        """
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

    async def aclose(self) -> None:
        """Close the synchronous HTTP client and the running event loop's async one."""
        self.close()
        loop = asyncio.get_running_loop()
        with self._lock:
            entry = self._async_clients.pop(loop, None)
        if entry is not None:
            await entry.closer.aclose()  # its finally closes the client

    # -- internals --

    @property
    def _where(self) -> str:
        return f"{self._base_url} (model {self._model!r})"

    def _client_kwargs(self) -> dict[str, Any]:
        return {
            "api_key": self._api_key.value,
            "base_url": self._base_url,
            "timeout": self._timeout,
            "max_retries": 0,  # retries are ours, within the deadline (see _next_wait)
            "default_headers": self._default_headers,
        }

    def _sync_client(self) -> openai.OpenAI:
        with self._lock:
            if self._client is None:
                try:
                    transport = DeadlineTransport(self._base_url)
                except (ValueError, ImportError) as err:
                    detail = f"{type(err).__name__}: {err}"
                    raise ConfigError(
                        redact(
                            f"OpenAIBackend: the proxy that the environment (HTTPS_PROXY, HTTP_PROXY, "
                            f"ALL_PROXY) names for {self._base_url} is not usable: {detail}; fix or unset "
                            f"it, or list the host in NO_PROXY"
                        )
                    ) from None
                http_client = HttpClient(transport=transport)
                self._client = openai.OpenAI(**self._client_kwargs(), http_client=http_client)
            return self._client

    async def _async_client_for_loop(self) -> openai.AsyncOpenAI:
        loop = asyncio.get_running_loop()
        with self._lock:
            entry = self._async_clients.get(loop)
        if entry is not None:
            return entry.client
        client = openai.AsyncOpenAI(**self._client_kwargs())
        closer = _close_with_the_loop(client)
        # Runs to the yield without suspending (so no other task on this loop can get here meanwhile), and
        # registers the generator with this loop.
        await closer.__anext__()
        with self._lock:
            self._async_clients[loop] = _LoopClient(client, closer)
        return client

    def _retry_header(self, call: _Call) -> dict[str, str]:
        # What the openai client sends when it retries itself (it now sees each attempt as a first one).
        return {"x-stainless-retry-count": str(call.retries)}

    def _allowance(self, call: _Call) -> float:
        """Seconds for the next attempt: the timeout, or what is left of the deadline if that is less."""
        left = call.end - time.monotonic()
        call.cut_by_deadline = left < self._timeout
        return max(min(self._timeout, left), 0.001)

    def _next_wait(self, err: openai.OpenAIError | TimeoutError, call: _Call) -> float:
        """The seconds to wait before retrying after ``err``; raises the error to report when no retry is
        due (not retryable, no retries left, or no time left within the deadline)."""
        attempts = call.retries + 1
        if not _should_retry(err) or call.retries >= self._max_retries:
            raise self._translate(err, call) from err
        asked = _retry_after(err.response.headers) if isinstance(err, openai.APIStatusError) else None
        if asked is not None:
            wait = asked
        else:
            wait = min(_INITIAL_BACKOFF * 2.0**call.retries, _MAX_BACKOFF) * (1 - 0.25 * random.random())
        if time.monotonic() + wait >= call.end:
            if asked is not None:
                note = (
                    f"the server asked to retry after {_seconds(asked)} s, which is past the "
                    f"{self._deadline:g} s deadline; gave up after {_attempts(attempts)}"
                )
            else:
                note = (
                    f"no time was left within the {self._deadline:g} s deadline for another attempt; gave up "
                    f"after {_attempts(attempts)}"
                )
            raise self._translate(err, call, note=note) from err
        log.info(
            "%s failed (%s); retrying in %.2f s (retry %d of %d)",
            self._where,
            type(err).__name__,
            wait,
            call.retries + 1,
            self._max_retries,
        )
        call.retries += 1
        return wait

    def _stream_wait(self, err: openai.OpenAIError | TimeoutError, call: _Call, streamed: int) -> float:
        """:meth:`_next_wait` for a streamed attempt, which is not retried once text has been passed on (a
        retry would send it again); the error then says how far the stream got."""
        if not streamed:
            return self._next_wait(err, call)
        failed = self._translate(err, call)
        message = (
            f"{failed} (the stream broke after {streamed} chars of text had been passed on, so it was not "
            f"retried)"
        )
        if isinstance(failed, BackendHTTPError):
            raise type(failed)(message, status_code=failed.status_code) from err
        raise type(failed)(message) from err

    def _streamed_reply(self, reader: _ChunkReader, on_text: TextSink, latency_s: float) -> ChatReply:
        body = reader.plain_body
        if body is not None:  # the server ignored stream=True and sent one JSON body
            reply = self._reply(body, latency_s)
            if reply.text:
                on_text(reply.text)
            return reply
        return self._parsed(reader.finish(), latency_s)

    def _request(
        self, messages: Sequence[ChatMessage], images: ImageStore, tools: Sequence[ToolSpec] | None
    ) -> dict[str, Any]:
        request: dict[str, Any] = {
            "model": self._model,
            "messages": to_openai_messages(messages, images, self._image_format, self._image_detail),
        }
        if tools:
            request["tools"] = [spec.to_openai() for spec in tools]
        if self._temperature is not None:
            request["temperature"] = self._temperature
        if self._max_tokens is not None:
            request["max_tokens"] = self._max_tokens
        if self._extra_body:
            request["extra_body"] = self._extra_body
        return request

    def _reply(self, body: bytes, latency_s: float) -> ChatReply:
        try:
            data = json.loads(body)
        except ValueError as err:  # JSONDecodeError and UnicodeDecodeError
            text = body.decode("utf-8", "replace")
            raise BackendResponseError(
                self._redact(
                    f"{self._where} returned a body that is not JSON ({err}); is base_url the API root of "
                    f"an OpenAI-compatible server? body: {_excerpt(text) or '(empty)'}"
                )
            ) from None
        except RecursionError:
            raise BackendResponseError(
                f"{self._where} returned a JSON body nested too deeply to decode ({len(body)} bytes); it is "
                f"not a chat completion"
            ) from None
        return self._parsed(data, latency_s)

    def _parsed(self, data: Any, latency_s: float) -> ChatReply:
        """The reply in a decoded chat completion (a body, or what a stream's chunks add up to)."""
        try:
            reply = parse_completion(data, where=self._where)
        except BackendResponseError as err:
            raise BackendResponseError(self._redact(str(err))) from None
        return reply.model_copy(update={"latency_s": latency_s})

    def _redact(self, text: str) -> str:
        return redact(text, extra=[self._api_key.value])

    def _redact_cause(self, err: BaseException) -> None:
        """Redact the openai exception that becomes our error's ``__cause__`` (printed in tracebacks, with the
        errors chained under it), in case the server echoed the key back."""
        extra = [self._api_key.value]
        seen: set[int] = set()
        chained: BaseException | None = err
        while chained is not None and id(chained) not in seen:
            seen.add(id(chained))
            chained.args = tuple(redact_value(a, extra) for a in chained.args)
            if isinstance(chained, openai.APIError):
                chained.message = redact(chained.message, extra)
                chained.body = redact_value(chained.body, extra)
            chained = chained.__cause__ or chained.__context__

    def _translate(
        self, err: openai.OpenAIError | TimeoutError, call: _Call, note: str | None = None
    ) -> BackendError:
        """Map a failed attempt onto the BackendError hierarchy (messages redacted, the cause too).

        Args:
            err: the last attempt's error (``TimeoutError``: the async attempt ran out of time).
            call: the call's state (the retries made, whether the deadline cut the last attempt short).
            note: why the call gave up before its retries ran out, appended to the message.
        """
        self._redact_cause(err)
        where = self._where
        retries = call.retries
        tries = f" (after {retries} retr{'y' if retries == 1 else 'ies'})" if retries else ""
        also = f"; {note}" if note else ""
        if isinstance(err, (TimeoutError, openai.APITimeoutError)):
            if call.cut_by_deadline:
                message = (
                    f"{where} did not answer within the {self._deadline:g} s deadline "
                    f"({_attempts(retries + 1)}, {self._timeout:g} s timeout each); raise deadline= "
                    f"(--deadline), and/or timeout=, if the model is just slow, or check that the server is "
                    f"not overloaded"
                )
            else:
                fix = "deadline= (--deadline), and/or timeout=," if note else "timeout= (and/or max_retries=)"
                message = (
                    f"{where} did not answer within the {self._timeout:g} s timeout{tries}{also}; raise "
                    f"{fix} if the model is just slow, or check that the server is not overloaded"
                )
            return BackendTimeoutError(self._redact(message))
        if isinstance(err, openai.APIConnectionError):
            cause = err.__cause__ or err.__context__
            detail = f": {type(cause).__name__}: {_excerpt(str(cause))}" if cause is not None else ""
            return BackendConnectionError(
                self._redact(
                    f"could not connect to {self._base_url} for model {self._model!r}{tries}{detail}{also}; "
                    f"check that the server is running and that base_url (scheme, host, port, /v1) is right"
                )
            )
        if isinstance(err, openai.APIResponseValidationError):
            return BackendResponseError(
                self._redact(
                    f"{where} returned a reply that is not a valid chat completion: {_excerpt(err.message)}; "
                    f"body: {_excerpt(_dumps(err.body))}"
                )
            )
        if isinstance(err, openai.RateLimitError):
            verb = "kept answering" if retries else "answered"
            return BackendRateLimitError(
                self._redact(
                    f"{where} {verb} HTTP 429 Too Many Requests{tries}: {_error_text(err.body)}{also}; "
                    + (
                        "raise deadline= (--deadline), or lower the request rate or concurrency"
                        if note
                        else "lower the request rate or concurrency, or raise max_retries"
                    )
                )
            )
        if isinstance(err, (openai.AuthenticationError, openai.PermissionDeniedError)):
            return BackendAuthError(
                self._redact(
                    f"{where} refused the credentials (HTTP {err.status_code}): {_error_text(err.body)}; "
                    f"check the API key (the {self._api_key_env} environment variable or api_key=) and its "
                    f"access to the model"
                ),
                status_code=err.status_code,
            )
        if isinstance(err, openai.NotFoundError):
            return BackendHTTPError(
                self._redact(
                    f"{where} answered HTTP 404 Not Found: {_error_text(err.body)}; the model name "
                    f"{self._model!r} may be wrong (list the server's models), or base_url may lack its /v1"
                ),
                status_code=404,
            )
        if isinstance(err, openai.APIStatusError):
            return BackendHTTPError(
                self._redact(
                    f"{where} answered HTTP {err.status_code}{tries}: {_error_text(err.body)}{also}"
                    + ("; raise deadline= (--deadline), or try again later" if note else "")
                ),
                status_code=err.status_code,
            )
        return BackendError(
            self._redact(f"{where}: the openai client failed: {type(err).__name__}: {_excerpt(str(err))}")
        )


@contextlib.contextmanager
def _read_errors(response: httpx2.Response) -> Iterator[None]:
    """Raise the openai client's errors for a failure while reading a streamed body (the client maps the
    transport's errors only while it sends the request and reads the headers)."""
    try:
        yield
    except httpx2.TimeoutException as err:
        raise openai.APITimeoutError(request=response.request) from err
    except (httpx2.RequestError, ssl.SSLError) as err:
        raise openai.APIConnectionError(request=response.request) from err


def _positive_seconds(value: object) -> bool:
    return (
        isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0
    )
