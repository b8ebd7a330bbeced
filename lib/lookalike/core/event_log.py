"""Spark event logs in any store. Spark writes its event log through Hadoop's filesystems, and the pyspark wheel
has no S3 connector (`s3a://` fails: S3AFileSystem not found), so a URL that Hadoop cannot write to here is
staged: Spark writes the log into a local folder, and when the job's Spark session ends the file is copied to
the URL through fsspec, with the store's options. A history server reads the folder it lands in."""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Mapping
from typing import Any

from lookalike.core.scratch import scratch_root
from lookalike.core.store import filesystem, retry_attempts, with_retries

log = logging.getLogger(__name__)
HADOOP_SCHEMES = ("file", "hdfs", "viewfs")  # what Spark writes to with the pyspark wheel alone
_staged: list[tuple[str, str, dict[str, Any]]] = []  # (local folder, URL, fsspec options)


def event_log_conf(url: str, options: Mapping[str, Any] | None = None) -> dict[str, str]:
    """The Spark settings that write this job's event log to `url`."""
    scheme = url.split("://", 1)[0] if "://" in url else "file"
    if scheme == "file":
        os.makedirs(url.removeprefix("file://"), exist_ok=True)  # Spark refuses a folder that is not there
    if scheme in HADOOP_SCHEMES:
        return {"spark.eventLog.enabled": "true", "spark.eventLog.dir": url}
    staged = next((local for local, target, _ in _staged if target == url.rstrip("/")), None)
    local = staged or tempfile.mkdtemp(prefix="lookalike-events-", dir=scratch_root())
    if staged is None:  # a reindex builds its embed and index settings from the same flag: one folder
        _staged.append((local, url.rstrip("/"), dict(options or {})))
    return {"spark.eventLog.enabled": "true", "spark.eventLog.dir": f"file://{local}"}


def upload_staged() -> list[str]:
    """Once the job is done: stop its Spark session (which closes the event log), then copy each staged log to
    its URL; returns the URLs written."""
    if not _staged:
        return []
    if sys.modules.get("pyspark") is not None:
        from pyspark import SparkContext
        if SparkContext._active_spark_context is not None:
            SparkContext._active_spark_context.stop()
    written = []
    while _staged:
        local, url, options = _staged.pop()
        fs, root = filesystem(url, options)
        for folder, _, files in os.walk(local):  # a rolling event log (Spark 4's default) is a folder of files
            for name in sorted(files):
                source = os.path.join(folder, name)
                relative = os.path.relpath(source, local)
                with_retries(lambda f=fs, s=source, t=f"{root}/{relative}": f.put_file(s, t),
                             f"upload event log {relative}", retry_attempts(fs))
                written.append(f"{url}/{relative}")
        shutil.rmtree(local, ignore_errors=True)
    log.info("Spark event log written to %s", ", ".join(written) or "nowhere (no Spark session ran)")
    return written
