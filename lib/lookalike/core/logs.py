"""Logging as a cluster's log pipeline wants it: `--log-format json` writes one JSON object per line, and every
line of a run carries the run's id (set once by the job with `run_context`), so a night can be found whole."""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import sys
from collections.abc import Iterator

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


class _RunIds(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.run = _run.get()
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {"time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"), "level": record.levelname,
                "logger": record.name, "message": record.getMessage(), **getattr(record, "run", {})}
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        run = getattr(record, "run", {})
        return f"{text} [{' '.join(f'{k}={v}' for k, v in run.items())}]" if run else text


def configure(verbose: bool, log_format: str = "text") -> None:
    """The process's logging: INFO with -v, else WARNING; text or JSON lines on stderr."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_RunIds())
    handler.setFormatter(JsonFormatter() if log_format == "json" else
                         TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO if verbose else logging.WARNING)
