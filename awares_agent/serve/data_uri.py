"""A client's ``data:`` image URI decoded into bytes, strictly and within a size limit.

This is the only way a client's image string becomes image bytes on the server (besides a guarded fetch,
:mod:`awares_agent.serve.fetch`): the bytes, never the string, go to the agent, so nothing a client writes is
ever read as a path. The size is checked from the encoded length before anything is decoded.
"""

from __future__ import annotations

import base64
import binascii
import re
import urllib.parse

from awares_agent.backends.reply_cap import size_text
from awares_agent.serve.errors import ServeError

__all__ = ["decode_data_uri"]

# data:[<media type>][;param=value]*[;base64],<data>
_HEADER = re.compile(
    r"data:(?P<type>[\w.+-]+/[\w.+-]+)?(?P<params>(?:;[\w.+-]+=[^;,]*)*)(?P<b64>;base64)?", re.I
)


def decode_data_uri(uri: str, *, limit: int) -> bytes:
    """The bytes of an image ``data:`` URI.

    Args:
        uri: ``data:image/png;base64,...`` (an ``image/*`` or ``application/octet-stream`` media type, or
            none; base64 or percent-encoded).
        limit: the most decoded bytes accepted.

    Raises:
        ServeError: 400 ``invalid_image_url`` for a malformed URI or a media type that is not an image,
            ``image_too_large`` past ``limit``.
    """
    header, comma, payload = uri.partition(",")
    match = _HEADER.fullmatch(header)
    if not comma or match is None:
        raise _malformed("it is not data:[<media type>][;base64],<data>")
    media = (match["type"] or "").lower()
    if media and not media.startswith("image/") and media != "application/octet-stream":
        raise _malformed(f"its media type {media!r} is not an image type (image/png, image/jpeg...)")
    if match["b64"]:
        data = "".join(payload.split()).encode("ascii", "replace")
        if len(data) // 4 * 3 > limit + 2:
            raise _too_large(limit)
        try:
            decoded = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise _malformed(f"its base64 data is not valid ({exc})") from None
    else:
        if len(payload) > 3 * limit:
            raise _too_large(limit)
        decoded = urllib.parse.unquote_to_bytes(payload)
    if len(decoded) > limit:
        raise _too_large(limit)
    if not decoded:
        raise _malformed("it holds no data")
    return decoded


def _malformed(why: str) -> ServeError:
    return ServeError(
        400,
        "invalid_image_url",
        f"the image data: URI is malformed: {why}; send data:image/png;base64,<base64 of the file>",
        param="messages",
    )


def _too_large(limit: int) -> ServeError:
    return ServeError(
        400,
        "image_too_large",
        f"the image is larger than this server's limit of {size_text(limit)} (--max-image-bytes)",
        param="messages",
    )
