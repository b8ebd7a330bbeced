"""The container image without a container runtime: its dependency layer resolves with the image's pins to one
Spark and one CUDA on the Python CI tests, and its entrypoint starts driver and executor the way Spark's
Kubernetes backend asks, with the pyspark package as the image's only Spark."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pyspark
import pytest

from lookalike.dev.net import free_port

REPO = Path(__file__).resolve().parents[1]
DOCKERFILE = (REPO / "deploy" / "Dockerfile").read_text()
ENTRYPOINT = REPO / "deploy" / "image" / "entrypoint.sh"
SPARK_HOME = Path(pyspark.__file__).parent


def pins() -> dict[str, str]:
    lines = (REPO / "deploy" / "constraints.txt").read_text().splitlines()
    return dict(line.split("==") for line in lines if "==" in line and not line.startswith("#"))


def test_the_image_is_one_python_one_spark_one_cuda():
    python = re.search(r"^ARG PYTHON_VERSION=(\S+)$", DOCKERFILE, re.M).group(1)
    assert python == f"{sys.version_info.major}.{sys.version_info.minor}"  # the Python CI tests
    froms = re.findall(r"^FROM (\S+)", DOCKERFILE, re.M)
    base = re.search(r"^ARG BASE_IMAGE=(\S+)$", DOCKERFILE, re.M).group(1)
    # No Spark or CUDA base image beside pip's: a plain Debian with Python (or debian-base.sh's, the same).
    assert froms == ["${BASE_IMAGE}"] and base == "python:${PYTHON_VERSION}-slim-bookworm"
    assert 'ENTRYPOINT ["/opt/lookalike/deploy/image/entrypoint.sh"]' in DOCKERFILE
    # Dependencies before code: the layer that installs them copies only pyproject.toml and the pins.
    assert DOCKERFILE.index("requirements.py all gcs azure") < DOCKERFILE.index("COPY lib ")


@pytest.mark.network
@pytest.mark.slow
@pytest.mark.timeout(300)
def test_the_image_dependencies_resolve_with_its_pins(tmp_path):
    """What the image's dependency layer installs (pip's own resolver, --dry-run, every package as on a
    fresh image): the pinned torch with CUDA 13's runtime wheels and nothing of CUDA 12, the pinned pyspark."""
    requirements = tmp_path / "requirements.txt"
    requirements.write_text(subprocess.run(
        [sys.executable, str(REPO / "deploy" / "image" / "requirements.py"), "all", "gcs", "azure"],
        capture_output=True, text=True, check=True).stdout)
    report = tmp_path / "report.json"
    out = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "-q",
                          "--report", str(report), "-c", str(REPO / "deploy" / "constraints.txt"),
                          "-r", str(requirements)], capture_output=True, text=True, timeout=280)
    assert out.returncode == 0, out.stderr[-3000:]
    installed = {item["metadata"]["name"].lower(): item["metadata"]["version"]
                 for item in json.loads(report.read_text())["install"]}
    for name in ("torch", "torchvision", "pyspark", "faiss-cpu", "timm"):
        assert installed[name] == pins()[name], name
    assert installed["nvidia-cuda-runtime"].split(".")[0] == "13"
    assert not [name for name in installed if name.endswith("-cu12")], "a second CUDA"
    assert {"gcsfs", "adlfs", "s3fs"} <= set(installed)


