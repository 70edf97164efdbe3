"""``awares serve`` facing untrusted clients: what a client writes is never opened as a path, never fetched
from the server's own network, never held past its limits, and never answered with a traceback or a key.

A real uvicorn server on loopback, real clients (the openai package, httpx, raw sockets), the scripted
upstream (``chat_server``) and, where an upstream must hang, a raw socket server that records when its
connection closes. Python's audit hooks see every file the process opens: a path a client sends is checked
against them.
"""

from __future__ import annotations

import io
import json
import logging
import socket
import sys
import threading
import time
import zlib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import openai
import pytest
from chat_server import Completion, Delay, HTTPError, RecordedRequest, ScriptedChatServer
from PIL import Image
from real_images import REAL
from serve_live import IMAGE, MODEL, LiveServer, data_uri, image_request, serve_options

from awares_agent.backend_factory import BackendOptions
from awares_agent.config import AgentConfig

UPSTREAM_KEY = "sk-upstream-0123456789abcdefSECRET"
CLIENT_KEY = "client-key-4242424242"


@pytest.fixture(scope="module")
def upstream() -> Iterator[ScriptedChatServer]:
    with ScriptedChatServer() as server:
        yield server


@pytest.fixture(autouse=True)
def fresh_script(upstream: ScriptedChatServer) -> None:
    upstream.clear()


@pytest.fixture(scope="module")
def server(upstream: ScriptedChatServer) -> Iterator[LiveServer]:
    with LiveServer(serve_options(upstream.base_url)) as live:
        yield live


def _post(server: LiveServer, body: object, **kwargs: object) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    reply = httpx.post(f"{server.base_url}/chat/completions", content=content, timeout=30, **kwargs)
    assert "Traceback" not in reply.text and 'File "' not in reply.text
    return reply


def _error(reply: httpx.Response, status: int, code: str) -> dict:
    assert reply.status_code == status, reply.text
    error = reply.json()["error"]
    assert error["code"] == code and set(error) == {"message", "type", "param", "code"}
    return error


# --- paths are never opened --------------------------------------------------------------------------------


class OpenedFiles:
    """Every path the process opens while :meth:`watching` (through Python's ``open`` audit event)."""

    def __init__(self) -> None:
        self.active = False
        self.paths: list[str] = []
        sys.addaudithook(self._hook)

    def _hook(self, event: str, args: tuple) -> None:
        if self.active and event == "open" and isinstance(args[0], str | bytes | Path):
            self.paths.append(str(args[0]))


OPENED = OpenedFiles()
PAGE = REAL["page.png"].path  # a real image on disk: were the path opened, the query would succeed


@pytest.mark.parametrize(
    "url",
    [
        str(PAGE),
        f"file://{PAGE}",
        f"FILE://localhost{PAGE}",
        "/etc/passwd",
        "file:///etc/passwd",
        "../../../../etc/passwd",
        "page.png",
        "  /etc/passwd",
        "ftp://example.com/page.png",
        "http://",
    ],
)
def test_a_path_is_never_opened_nor_forwarded(
    server: LiveServer, upstream: ScriptedChatServer, url: str
) -> None:
    OPENED.paths.clear()
    OPENED.active = True
    try:
        awares = _post(server, image_request(url=url))
        several = _post(server, image_request(url=url) | {"messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": url}},
            {"type": "image_url", "image_url": data_uri()},
            {"type": "text", "text": "Compare them."},
        ]}]})  # fmt: skip
    finally:
        OPENED.active = False
    for reply in (awares, several):
        _error(reply, 400, "image_url_not_allowed")
    assert upstream.requests == []  # neither answered nor passed on
    assert not [p for p in OPENED.paths if "passwd" in p or p.endswith(PAGE.name)], OPENED.paths


def test_a_file_url_on_another_endpoint_is_not_forwarded(
    server: LiveServer, upstream: ScriptedChatServer
) -> None:
    body = {
        "model": MODEL,
        "input": [{"role": "user", "content": [{"type": "input_image", "image_url": "file:///etc/passwd"}]}],
    }
    reply = httpx.post(f"{server.base_url}/responses", json=body, timeout=30)
    _error(reply, 400, "image_url_not_allowed")
    assert upstream.requests == []


