"""Running on clusters as platform teams do: Spark settings in three layers (the project's defaults only where
nobody set a value, then spark-submit and its properties file, then --spark-conf), dotted keys, event logs,
one retry layer with typed transient errors, and JSON logs carrying the run id."""

import json
import logging
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import kubeflow_spark_api.models as spark_operator
import kubernetes_validate
import pydantic
import pytest
import yaml
from support.cli import store_option_args

import lookalike.core.store as store_module
from lookalike.cli.args import spark_conf
from lookalike.core.errors import Unavailable
from lookalike.core.logs import bind, configure, run_context
from lookalike.core.spark import IN_PROCESS, resolve_conf
from lookalike.core.store import Store, filesystem, is_transient
from lookalike.dev.net import free_port
from lookalike.dev.synthetic import clustered_vectors, write_embeddings_version
from lookalike.index import build as index_build
from lookalike.index.build import BuildIndexConfig
from lookalike.serve.context import ApiSettings
from lookalike.serve.http_api import create_app, running, serve_metrics
from lookalike.serve.worker import ServedIndex, WorkerSettings

REPO = Path(__file__).resolve().parents[1]

SPARK_SUBMIT = Path(sys.executable).parent.parent / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" \
    / "site-packages" / "pyspark" / "bin" / "spark-submit"


def test_project_defaults_fill_only_what_nobody_set():
    local = resolve_conf("local[2]", submitted={}, given={})
    assert local["spark.ui.enabled"] == "false"
    assert "-XX:TieredStopAtLevel=1" in local["spark.executor.extraJavaOptions"]
    assert local["spark.python.worker.reuse"] == "true"
    cluster = resolve_conf("spark://head:7077", submitted={}, given={})
    assert "spark.ui.enabled" not in cluster and "spark.executor.extraJavaOptions" not in cluster  # a real cluster
    assert cluster["spark.python.worker.reuse"] == "true"
    submitted = {"spark.ui.enabled": "true", "spark.task.maxFailures": "8",
                 "spark.executor.extraJavaOptions": "-Dsite=1", "spark.master": "local[4]"}
    resolved = resolve_conf(None, submitted, given={})
    assert not set(resolved) & set(submitted)  # what spark-submit set is left as it is
    assert resolve_conf(None, submitted, given={"spark.task.maxFailures": "2"})["spark.task.maxFailures"] == "2"


@pytest.mark.slow
def test_spark_submit_and_properties_file_settings_reach_the_job(tmp_path):
    job = tmp_path / "effective_conf.py"
    job.write_text("import json\nfrom lookalike.core.spark import session\n"
                   "s = session(None, 'conf-check', {'spark.executor.memory': '600m'})\n"
                   "print('CONF ' + json.dumps(dict(s.sparkContext.getConf().getAll())))\ns.stop()\n")
    properties = tmp_path / "site.conf"
    properties.write_text("spark.task.maxFailures 8\nspark.executor.extraJavaOptions -Dsite.option=1\n")
    out = subprocess.run([str(SPARK_SUBMIT), "--master", "local[1]", "--properties-file", str(properties),
                          "--conf", "spark.ui.enabled=true", "--conf", "spark.ui.port=0", str(job)],
                         capture_output=True, text=True, timeout=240, check=True).stdout
    conf = json.loads(next(line for line in out.splitlines() if line.startswith("CONF "))[5:])
    assert conf["spark.ui.enabled"] == "true"                          # spark-submit --conf
    assert conf["spark.task.maxFailures"] == "8"                       # the properties file
    options = conf["spark.executor.extraJavaOptions"]  # Spark prepends its own module flags
    assert options.endswith("-Dsite.option=1") and "TieredStopAtLevel" not in options
    assert conf["spark.executor.memory"] == "600m"                     # --spark-conf of the job
    assert conf["spark.python.worker.reuse"] == "true"                 # a project default nobody set


@pytest.mark.slow
def test_a_job_launched_without_spark_submit_keeps_the_site_s_spark_defaults(tmp_path):
    """`lookalike ... --master local[1]` starts its own JVM, which reads the site's spark-defaults.conf: the
    project's small-JVM defaults must not override what the site set there (spark.ui.enabled true ran false)."""
    job = tmp_path / "effective_conf.py"
    job.write_text("import json\nfrom lookalike.core.spark import session\n"
                   "s = session('local[1]', 'conf-check')\n"
                   "print('CONF ' + json.dumps(dict(s.sparkContext.getConf().getAll())))\ns.stop()\n")
    conf_dir = tmp_path / "conf"
    conf_dir.mkdir()
    (conf_dir / "spark-defaults.conf").write_text("# the site's\nspark.ui.enabled   true\nspark.ui.port=0\n"
                                                  "spark.yarn.queue nightly\n")
    out = subprocess.run([sys.executable, str(job)], capture_output=True, text=True, timeout=240, check=True,
                         env={**os.environ, "SPARK_CONF_DIR": str(conf_dir)}).stdout
    conf = json.loads(next(line for line in out.splitlines() if line.startswith("CONF "))[5:])
    assert conf["spark.ui.enabled"] == "true" and conf["spark.yarn.queue"] == "nightly"
    assert "TieredStopAtLevel" in conf["spark.driver.extraJavaOptions"]  # what the site left alone: ours


