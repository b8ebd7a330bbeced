"""The query worker's HTTP API (FastAPI): search by vector, id, uploaded image or URI; a thumbnail per hit;
/healthz, Prometheus /metrics, optional bearer-token auth, limits on bodies, batches and time."""

from __future__ import annotations

import functools
import io
import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources
from typing import Annotated, Any

import anyio
import numpy as np
import uvicorn
from fastapi import Depends, FastAPI, File, Form, HTTPException, Request, UploadFile
from fastapi.responses import HTMLResponse, JSONResponse, Response
from PIL import Image
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest

from lookalike import __version__
from lookalike.api_middleware import BodyLimit, IndexCollector, Measured, bearer_ok
from lookalike.api_models import IdList, IdQuery, SearchAnswer, SearchOptions, UriQuery, VectorQuery
from lookalike.decode import ImageError, decode
from lookalike.engine import read_image_bytes
from lookalike.index_reader import IndexVersion
from lookalike.query import MAX_K, QueryError, UnknownImageIds, as_queries, params_for, search_vectors, vectors_of_ids
from lookalike.serving import ServedIndex

TOO_LARGE_KINDS = {"too_large", "too_many_pixels"}


@dataclass(frozen=True)
class ApiSettings:
    token: str | None = None              # bearer token; None: no auth (bind to a private interface)
    max_body_bytes: int = 20 * 1024 * 1024
    max_batch: int = 64                   # queries per request
    request_timeout_s: float = 30.0
    allow_uri_prefixes: tuple[str, ...] = ()  # URI search reads only under these; none: URI search is off


