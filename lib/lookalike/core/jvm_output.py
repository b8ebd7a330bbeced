"""The Spark JVM that the `lookalike` command starts itself (local masters): its start-up noise kept off the user's
screen, its log4j lines and anything else it prints turned into Python log records (so `--log-format json` gives one
format on stderr), except the lines the Python workers already logged in that format (they come through the JVM)."""

from __future__ import annotations

import logging
import re
import subprocess
import sys
import threading
from importlib import resources
from typing import IO

# Printed on every start, whatever the level; nothing a user can act on. Shown with -v.
STARTUP_NOISE = ("WARNING: Using incubator modules", "Using Spark's default log4j profile",
                 "Setting default log level to", "To adjust logging level use sc.setLogLevel")
LOG4J_LINE = re.compile(r"^\d\d/\d\d/\d\d \d\d:\d\d:\d\d (TRACE|DEBUG|INFO|WARN|ERROR|FATAL) ([^:\s]+): (.*)$")
OURS = re.compile(r"^(\{\"time\": |\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ )")  # core.logs' JSON and text lines
LEVELS = {"TRACE": logging.DEBUG, "DEBUG": logging.DEBUG, "INFO": logging.INFO, "WARN": logging.WARNING,
          "ERROR": logging.ERROR, "FATAL": logging.CRITICAL}


def java_options(verbose: bool) -> str:
    """The driver JVM options that point log4j at lookalike's settings: errors only, warnings too with -v."""
    path = resources.files("lookalike.core").joinpath("log4j2.properties")
    return f"-Dlog4j2.configurationFile=file:{path} -Dlookalike.jvm.level={'warn' if verbose else 'error'}"


def launch_gateway(conf, verbose: bool):
    """Start the JVM (pyspark's launch_gateway) with its stderr read by a thread that filters and re-logs it."""
    from pyspark.java_gateway import launch_gateway as pyspark_launch

    gateway = pyspark_launch(conf, popen_kwargs={"stderr": subprocess.PIPE})
    threading.Thread(target=forward, args=(gateway.proc.stderr, verbose), name="spark-jvm-stderr",
                     daemon=True).start()
    return gateway


def forward(stream: IO[bytes], verbose: bool, out: IO[str] | None = None) -> None:
    """Until the JVM closes its stderr: start-up noise is dropped unless verbose; log4j lines become log records of
    `spark.<class>`; lines a Python worker logged go to `out` (stderr) as they are; anything else (a worker's
    traceback, the JVM's own notices) becomes a record of `spark.jvm`."""
    for raw in iter(stream.readline, b""):
        line = raw.decode("utf-8", "replace").rstrip("\n")
        if not line or (not verbose and line.startswith(STARTUP_NOISE)):
            continue
        match = LOG4J_LINE.match(line)
        if match:
            level, source, message = match.groups()
            logging.getLogger(f"spark.{source}").log(LEVELS[level], "%s", message)
        elif OURS.match(line):
            target = out or sys.stderr
            target.write(line + "\n")
            target.flush()
        else:
            logging.getLogger("spark.jvm").log(logging.INFO if line.startswith(STARTUP_NOISE) else logging.WARNING,
                                               "%s", line)
