"""The query worker's routes, in five groups: status (page, health, metrics, info), search (by vector, id,
uploaded image, URI, examples), explain (why a catalogue image matched), parts (of a composite mark) and catalogue
(stored vectors, embedding uploads, thumbnails)."""

from __future__ import annotations

import functools
import io
import json
import time
from dataclasses import replace
from importlib import resources
from typing import Annotated

import numpy as np
from fastapi import FastAPI, File, Form, HTTPException, Path, Query, UploadFile
from fastapi.params import Depends
from fastapi.responses import HTMLResponse, JSONResponse, Response
from PIL import Image
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from lookalike.core.schemas import COLOUR_COLUMN
from lookalike.image.colour import query_colours
from lookalike.image.crop import crop_images
from lookalike.image.decode import decode
from lookalike.image.histogram import as_text, from_text
from lookalike.image.parts import propose_parts
from lookalike.image.read import read_image_bytes
from lookalike.retrieval.class_focus import weights_classes
from lookalike.retrieval.example_query import example_query
from lookalike.retrieval.explain import explain_id, explain_image
from lookalike.retrieval.explanation import Explanation
from lookalike.retrieval.filters import UNFILTERABLE
from lookalike.retrieval.ids import UnknownImageIds, vectors_of_ids
from lookalike.retrieval.limits import MAX_K
from lookalike.retrieval.query import stored_colours
from lookalike.retrieval.word_queries import in_word_space
from lookalike.serve.api_models import (
    CROP,
    WEIGHT_CLASS,
    WEIGHT_STRENGTH,
    ExampleIds,
    ExplainAnswer,
    ExplainIds,
    IdQuery,
    IdVectors,
    ImageSearchOptions,
    PartsAnswer,
    SearchAnswer,
    TagAnswer,
    TextList,
    TextQuery,
    UriQuery,
    VectorQuery,
    errors,
)
from lookalike.serve.context import RequestContext, id_views, image_colours, image_views, verifies
from lookalike.serve.export import CSV_RESPONSE, AnswerFormat, in_format
from lookalike.serve.forms import crop_part, examples_form, image_search_form
from lookalike.serve.schema import served_schema
from lookalike.serve.uri_policy import UriRefused


def add_status_routes(app: FastAPI, ctx: RequestContext, auth: Depends, registry: CollectorRegistry) -> None:
    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page() -> str:
        return _page()

    @app.get("/healthz", summary="which version is served; 503 until one is loaded", responses=errors(503))
    def healthz() -> JSONResponse:
        status = ctx.served.status()
        return JSONResponse(status, status_code=200 if status["version"] else 503)

    @app.get("/metrics", include_in_schema=False, dependencies=[auth])
    def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    # The schema is behind the token like the API it describes. No /docs or /redoc: their pages load their
    # scripts from a CDN, which a serving host often cannot reach; any OpenAPI viewer reads /openapi.json.
    @app.get("/openapi.json", include_in_schema=False, dependencies=[auth])
    def openapi() -> JSONResponse:
        return JSONResponse(served_schema(app.openapi(), ctx.served.current, ctx.settings, ctx.served.embedder))

    @app.get("/api/info", dependencies=[auth], summary="the served version and its filterable columns",
             responses=errors(401, 503))
    def info() -> dict:
        v = ctx.index_version()
        return {"name": v.manifest["name"], "version": v.version, "ntotal": v.manifest["ntotal"], "dim": v.dim,
                "factory": v.manifest["factory"], "default_search": v.manifest["default_search"],
                "columns": [c for c in v.ids.column_names if c not in UNFILTERABLE],
                "image_search": ctx.served.embedder is not None,
                "text_search": ctx.served.embedder is not None and in_word_space(ctx.served.embedder.model),
                "class_weighting": ctx.served.embedder is not None and weights_classes(ctx.served.embedder.model),
                "colour_search": COLOUR_COLUMN in v.ids.column_names,
                "max_k": MAX_K,
                "max_batch": ctx.settings.max_batch}


