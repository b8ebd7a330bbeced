"""A standalone Spark master and workers on 127.0.0.1, started from the pyspark package's jars."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass
class SparkCluster:
    """A standalone master and two workers on 127.0.0.1, started straight from the pyspark package's jars."""

    home: Path
    port: int
    procs: list

    @property
    def master_url(self) -> str:
        return f"spark://127.0.0.1:{self.port}"

    @property
    def submit(self) -> str:
        return str(self.home / "bin" / "spark-submit")


def spark_env() -> dict:
    import pyspark
    # Workers launch executors from SPARK_HOME; without it they look for a source build.
    return {**os.environ, "SPARK_HOME": str(Path(pyspark.__file__).parent),
            "SPARK_SCALA_VERSION": "2.13", "SPARK_LOCAL_IP": "127.0.0.1",
            "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable}


def start_spark_daemon(home: Path, main_class: str, args: list[str], log: Path) -> subprocess.Popen:
    # `java -cp` directly: the pip package has no sbin scripts, and spark-class takes twice as long.
    cmd = ["java", "-Xmx384m", "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC",
           "-cp", f"{home / 'conf'}:{home / 'jars'}/*", main_class, *args]
    return subprocess.Popen(cmd, env=spark_env(), stdout=log.open("wb"), stderr=subprocess.STDOUT)


def wait_for_workers(master_log: Path, count: int, procs: list, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if master_log.read_text(errors="replace").count("Registering worker") >= count:
            return
        dead = [p.args for p in procs if p.poll() is not None]
        if dead:
            raise RuntimeError(f"a Spark daemon exited: {dead}")
        time.sleep(0.25)
    raise TimeoutError(f"{count} workers did not register in {timeout}s:\n{master_log.read_text()[-3000:]}")
