"""Which chat-completions requests AwaRes answers, which go to the upstream unchanged, which are refused.

:func:`route_chat` reads a parsed ``POST /v1/chat/completions`` body and returns an :class:`AwaresQuery` (the
question, the image's URL, the request's AwaRes options), a :class:`Passthrough` (with the reason, sent back
in the ``x-awares-passthrough-reason`` header), or raises a 400 :class:`~awares_agent.serve.errors.
ServeError` for a body no server could answer. The rules (the package docstring has them as a table):

AwaRes answers a request for the served model whose last message is a user turn with exactly one image and
some text, preceded by nothing but system (or developer) messages of plain text, and which asks for nothing
AwaRes cannot give: no tools of the client's own, one choice, plain-text output, no log-probabilities, no
audio. The system messages' text is put before the question (blank-line separated); sampling options
(``temperature``, ``max_tokens``...) are the server's (its upstream settings), and the request's are listed
as ignored in the response's ``awares`` field.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from awares_agent.errors import ConfigError
from awares_agent.serve.errors import ServeError
from awares_agent.serve.media import url_of
from awares_agent.serve.options import RequestOptions

__all__ = ["AwaresQuery", "Passthrough", "route_chat"]

#: Fields AwaRes reads; every other field of a request it answers is reported as ignored.
HANDLED = frozenset({"model", "messages", "stream", "stream_options", "awares"})

_SYSTEM_ROLES = ("system", "developer")


@dataclass(frozen=True)
class AwaresQuery:
    """A request AwaRes answers.

    Attributes:
        model: the model the request named (the served one).
        question: the question: the last user turn's text, after the system messages' text.
        image_url: the one image's URL (a ``data:`` URI, or an ``http(s)`` URL to fetch if allowed).
        options: the request's AwaRes options (its ``awares`` field).
        stream: answer as server-sent events.
        include_usage: with ``stream``: end with a usage chunk (``stream_options.include_usage``).
        ignored: the request's fields AwaRes does not apply (``temperature``, ``max_tokens``...).
    """

    model: str
    question: str
    image_url: str
    options: RequestOptions = field(default_factory=RequestOptions)
    stream: bool = False
    include_usage: bool = False
    ignored: tuple[str, ...] = ()


@dataclass(frozen=True)
class Passthrough:
    """A request passed to the upstream unchanged (but for its ``awares`` field, which is the server's own).

    Attributes:
        reason: why AwaRes does not answer it (``no_image``, ``several_images``, ``client_tools``...).
        stream: the client asked for server-sent events.
    """

    reason: str
    stream: bool = False


def _forces_passthrough(key: str, value: Any) -> bool:
    """Whether a request field asks for what only the upstream can give."""
    if key in ("tools", "functions"):
        return bool(value)
    if key in ("tool_choice", "function_call"):
        return value not in (None, "none", "auto")
    if key == "n":
        return value not in (None, 1)
    if key == "response_format":
        return not (value is None or (isinstance(value, dict) and value.get("type") == "text"))
    if key in ("logprobs", "top_logprobs"):
        return bool(value)
    if key == "modalities":
        return value not in (None, ["text"])
    if key in ("audio", "prediction", "web_search_options"):
        return value is not None
    return False


_ROUTING_FIELDS = frozenset(
    {
        "tools",
        "functions",
        "tool_choice",
        "function_call",
        "parallel_tool_calls",
        "n",
        "response_format",
        "logprobs",
        "top_logprobs",
        "modalities",
        "audio",
        "prediction",
        "web_search_options",
    }
)


def _text_of(content: Any) -> str | None:
    """The text of a message's content (a string, or text parts only); ``None`` if it holds anything else."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if (
                not isinstance(part, dict)
                or part.get("type") != "text"
                or not isinstance(part.get("text"), str)
            ):
                return None
            texts.append(part["text"])
        return "\n".join(texts)
    return None


def _invalid(message: str, param: str) -> ServeError:
    return ServeError(400, "invalid_request", message, param=param)


def _checked(body: Any) -> tuple[str, list[dict[str, Any]], bool]:
    """``(model, messages, stream)`` of a body any server could answer; else the 400 it gets."""
    if not isinstance(body, dict):
        raise ServeError(
            400, "invalid_json", f"the request body must be a JSON object, not {type(body).__name__}"
        )
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise _invalid("you must provide a model parameter (the model's name as a string)", "model")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _invalid("messages must be a non-empty list of {role, content} objects", "messages")
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise _invalid(f"messages[{i}] must be an object with a string role", f"messages[{i}]")
    stream = body.get("stream", False)
    if not isinstance(stream, bool | None):
        raise _invalid("stream must be true or false", "stream")
    return model, messages, bool(stream)


def route_chat(body: Any, *, served_model: str) -> AwaresQuery | Passthrough:
    """Where a chat-completions request goes (see the module docstring).

    Args:
        body: the parsed request body.
        served_model: the model AwaRes runs (``--model``).

    Raises:
        ServeError: 400 for a body that is not a chat-completions request, or invalid ``awares`` options.
    """
    model, messages, stream = _checked(body)
    try:
        options = RequestOptions.parse(body.get("awares"))
    except ConfigError as exc:
        raise ServeError(400, "invalid_awares_options", str(exc), param="awares") from None
    if model != served_model:
        return Passthrough("model", stream)
    for key in _ROUTING_FIELDS & body.keys():
        if _forces_passthrough(key, body[key]):
            return Passthrough(f"option:{key}", stream)

    *earlier, last = messages
    if last["role"] != "user":
        return Passthrough("last_turn_not_user", stream)
    system_texts = []
    for message in earlier:
        if message["role"] not in _SYSTEM_ROLES:
            return Passthrough("history", stream)
        text = _text_of(message.get("content"))
        if text is None:
            return Passthrough("other_content", stream)
        if text.strip():
            system_texts.append(text.strip())

    content = last.get("content")
    if not isinstance(content, list):
        return Passthrough("no_image", stream)
    images, texts = [], []
    for part in content:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "image_url" and url_of(part.get("image_url")) is not None:
            images.append(url_of(part["image_url"]))
        elif kind == "text" and isinstance(part.get("text"), str):
            texts.append(part["text"])
        else:
            return Passthrough("other_content", stream)
    if not images:
        return Passthrough("no_image", stream)
    if len(images) > 1:
        return Passthrough("several_images", stream)
    question = "\n".join(t.strip() for t in texts if t.strip())
    if not question:
        return Passthrough("no_question", stream)

    stream_options = body.get("stream_options")
    include_usage = isinstance(stream_options, dict) and stream_options.get("include_usage") is True
    ignored = sorted(k for k in body.keys() - HANDLED if k not in _ROUTING_FIELDS)
    return AwaresQuery(
        model=model,
        question="\n\n".join([*system_texts, question]),
        image_url=images[0],
        options=options,
        stream=stream,
        include_usage=include_usage,
        ignored=tuple(ignored),
    )
