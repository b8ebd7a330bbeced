"""The nightly reindex on Spark local mode against real S3 servers: a night's changes, the report, the lease
between two runs, and the faults an operator meets (driver killed mid-build, S3 restarted, read-only store)."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import fsspec
import numpy as np
import pytest
from support.cli import store_option_args
from support.servers import S3Server

from lookalike.cli.main import main
from lookalike.core.errors import EXIT_BUSY, EXIT_INTERRUPTED, EXIT_STALE
from lookalike.core.spark import IN_PROCESS
from lookalike.core.store import Store
from lookalike.dev.imagefactory import PHOTOS, broken_images, jpeg_bytes, photo, random_crop, write_photo_crops
from lookalike.dev.net import free_port
from lookalike.index import publish
from lookalike.model.backbones import backbone_of
from lookalike.model.spec import ModelSpec

NAME = "marks"
FACTORY = "IVF4,Flat"  # a trained index, so that a night's update can be incremental


def write_catalogue(root: Path) -> Path:
    """8 photos × 5 crops, plus two files that are not usable images."""
    root.mkdir(parents=True, exist_ok=True)
    write_photo_crops(root, PHOTOS, per_photo=5)
    for name in ("truncated.jpg", "empty.jpg"):
        (root / name).write_bytes(broken_images()[name][0])
    return root


def upload(folder: Path, url: str, options: dict) -> str:
    fs, path = fsspec.core.url_to_fs(url, **options)
    fs.put(str(folder) + "/", path + "/", recursive=True)
    return url


def reindex_args(images: str, store: str, options: dict, *extra: str) -> list[str]:
    return ["reindex", "--images", images, "--store", store, *store_option_args(options), "--index", NAME,
            "--master", "local[2]", "--factory", FACTORY, "--images-per-task", "6", "--queries", "10",
            "--max-error-rate", "0.1", "--json", *extra]


def run_cli(args: list[str], capsys) -> tuple[int, dict | str]:
    rc = main(args)
    out, err = capsys.readouterr()
    return rc, (json.loads(out) if rc == 0 and out.strip().startswith("{") else err)


def start_cli(args: list[str], log: Path) -> subprocess.Popen:
    # Its own session, so that a kill takes the Spark JVM and the Python workers with it, as a dead driver.
    return subprocess.Popen([sys.executable, "-m", "lookalike.cli.main", *args], stdout=log.open("wb"),
                            stderr=subprocess.STDOUT, start_new_session=True)


def wait_for(condition, proc: subprocess.Popen, log: Path, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            raise AssertionError(f"exited with {proc.returncode} before the moment to act:\n{log.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            raise TimeoutError(log.read_text()[-3000:])
        time.sleep(0.05)


def top_hit(store: Store, image: Path, capsys) -> tuple[str, float]:
    rc, out = run_cli(["search", "--store", store.url, *store_option_args(store.options), "--index", NAME,
                       str(image), "--k", "1", "--json"], capsys)
    assert rc == 0, out
    hit = out["results"][0]["hits"][0]
    return hit["image_id"], hit["cosine"]


@pytest.mark.slow
def test_a_night_of_changes_is_embedded_indexed_incrementally_and_reported(moto_server, spark, tmp_path, capsys):
    url, options = moto_server.new_store()
    store = Store(url, options)
    folder = write_catalogue(tmp_path / "catalogue")
    images = upload(folder, f"{url.rsplit('/', 1)[0]}/images", options)

    rc, first = run_cli(reindex_args(images, url, options), capsys)
    assert rc == 0, first
    assert first["status"] == "published" and first["index"]["build_mode"] == "full"
    assert first["images"] == {"listed": 42, "new": 40, "changed": 0, "unchanged": 0, "removed": 0, "failed": 2,
                               "embedded": 40, "carried_over": 0, "indexed": 40}
    assert first["errors_table"].endswith("/errors") and first["latest"]["before"] is None
    v1 = first["latest"]["after"]
    assert publish.latest_version(store, NAME) == v1
    assert store.read_json(f"reindex/{NAME}/LAST.json")["run_id"] == first["run_id"]
    assert "PUBLISHED" in store.read_text(f"reindex/{NAME}/{first['run_id']}/summary.txt")
    assert not store.exists(f"indexes/{NAME}/_lease.json")  # released

    rc, same = run_cli(reindex_args(images, url, options), capsys)
    assert rc == 0, same
    assert same["status"] == "unchanged" and same["images"]["embedded"] == 0
    # Nothing was read but the two unusable files, which are tried again every night.
    assert {k: same["reading"][k] for k in ("listed", "unchanged_by_listing", "read", "hashed", "change_detection")} \
        == {"listed": 42, "unchanged_by_listing": 40, "read": 2, "hashed": 2, "change_detection": "listing"}
    assert same["reading"]["bytes_read"] == len(broken_images()["truncated.jpg"][0])  # and the empty one
    assert publish.latest_version(store, NAME) == v1

    # The night's changes: two new images, one changed (now a crop of another photo), one removed.
    fs, base = fsspec.core.url_to_fs(images, **options)
    rng = np.random.default_rng(7)
    new_crops = {f"coffee-new-{i}.jpg": jpeg_bytes(random_crop(photo("coffee", 256), rng)) for i in range(2)}
    for name, data in new_crops.items():
        fs.pipe_file(f"{base}/{name}", data)
    changed = jpeg_bytes(random_crop(photo("astronaut", 256), rng))
    fs.pipe_file(f"{base}/rocket-0.jpg", changed)
    fs.rm(f"{base}/coins-4.jpg")
    rc, night = run_cli(reindex_args(images, url, options), capsys)
    assert rc == 0, night
    assert (night["images"]["new"], night["images"]["changed"], night["images"]["removed"],
            night["images"]["embedded"], night["images"]["indexed"]) == (2, 1, 1, 3, 41)
    assert night["index"]["build_mode"] == "incremental", night["index"]["reason"]
    assert (night["reading"]["unchanged_by_listing"], night["reading"]["read"]) == (38, 5)
    assert night["memory"]["worker_peak_rss_mb"] > 0 and set(night["embed_timings"]) == {"list_s", "plan_s", "tasks_s"}
    assert "changes found by the listing: 38 unchanged by the listing, 5 read" in \
        store.read_text(f"reindex/{NAME}/{night['run_id']}/summary.txt")
    assert night["latest"] == {"before": v1, "after": publish.latest_version(store, NAME)}
    assert night["latest"]["after"] != v1

    # Searches see the night: the new image is found as itself, the changed id under its new content.
    (tmp_path / "q").mkdir()
    query = tmp_path / "q" / "new.jpg"
    query.write_bytes(new_crops["coffee-new-0.jpg"])
    assert top_hit(store, query, capsys) == ("coffee-new-0.jpg", pytest.approx(1.0, abs=1e-3))
    query.write_bytes(changed)
    assert top_hit(store, query, capsys) == ("rocket-0.jpg", pytest.approx(1.0, abs=1e-3))
    ids = store.read_parquet(f"indexes/{NAME}/{night['latest']['after']}/ids.parquet", ["image_id"])
    assert "coins-4.jpg" not in set(ids["image_id"].to_pylist())


@pytest.mark.slow
def test_a_second_reindex_is_refused_while_one_runs(moto_server, tmp_path):
    url, options = moto_server.new_store()
    store = Store(url, options)
    images = upload(write_catalogue(tmp_path / "catalogue"), f"{url.rsplit('/', 1)[0]}/images", options)
    log = tmp_path / "first.log"
    first = start_cli(reindex_args(images, url, options), log)
    try:
        wait_for(lambda: store.exists(f"indexes/{NAME}/_lease.json"), first, log)
        second = subprocess.run([sys.executable, "-m", "lookalike.cli.main", *reindex_args(images, url, options)],
                                capture_output=True, text=True, timeout=120)
        assert second.returncode == EXIT_BUSY, second.stderr
        assert "another reindex of index 'marks' is running" in second.stderr
        assert "This run did nothing" in second.stderr
        assert first.wait(300) == 0, log.read_text()[-3000:]
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
    report = store.read_json(f"reindex/{NAME}/LAST.json")
    assert report["status"] == "published" and report["images"]["indexed"] == 40


@pytest.mark.slow
def test_driver_killed_mid_build_leaves_latest_and_the_rerun_resumes(s3_store, tmp_path, capsys):
    store = Store(s3_store.url, s3_store.options)
    folder = write_catalogue(tmp_path / "catalogue")
    images = upload(folder, s3_store.url.replace("/store", "/images"), s3_store.options)
    args = reindex_args(images, s3_store.url, s3_store.options, "--lease-ttl", "4")
    rc, first = run_cli(args, capsys)
    assert rc == 0, first
    v1 = first["latest"]["after"]

    fs, base = fsspec.core.url_to_fs(images, **s3_store.options)
    fs.pipe_file(f"{base}/clock-0.jpg", jpeg_bytes(photo("clock")))
    log = tmp_path / "killed.log"
    proc = start_cli([*args, "--run-id", "night-2"], log)
    wait_for(lambda: store.list(f"indexes/{NAME}/_build"), proc, log)  # the index build has begun
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert publish.latest_version(store, NAME) == v1  # readers never saw anything of the killed run

    # Its lease is still live: a rerun right away is refused; once it expires, the rerun resumes night-2.
    rc, err = run_cli(args, capsys)
    assert rc == EXIT_BUSY and "run night-2" in err
    time.sleep(4.5)
    rc, resumed = run_cli(args, capsys)
    assert rc == 0, resumed
    assert resumed["run_id"] == "night-2" and resumed["resumed"] is True
    assert "night-2" in resumed["took_over_lease"]
    assert resumed["images"]["new"] == 1 and resumed["images"]["embedded"] == 1  # the embed ran once, in night-2
    assert resumed["latest"]["before"] == v1 and publish.latest_version(store, NAME) == resumed["latest"]["after"]
    assert resumed["index"]["ntotal"] == 41


@pytest.mark.slow
def test_s3_restarted_mid_embed_is_retried_and_the_run_completes(tmp_path_factory, tmp_path):
    server = S3Server(tmp_path_factory.mktemp("s3-restart"), free_port())
    server.start()
    try:
        bucket = server.new_bucket()
        url = f"s3://{bucket}/store"
        store = Store(url, server.options)
        images = upload(write_catalogue(tmp_path / "catalogue"), f"s3://{bucket}/images", server.options)
        log = tmp_path / "run.log"
        proc = start_cli(reindex_args(images, url, server.options, "--run-id", "outage"), log)
        try:
            def embedding_underway():
                fps = store.list("embeddings")
                return bool(fps) and len(store.list(f"{fps[0]}/outage/_tasks")) >= 1
            wait_for(embedding_underway, proc, log)
            server.stop()
            time.sleep(3.0)
            assert proc.poll() is None  # the job was still at work when the server came back
            server.start()
            assert proc.wait(300) == 0, log.read_text()[-4000:]
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
        report = store.read_json(f"reindex/{NAME}/LAST.json")
        assert report["status"] == "published"
        # Exactly the two broken files failed: no image became an error because the server was away.
        assert (report["images"]["failed"], report["images"]["indexed"]) == (2, 40)
        assert "transient error" in log.read_text()
    finally:
        server.stop()


def test_a_store_that_refuses_writes_fails_fast_and_publishes_nothing(s3_store, tmp_path, capsys):
    # Credentials the server refuses (403): the first write to the store fails, before any Spark or model work.
    images = str(write_catalogue(tmp_path / "catalogue"))
    options = {**s3_store.options, "secret": "not-the-secret"}
    started = time.monotonic()
    rc, err = run_cli(reindex_args(images, s3_store.url, options), capsys)
    assert rc == 2
    assert "cannot write to the store" in err and "Check the credentials" in err and "nothing was done" in err
    assert time.monotonic() - started < 30
    assert "not-the-secret" not in err
    assert Store(s3_store.url, s3_store.options).list("") == []  # no lease, embeddings, index or report


def test_help_of_submit_script_lists_the_jobs():
    out = subprocess.run([str(Path(__file__).resolve().parents[1] / "deploy" / "submit.sh"), "no-such-job"],
                         capture_output=True, text=True)
    assert out.returncode == 2 and "reindex" in out.stderr and "similarity_join" in out.stderr


def test_submit_script_refuses_an_archive_with_a_local_master_and_submits_from_the_image_on_kubernetes():
    submit = str(Path(__file__).resolve().parents[1] / "deploy" / "submit.sh")
    refused = subprocess.run([submit, "reindex", "--index", "t"], capture_output=True, text=True, env={
        **os.environ, "LOOKALIKE_ENV_ARCHIVE": "dist/env.tar.gz", "LOOKALIKE_MASTER": "local[2]"})
    assert refused.returncode == 2 and "needs a cluster master" in refused.stderr
    k8s = subprocess.run([submit, "reindex", "--index", "t"], capture_output=True, text=True, check=True, env={
        **os.environ, "LOOKALIKE_MASTER": "k8s://https://api.example:6443", "LOOKALIKE_DEPLOY_MODE": "cluster",
        "LOOKALIKE_DRY_RUN": "1", "LOOKALIKE_PROPERTIES": "deploy/conf/kubernetes.conf"}).stdout
    assert "local:///opt/lookalike/jobs/reindex.py --index t" in k8s
    assert "spark.pyspark.python" not in k8s and "--properties-file deploy/conf/kubernetes.conf" in k8s
    assert "--load-spark-defaults" in k8s  # the cluster's own spark-defaults.conf still applies under ours
    k8s_env = {**os.environ, "LOOKALIKE_MASTER": "k8s://https://api.example:6443", "LOOKALIKE_DRY_RUN": "1"}
    client = subprocess.run([submit, "reindex", "--index", "t"], capture_output=True, text=True, env=k8s_env)
    assert client.returncode == 2 and "LOOKALIKE_DEPLOY_MODE=cluster" in client.stderr  # the job is in the image
    archive = subprocess.run([submit, "reindex", "--index", "t"], capture_output=True, text=True, env={
        **k8s_env, "LOOKALIKE_DEPLOY_MODE": "cluster", "LOOKALIKE_ENV_ARCHIVE": "dist/env.tar.gz"})
    assert archive.returncode == 2 and "an archive would be ignored" in archive.stderr


YARN_SPARK_SUBMIT = """#!/usr/bin/env bash
# Stands in for spark-submit in YARN cluster mode, which cannot run here: it runs the application (the last
# arguments: the job script and its own) and, as YARN's client does, exits 1 whenever the application failed.
while [ $# -gt 0 ] && [[ "$1" != *.py ]]; do shift; done
"$PYSPARK_DRIVER_PYTHON" "$@" || exit 1
"""


@pytest.mark.slow
def test_a_cluster_mode_reindex_exits_with_the_code_its_run_recorded(tmp_path):
    """In cluster mode spark-submit says 1 for any failed application; deploy/submit.sh reads the run's own code
    from the store: 75 for a run refused by a held lease, 143 for one that was stopped."""
    spark_home = tmp_path / "spark"
    (spark_home / "bin").mkdir(parents=True)
    (spark_home / "bin" / "spark-submit").write_text(YARN_SPARK_SUBMIT)
    (spark_home / "bin" / "spark-submit").chmod(0o755)
    folder, root = write_catalogue(tmp_path / "catalogue"), tmp_path / "store"
    env = {**os.environ, "SPARK_HOME": str(spark_home), "LOOKALIKE_MASTER": "yarn", "LOOKALIKE_DEPLOY_MODE": "cluster",
           "PYSPARK_DRIVER_PYTHON": sys.executable}
    submit = [str(Path(__file__).resolve().parents[1] / "deploy" / "submit.sh"), "reindex", "--images", str(folder),
              "--store", str(root), "--index", NAME, "--master", IN_PROCESS]
    store = Store(str(root))
    held = time.time() - 5
    store.write_json(f"indexes/{NAME}/_lease.json", {
        "acquired_at": held, "expires_at": held + 600, "holder": "elsewhere:1:x", "host": "elsewhere", "pid": 1,
        "renewed_at": held, "run_id": "night-1", "state": "running"})
    busy = subprocess.run(submit, capture_output=True, text=True, env=env, timeout=300)
    assert busy.returncode == EXIT_BUSY, busy.stderr[-2000:]
    assert "another run holds the lease" in busy.stderr and "run night-1 on elsewhere" in busy.stderr

    store.delete(f"indexes/{NAME}/_lease.json")
    log = tmp_path / "stopped.log"
    proc = subprocess.Popen(submit, stdout=log.open("wb"), stderr=subprocess.STDOUT, env=env, start_new_session=True)
    wait_for(lambda: len(task_markers(root)) >= 1, proc, log)
    # The driver is stopped (on YARN: its container preempted); spark-submit sees a failed application.
    driver = subprocess.run(["pgrep", "-s", str(proc.pid), "-f", f"^{re.escape(sys.executable)} "],
                            capture_output=True, text=True, check=True).stdout.split()
    assert len(driver) == 1, driver
    os.kill(int(driver[0]), signal.SIGTERM)
    assert proc.wait(120) == EXIT_INTERRUPTED, log.read_text()[-3000:]
    report = store.read_json(f"reindex/{NAME}/LAST.json")
    assert report["status"] == "interrupted" and report["exit_code"] == EXIT_INTERRUPTED


@pytest.mark.slow
def test_whitening_is_learned_once_the_catalogue_is_large_enough_then_kept(spark, tmp_path, capsys):
    """--whiten 32 needs 48 listed images: night 1 (42) indexes unwhitened vectors and says it waits; night 2
    (52) embeds a random sample of 48 unwhitened, learns the whitening from it, embeds the catalogue under it
    and indexes 32-d vectors that query workers search by image; night 3 embeds only its one change, whitened."""
    store = Store(str(tmp_path / "store"))
    folder = write_catalogue(tmp_path / "catalogue")
    args = reindex_args(str(folder), store.url, {}, "--whiten", "32", "--whiten-sample", "20")

    rc, first = run_cli(args, capsys)
    assert rc == 0, first
    assert first["whitening"] == {"status": "waiting", "dim": 32, "images": 42, "needed": 48}
    raw_fingerprint = first["embeddings"].split("/")[0]
    assert publish.read_index_manifest(store, NAME, first["latest"]["after"])["dim"] == 1280

    extra = write_photo_crops(folder, ("chelsea", "rocket"), per_photo=5, seed=11, prefix="more-")
    rc, second = run_cli(args, capsys)
    assert rc == 0, second
    w = second["whitening"]
    assert w["status"] == "learned" and w["dim"] == 32 and w["learned_from"] == (
        f"embeddings/{raw_fingerprint}/{second['run_id']}")
    # The sample (48 = max(needed, --whiten-sample 20) of 52 rows, the broken files possibly among them).
    sample = store.read_json(f"embeddings/{raw_fingerprint}/{second['run_id']}/_MANIFEST.json")["counts"]
    assert sample["images"] == 48 and 46 <= sample["rows"] == w["learned_from_images"] <= 48
    assert w["uri"].startswith(store.child_url(f"whitening/{raw_fingerprint}-32d-"))
    whitened_fingerprint = second["embeddings"].split("/")[0]
    assert whitened_fingerprint != raw_fingerprint
    assert second["images"]["embedded"] == 50 and second["images"]["indexed"] == 50  # once more, whitened
    manifest = publish.read_index_manifest(store, NAME, second["latest"]["after"])
    # The manifest names the whitening by its key in the store: the store can move (tests/test_store_integrity.py).
    assert manifest["dim"] == 32 and manifest["model"]["whitening_uri"] == store.key_of(w["uri"])
    assert "learned from" in store.read_text(f"reindex/{NAME}/{second['run_id']}/summary.txt")
    assert top_hit(store, folder / extra[0], capsys) == (extra[0], pytest.approx(1.0, abs=1e-3))

    (folder / "coffee-0.jpg").write_bytes(jpeg_bytes(photo("clock")))
    rc, third = run_cli(args, capsys)
    assert rc == 0, third
    assert third["whitening"] == {"status": "in use", "uri": w["uri"], "dim": 32}
    assert third["embeddings"].split("/")[0] == whitened_fingerprint and third["images"]["embedded"] == 1
    assert store.read_text(f"embeddings/{raw_fingerprint}/LATEST").strip() == second["run_id"]  # not embedded
    assert top_hit(store, folder / "coffee-0.jpg", capsys) == ("coffee-0.jpg", pytest.approx(1.0, abs=1e-3))

    rc, off = run_cli([*args, "--no-whiten"], capsys)
    assert rc == 0, off
    assert off["whitening"] == {"status": "off"} and off["embeddings"].split("/")[0] == raw_fingerprint
    assert publish.read_index_manifest(store, NAME, off["latest"]["after"])["dim"] == 1280


@pytest.mark.slow
def test_by_default_the_whitening_follows_the_model_card(tmp_path, capsys):
    """The shipped weights under cards of our own: measured not to gain from whitening, the model's vectors are
    indexed raw; measured to gain, the run waits for a catalogue large enough for 512 d (as for weights without a
    card); an index already whitened keeps its whitening when the card says no, and the report says how to leave
    it. Forced either way, --whiten N and --no-whiten win over the card."""
    store = Store(str(tmp_path / "store"))
    folder = write_catalogue(tmp_path / "catalogue")
    weights = tmp_path / "weights" / "marks.pt"
    weights.parent.mkdir()
    shutil.copyfile(backbone_of(ModelSpec()).default_weights(), weights)

    def night(helps: bool | None, *flags: str) -> dict:
        card = {"whitening": {"helps": helps, "mAP_gain": 0.02 if helps else -0.01, "decided_by": "a test"}}
        card_file = weights.with_suffix(".json")
        card_file.unlink(missing_ok=True)
        if helps is not None:
            card_file.write_text(json.dumps(card))
        rc, report = run_cli(reindex_args(str(folder), store.url, {}, "--weights", str(weights), "--master",
                                          IN_PROCESS, *flags), capsys)
        assert rc == 0, report
        return report

    off = night(False)
    assert off["whitening"] == {"status": "off", "model_card": {"helps": False, "mAP_gain": -0.01,
                                                                "decided_by": "a test"}}
    raw_fingerprint = off["embeddings"].split("/")[0]
    assert "does not help it (validation mAP -0.010 whitened): its vectors are indexed unwhitened" in \
        store.read_text(f"reindex/{NAME}/{off['run_id']}/summary.txt")
    for helps in (True, None):
        assert night(helps)["whitening"] == {"status": "waiting", "dim": 512, "images": 42, "needed": 768}

    learned = night(False, "--whiten", "8")["whitening"]
    assert learned["status"] == "learned" and learned["dim"] == 8
    kept = night(False)
    assert kept["whitening"] == {"status": "in use", "uri": learned["uri"], "dim": 8,
                                 "model_card": off["whitening"]["model_card"]}
    assert kept["status"] == "unchanged" and kept["images"]["embedded"] == 0
    left = night(False, "--no-whiten")
    assert left["whitening"] == {"status": "off"} and left["embeddings"].split("/")[0] == raw_fingerprint


def task_markers(root: Path) -> list[Path]:
    return sorted(root.glob("embeddings/*/*/_tasks/task-*.json"))


@pytest.mark.slow
def test_a_night_stopped_by_sigterm_releases_its_lease_and_an_immediate_retry_resumes_it(tmp_path, capsys):
    """SIGTERM to the run's process group (what Airflow's timeout and a pod eviction send) during the embed job
    and again during the index build: each time the Spark work stops, the lease is released as interrupted, the
    report says so, the command exits 143, and a retry started at once (well inside the lease's TTL) resumes
    the same run; `lookalike status` alerts meanwhile and is fresh after."""
    folder, root = write_catalogue(tmp_path / "catalogue"), tmp_path / "store"
    store = Store(str(root))
    args = reindex_args(str(folder), str(root), {}, "--lease-ttl", "900")
    status = ["status", "--store", str(root), "--index", NAME]

    log = tmp_path / "embed.log"
    proc = start_cli(args, log)
    wait_for(lambda: len(task_markers(root)) >= 1, proc, log)  # some embed tasks done, others to do
    started = time.time()
    os.killpg(proc.pid, signal.SIGTERM)
    assert proc.wait(60) == EXIT_INTERRUPTED, log.read_text()[-3000:]
    assert time.time() - started < 30
    assert "stopped by SIGTERM" in log.read_text() and "rerun the same command to resume" in log.read_text()
    lease = store.read_json(f"indexes/{NAME}/_lease.json")
    report = store.read_json(f"reindex/{NAME}/LAST.json")
    assert lease["state"] == "interrupted" and lease["run_id"] == report["run_id"]
    assert report["status"] == "interrupted" and report["exit_code"] == EXIT_INTERRUPTED
    assert report["error"]["stage"] == "embed"
    committed = len(task_markers(root))
    assert 1 <= committed < 7  # 42 images in tasks of 6: the rest were cancelled, not run to the end
    rc, err = run_cli([*status, "--max-age", "26h"], capsys)
    assert rc == EXIT_STALE and "never been published" in err and "was interrupted (exit 143)" in err
    rc, err = run_cli([*status, "--run-outcome-since", str(started - 120)], capsys)
    assert rc == EXIT_INTERRUPTED  # what deploy/submit.sh passes on where spark-submit only says "failed"

    log = tmp_path / "build.log"
    proc = start_cli(args, log)  # at once: no waiting for the TTL
    wait_for(lambda: store.list(f"indexes/{NAME}/_build"), proc, log)  # the index build has begun
    os.killpg(proc.pid, signal.SIGTERM)
    assert proc.wait(60) == EXIT_INTERRUPTED, log.read_text()[-3000:]
    report = store.read_json(f"reindex/{NAME}/LAST.json")
    assert report["resumed"] and report["run_id"] == lease["run_id"]
    assert report["status"] == "interrupted" and report["error"]["stage"] == "build_index"
    assert publish.latest_version(store, NAME) is None

    rc, night = run_cli(args, capsys)
    assert rc == 0, night
    assert night["run_id"] == lease["run_id"] and night["resumed"] and night["status"] == "published"
    assert night["index"]["ntotal"] == 40 and publish.latest_version(store, NAME) == night["latest"]["after"]
    rc, out = run_cli([*status, "--max-age", "26h", "--json"], capsys)
    assert rc == 0 and out["fresh"] and out["latest"] == night["latest"]["after"]
    time.sleep(2.1)
    rc, err = run_cli([*status, "--max-age", "2s"], capsys)
    assert rc == EXIT_STALE and "more than --max-age" in err
