"""ASGI pieces of the query worker: a request-body limit, request metrics, and index gauges for Prometheus."""

from __future__ import annotations

import hmac
import json
import time
from collections.abc import Callable

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prometheus_client import Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from lookalike.serve.worker import ServedIndex


async def validation_error(_: Request, e: RequestValidationError) -> JSONResponse:
    """422 naming where and what, never echoing the input: it may be huge, hold a NaN that JSON cannot carry
    (FastAPI's own handler then failed with a 500), or be something a client should not see again."""
    problems = [{"loc": list(err.get("loc", ())), "msg": err.get("msg", ""), "type": err.get("type", "")}
                for err in e.errors()[:20]]
    return JSONResponse({"detail": problems}, status_code=422)


def bearer_ok(authorization: str, token: str | None) -> bool:
    """Whether an Authorization header carries the token (always, when no token is configured); constant time."""
    if token is None:
        return True
    scheme, _, given = authorization.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.encode(), token.encode())


class BodyLimit:
    """Rejects request bodies above the limit with 413 before the app parses them (multipart included)."""

    def __init__(self, app: Callable, limit: int):
        self.app = app
        self.limit = limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            return await self._reject(send)
        body, more = bytearray(), True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            body += message.get("body", b"")
            if len(body) > self.limit:
                return await self._reject(send)
            more = message.get("more_body", False)
        replayed = False

        async def replay():
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": bytes(body), "more_body": False}
        return await self.app(scope, replay, send)

    async def _reject(self, send) -> None:
        detail = json.dumps({"detail": f"request body above the limit of {self.limit:,} bytes"}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": detail})


class Measured:
    """Counts requests by route and status and times them (pure ASGI: Starlette's BaseHTTPMiddleware cost more
    than the search itself)."""

    def __init__(self, app: Callable, requests: Counter, latency: Histogram):
        self.app, self.requests, self.latency = app, requests, latency

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started, status = time.perf_counter(), [500]

        async def send_status(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)
        try:
            await self.app(scope, receive, send_status)
        finally:
            endpoint = getattr(scope.get("route"), "path", "unmatched")  # the router sets it on this scope
            self.requests.labels(endpoint, str(status[0])).inc()
            self.latency.labels(endpoint).observe(time.perf_counter() - started)


class IndexCollector:
    """Index gauges read from the ServedIndex at scrape time."""

    def __init__(self, served: ServedIndex):
        self.served = served

    def collect(self):
        s = self.served.status()
        info = GaugeMetricFamily("lookalike_index_info", "the served index version", labels=["name", "version",
                                                                                             "fingerprint_id"])
        if s["version"]:
            info.add_metric([s["name"], s["version"], s["fingerprint_id"]], 1)
        yield info
        yield GaugeMetricFamily("lookalike_index_vectors", "vectors in the served version", value=s["ntotal"])
        yield GaugeMetricFamily("lookalike_index_loaded_timestamp_seconds", "when the served version was loaded",
                                value=s["loaded_at"] or 0)
        # Alert on `time() - lookalike_index_current_timestamp_seconds > 26 * 3600`: no night has published or
        # confirmed the index since (the same rule as `lookalike status --max-age 26h`).
        yield GaugeMetricFamily("lookalike_index_current_timestamp_seconds", "when the index was last known current: "
                                "its last publish, or a nightly run that found nothing to change",
                                value=s["current_since"] or 0)
        yield _counter("lookalike_index_swaps", "versions swapped in after the first", s["swaps"])
        yield _counter("lookalike_index_load_failures", "versions (or LATEST reads) that failed", s["load_failures"])
        budget = self.served.pixel_budget
        yield GaugeMetricFamily("lookalike_decode_pixels_in_flight", "pixels being decoded now, over all requests",
                                value=budget.in_use)
        yield GaugeMetricFamily("lookalike_decode_pixels_budget", "pixels that may be decoded at once",
                                value=budget.max_pixels)
        yield _counter("lookalike_decode_waits", "decodes that waited for the pixel budget", budget.waits)


def _counter(name: str, doc: str, value: float):
    return CounterMetricFamily(name, doc, value=value)
