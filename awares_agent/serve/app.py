"""The ASGI app: OpenAI's chat-completions API, answered by AwaRes where it applies, else by the upstream.

:func:`create_app` builds a Starlette app for one :class:`~awares_agent.serve.options.ServeOptions`; uvicorn
runs it (``awares serve``), and tests build it in-process. What a worker process shares between requests is
its :class:`~awares_agent.serve.runtime.Runtime`, opened and closed by the app's lifespan.

Routes: ``POST /v1/chat/completions`` (:func:`chat_completions`), ``GET /v1/models`` (:func:`models`), any
other ``/v1/...`` (:func:`passthrough`), ``GET /health`` and ``GET /metrics``. Every ``/v1`` endpoint checks
the client's key, runs under the request's deadline, answers every failure as an OpenAI-style error and is
counted in the metrics (:func:`_api`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from awares_agent.backends.base import ChatBackend
from awares_agent.graphs.context import RunOptions
from awares_agent.image_store import ImageStore
from awares_agent.images import SourceImage
from awares_agent.policies import policy_options
from awares_agent.serve.auth import APIKeys
from awares_agent.serve.body import parse_json, read_body
from awares_agent.serve.completions import awares_headers, awares_summary, completion
from awares_agent.serve.disconnect import ClientDisconnected, DisconnectWatch
from awares_agent.serve.errors import ServeError, error_body
from awares_agent.serve.metrics import ServeMetrics
from awares_agent.serve.options import ServeOptions
from awares_agent.serve.proxy import PassthroughResponse, ReplyBrokeOff
from awares_agent.serve.routing import AwaresQuery, Passthrough, route_chat
from awares_agent.serve.runtime import Runtime, client_error, deadline_exceeded, upstream_api_key
from awares_agent.serve.streaming import StreamedQuery, sse_answer

__all__ = ["app_from_environment", "chat_completions", "create_app", "models", "passthrough"]

_MODELS_TIMEOUT = 5.0


# --- the chat completions endpoint -----------------------------------------------------------------------


async def chat_completions(request: Request, rt: Runtime, request_id: str) -> Response:
    """``POST /v1/chat/completions``: AwaRes, passed through, or refused (see :mod:`awares_agent.serve`)."""
    deadline: float = request.state.deadline
    raw = await read_body(request.stream(), rt.options.max_body_bytes, request.headers.get("content-length"))
    body = parse_json(raw)
    route = route_chat(body, served_model=rt.options.model)
    if isinstance(route, Passthrough):
        request.state.route = "passthrough"
        changed = await rt.images.forwardable(body)
        if changed or "awares" in body:
            body.pop("awares", None)  # the server's own field, not the upstream's
            raw = _json_bytes(body)
        watch = DisconnectWatch(request.receive)
        try:
            return await watch.run(
                rt.upstream.forward(
                    "POST",
                    "/chat/completions",
                    query=request.url.query,
                    headers=request.headers,
                    body=raw,
                    reason=route.reason,
                    deadline=deadline,
                )
            )
        finally:
            watch.close()
    request.state.route = "awares"
    return await _awares(request, rt, route, request_id, deadline)


async def _awares(
    request: Request, rt: Runtime, query: AwaresQuery, request_id: str, deadline: float
) -> Response:
    image = await rt.images.load(query.image_url)
    source = await _hold(rt.agent.store, image)
    release = _once(lambda: rt.agent.store.release(source.id))
    try:
        policy = query.options.policy or rt.options.policy
        options = _run_options(rt, query, policy, source.width, source.height, request_id)
    except BaseException:
        release()
        raise
    completion_id = f"chatcmpl-{request_id}"
    created = int(time.time())
    if query.stream:
        run = StreamedQuery(request, rt, query, image, options, deadline, release)

        async def finished() -> None:  # also where the stream never started
            run.stop()
            release()

        return StreamingResponse(
            sse_answer(rt, query, run.events(), completion_id, created, policy, request_id),
            media_type="text/event-stream",
            headers={"cache-control": "no-cache", "x-awares-route": "awares", "x-request-id": request_id},
            background=BackgroundTask(finished),
        )
    watch = DisconnectWatch(request.receive)
    try:  # under the request's deadline (see _api)
        result = await watch.run(rt.agent.aask(image, query.question, options=options))
    finally:
        watch.close()
        release()
    summary = awares_summary(result, policy=policy, ignored=query.ignored)
    await rt.served(request_id, query, result)
    body = completion(result, request_id=completion_id, model=query.model, created=created, summary=summary)
    headers = {**awares_headers(summary), "x-awares-route": "awares", "x-request-id": request_id}
    return JSONResponse(body, headers=headers)


async def _hold(store: ImageStore, image: bytes) -> SourceImage:
    """The image held in the store for the request (its header read and a bomb refused, off the event loop);
    if the request is cancelled meanwhile, it is let go as soon as it is held."""
    holding = asyncio.ensure_future(asyncio.to_thread(store.hold, image))
    try:
        return await asyncio.shield(holding)
    except asyncio.CancelledError:
        holding.add_done_callback(
            lambda done: None if done.cancelled() or done.exception() else store.release(done.result().id)
        )
        raise


def _once(action: Callable[[], None]) -> Callable[[], None]:
    """``action``, run by the first call only."""
    done = False

    def run() -> None:
        nonlocal done
        if not done:
            done = True
            action()

    return run


def _run_options(
    rt: Runtime, query: AwaresQuery, policy: str, width: int, height: int, request_id: str
) -> RunOptions:
    """The query's run options: its policy's, then its own budget and round limit."""
    options = policy_options(policy, rt.options.agent, width=width, height=height, sample_id=request_id)
    asked = query.options
    if asked.max_rounds is not None:
        if policy != "awares":
            raise ServeError(
                400,
                "invalid_awares_options",
                f"awares.max_rounds applies to the awares policy only; {policy!r} sets its own rounds",
                param="awares",
            )
        options = dataclasses.replace(options, max_rounds=asked.max_rounds)
    if asked.max_rtr is not None:
        options = dataclasses.replace(options, max_rtr=asked.max_rtr)
    return options


# --- the other endpoints ---------------------------------------------------------------------------------


async def models(request: Request, rt: Runtime, request_id: str) -> Response:
    """``GET /v1/models``: the upstream's list; the served model alone if the upstream cannot say."""
    request.state.route = "passthrough"
    deadline = min(request.state.deadline, asyncio.get_running_loop().time() + _MODELS_TIMEOUT)
    try:
        reply = await rt.upstream.forward(
            "GET", "/models", headers=request.headers, body=None, reason="models", deadline=deadline
        )
    except ServeError:
        reply = None
    if reply is not None and reply.status_code == 200:
        return reply
    if isinstance(reply, StreamingResponse) and reply.background is not None:
        await reply.background()
    data = [{"id": rt.options.model, "object": "model", "created": 0, "owned_by": "awares"}]
    return JSONResponse({"object": "list", "data": data}, headers={"x-awares-models": "configured"})


