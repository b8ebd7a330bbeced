"""The fan-out router: one query API over N shard workers (`lookalike serve` on exported bundles). Each query
goes to every shard in parallel with a timeout; their top-k lists are merged by score. A shard that is down or
too slow is named in the answer (`partial`, `missing_shards`) or, with on_missing="error", fails the request."""

from __future__ import annotations

import time
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends, FastAPI, File, Form, HTTPException, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response

from lookalike._version import __version__
from lookalike.image.histogram import as_text, from_text, mean_histogram
from lookalike.retrieval.examples import Examples
from lookalike.retrieval.limits import QueryError
from lookalike.serve.api_middleware import BodyLimit, bearer_ok, validation_error
from lookalike.serve.api_models import (
    ExampleIds,
    ExplainAnswer,
    ExplainIds,
    IdQuery,
    ImageSearchOptions,
    PartsAnswer,
    SearchAnswer,
    TextQuery,
    VectorQuery,
    errors,
)
from lookalike.serve.export import CSV_RESPONSE, AnswerFormat, in_format
from lookalike.serve.forms import as_form, crop_part, examples_form, image_search_form
from lookalike.serve.schema import router_schema
from lookalike.serve.shards import RouterSettings, ShardError, Shards


def create_router(settings: RouterSettings) -> FastAPI:
    shards = Shards(settings)

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        yield
        await shards.client.aclose()

    # No /docs or /redoc (their pages load scripts from a CDN), and the schema behind the token, as on a worker.
    app = FastAPI(title="lookalike router", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url=None, description="One search API over the shard workers of an exported index.")

    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    app.add_exception_handler(RequestValidationError, validation_error)

    @app.exception_handler(ShardError)
    async def shard_error(_: Request, e: ShardError):
        return JSONResponse({"detail": e.detail}, status_code=e.status)

    @app.exception_handler(QueryError)
    async def query_error(_: Request, e: QueryError):  # what the router checks itself, as a worker answers it
        return JSONResponse({"detail": str(e)}, status_code=400)


    def authorise(request: Request) -> None:
        if not bearer_ok(request.headers.get("authorization", ""), settings.token):
            raise HTTPException(401, "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"})

    def options_of(body) -> dict[str, Any]:
        return body.model_dump(include={"k", "nprobe", "rescore", "expand", "expand_alpha", "filters", "colour",
                                        "colour_weight", "shortlist"}, exclude_none=True)

    def weighting_of(body) -> Any:
        return body.model_dump(include={"weight_class", "weight_strength"}, exclude_none=True)

    @app.get("/openapi.json", include_in_schema=False)
    async def openapi(request: Request) -> JSONResponse:
        authorise(request)
        return JSONResponse(router_schema(app.openapi(), await shards.schema()))

    def search_route(path: str):
        """A search path: what the shards answer (their 4xx passed on), and the router's own failures."""
        return app.post(path, response_model=SearchAnswer,
                        responses={**errors(400, 401, 404, 409, 413, 502), 200: CSV_RESPONSE})

    @app.get("/healthz")
    async def healthz() -> JSONResponse:
        health = await shards.health()
        up = sum(s["ok"] for s in health)
        status = "ok" if up == len(health) else ("degraded" if up else "down")
        return JSONResponse({"status": status, "shards": health}, status_code=200 if up else 503)

    @search_route("/search/vectors")
    async def by_vectors(body: VectorQuery, request: Request, answer_format: AnswerFormat = "json") -> Response:
        authorise(request)
        return in_format(await shards.search(body.vectors, options_of(body), list(range(len(body.vectors))),
                                             time.perf_counter()), answer_format)

    async def stored_vectors(image_ids: list[str], weighting: dict[str, Any]
                             ) -> tuple[list[list[float]], list[str | None]]:
        """Each catalogue image's vector and colours, from the shard that holds it (class-weighted: its image
        re-embedded there toward the class, instead of its stored vector); 404 for ids on no shard that answered."""
        if not image_ids:
            return [], []
        answers, _ = await shards.fan_out("/vectors", {"image_ids": image_ids, **weighting})
        holders = [next((a for a in answers if a["vectors"][i] is not None), None) for i in range(len(image_ids))]
        unknown = [i for i, a in zip(image_ids, holders, strict=True) if a is None]
        if unknown:
            raise ShardError(404, f"{len(unknown)} image id(s) on no shard that answered: {unknown[:5]}")
        return ([a["vectors"][i] for i, a in enumerate(holders)],
                [(a.get("colours") or [None] * len(image_ids))[i] for i, a in enumerate(holders)])

    def embed_form(options: ImageSearchOptions) -> dict[str, str]:
        """The fields of an upload's /embed on a shard: the class weighting and the crop of the search."""
        form = {name: str(value) for name, value in weighting_of(options).items()}
        if options.crop:
            form["crop"] = as_form(options)["crop"]
        return form

    @search_route("/search/ids")
    async def by_ids(body: IdQuery, request: Request, answer_format: AnswerFormat = "json") -> Response:
        authorise(request)
        started = time.perf_counter()
        # Class-weighted: the shard holding an id re-embeds its image toward the class, instead of its stored vector.
        vectors, colours = await stored_vectors(body.image_ids, weighting_of(body))
        drop = None if body.include_self else [[i] for i in body.image_ids]
        return in_format(await shards.search(vectors, options_of(body), body.image_ids, started, drop, colours),
                         answer_format)

    @search_route("/search/text")
    async def by_text(body: TextQuery, request: Request, answer_format: AnswerFormat = "json") -> Response:
        authorise(request)
        started = time.perf_counter()
        embedded = await shards.from_any("/embed/text", "embed the texts", json={"texts": body.texts})
        return in_format(await shards.search(embedded["vectors"], options_of(body), body.texts, started),
                         answer_format)

    @search_route("/search/images")
    async def by_images(request: Request, images: Annotated[list[UploadFile], File()],
                        options: Annotated[ImageSearchOptions, Depends(image_search_form)],
                        answer_format: AnswerFormat = "json") -> Response:
        authorise(request)
        started = time.perf_counter()
        files = [("images", (f.filename or "image", await f.read(), f.content_type or "image/jpeg")) for f in images]
        labels = [f.filename for f in images]
        if options.verify or options.colour_weight:
            # Every shard embeds the upload and verifies its own shortlist with its features (and weighs its colours);
            # merged by the score that ranks, so a verified hit on one shard outranks an unverified one on another.
            return in_format(await shards.search_images(files, as_form(options), options.k, labels, started),
                             answer_format)
        embedded = await shards.from_any("/embed", "embed the images", files=files, data=embed_form(options))
        return in_format(await shards.search(embedded["vectors"], options_of(options), labels, started), answer_format)

    @search_route("/search/examples")
    async def by_examples(request: Request, options: Annotated[ImageSearchOptions, Depends(image_search_form)],
                          chosen: Annotated[ExampleIds, Depends(examples_form)],
                          images: Annotated[list[UploadFile] | None, File()] = None,
                          negative_images: Annotated[list[UploadFile] | None, File()] = None,
                          answer_format: AnswerFormat = "json") -> Response:
        """The examples' vectors gathered from the shards and combined here; the shards search by that one vector
        (ranked by cosine: a shard verifies only the images and ids it is given, and the ids are on one shard)."""
        authorise(request)
        started = time.perf_counter()

        async def embedded(uploads: list[UploadFile] | None) -> tuple[list[list[float]], list[str | None]]:
            if not uploads:
                return [], []
            files = [("images", (f.filename or "image", await f.read(), f.content_type or "image/jpeg"))
                     for f in uploads]
            answer = await shards.from_any("/embed", "embed the images", files=files, data=embed_form(options))
            return answer["vectors"], answer.get("colours") or [None] * len(uploads)

        weighting = weighting_of(options)
        (stored, stored_colours), (uploaded, uploaded_colours) = (await stored_vectors(chosen.image_ids, weighting),
                                                                  await embedded(images))
        negatives = (await stored_vectors(chosen.negative_ids, weighting))[0] + (await embedded(negative_images))[0]
        query = Examples(stored + uploaded, negatives, chosen.negative_weight).query()
        # The positives' colours together, as a worker takes them for a search by examples.
        colour = as_text(mean_histogram([from_text(c) for c in (*stored_colours, *uploaded_colours)]))
        drop = [[*chosen.image_ids, *chosen.negative_ids]]
        return in_format(await shards.search(query.tolist(), options_of(options), ["examples"], started, drop,
                                             [colour]), answer_format)

    @app.post("/parts", response_model=PartsAnswer, responses=errors(400, 401, 413, 502))
    async def parts(request: Request, image: Annotated[UploadFile, File()]) -> JSONResponse:
        authorise(request)
        files = [("image", (image.filename or "image", await image.read(), image.content_type or "image/jpeg"))]
        return JSONResponse(await shards.from_any("/parts", "propose the parts", files=files))

    def explain_route(path: str):
        return app.post(path, response_model=ExplainAnswer, responses=errors(400, 401, 404, 409, 413, 502))

    @explain_route("/explain/ids")
    async def explain_ids(body: ExplainIds, request: Request) -> JSONResponse:
        authorise(request)
        # A shard explains a pair it holds both of (the query's stored features are where its vector is).
        return JSONResponse(await shards.from_holder(
            "/explain/ids", f"no shard holds both {body.query_id!r} and {body.image_id!r}: explain with the query's "
            "image instead (/explain/images)", json=body.model_dump()))

    @explain_route("/explain/images")
    async def explain_upload(request: Request, image: Annotated[UploadFile, File()],
                             image_id: Annotated[str, Form(min_length=1, max_length=1000)],
                             crop: Annotated[str | None, Form(max_length=200)] = None) -> JSONResponse:
        authorise(request)
        crop_part(crop)  # a wrong crop is refused here, before any shard is asked
        files = [("image", (image.filename or "image", await image.read(), image.content_type or "image/jpeg"))]
        form = {"image_id": image_id, **({"crop": crop} if crop else {})}
        return JSONResponse(await shards.from_holder("/explain/images", f"image id {image_id!r} is on no shard",
                                                     files=files, data=form))

    return app