def add_search_routes(app: FastAPI, ctx: RequestContext, auth: Depends) -> None:
    def search_route(path: str, summary: str, *codes: int):
        return app.post(path, dependencies=[auth], response_model=SearchAnswer, summary=summary,
                        responses={**errors(400, 401, 413, 503, 504, *codes), 200: CSV_RESPONSE})

    @search_route("/search/vectors", "top-k for raw vectors (normalised here)")
    async def by_vectors(body: VectorQuery, answer_format: AnswerFormat = "json") -> Response:
        v = ctx.index_version()
        ctx.check_search(v, len(body.vectors), body)
        colours = [from_text(body.colour)] * len(body.vectors)
        return in_format(await ctx.in_thread(lambda: ctx.run_vectors(
            v, body.vectors, body, "vector", list(range(len(body.vectors))), colours=colours)), answer_format)

    @search_route("/search/ids", "top-k for catalogue images, by their stored vectors (class-weighted: by "
                  "their images)", 404, 409)
    async def by_ids(body: IdQuery, answer_format: AnswerFormat = "json") -> Response:
        v = ctx.index_version()
        ctx.check_search(v, len(body.image_ids), body, images=True)

        def work() -> Response:
            started = time.perf_counter()
            if body.weight_class is None:
                vectors, faiss_ids = vectors_of_ids(v, body.image_ids)
            else:  # the catalogue images themselves, re-pooled toward the class
                vectors, faiss_ids = ctx.embedder().embed_catalogue(v, body.image_ids,
                                                                    ctx.focus(body.weight_class, body.weight_strength))
            return ctx.run_vectors(v, vectors, body, "id", body.image_ids, None if body.include_self else faiss_ids,
                                   started=started, views=id_views(v, body, faiss_ids),
                                   colours=stored_colours(v, faiss_ids) if body.colour_weight else None)
        return in_format(await ctx.in_thread(work), answer_format)

    @search_route("/search/images", "top-k for uploaded images (multipart)", 409)
    async def by_images(images: Annotated[list[UploadFile], File(description="one or more image files")],
                        options: Annotated[ImageSearchOptions, Depends(image_search_form)],
                        answer_format: AnswerFormat = "json") -> Response:
        v = ctx.index_version()
        ctx.check_search(v, len(images), options, images=True)
        data = [await f.read() for f in images]
        names = [f.filename or str(i) for i, f in enumerate(images)]

        def work() -> Response:
            started, embedder = time.perf_counter(), ctx.embedder()
            focus = ctx.focus(options.weight_class, options.weight_strength)
            parts = crop_images(data, options.part, embedder.limits)
            return ctx.run_vectors(v, embedder.embed(parts, focus), options, "image", names, started=started,
                                   views=image_views(v, options, embedder, parts),
                                   colours=image_colours(options, embedder, parts))
        return in_format(await ctx.in_thread(work), answer_format)

    @search_route("/search/examples", "top-k for one query made of examples (multipart): uploaded images and "
                  "catalogue ids to find more of, and others to find fewer of; crop applies to every upload", 404, 409)
    async def by_examples(
            options: Annotated[ImageSearchOptions, Depends(image_search_form)],
            chosen: Annotated[ExampleIds, Depends(examples_form)],
            images: Annotated[list[UploadFile] | None, File(description="images to find more of")] = None,
            negative_images: Annotated[list[UploadFile] | None, File(description="images to find fewer of")] = None,
            answer_format: AnswerFormat = "json",
    ) -> Response:
        v = ctx.index_version()
        uploads = {"positive": images or [], "negative": negative_images or []}
        ctx.check_search(v, len(uploads["positive"]) + len(uploads["negative"]) + len(chosen.image_ids)
                         + len(chosen.negative_ids), options, images=True)
        data = {side: [await f.read() for f in files] for side, files in uploads.items()}

        def work() -> Response:
            started = time.perf_counter()
            needs_model = data["positive"] or data["negative"] or options.weight_class is not None
            embedder = ctx.embedder() if needs_model else None
            cropped = {side: crop_images(d, options.part, embedder.limits) if d else [] for side, d in data.items()}
            query = example_query(v, embedder, cropped["positive"], chosen.image_ids, cropped["negative"],
                                  chosen.negative_ids, chosen.negative_weight,
                                  ctx.focus(options.weight_class, options.weight_strength), verifies(v, options),
                                  bool(options.colour_weight))
            return ctx.run_vectors(v, query.vector, options, "examples", ["examples"], query.exclude, started=started,
                                   views=query.views, colours=[query.colour])
        return in_format(await ctx.in_thread(work), answer_format)

    @search_route("/search/text", "top-k for text queries, against a word-space index", 409)
    async def by_text(body: TextQuery, answer_format: AnswerFormat = "json") -> Response:
        v = ctx.index_version()
        ctx.check_search(v, len(body.texts), body)
        words = ctx.words()
        return in_format(await ctx.in_thread(
            lambda: ctx.run_vectors(v, words.embed_texts(body.texts), body, "text", body.texts)), answer_format)

    @app.post("/tag", dependencies=[auth], response_model=TagAnswer, summary="the nearest words of uploaded "
              "images (multipart), with a word-space index's model", responses=errors(400, 401, 409, 413, 504))
    async def tag(images: Annotated[list[UploadFile], File(description="one or more image files")],
                  k: Annotated[int, Form(ge=1, le=100)] = 5) -> Response:
        ctx.check_batch(len(images))
        data = [await f.read() for f in images]
        embedder, words = ctx.embedder(), ctx.words()
        names = [f.filename or str(i) for i, f in enumerate(images)]
        tags = await ctx.in_thread(lambda: words.tags(embedder.embed(data), k))
        return Response(json.dumps({"results": [{"image": n, "tags": [{"word": w, "score": s} for w, s in row]}
                                                for n, row in zip(names, tags, strict=True)]}),
                        media_type="application/json")

    @search_route("/search/uris", "top-k for images the worker reads from URIs", 403, 409)
    async def by_uris(body: UriQuery, answer_format: AnswerFormat = "json") -> Response:
        v = ctx.index_version()
        ctx.check_search(v, len(body.uris), body, images=True)
        try:
            locations = [ctx.allowed_uris.check(u) for u in body.uris]
        except UriRefused as e:
            raise HTTPException(403, str(e)) from e

        def work() -> Response:
            e, started = ctx.embedder(), time.perf_counter()
            focus = ctx.focus(body.weight_class, body.weight_strength)
            data = crop_images([ctx.read_uri(u) for u in locations], body.part, e.limits)
            return ctx.run_vectors(v, e.embed(data, focus), body, "uri", body.uris, started=started,
                                   views=image_views(v, body, e, data), colours=image_colours(body, e, data))
        return in_format(await ctx.in_thread(work), answer_format)


