"""Shared pytest fixtures."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from chat_server import ScriptedChatServer  # pytest puts tests/ on sys.path


@pytest.fixture
def chat_server() -> Iterator[ScriptedChatServer]:
    """A started :class:`~chat_server.ScriptedChatServer` on 127.0.0.1 (stopped afterwards).

    Script it with ``chat_server.enqueue(Completion(...), ...)`` and point a backend at
    ``chat_server.base_url``.
    """
    with ScriptedChatServer() as server:
        yield server


@pytest.fixture(scope="session")
def tiny_vlm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised tiny Qwen2.5-VL checkpoint, built once per test session (offline, ~3 s).

    Torch runs single-threaded in the test session: the tiny model's ops are too small to gain from threads,
    and with OpenMP threads on a busy 2-core machine (CI runners, other jobs) every parallel region waits for
    a descheduled thread: 30 over-fit steps took 19-122 s with 2 threads against 2.7 s with one.
    """
    import torch

    from awares_agent.testing import build_tiny_vlm

    torch.set_num_threads(1)

    return build_tiny_vlm(tmp_path_factory.mktemp("tiny-vlm"))


@pytest.fixture(scope="session")
def trained_tiny_vlm_dir(tiny_vlm_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny VLM over-fitted (~15 s, once per session) to answer one question directly and crop on another.

    See ``tests/tiny_overfit.py`` for the conversations it learned, in both tool-call protocols.
    """
    from tiny_overfit import overfit

    return overfit(tiny_vlm_dir, tmp_path_factory.mktemp("tiny-vlm-fit"), steps=250)
