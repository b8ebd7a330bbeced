"""An HTTP proxy in front of a real storage server on 127.0.0.1 that fails one chosen request and records all:
how the tests show what a client sent (a conditional write's condition) and how it copes with a fault."""

import http.client
import http.server
import re
import threading
from contextlib import contextmanager


class FaultyProxy(http.server.ThreadingHTTPServer):
    """Forwards every request to a server on 127.0.0.1, except that the first request matching `fail` (the
    method, a space and the path with its query) is answered `status`: by default 503 SlowDown (S3's own "retry
    later", a 503 to any other client); records what went through."""

    def __init__(self, upstream_port: int, fail: re.Pattern, status: int = 503):
        self.upstream_port, self.fail, self.status, self.failed = upstream_port, fail, status, 0
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
            self.send_response(server.status)
            self.send_header("Content-Length", str(len(error)))
            self.end_headers()
            self.wfile.write(error)
            return
        upstream = http.client.HTTPConnection("127.0.0.1", server.upstream_port, timeout=30)
        # The expectation was met here (the handler answered 100 Continue and read the body): not passed on.
        headers = {k: v for k, v in self.headers.items() if k.lower() != "expect"}
        upstream.request(self.command, self.path, body=body, headers=headers)
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
def proxy(upstream_port: int, fail: str, status: int = 503):
    server = FaultyProxy(upstream_port, re.compile(fail), status)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
