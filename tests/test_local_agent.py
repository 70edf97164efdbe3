"""The agent end to end on a local model: the tiny Qwen2.5-VL through the transformers backend, offline.

The model was over-fitted (``tests/tiny_overfit.py``) to answer the background question directly and to ask
for crop 3 before answering the corner question, in both protocols; here the real agent, graph, backend and
processor run that loop with nothing scripted.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from tiny_overfit import CROP_A, CROP_Q, DIRECT_A, DIRECT_Q, sign_image

from awares_agent import AwaResAgent
from awares_agent.backends.transformers_backend import TransformersBackend
from awares_agent.tokens import QWEN2_5_VL


@pytest.fixture(scope="module")
def backend(trained_tiny_vlm_dir: Path) -> TransformersBackend:
    return TransformersBackend(str(trained_tiny_vlm_dir), local_files_only=True, max_new_tokens=48)


@pytest.mark.parametrize("protocol", ["json", "awares-text"])
def test_direct_answer(backend: TransformersBackend, protocol: str) -> None:
    result = AwaResAgent(backend, protocol=protocol).ask(sign_image(), DIRECT_Q)
    assert result.answer == DIRECT_A
    assert result.crops == [] and result.trajectory.errors == []
    assert result.rtr == pytest.approx(result.trajectory.cost.view_tokens / result.full_tokens)


@pytest.mark.parametrize("protocol", ["json", "awares-text"])
def test_crop_then_answer(backend: TransformersBackend, protocol: str) -> None:
    events = list(AwaResAgent(backend, protocol=protocol).stream(sign_image(), CROP_Q))
    result = events[-1].result
    assert result is not None
    assert result.answer == CROP_A
    assert [c.region_id for c in result.crops] == ["3"]
    assert result.trajectory.errors == []
    if protocol == "json":  # a native call: the backend turned the <tool_call> block into a structured call
        assert result.trajectory.messages[2].tool_calls[0].name == "get_crops"
    # The processor's own visual-token counts agree with the accounting module.
    first, second = (e.data for e in events if e.type == "model")
    t = result.trajectory
    assert first["image_tokens"] == [t.cost.view_tokens] == [QWEN2_5_VL.count(t.view.width, t.view.height)]
    assert second["image_tokens"] == [t.cost.view_tokens, t.crops[0].tokens]


def test_ask_many_locally(backend: TransformersBackend) -> None:
    agent = AwaResAgent(backend)
    results = agent.ask_many([(sign_image(), DIRECT_Q), (sign_image(), CROP_Q)] * 2, max_concurrency=4)
    assert [r.answer for r in results] == [DIRECT_A, CROP_A] * 2


def test_cli_runs_a_local_model(
    trained_tiny_vlm_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from awares_agent.cli import main

    image = tmp_path / "sign.png"
    sign_image().save(image)
    args = ["ask", str(image), CROP_Q, "--model", str(trained_tiny_vlm_dir), "--offline", "--json"]
    assert main(args) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["answer"] == CROP_A
    assert [c["region_id"] for c in result["crops"]] == ["3"]
    assert result["trajectory"]["backend"] == "TransformersBackend"


def test_cli_missing_local_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from awares_agent.cli import main

    image = tmp_path / "sign.png"
    sign_image().save(image)
    assert main(["ask", str(image), "q", "--model", str(tmp_path / "no-model"), "--offline"]) == 2
    err = capsys.readouterr().err
    assert "no-model" in err and "Traceback" not in err
