"""System prompt presets: the released checkpoint gets the released prompt, verbatim, by name or by choice.

The expected texts below are typed out from the released repository (NimrodShabtay/AwaRes): the evaluation
script ``lmms_eval/qwen2_5_vl_awares.py`` (``VISION_MODEL_SHORT_SYSTEM_PROMPT`` with
``INDS_NOT_WORDS = True``, the f-string rendering the dict ``CROPS_MAP``) and the README's quick start
(``SYSTEM_PROMPT``). They are written as plain literals, not rebuilt the way the module builds them, so a
drift in either shows.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from chat_server import Completion, ScriptedChatServer
from PIL import Image, ImageDraw

from awares_agent.cli import main
from awares_agent.config import AgentConfig
from awares_agent.errors import ConfigError
from awares_agent.tools.crop_sets import crop_set
from awares_agent.tools.prompts import (
    RELEASED_MODEL,
    is_released_model,
    resolve_preset,
    system_prompt_for,
)
from awares_agent.tools.protocols import make_protocol

RELEASED_TEXT = (
    "You are a vision-language model that analyzes images and answers questions about them. If the image "
    "resolution is too low for accurate analysis, respond with GET_CROPS [<crop_number>] to get a higher "
    "resolution version, the avalible <crop_numbers> and their corresponding area of the high resolution "
    "image are {'0': 'top-left', '1': 'top-right', '2': 'bottom-left', '3': 'bottom-right', '4': 'center', "
    "'5': 'top', '6': 'bottom', '7': 'left', '8': 'right', 'all': 'all'} ,otherwise provide your answer."
)
README_TEXT = (
    "You are a vision-language model that analyzes images and answers questions about them. If the image "
    "resolution is too low for accurate analysis, respond with GET_CROPS: followed by a list of crop numbers "
    "in square brackets (e.g., GET_CROPS: ['3'] or GET_CROPS: ['0', '5']), where the available crop numbers "
    "and their corresponding areas are {'0': 'top-left', '1': 'top-right', '2': 'bottom-left', "
    "'3': 'bottom-right', '4': 'center', '5': 'top', '6': 'bottom', '7': 'left', '8': 'right'}, otherwise "
    "provide your answer."
)


def text_protocol():  # type: ignore[no-untyped-def]
    return make_protocol("awares-text", crop_set("paper"))


@pytest.mark.parametrize(
    ("preset", "expected"), [("released", RELEASED_TEXT), ("released-readme", README_TEXT)]
)
def test_released_presets_are_verbatim(preset: str, expected: str) -> None:
    assert system_prompt_for(text_protocol(), preset=preset, model_name="any") == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "name",
    [
        RELEASED_MODEL,
        "kimhi/awares-qwen2.5-vl-7b",
        "/models/AWARES-Qwen2.5-VL-7B",
        "/models/Kimhi/AWARES-Qwen2.5-VL-7B/",
        "C:\\models\\AWARES-Qwen2.5-VL-7B",
    ],
)
def test_auto_picks_the_released_prompt_for_the_released_checkpoint(name: str) -> None:
    assert is_released_model(name)
    assert resolve_preset("auto", protocol="awares-text", model_name=name) == "released"
    assert system_prompt_for(text_protocol(), model_name=name) == RELEASED_TEXT


@pytest.mark.parametrize(
    "name", ["Qwen/Qwen2.5-VL-7B-Instruct", "AWARES-Qwen2.5-VL-7B-sft", "my-AWARES-Qwen2.5-VL-7B", ""]
)
def test_auto_keeps_the_project_prompt_for_other_models(name: str) -> None:
    assert not is_released_model(name)
    protocol = text_protocol()
    assert system_prompt_for(protocol, model_name=name) == protocol.system_prompt()


def test_auto_keeps_the_project_prompt_under_json_even_for_the_released_name() -> None:
    protocol = make_protocol("json", crop_set("paper"))
    assert resolve_preset("auto", protocol="json", model_name=RELEASED_MODEL) == "awares"
    assert system_prompt_for(protocol, model_name=RELEASED_MODEL) == protocol.system_prompt()


def test_a_custom_prompt_wins_over_any_preset() -> None:
    assert system_prompt_for(text_protocol(), model_name=RELEASED_MODEL, custom="Be brief.") == "Be brief."


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"system_prompt_preset": "released"}, "awares-text"),
        ({"system_prompt_preset": "released-readme", "protocol": "json"}, "awares-text"),
        ({"system_prompt_preset": "released", "protocol": "awares-text", "crop_set": "grid-3x3"}, "paper"),
        ({"system_prompt_preset": "awares", "system_prompt": "mine"}, "choose one"),
        ({"system_prompt_preset": "verbose"}, "system_prompt_preset"),
    ],
)
def test_invalid_combinations_are_refused_with_the_fix(options: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        AgentConfig.from_options(**options)


# --- end to end: what the server receives -----------------------------------------------------------------


@pytest.fixture
def page(tmp_path: Path) -> Path:
    img = Image.new("RGB", (800, 600), "white")
    ImageDraw.Draw(img).text((650, 520), "GATE B7", fill="black")
    path = tmp_path / "page.png"
    img.save(path)
    return path


def _system_text(server: ScriptedChatServer) -> str:
    first = server.chat_requests[0].messages[0]
    assert first["role"] == "system"
    content = first["content"]
    return content if isinstance(content, str) else "".join(p["text"] for p in content)


def _ask(server: ScriptedChatServer, page: Path, model: str, *extra: str) -> int:
    return main(
        [
            "ask",
            str(page),
            "Which gate?",
            "--base-url",
            server.base_url,
            "--model",
            model,
            "--max-retries",
            "0",
            *extra,
        ]
    )


def test_cli_sends_the_released_prompt_verbatim_to_the_released_model(
    chat_server: ScriptedChatServer, page: Path
) -> None:
    chat_server.enqueue(Completion(text="GET_CROPS: ['3']"), Completion(text="B7"))
    assert _ask(chat_server, page, RELEASED_MODEL, "--protocol", "awares-text") == 0
    assert _system_text(chat_server) == RELEASED_TEXT
    # and the released model's call is served as released: the crops come back as a user turn of images
    second = chat_server.chat_requests[1].messages
    assert second[-1]["role"] == "user"
    assert all(part["type"] == "image_url" for part in second[-1]["content"])


def test_cli_selects_a_preset_by_name(chat_server: ScriptedChatServer, page: Path) -> None:
    chat_server.enqueue(Completion(text="B7"))
    code = _ask(
        chat_server, page, "qwen2.5-vl-7b", "--protocol", "awares-text", "--system-prompt", "released-readme"
    )
    assert code == 0
    assert _system_text(chat_server) == README_TEXT


def test_cli_keeps_the_project_prompt_for_the_released_model_when_asked(
    chat_server: ScriptedChatServer, page: Path
) -> None:
    chat_server.enqueue(Completion(text="B7"))
    code = _ask(chat_server, page, RELEASED_MODEL, "--protocol", "awares-text", "--system-prompt", "awares")
    assert code == 0
    assert _system_text(chat_server) == text_protocol().system_prompt()


def test_cli_refuses_a_released_prompt_with_the_json_protocol(
    chat_server: ScriptedChatServer, page: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _ask(chat_server, page, RELEASED_MODEL, "--system-prompt", "released") == 2
    assert "--protocol awares-text" in capsys.readouterr().err
    assert chat_server.chat_requests == []
