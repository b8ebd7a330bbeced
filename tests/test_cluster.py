"""End to end on a real standalone cluster, the way a platform without Python on its nodes ships lookalike: the
environment packed by deploy/pack-env.sh, sent by deploy/submit.sh with --archives, unpacked as ./env on every
executor and run from there; executors on two workers, S3 store."""

import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import fsspec
import pytest
from support.cli import store_option_args
from support.spark import spark_env

from lookalike.core.store import Store
from lookalike.embed.versions import open_version

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parent.parent


def pack_environment(out: Path) -> Path:
    """The archive of deploy/pack-env.sh, with lookalike packed and its dependencies taken from this venv (the
    node-provided base environment of LOOKALIKE_BASE_SITE_PACKAGES): gigabytes of torch are not packed per run."""
    env = {**os.environ, "LOOKALIKE_BASE_SITE_PACKAGES": sysconfig.get_paths()["purelib"],
           "PYTHON": getattr(sys, "_base_executable", sys.executable)}
    done = subprocess.run([str(REPO / "deploy" / "pack-env.sh"), str(out)], env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return out


DEBIAN_PYTHON = Path("/usr/bin/python3")


@pytest.mark.network
@pytest.mark.slow
@pytest.mark.skipif(not DEBIAN_PYTHON.exists() or subprocess.run(
    [str(DEBIAN_PYTHON), "-c", f"import sys; assert sys.version_info[:2] == {sys.version_info[:2]}"]).returncode,
    reason="no system Python of this minor version at /usr/bin/python3")
def test_an_environment_packed_with_debian_s_python_finds_its_base_packages(tmp_path):
    """Debian's Python imports its own sitecustomize.py (/etc/python3.11) before any in the environment: the
    archive must reach its base packages another way (it said `No module named 'fsspec'`)."""
    env = {**os.environ, "LOOKALIKE_BASE_SITE_PACKAGES": sysconfig.get_paths()["purelib"],
           "PYTHON": str(DEBIAN_PYTHON)}
    archive = tmp_path / "env.tar.gz"
    done = subprocess.run([str(REPO / "deploy" / "pack-env.sh"), str(archive)], env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    unpacked = tmp_path / "env"
    unpacked.mkdir()
    subprocess.run(["tar", "xzf", str(archive), "-C", str(unpacked)], check=True)
    probe = subprocess.run([str(unpacked / "bin" / "python"), "-c",
                            "import fsspec, pyarrow, lookalike.core.store as s; print(s.__file__)"],
                           capture_output=True, text=True, env={"PATH": os.environ["PATH"]})
    assert probe.returncode == 0, probe.stderr[-2000:]
    assert probe.stdout.strip().startswith(str(unpacked))  # lookalike from the archive, the rest from the base
    assert done.stdout.split("(")[1].split(")")[0].endswith("M")  # megabytes, not gigabytes: lookalike alone


@pytest.mark.network
@pytest.mark.slow
def test_submit_embed_with_a_packed_environment_on_standalone_cluster(spark_cluster, s3_store,
                                                                      image_set, tmp_path):
    root, expected = image_set
    fs = fsspec.filesystem("s3", **s3_store.options)
    fs.put(str(root) + "/", f"{s3_store.url.removeprefix('s3://')}/images/", recursive=True)
    archive = pack_environment(tmp_path / "lookalike-env.tar.gz")
    env = {**spark_env(), "LOOKALIKE_MASTER": spark_cluster.master_url, "SPARK_HOME": str(spark_cluster.home),
           "LOOKALIKE_ENV_ARCHIVE": str(archive), "LOOKALIKE_PYTHON": sys.executable,
           "LOOKALIKE_SUBMIT_ARGS": "--conf spark.ui.enabled=false --conf spark.executor.memory=1g "
                                    "--conf spark.task.cpus=1"}
    env.pop("PYSPARK_PYTHON")  # the executors' interpreter is the archive's, as submit.sh sets it
    cmd = [str(REPO / "deploy" / "submit.sh"), "embed", "--images", f"{s3_store.url}/images",
           "--store", s3_store.url, *store_option_args(s3_store.options), "--run-id", "cluster",
           "--images-per-task", "4", "--max-error-rate", "0.5", "--json"]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-4000:]
    manifest = json.loads(out.stdout)
    ok = sum(1 for e in expected.values() if e == "ok")
    assert manifest["counts"]["rows"] == ok
    assert manifest["counts"]["failed"] == len(expected) - ok
    version = open_version(Store(s3_store.url, s3_store.options), manifest["fingerprint_id"], "cluster")
    assert version.read_all(["image_id"]).num_rows == ok
    # Tasks ran in executor processes on the workers, not in the driver.
    markers = [Store(s3_store.url, s3_store.options).read_json(k)
               for k in Store(s3_store.url, s3_store.options).list(version.layout.key("_tasks"))]
    assert len(markers) == manifest["counts"]["tasks"] > 1
    # Every executor unpacked the archive as ./env in its work folder and ran its Python from there.
    work_dirs = [Path(p.args[p.args.index("--work-dir") + 1]) for p in spark_cluster.procs[1:]]
    unpacked = [d for w in work_dirs for d in w.glob("app-*/*/env")]
    assert unpacked and all((d / "bin" / "python").exists() for d in unpacked)
    assert all(list((d / "lib").glob("python*/site-packages/lookalike/__init__.py")) for d in unpacked)
