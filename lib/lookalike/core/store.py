"""URLs, atomic writes and retries of transient errors: the one place that knows about fsspec stores."""

from __future__ import annotations

import contextlib
import functools
import io
import json
import logging
import os
import posixpath
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
from fsspec.core import url_to_fs

from lookalike.core.deadline import checkpoint
from lookalike.core.errors import ConfigError, Unavailable

log = logging.getLogger(__name__)


class StoreNotWritable(ConfigError):
    """The store refused a write before any work started; the message says what to check."""
T = TypeVar("T")

# Transient errors are allow-listed by class name so that botocore/aiohttp need not be imported here;
# anything else (missing key, access denied, bad request) is raised at once.
TRANSIENT_ERROR_NAMES = frozenset({
    "ConnectionError", "ConnectionResetError", "ConnectionRefusedError", "ConnectionAbortedError",
    "TimeoutError", "BrokenPipeError", "EndpointConnectionError", "ConnectTimeoutError",
    "ReadTimeoutError", "ClientConnectorError", "ServerDisconnectedError", "ClientOSError",
    "ClientPayloadError", "IncompleteReadError", "ResponseStreamingError", "ServerTimeoutError",
    "ServiceRequestError", "ServiceResponseError",  # azure.core: the request was not sent / no answer came
    "TransportError",  # google.auth: the token endpoint could not be reached
})
# Error codes of S3-compatible servers and HTTP statuses worth a retry, read from the structured error (botocore's
# response, aiohttp's status), never from message text: "part-00500" in a disk-full message is no 500.
TRANSIENT_CODES = frozenset({"SlowDown", "ServiceUnavailable", "InternalError", "RequestTimeout", "Throttling",
                             "ThrottlingException", "RequestTimeTooSkewed"})
TRANSIENT_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


# Large transfers go a part at a time, each part retried on its own; S3 allows 10,000 parts (the part grows for
# files above ~600 GB) and at least 5 MiB a part but the last.
PART_BYTES = 64 << 20
MAX_PARTS = 9_000
PARTS_IN_FLIGHT = 4

CACHED_LISTING_PROTOCOLS = frozenset({"s3", "s3a", "gs", "gcs", "abfs", "az"})

# Object stores by the protocols fsspec registers for them: what a conditional write and a retry look like.
STORE_KINDS = {"s3": "s3", "s3a": "s3", "gs": "gcs", "gcs": "gcs", "abfs": "azure", "abfss": "azure", "az": "azure"}
RETRY_ATTEMPTS = 5
# gcsfs (6 tries, backoff to 32 s, built into the class) and the Azure SDK (its retry policy, 3 retries) retry
# every request themselves and cannot be told not to per filesystem; with_retries then tries once, so that one
# flaky request is never tried 6 × 5 times. botocore and s3fs are told to try once (filesystem()): ours retry.
CLIENT_RETRIED_KINDS = frozenset({"gcs", "azure"})


def is_transient(error: BaseException) -> bool:
    """True for errors worth retrying: connection trouble, timeouts, throttling, 5xx."""
    for err in _chain(error):
        if type(err).__name__ in TRANSIENT_ERROR_NAMES:
            return True
        if isinstance(err, (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)):
            return False  # definitive answers, whatever they were raised from
        response = getattr(err, "response", None)
        if isinstance(response, dict):  # botocore ClientError (s3fs keeps it as the cause of its OSError)
            status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            return status in TRANSIENT_STATUSES or response.get("Error", {}).get("Code") in TRANSIENT_CODES
        if isinstance(getattr(err, "status", None), int) and type(err).__name__ == "ClientResponseError":
            return err.status in TRANSIENT_STATUSES  # aiohttp (HTTP, GCS, Azure through fsspec)
        if type(err).__name__ == "HttpError" and str(getattr(err, "code", "")).isdigit():
            return int(err.code) in TRANSIENT_STATUSES  # gcsfs: the JSON API's error, with its HTTP status
        if isinstance(getattr(err, "status_code", None), int) and type(err).__module__.startswith("azure."):
            return err.status_code in TRANSIENT_STATUSES  # azure.core's HttpResponseError and its kinds
    return False


def _chain(error: BaseException):
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        yield error
        error = error.__cause__ or error.__context__


