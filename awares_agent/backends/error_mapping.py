"""One translation, shared by every backend, of a failure into the :class:`~awares_agent.errors.BackendError`
hierarchy.

A backend supplies only its mapping table: :class:`ErrorRule` rows, tried in order, each naming the failures
it is for, the :class:`~awares_agent.errors.BackendError` subclass they become and the message (which names
the server or model and says what to do). :func:`translate_error` redacts the failure and every exception
chained under it (:func:`~awares_agent.redact.redact_causes`: a server may have echoed a key back, and the
failure becomes the error's ``__cause__``, printed in tracebacks), picks the first row that matches, and
builds the error with its message redacted and, for an HTTP error, the status code kept.
:func:`translated_errors` does it for whatever a block of code raises.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from awares_agent.errors import AwaresError, BackendError, BackendHTTPError
from awares_agent.redact import excerpt, redact, redact_causes

__all__ = ["ErrorRule", "status_code", "translate_error", "translated_errors"]


@dataclass(frozen=True)
class ErrorRule:
    """One row of a backend's mapping table.

    A failure matches the row when it is an instance of one of ``types``, when one of its classes (its own or
    a base) is named in ``names`` (for an SDK's exceptions, recognised without importing the SDK), or when
    ``test`` says so.

    Args:
        becomes: the :class:`~awares_agent.errors.BackendError` subclass the failure becomes.
        message: the error's message, given the failure (it is redacted afterwards).
        types: exception classes the row is for (``(BaseException,)``: any failure, for a table's last row).
        names: class names the row is for.
        test: a last test of the failure.
    """

    becomes: type[BackendError]
    message: Callable[[Any], str]
    types: tuple[type[BaseException], ...] = ()
    names: frozenset[str] = frozenset()
    test: Callable[[BaseException], bool] | None = None

    def matches(self, err: BaseException) -> bool:
        """Whether ``err`` is one of the failures this row is for."""
        if isinstance(err, self.types) or any(cls.__name__ in self.names for cls in type(err).__mro__):
            return True
        return self.test is not None and self.test(err)


def translate_error(
    err: BaseException, table: Sequence[ErrorRule], *, secrets: Iterable[str] = ()
) -> BackendError:
    """The :class:`~awares_agent.errors.BackendError` that ``err`` becomes under ``table`` (raise it from
    ``err``).

    Args:
        err: the failure (it and the exceptions chained under it are redacted in place).
        table: the backend's rows, tried in order; a failure no row matches becomes a plain
            :class:`~awares_agent.errors.BackendError` naming its type.
        secrets: the backend's own secrets, hidden along with every registered one.
    """
    secrets = tuple(secrets)
    redact_causes(err, secrets)
    rule = next((row for row in table if row.matches(err)), None)
    if rule is None:
        return BackendError(f"{type(err).__name__}: {excerpt(str(err), secrets)}")
    message = redact(rule.message(err), secrets)
    if issubclass(rule.becomes, BackendHTTPError):
        return rule.becomes(message, status_code=status_code(err))
    return rule.becomes(message)


@contextlib.contextmanager
def translated_errors(translate: Callable[[Exception], BackendError]) -> Iterator[None]:
    """Raise ``translate(err)``, chained to ``err``, for any exception the block raises; the project's own
    errors (an :class:`~awares_agent.errors.AwaresError`, e.g. from a model built on awares) pass as they are.
    """
    try:
        yield
    except AwaresError:
        raise
    except Exception as err:
        raise translate(err) from err


def status_code(err: BaseException) -> int | None:
    """The HTTP status a failure carries (its ``status_code``, or its ``response``'s), if any."""
    for value in (
        getattr(err, "status_code", None),
        getattr(getattr(err, "response", None), "status_code", None),
    ):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None
