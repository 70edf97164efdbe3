"""A request body read within its size limit, and parsed as JSON without a traceback for any input.

The body is counted as it arrives: a ``Content-Length`` over the limit is refused before a byte is read, and
a chunked body is cut off as soon as it passes the limit, so a client cannot make the server hold more than
``--max-body-bytes``. Malformed JSON, a body that is not UTF-8 and JSON nested deeper than the parser's stack
are all a 400 naming the problem.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterable
from typing import Any

from awares_agent.backends.reply_cap import size_text
from awares_agent.serve.errors import ServeError

__all__ = ["parse_json", "read_body"]


async def read_body(chunks: AsyncIterable[bytes], limit: int, declared: str | None) -> bytes:
    """The whole body, refused past ``limit`` bytes.

    Args:
        chunks: the body as it arrives (Starlette's ``request.stream()``).
        limit: the most bytes accepted.
        declared: the request's ``Content-Length`` header, if any.

    Raises:
        ServeError: 413 ``request_too_large`` (declared or counted), or 400 for a malformed length.
    """
    if declared is not None:
        try:
            length = int(declared)
        except ValueError:
            raise ServeError(
                400, "invalid_content_length", f"Content-Length {declared!r} is not a number"
            ) from None
        if length > limit:
            raise _too_large(limit)
    parts: list[bytes] = []
    seen = 0
    async for chunk in chunks:
        seen += len(chunk)
        if seen > limit:
            raise _too_large(limit)
        parts.append(chunk)
    return b"".join(parts)


def _too_large(limit: int) -> ServeError:
    return ServeError(
        413,
        "request_too_large",
        f"the request body is larger than this server's limit of {size_text(limit)}; send a smaller image "
        f"(or ask the operator to raise --max-body-bytes)",
    )


def parse_json(raw: bytes) -> Any:
    """The JSON value of a request body.

    Raises:
        ServeError: 400 ``invalid_json`` (empty, not UTF-8, not JSON, or nested too deeply).
    """
    if not raw.strip():
        raise ServeError(400, "invalid_json", "the request body is empty; send a JSON object")
    try:
        return json.loads(raw)
    except UnicodeDecodeError:
        raise ServeError(
            400, "invalid_json", "the request body is not UTF-8 text; send a JSON object"
        ) from None
    except ValueError as exc:
        raise ServeError(400, "invalid_json", f"the request body is not valid JSON: {exc}") from None
    except RecursionError:
        raise ServeError(400, "invalid_json", "the request body's JSON is nested too deeply") from None
