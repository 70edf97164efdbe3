"""A chat backend for any LangChain chat model (``langchain_core`` ``BaseChatModel``) with tools and images.

Wrap the model you already configured (``ChatOpenAI``, ``ChatAnthropic``, ``ChatGoogleGenerativeAI``,
``ChatOllama``...) and the agent runs through it::

    from langchain_openai import ChatOpenAI
    from awares_agent import AwaResAgent
    from awares_agent.backends.langchain_backend import LangChainBackend

    chat = ChatOpenAI(
        model="Qwen/Qwen2.5-VL-7B-Instruct", base_url="http://localhost:8000/v1", api_key="EMPTY"
    )
    agent = AwaResAgent(LangChainBackend(chat))

The crop tool is offered through ``bind_tools``; a model without native tool calling can still crop with
``AwaResAgent(backend, protocol="awares-text")``, which never binds tools. Timeouts and retries are the chat
model's own (e.g. ``ChatOpenAI(timeout=..., max_retries=...)``): this backend calls it exactly once a turn.

Images travel as OpenAI-style ``{"type": "image_url", "image_url": {"url": "data:image/png;base64,..."}}``
content blocks. langchain-core 1.x also defines standard blocks (``{"type": "image", "base64": ...,
"mime_type": ...}``), but the OpenAI shape is the more portable of the two: langchain-core reads it as a
standard image block itself (``message.content_blocks``), langchain-openai and every OpenAI-compatible wrapper
send it as is, and the Anthropic, Google, Ollama and Bedrock integrations have converted data-URI
``image_url`` blocks since long before 1.0; standard blocks reach only integrations that were updated to
translate them, and an integration that forwards content verbatim to an OpenAI-shaped API would send the
server a block type it rejects.

Failures surface as :class:`~awares_agent.errors.BackendError` subclasses naming the chat model's class and
model. langchain-core 1.x's provider-neutral exceptions (``ModelTimeoutError``, ``ModelRateLimitError``...)
are mapped, and so are ``openai`` exceptions (which older or OpenAI-derived integrations let through),
recognised without importing ``openai``. The model's secrets (its ``SecretStr`` fields) are registered with
:mod:`awares_agent.redact` and never appear in error messages, not even in part: every text is redacted in
full before it is cut to an excerpt.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

from langchain_core.exceptions import (
    ModelAuthenticationError,
    ModelConnectionError,
    ModelError,
    ModelPermissionDeniedError,
    ModelRateLimitError,
    ModelTimeoutError,
)
from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.messages.tool import invalid_tool_call, tool_call
from langchain_core.runnables import Runnable, RunnableBinding
from pydantic import BaseModel, SecretStr

from awares_agent.backends.error_mapping import ErrorRule, status_code, translate_error, translated_errors
from awares_agent.backends.message_checks import check_message
from awares_agent.errors import (
    BackendAuthError,
    BackendConnectionError,
    BackendError,
    BackendHTTPError,
    BackendRateLimitError,
    BackendResponseError,
    BackendTimeoutError,
    ConfigError,
)
from awares_agent.messages import ChatMessage, ChatReply, ImagePart, TextPart, ToolCall, ToolSpec, Usage
from awares_agent.redact import Secrets, excerpt

if TYPE_CHECKING:
    from awares_agent.image_store import ImageStore

__all__ = ["LangChainBackend", "parse_ai_message", "to_langchain_messages"]

# Attributes that name the model, in the order they are tried (ChatOpenAI: model_name; ChatAnthropic,
# ChatOllama, ChatGoogleGenerativeAI: model; Bedrock, HuggingFace: model_id; Azure: deployment_name).
_MODEL_ATTRIBUTES = ("model_name", "model", "model_id", "deployment_name")


# --- request translation -------------------------------------------------------------------------------


def to_langchain_messages(
    messages: Sequence[ChatMessage],
    images: ImageStore,
    image_format: Literal["png", "jpeg"] = "png",
) -> list[BaseMessage]:
    """Translate backend-neutral messages into LangChain messages.

    Args:
        messages: the conversation, in order.
        images: the store that resolves each :class:`ImagePart` to a ``data:`` URI.
        image_format: how images are encoded in the data URIs.

    Returns:
        ``system`` -> ``SystemMessage`` (text); ``user`` -> ``HumanMessage``, a string when text-only, else a
        list of ``text`` and ``image_url`` blocks in their original order; ``assistant`` -> ``AIMessage``
        whose calls with JSON-object arguments become ``tool_calls`` (``args`` parsed into a dict), and whose
        calls with malformed arguments become ``invalid_tool_calls`` holding the raw text (langchain-openai
        sends those back verbatim, so the model sees exactly what it wrote next to the tool message that
        explains the error; only providers that emit string arguments can produce such a call);
        ``tool`` -> ``ToolMessage`` (text).

    Raises:
        MessageTranslationError: images in a ``system`` or ``tool`` message (crops travel in a user message:
            many providers reject images elsewhere), or a ``tool`` message without ``tool_call_id``.
    """
    out: list[BaseMessage] = []
    for i, msg in enumerate(messages):
        check_message(i, msg, refusers="many chat models")
        if msg.role == "system":
            out.append(SystemMessage(content=msg.text))
        elif msg.role == "tool":
            out.append(ToolMessage(content=msg.text, tool_call_id=msg.tool_call_id))
        elif msg.role == "assistant":
            calls, invalid = [], []
            for call in msg.tool_calls:
                args = _json_object(call.arguments)
                if args is None:
                    invalid.append(
                        invalid_tool_call(
                            name=call.name,
                            args=call.arguments,
                            id=call.id,
                            error="the arguments are not a JSON object",
                        )
                    )
                else:
                    calls.append(tool_call(name=call.name, args=args, id=call.id))
            out.append(
                AIMessage(
                    content=_content(msg, images, image_format), tool_calls=calls, invalid_tool_calls=invalid
                )
            )
        else:
            out.append(HumanMessage(content=_content(msg, images, image_format)))
    return out


def _json_object(text: str) -> dict[str, Any] | None:
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def _content(
    msg: ChatMessage, images: ImageStore, image_format: Literal["png", "jpeg"]
) -> str | list[str | dict[str, Any]]:
    if not msg.images:
        return msg.text
    blocks: list[str | dict[str, Any]] = []
    for part in msg.content:
        if isinstance(part, TextPart):
            blocks.append({"type": "text", "text": part.text})
        elif isinstance(part, ImagePart):
            blocks.append(
                {"type": "image_url", "image_url": {"url": images.data_uri(part.image_id, image_format)}}
            )
    return blocks


# --- reply parsing -------------------------------------------------------------------------------------


def parse_ai_message(message: Any, *, where: str) -> ChatReply:
    """Turn a chat model's reply into a :class:`ChatReply` (``latency_s`` left at 0).

    ``content`` may be a string or a list of blocks (the ``text`` blocks are joined; reasoning and other
    blocks are dropped). ``tool_calls`` become :class:`ToolCall` with JSON-encoded arguments and
    ``invalid_tool_calls`` keep their raw argument text, so that a malformed call is reported to the model
    instead of vanishing (LangChain lists the valid calls before the invalid ones, whatever order the model
    wrote them in). A missing call id becomes ``call_<n>``. Token usage comes from ``usage_metadata``; the
    finish reason and model name from ``response_metadata`` when the provider reports them.

    Args:
        message: what ``invoke``/``ainvoke`` returned (an ``AIMessage``).
        where: names the chat model in error messages.

    Raises:
        BackendResponseError: the reply is not an ``AIMessage``.
    """
    if not isinstance(message, AIMessage):
        raise BackendResponseError(
            f"{where} returned a {type(message).__name__}, not an AIMessage; pass the chat model itself "
            f"(not a chain with an output parser) to LangChainBackend"
        )
    tool_calls: list[ToolCall] = []
    for call in message.tool_calls:
        tool_calls.append(
            ToolCall(
                id=call.get("id") or f"call_{len(tool_calls)}",
                name=call.get("name") or "",
                arguments=json.dumps(call.get("args") or {}),
            )
        )
    for bad in message.invalid_tool_calls:
        raw = bad.get("args")
        tool_calls.append(
            ToolCall(
                id=bad.get("id") or f"call_{len(tool_calls)}",
                name=bad.get("name") or "",
                arguments=raw if isinstance(raw, str) else "",
            )
        )

    usage = message.usage_metadata or {}
    meta = message.response_metadata or {}
    finish = _first_str(meta, "finish_reason", "stop_reason", "done_reason")
    model = _first_str(meta, "model_name", "model")
    return ChatReply(
        text=_text(message.content),
        tool_calls=tool_calls,
        usage=Usage(
            prompt_tokens=_count(usage.get("input_tokens")),
            completion_tokens=_count(usage.get("output_tokens")),
        ),
        finish_reason=finish,
        model=model,
    )


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return ""
    parts = []
    for block in content:
        if isinstance(block, str):
            parts.append(block)
        elif isinstance(block, dict) and block.get("type") == "text" and isinstance(block.get("text"), str):
            parts.append(block["text"])
    return "".join(parts)


def _first_str(meta: dict[str, Any], *keys: str) -> str | None:
    for key in keys:
        value = meta.get(key)
        if isinstance(value, str) and value:
            return value
    return None


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


# --- the backend ---------------------------------------------------------------------------------------


class LangChainBackend:
    """A :class:`~awares_agent.backends.base.ChatBackend` over any LangChain chat model.

    The model must accept images in user messages; for the default ``json`` protocol it must also implement
    ``bind_tools`` (native tool calling), otherwise use ``protocol="awares-text"``.

    Args:
        chat_model: the configured chat model (a ``BaseChatModel``, or ``chat.bind(...)`` /
            ``chat.with_config(...)`` of one, whose settings are kept when tools are bound). Its own timeout
            and retry settings apply.
        model_name: the model's name, used for the trajectory and to pick the visual-token rule when the
            agent's ``token_rule`` is ``"auto"`` (e.g. a name containing ``qwen2.5`` and ``vl`` selects the
            Qwen2.5-VL rule, an unknown name the generic pixel rule). Defaults to what the chat model
            reports: its ``model_name``, ``model``, ``model_id`` or ``deployment_name`` attribute, else its
            class name. Pass it when that is not the real model (a proxy alias, a local deployment name).
        image_format: how images are encoded in the ``data:`` URIs.

    Raises:
        ConfigError: ``chat_model`` is not a chat model (or a binding of one), or an invalid option.
    """

    def __init__(
        self,
        chat_model: BaseChatModel,
        *,
        model_name: str | None = None,
        image_format: Literal["png", "jpeg"] = "png",
    ) -> None:
        if not isinstance(chat_model, BaseChatModel) and not (
            isinstance(chat_model, RunnableBinding) and isinstance(chat_model.bound, BaseChatModel)
        ):
            # Other wrappers (with_retry(), with_fallbacks(), chains) would be silently dropped by bind_tools,
            # which reaches the inner model through __getattr__.
            raise ConfigError(
                f"LangChainBackend: chat_model must be a LangChain chat model (a langchain_core "
                f"BaseChatModel such as ChatOpenAI) or chat_model.bind(...)/.with_config(...) of one, got "
                f"{type(chat_model).__name__}; configure retries with the chat model's own max_retries"
            )
        if image_format not in ("png", "jpeg"):
            raise ConfigError(f"LangChainBackend: image_format must be 'png' or 'jpeg', got {image_format!r}")
        if model_name is not None and (not isinstance(model_name, str) or not model_name.strip()):
            raise ConfigError(f"LangChainBackend: model_name must be a non-empty string, got {model_name!r}")
        self._chat_model = chat_model
        self._model = model_name or _reported_model_name(chat_model)
        self._image_format: Literal["png", "jpeg"] = image_format
        self._secrets = Secrets(_secret_values(chat_model))
        self._lock = threading.Lock()
        self._bound: dict[tuple[str, ...], Runnable] = {}

    # -- public surface --

    @property
    def model_name(self) -> str:
        """The model's name (given, or reported by the chat model)."""
        return self._model

    @property
    def chat_model(self) -> BaseChatModel:
        """The wrapped chat model."""
        return self._chat_model

    def __repr__(self) -> str:
        return (
            f"LangChainBackend(chat_model={_class_name(self._chat_model)}, model_name={self._model!r}, "
            f"image_format={self._image_format!r})"
        )

    def complete(
        self,
        messages: Sequence[ChatMessage],
        *,
        images: ImageStore,
        tools: Sequence[ToolSpec] | None = None,
    ) -> ChatReply:
        """Run one chat turn with ``invoke``.

        Args:
            messages: the conversation; image parts are resolved through ``images``.
            images: the image store holding every referenced image.
            tools: functions offered to the model through ``bind_tools`` (``None`` or empty: the raw model).

        Returns:
            The model's reply, with token usage and the wall-clock latency (the model's retries included).

        Raises:
            BackendError: a subclass saying what went wrong (timeout, connection, rate limit, HTTP status,
                credentials, an unusable reply, or any other failure of the chat model).
            ConfigError: tools were given but the chat model does not implement ``bind_tools``.
            MessageTranslationError: the messages cannot be expressed as LangChain messages.
        """
        runnable = self._runnable(tools)
        lc_messages = to_langchain_messages(messages, images, self._image_format)
        start = time.perf_counter()
        with translated_errors(self._translate):
            reply = runnable.invoke(lc_messages)
        return self._reply(reply, time.perf_counter() - start)

    async def acomplete(
        self,
        messages: Sequence[ChatMessage],
        *,
        images: ImageStore,
        tools: Sequence[ToolSpec] | None = None,
    ) -> ChatReply:
        """Run one chat turn with ``ainvoke`` (same arguments and contract as :meth:`complete`)."""
        runnable = self._runnable(tools)
        lc_messages = to_langchain_messages(messages, images, self._image_format)
        start = time.perf_counter()
        with translated_errors(self._translate):
            reply = await runnable.ainvoke(lc_messages)
        return self._reply(reply, time.perf_counter() - start)

    # -- internals --

    @property
    def _where(self) -> str:
        return f"{_class_name(self._chat_model)} (model {self._model!r})"

    def _runnable(self, tools: Sequence[ToolSpec] | None) -> Runnable:
        if not tools:
            return self._chat_model
        specs = [spec.to_openai() for spec in tools]
        # ToolSpec holds a dict, so it is not hashable: key the cache on the canonical JSON of each spec.
        key = tuple(json.dumps(s, sort_keys=True) for s in specs)
        with self._lock:
            bound = self._bound.get(key)
        if bound is not None:
            return bound
        try:
            bound = _bind_tools(self._chat_model, specs)
        except (NotImplementedError, AttributeError) as err:
            raise ConfigError(
                f"LangChainBackend: {_class_name(self._chat_model)} does not implement bind_tools (native "
                f"tool calling), which the json protocol needs to offer the crop tool; use "
                f'protocol="awares-text" instead, e.g. AwaResAgent(backend, protocol="awares-text"), which '
                f"asks for crops in plain text"
            ) from err
        except Exception as err:
            raise ConfigError(
                self._secrets.redact(
                    f"LangChainBackend: {_class_name(self._chat_model)}.bind_tools rejected the tools "
                    f"{[s['function']['name'] for s in specs]}: {type(err).__name__}: "
                    f"{excerpt(str(err), self._secrets.values)}"
                )
            ) from err
        with self._lock:
            return self._bound.setdefault(key, bound)

    def _reply(self, message: Any, latency_s: float) -> ChatReply:
        try:
            reply = parse_ai_message(message, where=self._where)
        except BackendResponseError as err:
            raise BackendResponseError(self._secrets.redact(str(err))) from None
        return reply.model_copy(update={"latency_s": latency_s})

    def _translate(self, err: Exception) -> BackendError:
        """Map an exception raised by the chat model onto the BackendError hierarchy through this backend's
        table (messages redacted, the exceptions chained under it too: langchain's own wrapping the SDK's).

        SDK exceptions are recognised by class name, so that openai (and anthropic, groq... whose
        Stainless-generated SDKs share these names) need not be importable here.
        """
        where, chat_model = self._where, self._chat_model

        def detail(e: BaseException) -> str:
            return f"{type(e).__name__}: {excerpt(str(e), self._secrets.values) or '(no message)'}"

        def connection(e: BaseException) -> str:
            cause = _root_cause(e)
            why = (
                f"; cause: {type(cause).__name__}: {excerpt(str(cause), self._secrets.values)}"
                if cause
                else ""
            )
            return (
                f"could not connect to {where}{_at(chat_model)} ({detail(e)}{why}); check that the server is "
                f"running and that the chat model's base URL is right"
            )

        table = (
            # Timeouts first: openai's APITimeoutError is a subclass of APIConnectionError.
            ErrorRule(
                BackendTimeoutError,
                lambda e: (
                    f"{where} did not answer in time{_timeout(chat_model)} ({detail(e)}); raise the chat "
                    f"model's timeout (and/or max_retries) if the model is just slow, or check that the "
                    f"server is not overloaded"
                ),
                types=(ModelTimeoutError, TimeoutError),
                names=_TIMEOUT_NAMES,
            ),
            ErrorRule(
                BackendConnectionError,
                connection,
                types=(ModelConnectionError, ConnectionError),
                names=_CONNECTION_NAMES,
            ),
            ErrorRule(
                BackendRateLimitError,
                lambda e: (
                    f"{where} kept answering HTTP 429 Too Many Requests ({detail(e)}); lower the request "
                    f"rate or concurrency, or raise the chat model's max_retries"
                ),
                types=(ModelRateLimitError,),
                names=frozenset({"RateLimitError"}),
            ),
            ErrorRule(
                BackendAuthError,
                lambda e: (
                    f"{where} refused the credentials{_http(status_code(e))} ({detail(e)}); check the chat "
                    f"model's API key and its access to the model"
                ),
                types=(ModelAuthenticationError, ModelPermissionDeniedError),
                names=_AUTH_NAMES,
            ),
            ErrorRule(
                BackendHTTPError,
                lambda e: f"{where} answered with an error{_http(status_code(e))}: {detail(e)}",
                types=(ModelError,),
                names=frozenset({"APIStatusError"}),
                test=lambda e: status_code(e) is not None,
            ),
            ErrorRule(
                BackendError,
                lambda e: f"{where} failed: {detail(e)}{_closed_loop_hint(e)}",
                types=(BaseException,),
            ),
        )
        return translate_error(err, table, secrets=self._secrets.values)