def test_an_image_url_is_refused_unless_fetching_is_on(
    server: LiveServer, upstream: ScriptedChatServer
) -> None:
    error = _error(
        _post(server, image_request(url="http://example.com/page.png")), 400, "image_url_not_allowed"
    )
    assert "--allow-image-urls" in error["message"]
    assert upstream.requests == []


# --- sizes, bombs and malformed input ----------------------------------------------------------------------


def _png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` pixels, with a few bytes of (zero) pixel data."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        return len(data).to_bytes(4, "big") + tag + data + zlib.crc32(tag + data).to_bytes(4, "big")

    header = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 0, 0, 0, 0])
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


def test_a_decompression_bomb_is_refused_before_decoding(
    server: LiveServer, upstream: ScriptedChatServer
) -> None:
    error = _error(
        _post(server, image_request(url=data_uri(_png_claiming(100_000, 100_000)))), 400, "image_too_large"
    )
    assert "pixels" in error["message"]
    assert upstream.requests == []


def test_the_pixel_limit_is_the_servers(upstream: ScriptedChatServer) -> None:
    big = io.BytesIO()
    Image.new("L", (1200, 1000)).save(big, format="PNG")  # 1.2 MP of zeros: a few KB that inflate
    options = serve_options(
        upstream.base_url, agent=AgentConfig(token_rule="qwen2.5-vl", max_image_pixels=1_000_000)
    )
    with LiveServer(options) as live:
        _error(_post(live, image_request(url=data_uri(big.getvalue()))), 400, "image_too_large")
    assert upstream.requests == []


@pytest.mark.parametrize(
    ("url", "code"),
    [
        ("data:image/png;base64,%%%%", "invalid_image_url"),
        ("data:image/png;base64,aGVsbG8", "invalid_image_url"),
        ("data:text/html;base64,PGgxPmhpPC9oMT4=", "invalid_image_url"),
        ("data:image/png;base64,aGVsbG8gd29ybGQ=", "invalid_image"),  # valid base64, not an image
        (data_uri(IMAGE[: len(IMAGE) // 3]), "invalid_image"),  # a truncated PNG
    ],
)
def test_a_malformed_image_is_a_400(server: LiveServer, url: str, code: str) -> None:
    _error(_post(server, image_request(url=url)), 400, code)


def test_an_image_over_the_byte_limit_is_refused(upstream: ScriptedChatServer) -> None:
    with LiveServer(serve_options(upstream.base_url, max_image_bytes=len(IMAGE) - 1)) as live:
        _error(_post(live, image_request()), 400, "image_too_large")


@pytest.mark.parametrize(
    "raw",
    [b"", b"{", b'{"model": ', b"\xff\xfe{}", b"[" * 100_000 + b"]" * 100_000, b"null", b"[1, 2]", b'"text"'],
)
def test_malformed_json_is_a_400(server: LiveServer, raw: bytes) -> None:
    _error(_post(server, raw, headers={"content-type": "application/json"}), 400, "invalid_json")


def test_a_50_mb_body_is_refused_without_being_read(server: LiveServer, upstream: ScriptedChatServer) -> None:
    port = int(server.url.rsplit(":", 1)[1])
    size = 50 * 1024 * 1024
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        head = (
            f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {size}\r\n\r\n"
        )
        sock.sendall(head.encode() + b'{"model": "' + b"x" * 65536)
        reply = _read_response(sock)
    assert reply.startswith(b"HTTP/1.1 413")
    assert b'"code":"request_too_large"' in reply.replace(b" ", b"")
    assert upstream.requests == []


def test_a_chunked_body_past_the_limit_is_refused(server: LiveServer, upstream: ScriptedChatServer) -> None:
    def body() -> Iterator[bytes]:  # no Content-Length: the server counts what arrives
        yield b'{"model": "m", "messages": [], "pad": "'
        for _ in range(50):
            yield b"x" * (1024 * 1024)

    try:
        reply = httpx.post(f"{server.base_url}/chat/completions", content=body(), timeout=60)
    except httpx.TransportError:  # the server may close the connection while the client is still sending
        return
    _error(reply, 413, "request_too_large")
    assert upstream.requests == []


def test_the_openai_client_gets_a_413_for_a_huge_image(upstream: ScriptedChatServer) -> None:
    with LiveServer(serve_options(upstream.base_url, max_body_bytes=1024 * 1024)) as live:
        client = openai.OpenAI(base_url=live.base_url, api_key="x", max_retries=0)
        huge = data_uri(IMAGE * 20)
        with pytest.raises((openai.APIStatusError, openai.APIConnectionError)) as refused:
            client.chat.completions.create(**image_request(url=huge))
    if isinstance(refused.value, openai.APIStatusError):
        assert refused.value.status_code == 413
    assert upstream.requests == []


def _read_response(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        piece = sock.recv(65536)
        if not piece:
            return data
        data += piece
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        (
            int(line.split(b":")[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length")
        ),
        0,
    )
    while len(body) < length:
        piece = sock.recv(65536)
        if not piece:
            break
        body += piece
    return head + b"\r\n\r\n" + body


# --- keys ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def keyed(upstream: ScriptedChatServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    folder = tmp_path_factory.mktemp("keyed")
    keys = folder / "keys.txt"
    keys.write_text(f"# client keys\n{CLIENT_KEY}\n\nanother-client-key-000\n")
    mp = pytest.MonkeyPatch()
    mp.setenv("AWARES_TEST_UPSTREAM_KEY", UPSTREAM_KEY)
    options = serve_options(
        upstream.base_url,
        api_keys_file=str(keys),
        upstream_api_key_env="AWARES_TEST_UPSTREAM_KEY",
        trajectories=str(folder / "served"),
    )
    try:
        with LiveServer(options) as live:
            yield live
    finally:
        mp.undo()


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "Bearer wrong-key",
        f"Bearer {CLIENT_KEY}x",
        f"Basic {CLIENT_KEY}",
        "Bearer",
        f"Bearer {UPSTREAM_KEY}",
    ],
)
def test_a_bad_client_key_is_a_401(
    keyed: LiveServer, upstream: ScriptedChatServer, authorization: str | None
) -> None:
    headers = {"authorization": authorization} if authorization else {}
    for path in ("/chat/completions", "/models", "/embeddings"):
        reply = httpx.post(f"{keyed.base_url}{path}", json=image_request(), headers=headers, timeout=30)
        if path == "/models":
            reply = httpx.get(f"{keyed.base_url}{path}", headers=headers, timeout=30)
        error = _error(reply, 401, "invalid_api_key")
        assert error["type"] == "authentication_error" and reply.headers["www-authenticate"].startswith(
            "Bearer"
        )
    assert upstream.requests == []
    assert httpx.get(f"{keyed.url}/health").status_code == 200  # liveness needs no key


def test_the_openai_client_with_a_wrong_and_a_right_key(
    keyed: LiveServer, upstream: ScriptedChatServer
) -> None:
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=keyed.base_url, api_key="nope", max_retries=0).chat.completions.create(
            **image_request()
        )
    upstream.enqueue(Completion(text="ok"))
    client = openai.OpenAI(base_url=keyed.base_url, api_key=CLIENT_KEY, max_retries=0)
    assert client.chat.completions.create(**image_request()).choices[0].message.content == "ok"
    # The upstream gets the server's key, never the client's.
    assert upstream.chat_requests[0].headers["authorization"] == f"Bearer {UPSTREAM_KEY}"


def _echo_credentials(request: RecordedRequest) -> HTTPError:
    """An upstream that echoes the credentials it got in its error (some proxies do)."""
    seen = request.headers.get("authorization", "")
    return HTTPError(401, body={"error": {"message": f"invalid credentials: {seen}", "type": "auth"}})


def test_the_upstream_key_is_never_echoed(
    keyed: LiveServer, upstream: ScriptedChatServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    client_headers = {"authorization": f"Bearer {CLIENT_KEY}"}
    replies = []
    upstream.enqueue(*[_echo_credentials] * 4)  # /embeddings is the scripted server's 404
    replies.append(_post(keyed, image_request(), headers=client_headers))  # AwaRes: a 502
    replies.append(
        _post(
            keyed, {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}, headers=client_headers
        )
    )
    chat = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "stream": True}
    replies.append(_post(keyed, chat, headers=client_headers))
    replies.append(httpx.post(f"{keyed.base_url}/embeddings", json={"input": "x"}, headers=client_headers))
    stream = httpx.post(
        f"{keyed.base_url}/chat/completions",
        json=image_request(stream=True),
        headers=client_headers,
        timeout=30,
    )
    replies.append(stream)
    _error(replies[0], 502, "upstream_auth_failed")
    assert replies[1].status_code == 401 and "invalid credentials: Bearer <redacted>" in replies[1].text
    assert b"upstream_auth_failed" in stream.content  # an error event, mid-stream
    for reply in replies:
        assert UPSTREAM_KEY not in reply.text and UPSTREAM_KEY not in str(reply.headers)
        assert CLIENT_KEY not in reply.text
    assert UPSTREAM_KEY not in caplog.text and CLIENT_KEY not in caplog.text
    assert all(r.headers["authorization"] == f"Bearer {UPSTREAM_KEY}" for r in upstream.requests)

    # A query that succeeds is written to the trajectories folder: with no key in it, the client's or ours.
    assert upstream.pending == 0
    upstream.enqueue(Completion(text="kept"))
    assert _post(keyed, image_request(), headers=client_headers).status_code == 200
    run = Path(keyed.options.trajectories or "")
    stored = b"".join(p.read_bytes() for p in run.rglob("*") if p.is_file())
    assert b"kept" in stored and UPSTREAM_KEY.encode() not in stored and CLIENT_KEY.encode() not in stored


# --- image URLs, when fetching is on ------------------------------------------------------------------------


class _Images(BaseHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        if self.path == "/page.png":
            self._send(200, IMAGE)
        elif self.path == "/huge.png":
            self._send(200, IMAGE * 100)
        elif self.path.startswith("/redirect"):
            self.send_response(302)
            self.send_header("Location", self.path.split("?to=", 1)[1])
            self.send_header("Content-Length", "0")
            self.end_headers()
        else:
            self._send(404, b"missing")

    def _send(self, status: int, data: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture(scope="module")
def images() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Images)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_fetching_never_reaches_a_private_address(upstream: ScriptedChatServer, images: str) -> None:
    port = images.rsplit(":", 1)[1]
    with LiveServer(serve_options(upstream.base_url, allow_image_urls=True, image_fetch_timeout=5)) as live:
        for url in (
            f"{images}/page.png",
            f"http://localhost:{port}/page.png",
            f"http://[::1]:{port}/page.png",
            f"http://[::ffff:127.0.0.1]:{port}/page.png",
            f"http://2130706433:{port}/page.png",  # 127.0.0.1 as one number
            "http://169.254.169.254/latest/meta-data/",
            "http://10.0.0.1/page.png",
        ):
            started = time.monotonic()
            _error(_post(live, image_request(url=url)), 400, "image_url_blocked")
            assert time.monotonic() - started < 3  # refused before any connection is tried
    assert upstream.requests == []


def test_an_allowed_network_is_fetched_and_every_hop_is_checked(
    upstream: ScriptedChatServer, images: str
) -> None:
    port = images.rsplit(":", 1)[1]
    options = serve_options(
        upstream.base_url,
        allow_image_urls=True,
        allow_image_networks=["127.0.0.1/32"],
        max_image_bytes=len(IMAGE) * 2,
    )
    with LiveServer(options) as live:
        upstream.enqueue(Completion(text="Fetched."))
        reply = _post(live, image_request(url=f"{images}/page.png"))
        assert reply.json()["choices"][0]["message"]["content"] == "Fetched."

        redirect = f"{images}/redirect?to=http://[::1]:{port}/page.png"  # to an address not allowed
        _error(_post(live, image_request(url=redirect)), 400, "image_url_blocked")
        _error(_post(live, image_request(url=f"{images}/huge.png")), 400, "image_too_large")
        _error(_post(live, image_request(url=f"{images}/nothing.png")), 400, "image_url_unavailable")

        # Passed through: the upstream gets the fetched bytes, never the client's URL.
        upstream.clear()
        upstream.enqueue(Completion(text="Both."))
        two = image_request()
        two["messages"][0]["content"].insert(
            0, {"type": "image_url", "image_url": {"url": f"{images}/page.png"}}
        )
        assert _post(live, two).headers["x-awares-passthrough-reason"] == "several_images"
        urls = upstream.chat_requests[0].image_urls()
        assert urls == [data_uri(IMAGE), data_uri(IMAGE)]


# --- time: deadlines and clients that hang up -------------------------------------------------------------


def test_the_deadline_ends_a_slow_request(upstream: ScriptedChatServer) -> None:
    options = serve_options(
        upstream.base_url, deadline=1.0, backend=BackendOptions(timeout=30, max_retries=0)
    )
    with LiveServer(options) as live:
        upstream.enqueue(Delay(10, Completion(text="too late")))
        started = time.monotonic()
        error = _error(_post(live, image_request()), 504, "deadline_exceeded")
        assert time.monotonic() - started < 5 and "--deadline" in error["message"]

        upstream.enqueue(Delay(10, Completion(text="too late")))
        client = openai.OpenAI(base_url=live.base_url, api_key="x", max_retries=0)
        with pytest.raises(openai.APIError) as failed:
            list(client.chat.completions.create(**image_request(), stream=True))
        assert failed.value.code == "deadline_exceeded"


class HangingUpstream:
    """An upstream that reads each request and never answers; it notes when a caller closes its connection."""

    def __init__(self) -> None:
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.base_url = f"http://127.0.0.1:{self._sock.getsockname()[1]}/v1"
        self.received = threading.Event()
        self.closed = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._hold, args=(conn,), daemon=True).start()

    def _hold(self, conn: socket.socket) -> None:
        with conn:
            while True:
                try:
                    data = conn.recv(65536)
                except OSError:
                    data = b""
                if not data:
                    self.closed.set()
                    return
                self.received.set()

    def close(self) -> None:
        self._sock.close()


@pytest.mark.parametrize("stream", [False, True])
def test_a_client_that_hangs_up_cancels_the_upstream_call(stream: bool) -> None:
    hanging = HangingUpstream()
    try:
        options = serve_options(hanging.base_url, backend=BackendOptions(timeout=60, max_retries=0))
        with LiveServer(options) as live:
            with pytest.raises(httpx.ReadTimeout):
                httpx.post(
                    f"{live.base_url}/chat/completions", json=image_request(stream=stream), timeout=1.5
                )
            assert hanging.received.is_set()
            assert hanging.closed.wait(10), "the upstream call went on after the client hung up"
            metrics = httpx.get(f"{live.url}/metrics").text
            assert 'awares_serve_errors_total{code="client_disconnected"} 1.0' in metrics
    finally:
        hanging.close()


def test_an_upstream_failure_tells_the_client_no_upstream_detail(
    server: LiveServer, upstream: ScriptedChatServer, caplog: pytest.LogCaptureFixture
) -> None:
    detail = "worker 10.0.0.5:7001 crashed"
    upstream.enqueue(HTTPError(500, body={"error": {"message": detail}}, headers={"x-should-retry": "false"}))
    with caplog.at_level(logging.WARNING, logger="awares_agent.serve"):
        reply = _post(server, image_request())
    error = _error(reply, 502, "upstream_error")
    assert detail not in reply.text and upstream.base_url not in reply.text
    assert reply.headers["x-request-id"] in error["message"]
    assert detail in caplog.text  # the operator has it, under the same request id
    assert reply.headers["x-request-id"] in caplog.text


# --- a hostile upstream ------------------------------------------------------------------------------------


def test_an_upstream_reply_past_max_reply_bytes_is_a_typed_error_read_no_further(
    upstream: ScriptedChatServer,
) -> None:
    """``--max-reply-bytes`` reaches the upstream calls: a 4 MiB completion (valid, and under the 16 MiB
    default) ends the request once 1 MiB of it is read."""
    from chat_server import Flood

    flood = Flood(size=4 << 20)
    upstream.enqueue(flood)
    backend = BackendOptions(timeout=10.0, max_retries=0, max_reply_bytes=1 << 20)
    with LiveServer(serve_options(upstream.base_url, backend=backend)) as live:
        started = time.perf_counter()
        reply = _post(live, image_request())
    _error(reply, 502, "upstream_reply_too_large")
    assert time.perf_counter() - started < 10 and flood.hung_up.wait(5)
