"""Stopping cleanly when told to: SIGTERM is what Airflow's timeout, a pod eviction and the Spark operator send
before they kill. Python's default is to die on the spot, which left a night's lease `running` until its TTL
and the night's report unwritten; here SIGTERM becomes an `Interrupted` exception in the main thread, so the
code on the way out runs: Spark jobs are cancelled (core.spark), the lease is released as interrupted and the
report says so (pipelines.reindex), and the command exits with EXIT_INTERRUPTED.

An exception raised by a signal handler surfaces wherever the main thread was: inside a py4j call it comes out
as py4j's own error. So the request to stop is also recorded, and `interruption()` tells whoever handles an
exception on the way out that the run was stopped, whatever the exception says."""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Iterator

from lookalike.core.errors import Interrupted

log = logging.getLogger(__name__)
_received: list[Interrupted] = []  # the stop this process was asked for, if any


def interruption() -> Interrupted | None:
    """The Interrupted error of a SIGTERM received in this process (None when none was)."""
    return _received[0] if _received else None


@contextlib.contextmanager
def stop_on_sigterm(what: str) -> Iterator[None]:
    """Within this block, SIGTERM raises Interrupted in the main thread (once: a second SIGTERM while the run
    cleans up is logged and ignored, so the release of the lease is not cut short; SIGKILL still ends it)."""
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread may handle signals; a caller embedding lookalike keeps its own
        return

    def cleaning_up(signum: int, frame: object) -> None:
        log.warning("%s: %s again while cleaning up; finishing the clean-up first", what, signal.Signals(signum).name)

    def interrupt(signum: int, frame: object) -> None:
        signal.signal(signum, cleaning_up)
        error = Interrupted(f"{what} was stopped by {signal.Signals(signum).name}; its work so far is kept and its "
                            "lease released: rerun the same command to resume")
        _received.append(error)
        # py4j logs the call this cuts short as a network error, with its traceback: not news to anyone here.
        logging.getLogger("py4j").setLevel(logging.CRITICAL)
        raise error

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