def with_retries(fn: Callable[[], T], what: str, attempts: int = RETRY_ATTEMPTS, base_delay: float = 0.5) -> T:
    """Call fn, retrying transient errors with exponential backoff; other errors pass straight through. A
    transient error that outlasts the attempts is Unavailable (try again later). attempts: retry_attempts(fs)."""
    for attempt in range(1, attempts + 1):
        try:
            return fn()
        except Exception as e:
            if not is_transient(e):
                raise
            if attempt == attempts:
                tries = f"{attempts} attempts" if attempts > 1 else "the client's own retries"
                raise Unavailable(f"{what}: {type(e).__name__}: {e} (still failing after {tries}: check "
                                  "the endpoint, the network and the service)") from e
            delay = base_delay * 2 ** (attempt - 1)
            log.warning("transient error on %s (attempt %d/%d), retrying in %.1fs: %s",
                        what, attempt, attempts, delay, e)
            time.sleep(delay)
            checkpoint()  # a request that ran out of time meanwhile tries no more
    raise AssertionError("unreachable")


def store_kind(fs: fsspec.AbstractFileSystem) -> str:
    """"s3", "gcs", "azure", "local" or "other": which object store a filesystem speaks to."""
    protocols = _protocols(fs)
    if "file" in protocols or "local" in protocols:
        return "local"
    return next((STORE_KINDS[p] for p in protocols if p in STORE_KINDS), "other")


def retry_attempts(fs: fsspec.AbstractFileSystem) -> int:
    """How many times with_retries tries a call on fs: once where the client retries by itself."""
    return 1 if store_kind(fs) in CLIENT_RETRIED_KINDS else RETRY_ATTEMPTS


def retried(what: str):
    def decorate(method):
        @functools.wraps(method)
        def wrapper(self, *args, **kwargs):
            return with_retries(lambda: method(self, *args, **kwargs), f"{what} {args[:1]}", self.attempts)
        return wrapper
    return decorate


def filesystem(url: str, options: Mapping[str, Any] | None = None) -> tuple[fsspec.AbstractFileSystem, str]:
    """The fsspec filesystem and in-filesystem path of a URL; options apply to non-local protocols."""
    protocol = url.split("://", 1)[0] if "://" in url else "file"
    kwargs = dict(options or {}) if protocol not in ("file", "local") else {}
    if protocol in CACHED_LISTING_PROTOCOLS:
        # Other processes write to the store while we run (tasks commit markers, LATEST moves): a cached
        # listing would hide their objects, so every exists/list asks the server.
        kwargs.setdefault("use_listings_cache", False)
    if protocol in ("s3", "s3a"):
        # botocore >= 1.36 checks response checksums by default; S3-compatible servers (rclone, MinIO, Ceph)
        # send the whole object's CRC with a ranged GET, which then never matches. Artefacts that matter
        # carry their own sha256 in a manifest, checked on load.
        config = dict(kwargs.get("config_kwargs") or {})
        config.setdefault("response_checksum_validation", "when_required")
        config.setdefault("request_checksum_calculation", "when_required")
        # One retry layer (with_retries, here): botocore and s3fs try once each, or a flaky call would be
        # tried 5 × 5 × 5 times before anyone heard of it.
        config.setdefault("retries", {"total_max_attempts": 1, "mode": "standard"})  # max_attempts counts retries
        kwargs["config_kwargs"] = config
    fs, path = url_to_fs(url, **kwargs)
    if protocol in ("s3", "s3a"):
        fs.retries = 1
    return fs, path


def read_url(url: str, options: Mapping[str, Any] | None = None, what: str = "read") -> bytes:
    """The whole object at any fsspec URL (a model file, a whitening), transient errors retried."""
    fs, path = filesystem(url, options)
    return with_retries(lambda: fs.cat_file(path), f"{what} {url}", retry_attempts(fs))


