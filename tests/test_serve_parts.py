"""The server's parts that decide on their own: which streamed text is the answer, where a request goes, which
addresses are fetched from, how a data URI decodes, how a secret is scrubbed from a stream.

The HTTP boundary (real clients, a real server, a real upstream) is tested in ``test_serve.py`` and
``test_serve_untrusted.py``; these pin the rules themselves, row by row.
"""

from __future__ import annotations

import base64
import ipaddress

import pytest
from serve_live import IMAGE, MODEL, data_uri, image_request

from awares_agent.serve.answer_stream import AnswerStream
from awares_agent.serve.data_uri import decode_data_uri
from awares_agent.serve.errors import ServeError
from awares_agent.serve.fetch import is_blocked
from awares_agent.serve.proxy import SecretScrubber
from awares_agent.serve.routing import AwaresQuery, Passthrough, route_chat

# --- the answer stream -------------------------------------------------------------------------------------


def _run(stream: AnswerStream, turns: list[tuple[list[str], str, str | None]], answer: str | None) -> str:
    """Feed turns of ``(pieces, kind, stored text)`` and the final answer; return everything sent."""
    sent = ""
    for pieces, kind, text in turns:
        for piece in pieces:
            sent += stream.feed(piece)
        sent += stream.turn_over(kind, text)
    sent += stream.answered(answer)
    assert sent == stream.sent
    return sent


def test_a_direct_answer_streams_word_by_word_and_adds_up_to_the_answer() -> None:
    stream = AnswerStream("json")
    pieces = ["  The ", "total", " is $1,", "284.50 ", "today."]
    seen = [stream.feed(p) for p in pieces]
    assert seen[:2] == ["The", ""] and "".join(seen) == "The total is $1,284.50"  # live, whole words
    assert stream.turn_over("answer", "".join(pieces)) == " today."
    assert stream.sent == "The total is $1,284.50 today." and stream.stray == 0


@pytest.mark.parametrize(
    ("protocol", "call"),
    [
        ("awares-text", ["GET_", "CROPS: ", "['0', ", "'5']"]),
        ("awares-text", ["get crops", ": [3]"]),
        ("json", ["<tool", "_call>", '{"name": "get_crops", ', '"arguments": {"crops": ["3"]}}</tool_call>']),
    ],
)
def test_a_crop_request_written_as_text_is_never_sent(protocol: str, call: list[str]) -> None:
    stream = AnswerStream(protocol)
    sent = _run(
        stream,
        [(call, "crop", "".join(call)), (["It ", "reads ", "STOP."], "answer", "It reads STOP.")],
        None,
    )
    assert sent == "It reads STOP." and stream.stray == 0


def test_a_marker_split_across_words_is_held_back() -> None:
    stream = AnswerStream("awares-text")
    assert stream.feed("GET ") == ""  # "get" could begin "get crops"
    assert stream.feed("CROPS: ['1']") == ""
    assert stream.turn_over("crop", "GET CROPS: ['1']") == ""
    assert stream.sent == "" and stream.stray == 0


def test_a_preamble_before_a_native_tool_call_is_counted_as_stray() -> None:
    stream = AnswerStream("json")
    sent = _run(
        stream,
        [(["Let me ", "zoom in. "], "crop", "Let me zoom in."), (["Done ", "now."], "answer", "Done now.")],
        None,
    )
    assert sent == "Let me zoom in.Done now." and stream.stray == 1


def test_the_answer_event_after_an_answer_turn_sends_nothing_twice() -> None:
    stream = AnswerStream("json")
    stream.feed("Yes. ")
    assert stream.turn_over("answer", "Yes.") == ""
    assert stream.answered("Yes.") == ""
    assert stream.sent == "Yes."


def test_a_forced_final_answer_has_no_model_event() -> None:
    """The answer node's own call (after a refused extra crop request) ends with the answer event only."""
    stream = AnswerStream("awares-text")
    for piece in ["GET_CROPS: ", "['2']"]:
        stream.feed(piece)
    stream.turn_over("crop", "GET_CROPS: ['2']")
    out = stream.feed("Forty ") + stream.feed("two")
    out += stream.answered("Forty two")
    assert out == "Forty two"


def test_a_credential_in_the_answer_is_redacted_as_it_streams() -> None:
    stream = AnswerStream("json")
    key = "sk-" + "a1b2c3d4" * 4
    out = stream.feed(f"The key is {key} ok ")
    assert key not in out and "<redacted>" in out


# --- where a request goes ------------------------------------------------------------------------------


def _user(*parts: dict) -> list[dict]:
    return [{"role": "user", "content": list(parts)}]


IMAGE_PART = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
TEXT_PART = {"type": "text", "text": "What does it say?"}


