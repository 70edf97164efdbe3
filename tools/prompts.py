"""System prompt presets: the project's own prompts, and the two the released AwaRes checkpoint came with.

A fine-tuned model is sensitive to the exact prompt it was trained with, so the released model gets the
released prompt, character for character, typos included. Presets, by name:

==================  =================================================================================
``awares``          the project's own prompt for the protocol (:meth:`ToolProtocol.system_prompt`):
                    the default for every model but the released checkpoint
``released``        ``VISION_MODEL_SHORT_SYSTEM_PROMPT`` of the released evaluation script
                    (``lmms_eval/qwen2_5_vl_awares.py`` in NimrodShabtay/AwaRes, with
                    ``INDS_NOT_WORDS = True``): the prompt the published figures were measured with
``released-readme`` ``SYSTEM_PROMPT`` of the quick start in that repository's README (a later wording,
                    with examples and no ``all`` entry)
``auto``            ``released`` for the released checkpoint (:data:`RELEASED_MODEL`, by name on a server
                    or as the last part of a local folder) under the ``awares-text`` protocol, else
                    ``awares``
==================  =================================================================================

The released prompts teach the text protocol (``GET_CROPS``) over the paper's crop set, whose map they
spell out as a Python dict; they are refused with any other protocol or crop set.
"""

from __future__ import annotations

from typing import Literal, get_args

from awares_agent.errors import ConfigError
from awares_agent.tools.crop_sets import CropSet, PaperCropSet
from awares_agent.tools.protocols import ToolProtocol

PromptPreset = Literal["auto", "awares", "released", "released-readme"]
PRESETS: tuple[PromptPreset, ...] = get_args(PromptPreset)

#: The released AwaRes checkpoint (Qwen2.5-VL-7B-Instruct fine-tuned with GRPO).
RELEASED_MODEL = "Kimhi/AWARES-Qwen2.5-VL-7B"

# The released script builds its prompt with an f-string around the dict CROPS_MAP, so the map reaches the
# model as Python's repr of that dict; these dicts and str() reproduce it exactly.
_RELEASED_CROPS_MAP = {
    "0": "top-left",
    "1": "top-right",
    "2": "bottom-left",
    "3": "bottom-right",
    "4": "center",
    "5": "top",
    "6": "bottom",
    "7": "left",
    "8": "right",
    "all": "all",
}
_README_CROPS_MAP = {k: v for k, v in _RELEASED_CROPS_MAP.items() if k != "all"}

#: ``VISION_MODEL_SHORT_SYSTEM_PROMPT`` of the released evaluation script, verbatim ("avalible", the space
#: before the comma and the missing one after it are the original's).
RELEASED_PROMPT = (
    "You are a vision-language model that analyzes images and answers questions about them. If the image "
    "resolution is too low for accurate analysis, respond with GET_CROPS [<crop_number>] to get a higher "
    "resolution version, the avalible <crop_numbers> and their corresponding area of the high resolution "
    f"image are {_RELEASED_CROPS_MAP} ,otherwise provide your answer."
)

#: ``SYSTEM_PROMPT`` of the quick start in the released repository's README, verbatim.
RELEASED_README_PROMPT = (
    "You are a vision-language model that analyzes images and answers questions about them. "
    "If the image resolution is too low for accurate analysis, respond with GET_CROPS: "
    "followed by a list of crop numbers in square brackets (e.g., GET_CROPS: ['3'] or "
    "GET_CROPS: ['0', '5']), where the available crop numbers and their corresponding "
    f"areas are {_README_CROPS_MAP}, otherwise provide your answer."
)


def is_released_model(model_name: str) -> bool:
    """Whether ``model_name`` names the released checkpoint: its hub id, or a path ending in its name."""
    name = model_name.strip().rstrip("/\\").replace("\\", "/").lower()
    return name == RELEASED_MODEL.lower() or name.rsplit("/", 1)[-1] == RELEASED_MODEL.split("/")[1].lower()


def resolve_preset(preset: PromptPreset, *, protocol: str, model_name: str) -> PromptPreset:
    """The preset ``auto`` stands for with this protocol and model; any other preset is returned as it is.

    Raises:
        ConfigError: an unknown preset.
    """
    if preset not in PRESETS:
        raise ConfigError(f"unknown system prompt {preset!r}: choose from {', '.join(PRESETS)}")
    if preset != "auto":
        return preset
    return "released" if protocol == "awares-text" and is_released_model(model_name) else "awares"


def released_prompt(
    preset: Literal["released", "released-readme"], *, protocol: str, crop_set: CropSet
) -> str:
    """The released prompt ``preset``, checked against the protocol and crop set it was written for.

    Raises:
        ConfigError: the protocol is not ``awares-text`` or the crop set is not the paper's.
    """
    if protocol != "awares-text":
        raise ConfigError(
            f"the {preset!r} system prompt teaches the released GET_CROPS text protocol: use "
            f"--protocol awares-text (got {protocol!r})"
        )
    if not isinstance(crop_set, PaperCropSet):
        raise ConfigError(
            f"the {preset!r} system prompt describes the paper's crop set: use --crop-set paper "
            f"(got {crop_set.key!r})"
        )
    return RELEASED_PROMPT if preset == "released" else RELEASED_README_PROMPT


def system_prompt_for(
    protocol: ToolProtocol, *, preset: PromptPreset = "auto", model_name: str = "", custom: str | None = None
) -> str:
    """The system prompt a query opens with.

    Args:
        protocol: the tool-call protocol in use (its own prompt is the ``awares`` preset).
        preset: a preset name (see the module docstring).
        model_name: the backend's model name (``auto`` picks the released prompt for the released model).
        custom: a prompt of your own; it replaces any preset (the crop map is then yours to describe).

    Raises:
        ConfigError: an unknown preset, or a released preset with another protocol or crop set.
    """
    if custom is not None:
        return custom
    chosen = resolve_preset(preset, protocol=protocol.key, model_name=model_name)
    if chosen == "awares":
        return protocol.system_prompt()
    return released_prompt(chosen, protocol=protocol.key, crop_set=protocol.crop_set)  # type: ignore[arg-type]
