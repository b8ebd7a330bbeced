"""Parse the Airflow DAG the way the scheduler does, check its shape, and run what its reindex task does with each
exit code; run by `make test` with Airflow installed in a venv of its own (`make dag-check`), since Airflow's
pins are not the library's. The held-lease case runs for real: deploy/submit.sh starts a reindex (local Spark,
this checkout's .venv) against a store whose lease another run holds, and `lookalike status` finds the index
stale."""

import importlib.util
import json
import os
import sys
import tempfile
import time
from pathlib import Path

# Only this DAG: Airflow 2 would also load (and fail on) its example DAGs without a database.
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")

import airflow  # noqa: E402

try:  # Airflow 3
    from airflow.dag_processing.dagbag import DagBag
except ImportError:  # Airflow 2.10
    from airflow.models.dagbag import DagBag

path = Path(__file__).with_name("airflow_reindex.py")
repo = path.resolve().parents[2]
bag = DagBag(dag_folder=str(path))
if bag.import_errors:
    sys.exit(f"the DAG does not parse: {bag.import_errors}")
dag = bag.dags["lookalike_reindex_trademarks"]
tasks = {t.task_id: t for t in dag.tasks}
assert set(tasks) == {"reindex", "show_summary", "alert_on_failure"}, tasks
rule = str(tasks["alert_on_failure"].trigger_rule)
assert rule.upper().endswith("ONE_FAILED"), rule
reindex = tasks["reindex"]
assert "var.value" in reindex.op_kwargs["home"]  # Variables are read when the task runs, not at parse time

spec = importlib.util.spec_from_file_location("airflow_reindex", path)
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
# Retries come after the lease of a run killed without a word has expired, and the task passes the TTL on.
assert reindex.retries >= 1 and reindex.retry_delay > module.LEASE_TTL, (reindex.retries, reindex.retry_delay)
command = module.reindex_command("/h", "s3://b/store", "s3://b/images")
assert command[command.index("--lease-ttl") + 1] == str(int(module.LEASE_TTL.total_seconds()))


def raised(code, fresh):
    try:
        return module.outcome(code, lambda: fresh)
    except Exception as e:
        return type(e).__name__


assert raised(0, False) == "done"
assert raised(75, True) == "AirflowSkipException"      # held by a run, index fresh: nothing lost
assert raised(75, False) == "AirflowException"         # held and stale: retried, then the alert
assert raised(2, True) == raised(3, True) == "AirflowFailException"  # deterministic: no retry
assert raised(143, True) == raised(69, True) == raised(1, True) == "AirflowException"  # retried

# For real: a live lease in the store, a never-published index, the DAG's own task function.
with tempfile.TemporaryDirectory() as tmp:
    store, images = Path(tmp) / "store", Path(tmp) / "images"
    images.mkdir()
    (store / "indexes" / "trademarks").mkdir(parents=True)
    now = time.time()
    (store / "indexes" / "trademarks" / "_lease.json").write_text(json.dumps({
        "acquired_at": now, "expires_at": now + 3600, "holder": "elsewhere:1:x", "host": "elsewhere", "pid": 1,
        "renewed_at": now, "run_id": "night-1", "state": "running"}))
    try:
        module.reindex_night(str(repo), str(store), str(images), {"LOOKALIKE_MASTER": "local[1]"})
        sys.exit("a held lease over a stale index was not a failure")
    except Exception as e:
        assert type(e).__name__ == "AirflowException" and "stale" in str(e), repr(e)
print(f"DAG {dag.dag_id} parses with Airflow {airflow.__version__}: tasks {sorted(tasks)}; exit codes 0, 2, 3, 69, "
      "75 (fresh and stale, the stale one for real), 143 handled as documented")
