"""Image and media URLs in a client's request: which the server reads, fetches, forwards or refuses.

A client is untrusted, and so is every URL it writes. The rules, for every request (one AwaRes answers and
one passed through to the upstream alike):

* ``data:`` URIs are accepted. AwaRes decodes its image into bytes (:func:`~awares_agent.serve.data_uri.
  decode_data_uri`) and hands the agent the bytes, never the string.
* ``http(s)`` URLs are refused unless the operator turned fetching on (``--allow-image-urls``); then the
  server fetches them itself, guarded (:mod:`awares_agent.serve.fetch`), and a request passed through gets
  its image URLs replaced by ``data:`` URIs of what was fetched, so the upstream (which may fetch URLs from
  inside the server's network) never sees a client's URL.
* Anything else (a path such as ``/etc/passwd``, ``file://``, ``ftp://``...) is refused: it is never opened
  here and never forwarded to an upstream that might open it (vLLM's ``--allowed-local-media-path``).

Media URLs are looked for under the keys of :data:`MEDIA_KEYS`, as a string or as ``{"url": ...}``, anywhere
in the body; a media URL other than an image's (``video_url``, ``audio_url``, ``file_url``) is forwarded only
as a ``data:`` URI.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Iterator
from typing import Any

from awares_agent.serve.data_uri import decode_data_uri
from awares_agent.serve.errors import ServeError
from awares_agent.serve.fetch import ImageFetcher

__all__ = ["MEDIA_KEYS", "ClientImages", "media_slots", "url_of"]

#: The keys whose value is a media URL (a string, or an object with a ``url``).
MEDIA_KEYS = frozenset({"image_url", "video_url", "audio_url", "file_url"})

_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"BM", "image/bmp"),
    (b"II*\x00", "image/tiff"),
    (b"MM\x00*", "image/tiff"),
)


def url_of(value: Any) -> str | None:
    """The URL of a media slot's value: the string itself, or an object's ``url``; ``None`` otherwise."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("url"), str):
        return value["url"]
    return None


def media_slots(body: Any) -> Iterator[tuple[dict[str, Any], str]]:
    """``(object, key)`` for every media URL slot in ``body``, walked without recursion (any depth)."""
    stack = [body]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            for key, value in item.items():
                if key in MEDIA_KEYS and url_of(value) is not None:
                    yield item, key
                elif isinstance(value, dict | list):
                    stack.append(value)
        elif isinstance(item, list):
            stack.extend(v for v in item if isinstance(v, dict | list))


def _scheme(url: str) -> str:
    head = url[:16].lower().lstrip()
    if head.startswith("data:"):
        return "data"
    if head.startswith(("http://", "https://")):
        return "http"
    return "other"


def _media_type(data: bytes) -> str:
    for magic, media in _MAGIC:
        if data.startswith(magic):
            return media
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return "application/octet-stream"


class ClientImages:
    """The server's rules for a client's image URLs (see the module docstring), for one server process.

    Args:
        max_bytes: the largest image accepted (decoded or fetched).
        fetcher: fetches ``http(s)`` URLs; ``None`` refuses them (no ``--allow-image-urls``).
    """

    def __init__(self, *, max_bytes: int, fetcher: ImageFetcher | None = None) -> None:
        self.max_bytes = max_bytes
        self.fetcher = fetcher

    async def load(self, url: str) -> bytes:
        """The image bytes a URL names: a decoded ``data:`` URI, or a guarded fetch.

        Raises:
            ServeError: 400 for a URL that is refused, malformed, unreachable or too large.
        """
        scheme = _scheme(url)
        if scheme == "data":
            # Decoding tens of MB of base64 takes tens of ms: off the event loop.
            return await asyncio.to_thread(decode_data_uri, url, limit=self.max_bytes)
        if scheme == "http" and self.fetcher is not None:
            return await self.fetcher.fetch(url)
        raise self._refused(url, scheme)

    async def forwardable(self, body: Any) -> bool:
        """Make ``body`` safe to forward to the upstream, in place: ``data:`` URIs stay, fetched image URLs
        become ``data:`` URIs. Returns whether anything was replaced.

        Raises:
            ServeError: 400 for a media URL that is refused or cannot be fetched.
        """
        changed = False
        for holder, key in list(media_slots(body)):
            url = url_of(holder[key])
            assert url is not None
            scheme = _scheme(url)
            if scheme == "data":
                continue
            if scheme != "http" or self.fetcher is None or key != "image_url":
                raise self._refused(url, scheme, key)
            data = await self.fetcher.fetch(url)
            inlined = f"data:{_media_type(data)};base64,{base64.b64encode(data).decode('ascii')}"
            if isinstance(holder[key], dict):
                holder[key] = {**holder[key], "url": inlined}
            else:
                holder[key] = inlined
            changed = True
        return changed

    def _refused(self, url: str, scheme: str, key: str = "image_url") -> ServeError:
        if scheme == "http" and key == "image_url":
            why = "this server does not fetch image URLs (its operator has not turned on --allow-image-urls)"
        elif scheme == "http":
            why = f"this server forwards a {key} only as a data: URI"
        else:
            why = "only data: URIs (and, where the operator allows it, http(s) URLs) are accepted; a path or "
            why += "file: URL is never opened"
        shown = url if len(url) <= 80 else url[:77] + "..."
        return ServeError(
            400,
            "image_url_not_allowed",
            f"{key} {shown!r} is refused: {why}; send the image as a data: URI "
            "(data:image/png;base64,<base64 of the file>)",
            param="messages",
        )
