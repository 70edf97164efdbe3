"""The typed crop tool: its argument model, its JSON schema, and validation against a crop set.

The model asks for crops by id or name. Validation turns the request into canonical region ids, or raises
:class:`~awares_agent.errors.CropRequestError` with a message written for the model, so the agent can show it
and let the model correct itself once.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from awares_agent.errors import CropRequestError
from awares_agent.messages import ToolSpec
from awares_agent.tools.crop_sets import CropSet
from awares_agent.untrusted import json_text_problem, json_value_problem

CROP_TOOL_NAME = "get_crops"


class CropRequest(BaseModel):
    """Arguments of the ``get_crops`` tool: the crops to fetch, by id or name."""

    model_config = ConfigDict(extra="forbid")

    crops: list[str] = Field(
        min_length=1,
        description='Ids (or names) of the high-resolution crops to fetch, e.g. ["0", "5"].',
    )

    @field_validator("crops", mode="before")
    @classmethod
    def _coerce(cls, value: Any) -> Any:
        # Models often send a bare id ("0"), numbers ([0, 5]) or a comma-separated string ("0, 5").
        if isinstance(value, str | int):
            value = [value]
        if isinstance(value, list) and len(value) == 1 and isinstance(value[0], str) and "," in value[0]:
            value = value[0].split(",")
        if isinstance(value, list):
            return [
                str(v).strip() if isinstance(v, str | int) and not isinstance(v, bool) else v for v in value
            ]
        return value


class CropTool:
    """The ``get_crops`` tool bound to a crop set.

    Args:
        crop_set: the regions the model may request.
    """

    name = CROP_TOOL_NAME

    def __init__(self, crop_set: CropSet) -> None:
        self.crop_set = crop_set
        self._spec: ToolSpec | None = None

    def spec(self) -> ToolSpec:
        """The tool's function spec, with its JSON schema generated from :class:`CropRequest`.

        The schema's ``items`` carry an ``enum`` of the set's ids so that constrained decoders can use it.
        Built once per tool (a copy is returned, so callers may change it freely).
        """
        if self._spec is None:
            self._spec = self._build_spec()
        return self._spec.model_copy(deep=True)

    def _build_spec(self) -> ToolSpec:
        schema = CropRequest.model_json_schema()
        schema["properties"]["crops"]["items"] = {"type": "string", "enum": list(self.crop_set.ids)}
        schema.pop("title", None)
        description = (
            "Fetch high-resolution crops of the original image when the low-resolution view is not enough "
            "to answer. Request only the regions you need. Regions:\n" + self.crop_set.describe()
        )
        return ToolSpec(name=self.name, description=description, parameters=schema)

    def validate(self, crops: Sequence[str | int], *, raw: str | None = None) -> list[str]:
        """Canonical region ids for ``crops``, in request order.

        Raises:
            CropRequestError: no crops, an unknown crop, or the same region twice.
        """
        if not crops:
            raise CropRequestError(
                "No crops were requested. List at least one crop id, or answer the question directly.",
                raw=raw,
            )
        seen: dict[str, str] = {}
        for token in crops:
            try:
                rid = self.crop_set.resolve(token)
            except KeyError:
                raise CropRequestError(
                    f"Unknown crop {str(token)!r}. Valid crops are: {self._menu()}.", raw=raw
                ) from None
            if rid in seen:
                raise CropRequestError(
                    f"Crop {rid!r} was requested twice (as {seen[rid]!r} and {str(token)!r}). "
                    "Request each crop once.",
                    raw=raw,
                )
            seen[rid] = str(token)
        return list(seen)

    def parse_arguments(self, arguments: str | dict[str, Any]) -> list[str]:
        """Validate the JSON arguments of a function call and return canonical region ids.

        Raises:
            CropRequestError: the arguments are not JSON, do not fit :class:`CropRequest`, or name bad crops.
        """
        # Bounded before anything parses or re-serialises it: deep nesting would otherwise surface as a
        # RecursionError from inside json.
        problem = (
            json_text_problem(arguments) if isinstance(arguments, str) else json_value_problem(arguments)
        )
        if problem is not None:
            raise CropRequestError(
                f"The arguments of {self.name} are too large to read: {problem}. "
                f'Call it as {self.name}({{"crops": ["0", "5"]}}).',
                raw=arguments if isinstance(arguments, str) else None,
            )
        raw = arguments if isinstance(arguments, str) else json.dumps(arguments)
        if isinstance(arguments, str):
            try:
                arguments = json.loads(arguments) if arguments.strip() else {}
            except (ValueError, RecursionError) as exc:  # JSONDecodeError, over-long ints, deep nesting
                reason = exc.msg if isinstance(exc, json.JSONDecodeError) else type(exc).__name__
                raise CropRequestError(
                    f"The arguments of {self.name} are not valid JSON ({reason}). "
                    f'Call it as {self.name}({{"crops": ["0", "5"]}}).',
                    raw=raw,
                ) from None
        if isinstance(arguments, list):
            arguments = {"crops": arguments}
        if not isinstance(arguments, dict):
            raise CropRequestError(
                f'The arguments of {self.name} must be an object like {{"crops": ["0", "5"]}}.', raw=raw
            )
        try:
            request = CropRequest.model_validate(arguments)
        except ValidationError as exc:
            if any(e["type"] == "too_short" for e in exc.errors()):
                return self.validate([], raw=raw)
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc'])) or 'arguments'}: {e['msg']}" for e in exc.errors()
            )
            raise CropRequestError(
                f"Invalid arguments for {self.name} ({problems}). "
                f'Call it as {self.name}({{"crops": ["0", "5"]}}).',
                raw=raw,
            ) from None
        return self.validate(request.crops, raw=raw)

    def _menu(self) -> str:
        return ", ".join(
            f"{rid} ({name})" if rid != name else rid
            for rid, name in zip(self.crop_set.ids, self.crop_set.names, strict=True)
        )