def test_one_image_and_a_question_is_awares() -> None:
    body = {
        **image_request(temperature=0.3, max_tokens=9, stream=True, stream_options={"include_usage": True}),
        "awares": {"policy": "low-res"},
    }
    body["messages"].insert(0, {"role": "system", "content": "Answer in French."})
    route = route_chat(body, served_model=MODEL)
    assert isinstance(route, AwaresQuery)
    assert route.question == "Answer in French.\n\nWhat is written on the page?"
    assert route.stream and route.include_usage and route.options.policy == "low-res"
    assert route.ignored == ("max_tokens", "temperature")
    assert route.image_url == data_uri()


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"model": "other-model"}, "model"),
        ({"tools": [{"type": "function", "function": {"name": "f"}}]}, "option:tools"),
        ({"tool_choice": "required"}, "option:tool_choice"),
        ({"n": 2}, "option:n"),
        ({"response_format": {"type": "json_object"}}, "option:response_format"),
        ({"logprobs": True}, "option:logprobs"),
        ({"modalities": ["text", "audio"]}, "option:modalities"),
        ({"messages": _user(TEXT_PART)}, "no_image"),
        ({"messages": [{"role": "user", "content": "Hello"}]}, "no_image"),
        ({"messages": _user(IMAGE_PART, IMAGE_PART, TEXT_PART)}, "several_images"),
        ({"messages": _user(IMAGE_PART)}, "no_question"),
        (
            {"messages": _user(IMAGE_PART, TEXT_PART, {"type": "input_audio", "input_audio": {}})},
            "other_content",
        ),
        ({"messages": [{"role": "assistant", "content": "Hi"}, *_user(IMAGE_PART, TEXT_PART)]}, "history"),
        (
            {"messages": [*_user(IMAGE_PART, TEXT_PART), {"role": "assistant", "content": "Hi"}]},
            "last_turn_not_user",
        ),
    ],
)
def test_the_passthrough_rows(change: dict, reason: str) -> None:
    route = route_chat({**image_request(), **change}, served_model=MODEL)
    assert route == Passthrough(reason)


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ([1, 2], "invalid_json"),
        ({"messages": _user(IMAGE_PART, TEXT_PART)}, "invalid_request"),
        ({"model": MODEL}, "invalid_request"),
        ({"model": MODEL, "messages": []}, "invalid_request"),
        ({"model": MODEL, "messages": ["hi"]}, "invalid_request"),
        ({**image_request(), "stream": "yes"}, "invalid_request"),
        ({**image_request(), "awares": {"policy": "oracle"}}, "invalid_awares_options"),
        ({**image_request(), "awares": {"max_rtr": -1}}, "invalid_awares_options"),
        ({**image_request(), "awares": {"crops": ["1"]}}, "invalid_awares_options"),
        ({**image_request(), "awares": "low-res"}, "invalid_awares_options"),
    ],
)
def test_a_body_no_server_could_answer_is_refused(body: object, code: str) -> None:
    with pytest.raises(ServeError) as refused:
        route_chat(body, served_model=MODEL)
    assert refused.value.status == 400 and refused.value.code == code


# --- addresses, data URIs, secrets -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "blocked"),
    [
        ("127.0.0.1", True),
        ("10.2.3.4", True),
        ("172.16.0.1", True),
        ("192.168.1.1", True),
        ("169.254.169.254", True),  # the cloud metadata service
        ("100.64.0.1", True),  # shared address space
        ("0.0.0.0", True),
        ("224.0.0.1", True),
        ("::1", True),
        ("fe80::1", True),
        ("fd00::1", True),
        ("::ffff:127.0.0.1", True),  # IPv4-mapped loopback
        ("93.184.216.34", False),
        ("2606:4700:4700::1111", False),
    ],
)
def test_which_addresses_are_fetched_from(address: str, blocked: bool) -> None:
    assert is_blocked(ipaddress.ip_address(address)) is blocked


def test_an_allowed_network_is_fetched_from() -> None:
    allowed = [ipaddress.ip_network("10.1.0.0/16")]
    assert not is_blocked(ipaddress.ip_address("10.1.2.3"), allowed)
    assert is_blocked(ipaddress.ip_address("10.2.0.1"), allowed)


def test_a_data_uri_decodes_to_its_bytes() -> None:
    assert decode_data_uri(data_uri(), limit=1 << 20) == IMAGE
    assert (
        decode_data_uri("data:image/png;base64," + base64.b64encode(b"x" * 9).decode(), limit=9) == b"x" * 9
    )
    assert decode_data_uri("data:,%89PNG", limit=10) == b"\x89PNG"


@pytest.mark.parametrize(
    ("uri", "code"),
    [
        ("data:image/png;base64", "invalid_image_url"),  # no comma
        ("data:image/png;base64,!!!!", "invalid_image_url"),
        ("data:image/png;base64,abc", "invalid_image_url"),  # bad padding
        ("data:text/html;base64,PGI+", "invalid_image_url"),
        ("data:image/png;base64,", "invalid_image_url"),
        ("data:image/png;base64," + "A" * 4000, "image_too_large"),
    ],
)
def test_a_bad_data_uri_is_a_400(uri: str, code: str) -> None:
    with pytest.raises(ServeError) as refused:
        decode_data_uri(uri, limit=1000)
    assert refused.value.status == 400 and refused.value.code == code


def test_a_secret_split_across_chunks_is_scrubbed() -> None:
    secret = "upstream-secret-0123456789"
    text = f'{{"error": "bad header Authorization: Bearer {secret}"}}'.encode()
    for size in (1, 3, 7, len(text)):
        scrubber = SecretScrubber([secret])
        out = (
            b"".join(scrubber.feed(text[i : i + size]) for i in range(0, len(text), size)) + scrubber.flush()
        )
        assert secret.encode() not in out and out == text.replace(secret.encode(), b"<redacted>")
