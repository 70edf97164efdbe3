"""``awares serve``: the command that runs the server (:mod:`awares_agent.serve`) under uvicorn.

Its flags are generated from :class:`~awares_agent.serve.options.ServeOptions` (the server's own), the
upstream-call fields of :class:`~awares_agent.backend_factory.BackendOptions` (``--timeout``,
``--max-retries``, ``--image-format``, ``--image-detail``, ``--max-new-tokens``) and
:class:`~awares_agent.config.AgentConfig` (``--protocol``, ``--crop-set``, ``--max-rtr``...).

With ``--workers N`` the options reach each worker process as JSON in its environment (the upstream key's
*variable name*, never the key), and the Prometheus client keeps every worker's values in a folder
(``PROMETHEUS_MULTIPROC_DIR``, a fresh temporary one unless set), which ``/metrics`` adds up.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile

from rich.console import Console

from awares_agent.backend_factory import BackendOptions
from awares_agent.cli_options import (
    Command,
    add_agent_options,
    add_options,
    agent_config,
    config_options,
    options,
)
from awares_agent.errors import ConfigError
from awares_agent.serve.options import ServeOptions

__all__ = ["COMMAND", "UPSTREAM_CALL_FIELDS", "serve", "serve_options"]

#: The :class:`BackendOptions` fields that set how the upstream is called.
UPSTREAM_CALL_FIELDS = (
    "timeout",
    "max_retries",
    "max_reply_bytes",
    "image_format",
    "image_detail",
    "max_new_tokens",
)

_MULTIPROCESS = "PROMETHEUS_MULTIPROC_DIR"
_FACTORY = "awares_agent.serve.app:app_from_environment"


def _add_upstream_options(parser: argparse.ArgumentParser) -> None:
    add_options(parser, BackendOptions, names=UPSTREAM_CALL_FIELDS)


def serve_options(args: argparse.Namespace) -> ServeOptions:
    """The :class:`ServeOptions` the parsed flags name.

    Raises:
        ConfigError: an invalid value, every problem named.
    """
    own = {name: getattr(args, name) for name in ServeOptions.model_fields if hasattr(args, name)}
    return ServeOptions.of(**own, agent=agent_config(args), backend=options(args, BackendOptions))


def serve(args: argparse.Namespace, console: Console) -> int:
    """``awares serve``: run the server until interrupted."""
    try:
        import uvicorn

        from awares_agent.serve.app import create_app
    except ImportError as exc:
        raise ConfigError(
            f'awares serve needs the serve extra ({exc.name} is missing): pip install "awares[serve]"'
        ) from None
    settings = serve_options(args)
    app = create_app(settings)  # checks the keys file and the upstream key's variable before anything starts
    console.print(
        f"awares serve: AwaRes over {settings.model} at {settings.upstream}, on "
        f"http://{settings.host}:{settings.port}/v1 ({settings.workers} worker(s), policy {settings.policy})",
        highlight=False,
        soft_wrap=True,
    )
    log_level = "info" if getattr(args, "verbose", False) else "warning"
    if settings.workers == 1:
        uvicorn.run(app, host=settings.host, port=settings.port, log_level=log_level, lifespan="on")
        return 0
    os.environ.update(settings.to_environment())
    made = None
    if not os.environ.get(_MULTIPROCESS):
        made = tempfile.mkdtemp(prefix="awares-serve-metrics-")
        os.environ[_MULTIPROCESS] = made
    try:
        uvicorn.run(
            _FACTORY,
            factory=True,
            host=settings.host,
            port=settings.port,
            workers=settings.workers,
            log_level=log_level,
            lifespan="on",
        )
    finally:
        if made is not None:
            shutil.rmtree(made, ignore_errors=True)
    return 0


COMMAND = Command(
    "serve",
    help="serve the OpenAI API: questions about an image answered by AwaRes over an upstream server",
    description=(
        "Serve the OpenAI Chat Completions API (POST /v1/chat/completions, GET /v1/models, /health, "
        "/metrics). A question about one image is answered by the AwaRes agent over --upstream (the "
        "low-resolution view first, the crops the model asks for, then the answer), as an ordinary chat "
        "completion with what AwaRes did in its awares field and x-awares-* headers; everything else is "
        "passed to the upstream. Clients send images as data: URIs (http(s) URLs with --allow-image-urls)."
    ),
    run=serve,
    options=(config_options(ServeOptions), _add_upstream_options, add_agent_options),
)
"""The ``awares serve`` row of the command table (:data:`awares_agent.cli.COMMANDS`)."""
