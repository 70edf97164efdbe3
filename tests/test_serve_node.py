"""``awares serve`` with the official TypeScript client: the ``openai`` npm package, under Node.

``tests/node/`` holds the client script and a ``package.json`` with its lockfile; the package is installed
into ``tests/node/node_modules`` (ignored by git) with ``npm ci`` the first time, from the npm registry. The
test is skipped, saying why, only where Node or npm is not installed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from chat_server import Completion, ScriptedChatServer
from serve_live import MODEL, LiveServer, data_uri, serve_options

NODE_DIR = Path(__file__).parent / "node"

pytestmark = pytest.mark.skipif(
    shutil.which("node") is None or shutil.which("npm") is None,
    reason="Node.js and npm are needed to run the openai npm package (install Node 20 or later)",
)


def _installed_version() -> str | None:
    package = NODE_DIR / "node_modules" / "openai" / "package.json"
    return json.loads(package.read_text())["version"] if package.is_file() else None


@pytest.fixture(scope="module")
def node_client() -> Path:
    """``tests/node`` with the locked ``openai`` package installed."""
    locked = json.loads((NODE_DIR / "package-lock.json").read_text())["packages"]["node_modules/openai"][
        "version"
    ]
    if _installed_version() != locked:
        done = subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund"],
            cwd=NODE_DIR,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, f"npm ci failed in {NODE_DIR}:\n{done.stdout}\n{done.stderr}"
    assert _installed_version() == locked
    return NODE_DIR / "client.mjs"


@pytest.fixture
def upstream() -> Iterator[ScriptedChatServer]:
    with ScriptedChatServer() as server:
        yield server


def test_the_typescript_openai_client(node_client: Path, upstream: ScriptedChatServer) -> None:
    upstream.enqueue(
        Completion(tool_calls=[("get_crops", {"crops": ["4"]})], prompt_tokens=100, completion_tokens=7),
        Completion(text="A page of a fable.", prompt_tokens=160, completion_tokens=11),
        Completion(text="A page of a fable, streamed.", prompt_tokens=90, completion_tokens=9),
    )
    with LiveServer(serve_options(upstream.base_url)) as live:
        env = {
            **os.environ,
            "AWARES_BASE_URL": live.base_url,
            "AWARES_MODEL": MODEL,
            "AWARES_IMAGE": data_uri(),
        }
        done = subprocess.run(
            ["node", str(node_client)], capture_output=True, text=True, timeout=120, env=env, cwd=NODE_DIR
        )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)

    whole = seen["whole"]
    assert whole["content"] == "A page of a fable."
    assert whole["usage"] == {"prompt_tokens": 260, "completion_tokens": 18, "total_tokens": 278}
    assert [c["region_id"] for c in whole["awares"]["crops"]] == ["4"]
    assert whole["rtrHeader"] == f"{whole['awares']['rtr']:.4f}"

    streamed = seen["stream"]
    assert streamed["text"] == "A page of a fable, streamed." and streamed["deltas"] > 1
    assert streamed["awares"]["model_calls"] == 1 and streamed["usage"]["total_tokens"] == 99

    assert seen["refused"] == {
        "status": 400,
        "code": "invalid_awares_options",
        "type": "invalid_request_error",
    }
