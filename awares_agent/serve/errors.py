"""Errors as OpenAI-compatible clients expect them: ``{"error": {"message", "type", "code", "param"}}``.

Every refusal of the server is a :class:`ServeError` (an HTTP status, an OpenAI error ``type`` and a stable
``code`` that the metrics count by). :func:`serve_error` maps the project's own errors onto it: a bad image is
the client's (400), an upstream failure the server's (502, 504, or 429 when the upstream is rate-limiting).

What reaches an untrusted client is written for it: an upstream failure says what kind it was and gives the
request id, but not the upstream's address or reply (those go to the server's log, redacted). No message
carries a traceback, and every one goes through :func:`~awares_agent.redact.redact`.
"""

from __future__ import annotations

from typing import Any

from awares_agent.errors import (
    AwaresError,
    BackendAuthError,
    BackendConnectionError,
    BackendError,
    BackendRateLimitError,
    BackendResponseError,
    BackendTimeoutError,
    ConfigError,
    ImageError,
    ImageTooLargeError,
    ReplyTooLargeError,
)
from awares_agent.redact import redact

__all__ = ["ServeError", "error_body", "serve_error"]

ErrorType = str
"""OpenAI's error ``type``: ``invalid_request_error``, ``authentication_error``, ``rate_limit_error``,
``upstream_error``, ``timeout_error``, ``server_error``."""


class ServeError(AwaresError):
    """A request the server refuses or cannot answer, as an HTTP status and an OpenAI-style error body.

    Args:
        status: the HTTP status.
        code: a stable, machine-readable code (``invalid_json``, ``image_too_large``...); the metrics count
            errors by it.
        message: what went wrong and what to do, for the client.
        type: OpenAI's error type (default ``invalid_request_error``).
        param: the request field at fault, if one is.
        headers: extra response headers (``WWW-Authenticate``...).
    """

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        type: ErrorType = "invalid_request_error",
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.type = type
        self.param = param
        self.headers = dict(headers or {})

    @property
    def message(self) -> str:
        """The message, as the client sees it."""
        return str(self)

    def body(self) -> dict[str, Any]:
        """The JSON error body."""
        return error_body(self.message, self.type, self.code, self.param)


def error_body(message: str, type: ErrorType, code: str, param: str | None = None) -> dict[str, Any]:
    """``{"error": {"message", "type", "param", "code"}}``, the message redacted."""
    return {"error": {"message": redact(message), "type": type, "param": param, "code": code}}


def serve_error(exc: AwaresError, request_id: str) -> ServeError:
    """The :class:`ServeError` a client gets for a project error raised while its request ran.

    Args:
        exc: the error (a :class:`ServeError` is returned as it is).
        request_id: the request's id, named in messages that leave the detail to the server's log.
    """
    if isinstance(exc, ServeError):
        return exc
    if isinstance(exc, ImageTooLargeError):
        return ServeError(400, "image_too_large", str(exc), param="messages")
    if isinstance(exc, ImageError):
        return ServeError(400, "invalid_image", str(exc), param="messages")
    if isinstance(exc, ConfigError):
        return ServeError(400, "invalid_awares_options", str(exc), param="awares")
    if isinstance(exc, BackendError):
        status, code, what = _upstream(exc)
        kind = "rate_limit_error" if status == 429 else "timeout_error" if status == 504 else "upstream_error"
        return ServeError(
            status,
            code,
            f"the upstream model server {what} (request {request_id}; the server's log has the detail)",
            type=kind,
        )
    return ServeError(
        500,
        "internal_error",
        f"the server failed on this request (request {request_id}); please report it",
        type="server_error",
    )


def _upstream(exc: BackendError) -> tuple[int, str, str]:
    """``(status, code, what happened)`` of an upstream failure; subclasses before their parents."""
    if isinstance(exc, BackendTimeoutError):
        return 504, "upstream_timeout", "did not answer in time"
    if isinstance(exc, BackendRateLimitError):
        return 429, "upstream_rate_limited", "is rate-limiting requests; retry later"
    if isinstance(exc, BackendAuthError):
        return 502, "upstream_auth_failed", "refused this server's credentials"
    if isinstance(exc, BackendConnectionError):
        return 502, "upstream_unavailable", "could not be reached"
    if isinstance(exc, ReplyTooLargeError):
        return 502, "upstream_reply_too_large", "sent a reply larger than the cap on a reply's size"
    if isinstance(exc, BackendResponseError):
        return 502, "upstream_invalid_reply", "sent a reply that is not a valid chat completion"
    return 502, "upstream_error", "failed"
