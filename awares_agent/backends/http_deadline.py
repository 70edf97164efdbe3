"""Whole-attempt timeouts for the synchronous openai client: an httpx2 transport on deadline-capped sockets.

httpx's timeouts apply to each socket operation: a server that sends a byte every second never trips a 3 s
read timeout, however long the body. :class:`DeadlineTransport` runs the openai client's requests on an
httpcore2 network backend whose sockets cap every connect, read and write at the time left until the current
attempt's end, held in the context variable :data:`ATTEMPT_END` that the caller sets around each attempt.
(An async client needs none of this: ``asyncio.timeout()`` bounds the whole attempt.)

A custom transport bypasses httpx's proxy discovery, so the transport reads ``HTTP(S)_PROXY``, ``ALL_PROXY``
and ``NO_PROXY`` itself, as httpx would.
"""

from __future__ import annotations

import contextlib
import time
import urllib.parse
import urllib.request
from collections.abc import Iterable, Iterator
from contextvars import ContextVar
from typing import Any

import httpcore2
import httpx2
import openai

__all__ = ["ATTEMPT_END", "DeadlineTransport", "HttpClient", "attempt_deadline", "environment_proxy"]

ATTEMPT_END: ContextVar[float | None] = ContextVar("awares_openai_attempt_end", default=None)

#: Writes go out in pieces of this size, each capped at the time left.
_WRITE_PIECE = 64 * 1024


def _time_left(timeout: float | None, error: type[Exception]) -> float | None:
    """``timeout`` capped at the time left in the current attempt; raises ``error`` when none is left."""
    end = ATTEMPT_END.get()
    if end is None:
        return timeout
    left = end - time.monotonic()
    if left <= 0:
        raise error("the request's time allowance ran out")
    return left if timeout is None else min(timeout, left)


