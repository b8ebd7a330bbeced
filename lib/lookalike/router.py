"""The fan-out router: one query API over N shard workers (`lookalike serve` on exported bundles). Each query
goes to every shard in parallel with a timeout; their top-k lists are merged by score. A shard that is down or
too slow is named in the answer (`partial`, `missing_shards`) or, with on_missing="error", fails the request."""

from __future__ import annotations

import asyncio
import json
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any

import httpx
from fastapi import FastAPI, File, Form, HTTPException, Request, UploadFile
from fastapi.responses import JSONResponse, Response

from lookalike import __version__
from lookalike.api_middleware import bearer_ok
from lookalike.api_models import IdQuery, SearchAnswer, VectorQuery
from lookalike.query import MAX_K

ON_MISSING = ("partial", "error")


@dataclass(frozen=True)
class RouterSettings:
    shards: tuple[str, ...]            # base URLs of the shard workers
    on_missing: str = "partial"        # a dead or slow shard: answer from the others ("partial") or fail ("error")
    shard_timeout_s: float = 5.0
    token: str | None = None           # clients must send it, and it is passed on to the shards

    def __post_init__(self):
        if not self.shards:
            raise ValueError("give the shard workers: --shards URL,URL,...")
        if self.on_missing not in ON_MISSING:
            raise ValueError(f"on_missing is one of {ON_MISSING}, got {self.on_missing!r}")


class ShardError(Exception):
    def __init__(self, status: int, detail: Any):
        super().__init__(detail)
        self.status, self.detail = status, detail


def merge(answers: list[dict[str, Any]], k: int, drop: list[str | None] | None = None) -> list[list[dict]]:
    """Per query, every shard's hits by descending score, the best k, ranked again. drop[i] names a hit to
    leave out of query i (the query image itself)."""
    n = len(answers[0]["results"])
    merged = []
    for q in range(n):
        hits = [h for a in answers for h in a["results"][q]["hits"] if not drop or h["image_id"] != drop[q]]
        hits.sort(key=lambda h: -h["score"])
        merged.append([{**h, "rank": r} for r, h in enumerate(hits[:k], 1)])
    return merged


def create_router(settings: RouterSettings) -> FastAPI:
    headers = {"Authorization": f"Bearer {settings.token}"} if settings.token else {}
    client = httpx.AsyncClient(timeout=settings.shard_timeout_s, headers=headers)

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        yield
        await client.aclose()

    app = FastAPI(title="lookalike router", version=__version__, lifespan=lifespan,
                  description="One search API over the shard workers of an exported index.")

    @app.exception_handler(ShardError)
    async def shard_error(_: Request, e: ShardError):
        return JSONResponse({"detail": e.detail}, status_code=e.status)

    def authorise(request: Request) -> None:
        if not bearer_ok(request.headers.get("authorization", ""), settings.token):
            raise HTTPException(401, "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"})

    async def call(shard: str, path: str, **kw) -> dict[str, Any]:
        response = await client.post(shard + path, **kw)
        if 400 <= response.status_code < 500:  # the request itself is wrong: every shard would say so
            raise ShardError(response.status_code, response.json().get("detail", response.text))
        response.raise_for_status()
        return response.json()

    async def fan_out(path: str, body: dict[str, Any]) -> tuple[list[dict], list[str]]:
        outcomes = await asyncio.gather(*(call(s, path, json=body) for s in settings.shards), return_exceptions=True)
        for outcome in outcomes:
            if isinstance(outcome, ShardError):
                raise outcome
        missing = [s for s, o in zip(settings.shards, outcomes, strict=True) if isinstance(o, BaseException)]
        answers = [o for o in outcomes if not isinstance(o, BaseException)]
        if not answers:
            raise ShardError(503, f"no shard answered: {', '.join(missing)}")
        if missing and settings.on_missing == "error":
            raise ShardError(502, f"{len(missing)} of {len(settings.shards)} shards did not answer: "
                                  f"{', '.join(missing)}")
        return answers, missing

    async def search(vectors: list, options: dict[str, Any], labels: list, started: float,
                     drop: list[str | None] | None = None) -> Response:
        k = options["k"]
        body = {**options, "vectors": vectors, "k": k + (1 if drop else 0)}
        answers, missing = await fan_out("/search/vectors", body)
        merged = merge(answers, k, drop)
        versions = sorted({a["version"] for a in answers})
        return Response(json.dumps({
            "name": answers[0]["name"], "version": versions[0] if len(versions) == 1 else versions, "k": k,
            "took_ms": round(1000 * (time.perf_counter() - started), 2), "partial": bool(missing),
            "missing_shards": missing,
            "results": [{"query": label, "hits": hits} for label, hits in zip(labels, merged, strict=True)]}),
            media_type="application/json")

    def options_of(body) -> dict[str, Any]:
        return body.model_dump(include={"k", "nprobe", "rerank", "filters"}, exclude_none=True)

    @app.get("/healthz")
    async def healthz() -> JSONResponse:
        async def one(shard: str) -> dict[str, Any]:
            try:
                r = await client.get(shard + "/healthz")
                return {"url": shard, "ok": r.status_code == 200, **r.json()}
            except (httpx.HTTPError, ValueError) as e:
                return {"url": shard, "ok": False, "error": f"{type(e).__name__}: {e}"}
        shards = await asyncio.gather(*(one(s) for s in settings.shards))
        up = sum(s["ok"] for s in shards)
        status = "ok" if up == len(shards) else ("degraded" if up else "down")
        return JSONResponse({"status": status, "shards": shards}, status_code=200 if up else 503)

    @app.post("/search/vectors", response_model=SearchAnswer)
    async def by_vectors(body: VectorQuery, request: Request) -> Response:
        authorise(request)
        return await search(body.vectors, options_of(body), list(range(len(body.vectors))), time.perf_counter())

    @app.post("/search/ids", response_model=SearchAnswer)
    async def by_ids(body: IdQuery, request: Request) -> Response:
        authorise(request)
        started = time.perf_counter()
        answers, _ = await fan_out("/vectors", {"image_ids": body.image_ids})
        vectors = [next((a["vectors"][i] for a in answers if a["vectors"][i] is not None), None)
                   for i in range(len(body.image_ids))]
        unknown = [i for i, v in zip(body.image_ids, vectors, strict=True) if v is None]
        if unknown:
            raise ShardError(404, f"{len(unknown)} image id(s) on no shard that answered: {unknown[:5]}")
        drop = None if body.include_self else list(body.image_ids)
        return await search(vectors, options_of(body), body.image_ids, started, drop)

    @app.post("/search/images", response_model=SearchAnswer)
    async def by_images(request: Request, images: Annotated[list[UploadFile], File()],
                        k: Annotated[int, Form(ge=1, le=MAX_K)] = 10, filters: Annotated[str | None, Form()] = None
                        ) -> Response:
        authorise(request)
        started = time.perf_counter()
        files = [("images", (f.filename or "image", await f.read(), f.content_type or "image/jpeg")) for f in images]
        last_error: Exception | None = None
        for shard in settings.shards:  # any one shard embeds: they share the model
            try:
                embedded = await call(shard, "/embed", files=files)
                break
            except ShardError:
                raise
            except httpx.HTTPError as e:
                last_error = e
        else:
            raise ShardError(503, f"no shard could embed the images: {last_error}")
        try:
            options = {"k": k, **({"filters": json.loads(filters)} if filters else {})}
        except json.JSONDecodeError as e:
            raise ShardError(400, f"filters must be a JSON object: {e}") from e
        return await search(embedded["vectors"], options, [f.filename for f in images], started)

    return app