def add_explain_routes(app: FastAPI, ctx: RequestContext, auth: Depends) -> None:
    def explain_route(path: str, summary: str, *codes: int):
        return app.post(path, dependencies=[auth], response_model=ExplainAnswer, summary=summary,
                        responses=errors(400, 401, 404, 413, 503, 504, *codes))

    def answer(v, query: str, explanation: Explanation) -> Response:
        shown = replace(explanation, metadata=ctx.served.shown(explanation.metadata))
        body = {"name": v.manifest["name"], "version": v.version, "query": query, **shown.as_dict()}
        return Response(json.dumps(body, default=str), media_type="application/json")

    @explain_route("/explain/ids", "why a catalogue image matches another: the score's parts, the cosine's "
                   "percentile in the catalogue, the verified keypoint pairs")
    async def explain_ids(body: ExplainIds) -> Response:
        v = ctx.index_version()
        return await ctx.in_thread(lambda: answer(v, body.query_id, explain_id(
            v, body.query_id, body.image_id, ctx.served.calibration(v))))

    @explain_route("/explain/images", "why a catalogue image matches an uploaded image (multipart: image, "
                   "image_id)", 409)
    async def explain_upload(image: Annotated[UploadFile, File(description="the query image")],
                             image_id: Annotated[str, Form(min_length=1, max_length=1000,
                                                           description="the catalogue image to compare")],
                             crop: Annotated[str | None, Form(max_length=200, description=CROP)] = None
                             ) -> Response:
        v = ctx.index_version()
        part = crop_part(crop)
        data = await image.read()
        embedder = ctx.embedder()
        return await ctx.in_thread(lambda: answer(v, image.filename or "image", explain_image(
            v, embedder, crop_images([data], part, embedder.limits)[0], image_id, ctx.served.calibration(v))))


def add_parts_routes(app: FastAPI, ctx: RequestContext, auth: Depends) -> None:
    @app.post("/parts", dependencies=[auth], response_model=PartsAnswer, summary="the parts of a composite mark "
              "(its devices, its lettering), each a crop to search", responses=errors(400, 401, 413, 504))
    async def parts(image: Annotated[UploadFile, File(description="the mark")]) -> Response:
        data = await image.read()
        found = await ctx.in_thread(lambda: propose_parts(data, ctx.served.decode_limits))
        return Response(json.dumps({"image": image.filename or "image", "parts": [p.as_dict() for p in found]}),
                        media_type="application/json")


