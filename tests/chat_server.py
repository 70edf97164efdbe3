"""A real loopback HTTP server that speaks the OpenAI chat-completions contract and answers from a script.

It is the stand-in for a remote model server (vLLM, Ollama, api.openai.com) in the project's tests: the code
under test talks to it over real HTTP with the real ``openai`` client, so request encoding, retries, timeouts
and error handling are all exercised for real.

Typical use (the ``chat_server`` fixture in ``tests/conftest.py`` yields a started server)::

    chat_server.enqueue(
        Completion(tool_calls=[("request_crops", {"crops": [0]})]),
        Completion(text="The sign says STOP."),
    )
    backend = OpenAIBackend("scripted-model", base_url=chat_server.base_url)
    ...
    assert len(chat_server.requests) == 2
    assert chat_server.requests[1].messages[-1]["role"] == "user"

Replies are consumed in order, one per ``POST /v1/chat/completions`` (a retried request consumes the next
one). A reply is one of :class:`Completion`, :class:`HTTPError`, :class:`Delay`, :class:`Trickle`,
:class:`Dropped`, :class:`Garbage`, :class:`RawJSON`, :class:`Echo`, :class:`Flood`, or a callable taking the
:class:`RecordedRequest` and returning one of those.
When the script is empty the server answers HTTP 500 with ``x-should-retry: false`` and an error message
saying so, so an under-scripted test fails at once and loudly instead of hanging in retries.

Note on retries: the ``openai`` client only honours a *positive* ``Retry-After``; ``retry-after: 0`` falls
back to its exponential backoff (about 0.5 s, 1 s, 2 s...). Use :data:`FAST_RETRY` (``retry-after-ms: 1``) on
scripted 429/5xx replies to keep tests fast.
"""

from __future__ import annotations

import base64
import io
import json
import threading
import time
import uuid
import zlib
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, TypeAlias

if TYPE_CHECKING:
    from PIL import Image

__all__ = [
    "FAST_RETRY",
    "Completion",
    "Delay",
    "Dropped",
    "Echo",
    "Flood",
    "Garbage",
    "HTTPError",
    "RawJSON",
    "RecordedRequest",
    "Reply",
    "ScriptedChatServer",
    "Trickle",
]

#: Headers that make the openai client retry after 1 ms instead of its ~0.5 s+ exponential backoff.
FAST_RETRY: dict[str, str] = {"retry-after-ms": "1"}

CHAT_PATH = "/v1/chat/completions"


# --- scripted replies ----------------------------------------------------------------------------------


@dataclass
class Completion:
    """A successful chat completion.

    Attributes:
        text: the assistant message ``content`` (``None`` is sent as JSON ``null``).
        tool_calls: ``(name, arguments)`` pairs; a dict is JSON-encoded, a string is sent as-is (so a test can
            send malformed JSON).
        finish_reason: defaults to ``"tool_calls"`` when there are tool calls, else ``"stop"``.
        prompt_tokens: reported prompt tokens; ``usage`` is omitted when both token counts are ``None``.
        completion_tokens: reported completion tokens.
        tool_call_ids: ids for the tool calls, in order; ``None`` (the default) numbers them ``call_0``,
            ``call_1``...; a ``None`` entry omits that call's ``id`` field altogether.
        model: the ``model`` field of the reply; defaults to the model named in the request.
    """

    text: str | None = None
    tool_calls: list[tuple[str, dict[str, Any] | str]] = field(default_factory=list)
    finish_reason: str | None = None
    prompt_tokens: int | None = 10
    completion_tokens: int | None = 5
    tool_call_ids: list[str | None] | None = None
    model: str | None = None


@dataclass
class HTTPError:
    """An HTTP error status.

    Attributes:
        status: the HTTP status code, e.g. 429 or 500.
        body: a dict is sent as JSON, a string as ``text/plain``; ``None`` sends an OpenAI-style
            ``{"error": {"message": ...}}`` body.
        headers: extra response headers, e.g. :data:`FAST_RETRY` or ``{"x-should-retry": "false"}``.
    """

    status: int
    body: dict[str, Any] | str | None = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Delay:
    """Wait ``seconds``, then send ``then`` (for timeout tests); stopping the server cuts the wait short.

    Attributes:
        seconds: how long to wait before answering.
        then: the reply sent after the wait (by then the client may have given up).
    """

    seconds: float
    then: Reply = field(default_factory=lambda: Completion(text=""))


