"""Requests AwaRes does not answer, passed to the upstream and its reply streamed back as it arrives.

One :class:`Upstream` per worker process: one pooled ``httpx2.AsyncClient`` (the HTTP client the project's
OpenAI adapter runs on), opened at startup and closed at shutdown. A request is forwarded with its method,
path under ``/v1``, query string and body, and its headers but for:

* hop-by-hop headers (``Connection``, ``Transfer-Encoding``...), ``Host`` and ``Content-Length`` (recomputed);
* the client's own credentials (``Authorization``, ``api-key``, ``x-api-key``, cookies): they are for this
  server, never for the upstream. The upstream gets the server's key (``--upstream-api-key-env``), if any;
* ``Accept-Encoding``: the reply is asked for uncompressed, so that it can be scrubbed on its way back.

The reply's status, headers (hop-by-hop ones and the length left out) and body come back as the upstream sends
them, a server-sent-event stream chunk by chunk, with ``x-awares-route: passthrough`` and the reason. The
upstream's key is scrubbed from the body (:class:`SecretScrubber`): an upstream that echoes request headers
in its errors cannot hand it to a client.

A reply that breaks off once its headers are passed on (the upstream hangs up, or the request's deadline
passes) is broken off for the client too: the connection is closed before the reply's end, so the client's
HTTP library raises rather than take what came as the whole reply (:class:`ReplyBrokeOff`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any

import httpx2
from starlette.background import BackgroundTask
from starlette.responses import Response, StreamingResponse

from awares_agent.redact import REDACTED
from awares_agent.serve.errors import ServeError

__all__ = ["PassthroughResponse", "ReplyBrokeOff", "SecretScrubber", "Upstream"]

log = logging.getLogger(__name__)

_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
    }
)
#: Request headers never forwarded: hop-by-hop, recomputed, or the client's credentials for this server.
_DROPPED_REQUEST = _HOP_BY_HOP | {"host", "content-length", "authorization", "api-key", "x-api-key", "cookie"}
_DROPPED_RESPONSE = _HOP_BY_HOP | {"content-length", "content-encoding", "set-cookie"}


class SecretScrubber:
    """Replaces secrets in a byte stream, also where one is split across chunks.

    Args:
        secrets: the byte strings to hide (empty ones are ignored).
    """

    def __init__(self, secrets: Iterable[str]) -> None:
        self._secrets = [s.encode() for s in secrets if s]
        self._keep = max((len(s) for s in self._secrets), default=1) - 1
        self._tail = b""

    def feed(self, chunk: bytes) -> bytes:
        """The part of the stream so far that can be passed on (a tail that could begin a secret is held)."""
        if not self._secrets:
            return chunk
        data = self._scrub(self._tail + chunk)
        cut = max(0, len(data) - self._keep)
        self._tail = data[cut:]
        return data[:cut]

    def flush(self) -> bytes:
        """What is held at the end of the stream."""
        rest, self._tail = self._tail, b""
        return self._scrub(rest) if self._secrets else rest

    def _scrub(self, data: bytes) -> bytes:
        for secret in self._secrets:
            data = data.replace(secret, REDACTED.encode())
        return data


class ReplyBrokeOff(Exception):
    """A passed-through reply broke off after its headers had gone to the client.

    Args:
        error: what broke it off, as the metrics count it (``upstream_unavailable``, ``deadline_exceeded``).
    """

    def __init__(self, error: ServeError) -> None:
        super().__init__(error.message)
        self.error = error


class PassthroughResponse(StreamingResponse):
    """The upstream's reply as it arrives. One that breaks off (:class:`ReplyBrokeOff`) is left incomplete:
    the ASGI server then closes the connection, and logs no traceback (the break is the upstream's, and
    logged)."""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        with contextlib.suppress(ReplyBrokeOff):
            await super().__call__(scope, receive, send)


class Upstream:
    """The upstream server, for requests passed through (see the module docstring).

    Args:
        base_url: the upstream's API root (``http://host:8000/v1``).
        api_key: the upstream's key, sent as its ``Authorization``; ``None`` sends none.
        read_timeout: seconds the upstream may stay silent while it answers (``--timeout``); the request's
            deadline bounds the whole reply.
        client: the HTTP client (default: a fresh pooled one; closed by :meth:`aclose` either way).
    """

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        read_timeout: float = 60.0,
        client: httpx2.AsyncClient | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._api_key = api_key
        limits = httpx2.Limits(max_connections=1000, max_keepalive_connections=100)
        timeout = httpx2.Timeout(read_timeout, connect=min(10.0, read_timeout))
        self._client = client or httpx2.AsyncClient(timeout=timeout, limits=limits)

    async def aclose(self) -> None:
        """Close the pooled connections."""
        await self._client.aclose()

    async def forward(
        self,
        method: str,
        path: str,
        *,
        query: str = "",
        headers: Mapping[str, str],
        body: bytes | None,
        reason: str,
        deadline: float,
    ) -> Response:
        """Send one request to the upstream and return its reply as a streaming response.

        Args:
            method: the HTTP method.
            path: the path under the API root (``/chat/completions``).
            query: the query string, without ``?``.
            headers: the client's request headers.
            body: the body to send (``None``: none).
            reason: why the request is passed through (the ``x-awares-passthrough-reason`` header).
            deadline: the event loop's time by which the reply must be complete; a reply still streaming then
                is cut off.

        Raises:
            ServeError: 502 ``upstream_unavailable`` when the upstream cannot be reached, 504
                ``upstream_timeout`` when it does not answer in time.
        """
        url = f"{self.base_url}{path}" + (f"?{query}" if query else "")
        sent = {k: v for k, v in headers.items() if k.lower() not in _DROPPED_REQUEST}
        sent["accept-encoding"] = "identity"
        if self._api_key:
            sent["authorization"] = f"Bearer {self._api_key}"
        request = self._client.build_request(method, url, headers=sent, content=body)
        try:
            async with asyncio.timeout_at(deadline):
                reply = await self._client.send(request, stream=True)
        except (TimeoutError, httpx2.TimeoutException):
            raise ServeError(
                504,
                "upstream_timeout",
                "the upstream model server did not answer in time",
                type="timeout_error",
            ) from None
        except httpx2.HTTPError as exc:
            log.warning("passthrough to the upstream failed: %s: %s", type(exc).__name__, exc)
            raise ServeError(
                502,
                "upstream_unavailable",
                "the upstream model server could not be reached",
                type="upstream_error",
            ) from None
        returned = {k: v for k, v in reply.headers.items() if k.lower() not in _DROPPED_RESPONSE}
        returned["x-awares-route"] = "passthrough"
        returned["x-awares-passthrough-reason"] = reason
        return PassthroughResponse(
            self._body(reply, deadline),
            status_code=reply.status_code,
            headers=returned,
            background=BackgroundTask(reply.aclose),
        )

    async def _body(self, reply: httpx2.Response, deadline: float) -> AsyncIterator[bytes]:
        scrubber = SecretScrubber([self._api_key] if self._api_key else [])
        pieces = reply.aiter_bytes()
        try:
            while True:
                # The deadline bounds each read, not the yields: a timeout around a yield would fire in
                # whatever the consumer is awaiting.
                try:
                    async with asyncio.timeout_at(deadline):
                        chunk = await anext(pieces)
                except StopAsyncIteration:
                    break
                if out := scrubber.feed(chunk):
                    yield out
        except TimeoutError:
            log.warning("a passthrough reply was cut off at the request's deadline")
            raise ReplyBrokeOff(
                ServeError(
                    504, "deadline_exceeded", "the reply was cut off at the deadline", type="timeout_error"
                )
            ) from None
        except httpx2.HTTPError as exc:
            log.warning("a passthrough reply broke off: %s: %s", type(exc).__name__, exc)
            raise ReplyBrokeOff(
                ServeError(
                    502, "upstream_unavailable", "the upstream broke off its reply", type="upstream_error"
                )
            ) from None
        finally:
            await reply.aclose()
        if rest := scrubber.flush():
            yield rest