def create_app(served: ServedIndex, settings: ApiSettings = ApiSettings()) -> FastAPI:
    app = FastAPI(title="lookalike query worker", version=__version__,
                  description="Similar-image search over a published lookalike index.")
    registry = CollectorRegistry()
    requests = Counter("lookalike_requests", "HTTP requests", ["endpoint", "status"], registry=registry)
    latency = Histogram("lookalike_request_duration_seconds", "request latency", ["endpoint"], registry=registry,
                        buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
    queries = Counter("lookalike_queries", "query rows searched", ["kind"], registry=registry)
    registry.register(IndexCollector(served))

    app.add_middleware(Measured, requests=requests, latency=latency)
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)

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

    Auth = Depends(authorised)
    search_route = functools.partial(app.post, dependencies=[Auth], response_model=SearchAnswer)

    def version() -> IndexVersion:
        current = served.current
        if current is None:
            raise HTTPException(503, "no index version is loaded yet")
        return current

    async def in_thread(fn: Callable[[], Any]) -> Any:
        try:
            with anyio.fail_after(settings.request_timeout_s):
                return await anyio.to_thread.run_sync(fn, abandon_on_cancel=True)
        except TimeoutError as e:
            raise HTTPException(504, f"the search took longer than {settings.request_timeout_s}s") from e

    def check_batch(n: int) -> None:
        if n > settings.max_batch:
            raise QueryError(f"{n} queries in one request; the limit is {settings.max_batch}")

    def answer(v: IndexVersion, options: SearchOptions, labels: list[Any], hits, started: float) -> Response:
        body = {"name": v.manifest["name"], "version": v.version, "k": options.k,
                "took_ms": round(1000 * (time.perf_counter() - started), 2),
                "results": [{"query": label, "hits": [h.as_dict() for h in row]}
                            for label, row in zip(labels, hits, strict=True)]}
        # Serialised here, not by FastAPI's encoder (a third of a vector query's time); metadata of types JSON
        # lacks (dates, decimals) is written as text.
        return Response(json.dumps(body, default=str), media_type="application/json")

    def run_vectors(v: IndexVersion, vectors, options: SearchOptions, kind: str, labels: list[Any],
                    exclude=None, started: float | None = None) -> Response:
        started = started or time.perf_counter()  # image queries count their embedding too
        params = params_for(v, options.nprobe, options.rerank)
        hits = search_vectors(v, as_queries(v, vectors), options.k, params, options.filters, exclude)
        queries.labels(kind).inc(len(labels))
        return answer(v, options, labels, hits, started)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page() -> str:
        return _page()

    @app.get("/healthz", summary="which version is served; 503 until one is loaded")
    def healthz() -> JSONResponse:
        status = served.status()
        return JSONResponse(status, status_code=200 if status["version"] else 503)

    @app.get("/metrics", include_in_schema=False, dependencies=[Auth])
    def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/api/info", dependencies=[Auth], summary="the served version and its filterable columns")
    def info() -> dict:
        v = version()
        return {"name": v.manifest["name"], "version": v.version, "ntotal": v.manifest["ntotal"], "dim": v.dim,
                "factory": v.manifest["factory"], "default_search": v.manifest["default_search"],
                "columns": [c for c in v.ids.column_names if c != "faiss_id"],
                "image_search": served.embedder is not None, "max_k": MAX_K, "max_batch": settings.max_batch}

    @search_route("/search/vectors", summary="top-k for raw vectors (normalised here)")
    async def by_vectors(body: VectorQuery) -> Response:
        v = version()
        check_batch(len(body.vectors))
        return await in_thread(lambda: run_vectors(v, body.vectors, body, "vector", list(range(len(body.vectors)))))

    @search_route("/search/ids", summary="top-k for catalogue images, by their stored vectors")
    async def by_ids(body: IdQuery) -> Response:
        v = version()
        check_batch(len(body.image_ids))

        def work() -> Response:
            vectors, faiss_ids = vectors_of_ids(v, body.image_ids)
            return run_vectors(v, vectors, body, "id", body.image_ids, None if body.include_self else faiss_ids)
        return await in_thread(work)

    @search_route("/search/images", summary="top-k for uploaded images (multipart)")
    async def by_images(images: Annotated[list[UploadFile], File(description="one or more image files")],
                        k: Annotated[int, Form(ge=1, le=MAX_K)] = 10,
                        nprobe: Annotated[int | None, Form(ge=1)] = None,
                        rerank: Annotated[int | None, Form(ge=0)] = None,
                        filters: Annotated[str | None, Form(description="JSON object")] = None) -> Response:
        v = version()
        check_batch(len(images))
        options = SearchOptions(k=k, nprobe=nprobe, rerank=rerank, filters=_parse_filters(filters))
        data = [await f.read() for f in images]
        names = [f.filename or str(i) for i, f in enumerate(images)]
        def work() -> Response:
            started = time.perf_counter()
            return run_vectors(v, embedder().embed(data), options, "image", names, started=started)
        return await in_thread(work)

    @search_route("/search/uris", summary="top-k for images the worker reads from URIs")
    async def by_uris(body: UriQuery) -> Response:
        v = version()
        check_batch(len(body.uris))
        refused = [u for u in body.uris if not any(u.startswith(p) for p in settings.allow_uri_prefixes)]
        if refused:
            raise HTTPException(403, f"this worker reads no URI outside {list(settings.allow_uri_prefixes)}: "
                                     f"{refused[0]!r} (start it with --allow-uri PREFIX)")

        def work() -> Response:
            e, started = embedder(), time.perf_counter()
            return run_vectors(v, e.embed([e.read(u) for u in body.uris]), body, "uri", body.uris, started=started)
        return await in_thread(work)

    @app.post("/vectors", dependencies=[Auth], summary="stored vectors of catalogue ids (null where unknown)")
    async def stored_vectors(body: IdList) -> Response:
        v = version()
        check_batch(len(body.image_ids))
        ids = [v.faiss_id_of(i) for i in body.image_ids]
        rows = [None if f is None else np.asarray(v.vectors[f], np.float32).tolist() for f in ids]
        return Response(json.dumps({"version": v.version, "vectors": rows}), media_type="application/json")

    @app.post("/embed", dependencies=[Auth], summary="vectors of uploaded images, with the index's model")
    async def embed_images(images: Annotated[list[UploadFile], File()]) -> Response:
        check_batch(len(images))
        data = [await f.read() for f in images]
        vectors = await in_thread(lambda: embedder().embed(data))
        return Response(json.dumps({"fingerprint_id": embedder().fingerprint_id, "vectors": vectors.tolist()}),
                        media_type="application/json")

    @app.get("/images/{image_id:path}/thumbnail", dependencies=[Auth], summary="a JPEG thumbnail of a hit")
    async def thumbnail(image_id: str, size: int = 192) -> Response:
        v = version()
        if not 16 <= size <= 512:
            raise QueryError("size must be between 16 and 512")
        faiss_id = v.faiss_id_of(image_id)
        if faiss_id is None:
            raise UnknownImageIds([image_id], v.version)
        uri = v.ids["uri"][int(v.row_of_faiss[faiss_id])].as_py()
        data = await in_thread(lambda: thumbnail_of(uri, size))
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "max-age=3600"})

    @functools.lru_cache(maxsize=2048)
    def thumbnail_of(uri: str, size: int) -> bytes:
        return make_thumbnail(read_image_bytes(uri, served.store.options, served.settings.max_bytes), size)

    def embedder():
        e = served.embedder
        if e is None:
            raise HTTPException(409, "search by image is off: the served version does not name its model; "
                                     "restart the worker with --model")
        return e

    return app


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


def _parse_filters(text: str | None) -> dict[str, Any] | None:
    if not text:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise QueryError(f"filters must be a JSON object such as {{\"class\": [\"25\"]}}: {e}") from e
    if not isinstance(value, dict):
        raise QueryError("filters must be a JSON object mapping a column to its accepted values")
    return value


def make_thumbnail(data: bytes, size: int) -> bytes:
    image = decode(data, size).image
    image.thumbnail((size, size), Image.Resampling.BICUBIC)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=85)
    return out.getvalue()


@functools.cache
def _page() -> str:
    return resources.files("lookalike").joinpath("static/search.html").read_text()
