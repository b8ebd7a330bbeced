"""Progress of the long steps of a job (embedding, training an index, adding to it, joining, exporting, training):
a bar on a terminal, and in a log (no terminal, or `--log-format json`) one line every interval with the same
figures (done / total, rate, ETA), plus one when the step starts and one when it ends.

The driver reports: Spark tasks cannot draw on the user's terminal, so a job feeds its step from Spark's status
tracker (`core.spark.run_tasks(stage=...)`), and work run in this process (the in-process master) ticks the
step that is active (`tick`). Lines go to the `lookalike.progress` logger at INFO, which the command line shows
without -v; a library user sees them when their logging shows INFO.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import math
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

PROGRESS_LOGGER = "lookalike.progress"
log = logging.getLogger(PROGRESS_LOGGER)

MODES = ("auto", "bar", "log", "off")
DEFAULT_INTERVAL_S = 30.0
QUIET_S = 1.0  # a step shorter than this leaves no line in a log: a log of small runs stays readable


@dataclass
class _Settings:
    mode: str = "log"                 # the library's default: lines at INFO, shown only where INFO is shown
    interval_s: float = DEFAULT_INTERVAL_S


_settings = _Settings()
_active: contextvars.ContextVar[Progress | None] = contextvars.ContextVar("lookalike_progress", default=None)


def configure_progress(mode: str = "auto", interval_s: float = DEFAULT_INTERVAL_S, json_logs: bool = False) -> str:
    """How this process shows progress; `auto` is a bar on a terminal and log lines elsewhere. Returns the mode."""
    if mode not in MODES:
        raise ValueError(f"progress mode {mode!r}: one of {', '.join(MODES)}")
    if interval_s <= 0:
        raise ValueError(f"the progress interval must be > 0 seconds, got {interval_s}")
    if mode == "auto":
        mode = "bar" if sys.stderr.isatty() and not json_logs else "log"
    _settings.mode, _settings.interval_s = mode, interval_s
    return mode


class Progress:
    """One step's progress. `total` None: a step whose size is unknown (the elapsed time is shown)."""

    def __init__(self, stage: str, total: int | None, unit: str):
        self.stage, self.total, self.unit = stage, total, unit
        self.done = 0
        self.started = time.monotonic()
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._said = False  # whether a line of this step was logged (then its end is too)
        self._bar = None
        if _settings.mode == "bar":
            from tqdm.auto import tqdm
            self._bar = tqdm(total=total, desc=stage, unit=f" {unit}", dynamic_ncols=True, leave=True)
        elif _settings.mode == "log":
            # A line once the step has lasted QUIET_S, then every interval whether or not anything moved: a long
            # single task (training an index) still shows that the job is alive and for how long it has been at it.
            # In the creator's context: its lines carry the run's ids (logging's context lives in contextvars).
            context = contextvars.copy_context()
            threading.Thread(target=context.run, args=(self._lines,), name=f"progress-{stage}", daemon=True).start()

    def advance(self, n: int = 1) -> None:
        with self._lock:
            self._move(self.done + n)

    def at_least(self, done: int) -> None:
        """Moves forward to `done` (an estimate from finished tasks never moves a count back)."""
        with self._lock:
            if done > self.done:
                self._move(done)

    def close(self, state: str = "done") -> None:
        with self._lock:
            if self._closed.is_set():
                return
            self._closed.set()
            if self._bar is not None:
                self._bar.close()
            elif _settings.mode == "log" and self._said:
                self._line(state)

    def _move(self, done: int) -> None:
        done = min(done, self.total) if self.total is not None else done
        step, self.done = done - self.done, done
        if self._bar is not None:
            self._bar.update(step)

    def _lines(self) -> None:
        wait = min(QUIET_S, _settings.interval_s)
        while not self._closed.wait(wait):
            with self._lock:
                if not self._closed.is_set():
                    self._line("running" if self._said else "started")
            wait = _settings.interval_s

    def figures(self) -> dict[str, float | int | str | None]:
        elapsed = time.monotonic() - self.started
        rate = self.done / elapsed if elapsed > 0 else 0.0
        left = None if self.total is None or rate <= 0 else (self.total - self.done) / rate
        return {"stage": self.stage, "done": self.done, "total": self.total, "unit": self.unit,
                "rate_per_s": round(rate, 2), "eta_s": None if left is None else round(left, 1),
                "elapsed_s": round(elapsed, 1)}

    def _line(self, state: str) -> None:
        self._said = True
        f = self.figures()
        if self.total is None:
            count = f"{self.done:,} {self.unit}"
        else:
            share = f" ({100 * self.done / self.total:.0f}%)" if self.total else ""
            count = f"{self.done:,}/{self.total:,} {self.unit}{share}"
        text = f"{self.stage}: {count}, {f['rate_per_s']:,.1f} {self.unit}/s, elapsed {_duration(f['elapsed_s'])}"
        if state != "done" and f["eta_s"] is not None:
            text += f", ETA {_duration(f['eta_s'])}"
        log.info("%s%s", text, "" if state == "running" else f" ({state})", extra={"progress": {**f, "state": state}})


@contextlib.contextmanager
def progress(stage: str, total: int | None, unit: str) -> Iterator[Progress]:
    """A step's progress for the block; work in this process may `tick` it meanwhile."""
    step = Progress(stage, total, unit)
    token = _active.set(step)
    try:
        yield step
    except BaseException:
        _active.reset(token)
        step.close("stopped")
        raise
    _active.reset(token)
    step.close()


def tick(n: int = 1) -> None:
    """Advance the step active in this process, if any (nothing on a Spark executor, where there is none)."""
    step = _active.get()
    if step is not None:
        step.advance(n)


def _duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "?"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s" if rest >= 60 else f"{rest}s"
