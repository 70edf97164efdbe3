"""A chat backend for any OpenAI-compatible chat-completions server (api.openai.com, vLLM, Ollama, SGLang...).

Images travel as base64 ``data:`` URIs inside user messages; the crop tool is offered through native function
calling (``tools``). Timeouts and retries are the ``openai`` client's own: ``max_retries`` retries on
connection errors, timeouts, 408/409/429 and 5xx, with exponential backoff (0.5 s doubling, capped at 8 s)
that honours a server's positive ``Retry-After`` / ``retry-after-ms``. Every failure surfaces as a
:class:`~awares_agent.errors.BackendError` subclass that names the server and the model; the API key never
appears in ``repr()``, log records or error messages.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

import openai

from awares_agent.backends.base import ChatReply, Usage
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
from awares_agent.messages import ChatMessage, ImagePart, TextPart, ToolCall, ToolSpec

if TYPE_CHECKING:
    from awares_agent.image_store import ImageStore

__all__ = [
    "OPENAI_BASE_URL",
    "MessageTranslationError",
    "OpenAIBackend",
    "parse_completion",
    "to_openai_messages",
]

#: The base URL used when ``base_url`` is not given.
OPENAI_BASE_URL = "https://api.openai.com/v1"

#: The key sent to servers that need none (vLLM, Ollama); the openai client refuses an empty key.
PLACEHOLDER_API_KEY = "EMPTY"

_EXCERPT_CHARS = 200


# --- request translation -------------------------------------------------------------------------------


def to_openai_messages(
    messages: Sequence[ChatMessage],
    images: ImageStore,
    image_format: Literal["png", "jpeg"] = "png",
    image_detail: Literal["auto", "low", "high"] | None = None,
) -> list[dict[str, Any]]:
    """Translate backend-neutral messages into OpenAI chat-completions ``messages``.

    Args:
        messages: the conversation, in order.
        images: the store that resolves each :class:`ImagePart` to a ``data:`` URI.
        image_format: how images are encoded in the data URIs.
        image_detail: OpenAI's ``detail`` for every image (``None``: not sent, the server decides).

    Returns:
        A list of JSON-ready message dicts: ``system`` and ``tool`` contents are strings; a text-only
        ``user``/``assistant`` message has a string content, one with images a list of ``text`` and
        ``image_url`` parts in their original order; an assistant turn's ``tool_calls`` are passed through
        with their raw ``arguments`` (its ``content`` is ``None`` when it has no text).

    Raises:
        MessageTranslationError: images in a ``system`` or ``tool`` message (crops travel in a user message:
            many servers reject images in tool messages), or a ``tool`` message without ``tool_call_id``.
    """
    out: list[dict[str, Any]] = []
    for i, msg in enumerate(messages):
        if msg.role in ("system", "tool") and msg.images:
            raise MessageTranslationError(
                f"message {i} ({msg.role}) holds {len(msg.images)} image(s), but images may only be sent in "
                f"user messages (many OpenAI-compatible servers reject images elsewhere); put the crops in a "
                f"user message after the tool result"
            )
        if msg.role == "system":
            out.append({"role": "system", "content": msg.text})
        elif msg.role == "tool":
            if not msg.tool_call_id:
                raise MessageTranslationError(
                    f"message {i} (tool) has no tool_call_id; it must name the assistant tool call it answers"
                )
            out.append({"role": "tool", "tool_call_id": msg.tool_call_id, "content": msg.text})
        elif msg.role == "assistant" and msg.tool_calls:
            out.append(
                {
                    "role": "assistant",
                    "content": _content(msg, images, image_format, image_detail) if msg.content else None,
                    "tool_calls": [
                        {
                            "id": c.id,
                            "type": "function",
                            "function": {"name": c.name, "arguments": c.arguments},
                        }
                        for c in msg.tool_calls
                    ],
                }
            )
        else:
            out.append({"role": msg.role, "content": _content(msg, images, image_format, image_detail)})
    return out


def _content(
    msg: ChatMessage,
    images: ImageStore,
    image_format: Literal["png", "jpeg"],
    image_detail: Literal["auto", "low", "high"] | None,
) -> str | list[dict[str, Any]]:
    if not msg.images:
        return msg.text
    parts: list[dict[str, Any]] = []
    for part in msg.content:
        if isinstance(part, TextPart):
            parts.append({"type": "text", "text": part.text})
        elif isinstance(part, ImagePart):
            image_url = {"url": images.data_uri(part.image_id, image_format)}
            if image_detail is not None:
                image_url["detail"] = image_detail
            parts.append({"type": "image_url", "image_url": image_url})
    return parts


# --- reply parsing -------------------------------------------------------------------------------------


def parse_completion(data: Any, *, where: str) -> ChatReply:
    """Turn a decoded chat-completions response body into a :class:`ChatReply` (``latency_s`` left at 0).

    Lenient where servers differ harmlessly: ``content`` ``null`` becomes ``""`` (a list of text parts is
    joined), tool-call ``arguments`` sent as a JSON object are re-encoded, missing/``null`` ``arguments``
    become ``"{}"``, a missing tool-call id becomes ``call_<n>``, a missing ``usage`` counts zero tokens.

    Args:
        data: the decoded JSON body.
        where: names the server and model in error messages, e.g. ``"http://host/v1 (model 'x')"``.

    Raises:
        BackendResponseError: the body is not a chat completion (no choices, no message, a tool call without
            a function name...).
    """

    def fail(what: str) -> BackendResponseError:
        return BackendResponseError(
            f"{where} returned an invalid chat completion: {what}; body: {_excerpt(_dumps(data))}"
        )

    if not isinstance(data, dict):
        raise fail(f"expected a JSON object, got {type(data).__name__}")
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices:
        if "error" in data:
            raise fail(f"the server reported an error: {_error_text(data['error'])}")
        raise fail("no choices" if not choices else f"'choices' is a {type(choices).__name__}, not a list")
    choice = choices[0]
    message = choice.get("message") if isinstance(choice, dict) else None
    if not isinstance(message, dict):
        raise fail("choices[0] has no 'message' object")

    content = message.get("content")
    if content is None:
        text = ""
    elif isinstance(content, str):
        text = content
    elif isinstance(content, list):  # some servers send content parts back
        text = "".join(p.get("text") or "" for p in content if isinstance(p, dict))
    else:
        raise fail(f"message content is a {type(content).__name__}")

    raw_calls = message.get("tool_calls") or []
    if not isinstance(raw_calls, list):
        raise fail(f"'tool_calls' is a {type(raw_calls).__name__}, not a list")
    tool_calls = []
    for n, call in enumerate(raw_calls):
        function = call.get("function") if isinstance(call, dict) else None
        name = function.get("name") if isinstance(function, dict) else None
        if not isinstance(name, str) or not name:
            raise fail(f"tool call {n} has no function name")
        arguments = function.get("arguments")
        if arguments is None:
            arguments = "{}"
        elif not isinstance(arguments, str):
            arguments = json.dumps(arguments)
        call_id = call.get("id")
        tool_calls.append(
            ToolCall(id=str(call_id) if call_id else f"call_{n}", name=name, arguments=arguments)
        )

    usage = data.get("usage")
    finish_reason = choice.get("finish_reason")
    model = data.get("model")
    return ChatReply(
        text=text,
        tool_calls=tool_calls,
        usage=Usage(
            prompt_tokens=_int(usage, "prompt_tokens"),
            completion_tokens=_int(usage, "completion_tokens"),
        ),
        finish_reason=finish_reason if isinstance(finish_reason, str) else None,
        model=model if isinstance(model, str) else None,
    )


def _int(obj: Any, key: str) -> int:
    value = obj.get(key) if isinstance(obj, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def _dumps(data: Any) -> str:
    try:
        return json.dumps(data)
    except (TypeError, ValueError):
        return repr(data)


def _excerpt(text: str, limit: int = _EXCERPT_CHARS) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} chars)"


def _error_text(body: object) -> str:
    """The server's error message out of an error body (OpenAI-style ``{"message": ...}`` or anything)."""
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and isinstance(inner.get("message"), str):
            return _excerpt(inner["message"])
        if isinstance(inner, str):
            return _excerpt(inner)
    if body is None or body == "":
        return "(empty body)"
    return _excerpt(body if isinstance(body, str) else _dumps(body))


