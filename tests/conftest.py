"""Session-wide real components: an S3-compatible server (rclone) on 127.0.0.1, Spark in local mode,
and a folder of real images (some broken on purpose)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)

from support.servers import (  # noqa: E402
    AZURITE,
    EmulatedStore,
    MotoServer,
    S3Server,
    S3Store,
    azurite_options,
    gcs_options,
    start_emulator,
    stop_process,
)
from support.spark import SparkCluster, start_spark_daemon, wait_for_workers  # noqa: E402

from lookalike.dev import imagefactory
from lookalike.dev.net import free_port, wait_for_port  # noqa: E402


def pytest_collection_modifyitems(config, items):
    """Lanes by what a test needs: local Spark (the `spark` fixture) is slow to start, and `make test-fast`
    leaves it out with the standalone cluster (`spark_cluster`)."""
    for item in items:
        if "spark" in item.fixturenames:
            item.add_marker(pytest.mark.slow)
        if "spark_cluster" in item.fixturenames:
            item.add_marker(pytest.mark.cluster)


@pytest.fixture(scope="session")
def azurite(tmp_path_factory):
    """Azurite's blob service (npm, installed by `make test` into .venv/azurite): Azure Blob Storage as the
    SDK speaks to it, conditional writes (If-Match, If-None-Match) enforced."""
    if not AZURITE.exists():
        raise RuntimeError(f"{AZURITE} is missing: `make test` installs it (npm install --prefix .venv/azurite)")
    folder, port = tmp_path_factory.mktemp("azurite"), free_port()
    proc = start_emulator([str(AZURITE), "--blobHost", "127.0.0.1", "--blobPort", str(port), "--location",
                            str(folder), "--silent", "--skipApiVersionCheck", "--disableTelemetry"],
                           port, folder / "azurite.log")
    yield EmulatedStore("abfs", port, azurite_options(port), proc)
    stop_process(proc)


@pytest.fixture(scope="session")
def gcs_emulator(tmp_path_factory):
    """gcp-storage-emulator (PyPI): Google Cloud Storage's JSON API in memory. It does not enforce
    ifGenerationMatch, so tests of what a conditional write refuses run on S3 and Azure; here the condition is
    checked on the wire."""
    # gcsfs's default filesystem first asks the gRPC API whether a bucket is zonal (60 s per bucket against an
    # emulator that speaks only JSON); the JSON-only filesystem is what the emulator can answer.
    os.environ["GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT"] = "false"
    port = free_port()
    proc = start_emulator([str(Path(sys.executable).parent / "gcp-storage-emulator"), "start", "--host",
                            "127.0.0.1", "--port", str(port), "--in-memory", "--quiet"],
                           port, tmp_path_factory.mktemp("gcs") / "emulator.log")
    yield EmulatedStore("gs", port, gcs_options(port), proc)
    stop_process(proc)


@pytest.fixture(scope="session")
def moto_server():
    import logging

    from moto.server import ThreadedMotoServer
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")  # moto creates buckets in it
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    yield MotoServer(server, server.get_host_and_port()[1])
    server.stop()


@pytest.fixture(scope="session", autouse=True)
def index_cache_dir(tmp_path_factory) -> Path:
    """Index versions are cached in the test session's folder, never in the user's ~/.cache."""
    path = tmp_path_factory.mktemp("index-cache")
    os.environ["LOOKALIKE_CACHE_DIR"] = str(path)
    return path


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    server = S3Server(tmp_path_factory.mktemp("s3-root"), free_port())
    server.start()
    yield server
    server.stop()


@pytest.fixture
def s3_store(s3_server) -> S3Store:
    """A fresh, empty bucket; the store root is a prefix inside it."""
    bucket = s3_server.new_bucket()
    return S3Store(f"s3://{bucket}/store", s3_server.options, s3_server.root / bucket)


@pytest.fixture(scope="session")
def published_store(s3_server):
    """A factory of stores in fresh S3 buckets: vectors (and metadata columns) as an embeddings version, and each
    of `indexes` (name → faiss factory) built over them with 100 held-out queries and published."""
    from lookalike.core.spark import IN_PROCESS
    from lookalike.core.store import Store
    from lookalike.dev.synthetic import write_embeddings_version
    from lookalike.index import build as index_build
    from lookalike.index.build import BuildIndexConfig

    def make(vectors, metadata: dict | None = None, indexes: dict[str, str] | None = None, **version):
        store = Store(f"s3://{s3_server.new_bucket()}/store", s3_server.options)
        write_embeddings_version(store, vectors, parts=3, metadata=metadata, **version)
        for name, factory in (indexes or {"marks": "IVF64,PQ16"}).items():
            index_build.run(BuildIndexConfig(store=store.url, storage_options=store.options, name=name,
                                             factory=factory, master=IN_PROCESS, publish=True, queries=100))
        return store
    return make


@pytest.fixture(scope="session")
def spark():
    from lookalike.core.spark import session
    s = session("local[2]", "lookalike-tests", {"spark.driver.host": "127.0.0.1"})
    s.sparkContext.setLogLevel("ERROR")
    yield s
    s.stop()


@pytest.fixture(scope="session")
def image_set(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """A folder of real images (photos, unusual-but-valid files, broken ones) and each one's outcome."""
    root = tmp_path_factory.mktemp("images")
    return root, imagefactory.write_image_set(root)


@pytest.fixture
def chromium(tmp_path):
    """Debian's headless Chromium driven through chromedriver (`make test` installs both)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-quic", "--no-first-run", "--disable-component-update", "--disable-sync",
                 f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1280,900"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver") or "/usr/bin/chromedriver"),
                              options=options)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="session")
def model():
    from lookalike.model.loading import cached_model
    from lookalike.model.spec import ModelSpec
    return cached_model(ModelSpec(), "cpu")


@pytest.fixture(scope="session")
def spark_cluster(tmp_path_factory):
    import pyspark
    home = Path(pyspark.__file__).parent
    logs = tmp_path_factory.mktemp("spark-logs")
    port = free_port()
    master = start_spark_daemon(home, "org.apache.spark.deploy.master.Master",
                                ["--host", "127.0.0.1", "--port", str(port), "--webui-port", str(free_port())],
                                logs / "master.log")
    procs = [master]
    try:
        wait_for_port(port, master, timeout=60)
        for i in range(2):
            work = tmp_path_factory.mktemp(f"worker{i}")
            procs.append(start_spark_daemon(
                home, "org.apache.spark.deploy.worker.Worker",
                ["--host", "127.0.0.1", "--cores", "1", "--memory", "2g", "--webui-port", str(free_port()),
                 "--work-dir", str(work), f"spark://127.0.0.1:{port}"], logs / f"worker{i}.log"))
        wait_for_workers(logs / "master.log", 2, procs)
        yield SparkCluster(home, port, procs)
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()


