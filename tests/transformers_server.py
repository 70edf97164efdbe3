"""``transformers serve`` on loopback: a real third-party OpenAI-compatible server for the tests to talk to.

Where ``tests/chat_server.py`` scripts a server's replies, this runs one that nobody here wrote: Hugging
Face's ``transformers serve`` (FastAPI + uvicorn, the ``transformers[serving]`` extra) in a subprocess,
offline, serving local checkpoints on the CPU. It renders the tools into the chat template, turns the
model's ``<tool_call>`` blocks into native ``tool_calls`` (streamed ones too), and reports the prompt's
real token count, images included.

Typical use::

    model = servable_copy(tiny_vlm_dir, tmp / "model")
    with TransformersServer([model], workdir=tmp / "server") as server:
        backend = OpenAIBackend(str(model), base_url=server.base_url)

A request's ``model`` is the served checkpoint's path, as given. Each checkpoint is loaded before the
server is handed over (``POST /load_model``), so no test pays for, or times out on, a first load.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

__all__ = ["ServerStartError", "TransformersServer", "servable_copy"]

#: The processor that loads without torchvision (see the file's docstring), copied beside each checkpoint.
SHIM = Path(__file__).with_name("processing_image_only.py")
SHIM_CLASS = "ImageOnlyQwen2_5_VLProcessor"

#: Lines of the server's log shown when it fails to start.
_LOG_LINES = 60

#: Talks to the server directly: a proxy named in the environment (HTTP_PROXY...) must not see loopback.
_LOOPBACK = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class ServerStartError(RuntimeError):
    """``transformers serve`` did not start, or could not load a checkpoint (the message holds its log)."""


def servable_copy(checkpoint: Path, dest: Path) -> Path:
    """Copy a Qwen2.5-VL checkpoint into ``dest`` with the image-only processor ``transformers serve`` needs.

    The copy gets :data:`SHIM` as remote code and an ``auto_map`` entry naming it in
    ``processor_config.json``; the original is left as it is (other tests load it without remote code).

    Args:
        checkpoint: a checkpoint directory (``build_tiny_vlm``'s output or one trained from it).
        dest: the directory to write; must not exist yet.

    Returns:
        ``dest``, to pass to :class:`TransformersServer` and as the request's model name.
    """
    shutil.copytree(checkpoint, dest)
    shutil.copy2(SHIM, dest / SHIM.name)
    config_file = dest / "processor_config.json"
    config = json.loads(config_file.read_text())
    config["auto_map"] = {"AutoProcessor": f"{SHIM.stem}.{SHIM_CLASS}"}
    config_file.write_text(json.dumps(config, indent=2) + "\n")
    return dest


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class TransformersServer:
    """``transformers serve`` in a subprocess on a free port of ``127.0.0.1``, offline, on the CPU.

    Use it as a context manager: entering starts the server, waits until ``/health`` answers and every
    checkpoint in ``models`` is loaded; leaving stops it.

    Args:
        models: checkpoint directories to load up front (each made by :func:`servable_copy`).
        workdir: a directory of its own for the server's log (``server.log``) and its Hugging Face home
            (remote code is copied there).
        startup_timeout: seconds allowed for the server to answer and load every model.
        attempts: starts tried; another free port is picked after a start fails because the port was taken
            between choosing it and the server binding it.

    Raises:
        ServerStartError: on entering, when the server does not start within ``startup_timeout``, exits, or
            cannot load a model; the message holds the end of its log.
    """

    def __init__(
        self,
        models: Sequence[Path],
        *,
        workdir: Path,
        startup_timeout: float = 120.0,
        attempts: int = 3,
    ) -> None:
        self.models = [Path(m) for m in models]
        self.workdir = Path(workdir)
        self.startup_timeout = startup_timeout
        self.attempts = attempts
        self.log_file = self.workdir / "server.log"
        self.port = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_start = 0  # where the current start's lines begin in the log

    @property
    def url(self) -> str:
        """The server's root, e.g. ``http://127.0.0.1:PORT``."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        """The OpenAI API root to give a client: :attr:`url` + ``/v1``."""
        return f"{self.url}/v1"

    def log_tail(self, lines: int = _LOG_LINES) -> str:
        """The last ``lines`` lines of the server's log."""
        if not self.log_file.exists():
            return "(no log written)"
        return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])

    # -- lifecycle --

    def start(self) -> TransformersServer:
        """Start the server and load the models (see the class); returns ``self``."""
        missing = [name for name in ("fastapi", "uvicorn") if importlib.util.find_spec(name) is None]
        if missing:
            raise ServerStartError(
                f"transformers serve needs {', '.join(missing)}: install the dev extra "
                f"(pip install -e '.[dev]', which includes transformers[serving])"
            )
        self.workdir.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + self.startup_timeout
        for attempt in range(1, self.attempts + 1):
            proc = self._spawn()
            try:
                self._wait_until_healthy(proc, deadline)
                break
            except ServerStartError:
                taken = "address already in use" in self._log_since_spawn().lower()
                self.stop()
                if not taken or attempt == self.attempts:
                    raise
        try:
            for model in self.models:
                self._load(model, deadline)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 10 s); a no-op when it is not running."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)

    def __enter__(self) -> TransformersServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- internals --

    def _log_since_spawn(self) -> str:
        with self.log_file.open("rb") as log:
            log.seek(self._log_start)
            return log.read().decode(errors="replace")

    def _spawn(self) -> subprocess.Popen[bytes]:
        self.port = _free_port()
        self._log_start = self.log_file.stat().st_size if self.log_file.exists() else 0
        env = {
            **os.environ,
            # Offline and hermetic: no hub, no telemetry, remote code copied under the workdir.
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "HF_HOME": str(self.workdir / "hf-home"),
            # One thread: the tiny model gains nothing from more, and on a busy 2-core machine OpenMP
            # threads wait on each other (see the tiny_vlm_dir fixture).
            "OMP_NUM_THREADS": "1",
            "PYTHONUNBUFFERED": "1",
        }
        command = [
            sys.executable, "-m", "transformers.cli.transformers", "serve",
            "--host", "127.0.0.1", "--port", str(self.port),
            "--device", "cpu",
            "--trust-remote-code",  # the image-only processor beside each checkpoint
            "--model-timeout", "3600",  # never unload a model while the tests run
            "--log-level", "info",
        ]  # fmt: skip
        with self.log_file.open("ab") as log:
            log.write(f"$ {' '.join(command)}\n".encode())
            log.flush()
            self._proc = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env
            )
        return self._proc

    def _fail(self, what: str) -> ServerStartError:
        return ServerStartError(
            f"transformers serve (port {self.port}) {what}; its log ({self.log_file}) ends with:\n"
            f"{self.log_tail()}"
        )

    def _wait_until_healthy(self, proc: subprocess.Popen[bytes], deadline: float) -> None:
        while True:
            code = proc.poll()
            if code is not None:
                raise self._fail(f"exited with status {code} before answering /health")
            try:
                with _LOOPBACK.open(f"{self.url}/health", timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass  # not listening yet
            if time.monotonic() > deadline:
                raise self._fail(f"did not answer /health within {self.startup_timeout:g} s")
            time.sleep(0.1)

    def _load(self, model: Path, deadline: float) -> None:
        """Load ``model`` through ``POST /load_model``, which streams progress events and ends with
        ``ready`` or ``error``."""
        request = urllib.request.Request(
            f"{self.url}/load_model",
            data=json.dumps({"model": str(model)}).encode(),
            headers={"Content-Type": "application/json"},
        )
        left = max(deadline - time.monotonic(), 1.0)
        try:
            with _LOOPBACK.open(request, timeout=left) as response:
                events = [
                    json.loads(line[len(b"data:") :])
                    for line in response.read().splitlines()
                    if line.startswith(b"data:")
                ]
        except (urllib.error.URLError, OSError) as err:
            raise self._fail(f"did not load {model} within {self.startup_timeout:g} s ({err})") from err
        last = events[-1] if events else {}
        if last.get("status") != "ready":
            raise self._fail(f"could not load {model}: {last.get('message', events)}")
