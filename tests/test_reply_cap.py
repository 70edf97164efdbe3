"""The cap on a reply's size, against a real loopback server that floods the real openai client.

A reply over ``max_reply_bytes`` (whole or streamed, a success or an error status, plain or compressed) ends
the call at once with :class:`~awares_agent.errors.ReplyTooLargeError`: not retried, its connection closed,
memory bounded by the cap rather than by the reply, and quickly; through the agent and the ``awares ask``
command it is one line of error and the backend-failure exit code.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from chat_server import Completion, Flood, ScriptedChatServer
from PIL import Image

from awares_agent.agent import AwaResAgent
from awares_agent.backends.openai_compat import DEFAULT_MAX_REPLY_BYTES, OpenAIBackend
from awares_agent.backends.sse import EventDecoder
from awares_agent.config import AgentConfig
from awares_agent.engine.runner import RetryPolicy
from awares_agent.errors import BackendError, BackendHTTPError, ConfigError, ReplyTooLargeError
from awares_agent.image_store import ImageStore
from awares_agent.messages import ChatMessage, ChatReply

MODEL = "scripted-vlm"
MiB = 1024 * 1024
CAP = 4 * MiB
#: The flood's default: a 300 MB answer.
FLOOD_BYTES = 300 * 1024 * 1024

QUESTION = [ChatMessage.text_message("user", "What does the sign say?")]

Call = Callable[[OpenAIBackend, list[str]], ChatReply]


def _complete(backend: OpenAIBackend, texts: list[str]) -> ChatReply:
    return backend.complete(QUESTION, images=ImageStore())


def _acomplete(backend: OpenAIBackend, texts: list[str]) -> ChatReply:
    return asyncio.run(backend.acomplete(QUESTION, images=ImageStore()))


def _complete_stream(backend: OpenAIBackend, texts: list[str]) -> ChatReply:
    return backend.complete_stream(QUESTION, images=ImageStore(), on_text=texts.append)


def _acomplete_stream(backend: OpenAIBackend, texts: list[str]) -> ChatReply:
    return asyncio.run(backend.acomplete_stream(QUESTION, images=ImageStore(), on_text=texts.append))


CALLS: dict[str, Call] = {
    "complete": _complete,
    "acomplete": _acomplete,
    "complete_stream": _complete_stream,
    "acomplete_stream": _acomplete_stream,
}

FLOODS: dict[str, Callable[[], Flood]] = {
    "whole-300MB": lambda: Flood(),
    "whole-endless": lambda: Flood(size=None),
    "error-status-300MB": lambda: Flood(status=500),  # the openai client reads an error's body itself
    "gzip-bomb": lambda: Flood(gzip=True),  # a few KiB that inflate to 300 MB
    "sse-endless": lambda: Flood(sse=True, size=None),
    "sse-gzip-bomb": lambda: Flood(sse=True, gzip=True),
}


def backend_for(server: ScriptedChatServer, **kwargs: object) -> OpenAIBackend:
    """A backend that would retry (were the error retryable) and would wait long (were the reply slow)."""
    kwargs.setdefault("max_retries", 2)
    kwargs.setdefault("timeout", 30.0)
    kwargs.setdefault("max_reply_bytes", CAP)
    return OpenAIBackend(MODEL, base_url=server.base_url, **kwargs)  # type: ignore[arg-type]


@pytest.fixture
def peak_memory() -> Iterator[Callable[[], int]]:
    """Traces Python allocations for the test; call it for the peak, in bytes, since the test started."""
    tracing = tracemalloc.is_tracing()
    if not tracing:
        tracemalloc.start()
    tracemalloc.reset_peak()
    yield lambda: tracemalloc.get_traced_memory()[1]
    if not tracing:
        tracemalloc.stop()


# --- over the cap --------------------------------------------------------------------------------------


@pytest.mark.parametrize("flood", FLOODS.values(), ids=FLOODS.keys())
@pytest.mark.parametrize("call", CALLS.values(), ids=CALLS.keys())
def test_a_reply_over_the_cap_is_cut_off(
    chat_server: ScriptedChatServer,
    peak_memory: Callable[[], int],
    call: Call,
    flood: Callable[[], Flood],
) -> None:
    """Whole or streamed, sync or async, a success or an error status, plain or compressed: the call fails
    with ReplyTooLargeError once the cap is passed, after one request, its memory a few times the cap and not
    the 300 MB sent, its time well within the timeout, and the server sees the connection closed."""
    scripted = flood()
    chat_server.enqueue(scripted)
    backend = backend_for(chat_server)
    texts: list[str] = []

    start = time.perf_counter()
    with pytest.raises(ReplyTooLargeError) as info:
        call(backend, texts)
    elapsed = time.perf_counter() - start

    err = info.value
    assert err.limit == CAP and err.status_code == scripted.status
    message = str(err)
    assert message.startswith(f"{chat_server.base_url} (model {MODEL!r}) sent ")
    assert "4 MiB" in message and "max_reply_bytes=" in message and "--max-reply-bytes" in message
    assert ("inflates past" in message) == scripted.gzip
    assert len(chat_server.chat_requests) == 1  # not retried, though retries were allowed
    assert scripted.hung_up.wait(5)  # the client closed the connection: the server could write no more
    assert scripted.sent < 64 * MiB  # what the socket buffers took on, not the whole reply
    assert peak_memory() < 4 * CAP
    assert elapsed < 10
    if call in (_complete_stream, _acomplete_stream) and scripted.sse:
        assert sum(map(len, texts)) > CAP // 2  # text streamed on until the cap, then not retried


def test_the_default_cap_bounds_a_300_mb_reply(
    chat_server: ScriptedChatServer, peak_memory: Callable[[], int]
) -> None:
    chat_server.enqueue(Flood(), Flood(sse=True, size=None))
    backend = OpenAIBackend(MODEL, base_url=chat_server.base_url)
    assert backend.max_reply_bytes == DEFAULT_MAX_REPLY_BYTES == 16 * MiB

    for call in (_complete, _complete_stream):
        start = time.perf_counter()
        with pytest.raises(ReplyTooLargeError, match="larger than 16 MiB"):
            call(backend, [])
        assert time.perf_counter() - start < 10
    assert peak_memory() < 64 * MiB  # the reply was 300 MB
    assert len(chat_server.chat_requests) == 2


def test_the_error_is_a_backend_error_that_is_not_retried_anywhere(chat_server: ScriptedChatServer) -> None:
    """The CLI reports any BackendError with the backend-failure exit code; the collector retries HTTP
    errors with a 5xx status, but not this one (the same request would get the same reply)."""
    chat_server.enqueue(Flood(status=503))
    with pytest.raises(ReplyTooLargeError) as info:
        _complete(backend_for(chat_server), [])
    assert isinstance(info.value, BackendError) and not isinstance(info.value, BackendHTTPError)
    assert info.value.status_code == 503
    assert not RetryPolicy().retryable(info.value)


def test_the_backend_works_on_after_a_flood(chat_server: ScriptedChatServer) -> None:
    """The flooded connection is closed, not returned to the pool: the next call, sync and async, is clean."""
    backend = backend_for(chat_server)
    for call in CALLS.values():
        chat_server.enqueue(Flood(size=None), Completion(text="STOP"))
        with pytest.raises(ReplyTooLargeError):
            call(backend, [])
        assert call(backend, []).text == "STOP"


def test_the_async_client_still_goes_through_the_environment_proxy(
    chat_server: ScriptedChatServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The async client's capped transport is one of the backend's own, which httpx2 gives no proxy: the
    proxy the environment names is passed on (``NO_PROXY`` honoured), as httpx2 would use it."""
    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", chat_server.url)
    backend = OpenAIBackend(MODEL, base_url="http://model.invalid/v1", max_retries=0, timeout=5)
    with pytest.raises(BackendHTTPError) as info:  # the scripted server is no real proxy: it answers 404
        _acomplete(backend, [])
    assert info.value.status_code == 404
    (request,) = chat_server.requests
    assert request.path == "http://model.invalid/v1/chat/completions"  # the absolute form sent to proxies

    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    chat_server.enqueue(Completion(text="direct"))
    assert _acomplete(backend_for(chat_server), []).text == "direct"


