"""Randomised hostile model replies, and a runner that pushes them through the real agent.

Used by ``tests/test_reply_fuzz.py`` (a fixed seed, so CI is reproducible) and by
``benchmarks/bench_reliability.py`` (more replies, figures for the README).

Two transports:

* ``inprocess``: a :class:`~scripted_backend.ScriptedBackend` returns random :class:`ChatReply` objects
  (text and structured tool calls), and now and then raises a foreign exception or returns something that
  is not a reply at all, as a broken third-party backend would.
* ``http``: the loopback :class:`~chat_server.ScriptedChatServer` sends random response bodies (chat
  completions with every field mutated, garbage bytes, error statuses) to the real ``OpenAIBackend``.

The rule under test: every query either returns a result that serialises and reads back, or raises one of
the project's typed errors (:class:`~awares_agent.errors.AwaresError`); nothing else escapes, and no planted
credential survives into a result.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from chat_server import Garbage, HTTPError, RawJSON, ScriptedChatServer
from PIL import Image
from scripted_backend import ScriptedBackend

from awares_agent import AwaResAgent, ChatReply, OpenAIBackend
from awares_agent.errors import AwaresError
from awares_agent.messages import ToolCall
from awares_agent.redact import register_secret
from awares_agent.tools.crop_sets import crop_set
from awares_agent.trajectory import Trajectory

#: A credential-shaped value planted in some replies; it must never reach a result. Made at run time, so no
#: key-shaped literal sits in the repository.
PLANTED_KEY = "sk-" + hashlib.sha256(b"awares reply fuzz").hexdigest()[:32]

_WORDS = [
    "42",
    "STOP",
    "total",
    "12 Jun 2025",
    "$77.82",
    "yes",
    "no",
    "the sign says EXIT",
    "Ürün",
    "東京",
    "😀",
]
_IDS = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "all"]
_NAMES = ["top-left", "top right", "bottom_left", "BOTTOM-RIGHT", "center", "top", "bottom", "left", "right"]
_JUNK = ["", " ", "-1", "9", "10", "99", "1e9", "9" * 5000, "null", "crop", "0.5", "\ud800", "全部", "[/b]"]
_HOSTILE = [
    "\ud800",
    "\udfff\ud800",
    "\x00",
    "\x1b[31m",
    "[/bold]",
    "[red]",
    "\u202e",
    "\ufeff",
    PLANTED_KEY,
    f"Bearer {PLANTED_KEY}",
    "Authorization: Bearer abcdefgh12345678",
    "<tool_call>",
    "</tool_call>",
    "GET_CROPS",
    "{",
    "]",
    "\\",
    '"',
]


def _token(rng: random.Random) -> str:
    pool = rng.choice([_IDS, _NAMES, _JUNK])
    return rng.choice(pool)


def _text(rng: random.Random, max_words: int = 6) -> str:
    parts = []
    for _ in range(rng.randint(0, max_words)):
        roll = rng.random()
        if roll < 0.6:
            parts.append(rng.choice(_WORDS))
        elif roll < 0.85:
            parts.append(rng.choice(_HOSTILE))
        else:
            parts.append("".join(chr(rng.randint(0, 0x10FFFF)) for _ in range(rng.randint(1, 8))))
    text = " ".join(parts)
    if rng.random() < 0.02:
        text *= rng.randint(50, 400)  # very long
    return text


def _crop_list(rng: random.Random) -> str:
    tokens = [_token(rng) for _ in range(rng.choice([0, 1, 1, 2, 3, 12, 200]))]
    style = rng.randrange(8)
    if style == 0:
        return "[" + ", ".join(f"'{t}'" for t in tokens) + "]"
    if style == 1:
        return "[" + ",".join(tokens) + "]"
    if style == 2:
        return " ".join(tokens)
    if style == 3:
        return "(" + ", ".join(f'"{t}"' for t in tokens)  # unbalanced
    if style == 4:
        return "[" * rng.randint(1, 2000) + ", ".join(tokens) + "]" * rng.randint(0, 2000)
    if style == 5:
        return "{" + ", ".join(tokens) + "}"
    if style == 6:
        return "['" + "', '".join(tokens) + "'"  # no closing bracket
    return ", ".join(f"`{t}`" for t in tokens)


def _get_crops_text(rng: random.Random) -> str:
    head = rng.choice(["GET_CROPS", "get_crops", "GET CROPS", "GETCROPS", "Get_Crops"])
    sep = rng.choice([": ", ":", " = ", "", " "])
    call = f"{head}{sep}{_crop_list(rng)}"
    before = _text(rng, 3) + "\n" if rng.random() < 0.3 else ""
    after = "\n" + _text(rng, 3) if rng.random() < 0.3 else ""
    return before + call + after


def _json_value(rng: random.Random, depth: int = 0) -> Any:
    roll = rng.random()
    if depth > 3 or roll < 0.3:
        return rng.choice([None, True, 0, -1, 1.5, 10**30, "0", "all", "\ud800", "", [], {}])
    if roll < 0.6:
        return [_json_value(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    return {rng.choice(["crops", "crop", "ids", "regions", "x"]): _json_value(rng, depth + 1)}


def _arguments(rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.35:
        return json.dumps({"crops": [_token(rng) for _ in range(rng.choice([0, 1, 2, 3, 40]))]})
    if roll < 0.55:
        return json.dumps(_json_value(rng), ensure_ascii=rng.random() < 0.5)
    if roll < 0.65:
        depth = rng.choice([17, 100, 990, 1000, 5000, 100_000])
        return '{"crops":' + "[" * depth + '"0"' + "]" * depth + "}"
    if roll < 0.72:
        return '{"crops": ["' + "0" * rng.choice([20_000, 200_000]) + '"]}'  # huge
    if roll < 0.8:
        return '{"crops": [' + "9" * 5000 + "]}"  # an int longer than Python reads
    if roll < 0.9:
        text = json.dumps({"crops": [_token(rng)]})
        return text[: rng.randrange(len(text) + 1)]  # cut short
    return rng.choice(["", "null", "[]", '"0"', "{}", "NaN", "[1,2,3]", '{"crops": "0, 5"}', _text(rng, 2)])


def _hermes_text(rng: random.Random) -> str:
    blocks = []
    for _ in range(rng.choice([1, 1, 1, 2, 3])):
        roll = rng.random()
        if roll < 0.5:
            name = "get_crops" if rng.random() < 0.8 else rng.choice(["crop", "", "get_crops ", "\ud800"])
            key = rng.choice(["arguments", "arguments", "parameters", "args"])
            try:
                args = json.loads(_arguments(rng))
            except (ValueError, RecursionError):
                args = _text(rng, 2)
            try:
                body = json.dumps({"name": name, key: args})
            except (ValueError, RecursionError):
                body = '{"name": "get_crops"}'
        else:
            body = _arguments(rng)
        close = "</tool_call>" if rng.random() < 0.85 else ""
        blocks.append(f"<tool_call>{body}{close}")
    text = "\n".join(blocks)
    if rng.random() < 0.3:
        text = _text(rng, 3) + "\n" + text
    return text


def random_text(rng: random.Random, protocol: str) -> str:
    """A model's text turn: an answer, a crop call in the protocol's syntax (or the other's), or noise."""
    roll = rng.random()
    if roll < 0.3:
        return _text(rng)
    if roll < 0.65:
        return _get_crops_text(rng) if protocol == "awares-text" or rng.random() < 0.2 else _hermes_text(rng)
    if roll < 0.85:
        return _hermes_text(rng) if protocol == "json" or rng.random() < 0.2 else _get_crops_text(rng)
    return rng.choice(["", " ", "\n", "\ud800", PLANTED_KEY, "[/]"])


def random_reply(rng: random.Random, protocol: str) -> Any:
    """One in-process backend turn: usually a :class:`ChatReply`, now and then a broken backend's output."""
    roll = rng.random()
    if roll < 0.02:
        return rng.choice(
            [RuntimeError("boom"), KeyError("choices"), ValueError("\ud800"), TypeError(PLANTED_KEY)]
        )
    if roll < 0.03:
        return rng.choice([None, "a plain string", {"text": "hi"}, 42])
    calls = []
    if rng.random() < (0.4 if protocol == "json" else 0.1):
        for n in range(rng.choice([1, 1, 2, 3])):
            name = "get_crops" if rng.random() < 0.85 else rng.choice(["crop", "search", "", "\ud800"])
            call_id = rng.choice([f"call_{n}", "", "\ud800", "x" * 300, f"call_{n}"])
            calls.append(ToolCall(id=call_id, name=name, arguments=_arguments(rng)))
    return ChatReply(
        text=random_text(rng, protocol) if not calls or rng.random() < 0.3 else "",
        tool_calls=calls,
        finish_reason=rng.choice([None, "stop", "length", "tool_calls", "\ud800"]),
        model=rng.choice([None, "m", "\ud800", PLANTED_KEY]),
    )


def _mutated(rng: random.Random, value: Any, alternatives: list[Any]) -> Any:
    return rng.choice(alternatives) if rng.random() < 0.15 else value


def random_body(rng: random.Random, protocol: str) -> Any:
    """One HTTP response of an OpenAI-compatible server: a chat completion with mutations, or garbage."""
    roll = rng.random()
    if roll < 0.06:
        return Garbage(
            rng.choice(
                [
                    b"",
                    b"{",
                    b"\xff\xfe\x00",
                    b"<html>502 Bad Gateway</html>",
                    b'{"choices": [{"message": {"content": "\xff\xfe"}}]}',
                    b'{"choices": [{"message": {"content": "\\ud800"}}]}',
                    b'{"choices": NaN}',
                    b"[" * 100_000,
                    bytes(rng.randrange(256) for _ in range(64)),
                ]
            ),
            status=rng.choice([200, 200, 200, 500]),
        )
    if roll < 0.1:
        body = rng.choice(
            [
                None,
                "error",
                {"error": {"message": f"bad request, key {PLANTED_KEY}"}},
                {"error": "x" * 300 + PLANTED_KEY},
                {"detail": [{"msg": "\ud800"}]},
            ]
        )
        status = rng.choice([400, 401, 403, 404, 409, 422, 429, 500, 503])
        return HTTPError(status, body=body, headers={"x-should-retry": "false"})
    text = random_text(rng, protocol)
    content: Any = text
    if rng.random() < 0.2:
        content = [
            rng.choice(
                [
                    {"type": "text", "text": text},
                    {"type": "text", "text": rng.choice([5, None, ["a"], {"t": 1}, True])},
                    {"type": "image_url", "image_url": {"url": "data:,"}},
                    {"type": "refusal", "refusal": "no"},
                    "plain",
                    7,
                    None,
                ]
            )
            for _ in range(rng.randint(0, 3))
        ]
    content = _mutated(rng, content, [None, 5, True, {"text": text}, 1.5])
    message: dict[str, Any] = {"role": _mutated(rng, "assistant", [None, "user", 3]), "content": content}
    if protocol == "json" and rng.random() < 0.35:
        calls: Any = []
        for n in range(rng.choice([1, 1, 2])):
            function: Any = {
                "name": _mutated(rng, "get_crops", [None, 5, "", ["get_crops"], "other"]),
                "arguments": _mutated(rng, _arguments(rng), [None, {"crops": ["0"]}, 5, [1], {"crops": 1}]),
            }
            call: Any = {"id": _mutated(rng, f"call_{n}", [None, 5, "", {}]), "type": "function"}
            call["function"] = _mutated(rng, function, [None, "get_crops", 3, []])
            calls.append(_mutated(rng, call, [None, "call", 5, []]))
        message["tool_calls"] = _mutated(rng, calls, [None, {}, "get_crops", 5])
    choice: Any = {"index": 0, "message": _mutated(rng, message, [None, "hi", [], 5])}
    choice["finish_reason"] = _mutated(rng, "stop", [None, 5, "length", "\ud800"])
    body: Any = {
        "id": "chatcmpl-fuzz",
        "object": "chat.completion",
        "created": 0,
        "model": _mutated(rng, "scripted-model", [None, 5, PLANTED_KEY]),
        "choices": _mutated(rng, [choice], [[], None, {}, "x", [None], [[]], [choice, choice]]),
        "usage": _mutated(
            rng,
            {"prompt_tokens": 10, "completion_tokens": 5},
            [None, {"prompt_tokens": -1}, {"prompt_tokens": 1.5}, {"prompt_tokens": 10**40}, "x", []],
        ),
    }
    return RawJSON(_mutated(rng, body, [[], "body", 5, None, {"error": None}]))


@dataclass
class FuzzStats:
    """What a fuzz run saw.

    Attributes:
        queries: queries run.
        replies: replies the backend gave (model turns, HTTP responses).
        answered: queries that returned a result.
        typed_errors: queries that raised an :class:`AwaresError`, by error class.
        recorded: handled errors recorded in trajectories, by kind.
        escapes: queries where anything else happened (an untyped exception, a result that does not
            serialise, a planted key in a result): ``(what, detail)`` pairs.
    """

    queries: int = 0
    replies: int = 0
    answered: int = 0
    typed_errors: Counter[str] = field(default_factory=Counter)
    recorded: Counter[str] = field(default_factory=Counter)
    escapes: list[tuple[str, str]] = field(default_factory=list)


def _check_result(result: Any, ids: set[str], stats: FuzzStats) -> None:
    text = result.model_dump_json()
    trajectory = Trajectory.model_validate_json(result.trajectory.model_dump_json())
    if trajectory != result.trajectory:
        stats.escapes.append(("round trip", "the trajectory read back differs"))
    text.encode("utf-8")  # strict: no lone surrogate may remain
    if PLANTED_KEY in text or PLANTED_KEY[6:20] in text:
        stats.escapes.append(("key", "the planted key is in the result"))
    if result.answer is not None and not isinstance(result.answer, str):
        stats.escapes.append(("answer", f"answer is a {type(result.answer).__name__}"))
    if any(c.region_id not in ids for c in result.crops):
        stats.escapes.append(("crops", f"unknown region in {[c.region_id for c in result.crops]}"))
    if not math.isfinite(result.rtr) or result.rtr <= 0:
        stats.escapes.append(("rtr", f"rtr {result.rtr}"))
    stats.recorded.update(e.kind for e in result.trajectory.errors)
    stats.answered += 1


def _outcome(run: Callable[[], Any], ids: set[str], stats: FuzzStats) -> None:
    stats.queries += 1
    try:
        result = run()
    except AwaresError as exc:
        stats.typed_errors[type(exc).__name__] += 1
        message = str(exc)
        message.encode("utf-8")
        if PLANTED_KEY in message or PLANTED_KEY[6:20] in message:
            stats.escapes.append(("key", f"the planted key is in a {type(exc).__name__} message"))
        return
    except Exception as exc:  # the rule under test: nothing untyped escapes
        stats.escapes.append((type(exc).__name__, str(exc)[:300]))
        return
    try:
        _check_result(result, ids, stats)
    except Exception as exc:
        stats.escapes.append((f"result: {type(exc).__name__}", str(exc)[:300]))


def _options(rng: random.Random, protocol: str) -> dict[str, Any]:
    return {
        "protocol": protocol,
        "max_rounds": rng.choice([0, 1, 1, 1, 2]),
        "max_corrections": rng.choice([0, 1, 2, 3]),
        "max_rtr": rng.choice([None, None, 0.3, 0.5, 1.0]),
    }


_IMAGES = [Image.new("RGB", (224, 168), "white"), Image.new("L", (64, 800), 128), Image.new("RGB", (90, 90))]


def fuzz_inprocess(protocol: str, replies: int, *, seed: int = 0) -> FuzzStats:
    """Push about ``replies`` random in-process backend turns through the real agent (sync and async)."""
    register_secret(PLANTED_KEY)
    rng = random.Random(f"{seed}-inprocess-{protocol}")
    stats = FuzzStats()
    ids = set(crop_set("paper").ids)
    configs = [_options(rng, protocol) for _ in range(12)]
    agents = [
        AwaResAgent(ScriptedBackend(default=lambda _r: random_reply(rng, protocol)), **c) for c in configs
    ]
    while stats.replies < replies:
        agent = rng.choice(agents)
        before = len(agent.backend.requests)  # type: ignore[attr-defined]
        image, question = rng.choice(_IMAGES), rng.choice(["What is the total?", "q\ud800?", "[/b] read it"])
        if rng.random() < 0.1:
            _outcome(lambda a=agent, i=image, q=question: asyncio.run(a.aask(i, q)), ids, stats)
        else:
            _outcome(lambda a=agent, i=image, q=question: a.ask(i, q), ids, stats)
        stats.replies += len(agent.backend.requests) - before  # type: ignore[attr-defined]
    return stats


def fuzz_http(protocol: str, replies: int, *, seed: int = 0) -> FuzzStats:
    """Push about ``replies`` random server responses through ``OpenAIBackend`` and the real agent."""
    register_secret(PLANTED_KEY)
    rng = random.Random(f"{seed}-http-{protocol}")
    stats = FuzzStats()
    ids = set(crop_set("paper").ids)
    with ScriptedChatServer() as server:
        backend = OpenAIBackend(
            "scripted-model", base_url=server.base_url, api_key=PLANTED_KEY, max_retries=0
        )
        agents = [AwaResAgent(backend, **_options(rng, protocol)) for _ in range(8)]
        while stats.replies < replies:
            server.clear()
            server.enqueue(*[lambda _r: random_body(rng, protocol)] * 16)
            agent = rng.choice(agents)
            _outcome(lambda a=agent: a.ask(rng.choice(_IMAGES), "What is the total?"), ids, stats)
            stats.replies += len(server.chat_requests)
        backend.close()
    return stats


def fuzz_cli(protocol: str, queries: int, image_path: str, *, seed: int = 0) -> FuzzStats:
    """Run ``awares ask`` (plain and ``--json``) against random server responses.

    An exit code other than 0 (answered), 1 (backend error) or 2 (bad input), a traceback or the planted key
    on either stream is an escape.
    """
    import contextlib
    import io

    from awares_agent.cli import main

    register_secret(PLANTED_KEY)
    rng = random.Random(f"{seed}-cli-{protocol}")
    stats = FuzzStats()
    with ScriptedChatServer() as server:
        for n in range(queries):
            server.clear()
            server.enqueue(*[lambda _r: random_body(rng, protocol)] * 16)
            argv = ["ask", image_path, "What is the total?", "--base-url", server.base_url, "--model", "m"]
            argv += ["--protocol", protocol, "--max-retries", "0"] + (["--json"] if n % 2 else [])
            out, err = io.StringIO(), io.StringIO()
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                try:
                    code = main(argv)
                except BaseException as exc:  # the rule under test: main() returns, it never raises
                    code = -1
                    err.write(f"raised {type(exc).__name__}: {exc}")
            stats.queries += 1
            stats.replies += len(server.chat_requests)
            streams = out.getvalue() + err.getvalue()
            if code not in (0, 1, 2) or "Traceback" in streams:
                stats.escapes.append((f"exit {code}", streams[-300:]))
            elif PLANTED_KEY in streams or PLANTED_KEY[6:20] in streams:
                stats.escapes.append(("key", "the planted key was printed"))
            elif code == 0:
                stats.answered += 1
                if n % 2:
                    json.loads(out.getvalue())  # --json prints one valid JSON object
            else:
                stats.typed_errors[f"exit {code}"] += 1
    return stats
