"""The trajectory: one record of a query, produced by the agent and reused everywhere else.

A :class:`Trajectory` holds the whole interaction (messages with image references, crops requested, visual
tokens spent, the answer, errors along the way). The agent produces it, the collector writes it, training
reads it and evals score it: one schema, defined here once. Its JSON schema is versioned by
:data:`SCHEMA_VERSION` and kept in ``schemas/trajectory.schema.json``; a change to it is deliberate.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from awares_agent.messages import ChatMessage, Usage
from awares_agent.tokens import TokenCost

SCHEMA_VERSION = "awares.trajectory.v1"

ErrorKind = Literal[
    "invalid_tool_call",  # malformed arguments, unknown/duplicate/no crops
    "unknown_tool",  # a call to a tool that does not exist
    "empty_reply",  # the model said nothing
    "extra_tool_round",  # a crop request after the last allowed round
    "budget",  # crops withheld because they would exceed the visual-token budget
    "no_answer",  # the final turn still gave no answer
    "invalid_text",  # the reply held text that is not valid Unicode (replaced with U+FFFD)
    "redacted",  # the reply held a credential-shaped text (replaced with <redacted>)
]


class ImageRecord(BaseModel):
    """An image as the trajectory references it: its content id and size (pixels stay in the store)."""

    id: str
    width: int
    height: int
    source: str | None = Field(default=None, description="Where the original came from (a path), if known.")


class CropRecord(BaseModel):
    """One crop sent to the model.

    Attributes:
        round: the tool round (1-based) it was requested in.
        region_id: the crop set's id for the region (``"0"``, ``"all"``...).
        name: the region's name (``"top-left"``).
        box: ``(left, top, right, bottom)`` in original-image pixels.
        image_id: content id of the crop in the image store.
        tokens: visual tokens the crop costs under the trajectory's token rule.
    """

    round: int
    region_id: str
    name: str
    box: tuple[int, int, int, int]
    image_id: str
    width: int
    height: int
    tokens: int


class ErrorRecord(BaseModel):
    """Something that went wrong in the query and was handled (the model was told, or the agent moved on)."""

    round: int
    kind: ErrorKind
    message: str
    raw: str | None = Field(default=None, description="The model output at fault, if any.")


class Trajectory(BaseModel):
    """A complete record of one AwaRes query.

    Attributes:
        schema_version: :data:`SCHEMA_VERSION`.
        id: unique id of the query.
        created_at: when the query started (UTC).
        question: the question asked.
        image: the original image.
        view: the low-resolution view the model saw first.
        model: the model name the backend reported.
        backend: the backend adapter (``"openai"``, ``"transformers"``...).
        protocol: the tool-call protocol (``"json"`` or ``"awares-text"``).
        crop_set: the crop set's key (``"paper"``, ``"grid-3x3"``).
        messages: the conversation, system prompt included, with image references.
        crops: every crop sent, in order.
        rounds: tool rounds that returned crops.
        answer: the final answer, or ``None`` if the model gave none.
        cost: visual-token accounting, RTR included.
        usage: backend-reported token usage, summed over calls.
        calls: number of backend calls.
        errors: handled errors, in order.
        max_rtr: the visual-token budget in force, if any.
        latency_s: wall-clock seconds for the whole query.
    """

    model_config = ConfigDict(json_schema_extra={"$id": SCHEMA_VERSION})

    schema_version: Literal["awares.trajectory.v1"] = SCHEMA_VERSION
    id: str = Field(default_factory=lambda: uuid.uuid4().hex)
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    question: str
    image: ImageRecord
    view: ImageRecord
    model: str
    backend: str
    protocol: str
    crop_set: str
    messages: list[ChatMessage]
    crops: list[CropRecord] = Field(default_factory=list)
    rounds: int = 0
    answer: str | None
    cost: TokenCost
    usage: Usage = Field(default_factory=Usage)
    calls: int = 0
    errors: list[ErrorRecord] = Field(default_factory=list)
    max_rtr: float | None = None
    latency_s: float = 0.0

    @property
    def used_tool(self) -> bool:
        """Whether any crop was sent."""
        return bool(self.crops)


if __name__ == "__main__":  # python -m awares_agent.trajectory > schemas/trajectory.schema.json
    import json

    print(json.dumps(Trajectory.model_json_schema(), indent=2))