# --- at and under the cap ------------------------------------------------------------------------------


@pytest.mark.parametrize("call", CALLS.values(), ids=CALLS.keys())
def test_a_body_of_exactly_the_cap_is_read_and_one_byte_more_is_not(
    chat_server: ScriptedChatServer, call: Call
) -> None:
    size = 256 * 1024
    chat_server.enqueue(Flood(size=size), Flood(size=size + 1))
    backend = backend_for(chat_server, max_reply_bytes=size)

    reply = call(backend, [])
    assert reply.finish_reason == "length" and set(reply.text) == {"x"} and len(reply.text) > size - 300
    with pytest.raises(ReplyTooLargeError, match="larger than 256 KiB"):
        call(backend, [])


@pytest.mark.parametrize("call", CALLS.values(), ids=CALLS.keys())
def test_a_large_reply_under_the_cap_is_kept_whole(chat_server: ScriptedChatServer, call: Call) -> None:
    """A reply of half the cap (many events, when streamed), and a compressed one that inflates to near the
    cap, pass whole."""
    streams = call in (_complete_stream, _acomplete_stream)
    chat_server.enqueue(Flood(sse=streams, size=CAP // 2, chunk=4096), Flood(size=CAP - 1024, gzip=True))
    backend = backend_for(chat_server)
    texts: list[str] = []

    half = call(backend, texts)
    assert half.finish_reason == "length" and len(half.text) > CAP // 4
    if streams:
        assert "".join(texts) == half.text
    inflated = call(backend, [])
    assert len(inflated.text) > CAP - 2048


def test_max_reply_bytes_is_checked() -> None:
    for bad in (0, -1, 1.5, True, "8MiB", None):
        with pytest.raises(ConfigError, match="max_reply_bytes must be a positive number of bytes"):
            OpenAIBackend(MODEL, base_url="http://127.0.0.1:9/v1", max_reply_bytes=bad)  # type: ignore[arg-type]
    assert OpenAIBackend(MODEL, base_url="http://127.0.0.1:9/v1", max_reply_bytes=1).max_reply_bytes == 1


def test_a_long_stream_line_is_scanned_once() -> None:
    """A line without end, fed in network-sized pieces up to the cap, costs time in proportion to its length
    (each piece is scanned once for line ends), not to its square."""
    decoder = EventDecoder()
    piece = b"x" * 65536
    start = time.perf_counter()
    assert list(decoder.feed(b"data: ")) == []
    for _ in range(DEFAULT_MAX_REPLY_BYTES // len(piece)):
        assert list(decoder.feed(piece)) == []
    (event,) = decoder.feed(b"\n\n")
    assert time.perf_counter() - start < 3  # some 15 s when every piece rescanned the whole line
    assert len(event.data) == DEFAULT_MAX_REPLY_BYTES


# --- the agent and the CLI -----------------------------------------------------------------------------


def sign_image(path: Path) -> Path:
    Image.new("RGB", (64, 48), "white").save(path)
    return path


def test_the_agent_ends_the_query_with_the_error(chat_server: ScriptedChatServer, tmp_path: Path) -> None:
    chat_server.enqueue(Flood(sse=True, size=None))
    agent = AwaResAgent(backend_for(chat_server), AgentConfig())
    start = time.perf_counter()
    with pytest.raises(ReplyTooLargeError, match="larger than 4 MiB"):
        for _ in agent.stream(sign_image(tmp_path / "sign.png"), "What does the sign say?", tokens=True):
            pass
    assert time.perf_counter() - start < 10
    assert len(chat_server.chat_requests) == 1


# ``--json`` (a whole reply), and the streamed default (events of 1 MiB: the status line's handling of
# many small ones is the CLI's own matter).
CLI_CASES = {"json": (["--json"], Flood()), "streamed": ([], Flood(sse=True, size=None, chunk=MiB))}


@pytest.mark.parametrize(("flags", "flood"), CLI_CASES.values(), ids=CLI_CASES.keys())
def test_awares_ask_reports_one_line_and_the_backend_exit_code(
    chat_server: ScriptedChatServer, tmp_path: Path, flags: list[str], flood: Flood
) -> None:
    chat_server.enqueue(flood)
    image = sign_image(tmp_path / "sign.png")
    awares = Path(sys.executable).with_name("awares")
    args = [str(awares), "ask", str(image), "What does the sign say?"]
    args += ["--base-url", chat_server.base_url, "--model", MODEL, *flags]

    start = time.perf_counter()
    proc = subprocess.run(args, capture_output=True, text=True, timeout=120)
    elapsed = time.perf_counter() - start

    assert proc.returncode == 1, proc.stderr  # EXIT_BACKEND
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "larger than 16 MiB" in errors[0] and "--max-reply-bytes" in errors[0]
    assert len(proc.stderr) < 4096 and len(proc.stdout) < 4096
    if flags == ["--json"]:
        assert proc.stdout == ""
    assert len(chat_server.chat_requests) == 1 and flood.hung_up.wait(5)
    assert elapsed < 60  # the interpreter's start included; the flood alone would take far longer to read


ASYNC_SCRIPT = """
import asyncio, gc, sys
sys.path.insert(0, {tests!r})
from chat_server import Completion, Flood, ScriptedChatServer
from awares_agent.backends.openai_compat import OpenAIBackend
from awares_agent.errors import ReplyTooLargeError
from awares_agent.image_store import ImageStore
from awares_agent.messages import ChatMessage

question = [ChatMessage.text_message("user", "hi")]
with ScriptedChatServer(Flood(size=None), Flood(sse=True, gzip=True), Completion(text="ok")) as server:
    backend = OpenAIBackend("m", base_url=server.base_url, max_reply_bytes=1 << 20)
    for call in (backend.acomplete, backend.acomplete_stream):
        kwargs = dict(on_text=lambda text: None) if call == backend.acomplete_stream else {{}}
        try:
            asyncio.run(call(question, images=ImageStore(), **kwargs))
        except ReplyTooLargeError:
            print("cut")
    print(asyncio.run(backend.acomplete(question, images=ImageStore())).text)
    del backend
    gc.collect()
print("done")
"""


def test_async_floods_leave_no_socket_open(tmp_path: Path) -> None:
    """A flood cut off on an event loop that then ends: no unclosed-socket or closed-loop warning."""
    script = tmp_path / "floods.py"
    script.write_text(ASYNC_SCRIPT.format(tests=str(Path(__file__).parent)))
    proc = subprocess.run(
        [sys.executable, "-W", "always::ResourceWarning", str(script)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).parent.parent,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["cut", "cut", "ok", "done"]
    assert proc.stderr == ""


def test_max_reply_bytes_flag_caps_a_stream_of_small_events(
    chat_server: ScriptedChatServer, tmp_path: Path
) -> None:
    """``--max-reply-bytes`` reaches the backend, and a stream of token-sized events up to it stays quick (the
    status line keeps only the turn's tail)."""
    flood = Flood(sse=True, size=None, chunk=64)
    chat_server.enqueue(flood)
    image = sign_image(tmp_path / "sign.png")
    awares = Path(sys.executable).with_name("awares")
    args = [str(awares), "ask", str(image), "What does the sign say?", "--base-url", chat_server.base_url]
    args += ["--model", MODEL, "--max-reply-bytes", str(MiB)]

    start = time.perf_counter()
    proc = subprocess.run(args, capture_output=True, text=True, timeout=120)
    elapsed = time.perf_counter() - start

    assert proc.returncode == 1, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "larger than 1 MiB" in errors[0]
    assert elapsed < 60
