"""Server-sent events: a byte stream split into its events, as the HTML standard's event-stream format says.

Lines are split here, not by httpx's ``iter_lines``: that splits on every line break ``str.splitlines``
knows (U+2028, U+0085...), which a JSON string in a ``data:`` line may hold raw. An event is the ``data``
lines (joined with ``\\n``) and the ``event`` type read up to a blank line; comments (``: keep-alive``),
``id`` and ``retry`` lines are skipped.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

__all__ = ["EventDecoder", "ServerSentEvent", "StreamLineError"]

#: SSE ends lines at CRLF, LF or CR only (a lone CR at the end of a read may be the first half of a CRLF).
_LINE_END = re.compile(rb"\r\n|\r|\n")


@dataclass(frozen=True)
class ServerSentEvent:
    """One event: its ``data`` lines joined with ``\\n``, and its ``event`` type (``""`` when not given)."""

    data: str
    event: str = ""


class StreamLineError(ValueError):
    """A line of the stream is not UTF-8. ``line`` holds its bytes."""

    def __init__(self, line: bytes, reason: str) -> None:
        super().__init__(reason)
        self.line = line


class EventDecoder:
    """Turns the bytes of an event stream, fed as they arrive, into :class:`ServerSentEvent` objects.

    An event without ``data`` lines is not dispatched. Iterate each :meth:`feed` (and :meth:`close`) for the
    events it completes; a consumer that stops iterating early (it has read all it needs) leaves the rest
    unread.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._scanned = 0  # buffer bytes known to hold no line end (so a long line is scanned once)
        self._data: list[str] = []  # the current event's data lines
        self._event = ""  # the current event's type

    def feed(self, data: bytes) -> Iterator[ServerSentEvent]:
        """The events that ``data`` completes, in order.

        Raises:
            StreamLineError: a line that is not UTF-8.
        """
        self._buffer += data
        used = 0
        for cut in _LINE_END.finditer(self._buffer, self._scanned):
            if cut.group() == b"\r" and cut.end() == len(self._buffer):
                break
            line = bytes(self._buffer[used : cut.start()])
            used = cut.end()
            event = self._line(line)
            if event is not None:
                yield event
        del self._buffer[:used]
        # What is left holds no line end, but for a last CR that may be the first half of a CRLF.
        self._scanned = max(len(self._buffer) - 1, 0)

    def close(self) -> Iterator[ServerSentEvent]:
        """The last event, once the stream has ended: its last line counts without its line end.

        Raises:
            StreamLineError: a last line that is not UTF-8.
        """
        if self._buffer:
            event = self._line(bytes(self._buffer.removesuffix(b"\r")))
            self._buffer.clear()
            self._scanned = 0
            if event is not None:
                yield event
        event = self._dispatch()
        if event is not None:
            yield event

    def _line(self, raw: bytes) -> ServerSentEvent | None:
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as err:
            raise StreamLineError(raw, str(err)) from None
        if not line:
            return self._dispatch()
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "data":
            self._data.append(value)
        elif field == "event":
            self._event = value
        return None

    def _dispatch(self) -> ServerSentEvent | None:
        """The event whose lines were read (a blank line ends an event); ``None`` if it had no data."""
        data, event = self._data, self._event
        self._data, self._event = [], ""
        return ServerSentEvent("\n".join(data), event) if data else None
