"""What every route of the query worker shares: its settings, the version a request reads (once), running the
search off the event loop under the request time limit, batch limits, and writing an answer."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import anyio
from fastapi import HTTPException
from fastapi.responses import Response
from prometheus_client import Counter

from lookalike.core.deadline import Deadline, DeadlineExceeded, checkpoint, remaining
from lookalike.image.colour import query_colours
from lookalike.image.read import read_image_bytes
from lookalike.index.reader import IndexVersion
from lookalike.index.search import SearchParams
from lookalike.model.class_weighting import ClassFocus
from lookalike.retrieval.class_focus import class_focus
from lookalike.retrieval.embedder import QueryEmbedder
from lookalike.retrieval.limits import DEFAULT_SHORTLIST, QueryError
from lookalike.retrieval.query import (
    ColourRanking,
    Verification,
    as_queries,
    params_for,
    search_vectors,
    stored_views,
)
from lookalike.retrieval.views import query_views
from lookalike.retrieval.word_queries import WordQueries, in_word_space
from lookalike.serve.api_models import SearchOptions
from lookalike.serve.settings import ApiSettings
from lookalike.serve.uri_policy import UriAllowList, read_options
from lookalike.serve.worker import ServedIndex


@dataclass(frozen=True)
class RequestContext:
    served: ServedIndex
    settings: ApiSettings
    queries: Counter                      # query rows searched, by kind
    allowed_uris: UriAllowList

    def read_uri(self, location: str) -> bytes:
        """The bytes of an allowed location (checked by allowed_uris), without redirects, within the request's
        time limit."""
        checkpoint()
        options = read_options(location, self.served.store.options, remaining(self.settings.request_timeout_s))
        return read_image_bytes(location, options, self.served.settings.max_bytes)

    def index_version(self) -> IndexVersion:
        """The version this request uses from start to end: read once, so a hot swap never changes it midway."""
        current = self.served.current
        if current is None:
            raise HTTPException(503, "no index version is loaded yet")
        return current

    def embedder(self) -> QueryEmbedder:
        e = self.served.embedder
        if e is None:
            raise HTTPException(409, "search by image is off: the served version does not name its model; "
                                     "restart the worker with --model")
        return e

    def words(self) -> WordQueries:
        e = self.embedder()
        if not in_word_space(e.model):
            raise HTTPException(409, "search by text and tags need a word-space index: this version's vectors are "
                                     "visual; serve an index of a version embedded with --space words")
        return WordQueries(e.model)

    def focus(self, weight_class: str | int | None, strength: float | None) -> ClassFocus | None:
        """A class-weighted request's focus (None for a plain one), checked before any image is read."""
        return None if weight_class is None and strength is None else \
            class_focus(self.embedder().model, weight_class, strength)

    async def in_thread(self, fn: Callable[[], Any]) -> Any:
        """Blocking work (embedding, searching, reading) off the event loop, within the request time limit. When
        the request gives up (504, or the client went away), the work stops at its next checkpoint."""
        deadline = Deadline(self.settings.request_timeout_s)
        try:
            with anyio.fail_after(self.settings.request_timeout_s):
                return await anyio.to_thread.run_sync(deadline.run, fn, abandon_on_cancel=True)
        except (TimeoutError, DeadlineExceeded) as e:
            raise HTTPException(504, f"the search took longer than {self.settings.request_timeout_s}s") from e
        finally:
            deadline.cancel()  # a no-op for work that finished

    def check_batch(self, n: int) -> None:
        if n > self.settings.max_batch:
            raise QueryError(f"{n} queries in one request; the limit is {self.settings.max_batch}")

    def check_search(self, v: IndexVersion, n: int, options: SearchOptions, images: bool = False) -> None:
        """Every bound of a search request, before any image is read or embedded; `images`: queries that verify
        (images, URIs, catalogue ids), whose shortlists count in the work budget."""
        self.check_batch(n)
        shortlist = (options.shortlist or DEFAULT_SHORTLIST) if images and verifies(v, options) else 0
        self.settings.limits.check(n, options.k, params_of(v, options), shortlist)

    def run_vectors(self, v: IndexVersion, vectors, options: SearchOptions, kind: str, labels: list[Any],
                    exclude=None, started: float | None = None, views: list | None = None,
                    colours: list[bytes | None] | None = None) -> Response:
        """views: the queries' local features (image, URI and id queries) when the version can verify; colours:
        their colour histograms, where colour weighs (colour_weight)."""
        started = started or time.perf_counter()  # image queries count their embedding too
        params = params_of(v, options)
        verification = Verification.of(views, options.shortlist)
        ranking = None if colours is None else ColourRanking.of(colours, options.colour_weight, options.shortlist)
        hits = search_vectors(v, as_queries(v, vectors), options.k, params, options.filters, exclude,
                              limits=self.settings.limits, verification=verification, colours=ranking)
        calibration = self.served.calibration(v)
        if calibration is not None and kind != "text":  # a text's cosines to images are on another scale
            hits = calibration.placed(hits)
        if self.served.settings.show_columns:
            hits = [[replace(h, metadata=self.served.shown(h.metadata)) for h in row] for row in hits]
        self.queries.labels(kind).inc(len(labels))
        body = {"name": v.manifest["name"], "version": v.version, "k": options.k,
                "took_ms": round(1000 * (time.perf_counter() - started), 2),
                "results": [{"query": label, "hits": [h.as_dict() for h in row]}
                            for label, row in zip(labels, hits, strict=True)]}
        # Serialised here, not by FastAPI's encoder (a third of a vector query's time); metadata of types JSON
        # lacks (dates, decimals) is written as text.
        return Response(json.dumps(body, default=str), media_type="application/json")


def verifies(v: IndexVersion, options: SearchOptions) -> bool:
    """Whether this request's shortlists are verified: asked for (the default) and possible (local features)."""
    return options.verify and v.features is not None


def image_views(v: IndexVersion, options: SearchOptions, embedder, images: list[bytes]) -> list | None:
    return query_views(images, v.features.settings, embedder.limits) if verifies(v, options) else None


def image_colours(options: SearchOptions, embedder, images: list[bytes]) -> list | None:
    """Query images' colour histograms, where colour weighs in this request."""
    return query_colours(images, embedder.limits) if options.colour_weight else None


def id_views(v: IndexVersion, options: SearchOptions, faiss_ids) -> list | None:
    return stored_views(v, faiss_ids) if verifies(v, options) else None


def params_of(v: IndexVersion, options: SearchOptions) -> SearchParams:
    return params_for(v, options.nprobe, options.rescore, options.expand, options.expand_alpha)
