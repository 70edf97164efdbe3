"""Tests for awares_agent.tools.protocols: parsing model turns into Decisions, and the messages that answer
them.

Both protocols are checked on tables of good and bad model outputs, then fuzzed: ``parse`` must never raise
on model output and must always return a well-formed :class:`Decision`.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from awares_agent.errors import ConfigError
from awares_agent.messages import ChatMessage, ChatReply, ImagePart, TextPart, ToolCall
from awares_agent.tools.crop_sets import CropSet, GridCropSet, PaperCropSet
from awares_agent.tools.crop_tool import CropTool
from awares_agent.tools.protocols import (
    PROTOCOLS,
    AwaresTextProtocol,
    Decision,
    JsonProtocol,
    ToolProtocol,
    make_protocol,
)

PAPER = PaperCropSet()
GRID = GridCropSet(3, 3)
TEXT = AwaresTextProtocol(PAPER)
JSON = JsonProtocol(PAPER)
FUZZ = settings(max_examples=300, deadline=None)


def call(arguments: str | dict[str, Any], *, id: str = "call_1", name: str = "get_crops") -> ToolCall:
    args = arguments if isinstance(arguments, str) else json.dumps(arguments)
    return ToolCall(id=id, name=name, arguments=args)


def hermes(payload: str | dict[str, Any], *, close: bool = True) -> str:
    body = payload if isinstance(payload, str) else json.dumps(payload)
    return f"<tool_call>\n{body}\n" + ("</tool_call>" if close else "")


def image(n: int) -> ImagePart:
    return ImagePart(image_id=f"img{n}", width=100 + n, height=100, kind="crop", label=f"crop {n}")


def check_decision(decision: Decision, crop_set: CropSet) -> None:
    """The invariants every Decision satisfies, whatever the model wrote."""
    assert isinstance(decision, Decision)
    assert decision.kind in ("answer", "crop", "invalid")
    if decision.kind == "crop":
        assert decision.crops, decision
        assert len(set(decision.crops)) == len(decision.crops), decision
        assert set(decision.crops) <= set(crop_set.ids), decision
        assert decision.error is None and decision.answer is None
    else:
        assert decision.crops == []
    if decision.kind == "invalid":
        assert isinstance(decision.error, str) and decision.error.strip(), decision
        assert decision.error_kind in ("empty_reply", "invalid_tool_call", "unknown_tool"), decision
        assert decision.answer is None
    if decision.kind == "answer":
        assert isinstance(decision.answer, str) and decision.answer, decision
        assert decision.answer == decision.answer.strip()
        assert decision.error is None and decision.call_id is None
    # the graph stores decisions as JSON dumps
    assert Decision.model_validate(json.loads(json.dumps(decision.model_dump(mode="json")))) == decision


def answered(messages: list[ChatMessage]) -> list[str]:
    return [m.tool_call_id for m in messages if m.role == "tool" and m.tool_call_id is not None]


# --- answers ------------------------------------------------------------------------------------------

ANSWERS = [
    ("The answer is 42.", "The answer is 42."),
    ("  B \n", "B"),
    ("Paris", "Paris"),
    ("The sign says: GET OUT", "The sign says: GET OUT"),
    # natural language that merely mentions getting crops is an answer, not a malformed call
    ("You can get crops at the farmers' market.", "You can get crops at the farmers' market."),
    ("The banner reads GET CROPS HERE", "The banner reads GET CROPS HERE"),
    ("FORGET_CROPS: 0", "FORGET_CROPS: 0"),
    ("[0, 5] are the winning numbers", "[0, 5] are the winning numbers"),
    ("émoji 🙂 answer", "émoji 🙂 answer"),
]


@pytest.mark.parametrize("protocol", [TEXT, JSON], ids=["awares-text", "json"])
@pytest.mark.parametrize(("text", "answer"), ANSWERS, ids=[a for a, _ in ANSWERS])
def test_direct_answers(protocol: ToolProtocol, text: str, answer: str) -> None:
    decision = protocol.parse(ChatReply(text=text))
    assert decision == Decision(kind="answer", answer=answer, raw=text)
    check_decision(decision, PAPER)


@pytest.mark.parametrize("protocol", [TEXT, JSON], ids=["awares-text", "json"])
@pytest.mark.parametrize("text", ["", "   ", "\n\t\n"])
def test_empty_reply_is_invalid(protocol: ToolProtocol, text: str) -> None:
    decision = protocol.parse(ChatReply(text=text))
    assert decision.kind == "invalid" and decision.error_kind == "empty_reply"
    assert decision.error and decision.raw == text
    check_decision(decision, PAPER)


# --- awares-text: GET_CROPS ---------------------------------------------------------------------------

GET_CROPS_OK: list[tuple[str, list[str]]] = [
    ("GET_CROPS: ['0', '5']", ["0", "5"]),
    ("GET_CROPS:['0','5']", ["0", "5"]),
    ("GET_CROPS: [0, 5]", ["0", "5"]),
    ("GET_CROPS: 0, 5", ["0", "5"]),
    ("GET_CROPS: 0 5", ["0", "5"]),
    ("GET_CROPS:0,5", ["0", "5"]),
    ('GET_CROPS: ["top-left", "center"]', ["0", "4"]),
    ("get_crops: ['Top Left']", ["0"]),
    ("GET_CROPS: top left", ["0"]),
    ("GET_CROPS: top left, bottom right", ["0", "3"]),
    ("GET_CROPS: ['top_left', 'BOTTOM RIGHT']", ["0", "3"]),
    ("GET_CROPS: ['all']", ["all"]),
    ("Sure. GET_CROPS: ['3']\n", ["3"]),
    ("GET_CROPS: ['0'", ["0"]),  # unclosed bracket
    ("GET_CROPS: ['5', '0']", ["5", "0"]),  # request order is kept
    ("GET_CROPS: ['0', '1', '2', '3', '4', '5', '6', '7', '8', 'all']", [*PAPER.ids]),
    ("GET_CROPS: (0, 5)", ["0", "5"]),
    ("GET_CROPS = ['8']", ["8"]),
    ("GET_CROPS: [`1`, `2`]", ["1", "2"]),
    ("GET_CROPS: 0, 5.", ["0", "5"]),
    ("GET_CROPS: ['centre']", ["4"]),
    ("GET CROPS: ['1']", ["1"]),
    ("GET_CROPS\n['2']", ["2"]),
    ("I need to read the small print.\nGET_CROPS: ['6', '8']\nThen I will answer.", ["6", "8"]),
    ("**GET_CROPS**: ['7']", ["7"]),
    # mixed or unbalanced quotes keep every crop (they used to drop the unquoted ones)
    ("GET_CROPS: ['0', 5]", ["0", "5"]),
    ("GET_CROPS: '0', '5", ["0", "5"]),
]


@pytest.mark.parametrize(("text", "crops"), GET_CROPS_OK, ids=[t for t, _ in GET_CROPS_OK])
def test_get_crops(text: str, crops: list[str]) -> None:
    decision = TEXT.parse(ChatReply(text=text))
    assert decision == Decision(kind="crop", crops=crops, raw=text)
    check_decision(decision, PAPER)


# (text, error_kind, substrings of the error)
GET_CROPS_BAD: list[tuple[str, str, list[str]]] = [
    ("GET_CROPS: []", "invalid_tool_call", ["No crops"]),
    ("GET_CROPS:", "invalid_tool_call", ["No crops"]),
    ("GET_CROPS: ''", "invalid_tool_call", ["Unknown crop ''"]),
    ("GET_CROPS: ['9']", "invalid_tool_call", ["Unknown crop '9'", "Valid crops are", "0 (top-left)", "all"]),
    ("GET_CROPS: ['-1']", "invalid_tool_call", ["Unknown crop '-1'"]),
    ("GET_CROPS: ['0', '0']", "invalid_tool_call", ["'0'", "twice"]),
    ("GET_CROPS: ['0', 'top-left']", "invalid_tool_call", ["twice"]),
    ("GET_CROPS: 4 center", "invalid_tool_call", ["twice"]),
    ("GET_CROPS: [{'0'}]", "invalid_tool_call", ["Could not read", "GET_CROPS: ['0', '5']"]),
    ("GET_CROPS: [<0>]", "invalid_tool_call", ["Could not read"]),
    ("GET_CROPS: ['top middle']", "invalid_tool_call", ["Unknown crop 'top middle'"]),
]


@pytest.mark.parametrize(("text", "kind", "needles"), GET_CROPS_BAD, ids=[t for t, _, _ in GET_CROPS_BAD])
def test_get_crops_invalid(text: str, kind: str, needles: list[str]) -> None:
    decision = TEXT.parse(ChatReply(text=text))
    assert decision.kind == "invalid" and decision.error_kind == kind and decision.raw == text
    assert decision.call_id is None and decision.crops == []
    for needle in needles:
        assert needle in (decision.error or ""), (needle, decision.error)
    check_decision(decision, PAPER)


def test_awares_text_ignores_structured_tool_calls() -> None:
    # the protocol offers no tools: a structured call alone is an empty text reply
    decision = TEXT.parse(ChatReply(text="", tool_calls=[call({"crops": ["0"]})]))
    assert decision.kind == "invalid" and decision.error_kind == "empty_reply"


def test_awares_text_grid() -> None:
    protocol = AwaresTextProtocol(GRID)
    decision = protocol.parse(ChatReply(text="GET_CROPS: ['r1c1', 'R3C2']"))
    assert decision.crops == ["0", "7"]
    assert protocol.parse(ChatReply(text="GET_CROPS: ['top-left']")).kind == "invalid"


# --- json: hermes text --------------------------------------------------------------------------------

GOOD_CALL = {"name": "get_crops", "arguments": {"crops": ["0", "5"]}}

HERMES_OK: list[tuple[str, list[str]]] = [
    (hermes(GOOD_CALL), ["0", "5"]),
    ("<tool_call>" + json.dumps(GOOD_CALL) + "</tool_call>", ["0", "5"]),
    ("Let me zoom in.\n" + hermes(GOOD_CALL), ["0", "5"]),
    (hermes(GOOD_CALL, close=False), ["0", "5"]),  # missing closing tag
    (hermes({"name": "get_crops", "parameters": {"crops": ["top-left"]}}), ["0"]),
    (
        hermes({"name": "get_crops", "arguments": json.dumps({"crops": ["8"]})}),
        ["8"],
    ),  # arguments as a string
    (hermes({"name": "get_crops", "arguments": {"crops": "0, 5"}}), ["0", "5"]),
    (hermes({"name": "get_crops", "arguments": ["all"]}), ["all"]),
    # several blocks in one turn are merged, as several structured calls are
    (
        hermes({"name": "get_crops", "arguments": {"crops": ["0"]}})
        + hermes(GOOD_CALL | {"arguments": {"crops": ["5"]}}),
        ["0", "5"],
    ),
]


@pytest.mark.parametrize(("text", "crops"), HERMES_OK, ids=range(len(HERMES_OK)))
def test_hermes(text: str, crops: list[str]) -> None:
    decision = JSON.parse(ChatReply(text=text))
    assert decision == Decision(kind="crop", crops=crops, raw=text)
    check_decision(decision, PAPER)


HERMES_BAD: list[tuple[str, str, list[str]]] = [
    (
        '<tool_call>{"name": "get_crops", "arguments": {"crops": ["0"]</tool_call>',
        "invalid_tool_call",
        ["not valid JSON", "<tool_call>"],
    ),
    ("<tool_call></tool_call>", "invalid_tool_call", ["not valid JSON"]),
    ("<tool_call>", "invalid_tool_call", ["not valid JSON"]),
    (hermes({"name": "zoom", "arguments": {"crops": ["0"]}}), "unknown_tool", ["'zoom'", "get_crops"]),
    (hermes({"arguments": {"crops": ["0"]}}), "unknown_tool", ["None", "get_crops"]),
    (hermes('["get_crops", {"crops": ["0"]}]'), "unknown_tool", ["get_crops"]),
    (hermes("null"), "unknown_tool", ["get_crops"]),
    (hermes({"name": "get_crops"}), "invalid_tool_call", ["Field required"]),
    (hermes({"name": "get_crops", "arguments": {}}), "invalid_tool_call", ["Field required"]),
    (hermes({"name": "get_crops", "arguments": {"crops": []}}), "invalid_tool_call", ["No crops"]),
    (hermes({"name": "get_crops", "arguments": {"crops": ["9"]}}), "invalid_tool_call", ["Unknown crop '9'"]),
    (
        hermes({"name": "get_crops", "arguments": {"crops": ["0", "top-left"]}}),
        "invalid_tool_call",
        ["twice"],
    ),
    (hermes({"name": "get_crops", "arguments": "not json"}), "invalid_tool_call", ["not valid JSON"]),
    (hermes({"name": "get_crops", "arguments": 5}), "invalid_tool_call", ["must be an object"]),
    (hermes(GOOD_CALL) + hermes(GOOD_CALL), "invalid_tool_call", ["twice"]),  # duplicates across blocks
    (hermes(GOOD_CALL) + hermes({"name": "zoom", "arguments": {}}), "unknown_tool", ["'zoom'"]),
    (
        hermes('{"name": "get_crops", "arguments": {"crops": [' + "1" * 5000 + "]}}"),
        "invalid_tool_call",
        ["not valid JSON"],
    ),
    ("<tool_call>" + "[" * 50_000, "invalid_tool_call", ["too large to read"]),
]


@pytest.mark.parametrize(("text", "kind", "needles"), HERMES_BAD, ids=range(len(HERMES_BAD)))
def test_hermes_invalid(text: str, kind: str, needles: list[str]) -> None:
    decision = JSON.parse(ChatReply(text=text))
    assert decision.kind == "invalid" and decision.error_kind == kind
    assert decision.call_id is None and decision.raw == text
    for needle in needles:
        assert needle in (decision.error or ""), (needle, decision.error)
    check_decision(decision, PAPER)


# --- json: structured tool_calls ----------------------------------------------------------------------


def test_structured_call() -> None:
    reply = ChatReply(text="", tool_calls=[call('{"crops": ["0", "5"]}', id="call_abc")])
    decision = JSON.parse(reply)
    assert decision.kind == "crop" and decision.crops == ["0", "5"]
    assert decision.call_id == "call_abc" and decision.call_ids == ["call_abc"]
    check_decision(decision, PAPER)


def test_structured_call_wins_over_text() -> None:
    reply = ChatReply(text="The answer is 3. GET_CROPS: ['1']", tool_calls=[call({"crops": ["top"]})])
    decision = JSON.parse(reply)
    assert decision.kind == "crop" and decision.crops == ["5"] and decision.raw == reply.text


STRUCTURED_BAD: list[tuple[list[ToolCall], str, list[str]]] = [
    ([call('{"crops": ["0"')], "invalid_tool_call", ["not valid JSON"]),
    ([call("")], "invalid_tool_call", ["Field required"]),
    ([call({"crops": []})], "invalid_tool_call", ["No crops"]),
    ([call({"crops": ["9"]})], "invalid_tool_call", ["Unknown crop '9'", "Valid crops are"]),
    ([call({"crops": ["0"], "zoom": 2})], "invalid_tool_call", ["zoom"]),
    ([call({"crops": ["0"]}, name="zoom")], "unknown_tool", ["'zoom'", "get_crops"]),
    ([call({"crops": ["0"]}), call({"crops": ["5"]}, id="call_2", name="crop")], "unknown_tool", ["'crop'"]),
    (
        [call({"crops": ["0", "5"]}), call({"crops": ["top"]}, id="call_2")],
        "invalid_tool_call",
        ["'5'", "twice"],
    ),
    ([call({"crops": ["0"]}), call("oops", id="call_2")], "invalid_tool_call", ["not valid JSON"]),
]


@pytest.mark.parametrize(("calls", "kind", "needles"), STRUCTURED_BAD, ids=range(len(STRUCTURED_BAD)))
def test_structured_invalid(calls: list[ToolCall], kind: str, needles: list[str]) -> None:
    decision = JSON.parse(ChatReply(text="", tool_calls=calls))
    assert decision.kind == "invalid" and decision.error_kind == kind
    assert decision.call_id == calls[0].id and decision.call_ids == [c.id for c in calls]
    for needle in needles:
        assert needle in (decision.error or ""), (needle, decision.error)
    check_decision(decision, PAPER)
    # feedback answers every call of the turn, each in a tool message
    feedback = JSON.feedback_messages(decision)
    assert [m.role for m in feedback] == ["tool"] * len(calls)
    assert answered(feedback) == [c.id for c in calls]
    assert all(decision.error in m.text for m in feedback)


def test_two_structured_calls_are_merged_and_both_answered() -> None:
    calls = [call({"crops": ["0"]}, id="a"), call({"crops": ["bottom", "all"]}, id="b")]
    reply = ChatReply(text="", tool_calls=calls)
    decision = JSON.parse(reply)
    assert decision.kind == "crop" and decision.crops == ["0", "6", "all"]
    assert decision.call_id == "a" and decision.call_ids == ["a", "b"]
    check_decision(decision, PAPER)
    history = [JSON.assistant_message(reply), *JSON.crops_messages(decision, [("0", "top-left", image(0))])]
    assert [m.role for m in history] == ["assistant", "tool", "tool", "user"]
    assert answered(history) == ["a", "b"]
    refusal = JSON.refusal_messages(decision, "No more crops.")
    assert [m.role for m in refusal] == ["tool", "tool", "user"] and answered(refusal) == ["a", "b"]


# --- message builders ---------------------------------------------------------------------------------

CROPS = [("0", "top-left", image(0)), ("5", "top", image(5))]


def test_json_crops_messages_with_call_id() -> None:
    decision = Decision(kind="crop", crops=["0", "5"], call_id="call_9")
    ack, user = JSON.crops_messages(decision, CROPS)
    assert ack.role == "tool" and ack.tool_call_id == "call_9"
    assert ack.images == [] and "0 (top-left)" in ack.text and "5 (top)" in ack.text
    assert user.role == "user" and user.tool_call_id is None
    assert user.content == [
        TextPart(text="Crop 0 (top-left):"),
        image(0),
        TextPart(text="Crop 5 (top):"),
        image(5),
    ]


def test_json_crops_messages_without_call_id_and_with_note() -> None:
    decision = Decision(kind="crop", crops=["0", "5"])
    (user,) = JSON.crops_messages(decision, CROPS, note="Crop 8 was withheld.")
    assert user.role == "user"
    assert user.content[-1] == TextPart(text="Crop 8 was withheld.")
    assert user.images == [image(0), image(5)]


def test_awares_text_crops_messages_are_images_only() -> None:
    decision = TEXT.parse(ChatReply(text="GET_CROPS: ['0', '5']"))
    (user,) = TEXT.crops_messages(decision, CROPS)
    assert user.role == "user" and user.content == [image(0), image(5)]
    (user,) = TEXT.crops_messages(decision, CROPS, note="budget note")
    assert user.content == [image(0), image(5), TextPart(text="budget note")]


def test_feedback_messages() -> None:
    decision = TEXT.parse(ChatReply(text="GET_CROPS: ['9']"))
    (msg,) = TEXT.feedback_messages(decision)
    assert msg.role == "user" and msg.text.startswith(decision.error or "?")
    assert "Either request valid crops or answer the question." in msg.text
    decision = JSON.parse(ChatReply(tool_calls=[call("{}", id="c1")]))
    (msg,) = JSON.feedback_messages(decision)
    assert msg.role == "tool" and msg.tool_call_id == "c1" and (decision.error or "?") in msg.text


def test_refusal_messages_and_final_instruction() -> None:
    final = JSON.final_instruction()
    assert final.role == "user" and "Do not request crops" in final.text
    (msg,) = TEXT.refusal_messages(Decision(kind="crop", crops=["0"]), "Budget spent.")
    assert msg.role == "user" and msg.text == f"Budget spent. {final.text}"
    ack, msg = JSON.refusal_messages(Decision(kind="crop", crops=["0"], call_id="c7"), "Budget spent.")
    assert (ack.role, ack.tool_call_id, ack.text) == ("tool", "c7", "Budget spent.")
    assert msg.role == "user" and msg.text == f"Budget spent. {final.text}"


def test_assistant_message() -> None:
    reply = ChatReply(text="GET_CROPS: ['0']")
    assert TEXT.assistant_message(reply) == ChatMessage.text_message("assistant", "GET_CROPS: ['0']")
    calls = [call({"crops": ["0"]})]
    msg = JSON.assistant_message(ChatReply(text="", tool_calls=calls))
    assert msg.role == "assistant" and msg.content == [] and msg.tool_calls == calls


@pytest.mark.parametrize("cls", [JsonProtocol, AwaresTextProtocol])
@pytest.mark.parametrize("crop_set", [PAPER, GRID], ids=["paper", "grid"])
def test_system_prompts_list_every_region(cls: type[ToolProtocol], crop_set: CropSet) -> None:
    prompt = cls(crop_set).system_prompt()
    for rid, name in zip(crop_set.ids, crop_set.names, strict=True):
        assert f"- {rid}: {name}" in prompt
    assert ("GET_CROPS: [" if cls is AwaresTextProtocol else "get_crops") in prompt


def test_tools_and_make_protocol() -> None:
    assert JSON.tools() == [CropTool(PAPER).spec()]
    assert TEXT.tools() is None
    assert set(PROTOCOLS) == {"json", "awares-text"}
    json_protocol = make_protocol("json", GRID)
    assert isinstance(json_protocol, JsonProtocol) and json_protocol.crop_set is GRID
    assert isinstance(make_protocol("awares-text", PAPER), AwaresTextProtocol)
    for bad in ("hermes", "JSON", "", "text"):
        with pytest.raises(ConfigError, match="unknown protocol"):
            make_protocol(bad, PAPER)


# --- fuzzing: parse never raises and always returns a well-formed Decision -----------------------------

FRAGMENTS = [
    "GET_CROPS",
    "get_crops",
    "GET CROPS",
    "get crops",
    ":",
    "=",
    " ",
    "\n",
    "[",
    "]",
    "(",
    ")",
    "{",
    "}",
    "'",
    '"',
    "`",
    ",",
    ".",
    "0",
    "5",
    "9",
    "-1",
    "all",
    "top left",
    "Top-Left",
    "centre",
    "<tool_call>",
    "</tool_call>",
    '"name"',
    '"get_crops"',
    '"arguments"',
    '"parameters"',
    '"crops"',
    "null",
    "true",
    "1e999",
    "é",
    "🙂",
    "\u2028",
    "\x00",
]
model_text = st.one_of(
    st.text(max_size=80),
    st.lists(st.sampled_from(FRAGMENTS) | st.text(max_size=4), max_size=25).map("".join),
)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=10)
    | st.sampled_from([*PAPER.ids, *PAPER.names, "Top Left", "0, 5", "r1c1"]),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=3)
    ),
    max_leaves=12,
)
argument_text = st.one_of(
    st.text(max_size=40),
    json_values.map(json.dumps),
    json_values.map(lambda v: json.dumps({"crops": v})),
    st.lists(st.sampled_from(FRAGMENTS), max_size=15).map("".join),
)
tool_calls = st.lists(
    st.builds(
        ToolCall,
        id=st.text(max_size=8),
        name=st.sampled_from(["get_crops", "get_crops", "zoom", ""]) | st.text(max_size=10),
        arguments=argument_text,
    ),
    max_size=3,
)
protocols = st.sampled_from([TEXT, JSON, AwaresTextProtocol(GRID), JsonProtocol(GRID)])


@FUZZ
@given(protocol=protocols, text=model_text)
def test_fuzz_text(protocol: ToolProtocol, text: str) -> None:
    check_decision(protocol.parse(ChatReply(text=text)), protocol.crop_set)


@FUZZ
@given(protocol=protocols, text=model_text, calls=tool_calls)
def test_fuzz_tool_calls(protocol: ToolProtocol, text: str, calls: list[ToolCall]) -> None:
    decision = protocol.parse(ChatReply(text=text, tool_calls=calls))
    check_decision(decision, protocol.crop_set)
    if isinstance(protocol, JsonProtocol) and calls:
        assert decision.kind != "answer" and decision.call_id == calls[0].id
        # whatever is sent back answers every call id of the turn
        ids = list(dict.fromkeys(c.id for c in calls))
        if decision.kind == "crop":
            assert answered(protocol.crops_messages(decision, [])) == ids
        else:
            assert answered(protocol.feedback_messages(decision)) == ids
        assert answered(protocol.refusal_messages(decision, "no")) == ids


@FUZZ
@given(
    protocol=st.sampled_from([JSON, JsonProtocol(GRID)]),
    value=json_values,
    wrap=st.booleans(),
    key=st.sampled_from(["arguments", "parameters"]),
)
def test_fuzz_json_arguments(protocol: JsonProtocol, value: Any, wrap: bool, key: str) -> None:
    arguments = {"crops": value} if wrap else value
    structured = protocol.parse(ChatReply(tool_calls=[call(json.dumps(arguments))]))
    check_decision(structured, protocol.crop_set)
    text = hermes({"name": "get_crops", key: arguments})
    check_decision(protocol.parse(ChatReply(text=text)), protocol.crop_set)
    # hermes and structured calls agree
    assert protocol.parse(ChatReply(text=text)).crops == structured.crops


# --- round trips: any subset, in any order, any spelling, parses back to exactly its ids ----------------


def spellings(crop_set: CropSet, rid: str) -> list[str]:
    name = crop_set.names[crop_set.ids.index(rid)]
    return [
        rid,
        name,
        name.upper(),
        name.title(),
        name.replace("-", " "),
        name.replace("-", "_"),
        f" {name} ",
    ]


@st.composite
def requests(draw: st.DrawFn, crop_set: CropSet) -> tuple[list[str], list[str]]:
    """``(canonical ids, tokens the model writes)`` for a non-empty subset of the crop set, in any order."""
    ids = draw(st.lists(st.sampled_from(crop_set.ids), min_size=1, unique=True))
    tokens = [draw(st.sampled_from(spellings(crop_set, rid))).strip() for rid in ids]
    return ids, tokens


def resolves_whole(crop_set: CropSet, text: str) -> bool:
    try:
        crop_set.resolve(text)
    except KeyError:
        return False
    return True


@FUZZ
@given(data=st.data(), crop_set=st.sampled_from([PAPER, GRID]))
def test_round_trip_get_crops(data: st.DataObject, crop_set: CropSet) -> None:
    ids, tokens = data.draw(requests(crop_set))
    protocol = AwaresTextProtocol(crop_set)
    styles = [
        "GET_CROPS: [" + ", ".join(f"'{t}'" for t in tokens) + "]",
        "GET_CROPS:[" + ",".join(f'"{t}"' for t in tokens) + "]",
        "get_crops: [" + ", ".join(f"`{t}`" for t in tokens) + "]",
        "GET_CROPS: " + ", ".join(tokens),
        "GET_CROPS:" + ",".join(tokens),
        "GET_CROPS: [" + ", ".join(tokens) + "]",
        "GET_CROPS: (" + ", ".join(f"'{t}'" for t in tokens) + ")",
        "GET_CROPS: [" + ", ".join(f"'{t}'" for t in tokens),  # unclosed
        "Let me look closer.\nGET_CROPS: [" + ", ".join(f"'{t}'" for t in tokens) + "]\n",
    ]
    spaced = " ".join(tokens)
    if all(" " not in t for t in tokens) and (len(tokens) == 1 or not resolves_whole(crop_set, spaced)):
        styles.append("GET_CROPS: " + spaced)
    for text in styles:
        decision = protocol.parse(ChatReply(text=text))
        assert decision.kind == "crop" and decision.crops == ids, (text, decision)


@FUZZ
@given(data=st.data(), crop_set=st.sampled_from([PAPER, GRID]))
def test_round_trip_json(data: st.DataObject, crop_set: CropSet) -> None:
    ids, tokens = data.draw(requests(crop_set))
    protocol = JsonProtocol(crop_set)
    numeric = [int(t) if t.isdigit() else t for t in tokens]
    variants: list[Any] = [{"crops": tokens}, {"crops": numeric}, {"crops": ", ".join(tokens)}, tokens]
    if len(tokens) == 1:
        variants.append({"crops": numeric[0]})
    for arguments in variants:
        assert protocol.tool.parse_arguments(arguments) == ids
        assert protocol.tool.parse_arguments(json.dumps(arguments)) == ids
        structured = protocol.parse(ChatReply(tool_calls=[call(arguments, id="rt")]))
        assert (structured.kind, structured.crops, structured.call_id) == ("crop", ids, "rt")
        text = hermes({"name": "get_crops", "arguments": arguments})
        assert protocol.parse(ChatReply(text=text)).crops == ids
    # split over several calls (structured or hermes) in one turn, the request is the same
    cut = data.draw(st.integers(0, len(tokens)))
    if 0 < cut < len(tokens):
        parts = [tokens[:cut], tokens[cut:]]
        calls = [call({"crops": p}, id=f"c{i}") for i, p in enumerate(parts)]
        assert protocol.parse(ChatReply(tool_calls=calls)).crops == ids
        text = "".join(hermes({"name": "get_crops", "arguments": {"crops": p}}) for p in parts)
        assert protocol.parse(ChatReply(text=text)).crops == ids


@pytest.mark.parametrize("cls", [JsonProtocol, AwaresTextProtocol])
@pytest.mark.parametrize("crops", [["3"], ["0", "5"], ["top-left", "all"]])
def test_call_reply_is_the_protocols_own_call_and_reads_back(
    cls: type[ToolProtocol], crops: list[str]
) -> None:
    protocol = cls(PAPER)
    reply = protocol.call_reply(crops)
    if cls is JsonProtocol:
        assert reply.text == "" and [c.name for c in reply.tool_calls] == [protocol.tool.name]
        assert json.loads(reply.tool_calls[0].arguments) == {"crops": crops}
    else:
        assert (
            reply.tool_calls == [] and reply.text == "GET_CROPS: [" + ", ".join(f"'{c}'" for c in crops) + "]"
        )
    decision = protocol.parse(reply)
    assert decision.kind == "crop"
    assert decision.crops == [PAPER.resolve(c) for c in crops]
