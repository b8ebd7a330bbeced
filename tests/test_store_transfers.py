"""Large files to and from S3 a part at a time, each part retried on its own: a fault on one part of a 10 GB
upload or download costs that part again, not the file (through a proxy in front of the real S3 server that
fails chosen requests once)."""

import hashlib
import http.client
import http.server
import os
import re
import threading
from contextlib import contextmanager

import pytest

import lookalike.core.store as store_module
from lookalike.core.store import Store

MiB = 1 << 20


class FaultyProxy(http.server.ThreadingHTTPServer):
    """Forwards every request to the S3 server, except that the first request matching `fail` is answered 503
    SlowDown (S3's own "retry later"); records what went through."""

    def __init__(self, upstream_port: int, fail: re.Pattern):
        self.upstream_port, self.fail, self.failed = upstream_port, fail, 0
        self.requests: list[tuple[str, str, int]] = []  # method, path with query, body bytes
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), ProxyHandler)


class ProxyHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _forward(self):
        server: FaultyProxy = self.server
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        request = f"{self.command} {self.path}"
        with server.lock:
            server.requests.append((self.command, self.path, len(body)))
            fault = server.failed == 0 and server.fail.search(request)
            if fault:
                server.failed += 1
        if fault:
            error = b"<Error><Code>SlowDown</Code><Message>injected</Message></Error>"
            self.send_response(503)
            self.send_header("Content-Length", str(len(error)))
            self.end_headers()
            self.wfile.write(error)
            return
        upstream = http.client.HTTPConnection("127.0.0.1", server.upstream_port, timeout=30)
        upstream.request(self.command, self.path, body=body, headers=dict(self.headers))
        answer = upstream.getresponse()
        data = answer.read()
        self.send_response(answer.status)
        for name, value in answer.getheaders():
            if name.lower() not in ("transfer-encoding", "content-length", "connection"):
                self.send_header(name, value)
        # A HEAD answer has no body but the object's length.
        self.send_header("Content-Length", answer.getheader("Content-Length", "0") if self.command == "HEAD"
                         else str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _forward


@contextmanager
def proxy(moto_server, fail: str):
    server = FaultyProxy(moto_server.port, re.compile(fail))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()


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


def test_a_failed_part_of_an_upload_is_sent_again_alone(moto_server, big_file, monkeypatch):
    monkeypatch.setattr(store_module.time, "sleep", lambda s: None)
    url, options = moto_server.new_store()
    with proxy(moto_server, r"^PUT .*partNumber=2(&|$)") as server:
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
    with proxy(moto_server, r"^GET .*vectors") as server:
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