class Store:
    """A root URL in any fsspec filesystem, with atomic writes and retried reads.

    Objects are written whole: on object stores a PUT is atomic; on local disk a temporary file is
    renamed over the target. Either way a reader sees the old content or the new, never a part.
    """

    def __init__(self, url: str, options: Mapping[str, Any] | None = None):
        self.url = url.rstrip("/")
        self.options = dict(options or {})
        self.fs, self.root = filesystem(self.url, self.options)
        self.root = self.root.rstrip("/") or "/"
        self.kind = store_kind(self.fs)
        self.is_local = self.kind == "local"
        self.is_s3 = self.kind == "s3"
        self.attempts = retry_attempts(self.fs)
        self.part_bytes = PART_BYTES

    def __reduce__(self):
        # Tasks rebuild the filesystem from the URL and options: never ship a live client to an executor.
        return (Store, (self.url, self.options))

    def path(self, *parts: str) -> str:
        return posixpath.join(self.root, *parts)

    def key_of(self, url: str) -> str | None:
        """The key of a URL (or local path) inside this store; None for one outside it."""
        root = self.child_url()
        if self.is_local and url.startswith("file://"):
            url = url.removeprefix("file://")
        if self.is_local and not url.startswith("/"):
            return None
        return url[len(root) + 1:] if url.startswith(root.rstrip("/") + "/") else None

    def child_url(self, *parts: str) -> str:
        """A key as a URL to show or hand on; a local store's as an absolute path, usable from any folder."""
        return posixpath.join(self.root, *parts) if self.is_local else "/".join([self.url, *parts])

    @retried("exists")
    def exists(self, key: str) -> bool:
        return self.fs.exists(self.path(key))

    @retried("read")
    def read_bytes(self, key: str) -> bytes:
        return self.fs.cat_file(self.path(key))

    def read_text(self, key: str) -> str:
        return self.read_bytes(key).decode("utf-8")

    def read_json(self, key: str) -> Any:
        return json.loads(self.read_bytes(key))

    @retried("write")
    def write_bytes(self, key: str, data: bytes) -> None:
        if self.is_local:
            self._replace_local(key, lambda tmp: _write_synced(tmp, data))
        else:
            self.fs.pipe_file(self.path(key), data)

    def upload(self, local_path: str, key: str) -> None:
        """Copy a large local file to key, as atomically as write_bytes. On S3 a file larger than a part goes up
        in parts, each retried on its own: one failed part of a 10 GB file costs one part again, not the file."""
        if self.is_local:
            with_retries(lambda: self._replace_local(key, lambda tmp: self.fs.put_file(local_path, tmp)),
                         f"upload {key}", self.attempts)
        elif self.is_s3 and os.path.getsize(local_path) > self.part_bytes:
            self._upload_parts(local_path, key)
        else:
            with_retries(lambda: self.fs.put_file(local_path, self.path(key)), f"upload {key}", self.attempts)

    def _upload_parts(self, local_path: str, key: str) -> None:
        bucket, name = self.path(key).split("/", 1)
        size = os.path.getsize(local_path)
        part = max(self.part_bytes, -(-size // MAX_PARTS))

        def call(method: str, what: str, **kwargs: Any) -> dict:
            return with_retries(lambda: self.fs.call_s3(method, Bucket=bucket, Key=name, **kwargs),
                                f"{what} of {self.child_url(key)}")

        upload_id = call("create_multipart_upload", "start the upload")["UploadId"]

        def send(number: int) -> dict:
            with open(local_path, "rb") as f:
                f.seek((number - 1) * part)
                body = f.read(part)
            out = call("upload_part", f"part {number}", UploadId=upload_id, PartNumber=number, Body=body)
            return {"PartNumber": number, "ETag": out["ETag"]}

        try:
            with ThreadPoolExecutor(PARTS_IN_FLIGHT, thread_name_prefix="lookalike-upload") as pool:
                parts = list(pool.map(send, range(1, -(-size // part) + 1)))
            call("complete_multipart_upload", "finish the upload", UploadId=upload_id,
                 MultipartUpload={"Parts": parts})
        except BaseException:
            try:  # parts of an upload never completed are billed until aborted
                self.fs.call_s3("abort_multipart_upload", Bucket=bucket, Key=name, UploadId=upload_id)
            except Exception as e:
                log.warning("could not abort the unfinished upload of %s: %s", self.child_url(key), e)
            raise
        self.fs.invalidate_cache(self.path(key))

    def _replace_local(self, key: str, write: Callable[[str], Any]) -> None:
        # Written beside the target under a temporary name, then renamed over it: readers see old or new.
        target = self.path(key)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        tmp = f"{target}.tmp-{uuid.uuid4().hex[:8]}"
        write(tmp)
        os.replace(tmp, target)

    def write_text(self, key: str, text: str) -> None:
        self.write_bytes(key, text.encode("utf-8"))

    def write_json(self, key: str, obj: Any) -> None:
        self.write_text(key, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")

    def write_parquet(self, key: str, table: pa.Table) -> int:
        """Write a table as one Parquet object; returns its size in bytes."""
        buf = io.BytesIO()
        pq.write_table(table, buf, compression="zstd")
        data = buf.getvalue()
        self.write_bytes(key, data)
        return len(data)

    def download(self, key: str, local_path: str) -> None:
        """Copy an object to a local file a part at a time, each part's read retried on its own (a failure late
        in a 10 GB file costs one part again, not the file); large files never pass through memory whole."""
        if self.is_local:
            with_retries(lambda: self.fs.get_file(self.path(key), local_path), f"download {key}", self.attempts)
            return
        path = self.path(key)
        size = with_retries(lambda: self.fs.info(path)["size"], f"size of {self.child_url(key)}", self.attempts)
        with open(local_path, "wb") as out:
            for start in range(0, size, self.part_bytes):
                end = min(size, start + self.part_bytes)
                out.write(with_retries(lambda s=start, e=end: self.fs.cat_file(path, start=s, end=e),
                                       f"bytes {start}-{end} of {self.child_url(key)}", self.attempts))
            if out.tell() != size:
                raise Unavailable(f"{self.child_url(key)} changed while it was read ({out.tell()} of {size} bytes)")

    @retried("read row group")
    def read_row_group(self, key: str, group: int) -> pa.Table:
        """One row group of a Parquet object: a task reads only its own rows of a plan."""
        with self.fs.open(self.path(key), "rb") as f:
            return pq.ParquetFile(f).read_row_group(group)

    @retried("read parquet")
    def read_parquet(self, key: str, columns: list[str] | None = None) -> pa.Table:
        with self.fs.open(self.path(key), "rb") as f:
            return pq.read_table(f, columns=columns)

    def iter_parquet(self, key: str, columns: list[str] | None = None, batch_rows: int = 65_536
                     ) -> Iterator[pa.RecordBatch]:
        """A Parquet object as record batches of at most batch_rows, read as they are consumed: what a driver
        streams through without holding a whole part (the open is retried; a failure mid-way raises)."""
        f = with_retries(lambda: self.fs.open(self.path(key), "rb"), f"open {self.child_url(key)}", self.attempts)
        with f:
            yield from pq.ParquetFile(f).iter_batches(batch_size=batch_rows, columns=columns)

    @retried("read parquet schema")
    def read_parquet_schema(self, key: str) -> pa.Schema:
        with self.fs.open(self.path(key), "rb") as f:
            return pq.read_schema(f)

    @retried("list")
    def list(self, prefix: str = "") -> list[str]:
        """Keys (relative to the root) of the objects directly under prefix; [] when there are none."""
        try:
            entries = self.fs.ls(self.path(prefix), detail=False)
        except FileNotFoundError:
            return []
        return sorted(posixpath.relpath(e.rstrip("/"), self.root) for e in entries)

    @retried("list sizes")
    def total_size(self, keys: Iterable[str]) -> int:
        """Bytes of these objects together, with one listing per folder (not a request per object)."""
        folders: dict[str, set[str]] = {}
        for key in keys:
            folder, _, name = key.rpartition("/")
            folders.setdefault(folder, set()).add(name)
        total = 0
        for folder, names in folders.items():
            try:
                entries = self.fs.ls(self.path(folder), detail=True)
            except FileNotFoundError:
                continue
            total += sum(int(e.get("size") or 0) for e in entries if posixpath.basename(e["name"].rstrip("/")) in names)
        return total

    def check_writable(self, prefix: str = "") -> None:
        """Write and delete a probe object, so that a read-only or misconfigured store fails before any work."""
        key = posixpath.join(prefix, f"_write-probe-{uuid.uuid4().hex[:8]}")
        try:
            self.write_bytes(key, b"probe")
            self.delete(key)
        except Exception as e:
            raise StoreNotWritable(
                f"cannot write to the store {self.url}: {type(e).__name__}: {e}. Check the credentials (the job "
                "needs to put, get, list and delete objects under the store root), the path, the bucket policy, "
                "and free space; nothing was done") from e

    @retried("delete")
    def delete(self, key: str, recursive: bool = False) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm(self.path(key), recursive=recursive)


def _write_synced(path: str, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _protocols(fs: fsspec.AbstractFileSystem) -> tuple[str, ...]:
    p = fs.protocol
    return (p,) if isinstance(p, str) else tuple(p)


def redact(options: Mapping[str, Any]) -> dict[str, Any]:
    """Store options safe to print or put in a manifest: credentials are replaced by '***'."""
    secret_words = ("key", "secret", "token", "password", "credential")
    out: dict[str, Any] = {}
    for k, v in options.items():
        if isinstance(v, Mapping):
            out[k] = redact(v)
        elif any(w in k.lower() for w in secret_words) and k not in ("endpoint_url",):
            out[k] = "***"
        else:
            out[k] = v
    return out
