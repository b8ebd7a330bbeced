"""Spark as a task scheduler: start or join a session, run planned tasks on the executors, report progress."""

from __future__ import annotations

import logging
import os
import re
import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from lookalike.core import jvm_output, logs
from lookalike.core.cpus import available_cpus
from lookalike.core.errors import ConfigError
from lookalike.core.extras import require
from lookalike.core.progress import progress

T = TypeVar("T")
log = logging.getLogger(__name__)

# A master value that runs the tasks in this process, one after another, with no Spark at all. Defined here,
# not in config: executors import this module, and config pulls in torch (seconds per Python worker).
IN_PROCESS = "in-process"

# The project's defaults, lowest of three layers: each applies only where neither spark-submit, its properties
# file (spark-defaults.conf) nor the job's --spark-conf set the key.
DEFAULT_CONF = {
    "spark.python.worker.reuse": "true",   # the model stays loaded in a worker between tasks
    "spark.task.maxFailures": "4",
}
# Small JVMs and no UI, for local masters only: on 2 cores the defaults spend more time in the JIT than in our
# tasks. A real cluster keeps its own JVM options and UI.
LOCAL_CONF = {
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.driver.extraJavaOptions": "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC",
    "spark.executor.extraJavaOptions": "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC",
}
LOCAL_MASTER = re.compile(r"^local(\[[^]]*\]|-cluster\[[^]]*\])?$")


def resolve_conf(master: str | None, submitted: Mapping[str, str], given: Mapping[str, str]) -> dict[str, str]:
    """The settings this job adds to what spark-submit and the properties file set (`submitted`): the project's
    defaults where nobody set a key, then the job's own `given` ones (--spark-conf), which win."""
    effective_master = master or submitted.get("spark.master", "")
    defaults = {**DEFAULT_CONF, **(LOCAL_CONF if LOCAL_MASTER.match(effective_master) else {})}
    return {**{k: v for k, v in defaults.items() if k not in submitted}, **given}


def under_spark_submit() -> bool:
    """Whether spark-submit started this driver (its JVM is already running and holds the settings)."""
    return "PYSPARK_GATEWAY_PORT" in os.environ


def site_defaults() -> dict[str, str]:
    """The site's spark-defaults.conf, which the JVM this process launches reads too ($SPARK_CONF_DIR, else
    $SPARK_HOME/conf, else the pyspark package's conf/): its keys count as set, so the project's defaults never
    override them."""
    folder = os.environ.get("SPARK_CONF_DIR")
    if not folder:
        home = os.environ.get("SPARK_HOME")
        if not home:
            import pyspark
            home = os.path.dirname(pyspark.__file__)
        folder = os.path.join(home, "conf")
    try:
        with open(os.path.join(folder, "spark-defaults.conf"), encoding="utf-8") as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        return {}
    pairs = (re.split(r"[\s=]+", line.strip(), maxsplit=1) for line in lines
             if line.strip() and not line.lstrip().startswith("#"))
    return {p[0]: p[1].strip() if len(p) > 1 else "" for p in pairs}


def submitted_conf() -> dict[str, str]:
    """What spark-submit, its --conf flags and its properties file set, when this driver was started by
    spark-submit (the JVM is already running and holds them as spark.* properties); {} when this process will
    start the JVM itself (then the job's settings go into that launch, the driver's JVM options included)."""
    if not under_spark_submit():
        return {}
    from pyspark import SparkConf, SparkContext
    SparkContext._ensure_initialized()  # connects to spark-submit's JVM
    return dict(SparkConf().getAll())


def session(master: str | None, app_name: str, conf: Mapping[str, str] | None = None):
    """The active SparkSession, or a new one. Under spark-submit, master is None and comes from the submit."""
    require("spark", f"running on Spark ({master or 'spark-submit'}; --master in-process runs without it)")
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    submitted = submitted_conf() if under_spark_submit() else site_defaults()
    settings = resolve_conf(master, submitted, conf or {})
    builder = SparkSession.builder.appName(app_name)
    if master:
        builder = builder.master(master)
        # Local and same-machine clusters run executors with this interpreter; real clusters set their own.
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    if not under_spark_submit():
        _start_jvm(master, app_name, settings)
    for key, value in settings.items():
        builder = builder.config(key, value)
    return builder.getOrCreate()


def _start_jvm(master: str | None, app_name: str, settings: dict[str, str]) -> None:
    """This process starts the driver JVM (no spark-submit above it): with lookalike's log4j settings, and its
    output read back through Python's logging (core.jvm_output), so a command prints what the user needs."""
    from pyspark import SparkConf, SparkContext

    if SparkContext._gateway is not None:  # started earlier in this process (a stopped session's JVM lives on)
        return
    verbose = logs.verbose()
    key = "spark.driver.extraJavaOptions"
    settings[key] = f"{settings.get(key, '')} {jvm_output.java_options(verbose)}".strip()
    launch = SparkConf(loadDefaults=False).setAppName(app_name).setAll(list(settings.items()))
    if master:
        launch.setMaster(master)
    SparkContext._ensure_initialized(gateway=jvm_output.launch_gateway(launch, verbose))