@pytest.mark.slow
def test_spark_conf_takes_dotted_keys_and_event_logs_are_written(tmp_path):
    assert spark_conf(["spark.executor.memory=4g", "spark.x.y=a=b"], None) == {
        "spark.executor.memory": "4g", "spark.x.y": "a=b"}
    assert spark_conf([], str(tmp_path / "ev")) == {"spark.eventLog.enabled": "true",
                                                     "spark.eventLog.dir": str(tmp_path / "ev")}
    store = Store(str(tmp_path / "store"))
    write_embeddings_version(store, clustered_vectors(500, 16, seed=1), parts=2)
    events = tmp_path / "events"
    events.mkdir()
    subprocess.run([sys.executable, "-m", "lookalike.cli", "build-index", "--store", store.url, "--index", "t",
                    "--master", "local[1]", "--event-log", str(events), "--queries", "20"],
                   capture_output=True, text=True, timeout=300, check=True)
    assert [p.name for p in events.iterdir()], "no event log was written"


@pytest.mark.slow
def test_an_event_log_goes_to_a_store_url_that_spark_itself_cannot_write(moto_server):
    """The pyspark wheel has no S3 connector (s3a:// fails): the log is written locally and copied to the store's
    URL, with the store's options, when the job ends; a history server reads that folder."""
    url, options = moto_server.new_store()
    store = Store(url, options)
    write_embeddings_version(store, clustered_vectors(300, 16, seed=1), parts=2)
    events = url.rsplit("/", 1)[0] + "/spark-events"
    done = subprocess.run([sys.executable, "-m", "lookalike.cli", "build-index", "--store", url, "--index", "t",
                           *store_option_args(options), "--master", "local[1]", "--event-log", events,
                           "--queries", "20"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    fs, root = filesystem(events, options)
    [log] = [f for f in fs.find(root) if "/events_" in f]  # Spark 4 rolls its event logs: a folder per run
    assert "/eventlog_v2_local-" in log and not log.endswith(".inprogress")
    data = fs.cat_file(log)
    if log.endswith(".zstd"):  # Spark 4 compresses event logs with zstd by default
        import pyarrow as pa
        data = pa.input_stream(pa.py_buffer(data), compression="zstd").read()
    assert json.loads(data.split(b"\n", 1)[0])["Event"] == "SparkListenerLogStart"


def test_one_retry_layer_with_typed_transient_errors(tmp_path, monkeypatch):
    monkeypatch.setattr(store_module.time, "sleep", lambda s: None)
    store = Store(str(tmp_path))
    store.write_bytes("a", b"data")
    calls = []
    real = store.fs.cat_file

    def flaky(path, *args, **kwargs):
        calls.append(path)
        if len(calls) < 3:
            raise ConnectionResetError("connection reset by peer")
        return real(path, *args, **kwargs)
    monkeypatch.setattr(store.fs, "cat_file", flaky)
    assert store.read_bytes("a") == b"data" and len(calls) == 3   # two transient failures, then the answer

    def down(path, *args, **kwargs):
        calls.append(path)
        raise ConnectionRefusedError("connection refused")
    calls.clear()
    monkeypatch.setattr(store.fs, "cat_file", down)
    with pytest.raises(Unavailable, match="still failing after 5 attempts") as refused:
        store.read_bytes("a")
    assert len(calls) == 5 and refused.value.exit_code == 69 and is_transient(refused.value)

    def disk_full(path, *args, **kwargs):
        calls.append(path)
        raise OSError(28, "No space left on device: 'part-00500.parquet'")
    calls.clear()
    monkeypatch.setattr(store.fs, "cat_file", disk_full)
    with pytest.raises(OSError, match="No space left"):
        store.read_bytes("a")
    assert len(calls) == 1  # not transient, though its message holds "500"

    class ClientError(Exception):  # as botocore's: the status travels in the response, not in the text
        def __init__(self, status: int, code: str):
            super().__init__(f"An error occurred ({code})")
            self.response = {"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}

    def wrapped(error):
        try:
            raise OSError("translated by s3fs") from error
        except OSError as e:
            return e
    assert is_transient(wrapped(ClientError(503, "SlowDown")))
    assert is_transient(wrapped(ClientError(500, "InternalError")))
    assert not is_transient(wrapped(ClientError(403, "AccessDenied")))
    # The S3 client and s3fs try once: this store's retries are the only layer.
    fs, _ = filesystem("s3://bucket/x", {"client_kwargs": {"endpoint_url": "http://127.0.0.1:1"}})
    assert fs.retries == 1 and fs.config_kwargs["retries"] == {"total_max_attempts": 1, "mode": "standard"}


def test_json_logs_carry_the_run_id_on_every_line(capsys):
    configure(verbose=True, log_format="json")
    try:
        with run_context(run_id="night-7", index="marks"):
            logging.getLogger("lookalike.test").info("embedding %d images", 3)
        logging.getLogger("lookalike.test").warning("outside any run")
        with run_context(index="marks"):
            bind(run_id="night-8")  # a run id learned midway (a resumed night)
            logging.getLogger("lookalike.test").warning("resumed")
        bind(run_id="leaked?")      # outside any run: nothing to add it to
        logging.getLogger("lookalike.test").warning("after")
    finally:
        configure(verbose=False)
    lines = [json.loads(line) for line in capsys.readouterr().err.strip().splitlines()]
    assert lines[0]["message"] == "embedding 3 images" and lines[0]["run_id"] == "night-7"
    assert lines[0]["index"] == "marks" and lines[0]["level"] == "INFO"
    assert "run_id" not in lines[1]
    assert lines[2]["run_id"] == "night-8" and lines[2]["index"] == "marks"
    assert "run_id" not in lines[3]


def test_metrics_have_a_port_of_their_own_without_the_token(tmp_path):
    store = Store(str(tmp_path / "store"))
    write_embeddings_version(store, clustered_vectors(200, 8, seed=2), parts=1)
    index_build.run(BuildIndexConfig(store=store.url, name="t", master=IN_PROCESS, publish=True, queries=10))
    served = ServedIndex(store, WorkerSettings("t", str(tmp_path / "cache")))
    served.start(watch=False)
    app = create_app(served, ApiSettings(token="secret-token"))
    port = free_port()
    serve_metrics(app, "127.0.0.1", port)
    scraped = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
    assert scraped.status_code == 200 and "lookalike_index_vectors 200.0" in scraped.text
    # When the index was last current (here: its publish a moment ago), for a staleness alert.
    [current] = re.findall(r"^lookalike_index_current_timestamp_seconds (\S+)$", scraped.text, re.M)
    assert time.time() - 120 < float(current) <= time.time()
    with running(app) as url:
        assert httpx.get(url + "/metrics", timeout=10).status_code == 401  # the API port keeps its token


def test_kubernetes_manifests_are_valid_for_the_cluster_versions_we_document():
    """Every core resource against Kubernetes' own schemas (kubernetes-validate, strict: no unknown fields), and
    the Spark operator's custom resources against the operator's own API types (kubeflow-spark-api)."""
    documents = [(path.name, doc) for path in sorted((REPO / "deploy" / "k8s").glob("*.yaml"))
                 for doc in yaml.safe_load_all(path.read_text()) if doc]
    kinds = {doc["kind"] for _, doc in documents}
    assert {"Namespace", "ServiceAccount", "Role", "RoleBinding", "Deployment", "Service",
            "PodDisruptionBudget", "ScheduledSparkApplication"} <= kinds
    for name, doc in documents:
        if doc["apiVersion"].startswith("sparkoperator.k8s.io/"):
            assert not spark_operator_problems(doc), (name, spark_operator_problems(doc))
        else:
            kubernetes_validate.validate(doc, "1.30", strict=True)  # raises with the field at fault
        assert doc["metadata"].get("namespace", "lookalike") == "lookalike", name
    [worker] = [d for _, d in documents if d["kind"] == "Deployment"]
    pod = worker["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "lookalike-query" and pod["securityContext"]["runAsNonRoot"]
    assert worker["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"] == "9100"
    assert "--metrics-port" in pod["containers"][0]["command"]


SPARK_OPERATOR_KINDS = {"SparkApplication": spark_operator.SparkV1beta2SparkApplication,
                        "ScheduledSparkApplication": spark_operator.SparkV1beta2ScheduledSparkApplication}


def spark_operator_problems(doc: dict) -> list[str]:
    """What the operator's API (v1beta2) would reject or silently drop in `doc`: a wrong type fails to parse (the
    models are strict: "8" is not an int), and a misspelt field is what the parsed resource no longer holds."""
    try:
        parsed = SPARK_OPERATOR_KINDS[doc["kind"]].from_dict(doc).to_dict()
    except pydantic.ValidationError as e:
        return [str(e)]
    return list(dropped_fields(doc, parsed))


def dropped_fields(written, parsed, path: str = ""):
    if isinstance(written, dict):
        for key, value in written.items():
            if not isinstance(parsed, dict) or key not in parsed:
                yield f"{path}.{key}"
            else:
                yield from dropped_fields(value, parsed[key], f"{path}.{key}")
    elif isinstance(written, list):
        for i, (value, kept) in enumerate(zip(written, parsed, strict=True)):
            yield from dropped_fields(value, kept, f"{path}[{i}]")


def test_the_spark_operator_check_catches_typos_and_wrong_types():
    [doc] = yaml.safe_load_all((REPO / "deploy" / "k8s" / "reindex.yaml").read_text())
    executor = doc["spec"]["template"]["executor"]
    executor["instanses"] = executor.pop("instances")
    assert spark_operator_problems(doc) == [".spec.template.executor.instanses"]
    executor["instances"] = executor.pop("instanses")
    executor["cores"] = "8"
    assert "valid integer" in spark_operator_problems(doc)[0]


EXECUTOR_LOGGING = """
import logging, sys
from lookalike.core.logs import configure, run_context
from lookalike.core.spark import run_tasks

def task(i):
    logging.getLogger("lookalike.embed.task").warning("task %d decoded", i)
    return i

configure(verbose=False, log_format="json")
with run_context(run_id="night-9", index="marks"):
    assert run_tasks(task, [0, 1], sys.argv[1], "logging-test", {"spark.ui.enabled": "false"}) == [0, 1]
"""


@pytest.mark.slow
def test_executor_lines_are_json_with_the_run_id_and_the_task(tmp_path):
    """Lines logged inside Spark tasks (Python workers forked by the executor, here local[2]) come out in the
    driver's format and carry the run's ids and the task's, as the driver's own lines do."""
    script = tmp_path / "job.py"
    script.write_text(EXECUTOR_LOGGING)
    done = subprocess.run([sys.executable, str(script), "local[2]"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    decoded = [line for line in lines if line["message"].endswith("decoded")]
    assert sorted(line["task"] for line in decoded) == ["0", "1"], done.stderr[-3000:]
    assert all(line["run_id"] == "night-9" and line["index"] == "marks" and line["level"] == "WARNING"
               and line["attempt"] == "0" for line in decoded)


def test_the_operator_retries_a_night_only_after_the_lease_of_a_killed_run_has_expired():
    """A driver killed without a word (SIGKILL, a lost node) leaves its lease running until --lease-ttl: a retry
    that comes sooner is refused with 75 and the night is lost (it came after 600 s against a TTL of 900)."""
    [doc] = yaml.safe_load_all((REPO / "deploy" / "k8s" / "reindex.yaml").read_text())
    app = doc["spec"]["template"]
    arguments = [str(a) for a in app["arguments"]]
    ttl = float(arguments[arguments.index("--lease-ttl") + 1]) if "--lease-ttl" in arguments else 900.0
    assert app["restartPolicy"]["onFailureRetries"] >= 1
    assert app["restartPolicy"]["onFailureRetryInterval"] > ttl


PROBE_THREADS = """
import json, faiss
from lookalike.core.cpus import available_cpus
from lookalike.core.spark import task_resources
from lookalike.index import search
from lookalike.retrieval import views
search.use_threads_for(1000)  # a batch: every CPU this process may use
pool = views._feature_threads()._max_workers
print(json.dumps({"available": available_cpus(), "task": task_resources()[0],
                  "faiss_batch": faiss.omp_get_max_threads(), "feature_pool": pool}))
"""


@pytest.mark.slow
def test_thread_pools_follow_the_cpus_the_process_may_use_not_the_node_s(tmp_path):
    """Under a restricted CPU set (taskset; a pod's cpuset or quota alike) the pools are sized from what the
    process may use: a task's CPUs outside Spark (torch's and OpenCV's threads in an embed task follow them),
    faiss's threads for a batch of queries, the query worker's keypoint pool."""
    script = tmp_path / "probe.py"
    script.write_text(PROBE_THREADS)
    free = json.loads(subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                                     check=True).stdout)
    pinned = json.loads(subprocess.run(["taskset", "-c", "0", sys.executable, str(script)], capture_output=True,
                                       text=True, check=True).stdout)
    assert pinned == {"available": 1, "task": 1, "faiss_batch": 1, "feature_pool": 2}  # the pool's floor is 2
    if os.cpu_count() > 1:  # the same probe sees more without the restriction: the figures come from it
        assert free["available"] == free["task"] == free["faiss_batch"] > 1


def test_a_cgroup_cpu_quota_caps_the_cpus(tmp_path):
    from lookalike.core.cpus import available_cpus, cgroup_cpu_quota
    (tmp_path / "cpu.max").write_text("150000 100000\n")  # cgroup v2: 1.5 CPUs
    assert cgroup_cpu_quota(tmp_path) == 1.5 and available_cpus(tmp_path) == min(2, len(os.sched_getaffinity(0)))
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert cgroup_cpu_quota(tmp_path) is None and available_cpus(tmp_path) == len(os.sched_getaffinity(0))
    v1 = tmp_path / "v1"
    (v1 / "cpu").mkdir(parents=True)
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("100000\n")
    (v1 / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert cgroup_cpu_quota(v1) == 1.0 and available_cpus(v1) == 1
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    assert cgroup_cpu_quota(v1) is None


def test_executors_run_without_api_rights_as_non_root_and_pods_are_named_per_run():
    """Executors decode untrusted images: never with the driver's right to create and delete pods."""
    documents = [doc for path in sorted((REPO / "deploy" / "k8s").glob("*.yaml"))
                 for doc in yaml.safe_load_all(path.read_text()) if doc]
    [app] = [d["spec"]["template"] for d in documents if d["kind"] == "ScheduledSparkApplication"]
    driver, executor = app["driver"], app["executor"]
    assert executor["serviceAccount"] != driver["serviceAccount"]
    bound = {s["name"] for d in documents if d["kind"] == "RoleBinding" for s in d["subjects"]}
    assert driver["serviceAccount"] in bound and executor["serviceAccount"] not in bound
    [account] = [d for d in documents if d["kind"] == "ServiceAccount"
                 and d["metadata"]["name"] == executor["serviceAccount"]]
    assert account["automountServiceAccountToken"] is False
    for pod in (driver, executor):
        assert pod["podSecurityContext"]["runAsNonRoot"] and pod["securityContext"]["capabilities"]["drop"] == ["ALL"]
        assert pod["securityContext"]["allowPrivilegeEscalation"] is False
    # A fixed executor pod name prefix makes two nights' pods collide; Spark's own is unique per application.
    assert "spark.kubernetes.executor.podNamePrefix" not in app["sparkConf"]


@pytest.mark.slow
def test_with_the_shipped_log4j_settings_the_jvm_logs_json_lines_like_the_job(tmp_path):
    """One format per stream: a spark-submitted job with --log-format json and the JVM options the Kubernetes
    manifests set writes JSON objects only (but for the JVM launcher's own notice of incubator modules)."""
    store = Store(str(tmp_path / "store"))
    write_embeddings_version(store, clustered_vectors(300, 16, seed=1), parts=2)
    shipped = "/opt/lookalike/deploy/conf/log4j2-json.properties"
    [doc] = yaml.safe_load_all((REPO / "deploy" / "k8s" / "reindex.yaml").read_text())
    conf = doc["spec"]["template"]["sparkConf"]
    for role in ("driver", "executor"):
        assert conf[f"spark.{role}.extraJavaOptions"] == f"-Dlog4j2.configurationFile=file:{shipped}"
    here = str(REPO / shipped.removeprefix("/opt/lookalike/"))
    done = subprocess.run([str(SPARK_SUBMIT), "--master", "local[1]",
                           "--conf", f"spark.driver.extraJavaOptions=-Dlog4j2.configurationFile=file:{here} "
                                     "-Dlookalike.jvm.level=info",  # Spark's INFO lines: many JVM lines
                           "--conf", f"spark.pyspark.python={sys.executable}",
                           "--conf", f"spark.pyspark.driver.python={sys.executable}",
                           str(REPO / "jobs" / "build_index.py"), "--store", store.url, "--index", "t",
                           "--queries", "20", "--log-format", "json", "-v"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [line for line in (done.stderr + done.stdout).splitlines()
             if line.strip() and not line.startswith("WARNING: Using incubator modules")]
    objects = [json.loads(line) for line in lines if not line.startswith("index t/")]  # the summary on stdout
    assert {"time", "level", "logger", "message"} <= set(objects[0])
    assert any(o.get("source") == "jvm" for o in objects) and any(o.get("source") != "jvm" for o in objects)
