"""Is an index fresh? What monitoring asks each morning: how long ago the index was last known current (its last
publish, or a night that found nothing to change), how its last run ended, and whether a run holds its lease."""

from __future__ import annotations

import datetime as dt
import json
import time
from dataclasses import asdict, dataclass
from typing import Any

from lookalike.core.layout import ReindexLayout
from lookalike.core.lease import ConditionalObject
from lookalike.core.store import Store
from lookalike.index import publish

CURRENT = ("published", "unchanged")  # the statuses of a run after which the index is current


@dataclass(frozen=True)
class IndexStatus:
    index: str
    latest: str | None            # LATEST's version, None before the first publish
    current_since: float | None   # seconds since the epoch: the newer of LATEST's move and the last good run's end
    last_run: dict[str, Any] | None  # run_id, status, exit_code, started_at, finished_at, error of LAST.json
    lease: dict[str, Any] | None  # the lease as stored: a run in progress, or how the last one gave it up

    def age_s(self, now: float | None = None) -> float | None:
        return None if self.current_since is None else (now or time.time()) - self.current_since

    def problems(self, max_age_s: float | None, now: float | None = None) -> list[str]:
        """Why monitoring should alert; empty when the index is fresh and its last run ended well."""
        found = []
        age = self.age_s(now)
        if self.latest is None:
            found.append(f"index {self.index!r} has never been published")
        elif max_age_s is not None and age is not None and age > max_age_s:
            found.append(f"index {self.index!r} was last current {_hours(age)} ago, more than --max-age "
                         f"{_hours(max_age_s)}")
        run = self.last_run
        if run and run["status"] not in (*CURRENT, "running"):
            found.append(f"its last run {run['run_id']} was {run['status']} (exit {run.get('exit_code', '?')}) at "
                         f"{run.get('finished_at', '?')}: {(run.get('error') or {}).get('message', '')}".rstrip(": "))
        return found

    def as_dict(self, max_age_s: float | None, now: float | None = None) -> dict[str, Any]:
        problems = self.problems(max_age_s, now)
        return {**asdict(self), "age_s": self.age_s(now), "max_age_s": max_age_s, "fresh": not problems,
                "problems": problems}


def index_status(store: Store, name: str) -> IndexStatus:
    layout = ReindexLayout(store, name)
    pointer, last = publish.read_latest(store, name), _last_report(layout)
    held = ConditionalObject(store, layout.lease).read()
    lease = json.loads(held[0]) if held else None
    run = None if last is None else {k: last.get(k) for k in ("run_id", "status", "exit_code", "started_at",
                                                              "finished_at", "error")}
    return IndexStatus(name, pointer["version"] if pointer else None, _current_since(pointer, last), run, lease)


def current_since(store: Store, name: str) -> float | None:
    """When the index was last known current (seconds since the epoch): what a query worker exports for alerts."""
    return _current_since(publish.read_latest(store, name), _last_report(ReindexLayout(store, name)))


def _current_since(pointer: dict[str, Any] | None, last: dict[str, Any] | None) -> float | None:
    times = [epoch(pointer["updated_at"])] if pointer and pointer.get("updated_at") else []
    if last and last.get("status") in CURRENT and last.get("finished_at"):
        times.append(epoch(last["finished_at"]))
    return max(times) if times else None


def _last_report(layout: ReindexLayout) -> dict[str, Any] | None:
    try:
        return layout.store.read_json(layout.last)
    except FileNotFoundError:
        return None


def epoch(utc: str) -> float:
    """Seconds since the epoch of a manifest time (core.manifest.utc_now's format)."""
    return dt.datetime.strptime(utc, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.timezone.utc).timestamp()


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.1f}h" if seconds >= 3600 else f"{seconds / 60:.0f}m"
