"""A client that hangs up cancels the work done for it, the upstream calls included.

:class:`DisconnectWatch` listens on a request's ASGI ``receive`` channel (its body already read) for
``http.disconnect`` and cancels the tasks given to it: the AwaRes query, or the wait for the upstream's reply
headers. Cancelling the query cancels the upstream call in flight (the OpenAI client closes its connection),
so a client that gives up stops costing upstream time. It does not rely on the ASGI server or framework
noticing the disconnect: a streamed response is only told when it next writes.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import Awaitable
from typing import Any, TypeVar

__all__ = ["ClientDisconnected", "DisconnectWatch", "cancel_once"]

T = TypeVar("T")


class ClientDisconnected(Exception):
    """The client hung up before its response was complete."""


#: The tasks :func:`cancel_once` has cancelled (weakly held: a finished task is forgotten with it).
_CANCELLED: weakref.WeakSet[asyncio.Future[Any]] = weakref.WeakSet()


def cancel_once(task: asyncio.Future[Any]) -> None:
    """Cancel ``task`` unless it is done or this function has cancelled it already.

    A second cancellation would land in the task's own clean-up: LangGraph, cancelled, cancels and awaits
    its node tasks (the upstream call among them), and a second cancellation would cut that short and
    leave the upstream call running. The task's own count (``Task.cancelling()``) cannot say whether it is
    being cancelled: a library it runs may cancel it and catch that cancellation without taking the count
    back (the HTTP client's, waiting for the upstream's reply headers), and a client's hang-up would then
    never reach the upstream call.
    """
    if task.done() or task in _CANCELLED:
        return
    _CANCELLED.add(task)
    task.cancel()


class DisconnectWatch:
    """Watches one request for its client's disconnect (create it once the body is read).

    Args:
        receive: the request's ASGI ``receive`` callable.
    """

    def __init__(self, receive: Any) -> None:
        self._receive = receive
        self._task = asyncio.ensure_future(self._watch())

    async def _watch(self) -> None:
        while True:
            message = await self._receive()
            if message["type"] == "http.disconnect":
                return

    @property
    def gone(self) -> bool:
        """Whether the client has hung up."""
        return self._task.done() and not self._task.cancelled()

    def cancels(self, task: asyncio.Future[Any]) -> None:
        """Cancel ``task`` when the client hangs up."""
        self._task.add_done_callback(lambda watch: None if watch.cancelled() else cancel_once(task))

    async def run(self, work: Awaitable[T]) -> T:
        """Await ``work``, cancelled if the client hangs up first.

        Raises:
            ClientDisconnected: the client hung up (``work`` was cancelled).
        """
        task = asyncio.ensure_future(work)
        self.cancels(task)
        try:
            return await task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if self.gone and not (current is not None and current.cancelling()):
                raise ClientDisconnected from None
            raise
        finally:
            if not task.done():
                cancel_once(task)
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    def close(self) -> None:
        """Stop watching."""
        self._task.cancel()