async def passthrough(request: Request, rt: Runtime, request_id: str) -> Response:
    """Any other ``/v1/...`` request: to the upstream, its JSON body's media URLs checked."""
    request.state.route = "passthrough"
    deadline: float = request.state.deadline
    raw = await read_body(request.stream(), rt.options.max_body_bytes, request.headers.get("content-length"))
    if raw.lstrip()[:1] in (b"{", b"["):  # JSON, whatever its content type says
        try:
            body = parse_json(raw)
        except ServeError:
            body = None  # not JSON after all: the upstream's to judge
        if body is not None and await rt.images.forwardable(body):
            raw = _json_bytes(body)
    path = request.url.path.removeprefix("/v1")
    watch = DisconnectWatch(request.receive)
    try:
        return await watch.run(
            rt.upstream.forward(
                request.method,
                path,
                query=request.url.query,
                headers=request.headers,
                body=raw or None,
                reason="endpoint",
                deadline=deadline,
            )
        )
    finally:
        watch.close()


async def health(request: Request) -> Response:
    """``GET /health``: the process is up (no key needed)."""
    return JSONResponse({"status": "ok"})


async def metrics(request: Request) -> Response:
    """``GET /metrics``: Prometheus' text format (no key needed)."""
    rt: Runtime = request.app.state.runtime
    text, content_type = rt.metrics.exposition()
    return Response(text, media_type=content_type)


def _json_bytes(body: Any) -> bytes:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


# --- the app ---------------------------------------------------------------------------------------------

Handler = Callable[[Request, Runtime, str], Awaitable[Response]]


