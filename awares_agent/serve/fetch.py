"""Fetching a client's ``http(s)`` image URL without letting the client reach the server's own network.

Only with ``--allow-image-urls``. A URL from an untrusted client could name the cloud metadata service
(``169.254.169.254``), a database on ``localhost`` or a host on the private network: the classic server-side
request forgery. So the check is made where it cannot be dodged: on the IP address actually connected to.
:class:`GuardedNetwork` is the connection pool's network backend; it resolves the host itself, refuses every
address that is not globally routable (loopback, private, link-local, shared, reserved, multicast,
unspecified; IPv4-mapped IPv6 read as its IPv4 address) unless the operator allowed its network, and
connects to the address it checked. A DNS answer that changes between a check and the connection (DNS
rebinding) therefore changes nothing, every redirect hop is checked the same way, and no proxy from the
environment is used (its address would be the one checked).

A fetch is bounded in time (``--image-fetch-timeout``, redirects included) and size (``--max-image-bytes``,
from ``Content-Length`` and as the body is counted); it follows at most :data:`MAX_REDIRECTS` redirects.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import urllib.parse
from collections.abc import Iterable, Sequence
from typing import Any

import httpcore2

from awares_agent.backends.reply_cap import size_text
from awares_agent.serve.errors import ServeError

__all__ = ["MAX_REDIRECTS", "BlockedAddressError", "GuardedNetwork", "ImageFetcher", "is_blocked"]

#: Redirects followed before a fetch gives up.
MAX_REDIRECTS = 3

_REDIRECTS = (301, 302, 303, 307, 308)
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class BlockedAddressError(Exception):
    """An image URL's host resolved only to addresses the server does not fetch from."""


def is_blocked(address: IPAddress, allowed: Sequence[Network] = ()) -> bool:
    """Whether the server refuses to fetch from ``address``: any address that is not globally routable,
    unless it lies in one of the ``allowed`` networks."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if any(address in network for network in allowed):
        return False
    return not address.is_global or address.is_multicast or address.is_reserved or address.is_unspecified


class GuardedNetwork(httpcore2.AsyncNetworkBackend):
    """A network backend that connects only to addresses :func:`is_blocked` lets through.

    Args:
        allowed: networks let through although they are not global.
    """

    def __init__(self, allowed: Sequence[Network] = ()) -> None:
        self._allowed = tuple(allowed)
        self._inner = httpcore2.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore2.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        try:
            found = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise httpcore2.ConnectError(f"cannot resolve {host!r}: {exc}") from None
        addresses = list(dict.fromkeys(ipaddress.ip_address(info[4][0].split("%", 1)[0]) for info in found))
        usable = [a for a in addresses if not is_blocked(a, self._allowed)]
        if not usable:
            raise BlockedAddressError(
                f"{host!r} resolves to {', '.join(map(str, addresses)) or 'nothing'}: not a public address"
            )
        error: Exception | None = None
        for address in usable:  # the addresses checked, not the name resolved again
            try:
                return await self._inner.connect_tcp(
                    str(address),
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except (httpcore2.ConnectError, httpcore2.ConnectTimeout) as exc:
                error = exc
        assert error is not None
        raise error

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore2.AsyncNetworkStream:
        raise BlockedAddressError("image URLs are never fetched over a Unix socket")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class ImageFetcher:
    """Fetches image URLs for one server process (one connection pool, closed with :meth:`aclose`).

    Args:
        max_bytes: the largest image accepted.
        timeout: seconds for one fetch, redirects included.
        allowed_networks: networks let through although they are not global (``--allow-image-networks``).
    """

    def __init__(self, *, max_bytes: int, timeout: float, allowed_networks: Sequence[str] = ()) -> None:
        self.max_bytes = max_bytes
        self.timeout = timeout
        allowed = [ipaddress.ip_network(n, strict=False) for n in allowed_networks]
        self._pool = httpcore2.AsyncConnectionPool(
            network_backend=GuardedNetwork(allowed), max_connections=64, retries=0
        )

    async def fetch(self, url: str) -> bytes:
        """The bytes at ``url`` (``http`` or ``https``), following at most :data:`MAX_REDIRECTS` redirects.

        Raises:
            ServeError: 400 ``image_url_blocked`` (an address the server does not fetch from),
                ``image_url_unavailable`` (unreachable, timed out, an error status), ``image_too_large``.
        """
        try:
            async with asyncio.timeout(self.timeout):
                for _ in range(MAX_REDIRECTS + 1):
                    location = await self._get(url)
                    if isinstance(location, bytes):
                        return location
                    url = location
        except TimeoutError:
            raise _unavailable(f"it did not answer within {self.timeout:g} s") from None
        except BlockedAddressError as exc:
            raise ServeError(
                400,
                "image_url_blocked",
                f"the image URL is not fetched: {exc}; this server fetches only from public addresses (send "
                "the image as a data: URI instead)",
                param="messages",
            ) from None
        except httpcore2.TimeoutException:
            raise _unavailable(f"it did not answer within {self.timeout:g} s") from None
        except (httpcore2.NetworkError, httpcore2.ProtocolError, httpcore2.UnsupportedProtocol) as exc:
            raise _unavailable(f"{type(exc).__name__}: {exc}"[:300]) from None
        raise _unavailable(f"it redirected more than {MAX_REDIRECTS} times")

    async def _get(self, url: str) -> bytes | str:
        """The body at ``url``, or the URL it redirects to."""
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ServeError(
                400, "image_url_not_allowed", "an image URL must be http(s)://host/...", param="messages"
            )
        headers = [(b"Accept", b"image/*"), (b"User-Agent", b"awares-serve")]
        async with self._pool.stream("GET", url, headers=headers) as response:
            if response.status in _REDIRECTS:
                target = _header(response.headers, b"location")
                if not target:
                    raise _unavailable(f"it answered HTTP {response.status} with no Location")
                return urllib.parse.urljoin(url, target)
            if response.status != 200:
                raise _unavailable(f"it answered HTTP {response.status}")
            declared = _header(response.headers, b"content-length")
            if declared and declared.isdigit() and int(declared) > self.max_bytes:
                raise _too_large(self.max_bytes)
            body = bytearray()
            async for chunk in response.aiter_stream():
                body += chunk
                if len(body) > self.max_bytes:
                    raise _too_large(self.max_bytes)
            return bytes(body)

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._pool.aclose()


def _header(headers: Sequence[tuple[bytes, bytes]], name: bytes) -> str | None:
    for key, value in headers:
        if key.lower() == name:
            return value.decode("latin-1").strip()
    return None


def _unavailable(why: str) -> ServeError:
    return ServeError(
        400, "image_url_unavailable", f"the image URL could not be fetched: {why}", param="messages"
    )


def _too_large(limit: int) -> ServeError:
    return ServeError(
        400,
        "image_too_large",
        f"the image is larger than this server's limit of {size_text(limit)} (--max-image-bytes)",
        param="messages",
    )
