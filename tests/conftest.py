"""Shared pytest fixtures."""

from __future__ import annotations

from collections.abc import Iterator

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
