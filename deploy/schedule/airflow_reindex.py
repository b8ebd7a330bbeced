"""Airflow DAG for the nightly reindex: one task that runs deploy/submit.sh and acts on its exit code, a summary of
the run report, and an alert when the night is lost.

Copy to the DAGs folder and set the Airflow Variables `lookalike_home`, `lookalike_store`, `lookalike_images`
(and optionally `lookalike_alert_command`, run with the failure's details in $LOOKALIKE_ALERT). They are read
when a task runs (templates), never when the scheduler parses this file.

What each exit code of the reindex does here (`lookalike --help` lists them):
- 0: done; `show_summary` prints the run report.
- 75, another run holds the index's lease: skipped, but only while the index is fresh (`lookalike status
  --max-age 26h`); with a stale index the task fails, is retried, and alerts when the retries are spent.
- 2 and 3, a wrong call or input, or a result the run refused: failed at once, no retry (the same call would fail
  the same way); the alert says what to fix.
- 143 (stopped by SIGTERM, e.g. this task's own timeout), 69 and anything else: failed and retried after
  RETRY_DELAY. The retry resumes the run: a lease released as interrupted is taken over at once, and one whose
  holder was killed without a word expires after LEASE_TTL, which RETRY_DELAY exceeds.
Written for Airflow 3 (`airflow.sdk`); the imports fall back to Airflow 2.10's.
"""

from __future__ import annotations

import os
import signal
import subprocess
from datetime import datetime, timedelta

try:  # Airflow 3
    from airflow.providers.standard.operators.bash import BashOperator
    from airflow.providers.standard.operators.python import PythonOperator
    from airflow.sdk import DAG
    from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowSkipException
except ImportError:  # Airflow 2.10
    from airflow import DAG
    from airflow.exceptions import AirflowException, AirflowFailException, AirflowSkipException
    from airflow.operators.bash import BashOperator
    from airflow.operators.python import PythonOperator

INDEX = "trademarks"
HOME = "{{ var.value.get('lookalike_home', '/opt/lookalike') }}"
STORE = "{{ var.value.get('lookalike_store', 's3://trademarks-search/store') }}"
IMAGES = "{{ var.value.get('lookalike_images', 's3://trademarks-catalogue/images.parquet') }}"
ALERT = "{{ var.value.get('lookalike_alert_command', 'echo') }}"
CLUSTER = {"LOOKALIKE_MASTER": "spark://spark-master.internal:7077",
           "LOOKALIKE_PROPERTIES": f"{HOME}/deploy/conf/standalone.conf",
           "LOOKALIKE_ENV_ARCHIVE": f"{HOME}/dist/lookalike-env.tar.gz"}

LEASE_TTL = timedelta(minutes=15)               # the reindex's --lease-ttl
RETRY_DELAY = LEASE_TTL + timedelta(minutes=5)  # past the TTL: even a killed run's lease has expired by then
MAX_AGE = "26h"                                 # a nightly index older than this is stale
STOP_GRACE_S = 120                              # after SIGTERM, the run's time to cancel, release and report
EXIT_USAGE, EXIT_FAILED, EXIT_BUSY = 2, 3, 75


def reindex_command(home: str, store: str, images: str) -> list[str]:
    return [f"{home}/deploy/submit.sh", "reindex", "--images", images, "--store", store, "--index", INDEX,
            "--keep", "7", "--min-recall", "0.9", "--lease-ttl", str(int(LEASE_TTL.total_seconds())),
            "--event-log", store.rsplit("/", 1)[0] + "/spark-events",  # every night in the history server
            "--log-format", "json"]  # JSON lines with the run id


def run_stopping_cleanly(command: list[str], env: dict[str, str]) -> int:
    """Run the night; if this task is stopped (its timeout, a kill), pass SIGTERM on and give the run its grace."""
    proc = subprocess.Popen(command, env={**os.environ, **env}, start_new_session=True)
    try:
        return proc.wait()
    except BaseException:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        raise


def outcome(code: int, index_is_fresh) -> str:
    """What the task does with the reindex's exit code; `index_is_fresh()` asks `lookalike status`."""
    if code == 0:
        return "done"
    if code == EXIT_BUSY:
        if index_is_fresh():
            raise AirflowSkipException("another run holds the index's lease, and the index is fresh")
        raise AirflowException(f"another run holds the index's lease and the index is stale (older than {MAX_AGE}, or "
                               "its last run did not finish): retrying, then alerting")
    if code in (EXIT_USAGE, EXIT_FAILED):
        raise AirflowFailException(f"the reindex exited {code}: a wrong call or input, or a result it refused; a "
                                   "retry would fail the same way. Its message and LAST.json say what to fix")
    raise AirflowException(f"the reindex exited {code}: retrying in {RETRY_DELAY} (the retry resumes the run)")


def reindex_night(home: str, store: str, images: str, env: dict[str, str]) -> str:
    code = run_stopping_cleanly(reindex_command(home, store, images), env)
    return outcome(code, lambda: subprocess.call([f"{home}/.venv/bin/lookalike", "status", "--store", store,
                                                  "--index", INDEX, "--max-age", MAX_AGE]) == 0)


with DAG(
    dag_id=f"lookalike_reindex_{INDEX}",
    schedule="0 2 * * *",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 2, "retry_delay": RETRY_DELAY},
    tags=["lookalike"],
) as dag:
    reindex = PythonOperator(
        task_id="reindex",
        python_callable=reindex_night,
        op_kwargs={"home": HOME, "store": STORE, "images": IMAGES, "env": CLUSTER},  # templated when the task runs
        execution_timeout=timedelta(hours=8),
    )

    # The run report is also in the store: STORE/reindex/<name>/LAST.json, and per run under <run_id>/.
    summary = BashOperator(
        task_id="show_summary",
        bash_command=f"{HOME}/.venv/bin/lookalike status --store {STORE} --index {INDEX} --json",
    )

    # Runs when the night is lost: the reindex failed for good (after its retries), or was held off a stale index.
    alert = BashOperator(
        task_id="alert_on_failure",
        trigger_rule="one_failed",
        bash_command=f"{ALERT} \"$LOOKALIKE_ALERT\"",
        env={"LOOKALIKE_ALERT": f"lookalike reindex of {INDEX} failed: run {{{{ run_id }}}}, see the task log, "
                                f"`lookalike status --store {STORE} --index {INDEX}` and "
                                f"{STORE}/reindex/{INDEX}/LAST.json"},
        append_env=True,
    )
    reindex >> [summary, alert]