_TIMEOUT_NAMES = frozenset({"APITimeoutError", "TimeoutException", "Timeout"})  # openai & co, httpx, requests
_CONNECTION_NAMES = frozenset({"APIConnectionError", "ConnectError", "ConnectionError"})
_AUTH_NAMES = frozenset({"AuthenticationError", "PermissionDeniedError"})


def _http(status: int | None) -> str:
    return f" (HTTP {status})" if status is not None else ""


def _closed_loop_hint(err: BaseException) -> str:
    if not (isinstance(err, RuntimeError) and "Event loop is closed" in str(err)):
        return ""
    return (
        "; the chat model's async HTTP client belongs to an event loop that has closed (langchain-openai "
        "shares one client per base URL and timeout across the process, and its pooled connections stay "
        "bound to the loop that opened them): run every acomplete()/aask() on one event loop"
    )


def _bind_tools(chat_model: BaseChatModel | RunnableBinding, specs: list[dict[str, Any]]) -> Runnable:
    if not isinstance(chat_model, RunnableBinding):
        return chat_model.bind_tools(specs)
    # binding.bind_tools() runs the inner model's bind_tools and drops the binding's own kwargs and config
    # (e.g. the temperature of chat.bind(temperature=0)): bind the tools on the inner model, then re-apply.
    with_tools = chat_model.bound.bind_tools(specs)
    taken = with_tools.kwargs if isinstance(with_tools, RunnableBinding) else {}
    bound = with_tools.bind(**{k: v for k, v in chat_model.kwargs.items() if k not in taken})
    return bound.with_config(chat_model.config) if chat_model.config else bound


