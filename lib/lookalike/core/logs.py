"""Logging as a cluster's log pipeline wants it: `--log-format json` writes one JSON object per line, and every
line of a run carries the run's id (set once by the job with `run_context`), so a night can be found whole.
Spark tasks take the driver's settings and ids with them (`for_tasks` / `in_task`), so executors' lines are
in the same format and carry the same run id, plus the task's."""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field

from lookalike.core.progress import DEFAULT_INTERVAL_S, PROGRESS_LOGGER, configure_progress

LOG_FORMATS = ("text", "json")
_NONE: dict[str, str] = {}
_run: contextvars.ContextVar[dict[str, str]] = contextvars.ContextVar("lookalike_run", default=_NONE)


@contextlib.contextmanager
def run_context(**ids: str | None) -> Iterator[None]:
    """Within the block, every log line carries these ids (run_id, index, fingerprint_id ...)."""
    token = _run.set({**_run.get(), **{k: str(v) for k, v in ids.items() if v is not None}})
    try:
        yield
    finally:
        _run.reset(token)


def bind(**ids: str | None) -> None:
    """Add ids learned midway (the run id a resumed night chose) to the enclosing run_context's lines."""
    current = _run.get()
    if current is not _NONE:  # outside any run there is nothing to add them to
        current.update({k: str(v) for k, v in ids.items() if v is not None})


class _Stderr(logging.StreamHandler):
    """Writes to whatever sys.stderr is when a line is written: a redirect made after configure() (a test's
    capture, a caller's) is followed, and a stream closed since is never written to."""

    @property  # type: ignore[override]
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


class _RunIds(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.run = _run.get()
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {"time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"), "level": record.levelname,
                "logger": record.name, "message": record.getMessage(), **getattr(record, "run", {})}
        if hasattr(record, "progress"):  # a long step's figures (core.progress), as fields a dashboard reads
            line["progress"] = record.progress
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        run = getattr(record, "run", {})
        return f"{text} [{' '.join(f'{k}={v}' for k, v in run.items())}]" if run else text


@dataclass(frozen=True)
class TaskLogging:
    """What a Spark task needs to log as its driver does: the format, the level and the run's ids."""
    log_format: str
    verbose: bool
    ids: dict[str, str] = field(default_factory=dict)


_configured: TaskLogging | None = None  # set by configure(): None where the host application owns logging


def verbose() -> bool:
    """Whether this process was configured to log at INFO (-v)."""
    return _configured is not None and _configured.verbose


def for_tasks() -> TaskLogging | None:
    """This process's logging settings and current run ids, to ship with tasks; None if never configured."""
    if _configured is None:
        return None
    return TaskLogging(_configured.log_format, _configured.verbose, dict(_run.get()))


@contextlib.contextmanager
def in_task(settings: TaskLogging | None, **ids: str | None) -> Iterator[None]:
    """Around a task's body on an executor: its process logs as the driver's (configured once per Python
    worker, and never where the driver did not configure logging), with the run's ids and the task's own."""
    if settings is not None and _configured != TaskLogging(settings.log_format, settings.verbose):
        configure(settings.verbose, settings.log_format)
    with run_context(**(settings.ids if settings else {}), **ids):
        yield


def configure(verbose: bool, log_format: str = "text", progress_mode: str = "auto",
              progress_interval_s: float = DEFAULT_INTERVAL_S) -> None:
    """The process's logging: INFO with -v, else WARNING, and the long steps' progress (a bar on a terminal, else
    lines at INFO even without -v: what a log of an hours-long job needs); text or JSON lines on stderr."""
    global _configured
    _configured = TaskLogging(log_format, verbose)
    handler = _Stderr()
    handler.addFilter(_RunIds())
    handler.setFormatter(JsonFormatter() if log_format == "json" else
                         TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO if verbose else logging.WARNING)
    mode = configure_progress(progress_mode, progress_interval_s, json_logs=log_format == "json")
    logging.getLogger(PROGRESS_LOGGER).setLevel(logging.INFO if mode == "log" else logging.WARNING)