class _DeadlineStream(httpcore2.NetworkStream):
    """A socket stream whose every operation ends by the current attempt's end."""

    def __init__(self, stream: httpcore2.NetworkStream) -> None:
        self._stream = stream

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._stream.read(max_bytes, _time_left(timeout, httpcore2.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        view = memoryview(buffer)
        while view:
            self._stream.write(bytes(view[:_WRITE_PIECE]), _time_left(timeout, httpcore2.WriteTimeout))
            view = view[_WRITE_PIECE:]

    def close(self) -> None:
        self._stream.close()

    def start_tls(
        self, ssl_context: Any, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore2.NetworkStream:
        tls = self._stream.start_tls(
            ssl_context, server_hostname, _time_left(timeout, httpcore2.ConnectTimeout)
        )
        return _DeadlineStream(tls)

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class _DeadlineBackend(httpcore2.NetworkBackend):
    """httpcore2's socket backend, with :class:`_DeadlineStream` streams."""

    def __init__(self) -> None:
        self._backend = httpcore2.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore2.NetworkStream:
        timeout = _time_left(timeout, httpcore2.ConnectTimeout)
        return _DeadlineStream(self._backend.connect_tcp(host, port, timeout, local_address, socket_options))

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore2.NetworkStream:
        timeout = _time_left(timeout, httpcore2.ConnectTimeout)
        return _DeadlineStream(self._backend.connect_unix_socket(path, timeout, socket_options))

    def sleep(self, seconds: float) -> None:
        self._backend.sleep(seconds)


# httpcore2's exceptions and the httpx2 ones the openai client catches, most specific first.
_TRANSPORT_ERRORS: tuple[tuple[type[Exception], type[httpx2.TransportError]], ...] = (
    (httpcore2.ConnectTimeout, httpx2.ConnectTimeout),
    (httpcore2.ReadTimeout, httpx2.ReadTimeout),
    (httpcore2.WriteTimeout, httpx2.WriteTimeout),
    (httpcore2.PoolTimeout, httpx2.PoolTimeout),
    (httpcore2.TimeoutException, httpx2.TimeoutException),
    (httpcore2.ConnectError, httpx2.ConnectError),
    (httpcore2.ReadError, httpx2.ReadError),
    (httpcore2.WriteError, httpx2.WriteError),
    (httpcore2.NetworkError, httpx2.NetworkError),
    (httpcore2.ProxyError, httpx2.ProxyError),
    (httpcore2.UnsupportedProtocol, httpx2.UnsupportedProtocol),
    (httpcore2.RemoteProtocolError, httpx2.RemoteProtocolError),
    (httpcore2.LocalProtocolError, httpx2.LocalProtocolError),
    (httpcore2.ProtocolError, httpx2.ProtocolError),
)


@contextlib.contextmanager
def _as_httpx_errors() -> Iterator[None]:
    try:
        yield
    except Exception as exc:
        for core, mapped in _TRANSPORT_ERRORS:
            if isinstance(exc, core):
                raise mapped(str(exc)) from exc
        raise


class _ResponseStream(httpx2.SyncByteStream):
    def __init__(self, stream: Iterable[bytes]) -> None:
        self._stream = stream

    def __iter__(self) -> Iterator[bytes]:
        with _as_httpx_errors():
            yield from self._stream

    def close(self) -> None:
        close = getattr(self._stream, "close", None)
        if close is not None:
            close()


class DeadlineTransport(httpx2.BaseTransport):
    """An httpx2 transport (as ``httpx2.HTTPTransport``) on an httpcore2 pool of :class:`_DeadlineStream`
    sockets, through the proxy the environment names for ``url`` (``HTTPS_PROXY``, ``ALL_PROXY``,
    ``NO_PROXY``...), as httpx2 would use by default.

    Raises:
        ValueError: the proxy URL is not usable; ImportError: a SOCKS proxy without ``socksio`` installed.
    """

    def __init__(self, url: str) -> None:
        backend = _DeadlineBackend()
        ssl_context = httpx2.create_ssl_context()
        # The openai client's own connection limits.
        limits = {"max_connections": 1000, "max_keepalive_connections": 100, "keepalive_expiry": 5.0}
        proxy = environment_proxy(url)
        self._pool: httpcore2.ConnectionPool | httpcore2.HTTPProxy | httpcore2.SOCKSProxy
        if proxy is None:
            self._pool = httpcore2.ConnectionPool(ssl_context=ssl_context, network_backend=backend, **limits)
            return
        proxy_url = httpcore2.URL(
            scheme=proxy.url.raw_scheme,
            host=proxy.url.raw_host,
            port=proxy.url.port,
            target=proxy.url.raw_path,
        )
        if proxy.url.scheme in ("http", "https"):
            self._pool = httpcore2.HTTPProxy(
                proxy_url=proxy_url,
                proxy_auth=proxy.raw_auth,
                proxy_headers=proxy.headers.raw,
                ssl_context=ssl_context,
                proxy_ssl_context=proxy.ssl_context,
                network_backend=backend,
                **limits,
            )
        else:
            self._pool = httpcore2.SOCKSProxy(
                proxy_url=proxy_url,
                proxy_auth=proxy.raw_auth,
                ssl_context=ssl_context,
                network_backend=backend,
                **limits,
            )

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        core_request = httpcore2.Request(
            method=request.method,
            url=httpcore2.URL(
                scheme=request.url.raw_scheme,
                host=request.url.raw_host,
                port=request.url.port,
                target=request.url.raw_path,
            ),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        with _as_httpx_errors():
            response = self._pool.handle_request(core_request)
        return httpx2.Response(
            status_code=response.status,
            headers=response.headers,
            stream=_ResponseStream(response.stream),
            extensions=response.extensions,
        )

    def close(self) -> None:
        self._pool.close()


class HttpClient(openai.DefaultHttpxClient):
    """The openai client's default httpx2 client, closed when collected (like the one openai makes itself)."""

    def __del__(self) -> None:
        if not self.is_closed:
            with contextlib.suppress(Exception):
                self.close()


def environment_proxy(url: str) -> httpx2.Proxy | None:
    """The proxy the environment names for ``url`` (``None`` for none, or when ``NO_PROXY`` excludes it)."""
    parts = urllib.parse.urlsplit(url)
    proxies = urllib.request.getproxies()
    address = proxies.get(parts.scheme) or proxies.get("all")
    if not address or urllib.request.proxy_bypass(parts.hostname or ""):
        return None
    return httpx2.Proxy(address if "://" in address else f"http://{address}")


@contextlib.contextmanager
def attempt_deadline(seconds: float) -> Iterator[None]:
    """Cap every socket operation of the requests made in the block at ``seconds`` from now (it sets
    :data:`ATTEMPT_END` for the block)."""
    token = ATTEMPT_END.set(time.monotonic() + seconds)
    try:
        yield
    finally:
        ATTEMPT_END.reset(token)
