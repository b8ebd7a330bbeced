"""The query worker's HTTP API (FastAPI): search by vector, id, uploaded image or URI; a thumbnail per hit;
/healthz, Prometheus /metrics, optional bearer-token auth, limits on bodies, batches and time."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server

from lookalike._version import __version__
from lookalike.image.decode import ImageError
from lookalike.retrieval.ids import UnknownImageIds
from lookalike.retrieval.limits import QueryError
from lookalike.serve.api_middleware import BodyLimit, IndexCollector, Measured, bearer_ok, validation_error
from lookalike.serve.context import ApiSettings, RequestContext
from lookalike.serve.routes import (
    add_catalogue_routes,
    add_explain_routes,
    add_parts_routes,
    add_search_routes,
    add_status_routes,
)
from lookalike.serve.uri_policy import UriAllowList
from lookalike.serve.worker import ServedIndex

TOO_LARGE_KINDS = {"too_large", "too_many_pixels"}


def create_app(served: ServedIndex, settings: ApiSettings | None = None) -> FastAPI:
    settings = settings or ApiSettings()
    app = FastAPI(title="lookalike query worker", version=__version__, docs_url=None, redoc_url=None,
                  openapi_url=None, description="Similar-image search over a published lookalike index.")
    registry = CollectorRegistry()
    requests = Counter("lookalike_requests", "HTTP requests", ["endpoint", "status"], registry=registry)
    latency = Histogram("lookalike_request_duration_seconds", "request latency", ["endpoint"], registry=registry,
                        buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
    queries = Counter("lookalike_queries", "query rows searched", ["kind"], registry=registry)
    registry.register(IndexCollector(served))

    app.add_middleware(Measured, requests=requests, latency=latency)
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)

    app.add_exception_handler(RequestValidationError, validation_error)

    @app.exception_handler(QueryError)
    async def query_error(_: Request, e: QueryError):
        return JSONResponse({"detail": str(e)}, status_code=404 if isinstance(e, UnknownImageIds) else 400)

    @app.exception_handler(ImageError)
    async def image_error(_: Request, e: ImageError):
        return JSONResponse({"detail": e.message, "error_kind": e.kind},
                            status_code=413 if e.kind in TOO_LARGE_KINDS else 400)

    async def authorised(request: Request) -> None:  # async: no thread hop for a header check
        if not bearer_ok(request.headers.get("authorization", ""), settings.token):
            raise HTTPException(401, "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"})

    app.state.metrics_registry = registry  # for serve_metrics
    context = RequestContext(served, settings, queries, UriAllowList(settings.allow_uri_prefixes))
    auth = Depends(authorised)
    add_status_routes(app, context, auth, registry)
    add_search_routes(app, context, auth)
    add_explain_routes(app, context, auth)
    add_parts_routes(app, context, auth)
    add_catalogue_routes(app, context, auth)
    return app


def serve_metrics(app: FastAPI, host: str, port: int) -> None:
    """Prometheus metrics alone on a port of their own, without the token: what a cluster's scraper reads (the
    API port keeps /metrics behind the token). Serves from a daemon thread for the life of the process."""
    start_http_server(port, addr=host, registry=app.state.metrics_registry)


@contextmanager
def running(app: FastAPI, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Serve the app from a thread of this process (the demo, the benchmark); yields its base URL."""
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, name="lookalike-http", daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError(f"the HTTP server did not start on {host}:{port}")
        time.sleep(0.02)
    bound = server.servers[0].sockets[0].getsockname()
    try:
        yield f"http://{bound[0]}:{bound[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
