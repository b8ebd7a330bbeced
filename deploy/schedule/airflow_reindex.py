"""Airflow DAG for the nightly reindex: one task that runs deploy/submit.sh, a summary of the run report, and an
alert when the reindex fails.

Copy to the DAGs folder and set the Airflow Variables `lookalike_home`, `lookalike_store`, `lookalike_images`
(and optionally `lookalike_alert_command`, run with the failure's details in $LOOKALIKE_ALERT). They are read
when a task runs (templates), never when the scheduler parses this file. Exit code 75 means another run holds
the index's lease: the task is marked skipped, not failed.
Written for Airflow 3 (`airflow.sdk`); the imports fall back to Airflow 2.10's.
"""

from __future__ import annotations

from datetime import datetime, timedelta

try:  # Airflow 3
    from airflow.providers.standard.operators.bash import BashOperator
    from airflow.sdk import DAG
except ImportError:  # Airflow 2.10
    from airflow import DAG
    from airflow.operators.bash import BashOperator

INDEX = "trademarks"
HOME = "{{ var.value.get('lookalike_home', '/opt/lookalike') }}"
STORE = "{{ var.value.get('lookalike_store', 's3://trademarks-search/store') }}"
IMAGES = "{{ var.value.get('lookalike_images', 's3://trademarks-catalogue/images.parquet') }}"
ALERT = "{{ var.value.get('lookalike_alert_command', 'echo') }}"

with DAG(
    dag_id=f"lookalike_reindex_{INDEX}",
    schedule="0 2 * * *",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 1, "retry_delay": timedelta(minutes=10)},  # a retry resumes the failed run
    tags=["lookalike"],
) as dag:
    reindex = BashOperator(
        task_id="reindex",
        bash_command=(f"{HOME}/deploy/submit.sh reindex --images {IMAGES} --store {STORE} --index {INDEX} "
                      "--keep 7 --min-recall 0.9 --log-format json"),  # JSON lines with the run id
        env={"LOOKALIKE_MASTER": "spark://spark-master.internal:7077",
             "LOOKALIKE_PROPERTIES": f"{HOME}/deploy/conf/standalone.conf",
             "LOOKALIKE_ENV_ARCHIVE": f"{HOME}/dist/lookalike-env.tar.gz"},
        append_env=True,            # keeps the worker's AWS_* credentials chain
        skip_on_exit_code=75,       # another run holds the lease
        execution_timeout=timedelta(hours=8),
    )

    # The run report is also in the store: STORE/reindex/<name>/LAST.json, and per run under <run_id>/.
    summary = BashOperator(
        task_id="show_summary",
        bash_command=f"{HOME}/.venv/bin/python -c \"import fsspec, json; "
                     f"r = json.loads(fsspec.open('{STORE}/reindex/{INDEX}/LAST.json').open().read()); "
                     "print(r['status'], r.get('latest'), r.get('images'))\"",
    )

    # Runs only when the reindex failed (not when it was skipped for a held lease).
    alert = BashOperator(
        task_id="alert_on_failure",
        trigger_rule="one_failed",
        bash_command=f"{ALERT} \"$LOOKALIKE_ALERT\"",
        env={"LOOKALIKE_ALERT": f"lookalike reindex of {INDEX} failed: run {{{{ run_id }}}}, see the task log "
                                f"and {STORE}/reindex/{INDEX}/LAST.json"},
        append_env=True,
    )
    reindex >> [summary, alert]