def run_entrypoint(args: list[str], env: dict, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([str(ENTRYPOINT), *args], env={**os.environ, "SPARK_HOME": str(SPARK_HOME), **env},
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_the_entrypoint_runs_a_driver_in_client_mode_bound_to_the_pod_address(tmp_path):
    job = tmp_path / "job.py"
    job.write_text("import json\nfrom pyspark.sql import SparkSession\n"
                   "conf = dict(SparkSession.builder.getOrCreate().sparkContext.getConf().getAll())\n"
                   "print(json.dumps(conf))\n")
    out = run_entrypoint(["driver", "--master", "local[1]", "--conf", "spark.ui.enabled=false",
                          "--conf", f"spark.pyspark.python={sys.executable}", str(job)],
                         {"SPARK_DRIVER_BIND_ADDRESS": "127.0.0.1", "PYSPARK_PYTHON": sys.executable})
    assert out.returncode == 0, out.stderr[-3000:]
    conf = json.loads(out.stdout.strip().splitlines()[-1])
    assert conf["spark.driver.bindAddress"] == "127.0.0.1" and conf["spark.submit.deployMode"] == "client"
    assert conf["spark.executorEnv.SPARK_DRIVER_POD_IP"] == "127.0.0.1"


@pytest.mark.slow
def test_the_entrypoint_starts_the_kubernetes_executor_backend_from_the_pyspark_jars():
    """An executor pod's start, with the variables Spark sets, against a driver that is not there: the JVM
    must find KubernetesExecutorBackend in pyspark's jars and start it, then fail to reach the driver (not to
    start)."""
    env = {"SPARK_EXECUTOR_MEMORY": "256m", "SPARK_DRIVER_URL": f"spark://CoarseGrainedScheduler@127.0.0.1:"
           f"{free_port()}", "SPARK_EXECUTOR_ID": "1", "SPARK_EXECUTOR_CORES": "1",
           "SPARK_APPLICATION_ID": "spark-test", "SPARK_EXECUTOR_POD_IP": "127.0.0.1",
           "SPARK_EXECUTOR_POD_NAME": "lookalike-exec-1", "SPARK_JAVA_OPT_0": "-Dspark.network.timeout=5s",
           "SPARK_JAVA_OPT_1": "-Dspark.rpc.numRetries=1"}
    out = run_entrypoint(["executor"], env)
    assert out.returncode != 0
    log = out.stdout + out.stderr
    assert "ClassNotFoundException" not in log and "Could not find or load main class" not in log, log[-3000:]
    assert "KubernetesExecutorBackend: Started daemon" in log, log[-3000:]
    assert re.search(r"Failed to connect|Connection refused|awaitResult", log), log[-3000:]


def test_the_entrypoint_passes_other_commands_through():
    out = run_entrypoint([sys.executable, "-c", "import os; print(os.environ['SPARK_HOME'])"], {})
    assert out.returncode == 0 and out.stdout.strip() == str(SPARK_HOME)


def test_the_executor_class_path_takes_the_cluster_s_configuration_and_extra_class_path(tmp_path):
    """As Apache Spark's entrypoint: the Spark and Hadoop configuration folders, spark.executor.extraClassPath
    (Spark sets SPARK_CLASSPATH from it) and a Hadoop distribution's class path reach the executor JVM."""
    out = run_entrypoint(["classpath"], {"HADOOP_CONF_DIR": "/etc/hadoop/conf", "SPARK_CLASSPATH": "/opt/extra/*",
                                         "SPARK_DIST_CLASSPATH": "/opt/hadoop/jars/*", "SPARK_CONF_DIR": "/etc/spark"})
    assert out.returncode == 0, out.stderr
    parts = out.stdout.strip().split(":")
    assert parts[:4] == ["/etc/spark", "/etc/hadoop/conf", "/opt/extra/*", f"{SPARK_HOME}/jars/*"]
    assert "/opt/hadoop/jars/*" in parts and parts[-1] == os.getcwd()


def test_the_entrypoint_finds_java_home_on_any_architecture():
    env = {k: v for k, v in os.environ.items() if k != "JAVA_HOME"}
    out = subprocess.run([str(ENTRYPOINT), "bash", "-c", "echo $JAVA_HOME"], capture_output=True, text=True,
                         env={**env, "SPARK_HOME": str(SPARK_HOME)})
    assert out.returncode == 0 and Path(out.stdout.strip(), "bin", "java").exists(), out.stdout + out.stderr
    assert "ENV DEBIAN_FRONTEND" in DOCKERFILE and "JAVA_HOME=/usr/lib/jvm" not in DOCKERFILE


NSS_WRAPPER = [p for p in Path("/usr/lib").glob("*/libnss_wrapper.so")]


@pytest.mark.skipif(os.geteuid() != 0 or not NSS_WRAPPER or not Path("/usr/bin/python3").exists(),
                    reason="needs root (to run as another UID), libnss-wrapper (which the image installs) and a "
                           "system Python that any UID may run")
def test_a_uid_without_a_passwd_entry_gets_a_name(tmp_path):
    """OpenShift runs images under random UIDs: Python's getpass (torch's caches), Java and Hadoop ask for the
    user's name and fail without a passwd entry."""
    probe = ["/usr/bin/python3", "-c", "import getpass; print(getpass.getuser())"]
    bare = {"PATH": os.environ["PATH"], "SPARK_HOME": str(SPARK_HOME), "HOME": str(tmp_path)}
    as_stranger = ["setpriv", "--reuid", "54321", "--regid", "54321", "--clear-groups"]
    tmp_path.chmod(0o777)
    without = subprocess.run([*as_stranger, *probe], capture_output=True, text=True, env=bare)
    assert without.returncode != 0 and "KeyError" in without.stderr  # what a pod meets without the entrypoint
    named = subprocess.run([*as_stranger, str(ENTRYPOINT), *probe], capture_output=True, text=True, env=bare)
    assert named.returncode == 0 and named.stdout.strip() == "spark", named.stderr[-2000:]


def test_the_image_has_the_decommission_script_spark_runs_on_executor_pods():
    """spark.kubernetes.decommission.script defaults to /opt/decom.sh: a preStop hook that asks the executor JVM
    to decommission (SIGPWR) and waits for it."""
    assert "COPY deploy/image/decom.sh /opt/decom.sh" in DOCKERFILE
    script = REPO / "deploy" / "image" / "decom.sh"
    assert os.access(script, os.X_OK) and subprocess.run(["bash", "-n", str(script)]).returncode == 0
    done = subprocess.run([str(script)], capture_output=True, text=True, timeout=30)  # no executor here
    assert done.returncode == 0 and "no executor JVM" in done.stdout