def _model_attribute(chat_model: Any, names: Sequence[str], kind: type | tuple[type, ...]) -> Any:
    model = getattr(chat_model, "bound", chat_model)
    for name in names:
        try:
            value = getattr(model, name, None)
        except Exception:
            continue
        if isinstance(value, kind) and not isinstance(value, bool) and value:
            return value
    return None


def _at(chat_model: Any) -> str:
    url = _model_attribute(chat_model, ("openai_api_base", "base_url", "anthropic_api_url", "api_base"), str)
    return f" at {url}" if url else ""


def _timeout(chat_model: Any) -> str:
    seconds = _model_attribute(
        chat_model, ("request_timeout", "default_request_timeout", "timeout"), (int, float)
    )
    return f" (timeout {seconds:g} s)" if seconds else ""


def _reported_model_name(chat_model: Any) -> str:
    for attribute in _MODEL_ATTRIBUTES:
        try:
            value = getattr(chat_model, attribute, None)
        except Exception:  # a property that fails, or a RunnableBinding delegating to one
            continue
        if isinstance(value, str) and value.strip():
            return value
    return _class_name(chat_model)


def _class_name(chat_model: Any) -> str:
    """The chat model's class name (the wrapped model's, for a ``RunnableBinding``)."""
    bound = getattr(chat_model, "bound", None)
    return type(bound if isinstance(bound, BaseChatModel) else chat_model).__name__


def _root_cause(err: BaseException) -> BaseException | None:
    """The innermost chained exception (e.g. httpx's ConnectError under openai's under langchain's)."""
    seen = {id(err)}
    cause = err.__cause__ or err.__context__
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        deeper = cause.__cause__ or cause.__context__
        if deeper is None:
            break
        cause = deeper
    return cause


def _secret_values(chat_model: Any) -> list[str]:
    """The model's secrets: its ``SecretStr`` fields, and the attributes its ``lc_secrets`` names."""
    model = getattr(chat_model, "bound", chat_model)  # a RunnableBinding wraps the model
    candidates: list[Any] = []
    if isinstance(model, BaseModel):
        candidates += [
            v for name in type(model).model_fields if isinstance(v := getattr(model, name, None), SecretStr)
        ]
    try:
        secret_names = list(getattr(model, "lc_secrets", None) or {})
    except Exception:
        secret_names = []
    candidates += [getattr(model, name, None) for name in secret_names]
    values = []
    for value in candidates:
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        # Placeholders like "EMPTY" are not secrets, and replacing short strings would garble messages.
        if isinstance(value, str) and len(value) >= 8 and value != "EMPTY":
            values.append(value)
    return values
