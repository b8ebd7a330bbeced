"""Parse the Airflow DAG the way the scheduler does and check its shape; run by `make test` with Airflow
installed in a venv of its own (`make dag-check`), since Airflow's pins are not the library's."""

import os
import sys
from pathlib import Path

# Only this DAG: Airflow 2 would also load (and fail on) its example DAGs without a database.
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")

import airflow  # noqa: E402

try:  # Airflow 3
    from airflow.dag_processing.dagbag import DagBag
except ImportError:  # Airflow 2.10
    from airflow.models.dagbag import DagBag

path = Path(__file__).with_name("airflow_reindex.py")
bag = DagBag(dag_folder=str(path))
if bag.import_errors:
    sys.exit(f"the DAG does not parse: {bag.import_errors}")
dag = bag.dags["lookalike_reindex_trademarks"]
tasks = {t.task_id: t for t in dag.tasks}
assert set(tasks) == {"reindex", "show_summary", "alert_on_failure"}, tasks
rule = str(tasks["alert_on_failure"].trigger_rule)
assert rule.upper().endswith("ONE_FAILED"), rule
codes = tasks["reindex"].skip_on_exit_code
assert 75 in (codes if isinstance(codes, list | tuple | set) else [codes]), codes
assert "var.value" in tasks["reindex"].bash_command  # Variables are read when the task runs, not at parse time
print(f"DAG {dag.dag_id} parses with Airflow {airflow.__version__}: tasks {sorted(tasks)}")
