"""The project's exception hierarchy.

Every error the toolkit raises on purpose derives from :class:`AwaresError`, and its message names the input
at fault and what to do about it. Library exceptions (PIL, httpx, openai, pydantic) are caught at the boundary
and re-raised as one of these, with the original chained as ``__cause__``.
"""

from __future__ import annotations

from awares_agent.untrusted import safe_text


class AwaresError(Exception):
    """Root of every error raised on purpose by awares.

    Its message is made safe at construction: valid UTF-8 (a lone surrogate from a model's reply becomes
    U+FFFD) and credentials redacted (:mod:`awares_agent.redact`), so every error can be printed, logged
    and stored as it is.
    """

    def __init__(self, *args: object) -> None:
        super().__init__(*(safe_text(a) if isinstance(a, str) else a for a in args))


# --- images -------------------------------------------------------------------------------------------


class ImageError(AwaresError):
    """An image could not be used. ``source`` names the input (a path, ``<bytes>``, ``<PIL image>``...)."""

    def __init__(self, message: str, *, source: str | None = None) -> None:
        super().__init__(message)
        self.source = source


class ImageDecodeError(ImageError):
    """The input is not an image, or is corrupt or truncated."""


class ImageTooLargeError(ImageError):
    """The image has more pixels than the configured limit (a decompression-bomb guard)."""


# --- the crop tool -------------------------------------------------------------------------------------


class UnknownImageError(AwaresError, KeyError):
    """No image with this id is in the store (nor, for a persistent store, under its root)."""

    def __str__(self) -> str:
        # KeyError's str() would show the message in quotes.
        return str(self.args[0]) if self.args else ""


class CropRequestError(AwaresError):
    """A crop request from the model is invalid (unknown, duplicate or no crops, or malformed arguments).

    The message is written for the model: it is shown to it so it can correct itself once.
    """

    def __init__(self, message: str, *, raw: str | None = None) -> None:
        super().__init__(message)
        self.raw = raw


# --- backends ------------------------------------------------------------------------------------------


class BackendError(AwaresError):
    """A chat backend failed to give a usable reply."""


class BackendTimeoutError(BackendError):
    """The backend did not answer within the configured timeout (after retries)."""


class BackendConnectionError(BackendError):
    """The backend could not be reached."""


class BackendRateLimitError(BackendError):
    """The backend kept answering 429 after every retry."""


class BackendHTTPError(BackendError):
    """The backend answered with an HTTP error status."""

    def __init__(self, message: str, *, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code


class BackendAuthError(BackendHTTPError):
    """The backend refused the credentials (HTTP 401/403)."""


class BackendResponseError(BackendError):
    """The backend answered, but the reply is not a valid chat completion."""


class ReplyTooLargeError(BackendResponseError):
    """The backend's reply was larger than the cap on a reply's size.

    The reply was read no further than the cap (its connection closed) and is not retried: the same request
    would get the same reply.

    Attributes:
        limit: the cap, in bytes.
        status_code: the HTTP status the oversized reply came with (``None`` when unknown).
    """

    def __init__(self, message: str, *, limit: int, status_code: int | None = None) -> None:
        super().__init__(message)
        self.limit = limit
        self.status_code = status_code


class MessageTranslationError(AwaresError, ValueError):
    """A message cannot be expressed in a backend's format (e.g. an image inside a ``tool`` message)."""


# --- configuration -------------------------------------------------------------------------------------


class ConfigError(AwaresError):
    """An option or a combination of options is invalid."""
