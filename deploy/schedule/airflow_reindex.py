"""Airflow DAG for the nightly reindex: one task that runs deploy/submit.sh, plus a check of the run report.

Copy to the DAGs folder and set the Airflow Variables `lookalike_home`, `lookalike_store`, `lookalike_images`.
Exit code 75 means another run holds the index's lease: the task is marked skipped, not failed.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow import DAG
from airflow.models import Variable
from airflow.operators.bash import BashOperator

INDEX = "trademarks"

with DAG(
    dag_id=f"lookalike_reindex_{INDEX}",
    schedule="0 2 * * *",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 1, "retry_delay": timedelta(minutes=10)},  # a retry resumes the failed run
    tags=["lookalike"],
) as dag:
    home = Variable.get("lookalike_home", "/opt/lookalike")
    store = Variable.get("lookalike_store", "s3://trademarks-search/store")
    images = Variable.get("lookalike_images", "s3://trademarks-catalogue/images.parquet")

    reindex = BashOperator(
        task_id="reindex",
        bash_command=(f"{home}/deploy/submit.sh reindex --images {images} --store {store} --name {INDEX} "
                      "--keep 7 --min-recall 0.9"),  # prints the run summary into the task log
        env={"LOOKALIKE_MASTER": "spark://spark-master.internal:7077",
             "LOOKALIKE_PROPERTIES": f"{home}/deploy/conf/standalone.conf",
             "LOOKALIKE_ENV_ARCHIVE": f"{home}/dist/lookalike-env.tar.gz"},
        append_env=True,            # keeps the worker's AWS_* credentials chain
        skip_on_exit_code=75,       # another run holds the lease
        execution_timeout=timedelta(hours=8),
    )

    # The run report is also in the store: STORE/reindex/<name>/LAST.json, and per run under <run_id>/.
    check = BashOperator(
        task_id="show_summary",
        bash_command=f"{home}/.venv/bin/python -c \"import fsspec, json; "
                     f"r = json.loads(fsspec.open('{store}/reindex/{INDEX}/LAST.json').open().read()); "
                     "print(r['status'], r.get('latest'), r.get('images'))\"",
    )
    reindex >> check