def run_tasks(task: Callable[[int], T], task_ids: list[int], master: str | None, app_name: str,
              conf: Mapping[str, str] | None = None, stage: str | None = None, unit: str = "tasks",
              total: int | None = None) -> list[T]:
    """Run task(i) for every id, one Spark task each (or in this process), and return their results.

    The function is shipped by reference (it must be importable on executors) with its small bound
    arguments; tasks load models and indexes themselves, from the store. `stage` names the step's progress,
    counted in tasks, or in `unit` when `total` says how many the tasks hold together (counted as tasks finish).
    """
    if not task_ids:
        return []
    if stage is None:
        return _run_tasks(task, task_ids, master, app_name, conf, None)
    per_task = (total if total is not None else len(task_ids)) / len(task_ids)
    with progress(stage, total if total is not None else len(task_ids), unit) as step:
        return _run_tasks(task, task_ids, master, app_name, conf, lambda done: step.at_least(round(done * per_task)))


def _run_tasks(task: Callable[[int], T], task_ids: list[int], master: str | None, app_name: str,
               conf: Mapping[str, str] | None, on_progress: Callable[[int], None] | None) -> list[T]:
    if master == IN_PROCESS:  # this process: its logging is already set up and its run ids in force
        results = []
        for done, i in enumerate(task_ids, 1):
            results.append(task(i))
            if on_progress:
                on_progress(done)
        return results
    spark = session(master, app_name, conf)
    sc = spark.sparkContext
    group = f"{app_name}-{id(task_ids)}"
    sc.setJobGroup(group, app_name)
    stop = threading.Event()
    watcher = None
    if on_progress:
        watcher = threading.Thread(target=_watch, args=(sc, group, on_progress, stop), daemon=True)
        watcher.start()
    try:
        results = sc.parallelize(task_ids, len(task_ids)).map(LoggedTask(task, logs.for_tasks())).collect()
    except BaseException as e:
        _cancel(sc, group)  # interrupted (SIGTERM) or failed: its other tasks stop instead of running on
        if OUT_OF_MEMORY.search(str(e)):
            raise WorkerOutOfMemory(
                f"{app_name}: a Python worker ran out of memory ({OUT_OF_MEMORY.search(str(e)).group(0)}). If "
                "spark.executor.pyspark.memory is set, unset it: it caps each worker's address space, which torch "
                "far exceeds; give the workers' memory to spark.executor.memoryOverhead instead, or lower "
                "--batch-size (deploy/SCALING.md, \"Memory per pod\")") from e
        raise
    finally:
        stop.set()
        if watcher:
            watcher.join(timeout=2)
    if on_progress:
        on_progress(len(task_ids))  # the tracker is polled: the last tasks may have finished in between
    return results


def _cancel(sc: Any, group: str) -> None:
    try:
        sc.cancelJobGroup(group)
    except Exception as e:  # the JVM may be going down with us; the error being raised matters more
        log.debug("could not cancel the Spark jobs of %s: %s", group, e)


# How a Python worker that ran out of memory (or of address space, under RLIMIT_AS) fails its task.
OUT_OF_MEMORY = re.compile(r"MemoryError|Cannot allocate memory|can't allocate memory|failed to map segment")


class WorkerOutOfMemory(ConfigError):
    """A task's Python worker ran out of memory: the executors' memory settings or the batch size are wrong."""


@dataclass(frozen=True)
class LoggedTask(Generic[T]):
    """A task that logs on its executor as the driver does, each line with the run's ids and its task id."""
    task: Callable[[int], T]
    logging: logs.TaskLogging | None

    def __call__(self, task_id: int) -> T:
        from pyspark import TaskContext
        ctx = TaskContext.get()
        attempt = {"stage": str(ctx.stageId()), "attempt": str(ctx.attemptNumber())} if ctx else {}
        with logs.in_task(self.logging, task=str(task_id), **attempt):
            return self.task(task_id)


def _watch(sc: Any, group: str, on_progress: Callable[[int], None], stop: threading.Event) -> None:
    tracker = sc.statusTracker()
    while not stop.wait(0.5):
        done = 0
        for job_id in tracker.getJobIdsForGroup(group):
            job = tracker.getJobInfo(job_id)
            for stage_id in (job.stageIds if job else []):
                stage = tracker.getStageInfo(stage_id)
                done += stage.numCompletedTasks if stage else 0
        on_progress(done)


def task_resources() -> tuple[int, str | None]:
    """(cpus, gpu address) Spark assigned to the running task; (the CPUs this process may use, None) outside
    Spark."""
    try:
        from pyspark import TaskContext
    except ImportError:
        return available_cpus(), None
    ctx = TaskContext.get()
    if ctx is None:
        return available_cpus(), None
    gpus = ctx.resources().get("gpu")
    return max(1, ctx.cpus()), (gpus.addresses[0] if gpus and gpus.addresses else None)
