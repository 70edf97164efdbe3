"""An AwaRes answer as server-sent events, in OpenAI's ``chat.completion.chunk`` format.

:class:`StreamedQuery` runs the query (``AwaResAgent.astream``) in a task of its own; :func:`sse_answer`
turns its events into the stream a client reads: a first chunk with the assistant's role, the answer's text
as it is generated (:class:`~awares_agent.serve.answer_stream.AnswerStream` keeps crop requests out), a
finish chunk with the ``awares`` field, the usage chunk if ``stream_options.include_usage`` asked for it, and
``data: [DONE]``. A failure after the first byte is an ``error`` event (what OpenAI's clients raise from);
a client that hangs up cancels the query, its upstream call included.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from starlette.requests import Request

from awares_agent.agent import AgentEvent
from awares_agent.graphs.context import RunOptions
from awares_agent.serve.answer_stream import AnswerStream
from awares_agent.serve.completions import awares_summary, chunk, sse, usage_of
from awares_agent.serve.disconnect import ClientDisconnected, DisconnectWatch, cancel_once
from awares_agent.serve.routing import AwaresQuery
from awares_agent.serve.runtime import Runtime, client_error

__all__ = ["StreamedQuery", "sse_answer"]

_END = object()


class StreamedQuery:
    """An AwaRes query run in a task of its own, started at once, its events read from a queue.

    The task runs under the request's deadline and is cancelled if the client hangs up (see
    :mod:`awares_agent.serve.disconnect`). It is started by the handler, not by the response's body: the
    ASGI framework streams a body inside a cancel scope of its own, whose cancellation is delivered
    again and again to every task started inside it, which would cut short the agent's own clean-up (the
    cancellation of its upstream call).

    Args:
        request: the client's request (its body read), watched for a hang-up.
        rt: the worker's runtime.
        query: the query.
        image: the image's bytes.
        options: the query's run options.
        deadline: the event loop's time by which the query must be done.
        release: lets go of the image in the store (called once the query is over).
    """

    def __init__(
        self,
        request: Request,
        rt: Runtime,
        query: AwaresQuery,
        image: bytes,
        options: RunOptions,
        deadline: float,
        release: Callable[[], None],
    ) -> None:
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._watch = DisconnectWatch(request.receive)
        self._task = asyncio.ensure_future(self._produce(rt, query, image, options, deadline, release))
        self._watch.cancels(self._task)

    async def _produce(
        self,
        rt: Runtime,
        query: AwaresQuery,
        image: bytes,
        options: RunOptions,
        deadline: float,
        release: Callable[[], None],
    ) -> None:
        try:
            async with asyncio.timeout_at(deadline):
                async for event in rt.agent.astream(image, query.question, options=options):
                    self._queue.put_nowait(event)
        except BaseException as exc:
            self._queue.put_nowait(exc)
            if isinstance(exc, asyncio.CancelledError):
                raise
        finally:
            release()
            self._queue.put_nowait(_END)

    async def events(self) -> AsyncIterator[AgentEvent | BaseException]:
        """The query's agent events, then its failure if it failed."""
        try:
            while (item := await self._queue.get()) is not _END:
                if isinstance(item, asyncio.CancelledError) and self._watch.gone:
                    item = ClientDisconnected()
                yield item
        finally:
            self.stop()

    def stop(self) -> None:
        """Stop watching, and cancel the query if it is still running (idempotent)."""
        self._watch.close()
        cancel_once(self._task)


async def sse_answer(
    rt: Runtime,
    query: AwaresQuery,
    events: AsyncIterator[AgentEvent | BaseException],
    completion_id: str,
    created: int,
    policy: str,
    request_id: str,
) -> AsyncIterator[bytes]:
    """The SSE stream of an AwaRes query (see the module docstring).

    Args:
        rt: the worker's runtime.
        query: the query.
        events: the query's events (:meth:`StreamedQuery.events`).
        completion_id: the ``id`` of every chunk.
        created: the ``created`` time of every chunk.
        policy: the crop policy the query runs under.
        request_id: the request's id.
    """
    started = time.perf_counter()
    text = AnswerStream(rt.options.agent.protocol)

    def piece(content: str) -> bytes:
        return sse(
            chunk(request_id=completion_id, model=query.model, created=created, delta={"content": content})
        )

    rt.metrics.in_flight.inc()
    ended = False  # the stream reached its end or its error: otherwise the client hung up
    try:
        yield sse(
            chunk(
                request_id=completion_id,
                model=query.model,
                created=created,
                delta={"role": "assistant", "content": ""},
            )
        )
        async for event in events:
            if isinstance(event, BaseException):
                ended = True
                error = _stream_error(rt, event, request_id)
                if error is not None:
                    yield sse(error)
                    yield sse("[DONE]")
                return
            out = ""
            if event.type == "token":
                out = text.feed(event.data.get("text", ""))
            elif event.type == "model":
                out = text.turn_over(event.data["kind"], event.data.get("text"))
            elif event.type == "answer":
                out = text.answered(event.data.get("answer"))
            elif event.type == "result" and event.result is not None:
                ended = True
                result = event.result
                if text.stray:
                    rt.metrics.stray.inc(text.stray)
                summary = awares_summary(result, policy=policy, ignored=query.ignored)
                await rt.served(request_id, query, result)
                yield sse(
                    chunk(
                        request_id=completion_id,
                        model=query.model,
                        created=created,
                        delta={},
                        finish_reason="stop",
                        awares=summary,
                    )
                )
                if query.include_usage:
                    yield sse(
                        chunk(
                            request_id=completion_id,
                            model=query.model,
                            created=created,
                            usage=usage_of(result),
                        )
                    )
                yield sse("[DONE]")
            if out:
                yield piece(out)
    finally:
        if not ended:
            rt.metrics.errors.labels(code="client_disconnected").inc()
        rt.metrics.in_flight.dec()
        rt.metrics.latency.labels(route="awares").observe(time.perf_counter() - started)


def _stream_error(rt: Runtime, exc: BaseException, request_id: str) -> dict[str, Any] | None:
    """The ``error`` event a failed stream ends with (``None``: the client is gone, nothing to send)."""
    if isinstance(exc, ClientDisconnected | asyncio.CancelledError):
        rt.metrics.errors.labels(code="client_disconnected").inc()
        return None
    error = client_error(exc, request_id)
    rt.metrics.errors.labels(code=error.code).inc()
    return error.body()
