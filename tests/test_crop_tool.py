"""Tests for awares_agent.tools.crop_tool: the ``get_crops`` spec and schema, argument parsing and
validation."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from awares_agent.errors import AwaresError, CropRequestError
from awares_agent.messages import ToolSpec
from awares_agent.tools.crop_sets import GridCropSet, PaperCropSet
from awares_agent.tools.crop_tool import CROP_TOOL_NAME, CropRequest, CropTool

PAPER = PaperCropSet()
TOOL = CropTool(PAPER)
PAPER_IDS = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "all"]

# JSON Schema keywords the spec may use, and the JSON types, for a structural check of the schema
# (no validator library is a dependency).
SCHEMA_KEYWORDS = {
    "type",
    "properties",
    "required",
    "items",
    "enum",
    "minItems",
    "maxItems",
    "additionalProperties",
    "description",
    "title",
    "default",
    "examples",
}
JSON_TYPES = {"object", "array", "string", "number", "integer", "boolean", "null"}


def check_schema_shape(schema: Any, path: str = "$") -> None:
    assert isinstance(schema, dict), path
    unknown = set(schema) - SCHEMA_KEYWORDS
    assert not unknown, f"{path}: unexpected keywords {unknown}"
    if "type" in schema:
        assert schema["type"] in JSON_TYPES, path
    if "properties" in schema:
        assert schema.get("type") == "object", path
        for name, sub in schema["properties"].items():
            check_schema_shape(sub, f"{path}.{name}")
    if "required" in schema:
        assert isinstance(schema["required"], list) and set(schema["required"]) <= set(schema["properties"])
    if "items" in schema:
        assert schema.get("type") == "array", path
        check_schema_shape(schema["items"], f"{path}[]")
    if "enum" in schema:
        assert isinstance(schema["enum"], list) and len(set(schema["enum"])) == len(schema["enum"]) > 0
        assert all(isinstance(v, str) for v in schema["enum"]) and schema.get("type") == "string"
    if "minItems" in schema:
        assert isinstance(schema["minItems"], int) and schema["minItems"] >= 0
    if "additionalProperties" in schema:
        assert isinstance(schema["additionalProperties"], bool | dict)


# --- spec ---------------------------------------------------------------------------------------------


def test_spec_shape() -> None:
    spec = TOOL.spec()
    assert isinstance(spec, ToolSpec)
    assert spec.name == CROP_TOOL_NAME == TOOL.name == "get_crops"
    params = spec.parameters
    check_schema_shape(params)
    json.loads(json.dumps(params))  # JSON-serializable
    assert params["type"] == "object"
    assert params["required"] == ["crops"]
    assert params["additionalProperties"] is False
    assert "title" not in params
    crops = params["properties"]["crops"]
    assert crops["type"] == "array"
    assert crops["minItems"] == 1
    assert crops["items"] == {"type": "string", "enum": PAPER_IDS}
    assert crops["items"]["enum"] == list(PAPER.ids)


def test_spec_is_generated_from_the_pydantic_model() -> None:
    params = TOOL.spec().parameters
    model = CropRequest.model_json_schema()
    assert set(params["properties"]) == set(CropRequest.model_fields) == {"crops"}
    assert params["properties"]["crops"]["description"] == CropRequest.model_fields["crops"].description
    assert params["description"] == model["description"]
    # only ``items`` (the enum) and the title differ from the model's own schema
    strip = {k: v for k, v in params["properties"]["crops"].items() if k != "items"}
    assert strip == {k: v for k, v in model["properties"]["crops"].items() if k != "items"}
    # building the spec does not leak the enum into the model's schema
    assert CropRequest.model_json_schema()["properties"]["crops"]["items"] == {"type": "string"}


def test_spec_description_lists_every_region() -> None:
    description = TOOL.spec().description
    for rid, name in zip(PAPER.ids, PAPER.names, strict=True):
        assert f"{rid}: {name}" in description


def test_spec_per_crop_set_and_openai_format() -> None:
    grid = CropTool(GridCropSet(2, 2)).spec()
    assert grid.parameters["properties"]["crops"]["items"]["enum"] == ["0", "1", "2", "3", "all"]
    assert "r2c2" in grid.description
    # the paper spec is unaffected by building another
    assert TOOL.spec().parameters["properties"]["crops"]["items"]["enum"] == PAPER_IDS
    openai = TOOL.spec().to_openai()
    assert openai["type"] == "function"
    assert openai["function"]["name"] == "get_crops"
    assert openai["function"]["parameters"] == TOOL.spec().parameters


# --- parse_arguments: good ----------------------------------------------------------------------------

GOOD: list[tuple[str | dict[str, Any] | list[Any], list[str]]] = [
    ('{"crops": ["0","5"]}', ["0", "5"]),
    ('{"crops": [0, 5]}', ["0", "5"]),
    ('{"crops": "0"}', ["0"]),
    ('{"crops": 3}', ["3"]),
    ('{"crops": "0, 5"}', ["0", "5"]),
    ('{"crops": ["0,5"]}', ["0", "5"]),
    ('{"crops": ["top-left","center"]}', ["0", "4"]),
    ('{"crops": ["Top Left", "bottom_right", "ALL"]}', ["0", "3", "all"]),
    ('{"crops": [" 8 ", "centre"]}', ["8", "4"]),
    ('{"crops": ["5", "0"]}', ["5", "0"]),  # request order is kept
    ('  {"crops": ["all"]}  ', ["all"]),
    ('["0", "5"]', ["0", "5"]),
    ({"crops": ["0", "5"]}, ["0", "5"]),
    ({"crops": [1, "right"]}, ["1", "8"]),
    (["0", "top"], ["0", "5"]),
    ([2], ["2"]),
]


@pytest.mark.parametrize(("arguments", "expected"), GOOD, ids=[repr(a) for a, _ in GOOD])
def test_parse_arguments(arguments: str | dict[str, Any] | list[Any], expected: list[str]) -> None:
    assert TOOL.parse_arguments(arguments) == expected  # type: ignore[arg-type]


# --- parse_arguments: errors --------------------------------------------------------------------------

# (arguments, substrings the message for the model must contain)
EXAMPLE_CALL = 'get_crops({"crops": ["0", "5"]})'
BAD: list[tuple[str | dict[str, Any], list[str]]] = [
    ('{"crops": []}', ["No crops were requested", "crop id"]),
    ("[]", ["No crops were requested"]),
    ({"crops": []}, ["No crops were requested"]),
    (
        '{"crops": ["9"]}',
        [
            "Unknown crop '9'",
            "Valid crops are",
            *(f"{i} ({n})" for i, n in zip(PAPER.ids[:-1], PAPER.names[:-1], strict=True)),
            "all",
        ],
    ),
    ('{"crops": ["0", "top-left"]}', ["'0'", "twice", "'top-left'"]),
    ('{"crops": ["5", "5"]}', ["'5'", "twice"]),
    ('{"crops": ["0", 0]}', ["twice"]),
    ('{"crops": "0, 0"}', ["twice"]),
    ("{}", ["crops", "Field required", EXAMPLE_CALL]),
    ("", ["crops", "Field required", EXAMPLE_CALL]),
    ("   ", ["crops", "Field required", EXAMPLE_CALL]),
    ("not json", ["not valid JSON", EXAMPLE_CALL]),
    ('{"crops": ["0"', ["not valid JSON", EXAMPLE_CALL]),
    ('{"crops": [true]}', ["crops.0", "valid string", EXAMPLE_CALL]),
    ('{"crops": true}', ["crops", EXAMPLE_CALL]),
    ('{"crops": [0.5]}', ["crops.0", EXAMPLE_CALL]),
    ('{"crops": [null]}', ["crops.0", EXAMPLE_CALL]),
    ('{"crops": [["0"]]}', ["crops.0", EXAMPLE_CALL]),
    ('{"crops": {"0": 1}}', ["crops", EXAMPLE_CALL]),
    ('{"crops": ["0"], "extra": 1}', ["extra", EXAMPLE_CALL]),
    ('{"crop": ["0"]}', ["crop", EXAMPLE_CALL]),
    ("null", ["must be an object", '{"crops": ["0", "5"]}']),
    ('"0"', ["must be an object", '{"crops": ["0", "5"]}']),
    ("5", ["must be an object"]),
    ('{"crops": [""]}', ["Unknown crop ''", "Valid crops are"]),
    ('{"crops": ["-1"]}', ["Unknown crop '-1'"]),
    # pathological JSON must not escape as ValueError / RecursionError
    ('{"crops": [' + "1" * 5000 + "]}", ["not valid JSON"]),
    ("[" * 50_000 + "]" * 50_000, ["too large to read"]),
]


@pytest.mark.parametrize(("arguments", "needles"), BAD, ids=[repr(a)[:40] for a, _ in BAD])
def test_parse_arguments_errors(arguments: str | dict[str, Any], needles: list[str]) -> None:
    with pytest.raises(CropRequestError) as info:
        TOOL.parse_arguments(arguments)
    message = str(info.value)
    assert isinstance(info.value, AwaresError)
    for needle in needles:
        assert needle in message, (needle, message)
    # the raw arguments are kept for the record
    assert info.value.raw == (arguments if isinstance(arguments, str) else json.dumps(arguments))


# --- validate -------------------------------------------------------------------------------------------


def test_validate() -> None:
    assert TOOL.validate(["0", 5, "Bottom Left", "'all'"]) == ["0", "5", "2", "all"]
    with pytest.raises(CropRequestError, match="No crops"):
        TOOL.validate([])
    with pytest.raises(CropRequestError, match="twice") as info:
        TOOL.validate(["center", "4"], raw="r")
    assert info.value.raw == "r"
    with pytest.raises(CropRequestError, match=r"Unknown crop 'r1c1'\. Valid crops are: 0 \(top-left\),"):
        TOOL.validate(["r1c1"])


def test_grid_tool() -> None:
    tool = CropTool(GridCropSet(2, 3))
    assert tool.parse_arguments('{"crops": ["r1c1", 5, "ALL"]}') == ["0", "5", "all"]
    with pytest.raises(CropRequestError, match=r"Valid crops are: 0 \(r1c1\), .*5 \(r2c3\), all\."):
        tool.parse_arguments('{"crops": ["6"]}')


# --- fuzzing ----------------------------------------------------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**6), 10**6)
    | st.floats(allow_nan=False)
    | st.text(max_size=12)
    | st.sampled_from([*PAPER_IDS, *PAPER.names, "Top Left", "0, 5", "0,0", "centre", " 3 "]),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=3)
    ),
    max_leaves=10,
)
arguments = st.one_of(
    json_values,
    st.builds(lambda v: {"crops": v}, json_values),
    st.builds(
        lambda v, extra: {"crops": v, **extra}, json_values, st.dictionaries(st.text(max_size=5), json_values)
    ),
)


def check_result(result: list[str]) -> None:
    assert result and len(set(result)) == len(result)
    assert set(result) <= set(PAPER.ids)


@settings(max_examples=300, deadline=None)
@given(value=arguments, as_text=st.booleans())
def test_parse_arguments_fuzz_json_values(value: Any, as_text: bool) -> None:
    """Any JSON value either parses to distinct canonical ids or raises CropRequestError with a message."""
    try:
        result = TOOL.parse_arguments(json.dumps(value) if as_text else value)
    except CropRequestError as exc:
        assert str(exc).strip()
        return
    check_result(result)


@settings(max_examples=300, deadline=None)
@given(
    text=st.text(max_size=60)
    | st.lists(
        st.sampled_from(['{"crops":', "[", "]", '"0"', ",", "5", "}", "1e999", "-", '"']), max_size=12
    ).map("".join)
)
def test_parse_arguments_fuzz_text(text: str) -> None:
    try:
        result = TOOL.parse_arguments(text)
    except CropRequestError as exc:
        assert str(exc).strip() and exc.raw == text
        return
    check_result(result)
