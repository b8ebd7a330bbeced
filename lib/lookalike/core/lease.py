"""A lease in the store: one holder at a time for a named job (the nightly reindex of one index).

The lease is one small JSON object. It is taken with a conditional write: create-if-absent (S3 and Azure
`If-None-Match: *`, GCS `ifGenerationMatch=0`, a lock file on local disk), or, when the holder's lease has
expired, replace-if-unchanged (S3 and Azure `If-Match: <etag>`, GCS `ifGenerationMatch=<generation>`). Of two
runs racing for it exactly one write succeeds. The holder renews it on a heartbeat thread; a crashed holder
stops renewing and its lease expires after `ttl_s`, while a holder that fails or is stopped (SIGTERM) releases
it at once, marked "failed" or "interrupted". Before it publishes, the holder checks it still holds the lease,
so a run that stalled past its expiry never overwrites the work of the run that took over. Stores that do not
enforce conditional writes get a read-back check only (best effort).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import socket
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any

from lookalike.core.errors import Busy, ConfigError, Interrupted, JobFailed, LookalikeError
from lookalike.core.signals import interruption
from lookalike.core.store import Store, is_transient, with_retries

log = logging.getLogger(__name__)


RELEASED = ("done", "failed", "interrupted")


def outcome_of(error: BaseException) -> str:
    """How a run that raised `error` ended: "interrupted" when it was told to stop, else "failed"."""
    stopped = isinstance(error, Interrupted | KeyboardInterrupt) or interruption() is not None
    return "interrupted" if stopped else "failed"


class LeaseHeld(Busy):
    """Another run holds the lease; the message names it and when the lease expires."""


class LeaseLost(JobFailed):
    """This run no longer holds its lease (it expired and another run took it over)."""


class PreconditionFailed(LookalikeError):
    """A conditional write found the object other than expected: someone else wrote it first."""


@dataclass(frozen=True)
class LeaseRecord:
    holder: str          # unique per acquisition: host, pid and a random suffix
    run_id: str          # the run the holder works on; a run taking over an expired lease may resume it
    host: str
    pid: int
    acquired_at: float   # seconds since the epoch, the holder's clock
    renewed_at: float
    expires_at: float
    state: str = "running"   # "running"; "failed" or "interrupted" when its holder gave up (expires at once)

    def describe(self) -> str:
        left = self.expires_at - time.time()
        when = f"expires in {left:.0f}s" if left > 0 else f"expired {-left:.0f}s ago"
        return (f"run {self.run_id} on {self.host} (pid {self.pid}), {self.state}, renewed "
                f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(self.renewed_at))}, {when}")


def _encode(record: LeaseRecord) -> bytes:
    return json.dumps(asdict(record), sort_keys=True).encode()


def _decode(data: bytes) -> LeaseRecord:
    return LeaseRecord(**json.loads(data))


# The field of fsspec's info() that versions an object on each store, and what a conditional write compares.
TAG_FIELDS = {"s3": "ETag", "gcs": "generation", "azure": "etag"}


class ConditionalObject:
    """Read with a version tag, create-if-absent and replace-if-tag-matches, for one key of a store.

    S3: `If-None-Match: *` / `If-Match: <ETag>`; GCS: `ifGenerationMatch=0` / `ifGenerationMatch=<generation>`;
    Azure Blob: `If-None-Match: *` / `If-Match: <ETag>`; a local folder: a lock file. A store that refuses the
    condition answers 412, which becomes PreconditionFailed here."""

    def __init__(self, store: Store, key: str):
        self.store, self.key = store, key
        self.path = store.path(key)
        self.kind = store.kind
        if self.kind == "other":
            log.warning("%s does not support conditional writes here: the lease is best effort", store.url)

    def read(self) -> tuple[bytes, str] | None:
        """(content, tag) or None when absent; the tag is what replace() must be given."""
        if self.kind in TAG_FIELDS:
            return with_retries(self._read_tagged, f"read lease {self.key}", self.store.attempts)
        with self._local_lock():
            return self._read_plain()

    def create(self, data: bytes) -> str:
        if self.kind in TAG_FIELDS:
            return self._put(data, tag=None)
        with self._local_lock():
            if self._read_plain() is not None:
                raise PreconditionFailed(f"{self.key} exists")
            self.store.write_bytes(self.key, data)
            return _tag(data)

    def replace(self, data: bytes, tag: str) -> str:
        if self.kind in TAG_FIELDS:
            return self._put(data, tag=tag)
        with self._local_lock():
            current = self._read_plain()
            if current is None or current[1] != tag:
                raise PreconditionFailed(f"{self.key} changed")
            self.store.write_bytes(self.key, data)
            return _tag(data)

    def delete(self) -> None:
        with self._local_lock():
            self.store.delete(self.key)

    def _put(self, data: bytes, tag: str | None) -> str:
        """A conditional PUT (create when tag is None); returns the new tag. Each client reports a failed
        condition as FileExistsError (s3fs, gcsfs, adlfs on create) or as an HTTP 412 (adlfs on replace)."""
        try:
            return {"s3": self._put_s3, "gcs": self._put_gcs, "azure": self._put_azure}[self.kind](data, tag)
        except (FileExistsError, FileNotFoundError) as e:
            raise PreconditionFailed(f"{self.key}: {e}") from e
        except OSError as e:
            raise _precondition_or(e) from e
        except Exception as e:
            if getattr(e, "status_code", None) == 412:  # azure.core's ResourceModifiedError
                raise PreconditionFailed(f"{self.key}: {e}") from e
            raise

    def _put_s3(self, data: bytes, tag: str | None) -> str:
        condition = {"mode": "create"} if tag is None else {"IfMatch": tag}
        out = self.store.fs.pipe_file(self.path, data, **condition)
        return out.get("ETag", "") if isinstance(out, dict) else ""

    def _put_gcs(self, data: bytes, tag: str | None) -> str:
        # gcsfs's pipe_file knows create (ifGenerationMatch=0) but not replace-if-generation: the JSON API's
        # media upload takes either.
        fs = self.store.fs
        bucket, name, _ = fs.split_path(self.path)
        out = fs.call("POST", f"{fs._location}/upload/storage/v1/b/{{}}/o", bucket, uploadType="media", name=name,
                      ifGenerationMatch=tag or "0", data=data, json_out=True)
        return str(out["generation"])

    def _put_azure(self, data: bytes, tag: str | None) -> str:
        from azure.core import MatchConditions  # adlfs's own dependency: present wherever abfs:// is

        condition = ({"overwrite": False} if tag is None
                     else {"etag": tag, "match_condition": MatchConditions.IfNotModified})
        out = self.store.fs.pipe_file(self.path, data, **condition)
        return str(out["etag"])

    def _read_tagged(self) -> tuple[bytes, str] | None:
        # HEAD, GET, HEAD: the content belongs to the tag only if the tag did not move in between.
        field = TAG_FIELDS[self.kind]
        for _ in range(5):
            try:
                before = str(self.store.fs.info(self.path)[field])
                data = self.store.fs.cat_file(self.path)
                after = str(self.store.fs.info(self.path)[field])
            except FileNotFoundError:
                return None
            if before == after:
                return data, after
        raise PreconditionFailed(f"{self.key} keeps changing while read")

    def _read_plain(self) -> tuple[bytes, str] | None:
        try:
            data = self.store.read_bytes(self.key)
        except FileNotFoundError:
            return None
        return data, _tag(data)

    @contextlib.contextmanager
    def _local_lock(self):
        if self.kind != "local":
            yield
            return
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        with open(self.path + ".lock", "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)


def _tag(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _precondition_or(error: OSError) -> Exception:
    text = str(error)
    if "pre-condition" in text or "PreconditionFailed" in text or "ConditionalRequestConflict" in text:
        return PreconditionFailed(text)
    return error


class Lease:
    """Acquire → heartbeat → (check before committing) → release. Use `with lease.held(run_id):`."""

    def __init__(self, store: Store, key: str, ttl_s: float, what: str):
        if ttl_s <= 0:
            raise ConfigError(f"lease ttl must be > 0 seconds, got {ttl_s}")
        self.obj = ConditionalObject(store, key)
        self.ttl_s, self.what = ttl_s, what
        self.url = store.child_url(key)
        self.record: LeaseRecord | None = None
        self.taken_over: LeaseRecord | None = None   # the expired lease this run replaced, if any
        self._tag = ""
        self._lost: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def acquire(self, run_id: str) -> LeaseRecord | None:
        """Take the lease for run_id; returns the expired or failed lease it replaced (None if there was none).
        Raises LeaseHeld when a live holder has it."""
        host, pid = socket.gethostname(), os.getpid()
        now = time.time()
        record = LeaseRecord(holder=f"{host}:{pid}:{os.urandom(4).hex()}", run_id=run_id, host=host, pid=pid,
                             acquired_at=now, renewed_at=now, expires_at=now + self.ttl_s)
        current = self.obj.read()
        previous = None
        try:
            if current is None:
                self._tag = self.obj.create(_encode(record))
            else:
                previous = _decode(current[0])
                if previous.state == "running" and previous.expires_at > time.time():
                    raise LeaseHeld(self._held_message(previous))
                if previous.state == "running":  # its holder died without a word
                    log.warning("taking over the lease of %s: %s", self.what, previous.describe())
                else:  # released when its run failed or was stopped: nothing to warn about, it may be resumed
                    log.info("the last run of %s was %s and released its lease: %s", self.what, previous.state,
                             previous.describe())
                self._tag = self.obj.replace(_encode(record), current[1])
        except PreconditionFailed as e:
            now_there = self.obj.read()
            holder = _decode(now_there[0]) if now_there else None
            raise LeaseHeld(self._held_message(holder) if holder else
                            f"another run took the lease of {self.what} at the same moment; try again") from e
        self._verify_ours(record)
        self.record, self.taken_over = record, previous
        return previous

    def _held_message(self, holder: LeaseRecord) -> str:
        return (f"another reindex of {self.what} is running: {holder.describe()}. This run did nothing. If that run "
                f"is dead, its lease expires by itself; to take it over at once delete {self.url}")

    def _verify_ours(self, record: LeaseRecord) -> None:
        # Where the store ignores conditional writes, a racing writer may have overwritten ours: read it back.
        back = self.obj.read()
        if back is None or _decode(back[0]).holder != record.holder:
            raise LeaseHeld(f"another run took the lease of {self.what} at the same moment; try again")
        self._tag = back[1]

    def renew(self, run_id: str | None = None) -> None:
        """Extend the lease by ttl_s (and name another run id); LeaseLost when another run has it now."""
        with self._lock:
            if self._lost:
                raise LeaseLost(self._lost)
            assert self.record is not None, "renew() before acquire()"
            now = time.time()
            renewed = LeaseRecord(**{**asdict(self.record), "renewed_at": now, "expires_at": now + self.ttl_s,
                                     "run_id": run_id or self.record.run_id})
            try:
                self._tag = self.obj.replace(_encode(renewed), self._tag)
            except PreconditionFailed as e:
                self._lost = (f"the lease of {self.what} was taken over by another run after this one failed to "
                              f"renew it within {self.ttl_s:.0f}s; this run publishes nothing")
                raise LeaseLost(self._lost) from e
            self.record = renewed

    def ensure_held(self) -> None:
        """Renew now (synchronously): call right before a commit that only the holder may make."""
        self.renew()

    def start_heartbeat(self) -> None:
        interval = max(0.2, self.ttl_s / 4)

        def beat():
            while not self._stop.wait(interval):
                try:
                    self.renew()
                except LeaseLost:
                    log.error("lost the lease of %s", self.what)
                    return
                except Exception as e:  # transient trouble: keep trying until the lease would have expired
                    level = logging.WARNING if is_transient(e) else logging.ERROR
                    log.log(level, "could not renew the lease of %s: %s", self.what, e)
        self._thread = threading.Thread(target=beat, name="lease-heartbeat", daemon=True)
        self._thread.start()

    def stop_heartbeat(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=30)

    def release(self, outcome: str = "done") -> None:
        """Give the lease up: deleted when the run is done; when it "failed" or was "interrupted" it is left
        expired in that state, with the run id, so the next run takes it at once and knows which run to resume."""
        if outcome not in RELEASED:
            raise ValueError(f"release outcome {outcome!r}: one of {', '.join(RELEASED)}")
        self.stop_heartbeat()
        if self.record is None or self._lost:
            return
        with self._lock:
            try:
                if outcome != "done":
                    now = time.time()
                    gone = LeaseRecord(**{**asdict(self.record), "state": outcome, "renewed_at": now,
                                          "expires_at": now})
                    self.obj.replace(_encode(gone), self._tag)
                else:
                    current = self.obj.read()
                    if current is not None and _decode(current[0]).holder == self.record.holder:
                        self.obj.delete()
            except Exception as e:  # the run's outcome stands; a stale lease only expires later
                log.warning("could not release the lease of %s (it expires by itself): %s", self.what, e)
            self.record = None

    @contextlib.contextmanager
    def held(self, run_id: str):
        self.acquire(run_id)
        self.start_heartbeat()
        try:
            yield self
        except BaseException as e:
            self.release(outcome_of(e))
            raise
        self.release()

    def read_holder(self) -> dict[str, Any] | None:
        current = self.obj.read()
        return asdict(_decode(current[0])) if current else None