@dataclass
class Trickle:
    """Send ``then`` a few bytes at a time with a pause between writes: a server that never stalls long enough
    for a per-read timeout, yet takes as long as it likes to finish (for whole-request timeout tests).

    The response is written by hand (status line, headers, body) with ``Connection: close``; stopping the
    server cuts it short.

    Attributes:
        then: the reply to trickle (not a :class:`Delay` or another :class:`Trickle`).
        interval: seconds between writes.
        chunk: bytes per write.
        headers_too: trickle the status line and headers as well (by default they go out at once, and only the
            body trickles).
    """

    then: Reply = field(default_factory=lambda: Completion(text="slowly"))
    interval: float = 0.1
    chunk: int = 1
    headers_too: bool = False


@dataclass
class Dropped:
    """Send the status, the headers (announcing the whole body) and the first ``after`` bytes of ``then``'s
    body, then close the connection: a server or proxy that dies mid-reply.

    Attributes:
        then: the reply to cut (a plain one: not a :class:`Delay`, :class:`Trickle` or streamed
            :class:`Completion`; a :class:`Garbage` body stands in for a stream).
        after: body bytes sent before the connection closes.
    """

    then: Reply
    after: int


@dataclass
class Garbage:
    """Raw bytes as the response body, e.g. a truncated or non-JSON body with a JSON content type.

    Attributes:
        body: the exact response body.
        status: the HTTP status code.
        content_type: the ``Content-Type`` header.
    """

    body: bytes
    status: int = 200
    content_type: str = "application/json"


@dataclass
class RawJSON:
    """Any JSON value as the response body, e.g. ``{"choices": []}`` or a completion with odd fields.

    Attributes:
        body: the JSON value to send.
        status: the HTTP status code.
        headers: extra response headers.
    """

    body: Any
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Echo:
    """A completion whose text is the text of the last user message of the request (images are skipped).

    Attributes:
        prefix: prepended to the echoed text.
    """

    prefix: str = ""


@dataclass
class Flood:
    """A reply far larger than any chat completion, made as it is written (the server holds none of it), for
    tests of the cap on a reply's size.

    By default it is one chat completion JSON body whose text runs on for ``size`` bytes, announced by its
    ``Content-Length``; with ``sse``, chat completion chunk events of about ``chunk`` bytes each (at least
    ``size`` bytes of them, then ``[DONE]``), whatever the request asked for. Without a ``size`` (or with
    ``gzip``) the body has no announced length and ends when the connection closes.

    Attributes:
        size: body bytes to send (decoded bytes with ``gzip``); ``None`` sends until the client hangs up or
            the server stops.
        sse: send server-sent events (``text/event-stream``) instead of one JSON body.
        status: the HTTP status.
        chunk: bytes per write (before compression).
        gzip: send the body gzip-compressed (``Content-Encoding: gzip``): a few KiB that inflate to ``size``.
        sent: set by the server: body bytes written so far (compressed bytes with ``gzip``).
        hung_up: set by the server when the client closed the connection before the body ended.
        ended: set by the server when it stopped writing, for whatever reason.
    """

    size: int | None = 300 * 1024 * 1024
    sse: bool = False
    status: int = 200
    chunk: int = 64 * 1024
    gzip: bool = False
    sent: int = field(default=0, init=False)
    hung_up: threading.Event = field(default_factory=threading.Event, init=False)
    ended: threading.Event = field(default_factory=threading.Event, init=False)


Reply: TypeAlias = (
    "Completion | HTTPError | Delay | Trickle | Dropped | Garbage | RawJSON | Echo | Flood "
    "| Callable[[RecordedRequest], Reply]"
)


