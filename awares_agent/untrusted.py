"""What a model or a server sends is untrusted: make it valid text, bound it, and keep credentials out.

One rule holds at the boundary between a backend and the rest of the project: every reply, however
malformed, becomes an answer, a handled error recorded in the trajectory, or one of the project's typed
errors. This module holds the checks that rule needs:

* :func:`valid_text` makes any string valid UTF-8: a lone surrogate (``"\\ud800"`` is valid JSON, but no
  UTF-8 encoder accepts it) is replaced with U+FFFD, so the next request and the trajectory still encode.
* :func:`json_text_problem` and :func:`json_value_problem` bound the size and nesting depth of a tool call's
  arguments **before** they are parsed or re-serialised (a call nested a thousand levels deep otherwise
  surfaces as ``RecursionError`` from deep inside ``json``).
* :func:`safe_text` is :func:`valid_text` plus :func:`~awares_agent.redact.redact`: what every error message
  and stored text goes through. :meth:`ChatReply.cleaned() <awares_agent.messages.ChatReply.cleaned>`
  applies it to a whole model turn and says what it repaired.
"""

from __future__ import annotations

import re
from typing import Any

from awares_agent.redact import redact

__all__ = [
    "MAX_TOOL_ARGUMENT_CHARS",
    "MAX_TOOL_JSON_DEPTH",
    "json_text_problem",
    "json_value_problem",
    "safe_text",
    "valid_text",
]

#: The longest tool-call arguments (or ``<tool_call>`` body) read; a real crop request is under 200 chars.
MAX_TOOL_ARGUMENT_CHARS = 16_384

#: The deepest nesting of arrays and objects read in a tool call (a crop request needs 3).
MAX_TOOL_JSON_DEPTH = 16

_SURROGATE = re.compile(r"[\ud800-\udfff]")


def valid_text(value: str) -> tuple[str, int]:
    """``value`` with every lone surrogate replaced by U+FFFD, and how many were replaced.

    Python strings decoded from JSON may hold lone surrogates (``"\\ud800"``); every UTF-8 encoder refuses
    them, so one in a model's reply would otherwise break the next request and the trajectory's JSON.
    """
    text, count = _SURROGATE.subn("\ufffd", value)
    return text, count


def safe_text(value: str) -> str:
    """``value`` made safe to print or store: valid UTF-8 (:func:`valid_text`) and credentials redacted."""
    return redact(valid_text(value)[0])


def json_text_problem(
    text: str, *, max_chars: int = MAX_TOOL_ARGUMENT_CHARS, max_depth: int = MAX_TOOL_JSON_DEPTH
) -> str | None:
    """Why ``text`` is too big to parse as a tool call's JSON (``None`` if it is within bounds).

    Scans the text once, outside JSON strings, counting ``[`` and ``{`` nesting; nothing is parsed.
    """
    if len(text) > max_chars:
        return f"it is {len(text)} characters long, over the limit of {max_chars}"
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > max_depth:
                    return f"it nests arrays or objects more than {max_depth} levels deep"
        elif char in "]}":
            depth = max(0, depth - 1)
    return None


def json_value_problem(
    value: Any, *, max_depth: int = MAX_TOOL_JSON_DEPTH, max_items: int = 10_000
) -> str | None:
    """Why an already-decoded JSON value is too big to use as tool arguments (``None`` if within bounds).

    For backends that hand over arguments as objects; iterative, so it cannot itself overflow the stack.
    """
    stack: list[tuple[Any, int]] = [(value, 1)]
    seen = 0
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list | tuple):
            if depth > max_depth:
                return f"it nests arrays or objects more than {max_depth} levels deep"
            children = item.values() if isinstance(item, dict) else item
            for child in children:
                seen += 1
                if seen > max_items:
                    return f"it holds more than {max_items} values"
                stack.append((child, depth + 1))
    return None
