"""A job's stages: which one it is in (what its error report names) and how long each took (its timings)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")


def timed(timings: dict[str, float], key: str, step: Callable[..., T], *args: Any) -> T:
    """step(*args), its seconds recorded under timings[key]."""
    with stage_timing(timings, key):
        return step(*args)


@contextlib.contextmanager
def stage_timing(timings: dict[str, float], key: str) -> Iterator[None]:
    """The block's seconds under timings[key], once it completes (a failed block records nothing)."""
    started = time.perf_counter()
    yield
    timings[key] = round(time.perf_counter() - started, 3)


class Stages:
    """The stages of one run, in order: `with stages("embed", "embed_s"):` names the stage a failure happens in
    (stages.current) and times it."""

    def __init__(self, timings: dict[str, float], first: str):
        self.timings, self.current = timings, first

    @contextlib.contextmanager
    def __call__(self, name: str, timing_key: str) -> Iterator[None]:
        self.current = name
        with stage_timing(self.timings, timing_key):
            yield
