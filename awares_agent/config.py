"""The agent's configuration: one pydantic model, defaults from the AwaRes paper."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from awares_agent.errors import ConfigError
from awares_agent.images import DEFAULT_MAX_IMAGE_PIXELS, ViewSpec
from awares_agent.tools.crop_sets import crop_set
from awares_agent.tools.prompts import RELEASED_MODEL, PromptPreset, released_prompt

CHECKPOINT_FILE = "awares_agent.json"
"""The file in a trained checkpoint directory that records how its agent must be run (``awares train``)."""

MAX_ROUNDS = 8
"""The most crop rounds a query may allow (:attr:`AgentConfig.max_rounds`, a run's ``RunOptions``, GRPO's
``crop_rounds``)."""

CHECKPOINT_FIELDS = ("protocol", "crop_set", "system_prompt_preset", "system_prompt", "keep_tools")
"""The :class:`AgentConfig` fields a checkpoint records: what the model was trained to speak."""


class AgentConfig(BaseModel):
    """How an :class:`~awares_agent.agent.AwaResAgent` looks, decides and crops.

    Attributes:
        protocol: tool-call protocol: ``"json"`` (function calling, native or hermes ``<tool_call>`` text)
            or ``"awares-text"`` (the released model's ``GET_CROPS: [...]``).
        crop_set: ``"paper"`` (9 regions + ``all``) or ``"grid-RxC"``.
        view_scale: the low-res view's scale of the original's width and height (paper: 0.5).
        view_longest_side: if set, the view's longest side in pixels instead of ``view_scale``.
        max_rounds: crop rounds allowed per query (paper: 1; at most :data:`MAX_ROUNDS`).
        max_corrections: times a model may correct an invalid tool call before it must answer (default 1).
        max_rtr: optional visual-token budget per query, as a retained token ratio; crops beyond it are
            withheld.
        token_rule: visual-token rule (``"qwen2.5-vl"``, ``"qwen3-vl"``, ``"pixels"``...); ``None`` takes the
            backend's own (a local model's processor geometry), else infers it from the model name.
        system_prompt_preset: which system prompt opens a query (:mod:`awares_agent.tools.prompts`):
            ``"auto"`` (default: the released prompt, verbatim, for the released checkpoint
            ``Kimhi/AWARES-Qwen2.5-VL-7B`` under ``awares-text``; the project's own otherwise), ``"awares"``
            (the project's own), ``"released"`` (the released evaluation script's) or ``"released-readme"``
            (the released README's quick start).
        system_prompt: a prompt of your own; it replaces any preset (the crop map is then yours to describe).
        max_image_pixels: refuse images with more pixels than this (decompression-bomb guard).
        keep_tools: offer the crop tool on every turn, the last one too (a request there is refused, as
            after the last round). Every prompt then extends the one before, as in the trajectories
            ``awares train`` trains on; checkpoints trained on the json protocol record it. By default
            the tool is withdrawn once no more crops can be served.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Each description is the field's command-line help (awares_agent.cli_options); json_schema_extra holds
    # what the command line needs beyond it.
    protocol: Literal["json", "awares-text"] = Field(
        default="json",
        description="tool-call protocol: json function calling, or the released GET_CROPS text",
    )
    crop_set: str = Field(default="paper", description="'paper' (9 regions + all) or 'grid-RxC'")
    view_scale: float = Field(default=0.5, gt=0, le=1, description="low-res view scale")
    view_longest_side: int | None = Field(
        default=None,
        ge=1,
        description="the low-res view's longest side in pixels, instead of --view-scale",
        json_schema_extra={"metavar": "PIXELS"},
    )
    max_rounds: int = Field(
        default=1,
        ge=0,
        le=MAX_ROUNDS,
        description="crop rounds allowed per query (default: 1, as in the paper)",
    )
    max_corrections: int = Field(
        default=1,
        ge=0,
        le=8,
        description="times a model may correct an invalid tool call before it must answer",
    )
    max_rtr: float | None = Field(
        default=None,
        gt=0,
        description="visual-token budget as a retained token ratio, e.g. 0.5 (default: none)",
    )
    token_rule: str | None = Field(
        default=None,
        description="visual-token rule: qwen2.5-vl, qwen2-vl, qwen3-vl, pixels (default: the backend's or "
        "inferred from the model name)",
    )
    system_prompt_preset: PromptPreset = Field(
        default="auto",
        description="the system prompt: awares (the project's own), released (the released evaluation "
        "script's, verbatim), released-readme (the released README's quick start); auto (default, unless a "
        f"model trained by awares records its own): released for {RELEASED_MODEL} with --protocol "
        "awares-text, else awares",
        json_schema_extra={"flag": "--system-prompt"},
    )
    system_prompt: str | None = Field(
        default=None,
        description="a system prompt of your own (Python API and trained checkpoints)",
        json_schema_extra={"cli": False},
    )
    max_image_pixels: int = Field(
        default=DEFAULT_MAX_IMAGE_PIXELS,
        ge=1,
        description="refuse images with more pixels than this (decompression-bomb guard)",
        json_schema_extra={"metavar": "N"},
    )
    keep_tools: bool = Field(
        default=False,
        description="offer the crop tool on every turn, the last one too, as in the trajectories awares "
        "train trains on (default: withdrawn once no more crops can be served)",
    )

    @model_validator(mode="after")
    def _check(self) -> AgentConfig:
        regions = crop_set(self.crop_set)  # raises ConfigError for an unknown key
        preset = self.system_prompt_preset
        if preset in ("released", "released-readme"):
            # Refuses a protocol or crop set the released prompt was not written for.
            released_prompt(preset, protocol=self.protocol, crop_set=regions)
        if self.system_prompt is not None and preset != "auto":
            raise ConfigError(
                f"choose one: a system prompt of your own or the {preset!r} preset (--system-prompt)"
            )
        return self

    @classmethod
    def from_options(cls, base: AgentConfig | None = None, **options: Any) -> AgentConfig:
        """A config from ``base`` (defaults if omitted) with ``options`` overriding its fields.

        Raises:
            ConfigError: an unknown option or an invalid value, with every problem named.
        """
        data = {**(base.model_dump() if base is not None else {}), **options}
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc'])) or 'config'}: {e['msg']} (got {e.get('input')!r})"
                for e in exc.errors()
            )
            raise ConfigError(f"invalid agent configuration: {problems}") from None

    @property
    def view(self) -> ViewSpec:
        """The low-res view's spec."""
        return ViewSpec(scale=self.view_scale, longest_side=self.view_longest_side)

    @classmethod
    def from_checkpoint(cls, model: str | os.PathLike[str], **options: Any) -> AgentConfig:
        """The configuration a trained checkpoint records (:data:`CHECKPOINT_FILE`), ``options`` over it.

        A model trained by ``awares train`` speaks one tool-call protocol over one crop set with one system
        prompt; this runs it the same way. A directory without the file (or a hub id) gives the defaults.

        Raises:
            ConfigError: the file is not valid, or the options are not.
        """
        return cls.from_options(**{**checkpoint_options(model), **options})

    def checkpoint_options(self) -> dict[str, Any]:
        """What :meth:`from_checkpoint` reads back: the fields of :data:`CHECKPOINT_FIELDS`."""
        return {name: getattr(self, name) for name in CHECKPOINT_FIELDS}


def checkpoint_options(model: str | os.PathLike[str] | None) -> dict[str, Any]:
    """The agent options recorded in ``model``'s :data:`CHECKPOINT_FILE`; ``{}`` where there is none.

    Raises:
        ConfigError: the file exists but is not a JSON object of :data:`CHECKPOINT_FIELDS`.
    """
    if model is None:
        return {}
    file = Path(model).expanduser() / CHECKPOINT_FILE
    if not file.is_file():
        return {}
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{file} is not valid JSON ({exc}); delete it or re-run the training") from None
    if not isinstance(data, dict) or not set(data) <= set(CHECKPOINT_FIELDS):
        raise ConfigError(f"{file} must be a JSON object with only the keys {', '.join(CHECKPOINT_FIELDS)}")
    return data


def write_checkpoint_options(model_dir: str | os.PathLike[str], config: AgentConfig) -> Path:
    """Record in ``model_dir`` how an agent must run the model trained there (read by ``from_checkpoint``)."""
    file = Path(model_dir) / CHECKPOINT_FILE
    file.write_text(json.dumps(config.checkpoint_options(), indent=2) + "\n", encoding="utf-8")
    return file
