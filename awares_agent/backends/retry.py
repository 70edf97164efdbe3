"""Retries within a deadline: how long an attempt may take, whether a failed one is tried again, and when.

:class:`RetryPolicy` holds the rules of one backend's calls; :func:`retry` and :func:`aretry` drive one call's
attempts under them, the one sleeping between attempts and the other awaiting, and differ in nothing else.
The backend supplies the attempt and a ``failed`` callback that judges each failure (usually by asking
:meth:`RetryPolicy.wait`) and raises the error to report when no retry is due.

The rules. ``timeout`` bounds each attempt as a whole; ``deadline`` bounds the call, every attempt and every
wait between them included, so an attempt gets the timeout or what is left of the deadline if that is less.
A failure the backend judges retryable is tried again while retries are left, after an exponential backoff
(0.5 s doubling, capped at 8 s, with a little jitter) or the positive wait the server asked for
(:func:`retry_after`). A wait that would end past the deadline is not taken: the call gives up at once and
says why.
"""

from __future__ import annotations

import asyncio
import email.utils
import math
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC
from typing import TypeVar

__all__ = [
    "DEFAULT_MAX_RETRIES",
    "DEFAULT_TIMEOUT",
    "DEFAULT_WAIT_ALLOWANCE",
    "CallState",
    "GiveUp",
    "RetryPolicy",
    "aretry",
    "attempts_text",
    "retry",
    "retry_after",
]

T = TypeVar("T")

#: Seconds allowed for each attempt when none is configured.
DEFAULT_TIMEOUT = 60.0

#: Retries after a retryable failure when none is configured.
DEFAULT_MAX_RETRIES = 3

#: Seconds a call may spend waiting between attempts when no deadline is given (see :meth:`RetryPolicy.of`).
DEFAULT_WAIT_ALLOWANCE = 30.0

_INITIAL_BACKOFF, _MAX_BACKOFF = 0.5, 8.0


@dataclass
class CallState:
    """Where one call stands: its end, the retries made, how its last attempt was bounded."""

    end: float  # time.monotonic() by which the call must be over
    retries: int = 0
    cut_by_deadline: bool = False  # the last attempt had less than the full timeout


class GiveUp(Exception):
    """No retry is due. ``note`` says why when the call gives up before its retries ran out, else ``None``."""

    def __init__(self, note: str | None = None) -> None:
        super().__init__(note)
        self.note = note


@dataclass(frozen=True)
class RetryPolicy:
    """The timeout, retries and deadline of a backend's calls.

    Args:
        timeout: seconds allowed for each attempt as a whole.
        max_retries: retries after a retryable failure; 0 disables them.
        deadline: seconds allowed for one call, every attempt and every wait between them included.
    """

    timeout: float
    max_retries: int
    deadline: float

    @classmethod
    def of(cls, timeout: float, max_retries: int, deadline: float | None = None) -> RetryPolicy:
        """The policy, with the default deadline when ``deadline`` is ``None``: every attempt's full
        allowance plus :data:`DEFAULT_WAIT_ALLOWANCE` seconds of waiting."""
        if deadline is None:
            deadline = timeout * (max_retries + 1) + DEFAULT_WAIT_ALLOWANCE
        return cls(float(timeout), max_retries, float(deadline))

    def start(self) -> CallState:
        """A new call's state, its deadline counted from now."""
        return CallState(end=time.monotonic() + self.deadline)

    def allowance(self, call: CallState) -> float:
        """Seconds for the next attempt: the timeout, or what is left of the deadline if that is less."""
        left = call.end - time.monotonic()
        call.cut_by_deadline = left < self.timeout
        return max(min(self.timeout, left), 0.001)

    def wait(self, call: CallState, *, retryable: bool, asked: float | None = None) -> float:
        """The seconds to wait before retrying a failed attempt of ``call`` (counted as a retry made).

        Args:
            call: the call's state.
            retryable: whether the failure is worth another attempt.
            asked: the wait the server asked for (:func:`retry_after`), instead of the backoff.

        Raises:
            GiveUp: no retry is due: the failure is not retryable, no retries are left, or the wait would end
                past the deadline (then its ``note`` says so).
        """
        if not retryable or call.retries >= self.max_retries:
            raise GiveUp
        if asked is not None:
            wait = asked
        else:
            wait = min(_INITIAL_BACKOFF * 2.0**call.retries, _MAX_BACKOFF) * (1 - 0.25 * random.random())
        if time.monotonic() + wait >= call.end:
            tried = attempts_text(call.retries + 1)
            if asked is not None:
                raise GiveUp(
                    f"the server asked to retry after {_seconds(asked)} s, which is past the "
                    f"{self.deadline:g} s deadline; gave up after {tried}"
                )
            raise GiveUp(
                f"no time was left within the {self.deadline:g} s deadline for another attempt; gave up "
                f"after {tried}"
            )
        call.retries += 1
        return wait


def retry(
    policy: RetryPolicy,
    attempt: Callable[[CallState, float], T],
    failed: Callable[[Exception, CallState], float],
    retry_on: tuple[type[Exception], ...],
) -> T:
    """Run ``attempt(call, allowance)`` until it returns, sleeping between attempts.

    Args:
        policy: the timeout, retries and deadline.
        attempt: one attempt, given the call's state and its seconds.
        failed: given an attempt's failure (one of ``retry_on``), the seconds to wait before the next attempt;
            it raises the error to report when no retry is due.
        retry_on: the failures ``failed`` judges; any other ends the call as it is.
    """
    call = policy.start()
    while True:
        try:
            return attempt(call, policy.allowance(call))
        except retry_on as err:
            wait = failed(err, call)
        time.sleep(wait)


async def aretry(
    policy: RetryPolicy,
    attempt: Callable[[CallState, float], Awaitable[T]],
    failed: Callable[[Exception, CallState], float],
    retry_on: tuple[type[Exception], ...],
) -> T:
    """:func:`retry` for an async ``attempt``, awaiting between attempts."""
    call = policy.start()
    while True:
        try:
            return await attempt(call, policy.allowance(call))
        except retry_on as err:
            wait = failed(err, call)
        await asyncio.sleep(wait)


def retry_after(headers: Mapping[str, str]) -> float | None:
    """The seconds a server asked to wait before retrying (``retry-after-ms``, then ``retry-after`` in
    seconds or as an HTTP date); ``None`` when it asked for nothing usable (a wait of 0 or less, or junk)."""
    for name, scale in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            seconds = float(value) / scale
        except ValueError:
            if name == "retry-after-ms":
                continue
            try:
                when = email.utils.parsedate_to_datetime(value)
            except (TypeError, ValueError, IndexError, OverflowError):
                return None
            if when.tzinfo is None:
                when = when.replace(tzinfo=UTC)
            seconds = when.timestamp() - time.time()
        if math.isnan(seconds):
            continue
        return seconds if seconds > 0 else None
    return None


def attempts_text(n: int) -> str:
    """``1 attempt``, ``3 attempts``."""
    return f"{n} attempt{'' if n == 1 else 's'}"


def _seconds(value: float) -> str:
    return f"{value:.0f}" if value >= 10 or math.isinf(value) else f"{value:.2g}"
