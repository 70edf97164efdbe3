"""The parts the backends share, on their own: the retry policy, the SSE decoder and the error table.

The OpenAI-compatible backend's tests (a real loopback server) and the conformance suite run them end to end;
these pin the decisions each part makes, which those tests reach only through timing.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from awares_agent.backends.error_mapping import ErrorRule, translate_error, translated_errors
from awares_agent.backends.retry import GiveUp, RetryPolicy, aretry, retry
from awares_agent.backends.sse import EventDecoder, ServerSentEvent, StreamLineError
from awares_agent.errors import (
    BackendConnectionError,
    BackendError,
    BackendHTTPError,
    BackendTimeoutError,
    ConfigError,
)
from awares_agent.redact import REDACTED, forget_secret

SECRET = "sk-parts-SECRET-0123456789abcdef"

# --- the retry policy ----------------------------------------------------------------------------------


def test_the_default_deadline_is_every_attempt_plus_the_wait_allowance() -> None:
    assert RetryPolicy.of(3, 3).deadline == 3 * 4 + 30
    assert RetryPolicy.of(3, 3, 7.5).deadline == 7.5


def test_a_failure_that_is_not_retryable_or_past_the_retries_gives_up_without_a_note() -> None:
    policy = RetryPolicy.of(1, 1)
    call = policy.start()
    with pytest.raises(GiveUp) as info:
        policy.wait(call, retryable=False)
    assert info.value.note is None and call.retries == 0
    assert 0 < policy.wait(call, retryable=True) <= 0.5  # the first backoff, jitter taken off
    assert call.retries == 1
    with pytest.raises(GiveUp) as info:
        policy.wait(call, retryable=True)
    assert info.value.note is None


def test_a_wait_past_the_deadline_gives_up_and_says_why() -> None:
    policy = RetryPolicy.of(1, 5, deadline=10)
    call = policy.start()
    note = "the server asked to retry after 61 s, which is past the 10 s deadline; gave up after 1 attempt"
    with pytest.raises(GiveUp) as info:
        policy.wait(call, retryable=True, asked=61)
    assert info.value.note == note
    assert policy.wait(call, retryable=True, asked=2) == 2  # asked for and within the deadline
    call.end = time.monotonic() + 0.1
    with pytest.raises(GiveUp, match=r"no time was left within the 10 s deadline .* after 2 attempts"):
        policy.wait(call, retryable=True)


def test_an_attempt_gets_the_timeout_or_what_is_left_of_the_deadline() -> None:
    policy = RetryPolicy.of(5, 1, deadline=20)
    call = policy.start()
    assert policy.allowance(call) == 5 and not call.cut_by_deadline
    call.end = time.monotonic() + 2
    assert 1.5 < policy.allowance(call) <= 2 and call.cut_by_deadline


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
def test_the_drivers_retry_until_an_attempt_returns(asynchronous: bool) -> None:
    policy = RetryPolicy.of(1, 3)
    seen: list[tuple[int, float]] = []

    def attempt(call, allowance):
        seen.append((call.retries, allowance))
        if len(seen) < 3:
            raise ConnectionError("refused")
        return "answer"

    async def attempt_async(call, allowance):
        return attempt(call, allowance)

    def failed(err, call):
        assert isinstance(err, ConnectionError)
        return policy.wait(call, retryable=True, asked=0.01)

    if asynchronous:
        result = asyncio.run(aretry(policy, attempt_async, failed, (ConnectionError,)))
    else:
        result = retry(policy, attempt, failed, (ConnectionError,))
    assert result == "answer"
    assert [retries for retries, _ in seen] == [0, 1, 2] and all(a == 1 for _, a in seen)


def test_a_failure_the_driver_does_not_judge_ends_the_call() -> None:
    def attempt(call, allowance):
        raise ValueError("not a transport failure")

    with pytest.raises(ValueError, match="not a transport failure"):
        retry(RetryPolicy.of(1, 3), attempt, lambda err, call: 0.0, (ConnectionError,))


# --- server-sent events --------------------------------------------------------------------------------


def test_events_split_at_every_sse_line_end_and_nowhere_else() -> None:
    decoder = EventDecoder()
    pieces = [
        b"event: delta\r",
        b"\ndata: a\xe2\x80\xa8b\r\n",
        b"data: c\r",
        b"\r",
        b": keep-alive\n\ndata: d",
    ]
    events = [event for piece in pieces for event in decoder.feed(piece)]
    assert events == [ServerSentEvent("a\u2028b\nc", "delta")]  # U+2028 inside the data is not a line end
    assert list(decoder.close()) == [ServerSentEvent("d")]  # the last line counts without its line end


def test_a_line_that_is_not_utf8_is_an_error_holding_the_line() -> None:
    with pytest.raises(StreamLineError) as info:
        list(EventDecoder().feed(b"data: \xff\n\n"))
    assert info.value.line == b"data: \xff"


# --- the error table -----------------------------------------------------------------------------------


class StatusError(Exception):
    """An SDK-style exception: a status code and a parsed body."""

    def __init__(self, message: str, status_code: int) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.body = {"error": {"message": message}}


TABLE = (
    ErrorRule(BackendTimeoutError, lambda e: "slow", types=(TimeoutError,)),
    ErrorRule(BackendConnectionError, lambda e: f"down: {e}", names=frozenset({"ConnectError"})),
    ErrorRule(BackendHTTPError, lambda e: f"status: {e}", test=lambda e: hasattr(e, "status_code")),
)


def test_the_first_matching_row_wins_by_type_name_or_test() -> None:
    class ConnectError(OSError):  # matched by its name, as an SDK's exception the backend does not import
        pass

    assert type(translate_error(TimeoutError(), TABLE)) is BackendTimeoutError
    assert type(translate_error(ConnectError("x"), TABLE)) is BackendConnectionError
    failed = translate_error(StatusError("busy", 503), TABLE)
    assert type(failed) is BackendHTTPError and failed.status_code == 503
    unmatched = translate_error(KeyError("k"), TABLE)
    assert type(unmatched) is BackendError and "KeyError" in str(unmatched)


def test_the_failure_and_its_causes_are_redacted() -> None:
    forget_secret(SECRET)  # only the backend's own secrets name it
    try:
        raise StatusError(f"bad key {SECRET}", 401) from ConnectionError(f"sent {SECRET}")
    except StatusError as err:
        failed = translate_error(err, TABLE, secrets=[SECRET])
        texts = [str(failed), *err.args, str(err.body), *err.__cause__.args]
    assert all(SECRET not in text for text in texts) and REDACTED in str(failed)


def test_translated_errors_lets_the_projects_own_errors_pass() -> None:
    with pytest.raises(ConfigError), translated_errors(lambda err: translate_error(err, TABLE)):
        raise ConfigError("ours")
    with (
        pytest.raises(BackendTimeoutError) as info,
        translated_errors(lambda err: translate_error(err, TABLE)),
    ):
        raise TimeoutError
    assert isinstance(info.value.__cause__, TimeoutError)
