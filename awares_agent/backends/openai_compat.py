"""A chat backend for any OpenAI-compatible chat-completions server (api.openai.com, vLLM, Ollama, SGLang...).

Images travel as base64 ``data:`` URIs inside user messages; the crop tool is offered through native function
calling (``tools``). This module is the backend and its error table; its parts live beside it, one idea each:

* :mod:`~awares_agent.backends.openai_messages`: messages as chat-completions ``messages``;
* :mod:`~awares_agent.backends.openai_parsing`: a chat-completions body read, leniently, into a reply;
* :mod:`~awares_agent.backends.sse` and :mod:`~awares_agent.backends.openai_stream`: a ``stream: true``
  reply's server-sent events added up to the chat completion the server would have sent whole, so a streamed
  turn and a whole one give the same reply;
* :mod:`~awares_agent.backends.retry`: the attempt policy (timeout, retries, backoff, deadline) and the loop
  that every call, sync or async, streamed or not, runs its attempts in;
* :mod:`~awares_agent.backends.http_deadline`: the transport that bounds a synchronous attempt as a whole;
* :mod:`~awares_agent.backends.reply_cap`: the transports that cap a reply's size while it is read;
* :mod:`~awares_agent.backends.error_mapping`: the translation of a failure through this module's table.

Time is bounded twice. ``timeout`` bounds each attempt as a whole (connecting, sending, and receiving the
complete body), not each socket read: a server that trickles its reply a byte at a time is cut off when the
attempt's time is up. ``deadline`` bounds one :meth:`OpenAIBackend.complete` call, every attempt and every
wait between them included. The retries are the backend's own (the ``openai`` client is created with
``max_retries=0``): connection errors, timeouts, 408/409/429 and 5xx are retried (a server's
``x-should-retry: true/false`` overrides), after an exponential backoff (0.5 s doubling, capped at 8 s, with
a little jitter) or the wait a server asks for with a positive ``Retry-After`` (seconds or an HTTP date) or
``retry-after-ms``. A wait that would end past the deadline is not taken: the call gives up at once and says
why. A streamed attempt is retried only until its first text has been passed on: text cannot be taken back.

Size is bounded too. ``max_reply_bytes`` caps the body of every reply, whole or streamed, success or error
status, as sent and (for a compressed body) as decoded; it is counted as the body arrives, and a reply past it
ends the call at once with :class:`~awares_agent.errors.ReplyTooLargeError`, its connection closed, not
retried. A reply's text is bounded by the same cap (a JSON string holds no more characters than bytes).

Every failure surfaces as a :class:`~awares_agent.errors.BackendError` subclass that names the server and the
model. The API key is registered with :mod:`awares_agent.redact`, and every text an error carries (its
message, and the chained ``openai`` exception's message, arguments and body) is redacted in full before it is
cut to an excerpt, so the key never appears in ``repr()``, log records or error messages, not even in part.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import ssl
import threading
import time
import weakref
from collections.abc import AsyncGenerator, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import httpx2
import openai

from awares_agent.backends.base import TextSink
from awares_agent.backends.error_mapping import ErrorRule, translate_error
from awares_agent.backends.http_deadline import (
    DeadlineTransport,
    HttpClient,
    attempt_deadline,
    environment_proxy,
)
from awares_agent.backends.openai_messages import to_openai_messages
from awares_agent.backends.openai_parsing import error_text, json_text, parse_completion
from awares_agent.backends.openai_stream import STREAM_FIELDS, ChunkReader
from awares_agent.backends.reply_cap import (
    DEFAULT_MAX_REPLY_BYTES,
    AsyncReplyCapTransport,
    ReplyCapTransport,
    size_text,
)
from awares_agent.backends.retry import (
    DEFAULT_MAX_RETRIES,
    DEFAULT_TIMEOUT,
    DEFAULT_WAIT_ALLOWANCE,
    CallState,
    GiveUp,
    RetryPolicy,
    aretry,
    attempts_text,
    retry,
    retry_after,
)
from awares_agent.errors import (
    BackendAuthError,
    BackendConnectionError,
    BackendError,
    BackendHTTPError,
    BackendRateLimitError,
    BackendResponseError,
    BackendTimeoutError,
    ConfigError,
    MessageTranslationError,
)
from awares_agent.messages import ChatMessage, ChatReply, ToolSpec
from awares_agent.redact import Secrets, excerpt

if TYPE_CHECKING:
    from awares_agent.image_store import ImageStore

__all__ = [
    "DEFAULT_MAX_REPLY_BYTES",
    "DEFAULT_WAIT_ALLOWANCE",
    "OPENAI_BASE_URL",
    "PLACEHOLDER_API_KEY",
    "MessageTranslationError",
    "OpenAIBackend",
    "parse_completion",
    "to_openai_messages",
]

log = logging.getLogger(__name__)

#: The base URL used when ``base_url`` is not given.
OPENAI_BASE_URL = "https://api.openai.com/v1"

#: The key sent to servers that need none (vLLM, Ollama); the openai client refuses an empty key.
PLACEHOLDER_API_KEY = "EMPTY"

#: The failures an attempt may be retried after (``TimeoutError``: an async attempt ran out of time).
_ATTEMPT_FAILURES: tuple[type[Exception], ...] = (openai.OpenAIError, TimeoutError)


def _should_retry(err: BaseException) -> bool:
    """Whether a failed attempt is worth another (the openai client's own rules)."""
    if isinstance(err, (TimeoutError, openai.APITimeoutError, openai.APIConnectionError)):
        return True
    if not isinstance(err, openai.APIStatusError):
        return False
    verdict = err.response.headers.get("x-should-retry")
    if verdict in ("true", "false"):
        return verdict == "true"
    return err.status_code in (408, 409, 429) or err.status_code >= 500


@dataclass
class _LoopClient:
    """The async client of one event loop, and the async generator that closes it with the loop."""

    client: openai.AsyncOpenAI
    closer: AsyncGenerator[None, None]


async def _close_with_the_loop(client: openai.AsyncOpenAI) -> AsyncGenerator[None, None]:
    """Suspended at its ``yield`` for the loop's life. Async generators are registered with the loop that
    first runs them, and ``asyncio.run`` (like ``loop.shutdown_asyncgens()``) closes them before the loop
    closes: the ``finally`` then closes the client's pooled connections on their own loop, instead of leaving
    them to a garbage collection that would find the loop closed ("Event loop is closed")."""
    try:
        yield
    finally:
        await client.close()


class OpenAIBackend:
    """A :class:`~awares_agent.backends.base.StreamingChatBackend` for OpenAI-compatible chat-completions
    servers.

    Args:
        model: the model name sent with every request.
        base_url: the server's API root, e.g. ``http://localhost:8000/v1`` for vLLM; ``None`` means
            api.openai.com (the ``OPENAI_BASE_URL`` environment variable is deliberately not consulted).
        api_key: the API key; defaults to the environment variable named by ``api_key_env``, and, for a
            custom ``base_url`` (local servers need none), to the placeholder ``"EMPTY"``. It is registered
            with :func:`awares_agent.redact.register_secret`, so no message of the process shows it.
        api_key_env: the environment variable holding the key.
        timeout: seconds allowed for each attempt as a whole: connecting, sending the request and receiving
            the complete reply (a reply that trickles in is cut off when the time is up); every retry gets a
            fresh allowance, within the deadline.
        max_retries: retries on connection errors, timeouts, 408/409/429 and 5xx (``x-should-retry`` from the
            server overrides), after an exponential backoff or the server's positive ``Retry-After``; 0
            disables them.
        deadline: seconds allowed for one :meth:`complete` / :meth:`acomplete` call, every attempt and every
            wait between attempts included; a ``Retry-After`` that would end past it makes the call give up
            at once. ``None`` (the default): ``timeout * (max_retries + 1) + 30``, every attempt's full
            allowance plus 30 s of waiting (:data:`~awares_agent.backends.retry.DEFAULT_WAIT_ALLOWANCE`).
        image_format: how images are encoded in the ``data:`` URIs.
        image_detail: OpenAI's image ``detail`` (``"high"`` keeps crops at full resolution on
            api.openai.com; ``None`` sends none, which local servers expect).
        temperature: sampling temperature; ``None`` leaves it to the server.
        max_tokens: cap on generated tokens; ``None`` leaves it to the server.
        extra_body: extra JSON fields merged into every request body (e.g. vLLM's ``top_k``).
        default_headers: extra HTTP headers sent with every request.
        max_reply_bytes: the most bytes a reply's body may hold, whole or streamed, as sent and (compressed)
            as decoded: :data:`~awares_agent.backends.reply_cap.DEFAULT_MAX_REPLY_BYTES` (16 MiB) by default.
            A larger reply is read no further: the call fails at once with
            :class:`~awares_agent.errors.ReplyTooLargeError`, without a retry.

    Raises:
        ConfigError: no API key for api.openai.com, or an invalid option.
    """

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        api_key_env: str = "OPENAI_API_KEY",
        timeout: float = DEFAULT_TIMEOUT,
        max_retries: int = DEFAULT_MAX_RETRIES,
        deadline: float | None = None,
        image_format: Literal["png", "jpeg"] = "png",
        image_detail: Literal["auto", "low", "high"] | None = None,
        temperature: float | None = 0.0,
        max_tokens: int | None = None,
        extra_body: dict[str, Any] | None = None,
        default_headers: dict[str, str] | None = None,
        max_reply_bytes: int = DEFAULT_MAX_REPLY_BYTES,
    ) -> None:
        if not model:
            raise ConfigError("OpenAIBackend: model must be a non-empty model name")
        if not _positive_seconds(timeout):
            raise ConfigError(f"OpenAIBackend: timeout must be a positive number of seconds, got {timeout!r}")
        if not isinstance(max_retries, int) or isinstance(max_retries, bool) or max_retries < 0:
            raise ConfigError(f"OpenAIBackend: max_retries must be an integer >= 0, got {max_retries!r}")
        if deadline is not None and not _positive_seconds(deadline):
            raise ConfigError(
                f"OpenAIBackend: deadline must be a positive number of seconds or None (the default: "
                f"timeout * (max_retries + 1) + {DEFAULT_WAIT_ALLOWANCE:g}), got {deadline!r}"
            )
        if image_format not in ("png", "jpeg"):
            raise ConfigError(f"OpenAIBackend: image_format must be 'png' or 'jpeg', got {image_format!r}")
        if image_detail not in (None, "auto", "low", "high"):
            raise ConfigError(f"OpenAIBackend: image_detail must be auto/low/high/None, got {image_detail!r}")
        if not isinstance(max_reply_bytes, int) or isinstance(max_reply_bytes, bool) or max_reply_bytes <= 0:
            raise ConfigError(
                f"OpenAIBackend: max_reply_bytes must be a positive number of bytes (default "
                f"{DEFAULT_MAX_REPLY_BYTES}: {size_text(DEFAULT_MAX_REPLY_BYTES)}), got {max_reply_bytes!r}"
            )
        if max_tokens is not None and max_tokens <= 0:
            raise ConfigError(f"OpenAIBackend: max_tokens must be positive or None, got {max_tokens!r}")
        if base_url is not None and not base_url.startswith(("http://", "https://")):
            raise ConfigError(
                f"OpenAIBackend: base_url must start with http:// or https://, got {base_url!r} "
                f"(e.g. http://localhost:8000/v1)"
            )

        key = api_key or os.environ.get(api_key_env) or None
        if key is None:
            if base_url is None:
                raise ConfigError(
                    f"OpenAIBackend: no API key for {OPENAI_BASE_URL}: set the {api_key_env} environment "
                    f"variable or pass api_key=...; for a local OpenAI-compatible server (vLLM, Ollama) pass "
                    f"its base_url"
                )
            key = PLACEHOLDER_API_KEY

        self._model = model
        self._base_url = (base_url or OPENAI_BASE_URL).rstrip("/")
        # Registered as a secret (placeholders and other values too short to protect anything are not).
        self._secrets = Secrets([key])
        self._api_key = key
        self._api_key_env = api_key_env
        self._policy = RetryPolicy.of(timeout, max_retries, deadline)
        self._image_format: Literal["png", "jpeg"] = image_format
        self._image_detail = image_detail
        self._temperature = temperature
        self._max_tokens = max_tokens
        self._extra_body = dict(extra_body) if extra_body else None
        self._default_headers = dict(default_headers) if default_headers else None
        self._max_reply_bytes = max_reply_bytes
        self._lock = threading.Lock()
        self._client: openai.OpenAI | None = None
        # One AsyncOpenAI per event loop: its pooled connections belong to the loop that opened them.
        self._async_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopClient] = (
            weakref.WeakKeyDictionary()
        )

    # -- public surface --

    @property
    def model_name(self) -> str:
        """The model sent with every request."""
        return self._model

    @property
    def base_url(self) -> str:
        """The server's API root (no trailing slash)."""
        return self._base_url

    @property
    def deadline(self) -> float:
        """Seconds allowed for one call, every attempt and wait included (the default resolved)."""
        return self._policy.deadline

    @property
    def max_reply_bytes(self) -> int:
        """The most bytes a reply's body may hold."""
        return self._max_reply_bytes

    def __repr__(self) -> str:
        policy = self._policy
        return (
            f"OpenAIBackend(model={self._model!r}, base_url={self._base_url!r}, timeout={policy.timeout:g}, "
            f"max_retries={policy.max_retries}, deadline={policy.deadline:g}, "
            f"image_format={self._image_format!r})"
        )

    def complete(
        self,
        messages: Sequence[ChatMessage],
        *,
        images: ImageStore,
        tools: Sequence[ToolSpec] | None = None,
    ) -> ChatReply:
        """Run one chat turn.

        Args:
            messages: the conversation; image parts are resolved through ``images``.
            images: the image store holding every referenced image.
            tools: functions offered to the model (``tool_choice`` is left to the server's ``"auto"``).

        Returns:
            The model's reply, with token usage and the wall-clock latency (retries included).

        Raises:
            BackendError: a subclass saying what went wrong (timeout, deadline, connection, rate limit, HTTP
                status, credentials, or an unusable reply: :class:`~awares_agent.errors.ReplyTooLargeError`
                for one larger than ``max_reply_bytes``).
            MessageTranslationError: the messages cannot be expressed in the OpenAI format.
        """
        request = self._request(messages, images, tools)
        client = self._sync_client()
        start = time.perf_counter()

        def attempt(call: CallState, allowance: float) -> bytes:
            with attempt_deadline(allowance):
                return client.chat.completions.with_raw_response.create(
                    **request, **self._attempt_options(call, allowance)
                ).content

        body = retry(self._policy, attempt, self._failed, _ATTEMPT_FAILURES)
        return self._reply(body, time.perf_counter() - start)

    async def acomplete(
        self,
        messages: Sequence[ChatMessage],
        *,
        images: ImageStore,
        tools: Sequence[ToolSpec] | None = None,
    ) -> ChatReply:
        """Run one chat turn asynchronously (same arguments and contract as :meth:`complete`)."""
        request = self._request(messages, images, tools)
        client = await self._async_client_for_loop()
        start = time.perf_counter()

        async def attempt(call: CallState, allowance: float) -> bytes:
            async with asyncio.timeout(allowance):
                raw = await client.chat.completions.with_raw_response.create(
                    **request, **self._attempt_options(call, allowance)
                )
                return raw.content

        body = await aretry(self._policy, attempt, self._failed, _ATTEMPT_FAILURES)
        return self._reply(body, time.perf_counter() - start)

    def complete_stream(
        self,
        messages: Sequence[ChatMessage],
        *,
        images: ImageStore,
        tools: Sequence[ToolSpec] | None = None,
        on_text: TextSink,
    ) -> ChatReply:
        """Run one chat turn as a stream, passing its text to ``on_text`` as it arrives.

        The request is :meth:`complete`'s with ``stream: true`` (and usage asked for in the last chunk); the
        reply is the one :meth:`complete` would return for the same generation. A server that ignores
        ``stream`` and answers one JSON body is accepted: its text goes to ``on_text`` in one piece.
        Timeouts, the deadline and retries are :meth:`complete`'s, except that an attempt that fails once
        text has been passed on is not retried (the text cannot be taken back).

        Args:
            messages: the conversation; image parts are resolved through ``images``.
            images: the image store holding every referenced image.
            tools: functions offered to the model (their calls arrive as structured deltas: none of their
                text goes to ``on_text``).
            on_text: receives each new, non-empty piece of the reply's text, in order; it must be quick and
                must not raise.

        Returns:
            The model's reply, with token usage and the wall-clock latency (retries included).

        Raises:
            BackendError: a subclass, as for :meth:`complete`; also a :class:`BackendResponseError` for a
                stream that cannot be read (an event that is not JSON, an error event, a stream cut short, no
                choices), and one saying how many characters had streamed when the stream broke.
            MessageTranslationError: the messages cannot be expressed in the OpenAI format.
        """
        request = {**self._request(messages, images, tools), **STREAM_FIELDS}
        client = self._sync_client()
        start = time.perf_counter()

        def attempt(call: CallState, allowance: float) -> ChunkReader:
            reader = ChunkReader(self._where, on_text, self._secrets.redact)
            # The transport caps every socket read at the attempt's end, so the whole stream is bounded.
            with (
                self._not_retried_once_streamed(reader, call),
                attempt_deadline(allowance),
                client.chat.completions.with_streaming_response.create(
                    **request, **self._attempt_options(call, allowance)
                ) as raw,
                _read_errors(raw.http_response),
            ):
                for data in raw.iter_bytes():
                    if reader.feed(data):
                        break
            return reader

        reader = retry(self._policy, attempt, self._failed, _ATTEMPT_FAILURES)
        return self._streamed_reply(reader, on_text, time.perf_counter() - start)

    async def acomplete_stream(
        self,
        messages: Sequence[ChatMessage],
        *,
        images: ImageStore,
        tools: Sequence[ToolSpec] | None = None,
        on_text: TextSink,
    ) -> ChatReply:
        """Run one chat turn as a stream, asynchronously (same arguments and contract as
        :meth:`complete_stream`; ``on_text`` is called on the event loop)."""
        request = {**self._request(messages, images, tools), **STREAM_FIELDS}
        client = await self._async_client_for_loop()
        start = time.perf_counter()

        async def attempt(call: CallState, allowance: float) -> ChunkReader:
            reader = ChunkReader(self._where, on_text, self._secrets.redact)
            with self._not_retried_once_streamed(reader, call):
                async with (
                    asyncio.timeout(allowance),
                    client.chat.completions.with_streaming_response.create(
                        **request, **self._attempt_options(call, allowance)
                    ) as raw,
                ):
                    with _read_errors(raw.http_response):
                        async with contextlib.aclosing(raw.iter_bytes()) as pieces:
                            async for data in pieces:
                                if reader.feed(data):
                                    break
            return reader

        reader = await aretry(self._policy, attempt, self._failed, _ATTEMPT_FAILURES)
        return self._streamed_reply(reader, on_text, time.perf_counter() - start)

    def close(self) -> None:
        """Close the synchronous HTTP client (the backend reopens one if used again).

        Async clients close with their event loop (when ``asyncio.run`` ends it), or with :meth:`aclose`.
        """
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

    async def aclose(self) -> None:
        """Close the synchronous HTTP client and the running event loop's async one."""
        self.close()
        loop = asyncio.get_running_loop()
        with self._lock:
            entry = self._async_clients.pop(loop, None)
        if entry is not None:
            await entry.closer.aclose()  # its finally closes the client

    # -- internals --

    @property
    def _where(self) -> str:
        return f"{self._base_url} (model {self._model!r})"

    def _client_kwargs(self) -> dict[str, Any]:
        return {
            "api_key": self._secrets.values[0],
            "base_url": self._base_url,
            "timeout": self._policy.timeout,
            "max_retries": 0,  # retries are ours, within the deadline (see _failed)
            "default_headers": self._default_headers,
        }

    def _sync_client(self) -> openai.OpenAI:
        with self._lock:
            if self._client is None:
                with self._usable_proxy():
                    transport = DeadlineTransport(self._base_url)
                capped = ReplyCapTransport(transport, limit=self._max_reply_bytes, where=self._where)
                http_client = HttpClient(transport=capped)
                self._client = openai.OpenAI(**self._client_kwargs(), http_client=http_client)
            return self._client

    async def _async_client_for_loop(self) -> openai.AsyncOpenAI:
        loop = asyncio.get_running_loop()
        with self._lock:
            entry = self._async_clients.get(loop)
        if entry is not None:
            return entry.client
        # A transport of one's own bypasses httpx2's proxy discovery: the environment's proxy is passed on.
        with self._usable_proxy():
            transport = httpx2.AsyncHTTPTransport(
                proxy=environment_proxy(self._base_url), limits=openai.DEFAULT_CONNECTION_LIMITS
            )
        capped = AsyncReplyCapTransport(transport, limit=self._max_reply_bytes, where=self._where)
        client = openai.AsyncOpenAI(
            **self._client_kwargs(), http_client=openai.DefaultAsyncHttpxClient(transport=capped)
        )
        closer = _close_with_the_loop(client)
        # Runs to the yield without suspending (so no other task on this loop can get here meanwhile), and
        # registers the generator with this loop.
        await closer.__anext__()
        with self._lock:
            self._async_clients[loop] = _LoopClient(client, closer)
        return client

    @contextlib.contextmanager
    def _usable_proxy(self) -> Iterator[None]:
        """Raise a ConfigError for a proxy the environment names that cannot be used."""
        try:
            yield
        except (ValueError, ImportError) as err:
            detail = f"{type(err).__name__}: {err}"
            raise ConfigError(
                self._secrets.redact(
                    f"OpenAIBackend: the proxy that the environment (HTTPS_PROXY, HTTP_PROXY, ALL_PROXY) "
                    f"names for {self._base_url} is not usable: {detail}; fix or unset it, or list the host "
                    f"in NO_PROXY"
                )
            ) from None

    @staticmethod
    def _attempt_options(call: CallState, allowance: float) -> dict[str, Any]:
        # The retry header is what the openai client sends when it retries itself (it now sees each attempt
        # as a first one).
        return {"timeout": allowance, "extra_headers": {"x-stainless-retry-count": str(call.retries)}}

    def _failed(self, err: Exception, call: CallState) -> float:
        """The seconds to wait before retrying after ``err``; raises the error to report when no retry is
        due (not retryable, no retries left, or no time left within the deadline)."""
        asked = retry_after(err.response.headers) if isinstance(err, openai.APIStatusError) else None
        try:
            wait = self._policy.wait(call, retryable=_should_retry(err), asked=asked)
        except GiveUp as stop:
            note = stop.note
        else:
            log.info(
                "%s failed (%s); retrying in %.2f s (retry %d of %d)",
                self._where,
                type(err).__name__,
                wait,
                call.retries,
                self._policy.max_retries,
            )
            return wait
        raise self._translate(err, call, note=note) from err

    @contextlib.contextmanager
    def _not_retried_once_streamed(self, reader: ChunkReader, call: CallState) -> Iterator[None]:
        """A streamed attempt that fails once text has been passed on is not retried (a retry would send it
        again): its failure is reported at once, saying how far the stream got."""
        try:
            yield
        except _ATTEMPT_FAILURES as err:
            if not reader.streamed:
                raise
            failed = self._translate(err, call)
            message = (
                f"{failed} (the stream broke after {reader.streamed} chars of text had been passed on, so it "
                f"was not retried)"
            )
            if isinstance(failed, BackendHTTPError):
                raise type(failed)(message, status_code=failed.status_code) from err
            raise type(failed)(message) from err

    def _streamed_reply(self, reader: ChunkReader, on_text: TextSink, latency_s: float) -> ChatReply:
        body = reader.plain_body
        if body is not None:  # the server ignored stream=True and sent one JSON body
            reply = self._reply(body, latency_s)
            if reply.text:
                on_text(reply.text)
            return reply
        return self._parsed(reader.finish(), latency_s)

    def _request(
        self, messages: Sequence[ChatMessage], images: ImageStore, tools: Sequence[ToolSpec] | None
    ) -> dict[str, Any]:
        request: dict[str, Any] = {
            "model": self._model,
            "messages": to_openai_messages(messages, images, self._image_format, self._image_detail),
        }
        if tools:
            request["tools"] = [spec.to_openai() for spec in tools]
        if self._temperature is not None:
            request["temperature"] = self._temperature
        if self._max_tokens is not None:
            request["max_tokens"] = self._max_tokens
        if self._extra_body:
            request["extra_body"] = self._extra_body
        return request

    def _reply(self, body: bytes, latency_s: float) -> ChatReply:
        try:
            data = json.loads(body)
        except ValueError as err:  # JSONDecodeError and UnicodeDecodeError
            text = body.decode("utf-8", "replace")
            raise BackendResponseError(
                self._secrets.redact(
                    f"{self._where} returned a body that is not JSON ({err}); is base_url the API root of "
                    f"an OpenAI-compatible server? body: {excerpt(text, self._secrets.values) or '(empty)'}"
                )
            ) from None
        except RecursionError:
            raise BackendResponseError(
                f"{self._where} returned a JSON body nested too deeply to decode ({len(body)} bytes); it is "
                f"not a chat completion"
            ) from None
        return self._parsed(data, latency_s)

    def _parsed(self, data: Any, latency_s: float) -> ChatReply:
        """The reply in a decoded chat completion (a body, or what a stream's chunks add up to)."""
        try:
            reply = parse_completion(data, where=self._where)
        except BackendResponseError as err:
            raise BackendResponseError(self._secrets.redact(str(err))) from None
        return reply.model_copy(update={"latency_s": latency_s})

    def _translate(self, err: BaseException, call: CallState, note: str | None = None) -> BackendError:
        """Map a failed attempt onto the BackendError hierarchy through this backend's table.

        Args:
            err: the last attempt's error (``TimeoutError``: the async attempt ran out of time).
            call: the call's state (the retries made, whether the deadline cut the last attempt short).
            note: why the call gave up before its retries ran out, appended to the message.
        """
        where, retries = self._where, call.retries
        timeout, deadline = self._policy.timeout, self._policy.deadline
        tries = f" (after {retries} retr{'y' if retries == 1 else 'ies'})" if retries else ""
        also = f"; {note}" if note else ""
        if call.cut_by_deadline:
            timed_out = (
                f"{where} did not answer within the {deadline:g} s deadline ({attempts_text(retries + 1)}, "
                f"{timeout:g} s timeout each); raise deadline= (--deadline), and/or timeout=, if the model "
                f"is just slow, or check that the server is not overloaded"
            )
        else:
            fix = "deadline= (--deadline), and/or timeout=," if note else "timeout= (and/or max_retries=)"
            timed_out = (
                f"{where} did not answer within the {timeout:g} s timeout{tries}{also}; raise {fix} if the "
                f"model is just slow, or check that the server is not overloaded"
            )
        rate_fix = (
            "raise deadline= (--deadline), or lower the request rate or concurrency"
            if note
            else "lower the request rate or concurrency, or raise max_retries"
        )
        table = (
            ErrorRule(BackendTimeoutError, lambda e: timed_out, types=(TimeoutError, openai.APITimeoutError)),
            ErrorRule(
                BackendConnectionError,
                lambda e: (
                    f"could not connect to {self._base_url} for model {self._model!r}{tries}{_cause(e)}"
                    f"{also}; check that the server is running and that base_url (scheme, host, port, /v1) "
                    f"is right"
                ),
                types=(openai.APIConnectionError,),
            ),
            ErrorRule(
                BackendResponseError,
                lambda e: (
                    f"{where} returned a reply that is not a valid chat completion: {excerpt(e.message)}; "
                    f"body: {excerpt(json_text(e.body))}"
                ),
                types=(openai.APIResponseValidationError,),
            ),
            ErrorRule(
                BackendRateLimitError,
                lambda e: (
                    f"{where} {'kept answering' if retries else 'answered'} HTTP 429 Too Many Requests"
                    f"{tries}: {error_text(e.body)}{also}; {rate_fix}"
                ),
                types=(openai.RateLimitError,),
            ),
            ErrorRule(
                BackendAuthError,
                lambda e: (
                    f"{where} refused the credentials (HTTP {e.status_code}): {error_text(e.body)}; check "
                    f"the API key (the {self._api_key_env} environment variable or api_key=) and its access "
                    f"to the model"
                ),
                types=(openai.AuthenticationError, openai.PermissionDeniedError),
            ),
            ErrorRule(
                BackendHTTPError,
                lambda e: (
                    f"{where} answered HTTP 404 Not Found: {error_text(e.body)}; the model name "
                    f"{self._model!r} may be wrong (list the server's models), or base_url may lack its /v1"
                ),
                types=(openai.NotFoundError,),
            ),
            ErrorRule(
                BackendHTTPError,
                lambda e: (
                    f"{where} answered HTTP {e.status_code}{tries}: {error_text(e.body)}{also}"
                    + ("; raise deadline= (--deadline), or try again later" if note else "")
                ),
                types=(openai.APIStatusError,),
            ),
            ErrorRule(
                BackendError,
                lambda e: f"{where}: the openai client failed: {type(e).__name__}: {excerpt(str(e))}",
                types=(BaseException,),
            ),
        )
        return translate_error(err, table, secrets=self._secrets.values)


def _cause(err: BaseException) -> str:
    """``: <type>: <message>`` of the exception under ``err`` (the transport's, under the openai client's)."""
    cause = err.__cause__ or err.__context__
    return f": {type(cause).__name__}: {excerpt(str(cause))}" if cause is not None else ""


@contextlib.contextmanager
def _read_errors(response: httpx2.Response) -> Iterator[None]:
    """Raise the openai client's errors for a failure while reading a streamed body (the client maps the
    transport's errors only while it sends the request and reads the headers)."""
    try:
        yield
    except httpx2.TimeoutException as err:
        raise openai.APITimeoutError(request=response.request) from err
    except (httpx2.RequestError, ssl.SSLError) as err:
        raise openai.APIConnectionError(request=response.request) from err


def _positive_seconds(value: object) -> bool:
    return (
        isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0
    )
