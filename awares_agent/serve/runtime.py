"""What one worker process of the server shares between requests, opened at startup and closed at shutdown.

:class:`Runtime` holds the agent (one compiled graph over the upstream), its image store, the pooled HTTP
clients (the upstream's, the image fetcher's), the client keys, the trajectory log and the metrics. Nothing
about a request outlives the request, so any number of workers and replicas can serve one upstream.

:func:`client_error` is what a client gets for a failure, and what the server's log gets (the detail a client
does not: an upstream's reply, a bug's traceback, redacted).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
from collections.abc import AsyncIterator

from awares_agent.agent import AskResult, AwaResAgent
from awares_agent.backends.base import ChatBackend
from awares_agent.backends.openai_compat import PLACEHOLDER_API_KEY, OpenAIBackend
from awares_agent.errors import AwaresError, ConfigError
from awares_agent.image_store import ImageStore
from awares_agent.redact import install_log_redaction, redact
from awares_agent.serve.auth import APIKeys
from awares_agent.serve.errors import ServeError, serve_error
from awares_agent.serve.fetch import ImageFetcher
from awares_agent.serve.media import ClientImages
from awares_agent.serve.metrics import ServeMetrics
from awares_agent.serve.options import ServeOptions
from awares_agent.serve.proxy import Upstream
from awares_agent.serve.routing import AwaresQuery
from awares_agent.serve.trajectories import TrajectoryLog

__all__ = ["Runtime", "client_error", "deadline_exceeded", "upstream_api_key", "upstream_backend"]

log = logging.getLogger("awares_agent.serve")


def upstream_api_key(options: ServeOptions) -> str | None:
    """The upstream's key, from the environment variable ``--upstream-api-key-env`` names (``None``: none).

    Raises:
        ConfigError: the variable is named but not set.
    """
    name = options.upstream_api_key_env
    if name is None:
        return None
    key = os.environ.get(name)
    if not key:
        raise ConfigError(f"--upstream-api-key-env {name}: the environment variable {name} is not set")
    return key


def upstream_backend(options: ServeOptions) -> OpenAIBackend:
    """The AwaRes agent's backend: the upstream, with the upstream-call settings and the request deadline.

    Raises:
        ConfigError: an invalid setting, or the key's variable is not set.
    """
    settings = options.backend
    return OpenAIBackend(
        options.model,
        base_url=options.upstream,
        api_key=upstream_api_key(options) or PLACEHOLDER_API_KEY,
        timeout=settings.timeout,
        max_retries=settings.max_retries,
        max_reply_bytes=settings.max_reply_bytes,
        # One upstream call never needs longer than the whole request may take.
        deadline=options.deadline,
        image_format=settings.image_format,
        image_detail=settings.image_detail,
        max_tokens=settings.max_new_tokens,
    )


@dataclasses.dataclass
class Runtime:
    """What one worker process shares between requests.

    Attributes:
        options: the server's options.
        agent: the AwaRes agent over the upstream.
        upstream: the upstream, for requests passed through.
        images: the rules for a client's image URLs (and the fetcher, if fetching is on).
        metrics: the app's metrics.
        keys: the client keys, or ``None`` (no key needed).
        trajectories: the trajectory log, or ``None``.
    """

    options: ServeOptions
    agent: AwaResAgent
    upstream: Upstream
    images: ClientImages
    metrics: ServeMetrics
    keys: APIKeys | None
    trajectories: TrajectoryLog | None

    @classmethod
    @contextlib.asynccontextmanager
    async def open(
        cls, options: ServeOptions, metrics: ServeMetrics, backend: ChatBackend | None = None
    ) -> AsyncIterator[Runtime]:
        """Open everything a worker needs, and close it all when the server stops."""
        install_log_redaction()
        keys = APIKeys.from_file(options.api_keys_file) if options.api_keys_file else None
        agent_backend = backend if backend is not None else upstream_backend(options)
        trajectories = (
            TrajectoryLog(options.trajectories, workers=options.workers) if options.trajectories else None
        )
        store = ImageStore(
            root=trajectories.images if trajectories is not None else None,
            max_pixels=options.agent.max_image_pixels,
        )
        fetcher = (
            ImageFetcher(
                max_bytes=options.max_image_bytes,
                timeout=options.image_fetch_timeout,
                allowed_networks=options.allow_image_networks,
            )
            if options.allow_image_urls
            else None
        )
        runtime = cls(
            options=options,
            agent=AwaResAgent(agent_backend, options.agent, store=store),
            upstream=Upstream(
                options.upstream, api_key=upstream_api_key(options), read_timeout=options.backend.timeout
            ),
            images=ClientImages(max_bytes=options.max_image_bytes, fetcher=fetcher),
            metrics=metrics,
            keys=keys,
            trajectories=trajectories,
        )
        try:
            yield runtime
        finally:
            await runtime.upstream.aclose()
            if fetcher is not None:
                await fetcher.aclose()
            close = getattr(agent_backend, "aclose", None)
            if close is not None and backend is None:  # a backend passed in is its owner's to close
                await close()
            if trajectories is not None:
                trajectories.close()
            metrics.process_exited(os.getpid())

    async def served(self, request_id: str, query: AwaresQuery, result: AskResult) -> None:
        """Count a finished query, and append it to the trajectory log (a failure there is logged, not the
        client's)."""
        self.metrics.query(result)
        if self.trajectories is None:
            return
        try:
            await self.trajectories.append(request_id, result, question=query.question)
        except (OSError, AwaresError, ValueError) as exc:
            self.metrics.errors.labels(code="trajectory_write_failed").inc()
            log.error("request %s: the trajectory could not be written: %s", request_id, redact(str(exc)))


def client_error(exc: BaseException, request_id: str) -> ServeError:
    """The client's error for ``exc``; the detail a client does not get (an upstream's reply, a bug's
    traceback) goes to the log, redacted."""
    if isinstance(exc, TimeoutError):
        return deadline_exceeded()
    error = serve_error(exc if isinstance(exc, AwaresError) else AwaresError(), request_id)
    if error.status == 500:
        log.error("request %s failed: %s: %s", request_id, type(exc).__name__, redact(str(exc)), exc_info=exc)
    elif error.code.startswith("upstream_"):
        log.warning("request %s: %s", request_id, redact(str(exc)))
    return error


def deadline_exceeded() -> ServeError:
    """The error of a request that outlived ``--deadline``."""
    return ServeError(
        504,
        "deadline_exceeded",
        "the request did not complete within this server's deadline (--deadline); try a smaller image or "
        "fewer crops (awares.policy low-res), or retry later",
        type="timeout_error",
    )