# --- the backend ---------------------------------------------------------------------------------------


class _Secret:
    """Holds the API key so that it never shows up in a repr or a traceback's locals."""

    __slots__ = ("value",)

    def __init__(self, value: str) -> None:
        self.value = value

    def __repr__(self) -> str:
        return "<secret>"


class OpenAIBackend:
    """A :class:`~awares_agent.backends.base.ChatBackend` for OpenAI-compatible chat-completions servers.

    Args:
        model: the model name sent with every request.
        base_url: the server's API root, e.g. ``http://localhost:8000/v1`` for vLLM; ``None`` means
            api.openai.com (the ``OPENAI_BASE_URL`` environment variable is deliberately not consulted).
        api_key: the API key; defaults to the environment variable named by ``api_key_env``, and, for a
            custom ``base_url`` (local servers need none), to the placeholder ``"EMPTY"``.
        api_key_env: the environment variable holding the key.
        timeout: seconds allowed for each attempt (to connect, and for each read/write); every retry gets a
            fresh allowance.
        max_retries: retries on connection errors, timeouts, 408/409/429 and 5xx, with the client's
            exponential backoff that honours a positive ``Retry-After``; 0 disables them.
        image_format: how images are encoded in the ``data:`` URIs.
        image_detail: OpenAI's image ``detail`` (``"high"`` keeps crops at full resolution on
            api.openai.com; ``None`` sends none, which local servers expect).
        temperature: sampling temperature; ``None`` leaves it to the server.
        max_tokens: cap on generated tokens; ``None`` leaves it to the server.
        extra_body: extra JSON fields merged into every request body (e.g. vLLM's ``top_k``).
        default_headers: extra HTTP headers sent with every request.

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
        timeout: float = 60.0,
        max_retries: int = 3,
        image_format: Literal["png", "jpeg"] = "png",
        image_detail: Literal["auto", "low", "high"] | None = None,
        temperature: float | None = 0.0,
        max_tokens: int | None = None,
        extra_body: dict[str, Any] | None = None,
        default_headers: dict[str, str] | None = None,
    ) -> None:
        if not model:
            raise ConfigError("OpenAIBackend: model must be a non-empty model name")
        if not timeout or timeout <= 0:
            raise ConfigError(f"OpenAIBackend: timeout must be a positive number of seconds, got {timeout!r}")
        if not isinstance(max_retries, int) or max_retries < 0:
            raise ConfigError(f"OpenAIBackend: max_retries must be an integer >= 0, got {max_retries!r}")
        if image_format not in ("png", "jpeg"):
            raise ConfigError(f"OpenAIBackend: image_format must be 'png' or 'jpeg', got {image_format!r}")
        if image_detail not in (None, "auto", "low", "high"):
            raise ConfigError(f"OpenAIBackend: image_detail must be auto/low/high/None, got {image_detail!r}")
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
        self._api_key = _Secret(key)
        self._api_key_env = api_key_env
        self._timeout = float(timeout)
        self._max_retries = max_retries
        self._image_format: Literal["png", "jpeg"] = image_format
        self._image_detail = image_detail
        self._temperature = temperature
        self._max_tokens = max_tokens
        self._extra_body = dict(extra_body) if extra_body else None
        self._default_headers = dict(default_headers) if default_headers else None
        self._lock = threading.Lock()
        self._client: openai.OpenAI | None = None
        self._async_client: openai.AsyncOpenAI | None = None
        self._async_loop: asyncio.AbstractEventLoop | None = None

    # -- public surface --

    @property
    def model_name(self) -> str:
        """The model sent with every request."""
        return self._model

    @property
    def base_url(self) -> str:
        """The server's API root (no trailing slash)."""
        return self._base_url

    def __repr__(self) -> str:
        return (
            f"OpenAIBackend(model={self._model!r}, base_url={self._base_url!r}, timeout={self._timeout:g}, "
            f"max_retries={self._max_retries}, image_format={self._image_format!r})"
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
            BackendError: a subclass saying what went wrong (timeout, connection, rate limit, HTTP status,
                credentials, or an unusable reply).
            MessageTranslationError: the messages cannot be expressed in the OpenAI format.
        """
        request = self._request(messages, images, tools)
        client = self._sync_client()
        start = time.perf_counter()
        try:
            raw = client.chat.completions.with_raw_response.create(**request)
            body = raw.content
        except openai.OpenAIError as err:
            raise self._translate(err) from err
        return self._reply(body, time.perf_counter() - start)

    async def acomplete(
        self,
        messages: Sequence[ChatMessage],
        *,
        images: ImageStore,
        tools: Sequence[ToolSpec] | None = None,
    ) -> ChatReply:
        """Run one chat turn asynchronously (same contract as :meth:`complete`).

        Args:
            messages: the conversation; image parts are resolved through ``images``.
            images: the image store holding every referenced image.
            tools: functions offered to the model.
        """
        request = self._request(messages, images, tools)
        client = self._async_client_for_loop()
        start = time.perf_counter()
        try:
            raw = await client.chat.completions.with_raw_response.create(**request)
            body = raw.content
        except openai.OpenAIError as err:
            raise self._translate(err) from err
        return self._reply(body, time.perf_counter() - start)

    def close(self) -> None:
        """Close the synchronous HTTP client (the backend reopens one if used again)."""
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

    async def aclose(self) -> None:
        """Close both HTTP clients."""
        self.close()
        with self._lock:
            client, self._async_client, self._async_loop = self._async_client, None, None
        if client is not None:
            await client.close()

    # -- internals --

    @property
    def _where(self) -> str:
        return f"{self._base_url} (model {self._model!r})"

    def _client_kwargs(self) -> dict[str, Any]:
        return {
            "api_key": self._api_key.value,
            "base_url": self._base_url,
            "timeout": self._timeout,
            "max_retries": self._max_retries,
            "default_headers": self._default_headers,
        }

    def _sync_client(self) -> openai.OpenAI:
        with self._lock:
            if self._client is None:
                self._client = openai.OpenAI(**self._client_kwargs())
            return self._client

    def _async_client_for_loop(self) -> openai.AsyncOpenAI:
        # One AsyncOpenAI per backend, re-created if the event loop changed: its pooled connections belong to
        # the loop that opened them, so reusing it after asyncio.run() returned fails with "loop is closed".
        loop = asyncio.get_running_loop()
        with self._lock:
            if self._async_client is None or self._async_loop is not loop:
                self._async_client = openai.AsyncOpenAI(**self._client_kwargs())
                self._async_loop = loop
            return self._async_client

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
                self._scrub(
                    f"{self._where} returned a body that is not JSON ({err}); is base_url the API root of "
                    f"an OpenAI-compatible server? body: {_excerpt(text) or '(empty)'}"
                )
            ) from err
        try:
            reply = parse_completion(data, where=self._where)
        except BackendResponseError as err:
            raise BackendResponseError(self._scrub(str(err))) from None
        return reply.model_copy(update={"latency_s": latency_s})

    def _scrub(self, text: str) -> str:
        key = self._api_key.value
        if key and key != PLACEHOLDER_API_KEY and len(key) >= 4:
            text = text.replace(key, "<api key>")
        return text

    def _translate(self, err: openai.OpenAIError) -> BackendError:
        """Map an openai exception onto the BackendError hierarchy (messages scrubbed of the key)."""
        # The openai error becomes our error's __cause__, printed in tracebacks: scrub it too, in case the
        # server echoed the key back in its error message.
        err.args = tuple(self._scrub(a) if isinstance(a, str) else a for a in err.args)
        if isinstance(err, openai.APIError):
            err.message = self._scrub(err.message)
        where = self._where
        tries = f"after {self._max_retries} retr{'y' if self._max_retries == 1 else 'ies'}"
        if isinstance(err, openai.APITimeoutError):
            return BackendTimeoutError(
                self._scrub(
                    f"{where} did not answer within the {self._timeout:g} s timeout ({tries}); raise "
                    f"timeout= (and/or max_retries=) if the model is just slow, or check that the server is "
                    f"not overloaded"
                )
            )
        if isinstance(err, openai.APIConnectionError):
            cause = err.__cause__ or err.__context__
            detail = f": {type(cause).__name__}: {cause}" if cause is not None else ""
            return BackendConnectionError(
                self._scrub(
                    f"could not connect to {self._base_url} for model {self._model!r} ({tries}){detail}; "
                    f"check that the server is running and that base_url (scheme, host, port, /v1) is right"
                )
            )
        if isinstance(err, openai.APIResponseValidationError):
            return BackendResponseError(
                self._scrub(
                    f"{where} returned a reply that is not a valid chat completion: {err.message}; "
                    f"body: {_excerpt(_dumps(err.body))}"
                )
            )
        if isinstance(err, openai.RateLimitError):
            return BackendRateLimitError(
                self._scrub(
                    f"{where} kept answering HTTP 429 Too Many Requests ({tries}): {_error_text(err.body)}; "
                    f"lower the request rate or concurrency, or raise max_retries"
                )
            )
        if isinstance(err, (openai.AuthenticationError, openai.PermissionDeniedError)):
            return BackendAuthError(
                self._scrub(
                    f"{where} refused the credentials (HTTP {err.status_code}): {_error_text(err.body)}; "
                    f"check the API key (the {self._api_key_env} environment variable or api_key=) and its "
                    f"access to the model"
                ),
                status_code=err.status_code,
            )
        if isinstance(err, openai.NotFoundError):
            return BackendHTTPError(
                self._scrub(
                    f"{where} answered HTTP 404 Not Found: {_error_text(err.body)}; the model name "
                    f"{self._model!r} may be wrong (list the server's models), or base_url may lack its /v1"
                ),
                status_code=404,
            )
        if isinstance(err, openai.APIStatusError):
            retried = f" ({tries})" if err.status_code >= 500 or err.status_code in (408, 409) else ""
            return BackendHTTPError(
                self._scrub(f"{where} answered HTTP {err.status_code}{retried}: {_error_text(err.body)}"),
                status_code=err.status_code,
            )
        return BackendError(self._scrub(f"{where}: the openai client failed: {type(err).__name__}: {err}"))
