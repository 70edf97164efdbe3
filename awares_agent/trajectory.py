"""The trajectory: one record of a query, produced by the agent and reused everywhere else.

A :class:`Trajectory` holds the whole interaction (messages with image references, crops requested, visual
tokens spent, the answer, errors along the way), the agent settings it was made under
(:class:`AgentSettings`) and, once a collector or an evaluation knows them, its labels
(:class:`TrajectoryLabels`: whether crops were needed, the evidence box, the judge's verdict, the teacher).
The agent produces it, the collector labels and writes it, training reads it and evals score it: one
schema, defined here once. Its JSON schema is versioned by :data:`SCHEMA_VERSION` and kept in
``schemas/trajectory.schema.json``; a change to it is deliberate.

Records of an older version are read too: :meth:`Trajectory.model_validate` (and ``model_validate_json``)
upgrades a ``awares.trajectory.v1`` record on the way in (:func:`upgrade_v1`).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from awares_agent.boxes import Box
from awares_agent.messages import ChatMessage, Usage
from awares_agent.tokens import TokenCost
from awares_agent.tools.prompts import PromptPreset, resolve_preset

SCHEMA_VERSION = "awares.trajectory.v2"
"""The version of the schema this module defines (the ``schema_version`` every new record carries)."""

SCHEMA_V1 = "awares.trajectory.v1"
"""The first version: no settings record (``protocol`` and ``crop_set`` at the top level) and no labels."""

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


class AgentSettings(BaseModel):
    """How the agent that made a trajectory was set up: what a model trained on it must speak.

    These are the :class:`~awares_agent.config.AgentConfig` fields a trained checkpoint records
    (:data:`~awares_agent.config.CHECKPOINT_FIELDS`), as they were in force for this query.

    Attributes:
        protocol: the tool-call protocol (``"json"`` or ``"awares-text"``).
        crop_set: the crop set's key (``"paper"``, ``"grid-3x3"``).
        system_prompt_preset: the preset the system prompt came from, resolved (``auto`` stands for
            ``awares`` or ``released`` depending on the model, and is recorded as the one it stood for);
            ``None`` when the prompt was the user's own (``system_prompt``).
        system_prompt: the user's own system prompt, when one replaced the presets; ``None`` otherwise.
        keep_tools: whether the crop tool was offered on every turn, the last one too.
    """

    model_config = ConfigDict(frozen=True)

    protocol: Literal["json", "awares-text"]
    crop_set: str
    system_prompt_preset: PromptPreset | None = "awares"
    system_prompt: str | None = None
    keep_tools: bool = False


class Verdict(BaseModel):
    """A judge's decision on one answer.

    Attributes:
        correct: whether the answer counts as correct.
        score: the judge's score in ``[0, 1]`` (the metric's score; 1 or 0 for the LLM judge).
        reason: a short explanation.
        judge: which judge decided, e.g. ``"metric:anls>=0.5"`` or ``"llm:gpt-4o-mini"``.
    """

    correct: bool
    score: float = Field(ge=0.0, le=1.0)
    reason: str
    judge: str


class TrajectoryLabels(BaseModel):
    """What is known about a trajectory's sample and answer, beyond the interaction itself.

    Every field is optional: a collector's label trajectory has them all, an on-policy rollout only the
    verdict and the teacher, an evaluation only what its dataset gives.

    Attributes:
        needs_crop: whether answering needs more than the low-resolution view (labelling: the teacher was
            wrong on the view and right on the full image; evaluation: the dataset's label).
        evidence: the box of the evidence, ``(left, top, right, bottom)`` in original-image pixels.
        verdict: the judge's verdict on the trajectory's answer.
        teacher: the model whose answers made the label (or that ran the rollout).
    """

    needs_crop: bool | None = None
    evidence: Box | None = None
    verdict: Verdict | None = None
    teacher: str | None = None


def upgrade_v1(data: dict[str, Any]) -> dict[str, Any]:
    """A ``awares.trajectory.v1`` record (a dict, as parsed from JSON) as a current one.

    v1 kept ``protocol`` and ``crop_set`` at the top level; they move into ``settings``. v1 did not record
    the rest of the settings, so they take the agent's defaults: the ``auto`` system prompt preset (resolved
    for the record's model and protocol, as the agent resolved it), no prompt of the user's own, and
    ``keep_tools`` off. A v1 trajectory made with another preset or a prompt of the user's own is therefore
    read with the default preset. v1 had no labels (they were beside the trajectory, in the collector's row
    or the export's columns): ``labels`` is ``None``.

    Args:
        data: the v1 record; it is not modified.
    """
    upgraded = {k: v for k, v in data.items() if k not in ("protocol", "crop_set")}
    protocol = data.get("protocol")
    upgraded["schema_version"] = SCHEMA_VERSION
    upgraded["settings"] = {
        "protocol": protocol,
        "crop_set": data.get("crop_set"),
        "system_prompt_preset": resolve_preset(
            "auto", protocol=str(protocol), model_name=str(data.get("model") or "")
        ),
        "system_prompt": None,
        "keep_tools": False,
    }
    return upgraded


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
        backend: the backend's class name (``"OpenAIBackend"``, ``"TransformersBackend"``,
            ``"ReaderBackend"``...).
        settings: how the agent was set up (protocol, crop set, system prompt, ``keep_tools``).
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
        labels: what a collector or an evaluation knows of the sample and the answer; ``None`` for a query
            nobody labelled.
    """

    model_config = ConfigDict(json_schema_extra={"$id": SCHEMA_VERSION})

    schema_version: Literal["awares.trajectory.v2"] = SCHEMA_VERSION
    id: str = Field(default_factory=lambda: uuid.uuid4().hex)
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    question: str
    image: ImageRecord
    view: ImageRecord
    model: str
    backend: str
    settings: AgentSettings
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
    labels: TrajectoryLabels | None = None

    @model_validator(mode="before")
    @classmethod
    def _upgrade(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("schema_version") == SCHEMA_V1:
            return upgrade_v1(data)
        return data

    @property
    def used_tool(self) -> bool:
        """Whether any crop was sent."""
        return bool(self.crops)


if __name__ == "__main__":  # python -m awares_agent.trajectory > schemas/trajectory.schema.json
    import json

    print(json.dumps(Trajectory.model_json_schema(), indent=2))
