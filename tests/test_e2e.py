"""End to end as operators run it: `deploy/submit.sh reindex` on a standalone Spark cluster (master + 2 workers on
127.0.0.1) against the S3 server, an executor killed mid-embed, a query worker serving LATEST, and the next
night's changes flowing through to its answers."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import fsspec
import httpx
import numpy as np
import pytest
from support.cli import store_option_args
from support.spark import spark_env

from lookalike.core.store import Store
from lookalike.dev.imagefactory import PHOTOS, broken_images, jpeg_bytes, photo, random_crop, write_photo_crops
from lookalike.dev.net import free_port
from lookalike.embed.versions import open_version
from lookalike.index import publish

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parent.parent
NAME = "trademarks"


def submit_reindex(cluster, store, images: str, run_id: str, log: Path) -> subprocess.Popen:
    env = {**spark_env(), "LOOKALIKE_MASTER": cluster.master_url, "LOOKALIKE_PYTHON": sys.executable,
           "SPARK_HOME": str(cluster.home),
           "LOOKALIKE_SUBMIT_ARGS": "--conf spark.ui.enabled=false --conf spark.executor.memory=1g "
                                    "--conf spark.task.cpus=1 --conf spark.task.maxFailures=4"}
    cmd = [str(REPO / "deploy" / "submit.sh"), "reindex", "--images", images, "--store", store.url,
           *store_option_args(store.options), "--index", NAME, "--run-id", run_id, "--factory", "IVF4,Flat",
           "--images-per-task", "3", "--queries", "10", "--max-error-rate", "0.1", "--json"]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=log.open("wb"), text=True,
                            start_new_session=True)


def executor_pids(cluster) -> list[int]:
    """Executor JVMs launched by the cluster's workers (children of the worker daemons)."""
    workers = {p.pid for p in cluster.procs[1:]}
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if b"CoarseGrainedExecutorBackend" in cmdline and ppid in workers:
            found.append(int(entry.name))
    return found


def finish(proc: subprocess.Popen, log: Path) -> dict:
    try:
        out, _ = proc.communicate(timeout=540)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        raise
    assert proc.returncode == 0, out[-3000:] + log.read_text()[-2000:]  # a traceback comes on stdout
    return json.loads(out)


def search(worker_url: str, image: bytes, k: int = 3) -> list[dict]:
    r = httpx.post(f"{worker_url}/search/images", files={"images": ("q.jpg", image, "image/jpeg")},
                   data={"k": str(k)}, timeout=60)
    assert r.status_code == 200, r.text
    return r.json()["results"][0]["hits"]


@pytest.mark.slow
def test_nightly_reindex_on_a_cluster_served_and_updated(spark_cluster, s3_store, tmp_path):
    store = Store(s3_store.url, s3_store.options)
    folder = tmp_path / "catalogue"
    folder.mkdir()
    write_photo_crops(folder, PHOTOS, per_photo=5)
    (folder / "truncated.jpg").write_bytes(broken_images()["truncated.jpg"][0])
    fs = fsspec.filesystem("s3", **s3_store.options)
    images_url = s3_store.url.replace("/store", "/images")
    fs.put(str(folder) + "/", images_url.removeprefix("s3://") + "/", recursive=True)

    # Night 1, with one executor killed while the embed tasks run: Spark reruns its tasks elsewhere.
    log = tmp_path / "night1.log"
    proc = submit_reindex(spark_cluster, store, images_url, "night-1", log)
    deadline = time.monotonic() + 300
    while True:
        assert proc.poll() is None, log.read_text()[-5000:]
        assert time.monotonic() < deadline, "the embed tasks never started committing"
        fingerprints = store.list("embeddings")
        if fingerprints and len(store.list(f"{fingerprints[0]}/night-1/_tasks")) >= 2 and executor_pids(spark_cluster):
            break
        time.sleep(0.1)
    victim = executor_pids(spark_cluster)[0]
    os.kill(victim, signal.SIGKILL)
    night1 = finish(proc, log)
    assert "ExecutorLostFailure" in log.read_text() or "Lost executor" in log.read_text()
    assert night1["status"] == "published" and night1["index"]["build_mode"] == "full"
    assert (night1["images"]["indexed"], night1["images"]["failed"]) == (40, 1)
    # Exactly once: every image once in the version, however many task attempts wrote shards.
    fingerprint_id = night1["embeddings"].split("/")[0]
    version = open_version(store, fingerprint_id, "night-1")
    ids = version.read_all(["image_id"])["image_id"].to_pylist()
    assert len(ids) == len(set(ids)) == 40
    markers = [store.read_json(k) for k in store.list(version.layout.key("_tasks"))]
    assert sum(m["rows"] for m in markers) == 40 and len(markers) == version.manifest["counts"]["tasks"]

    # A query worker on LATEST.
    port, worker_log = free_port(), tmp_path / "worker.log"
    worker = subprocess.Popen(
        [sys.executable, "-m", "lookalike.cli.main", "serve", "--store", store.url, *store_option_args(store.options),
         "--index", NAME, "--port", str(port), "--cache-dir", str(tmp_path / "cache"), "--poll-interval", "0.5"],
        stdout=worker_log.open("wb"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        served = wait_served(url, worker, worker_log, night1["latest"]["after"])
        assert served == night1["latest"]["after"]
        coins_4 = (folder / "coins-4.jpg").read_bytes()
        assert search(url, coins_4)[0]["image_id"] == "coins-4.jpg"

        # Night 2: two new images, one changed, one removed.
        rng = np.random.default_rng(11)
        new = {f"clock-{i}.jpg": jpeg_bytes(random_crop(photo("coffee", 256), rng)) for i in range(2)}
        base = images_url.removeprefix("s3://")
        for name, data in new.items():
            fs.pipe_file(f"{base}/{name}", data)
        changed = jpeg_bytes(random_crop(photo("chelsea", 256), rng))
        fs.pipe_file(f"{base}/rocket-1.jpg", changed)
        fs.rm(f"{base}/coins-4.jpg")
        log2 = tmp_path / "night2.log"
        night2 = finish(submit_reindex(spark_cluster, store, images_url, "night-2", log2), log2)
        assert (night2["images"]["new"], night2["images"]["changed"], night2["images"]["removed"],
                night2["images"]["embedded"]) == (2, 1, 1, 3)
        assert night2["index"]["build_mode"] == "incremental", night2["index"]["reason"]
        assert night2["latest"] == {"before": night1["latest"]["after"],
                                    "after": publish.latest_version(store, NAME)}

        wait_served(url, worker, worker_log, night2["latest"]["after"])
        hit = search(url, new["clock-1.jpg"])[0]
        assert (hit["image_id"], round(hit["cosine"], 3)) == ("clock-1.jpg", 1.0)
        hit = search(url, changed)[0]
        assert (hit["image_id"], round(hit["cosine"], 3)) == ("rocket-1.jpg", 1.0)
        assert "coins-4.jpg" not in {h["image_id"] for h in search(url, coins_4, k=10)}
    finally:
        worker.terminate()
        worker.wait(30)


def wait_served(url: str, worker: subprocess.Popen, log: Path, version: str, timeout: float = 120.0) -> str:
    deadline = time.monotonic() + timeout
    health: dict = {}
    while time.monotonic() < deadline:
        assert worker.poll() is None, log.read_text()[-3000:]
        try:
            health = httpx.get(f"{url}/healthz", timeout=5).json()
            if health.get("version") == version:
                return version
        except (httpx.TransportError, ValueError):
            pass
        time.sleep(0.3)
    raise AssertionError(f"the worker never served {version}: {health}\n{log.read_text()[-3000:]}")
