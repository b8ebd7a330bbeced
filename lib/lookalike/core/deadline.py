"""A request's time limit inside its work. The HTTP layer answers 504 when a request runs out of time, but the
thread doing the work cannot be killed: it checks its deadline between steps (each image read, decoded or
verified, each batch of texts) and stops there, so work never outlives its request by more than one step.

The deadline travels with the work in a context variable: code deep in the query path calls `checkpoint()`,
which does nothing where no deadline is set (a batch job, `lookalike search`)."""

from __future__ import annotations

import contextvars
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from lookalike.core.errors import LookalikeError

T = TypeVar("T")
_current: contextvars.ContextVar[Deadline | None] = contextvars.ContextVar("lookalike_deadline", default=None)


class DeadlineExceeded(LookalikeError):
    """The work's request ran out of time (or was abandoned): it stops here."""


class Deadline:
    def __init__(self, seconds: float):
        self.seconds = seconds
        self.expires_at = time.monotonic() + seconds
        self._cancelled = threading.Event()

    def cancel(self) -> None:
        """Stop the work at its next checkpoint (its request gave up on it)."""
        self._cancelled.set()

    def remaining(self) -> float:
        return max(0.0, self.expires_at - time.monotonic())

    def check(self) -> None:
        if self._cancelled.is_set() or time.monotonic() >= self.expires_at:
            raise DeadlineExceeded(f"the request's time limit of {self.seconds:g}s ran out")

    def run(self, fn: Callable[[], T]) -> T:
        """fn() with this deadline in force for every checkpoint it reaches (in this thread)."""
        token = _current.set(self)
        try:
            return fn()
        finally:
            _current.reset(token)


def checkpoint() -> None:
    """Raise DeadlineExceeded if the work in hand belongs to a request that ran out of time."""
    deadline = _current.get()
    if deadline is not None:
        deadline.check()


def remaining(default: float) -> float:
    """The seconds left to the work in hand (`default` where there is no deadline): a read's own time limit."""
    deadline = _current.get()
    return default if deadline is None else max(0.1, deadline.remaining())
