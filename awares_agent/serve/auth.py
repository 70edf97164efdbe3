"""Client API keys: ``--api-keys-file``, one key per line, checked in constant time.

A request to ``/v1/...`` then needs ``Authorization: Bearer <key>`` with one of the keys; anything else is a
401 in OpenAI's form. Each key is compared with :func:`hmac.compare_digest`, and every key is compared (no
early exit), so the time taken says nothing about which key nearly matched. The keys are registered as
secrets (:mod:`awares_agent.redact`), so no log line shows one; the key a client sent is never forwarded to
the upstream, written to a trajectory, or echoed.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Sequence
from pathlib import Path

from awares_agent.errors import ConfigError
from awares_agent.redact import register_secret
from awares_agent.serve.errors import ServeError

__all__ = ["APIKeys"]

_SCHEME = "bearer "


class APIKeys:
    """The client keys a server accepts.

    Args:
        keys: the accepted keys (at least one).

    Raises:
        ConfigError: no key.
    """

    def __init__(self, keys: Sequence[str]) -> None:
        self._keys = [key.encode() for key in dict.fromkeys(keys)]
        if not self._keys:
            raise ConfigError("no client API key given; put one key per line in the --api-keys-file")
        for key in keys:
            register_secret(key)

    def __len__(self) -> int:
        return len(self._keys)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> APIKeys:
        """The keys in ``path``: one per line; blank lines and lines starting with ``#`` are skipped.

        Raises:
            ConfigError: the file cannot be read or holds no key.
        """
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read the API keys file {path}: {exc}") from None
        keys = [line.strip() for line in text.splitlines()]
        keys = [key for key in keys if key and not key.startswith("#")]
        if not keys:
            raise ConfigError(f"the API keys file {path} holds no key; put one key per line")
        return cls(keys)

    def check(self, authorization: str | None) -> None:
        """Accept the ``Authorization`` header, or raise the 401 a client gets.

        Raises:
            ServeError: 401 ``invalid_api_key`` (missing, malformed or unknown key).
        """
        if authorization is None or not authorization[: len(_SCHEME)].lower() == _SCHEME:
            raise _unauthorized("no API key: send Authorization: Bearer <key> (the openai client's api_key)")
        offered = authorization[len(_SCHEME) :].strip().encode()
        matched = False
        for key in self._keys:
            matched |= hmac.compare_digest(offered, key)
        if not matched:
            raise _unauthorized("the API key is not valid for this server")


def _unauthorized(message: str) -> ServeError:
    return ServeError(
        401,
        "invalid_api_key",
        message,
        type="authentication_error",
        headers={"WWW-Authenticate": 'Bearer realm="awares"'},
    )
