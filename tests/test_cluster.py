"""End to end on a real standalone cluster: spark-submit jobs/embed.py, executors on two workers, S3 store."""

import json
import subprocess
import sys
from pathlib import Path

import fsspec
import pytest

from lookalike.core.store import Store
from lookalike.embed.versions import open_version

from conftest import spark_env

REPO = Path(__file__).resolve().parent.parent


def s3_args(options: dict) -> list[str]:
    return [f"--store-option=key={options['key']}", f"--store-option=secret={options['secret']}",
            f"--store-option=client_kwargs.endpoint_url={options['client_kwargs']['endpoint_url']}",
            "--store-option=client_kwargs.region_name=us-east-1"]


@pytest.mark.cluster
def test_spark_submit_embed_on_standalone_cluster(spark_cluster, s3_store, image_set):
    root, expected = image_set
    fs = fsspec.filesystem("s3", **s3_store.options)
    fs.put(str(root) + "/", f"{s3_store.url.removeprefix('s3://')}/images/", recursive=True)
    cmd = [spark_cluster.submit, "--master", spark_cluster.master_url,
           "--conf", f"spark.pyspark.python={sys.executable}", "--conf", "spark.ui.enabled=false",
           "--conf", "spark.executor.memory=1g", "--conf", "spark.task.cpus=1",
           str(REPO / "jobs" / "embed.py"), "--images", f"{s3_store.url}/images", "--store", s3_store.url,
           *s3_args(s3_store.options), "--run-id", "cluster", "--images-per-task", "4",
           "--max-error-rate", "0.5", "--json"]
    out = subprocess.run(cmd, env=spark_env(), capture_output=True, text=True, timeout=600)
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
