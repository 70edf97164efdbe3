"""Keeping credentials out of everything the project prints or stores.

Every API key a backend is configured with is registered here (:func:`register_secret`), and every text that
leaves the process — error messages, answers, trajectories, judge caches, failure records, checkpoints, log
records — goes through :func:`redact` first. It replaces each registered key, and anything shaped like a
credential (``Bearer <token>``, ``sk-...`` / ``sk-proj-...`` keys, ``Authorization:`` header values), with
``<redacted>``.

Redact **before** cutting a text short: an excerpt cut through the middle of a key no longer holds the whole
key, so the key's own replacement would miss it and leave most of it readable.

Registered keys live in a process-wide set that is never written anywhere; a key shorter than
:data:`MIN_SECRET_CHARS` is not registered (replacing every "EMPTY" or "abc" would garble ordinary text, and
such a value protects nothing).
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
from collections.abc import Iterable
from typing import Any

__all__ = [
    "EXCERPT_CHARS",
    "MIN_SECRET_CHARS",
    "REDACTED",
    "RedactingFilter",
    "Secrets",
    "excerpt",
    "forget_secret",
    "install_log_redaction",
    "redact",
    "redact_causes",
    "redact_value",
    "register_secret",
]

#: What a secret is replaced with.
REDACTED = "<redacted>"

#: Keys shorter than this are not registered (see the module docstring).
MIN_SECRET_CHARS = 12

#: How much of a foreign text (a server's message, a reply's body) an error message shows.
EXCERPT_CHARS = 200

# Credential shapes worth hiding even when nobody registered them: a server may echo a key that is not ours
# (a proxy's master key), or the header that carried ours. One pattern, so a text is scanned once.
# A token: 16 or more token characters, at least one a digit. Ordinary words ("bearer instruments") and short
# codes a document may print ("Authorization: 004512") are not tokens.
_TOKEN = r"(?=[A-Za-z._~+/=-]*\d)[A-Za-z0-9._~+/=-]{16,}"
_CREDENTIAL = re.compile(
    # Authorization / x-api-key / api-key header values, as echoed in error bodies.
    rf"(?i)\b(?P<header>authorization|x-api-key|api[-_]key)(?P<sep>\"?\s*[:=]\s*\"?)(?:bearer\s+)?{_TOKEN}"
    rf"|\bbearer\s+{_TOKEN}"
    # OpenAI-style keys (sk-..., sk-proj-...), also what LiteLLM and many proxies issue.
    r"|\bsk-[A-Za-z0-9_-]{16,}"
)


def _hide(match: re.Match[str]) -> str:
    header = match["header"]
    return f"{header}{match['sep']}{REDACTED}" if header else REDACTED


_lock = threading.Lock()
_secrets: set[str] = set()
_ordered: tuple[str, ...] = ()


def register_secret(value: str | None) -> None:
    """Remember ``value`` as a secret to hide from every text the project prints or stores.

    Args:
        value: an API key or token; ``None`` and values shorter than :data:`MIN_SECRET_CHARS` are ignored.
    """
    global _ordered
    if not value or len(value) < MIN_SECRET_CHARS:
        return
    with _lock:
        _secrets.add(value)
        # Longest first, so a key that contains another registered key is replaced whole.
        _ordered = tuple(sorted(_secrets, key=len, reverse=True))


def forget_secret(value: str | None) -> None:
    """Stop hiding ``value`` (tests use it; a backend's key stays registered for the process's life)."""
    global _ordered
    with _lock:
        _secrets.discard(value or "")
        _ordered = tuple(sorted(_secrets, key=len, reverse=True))


def redact(text: str, extra: Iterable[str] = ()) -> str:
    """``text`` with every registered secret, every value in ``extra`` and every credential-shaped token
    replaced by :data:`REDACTED`.

    Args:
        text: any text about to be printed or stored.
        extra: more secrets to hide in this call only (values under :data:`MIN_SECRET_CHARS` are ignored).
    """
    if not text:
        return text
    for secret in (*_ordered, *(e for e in extra if e and len(e) >= MIN_SECRET_CHARS)):
        if secret in text:
            text = text.replace(secret, REDACTED)
    return _CREDENTIAL.sub(_hide, text)


def redact_value(value: Any, extra: Iterable[str] = ()) -> Any:
    """A JSON-like value (an error body) with every string in it, keys included, :func:`redact`-ed."""
    if isinstance(value, str):
        return redact(value, extra)
    if isinstance(value, dict):
        return {
            redact(k, extra) if isinstance(k, str) else k: redact_value(v, extra) for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return type(value)(redact_value(v, extra) for v in value)
    return value


def excerpt(text: str, extra: Iterable[str] = (), limit: int = EXCERPT_CHARS) -> str:
    """``text`` on one line, credentials (registered ones, and ``extra``) redacted, cut to ``limit`` chars.

    Redaction comes first: a cut through the middle of a key would leave a fragment that no longer matches
    the key, so the key's replacement would miss it.

    Args:
        text: a foreign text to quote in a message (a server's error, a reply's body).
        extra: more secrets to hide, as for :func:`redact`.
        limit: the most characters kept; a longer text ends in ``... (<n> chars)``.
    """
    text = redact(" ".join(text.split()), extra)
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} chars)"


def redact_causes(err: BaseException, extra: Iterable[str] = ()) -> None:
    """Redact, in place, ``err`` and every exception chained under it (``__cause__``, else ``__context__``).

    A library exception that becomes an error's ``__cause__`` is printed in tracebacks with the exceptions
    chained under it, and a server may have echoed a key back in any of them: their arguments, and the
    ``message`` and ``body`` attributes SDKs keep (openai, anthropic...), are redacted.

    Args:
        err: the exception at the head of the chain.
        extra: more secrets to hide, as for :func:`redact`.
    """
    extra = tuple(extra)
    seen: set[int] = set()
    chained: BaseException | None = err
    while chained is not None and id(chained) not in seen:
        seen.add(id(chained))
        chained.args = tuple(redact_value(a, extra) for a in chained.args)
        for name in ("message", "body"):
            value = getattr(chained, name, None)
            if isinstance(value, str | dict | list):
                with contextlib.suppress(AttributeError):  # a read-only property
                    setattr(chained, name, redact_value(value, extra))
        chained = chained.__cause__ or chained.__context__


class Secrets:
    """A backend's secret values, kept so that they never show up in a repr or a traceback's locals.

    Args:
        values: the secrets (API keys, tokens); each is also :func:`register_secret`-ed.
    """

    __slots__ = ("values",)

    def __init__(self, values: Iterable[str]) -> None:
        # Longest first, so that a secret containing another is replaced whole.
        self.values: tuple[str, ...] = tuple(sorted(set(values), key=len, reverse=True))
        for value in self.values:
            register_secret(value)

    def redact(self, text: str) -> str:
        """``text`` :func:`redact`-ed, these secrets included."""
        return redact(text, self.values)

    def __repr__(self) -> str:
        return "<secrets>"


class RedactingFilter(logging.Filter):
    """A logging filter that redacts each record's message (arguments merged in first) and exception text."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a record whose arguments do not fit its format: leave it to the handler
            return True
        record.msg, record.args = redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


def install_log_redaction(logger: logging.Logger | None = None) -> RedactingFilter:
    """Add a :class:`RedactingFilter` to every handler of ``logger`` (the root logger by default), once.

    Filters on handlers (not on loggers) also see records that third-party loggers (openai, httpx) propagate.

    Returns:
        The filter installed (the existing one if it was already there).
    """
    target = logger or logging.getLogger()
    installed = None
    for handler in target.handlers:
        existing = next((f for f in handler.filters if isinstance(f, RedactingFilter)), None)
        if existing is None:
            existing = RedactingFilter()
            handler.addFilter(existing)
        installed = installed or existing
    return installed or RedactingFilter()
