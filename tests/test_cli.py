"""``awares ask`` end to end against a real loopback server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from chat_server import Completion, Delay, Garbage, HTTPError, ScriptedChatServer
from PIL import Image, ImageDraw

from awares_agent.cli import main

AWARES = Path(sys.executable).with_name("awares")


@pytest.fixture
def sign(tmp_path: Path) -> Path:
    img = Image.new("RGB", (800, 600), "white")
    ImageDraw.Draw(img).text((650, 520), "GATE B7", fill="black")
    path = tmp_path / "sign.png"
    img.save(path)
    return path


def run(server: ScriptedChatServer, *args: str) -> list[str]:
    return ["ask", *args, "--base-url", server.base_url, "--model", "qwen2.5-vl-7b", "--max-retries", "0"]


def test_human_output(
    chat_server: ScriptedChatServer, sign: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    chat_server.enqueue(Completion(tool_calls=[("get_crops", {"crops": ["3"]})]), Completion(text="B7"))
    assert main(run(chat_server, str(sign), "Which gate?")) == 0
    out = capsys.readouterr().out
    assert "Answer: B7" in out
    assert "bottom-right" in out and "(400, 300, 800, 600)" in out
    assert "RTR" in out


@pytest.mark.parametrize("flag", [[], ["--no-stream"]], ids=["streamed", "whole"])
def test_ask_streams_unless_told_not_to(
    chat_server: ScriptedChatServer, sign: Path, capsys: pytest.CaptureFixture[str], flag: list[str]
) -> None:
    chat_server.enqueue(Completion(tool_calls=[("get_crops", {"crops": ["3"]})]), Completion(text="gate B7"))
    assert main([*run(chat_server, str(sign), "Which gate?"), *flag]) == 0
    assert "Answer: gate B7" in capsys.readouterr().out
    assert [bool(r.json.get("stream")) for r in chat_server.chat_requests] == [not flag, not flag]


@pytest.mark.parametrize("flag", [[], ["--max-new-tokens", "7"]], ids=["server-default", "capped"])
def test_max_new_tokens_reaches_a_server_only_when_given(
    chat_server: ScriptedChatServer, sign: Path, flag: list[str]
) -> None:
    chat_server.enqueue(Completion(text="B7"))
    assert main([*run(chat_server, str(sign), "Which gate?"), *flag]) == 0
    assert chat_server.chat_requests[0].json.get("max_tokens") == (7 if flag else None)


def test_json_output_is_one_object(
    chat_server: ScriptedChatServer, sign: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    chat_server.enqueue(Completion(text="GET_CROPS: 3"), Completion(text="B7"))
    code = main(run(chat_server, str(sign), "Which gate?", "--json", "--protocol", "awares-text"))
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert result["answer"] == "B7"
    assert [c["region_id"] for c in result["crops"]] == ["3"]
    assert 0 < result["rtr"] < 1 and result["visual_tokens"] < result["full_tokens"]
    assert result["trajectory"]["settings"]["protocol"] == "awares-text"


@pytest.mark.parametrize(
    ("reply", "code", "message"),
    [
        (HTTPError(500, headers={"x-should-retry": "false"}), 1, "500"),
        (HTTPError(429, headers={"x-should-retry": "false"}), 1, "429"),
        (Garbage(b"<html>oops"), 1, "no JSON body"),
        (Delay(2.0), 1, "timeout"),
        (HTTPError(401), 1, "OPENAI_API_KEY"),
    ],
)
def test_server_failures_are_one_line(
    chat_server: ScriptedChatServer,
    sign: Path,
    capsys: pytest.CaptureFixture[str],
    reply: object,
    code: int,
    message: str,
) -> None:
    chat_server.enqueue(reply)
    assert main([*run(chat_server, str(sign), "q"), "--timeout", "0.3"]) == code
    err = capsys.readouterr().err
    assert err.startswith("error:")
    assert message.lower() in err.lower()
    assert "Traceback" not in err


def test_bad_image_exit_code(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "notes.png"
    bad.write_text("this is not a picture")
    assert main(["ask", str(bad), "q", "--base-url", "http://127.0.0.1:9/v1", "--model", "m"]) == 2
    err = capsys.readouterr().err
    assert "notes.png" in err and "Traceback" not in err


def test_bad_option_value(sign: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        ["ask", str(sign), "q", "--base-url", "http://127.0.0.1:9/v1", "--model", "m", "--max-rtr", "-1"]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert "max_rtr" in err and "Traceback" not in err


def test_unreachable_server(sign: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        ["ask", str(sign), "q", "--base-url", "http://127.0.0.1:9/v1", "--model", "m", "--max-retries", "0"]
    )
    assert code == 1
    assert "127.0.0.1:9" in capsys.readouterr().err


def test_console_script_end_to_end(chat_server: ScriptedChatServer, sign: Path) -> None:
    """The installed ``awares`` entry point, in a fresh process, with a key that must not leak."""
    chat_server.enqueue(
        Completion(tool_calls=[("get_crops", {"crops": ["bottom-right"]})]), Completion(text="B7")
    )
    env = {**os.environ, "OPENAI_API_KEY": "sk-test-secret-value-123456"}
    proc = subprocess.run(
        [str(AWARES), *run(chat_server, str(sign), "Which gate?", "--json")],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["answer"] == "B7"
    assert "sk-test-secret" not in proc.stdout + proc.stderr
    assert chat_server.chat_requests[0].headers["authorization"] == "Bearer sk-test-secret-value-123456"