def _api(handler: Handler, name: str) -> Callable[[Request], Awaitable[Response]]:
    """An ``/v1`` endpoint: the client key checked, every failure an OpenAI-style error, metrics counted."""

    async def endpoint(request: Request) -> Response:
        rt: Runtime = request.app.state.runtime
        request_id = rt.trajectories.new_id() if rt.trajectories is not None else uuid.uuid4().hex
        request.state.route = "other"
        # The whole request, reading its body included, runs under the deadline (a stream: until it ends).
        request.state.deadline = asyncio.get_running_loop().time() + rt.options.deadline
        started = time.perf_counter()
        streamed = False
        rt.metrics.in_flight.inc()
        try:
            if rt.keys is not None:
                rt.keys.check(request.headers.get("authorization"))
            async with asyncio.timeout_at(request.state.deadline):
                response = await handler(request, rt, request_id)
            if isinstance(response, PassthroughResponse):
                response.body_iterator = _passthrough_body(rt, response.body_iterator, started)
            # A streamed response is in flight, and observes its latency, until its body ends.
            streamed = isinstance(response, StreamingResponse)
            return response
        except (ClientDisconnected, ClientDisconnect):  # Starlette's: hung up before the body was read
            rt.metrics.errors.labels(code="client_disconnected").inc()
            return Response(status_code=499)  # nobody is listening; uvicorn drops it
        except TimeoutError:
            return _error_response(rt, deadline_exceeded(), request, request_id)
        except Exception as exc:
            return _error_response(rt, client_error(exc, request_id), request, request_id)
        finally:
            rt.metrics.in_flight.dec()
            rt.metrics.requests.labels(route=request.state.route).inc()
            if not streamed:
                rt.metrics.latency.labels(route=request.state.route).observe(time.perf_counter() - started)

    endpoint.__name__ = name
    return endpoint


async def _passthrough_body(rt: Runtime, body: AsyncIterator[bytes], started: float) -> AsyncIterator[bytes]:
    """A passed-through reply's body, its request counted in flight until the body ends; then its latency is
    observed, and a client that hung up or an upstream that broke off is counted by its error code."""
    rt.metrics.in_flight.inc()
    failed: str | None = "client_disconnected"  # unless the body reaches its end
    try:
        async with contextlib.aclosing(body):
            async for chunk in body:
                yield chunk
        failed = None
    except ReplyBrokeOff as exc:
        failed = exc.error.code
        raise
    finally:
        if failed is not None:
            rt.metrics.errors.labels(code=failed).inc()
        rt.metrics.in_flight.dec()
        rt.metrics.latency.labels(route="passthrough").observe(time.perf_counter() - started)


def _error_response(rt: Runtime, error: ServeError, request: Request, request_id: str) -> JSONResponse:
    if request.state.route == "other":
        request.state.route = "refused"
    rt.metrics.errors.labels(code=error.code).inc()
    headers = {**error.headers, "x-request-id": request_id}
    return JSONResponse(error.body(), status_code=error.status, headers=headers)


async def _not_found(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 404
    if status == 405:
        message = f"{request.method} is not allowed on {request.url.path}"
        return JSONResponse(
            error_body(message, "invalid_request_error", "method_not_allowed"), status_code=405
        )
    message = (
        f"no route for {request.method} {request.url.path}: this server serves /v1/..., /health and /metrics"
    )
    return JSONResponse(error_body(message, "invalid_request_error", "not_found"), status_code=404)


def create_app(options: ServeOptions, backend: ChatBackend | None = None) -> Starlette:
    """The server's ASGI app.

    Args:
        options: the server's options.
        backend: the AwaRes agent's backend (default: the upstream, :func:`upstream_backend`); the upstream
            still takes every request passed through.

    Raises:
        ConfigError: an option that cannot work (a key variable not set, a keys file that cannot be read).
    """
    upstream_api_key(options)  # fail now, not at the first request
    if options.api_keys_file:
        APIKeys.from_file(options.api_keys_file)
    if options.trajectories:
        Path(options.trajectories).mkdir(parents=True, exist_ok=True)
    metrics_ = ServeMetrics()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with Runtime.open(options, metrics_, backend) as runtime:
            app.state.runtime = runtime
            yield

    routes = [
        Route("/v1/chat/completions", _api(chat_completions, "chat_completions"), methods=["POST"]),
        Route("/v1/models", _api(models, "models"), methods=["GET"]),
        Route(
            "/v1/{path:path}",
            _api(passthrough, "passthrough"),
            methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
        ),
        Route("/health", health, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
    ]
    return Starlette(routes=routes, lifespan=lifespan, exception_handlers={HTTPException: _not_found})


def app_from_environment() -> Starlette:
    """The app of a worker of ``awares serve --workers N`` (its options read from the environment)."""
    return create_app(ServeOptions.from_environment())
