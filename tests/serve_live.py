"""A real ``awares serve`` app on loopback, for the tests of the server (``tests/test_serve*.py``).

:class:`LiveServer` runs :func:`awares_agent.serve.create_app` under a real uvicorn server in a thread of the
test process (so a test can also look at the process: audit events, logs), on a free port of 127.0.0.1. The
upstream is the scripted chat server (:mod:`chat_server`), a real HTTP server too.
"""

from __future__ import annotations

import base64
import threading
import time
from typing import Any

import uvicorn
from real_images import REAL  # pytest puts tests/ on sys.path

from awares_agent.backend_factory import BackendOptions
from awares_agent.config import AgentConfig
from awares_agent.serve import ServeOptions, create_app
from awares_agent.tokens import token_rule

__all__ = [
    "IMAGE",
    "MODEL",
    "LiveServer",
    "data_uri",
    "image_request",
    "serve_options",
    "view_and_full_tokens",
]

#: A real image: a scanned page of a book (384 x 191), as PNG bytes.
IMAGE: bytes = REAL["page.png"].path.read_bytes()

MODEL = "scripted-model"
#: The token rule the test servers count with (the scripted model's name names none).
RULE = "qwen2.5-vl"


def data_uri(data: bytes = IMAGE, media: str = "image/png") -> str:
    """``data:<media>;base64,...`` of ``data``."""
    return f"data:{media};base64,{base64.b64encode(data).decode()}"


def image_request(
    question: str = "What is written on the page?", url: str | None = None, **body: Any
) -> dict:
    """A chat-completions body AwaRes answers: one user turn with one image and a question."""
    content = [
        {"type": "image_url", "image_url": {"url": url if url is not None else data_uri()}},
        {"type": "text", "text": question},
    ]
    return {"model": MODEL, "messages": [{"role": "user", "content": content}], **body}


def serve_options(upstream: str, **fields: Any) -> ServeOptions:
    """Options for a test server over ``upstream`` (a free port; short retries, so failures are quick)."""
    backend = fields.pop("backend", BackendOptions(timeout=10.0, max_retries=0))
    agent = fields.pop("agent", AgentConfig(token_rule=RULE))
    return ServeOptions.of(upstream=upstream, model=MODEL, port=0, backend=backend, agent=agent, **fields)


def view_and_full_tokens() -> tuple[int, int]:
    """Visual tokens of :data:`IMAGE`'s half-size view and of the full image, as the agent counts them."""
    width, height = REAL["page.png"].size
    counted = token_rule(RULE)
    return counted.count(width // 2, height // 2), counted.count(width, height)


class LiveServer:
    """``create_app(options, backend)`` served by uvicorn on 127.0.0.1, in a thread; a context manager.

    Attributes:
        url: the server's root, ``http://127.0.0.1:PORT``.
        base_url: its OpenAI ``base_url``, ``url + "/v1"``.
    """

    def __init__(self, options: ServeOptions, backend: Any = None) -> None:
        self.options = options
        config = uvicorn.Config(
            create_app(options, backend), host="127.0.0.1", port=0, log_level="warning", lifespan="on"
        )
        self.server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self.server.run, name="awares-serve", daemon=True)

    def __enter__(self) -> LiveServer:
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the awares serve app did not start (see the log above)")
            time.sleep(0.01)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        self.base_url = f"{self.url}/v1"
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self._thread.join(timeout=30)