# --- recorded requests ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class RecordedRequest:
    """One request the server received.

    Attributes:
        method: the HTTP method.
        path: the request path, e.g. ``/v1/chat/completions``.
        headers: the request headers, names lower-cased.
        body: the parsed JSON body (``None`` when there was none or it was not JSON).
        raw_body: the body bytes as received.
    """

    method: str
    path: str
    headers: dict[str, str]
    body: Any
    raw_body: bytes

    @property
    def json(self) -> dict[str, Any]:
        """The JSON body as a dict (``{}`` when it was not a JSON object)."""
        return self.body if isinstance(self.body, dict) else {}

    @property
    def model(self) -> str | None:
        """The ``model`` the request named."""
        return self.json.get("model")

    @property
    def messages(self) -> list[dict[str, Any]]:
        """The request's ``messages``."""
        return list(self.json.get("messages") or [])

    @property
    def tools(self) -> list[dict[str, Any]] | None:
        """The request's ``tools`` (``None`` when the field is absent)."""
        return self.json.get("tools")

    def image_urls(self) -> list[str]:
        """Every ``image_url.url`` in the messages, in order."""
        urls = []
        for message in self.messages:
            content = message.get("content")
            if isinstance(content, list):
                urls.extend(
                    part["image_url"]["url"]
                    for part in content
                    if isinstance(part, dict) and part.get("type") == "image_url"
                )
        return urls

    def images(self) -> list[Image.Image]:
        """The images sent as base64 ``data:`` URIs, decoded, in order (other URLs are skipped)."""
        from PIL import Image

        out = []
        for url in self.image_urls():
            if url.startswith("data:"):
                _, b64 = url.split(",", 1)
                img = Image.open(io.BytesIO(base64.b64decode(b64)))
                img.load()
                out.append(img)
        return out


# --- the server ----------------------------------------------------------------------------------------


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # the default backlog of 5 drops connections when many clients connect at once
    owner: ScriptedChatServer


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; with Nagle's algorithm the body would wait ~40 ms for the
    # client's delayed ACK on every request.
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # silence the per-request stderr log
        pass

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def _handle(self) -> None:
        try:
            self.server.owner._handle(self)
        except (BrokenPipeError, ConnectionResetError):
            # The client gave up (timeout) before we answered.
            self.close_connection = True


