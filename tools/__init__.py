"""The crop tool: crop sets, the typed ``get_crops`` request, tool-call protocols and system prompts."""

from awares_agent.tools.crop_sets import CropSet, GridCropSet, PaperCropSet, Region, crop_set
from awares_agent.tools.crop_tool import CROP_TOOL_NAME, CropRequest, CropTool
from awares_agent.tools.protocols import (
    AwaresTextProtocol,
    Decision,
    JsonProtocol,
    ToolProtocol,
    make_protocol,
)

__all__ = [
    "CROP_TOOL_NAME",
    "AwaresTextProtocol",
    "CropRequest",
    "CropSet",
    "CropTool",
    "Decision",
    "GridCropSet",
    "JsonProtocol",
    "PaperCropSet",
    "Region",
    "ToolProtocol",
    "crop_set",
    "make_protocol",
]
