"""A cap on the size of a server's reply, enforced while the reply is read.

A server that answers with far more than any chat completion needs (a runaway generation, a proxy looping on
an error page, a hostile endpoint) must not be held whole. :class:`ReplyCapTransport` and
:class:`AsyncReplyCapTransport` wrap the transport that the openai client's httpx2 client sends through, and
count each response's body as it arrives. Past the cap the body is closed, which closes its connection, and
the read raises :class:`~awares_agent.errors.ReplyTooLargeError`: nothing more is read, so memory and time
stay bounded by the cap, and the error is not retried (the same request would get the same reply).

Counting at the transport covers every body alike: a whole reply and a streamed one, a success and an error
status (whose body the openai client reads itself), on the sync and the async client. A body in a content
coding (gzip, deflate...) is counted twice, as it arrives and as it decodes, and handed on decoded, so that
a few compressed bytes cannot inflate past the cap.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable, Iterator

import httpx2

from awares_agent.errors import ReplyTooLargeError

__all__ = ["DEFAULT_MAX_REPLY_BYTES", "AsyncReplyCapTransport", "ReplyCapTransport", "size_text"]

#: Bytes a reply's body may hold when no cap is configured, as sent and (for a compressed body) decoded.
#: A streamed reply carries about 250 bytes of event framing per token, so this admits a streamed reply of
#: some 60,000 tokens, and a whole one of millions.
DEFAULT_MAX_REPLY_BYTES = 16 * 1024 * 1024


def size_text(n: int) -> str:
    """``16 MiB``, ``512 KiB``, ``1000 bytes``."""
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale and n % scale == 0:
            return f"{n // scale} {unit}"
    return f"{n} byte{'' if n == 1 else 's'}"


class _Cap:
    """The cap on one response's body, and the error it raises.

    Args:
        limit: the most bytes the body may hold.
        where: names the server (and model) in the error message.
        status: the response's HTTP status.
    """

    def __init__(self, limit: int, where: str, status: int) -> None:
        self.limit = limit
        self.where = where
        self.status = status

    def exceeded(self, *, decoded: bool) -> ReplyTooLargeError:
        cap = size_text(self.limit)
        what = (
            f"a compressed reply (HTTP {self.status}) that inflates past {cap}"
            if decoded
            else f"a reply (HTTP {self.status}) larger than {cap}"
        )
        return ReplyTooLargeError(
            f"{self.where} sent {what}, the cap on a reply's size; it was read no further, and not retried "
            f"(the same request would get the same reply): raise max_reply_bytes= (--max-reply-bytes) if a "
            f"reply this large is expected, or lower max_tokens= (--max-new-tokens)",
            limit=self.limit,
            status_code=self.status,
        )


def _codings(response: httpx2.Response) -> list[str]:
    """The response's content codings, ``identity`` left out."""
    codings = (value.strip().lower() for value in response.headers.get_list("content-encoding", True))
    return [coding for coding in codings if coding not in ("", "identity")]


def _decoded_headers(response: httpx2.Response) -> httpx2.Headers:
    """The response's headers for its body handed on decoded: no content coding, no length."""
    headers = httpx2.Headers(response.headers)
    for name in ("content-encoding", "content-length"):
        if name in headers:
            del headers[name]
    return headers


class _CappedStream(httpx2.SyncByteStream):
    """A body whose pieces are counted against the cap; past it, the body is closed and the read fails."""

    def __init__(
        self, pieces: Iterable[bytes], close: Callable[[], None], cap: _Cap, *, decoded: bool
    ) -> None:
        self._pieces = pieces
        self._close = close
        self._cap = cap
        self._decoded = decoded

    def __iter__(self) -> Iterator[bytes]:
        seen = 0
        for piece in self._pieces:
            seen += len(piece)
            if seen > self._cap.limit:
                self.close()
                raise self._cap.exceeded(decoded=self._decoded)
            yield piece

    def close(self) -> None:
        self._close()


class _AsyncCappedStream(httpx2.AsyncByteStream):
    """:class:`_CappedStream` for an async body."""

    def __init__(
        self,
        pieces: AsyncIterable[bytes],
        close: Callable[[], Awaitable[None]],
        cap: _Cap,
        *,
        decoded: bool,
    ) -> None:
        self._pieces = pieces
        self._close = close
        self._cap = cap
        self._decoded = decoded

    async def __aiter__(self) -> AsyncIterator[bytes]:
        seen = 0
        async for piece in self._pieces:
            seen += len(piece)
            if seen > self._cap.limit:
                await self.aclose()
                raise self._cap.exceeded(decoded=self._decoded)
            yield piece

    async def aclose(self) -> None:
        await self._close()


class ReplyCapTransport(httpx2.BaseTransport):
    """An httpx2 transport that sends through ``transport`` and caps each response's body at ``limit`` bytes,
    as sent and, for a body in a content coding, as decoded (the body is then handed on decoded).

    Args:
        transport: the transport that sends the requests.
        limit: the most bytes a body may hold.
        where: names the server (and model) in the error.
    """

    def __init__(self, transport: httpx2.BaseTransport, *, limit: int, where: str) -> None:
        self._transport = transport
        self._limit = limit
        self._where = where

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        response = self._transport.handle_request(request)
        raw = response.stream
        if not isinstance(raw, httpx2.SyncByteStream):
            raise TypeError(f"{type(self._transport).__name__} returned a response with no sync stream")
        cap = _Cap(self._limit, self._where, response.status_code)
        sent = _CappedStream(raw, raw.close, cap, decoded=False)
        if not _codings(response):
            return httpx2.Response(
                response.status_code, headers=response.headers, stream=sent, extensions=response.extensions
            )
        # httpx2's own decoding (bounded pieces) of the counted bytes, counted again as they decode.
        coded = httpx2.Response(response.status_code, headers=response.headers, stream=sent, request=request)
        pieces = coded.iter_bytes()

        def close() -> None:
            pieces.close()
            coded.close()

        decoded = _CappedStream(pieces, close, cap, decoded=True)
        return httpx2.Response(
            response.status_code,
            headers=_decoded_headers(response),
            stream=decoded,
            extensions=response.extensions,
        )

    def close(self) -> None:
        self._transport.close()


class AsyncReplyCapTransport(httpx2.AsyncBaseTransport):
    """:class:`ReplyCapTransport` for an async client (same arguments, ``transport`` async)."""

    def __init__(self, transport: httpx2.AsyncBaseTransport, *, limit: int, where: str) -> None:
        self._transport = transport
        self._limit = limit
        self._where = where

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        response = await self._transport.handle_async_request(request)
        raw = response.stream
        if not isinstance(raw, httpx2.AsyncByteStream):
            raise TypeError(f"{type(self._transport).__name__} returned a response with no async stream")
        cap = _Cap(self._limit, self._where, response.status_code)
        sent = _AsyncCappedStream(raw, raw.aclose, cap, decoded=False)
        if not _codings(response):
            return httpx2.Response(
                response.status_code, headers=response.headers, stream=sent, extensions=response.extensions
            )
        coded = httpx2.Response(response.status_code, headers=response.headers, stream=sent, request=request)
        pieces = coded.aiter_bytes()

        async def close() -> None:
            await pieces.aclose()
            await coded.aclose()

        decoded = _AsyncCappedStream(pieces, close, cap, decoded=True)
        return httpx2.Response(
            response.status_code,
            headers=_decoded_headers(response),
            stream=decoded,
            extensions=response.extensions,
        )

    async def aclose(self) -> None:
        await self._transport.aclose()
