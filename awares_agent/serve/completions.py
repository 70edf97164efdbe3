"""An AwaRes query's outcome as an OpenAI chat completion, whole or as ``chat.completion.chunk`` events.

The answer is the assistant message, ``usage`` is summed over the upstream calls the query made, and what
AwaRes did travels in an extension standard clients ignore: the ``awares`` field of the completion (of the
last chunk, streamed) and, on a whole response, the ``x-awares-*`` headers:

=====================  ===================================  ==========================================
``awares`` field       header                               meaning
=====================  ===================================  ==========================================
``policy``             ``x-awares-policy``                  the crop policy the query ran under
``rtr``                ``x-awares-rtr``                     visual tokens sent / the full image's
``visual_tokens``      ``x-awares-visual-tokens``           visual tokens sent (view + crops)
``full_tokens``        ``x-awares-full-tokens``             visual tokens of the full-resolution image
``crops``              ``x-awares-crops`` (region ids)      the crops sent: ``region_id``, ``name``, ``box``
``model_calls``        ``x-awares-model-calls``             upstream calls made
``rounds``                                                  crop rounds served
``trajectory_id``                                           the trajectory's id (as written with
                                                            ``--trajectories``)
``ignored``                                                 request fields AwaRes did not apply
``errors``                                                  what went wrong and was handled (kinds)
=====================  ===================================  ==========================================
"""

from __future__ import annotations

import json
from typing import Any

from awares_agent.agent import AskResult

__all__ = ["awares_headers", "awares_summary", "chunk", "completion", "sse", "usage_of"]


def awares_summary(result: AskResult, *, policy: str, ignored: tuple[str, ...] = ()) -> dict[str, Any]:
    """The ``awares`` extension field: what AwaRes did for one query."""
    t = result.trajectory
    return {
        "policy": policy,
        "rtr": round(result.rtr, 4),
        "visual_tokens": result.visual_tokens,
        "full_tokens": result.full_tokens,
        "crops": [{"region_id": c.region_id, "name": c.name, "box": list(c.box)} for c in t.crops],
        "model_calls": t.calls,
        "rounds": t.rounds,
        "trajectory_id": t.id,
        "ignored": list(ignored),
        "errors": [e.kind for e in t.errors],
    }


def awares_headers(summary: dict[str, Any]) -> dict[str, str]:
    """The ``x-awares-*`` headers of a whole response."""
    return {
        "x-awares-policy": summary["policy"],
        "x-awares-rtr": f"{summary['rtr']:.4f}",
        "x-awares-visual-tokens": str(summary["visual_tokens"]),
        "x-awares-full-tokens": str(summary["full_tokens"]),
        "x-awares-crops": ",".join(c["region_id"] for c in summary["crops"]),
        "x-awares-model-calls": str(summary["model_calls"]),
    }


def usage_of(result: AskResult) -> dict[str, int]:
    """OpenAI's ``usage``, summed over the query's upstream calls."""
    usage = result.trajectory.usage
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.prompt_tokens + usage.completion_tokens,
    }


def completion(
    result: AskResult, *, request_id: str, model: str, created: int, summary: dict[str, Any]
) -> dict[str, Any]:
    """The whole ``chat.completion``."""
    return {
        "id": request_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": result.answer or "", "refusal": None},
                "finish_reason": "stop",
                "logprobs": None,
            }
        ],
        "usage": usage_of(result),
        "awares": summary,
    }


def chunk(
    *,
    request_id: str,
    model: str,
    created: int,
    delta: dict[str, Any] | None = None,
    finish_reason: str | None = None,
    usage: dict[str, int] | None = None,
    awares: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One ``chat.completion.chunk``: a delta, a finish, or (``usage`` with no delta) the usage chunk."""
    body: dict[str, Any] = {
        "id": request_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": []
        if delta is None
        else [{"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}],
    }
    if usage is not None:
        body["usage"] = usage
    if awares is not None:
        body["awares"] = awares
    return body


def sse(data: dict[str, Any] | str) -> bytes:
    """One server-sent event: ``data: <json>`` (or ``data: [DONE]``) and a blank line."""
    text = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return f"data: {text}\n\n".encode()
