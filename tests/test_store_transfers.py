"""Large files to and from S3 a part at a time, each part retried on its own: a fault on one part of a 10 GB
upload or download costs that part again, not the file (through a proxy in front of the real S3 server that
fails chosen requests once)."""

import hashlib
import os

import pytest
from support.faulty_proxy import proxy

import lookalike.core.store as store_module
from lookalike.core.store import Store

MiB = 1 << 20




def through(options: dict, port: int) -> dict:
    """The store's options through the proxy, with botocore's own retries off, as the project sets them (the
    test server's options allow botocore a second try, which would hide whether ours retried the part)."""
    config = {**options["config_kwargs"], "retries": {"total_max_attempts": 1, "mode": "standard"}}
    return {**options, "client_kwargs": {"endpoint_url": f"http://127.0.0.1:{port}"}, "config_kwargs": config}


@pytest.fixture
def big_file(tmp_path):
    path = tmp_path / "vectors.f16.npy"
    path.write_bytes(os.urandom(12 * MiB + 12345))  # three parts of 5 MiB (S3's smallest), the last shorter
    return path


@pytest.mark.slow
def test_a_failed_part_of_an_upload_is_sent_again_alone(moto_server, big_file, monkeypatch):
    monkeypatch.setattr(store_module.time, "sleep", lambda s: None)
    url, options = moto_server.new_store()
    with proxy(moto_server.port, r"^PUT .*partNumber=2(&|$)") as server:
        store = Store(url, through(options, server.server_address[1]))
        store.part_bytes = 5 * MiB
        store.upload(str(big_file), "indexes/t/v1/vectors.f16.npy")
    assert server.failed == 1
    parts = [(path, size) for method, path, size in server.requests if method == "PUT" and "partNumber=" in path]
    assert len(parts) == 4  # three parts, the second twice
    assert sum(size for _, size in parts) == big_file.stat().st_size + 5 * MiB  # not the whole file again
    assert not any(m == "PUT" and "partNumber" not in p and "uploadId" not in p for m, p, _ in server.requests)
    copy = Store(url, options).read_bytes("indexes/t/v1/vectors.f16.npy")
    assert hashlib.sha256(copy).digest() == hashlib.sha256(big_file.read_bytes()).digest()


def test_a_failed_read_of_a_download_reads_that_part_again_alone(moto_server, big_file, tmp_path, monkeypatch):
    monkeypatch.setattr(store_module.time, "sleep", lambda s: None)
    url, options = moto_server.new_store()
    Store(url, options).upload(str(big_file), "indexes/t/v1/vectors.f16.npy")
    gets = []
    with proxy(moto_server.port, r"^GET .*vectors") as server:
        store = Store(url, through(options, server.server_address[1]))
        store.part_bytes = 5 * MiB
        monkeypatch.setattr(store.fs, "cat_file", counting(store.fs.cat_file, gets))
        store.download("indexes/t/v1/vectors.f16.npy", str(tmp_path / "copy.npy"))
    assert server.failed == 1
    assert [g["start"] for g in gets] == [0, 0, 5 * MiB, 10 * MiB]  # the first part twice, each part once more
    assert (tmp_path / "copy.npy").read_bytes() == big_file.read_bytes()


def counting(real, calls):
    def cat_file(path, start=None, end=None, **kwargs):
        calls.append({"start": start, "end": end})
        return real(path, start=start, end=end, **kwargs)
    return cat_file
