"""Reading the reply to a ``stream: true`` chat-completions request into the completion it adds up to.

The server-sent events (:mod:`~awares_agent.backends.sse`) carry chat completion chunks; each piece of text
is passed on as it arrives and tool-call deltas are merged by their ``index``, so that the chunks add up to
the chat completion the server would have sent whole, which
:func:`~awares_agent.backends.openai_parsing.parse_completion` then reads: a streamed turn and a whole one
give the same reply. A server that ignores ``stream`` and answers one JSON body is accepted too.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

from awares_agent.backends.base import TextSink
from awares_agent.backends.openai_parsing import error_text, json_kind, message_text
from awares_agent.backends.sse import EventDecoder, ServerSentEvent, StreamLineError
from awares_agent.errors import BackendResponseError
from awares_agent.redact import excerpt

__all__ = ["STREAM_FIELDS", "ChunkReader"]

#: What a streamed request adds to the body: token usage comes in a last chunk (with ``choices: []``).
STREAM_FIELDS: dict[str, Any] = {"stream": True, "stream_options": {"include_usage": True}}

#: Bytes of the reply's start kept to show when it is neither server-sent events nor JSON.
_HEAD_BYTES = 4096


class ChunkReader:
    """Reads the reply to a ``stream: true`` request, fed its raw bytes, into the equivalent chat completion.

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
        self._blank = bytearray()  # the reply's leading blanks, while it is undecided
        self._sse = False  # decided by the reply's first non-blank byte
        self._plain: bytearray | None = None
        self._decoder = EventDecoder()
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
        return None if self._sse else bytes(self._blank)

    def feed(self, data: bytes) -> bool:
        """Read the next bytes of the reply.

        Returns:
            Whether the reply is complete (``data: [DONE]`` arrived): nothing more need be read.

        Raises:
            BackendResponseError: an event that is not JSON, is not a chunk, or reports an error.
        """
        if len(self._head) < _HEAD_BYTES:
            self._head += data[: _HEAD_BYTES - len(self._head)]
        if self._plain is not None:
            self._plain += data
            return False
        if not self._sse:
            start = data.lstrip()
            if not start:
                self._blank += data
                return False
            if start[:1] in (b"{", b"["):  # a JSON body: this server ignored stream=True
                self._plain = self._blank + data
                self._blank = bytearray()
                return False
            self._sse = True
            data, self._blank = bytes(self._blank) + data, bytearray()
        self._read(self._decoder.feed(data))
        return self.done

    def finish(self) -> dict[str, Any]:
        """The chat completion the events add up to, once the reply has ended (not for a plain body).

        Raises:
            BackendResponseError: the reply held no events, was cut short (no ``[DONE]`` and no
                ``finish_reason``), or held no choices.
        """
        if not self.done:
            self._read(self._decoder.close())  # a last line without its line end still counts
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
        body = f"; {label}: {excerpt(shown) or '(empty)'}" if shown is not None else ""
        return BackendResponseError(self._redact(f"{self._where} {what}{broke}{fix}{body}"))

    def _read(self, events: Iterator[ServerSentEvent]) -> None:
        """Handle ``events`` in order, up to ``[DONE]`` (what follows it is not read)."""
        try:
            for event in events:
                self._on_event(event)
                if self.done:
                    return
        except StreamLineError as err:
            raise self._fail(f"sent a stream line that is not UTF-8 ({err})", shown=repr(err.line)) from None

    def _on_event(self, event: ServerSentEvent) -> None:
        data = event.data
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
        if event.event == "error" or (isinstance(chunk, dict) and chunk.get("error") is not None):
            raise self._fail(f"reported an error mid-stream: {error_text(chunk)}")
        self._chunk(chunk, data)

    def _chunk(self, chunk: Any, data: str) -> None:
        def bad(what: str) -> BackendResponseError:
            return self._fail(f"sent an invalid chat completion chunk: {what}", shown=data)

        if not isinstance(chunk, dict):
            raise bad(f"expected a JSON object, got {json_kind(chunk)}")
        if isinstance(chunk.get("model"), str) and chunk["model"]:
            self._model = chunk["model"]
        if chunk.get("usage") is not None:  # the last one wins: some servers report it on every chunk
            self._usage = chunk["usage"]
        choices = chunk.get("choices")
        if choices is None:
            return
        if not isinstance(choices, list):
            raise bad(f"'choices' is {json_kind(choices)}, not a list")
        for choice in choices:
            if not isinstance(choice, dict):
                raise bad(f"a choice is {json_kind(choice)}, not an object")
            if choice.get("index") not in (0, None):  # only one choice is asked for; the first is the reply
                continue
            self._choices = True
            delta = choice.get("delta")
            if delta is None:
                delta = {}
            if not isinstance(delta, dict):
                raise bad(f"'delta' is {json_kind(delta)}, not an object")
            piece = message_text(delta.get("content"), bad)
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
            raise bad(f"'tool_calls' is {json_kind(calls)}, not a list")
        for n, call in enumerate(calls):
            if not isinstance(call, dict):
                raise bad(f"tool call delta {n} is {json_kind(call)}, not an object")
            call_id = call.get("id")
            if isinstance(call_id, int) and not isinstance(call_id, bool):
                call_id = str(call_id)
            index = call.get("index")
            if index is None:
                index = self._unindexed(call_id)
            elif not isinstance(index, int) or isinstance(index, bool):
                raise bad(f"tool call delta {n} has an index that is {json_kind(index)}, not an int")
            merged = self._calls.setdefault(index, {})
            if isinstance(call_id, str):
                _merge_piece(merged, "id", call_id)
            function = call.get("function")
            if function is None:
                continue
            if not isinstance(function, dict):
                raise bad(
                    f"tool call delta {n} has a 'function' that is {json_kind(function)}, not an object"
                )
            name = function.get("name")
            if name is not None and not isinstance(name, str):
                raise bad(f"tool call {index} has a function name that is {json_kind(name)}, not a string")
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
