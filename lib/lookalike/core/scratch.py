"""Where a job writes its large local files (the index build's vectors, exact scorer, index and keypoints; the
embed plan's spill files; an export's bundles): the folder the user names, else the cluster's local folders
(`SPARK_LOCAL_DIRS`, which Spark sets on executors and on a Kubernetes driver from its `spark-local-dir-*`
volumes, or `spark.local.dir`), else the system's temporary folder. On Kubernetes that last one is the
container's writable layer: no volume, and evicted when it outgrows the pod's ephemeral storage."""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator

from lookalike.core.errors import ConfigError

ENV = "LOOKALIKE_SCRATCH_DIR"


def scratch_root(given: str | None = None) -> str:
    """The folder for scratch files: `given`, $LOOKALIKE_SCRATCH_DIR, the first of SPARK_LOCAL_DIRS, the active
    Spark session's spark.local.dir, or the system's temporary folder."""
    for candidate, what in ((given, "--scratch-dir"), (os.environ.get(ENV), ENV),
                            (_first(os.environ.get("SPARK_LOCAL_DIRS")), "SPARK_LOCAL_DIRS"),
                            (_first(_spark_local_dir()), "spark.local.dir")):
        if candidate:
            if not os.path.isdir(candidate):
                raise ConfigError(f"the scratch folder {candidate} (from {what}) is not a folder: give an existing "
                                  "folder on a volume large enough for the job's local files")
            return candidate
    return tempfile.gettempdir()


@contextlib.contextmanager
def scratch(prefix: str, given: str | None = None, needs_bytes: int = 0) -> Iterator[str]:
    """A fresh folder under scratch_root(given), removed afterwards; refuses at once when the volume has less
    free space than `needs_bytes` (an estimate), rather than failing hours later with a full disk."""
    root = scratch_root(given)
    free = shutil.disk_usage(root).free
    if needs_bytes > free:
        raise ConfigError(f"this job needs about {needs_bytes / 2**30:.1f} GiB of local scratch space and {root} has "
                          f"{free / 2**30:.1f} GiB free: give --scratch-dir (or {ENV}, or Spark's local dirs) on a "
                          "larger volume (deploy/SCALING.md, \"Disk per pod\")")
    with tempfile.TemporaryDirectory(prefix=prefix, dir=root) as folder:
        yield folder


def _first(dirs: str | None) -> str | None:
    return dirs.split(",")[0].strip() if dirs else None


def _spark_local_dir() -> str | None:
    if sys.modules.get("pyspark") is None:  # no Spark in this process (or blocked): nothing to ask
        return None
    from pyspark import SparkContext
    sc = SparkContext._active_spark_context
    return sc.getConf().get("spark.local.dir") if sc is not None else None
