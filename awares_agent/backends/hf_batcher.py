"""The micro-batcher: concurrent calls from threads become one batched generation.

Concurrent :meth:`~awares_agent.backends.transformers_backend.TransformersBackend.complete` calls (from
``AwaResAgent.ask_many``, say) each submit their prepared turn here; a request waits up to ``wait_s`` for
others, up to ``max_size``, and one run of the model serves them all. No extra thread is started: the first
waiting caller runs each batch.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

RequestT = TypeVar("RequestT")
OutcomeT = TypeVar("OutcomeT")


@dataclass
class _Pending(Generic[RequestT, OutcomeT]):
    """A request waiting in the micro-batcher, and where its result goes."""

    request: RequestT
    arrived: float
    done: bool = False
    outcome: OutcomeT | None = None
    error: BaseException | None = None


class MicroBatcher(Generic[RequestT, OutcomeT]):
    """Gathers concurrent requests into batches; the first waiting caller runs each batch (no extra thread).

    A caller whose request is queued either becomes the *leader* (if no one is) or waits. The leader waits
    until ``max_size`` requests are queued or the oldest has waited ``wait_s``, takes up to ``max_size`` of
    them, runs them, hands every caller its own result or exception, and repeats until its own request is
    served; then another waiting caller takes over. Requests that arrive while a batch runs queue up and
    form the next batch.

    Args:
        run: runs a batch of requests and returns one outcome per request, in order.
        max_size: most requests per batch.
        wait_s: how long the oldest queued request waits for others before its batch runs.
    """

    def __init__(self, run: Callable[[list[RequestT]], list[OutcomeT]], max_size: int, wait_s: float) -> None:
        self._run = run
        self._max = max_size
        self._wait_s = wait_s
        self._cond = threading.Condition()
        self._queue: list[_Pending[RequestT, OutcomeT]] = []
        self._leader = False

    def submit(self, request: RequestT) -> OutcomeT:
        """Queue ``request`` and return its outcome once a batch has served it.

        Args:
            request: the request.

        Raises:
            BaseException: whatever running ``request`` raised (a failing batch is rerun one request at a
                time, so an error reaches only the request that causes it).
        """
        pending: _Pending[RequestT, OutcomeT] = _Pending(request, time.monotonic())
        with self._cond:
            self._queue.append(pending)
            self._cond.notify_all()
            while not pending.done and self._leader:
                self._cond.wait()
            lead = not pending.done
            if lead:
                self._leader = True
        if lead:
            try:
                while not pending.done:
                    self._execute(self._take())
            finally:
                with self._cond:
                    self._leader = False
                    self._cond.notify_all()
        if pending.error is not None:
            raise pending.error
        assert pending.outcome is not None
        return pending.outcome

    def _take(self) -> list[_Pending[RequestT, OutcomeT]]:
        with self._cond:
            deadline = self._queue[0].arrived + self._wait_s
            while len(self._queue) < self._max and (left := deadline - time.monotonic()) > 0:
                self._cond.wait(left)
            batch, self._queue[: self._max] = self._queue[: self._max], []
            return batch

    def _execute(self, batch: list[_Pending[RequestT, OutcomeT]]) -> None:
        try:
            outcomes = self._run([p.request for p in batch])
        except BaseException as exc:
            if len(batch) == 1:
                batch[0].error = exc
            else:  # run each alone, so that an error reaches only the request that causes it
                for p in batch:
                    self._execute([p])
                return
        else:
            for p, o in zip(batch, outcomes, strict=True):
                p.outcome = o
        with self._cond:
            for p in batch:
                p.done = True
            self._cond.notify_all()
