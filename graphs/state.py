"""The AwaRes graph's state: plain JSON values only, no pixels.

Images are referenced by their content id in the image store. Every value is a JSON type (dicts, lists,
strings, numbers) so that any LangGraph checkpointer stores the state as it is, with no custom types to
register; nodes validate messages and decisions back into their pydantic models when they use them.
"""

from __future__ import annotations

import operator
from typing import Annotated, Any, TypedDict


class ImageInfo(TypedDict):
    """An image reference: content id and size in pixels."""

    id: str
    width: int
    height: int


class UsageInfo(TypedDict):
    """Backend usage summed over the query's calls."""

    prompt_tokens: int
    completion_tokens: int
    calls: int
    backend_s: float


def add_usage(left: UsageInfo | None, right: UsageInfo | None) -> UsageInfo:
    """Reducer: sum two usage records."""
    zero: UsageInfo = {"prompt_tokens": 0, "completion_tokens": 0, "calls": 0, "backend_s": 0.0}
    a, b = left or zero, right or zero
    return {
        "prompt_tokens": a["prompt_tokens"] + b["prompt_tokens"],
        "completion_tokens": a["completion_tokens"] + b["completion_tokens"],
        "calls": a["calls"] + b["calls"],
        "backend_s": a["backend_s"] + b["backend_s"],
    }


class AwaresState(TypedDict, total=False):
    """State of one query.

    Inputs: ``question`` and ``source`` (the original image, already in the image store). Lists with
    ``operator.add`` reducers accumulate: nodes return only what they append.

    Attributes:
        question: the user's question.
        source: the original image.
        view: the low-resolution view.
        token_rule: the name of the visual-token rule every count below was made with.
        view_tokens: visual tokens of the view.
        full_tokens: visual tokens of the full-resolution image (the RTR denominator).
        messages: the conversation (``ChatMessage`` dumps), appended by nodes.
        decision: the last model turn's ``Decision`` dump.
        crops: crops sent (``CropRecord`` dumps), appended.
        errors: handled errors (``ErrorRecord`` dumps), appended.
        usage: backend usage, summed (turns made by the run options, not the backend, add nothing).
        max_rounds: crop rounds this query may have (the configuration's, or its run options').
        max_rtr: the visual-token budget of this query (``None``: none), likewise.
        rounds: crop rounds served.
        corrections: invalid turns the model was asked to correct.
        force: why the model must now answer without tools (``None`` while it may still crop).
        answer: the final answer, once known.
    """

    question: str
    source: ImageInfo
    view: ImageInfo
    token_rule: str
    view_tokens: int
    full_tokens: int
    messages: Annotated[list[dict[str, Any]], operator.add]
    decision: dict[str, Any] | None
    crops: Annotated[list[dict[str, Any]], operator.add]
    errors: Annotated[list[dict[str, Any]], operator.add]
    usage: Annotated[UsageInfo, add_usage]
    max_rounds: int
    max_rtr: float | None
    rounds: int
    corrections: int
    force: str | None
    answer: str | None