class ScriptedChatServer:
    """An OpenAI-compatible chat-completions server on ``127.0.0.1`` that answers from a script.

    Use it as a context manager (or call :meth:`start` / :meth:`stop`). All methods are thread-safe.

    Args:
        replies: initial script (more can be added with :meth:`enqueue` at any time).
        models: model ids listed by ``GET /v1/models``.

    Attributes:
        requests: every request received (a snapshot list of :class:`RecordedRequest`).
    """

    def __init__(self, *replies: Reply, models: Sequence[str] = ("scripted-model",)) -> None:
        self._lock = threading.Lock()
        self._script: deque[Reply] = deque(replies)
        self._requests: list[RecordedRequest] = []
        self._models = list(models)
        self._stopping = threading.Event()
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None
        self.unscripted: int = 0

    # -- lifecycle --

    def start(self) -> ScriptedChatServer:
        """Bind a free port on 127.0.0.1 and serve in a daemon thread. Returns ``self``."""
        if self._httpd is not None:
            return self
        httpd = _Server(("127.0.0.1", 0), _Handler)
        httpd.owner = self
        self._httpd = httpd
        self._stopping.clear()
        # A short poll interval keeps stop() (which waits for the serving loop to notice) fast.
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, name="ScriptedChatServer", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the listening socket (pending :class:`Delay` sleeps are cut short)."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        self._stopping.set()
        httpd.shutdown()
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> ScriptedChatServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- addresses --

    @property
    def port(self) -> int:
        """The bound port."""
        if self._httpd is None:
            raise RuntimeError(
                "ScriptedChatServer is not running: call start() or use it as a context manager"
            )
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        """The server root, e.g. ``http://127.0.0.1:PORT``."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        """The OpenAI ``base_url``, e.g. ``http://127.0.0.1:PORT/v1``."""
        return f"{self.url}/v1"

    # -- script and records --

    def enqueue(self, *replies: Reply) -> None:
        """Append replies to the script, in order."""
        with self._lock:
            self._script.extend(replies)

    @property
    def pending(self) -> int:
        """How many scripted replies are not consumed yet."""
        with self._lock:
            return len(self._script)

    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot of every request received, in arrival order."""
        with self._lock:
            return list(self._requests)

    @property
    def chat_requests(self) -> list[RecordedRequest]:
        """A snapshot of the ``POST /v1/chat/completions`` requests."""
        return [r for r in self.requests if r.method == "POST" and r.path == CHAT_PATH]

    @property
    def last_request(self) -> RecordedRequest:
        """The most recent request (``IndexError`` when none was received)."""
        with self._lock:
            return self._requests[-1]

    def clear(self) -> None:
        """Forget recorded requests and drop the remaining script."""
        with self._lock:
            self._requests.clear()
            self._script.clear()
            self.unscripted = 0

    # -- request handling (runs on handler threads) --

    def _handle(self, h: _Handler) -> None:
        length = int(h.headers.get("content-length") or 0)
        raw = h.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        path = h.path.split("?", 1)[0]
        req = RecordedRequest(
            method=h.command,
            path=path,
            headers={k.lower(): v for k, v in h.headers.items()},
            body=body,
            raw_body=raw,
        )
        with self._lock:
            self._requests.append(req)
            number = len(self._requests)

        if h.command == "GET" and path == "/v1/models":
            data = [{"id": m, "object": "model", "created": 0, "owned_by": "scripted"} for m in self._models]
            self._send_json(h, 200, {"object": "list", "data": data})
            return
        if h.command != "POST" or path != CHAT_PATH:
            msg = f"ScriptedChatServer: no route for {h.command} {path}; only POST {CHAT_PATH} is served"
            self._send_json(h, 404, _error_body(msg, "not_found"), {"x-should-retry": "false"})
            return
        if body is None or not isinstance(body, dict):
            msg = "ScriptedChatServer: the request body is not a JSON object"
            self._send_json(h, 400, _error_body(msg, "invalid_request_error"), {"x-should-retry": "false"})
            return

        with self._lock:
            reply: Reply | None = self._script.popleft() if self._script else None
            if reply is None:
                self.unscripted += 1
        if reply is None:
            msg = (
                f"ScriptedChatServer: no scripted reply left for request #{number} "
                f"(model={body.get('model')!r}); enqueue() more replies"
            )
            self._send_json(h, 500, _error_body(msg, "script_exhausted"), {"x-should-retry": "false"})
            return
        self._send_reply(h, req, reply)

    def _send_reply(self, h: _Handler, req: RecordedRequest, reply: Reply) -> None:
        while callable(reply):  # a function of the request (the reply dataclasses are not callable)
            reply = reply(req)
        if isinstance(reply, Delay):
            if self._stopping.wait(reply.seconds):
                h.close_connection = True
                return
            self._send_reply(h, req, reply.then)
        elif isinstance(reply, Trickle):
            self._send_trickle(h, req, reply)
        elif isinstance(reply, Flood):
            try:
                self._send_flood(h, req, reply)
            except (BrokenPipeError, ConnectionResetError):
                reply.hung_up.set()
                h.close_connection = True
            finally:
                reply.ended.set()
        elif isinstance(reply, Dropped):
            status, data, content_type, headers = self._render(req, reply.then)
            h.close_connection = True
            self._send_bytes(
                h, status, data, content_type, {**headers, "Connection": "close"}, sent=reply.after
            )
        elif isinstance(reply, Echo):
            self._send_reply(h, req, Completion(text=reply.prefix + _last_user_text(req.messages)))
        elif isinstance(reply, Completion) and req.json.get("stream"):
            self._send_stream(h, req, reply)
        else:
            status, data, content_type, headers = self._render(req, reply)
            self._send_bytes(h, status, data, content_type, headers)

    def _render(self, req: RecordedRequest, reply: Reply) -> tuple[int, bytes, str, dict[str, str]]:
        """A plain (not delayed, not streamed) reply as ``(status, body, content type, extra headers)``."""
        while callable(reply):
            reply = reply(req)
        if isinstance(reply, Echo):
            return self._render(req, Completion(text=reply.prefix + _last_user_text(req.messages)))
        if isinstance(reply, Completion):
            return 200, json.dumps(_completion_body(reply, req)).encode(), "application/json", {}
        if isinstance(reply, HTTPError):
            if isinstance(reply.body, str):
                return reply.status, reply.body.encode(), "text/plain; charset=utf-8", reply.headers
            body = reply.body if reply.body is not None else _error_body(f"scripted HTTP {reply.status}")
            return reply.status, json.dumps(body).encode(), "application/json", reply.headers
        if isinstance(reply, Garbage):
            return reply.status, reply.body, reply.content_type, {}
        if isinstance(reply, RawJSON):
            return reply.status, json.dumps(reply.body).encode(), "application/json", reply.headers
        raise TypeError(f"ScriptedChatServer: not a plain scripted reply: {reply!r}")

    def _send_trickle(self, h: _Handler, req: RecordedRequest, reply: Trickle) -> None:
        status, data, content_type, headers = self._render(req, reply.then)
        lines = [
            f"HTTP/1.1 {status} {h.responses.get(status, ('',))[0]}",
            f"Content-Type: {content_type}",
            f"Content-Length: {len(data)}",
            "Connection: close",
            *(f"{k}: {v}" for k, v in headers.items()),
        ]
        head = ("\r\n".join(lines) + "\r\n\r\n").encode()
        h.close_connection = True
        if not reply.headers_too:
            h.wfile.write(head)
            h.wfile.flush()
        rest = head + data if reply.headers_too else data
        step = max(1, reply.chunk)
        for i in range(0, len(rest), step):
            if i and self._stopping.wait(reply.interval):
                return
            h.wfile.write(rest[i : i + step])
            h.wfile.flush()

    def _send_flood(self, h: _Handler, req: RecordedRequest, reply: Flood) -> None:
        model = req.model or "scripted-model"
        if reply.sse:
            content_type = "text/event-stream"
            base = {"id": "chatcmpl-flood", "object": "chat.completion.chunk", "created": 0, "model": model}
            head = f"data: {json.dumps({**base, 'choices': [_delta({'role': 'assistant'})]})}\n\n".encode()
            event = {**base, "choices": [_delta({"content": "x" * max(1, reply.chunk - 200)})]}
            piece = f"data: {json.dumps(event)}\n\n".encode()
            last = {**base, "choices": [_delta({}, "length")]}
            tail = f"data: {json.dumps(last)}\n\ndata: [DONE]\n\n".encode()
        else:
            content_type = "application/json"
            message = {"role": "assistant", "content": "@TEXT@"}
            completion = {
                "id": "chatcmpl-flood",
                "object": "chat.completion",
                "created": 0,
                "model": model,
                "choices": [{"index": 0, "message": message, "finish_reason": "length"}],
            }
            head, tail = json.dumps(completion).encode().split(b"@TEXT@")  # the text runs on between them
            piece = b"x" * reply.chunk
        h.close_connection = True
        h.send_response(reply.status)
        h.send_header("Content-Type", content_type)
        if reply.size is not None and not reply.gzip and not reply.sse:
            h.send_header("Content-Length", str(reply.size))
        if reply.gzip:
            h.send_header("Content-Encoding", "gzip")
        h.send_header("Connection", "close")
        h.end_headers()
        packer = zlib.compressobj(9, zlib.DEFLATED, 31) if reply.gzip else None

        def write(data: bytes, *, last: bool = False) -> None:
            if packer is not None:
                data = packer.compress(data) + packer.flush(zlib.Z_FINISH if last else zlib.Z_SYNC_FLUSH)
            h.wfile.write(data)
            h.wfile.flush()
            reply.sent += len(data)

        write(head)
        made = len(head)
        while reply.size is None or made + len(tail) < reply.size:
            if self._stopping.is_set():
                return
            if reply.size is not None and not reply.sse:
                data = piece[: reply.size - len(tail) - made]
            else:
                data = piece
            write(data)
            made += len(data)
        write(tail, last=True)

    @staticmethod
    def _send_bytes(
        h: _Handler,
        status: int,
        data: bytes,
        content_type: str,
        headers: dict[str, str] | None = None,
        sent: int | None = None,
    ) -> None:
        """Send a whole response; with ``sent``, only that many bytes of its body (the length announced is
        still the whole body's)."""
        h.send_response(status)
        h.send_header("Content-Type", content_type)
        h.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.end_headers()
        h.wfile.write(data if sent is None else data[:sent])
        h.wfile.flush()

    def _send_json(self, h: _Handler, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        self._send_bytes(h, status, json.dumps(body).encode(), "application/json", headers)

    def _send_stream(self, h: _Handler, req: RecordedRequest, reply: Completion) -> None:
        """Send the completion as ``chat.completion.chunk`` server-sent events, then ``[DONE]``."""
        h.send_response(200)
        h.send_header("Content-Type", "text/event-stream")
        h.send_header("Cache-Control", "no-cache")
        h.send_header("Connection", "close")
        h.end_headers()
        h.close_connection = True
        for chunk in _stream_chunks(reply, req):
            h.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
            h.wfile.flush()
        h.wfile.write(b"data: [DONE]\n\n")
        h.wfile.flush()


# --- body builders -------------------------------------------------------------------------------------


def _error_body(message: str, type_: str = "server_error") -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": None, "code": None}}


def _delta(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}


def _last_user_text(messages: Iterable[dict[str, Any]]) -> str:
    for message in reversed(list(messages)):
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                return content
            if isinstance(content, list):
                return "".join(
                    p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text"
                )
    return ""


def _tool_calls_json(reply: Completion) -> list[dict[str, Any]]:
    calls = []
    for i, (name, args) in enumerate(reply.tool_calls):
        call: dict[str, Any] = {
            "type": "function",
            "function": {"name": name, "arguments": args if isinstance(args, str) else json.dumps(args)},
        }
        call_id = reply.tool_call_ids[i] if reply.tool_call_ids is not None else f"call_{i}"
        if call_id is not None:
            call = {"id": call_id, **call}
        calls.append(call)
    return calls


def _finish_reason(reply: Completion) -> str:
    return reply.finish_reason or ("tool_calls" if reply.tool_calls else "stop")


def _usage(reply: Completion) -> dict[str, int] | None:
    if reply.prompt_tokens is None and reply.completion_tokens is None:
        return None
    p, c = reply.prompt_tokens or 0, reply.completion_tokens or 0
    return {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}


def _completion_body(reply: Completion, req: RecordedRequest) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": reply.text}
    if reply.tool_calls:
        message["tool_calls"] = _tool_calls_json(reply)
    body: dict[str, Any] = {
        "id": f"chatcmpl-{uuid.uuid4().hex[:12]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": reply.model or req.model or "scripted-model",
        "choices": [
            {"index": 0, "message": message, "finish_reason": _finish_reason(reply), "logprobs": None}
        ],
    }
    usage = _usage(reply)
    if usage is not None:
        body["usage"] = usage
    return body


def _stream_chunks(reply: Completion, req: RecordedRequest) -> list[dict[str, Any]]:
    base = {
        "id": f"chatcmpl-{uuid.uuid4().hex[:12]}",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": reply.model or req.model or "scripted-model",
    }

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}]}

    chunks = [chunk({"role": "assistant", "content": ""})]
    if reply.text:
        # Split into word-sized deltas so clients really have to accumulate.
        words = reply.text.split(" ")
        chunks.extend(chunk({"content": w if i == 0 else " " + w}) for i, w in enumerate(words))
    for i, call in enumerate(_tool_calls_json(reply)):
        args = call["function"]["arguments"]
        head = {
            "index": i,
            "type": "function",
            "function": {"name": call["function"]["name"], "arguments": ""},
        }
        if "id" in call:
            head["id"] = call["id"]
        chunks.append(chunk({"tool_calls": [head]}))
        half = len(args) // 2
        for piece in (args[:half], args[half:]):
            if piece:
                chunks.append(chunk({"tool_calls": [{"index": i, "function": {"arguments": piece}}]}))
    chunks.append(chunk({}, _finish_reason(reply)))
    usage = _usage(reply)
    if usage is not None and (req.json.get("stream_options") or {}).get("include_usage"):
        chunks.append({**base, "choices": [], "usage": usage})
    return chunks