def add_catalogue_routes(app: FastAPI, ctx: RequestContext, auth: Depends) -> None:
    @app.post("/vectors", dependencies=[auth], summary="stored vectors of catalogue ids (null where unknown)",
              responses=errors(400, 401, 409, 413, 503, 504))
    async def stored_vectors(body: IdVectors) -> Response:
        v = ctx.index_version()
        ctx.check_batch(len(body.image_ids))
        ids = [v.faiss_id_of(i) for i in body.image_ids]
        rows = [None if f is None else np.asarray(v.vectors[f], np.float32).tolist() for f in ids]
        found = [f for f in ids if f is not None]
        stored = iter(stored_colours(v, np.asarray(found, dtype=np.int64)))
        colours = [None if f is None else as_text(next(stored)) for f in ids]
        if body.weight_class is not None:
            known = [i for i, f in zip(body.image_ids, ids, strict=True) if f is not None]
            rows = await ctx.in_thread(lambda: _weighted_rows(ctx, v, body, known, rows))
        return Response(json.dumps({"version": v.version, "vectors": rows, "colours": colours}),
                        media_type="application/json")

    @app.post("/embed", dependencies=[auth], summary="vectors of uploaded images, with the index's model",
              responses=errors(400, 401, 409, 413, 504))
    async def embed_images(images: Annotated[list[UploadFile], File()],
                           weight_class: Annotated[str | None, Form(description=WEIGHT_CLASS)] = None,
                           weight_strength: Annotated[float | None, Form(description=WEIGHT_STRENGTH)] = None,
                           crop: Annotated[str | None, Form(max_length=200, description=CROP)] = None
                           ) -> Response:
        ctx.check_batch(len(images))
        part = crop_part(crop)
        data = [await f.read() for f in images]
        embedder = ctx.embedder()
        focus = ctx.focus(weight_class, weight_strength)
        def work() -> tuple[np.ndarray, list[bytes]]:
            parts = crop_images(data, part, embedder.limits)
            return embedder.embed(parts, focus), query_colours(parts, embedder.limits)
        vectors, colours = await ctx.in_thread(work)
        return Response(json.dumps({"fingerprint_id": embedder.fingerprint_id, "vectors": vectors.tolist(),
                                    "colours": [as_text(c) for c in colours]}), media_type="application/json")

    @app.post("/embed/text", dependencies=[auth], summary="word-space vectors of text queries, with the index's "
              "model", responses=errors(400, 401, 409, 413, 504))
    async def embed_texts(body: TextList) -> Response:
        ctx.check_batch(len(body.texts))
        words = ctx.words()
        vectors = await ctx.in_thread(lambda: words.embed_texts(body.texts))
        return Response(json.dumps({"fingerprint_id": words.fingerprint_id, "vectors": vectors.tolist()}),
                        media_type="application/json")

    @functools.lru_cache(maxsize=2048)
    def thumbnail_of(uri: str, size: int) -> bytes:
        return make_thumbnail(read_image_bytes(uri, ctx.served.store.options, ctx.served.settings.max_bytes), size)

    @app.get("/images/{image_id:path}/thumbnail", dependencies=[auth], summary="a JPEG thumbnail of a hit",
             responses={200: {"content": {"image/jpeg": {}}}, **errors(400, 401, 404, 413, 503, 504)})
    async def thumbnail(image_id: Annotated[str, Path(min_length=1)],
                        size: Annotated[int, Query(ge=16, le=512)] = 192) -> Response:
        v = ctx.index_version()
        faiss_id = v.faiss_id_of(image_id)
        if faiss_id is None:
            raise UnknownImageIds([image_id], v.version)
        uri = v.ids["uri"][int(v.row_of_faiss[faiss_id])].as_py()
        data = await ctx.in_thread(lambda: thumbnail_of(uri, size))
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "max-age=3600"})


def _weighted_rows(ctx: RequestContext, v, body: IdVectors, known: list[str], rows: list) -> list:
    """The rows of known ids replaced by their images re-embedded toward body.weight_class."""
    e = ctx.embedder()
    focus = ctx.focus(body.weight_class, body.weight_strength)
    vectors = iter(e.embed_catalogue(v, known, focus)[0].tolist())
    return [None if row is None else next(vectors) for row in rows]


def make_thumbnail(data: bytes, size: int) -> bytes:
    image = decode(data, size).image
    image.thumbnail((size, size), Image.Resampling.BICUBIC)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=85)
    return out.getvalue()


@functools.cache
def _page() -> str:
    return resources.files("lookalike.serve").joinpath("static/search.html").read_text()
