"""A published index opened in this process, searched as a query worker searches it: by images, catalogue ids,
vectors or texts, with the same defaults (the version's operating point, geometric verification where the version
has local features), limits and errors."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, overload

import numpy as np

from lookalike.api.images import ImageLike, image_bytes, images_of
from lookalike.api.renamed import accepts_renamed
from lookalike.core.errors import ConfigError
from lookalike.core.store import Store
from lookalike.image.colour import query_colours
from lookalike.image.crop import Crop, crop_images
from lookalike.image.limits import DEFAULT_MAX_PIXELS
from lookalike.image.read import read_image_bytes
from lookalike.index.local_cache import default_cache_dir
from lookalike.index.reader import IndexVersion
from lookalike.index.search import SearchParams
from lookalike.model.class_weighting import ClassFocus
from lookalike.model.spec import ModelSpec
from lookalike.retrieval.class_focus import class_focus as focus_of
from lookalike.retrieval.embedder import QueryEmbedder
from lookalike.retrieval.example_query import example_query
from lookalike.retrieval.examples import NEGATIVE_WEIGHT
from lookalike.retrieval.explain import explain_id, explain_image
from lookalike.retrieval.explanation import Explanation
from lookalike.retrieval.hit import Hit
from lookalike.retrieval.ids import uris_of_ids, vectors_of_ids
from lookalike.retrieval.limits import DEFAULT_SHORTLIST
from lookalike.retrieval.query import (
    DEFAULT_LIMITS,
    ColourRanking,
    Verification,
    as_queries,
    params_for,
    search_vectors,
    stored_colours,
    stored_views,
)
from lookalike.retrieval.views import query_views
from lookalike.retrieval.word_queries import WordQueries
from lookalike.serve.worker import ServedIndex, WorkerSettings

Filters = Mapping[str, Any]
BATCH = 64  # image and id queries searched at a time (a query worker's batch): bounds memory and verification


def open_index(store: str, index: str, version: str | None = None, *, storage_options: Mapping[str, Any] | None = None,
               cache_dir: str | None = None, model: ModelSpec | None = None) -> Index:
    """Open LATEST of a published index (or `version`) from a store URL: its files are copied into the local cache
    (`cache_dir`, default $LOOKALIKE_CACHE_DIR or ~/.cache/lookalike) once, checked and memory-mapped. The model
    that embeds query images is the one the version names, unless `model` is given (it must make the same
    vectors)."""
    served = ServedIndex(Store(store, storage_options), WorkerSettings(
        index, cache_dir or default_cache_dir(), model, max_pixels=DEFAULT_MAX_PIXELS))  # as the embed job reads
    served.start(watch=False, version=version)
    return Index(served)


class Index:
    """One version of a published index, ready to search. Every search returns, per query, its hits ranked by
    `Hit.score`; methods given one query return its hits, given a list they return a list of hit lists."""

    def __init__(self, served: ServedIndex):
        if served.current is None:
            raise ConfigError("the index is not loaded: use lookalike.open_index()")
        self._served = served
        self._version: IndexVersion = served.current

    @property
    def name(self) -> str:
        return self._served.settings.name

    @property
    def version(self) -> str:
        return self._version.version

    @property
    def size(self) -> int:
        """How many images the version holds."""
        return int(self._version.manifest["ntotal"])

    @property
    def dim(self) -> int:
        return self._version.dim

    @property
    def manifest(self) -> dict[str, Any]:
        """The version's manifest: model fingerprint, index type and why, recall table, files."""
        return self._version.manifest

    @property
    def verifies(self) -> bool:
        """Whether searches by image and id verify their shortlists (the version has local features)."""
        return self._version.features is not None

    def __repr__(self) -> str:
        return f"Index({self.name!r}, version={self.version!r}, size={self.size:,})"

    @overload
    def search(self, images: ImageLike, k: int = 10, **options: Any) -> list[Hit]: ...
    @overload
    def search(self, images: Sequence[ImageLike], k: int = 10, **options: Any) -> list[list[Hit]]: ...

    @accepts_renamed
    def search(self, images, k: int = 10, *, filters: Filters | None = None, nprobe: int | None = None,
               rescore: int | None = None, expand: int | None = None, expand_alpha: float | None = None,
               verify: bool = True, shortlist: int | None = None, weight_class: str | int | None = None,
               weight_strength: float | None = None, crop: str | Sequence[float] | None = None,
               colour_weight: float | None = None):
        """The k nearest catalogue images of each query image (a path or URI, bytes, or a PIL image), embedded
        with the index's model; with `weight_class` (an ImageNet class name or id) pooled where that class is;
        with `crop` (x0, y0, x1, y1 as fractions of the width and height) a part of each image alone; with
        `colour_weight` (0-1) the shortlist ranked by colour too (0: shape alone, 1: colour decides)."""
        listed, one = images_of(images)
        part = Crop.of(crop)
        embedder = self._embedder("search by image")
        focus = self.class_focus(weight_class, weight_strength)
        params, verifies = self.search_params(nprobe, rescore, expand, expand_alpha), verify and self.verifies
        hits = []
        batch = self._batch(verify, shortlist)
        for lo in range(0, len(listed), batch):  # a batch at a time: memory and verification bounded
            data = crop_images([image_bytes(i, embedder.read) for i in listed[lo:lo + batch]], part, embedder.limits)
            views = query_views(data, self._version.features.settings, embedder.limits) if verifies else None
            colours = ColourRanking.of(query_colours(data, embedder.limits) if colour_weight else [], colour_weight,
                                       shortlist)
            hits += self._placed(search_vectors(self._version, embedder.embed(data, focus), k, params, filters,
                                                verification=Verification.of(views, shortlist), colours=colours))
        return hits[0] if one else hits

    @overload
    def search_ids(self, image_ids: str, k: int = 10, **options: Any) -> list[Hit]: ...
    @overload
    def search_ids(self, image_ids: Sequence[str], k: int = 10, **options: Any) -> list[list[Hit]]: ...

    @accepts_renamed
    def search_ids(self, image_ids, k: int = 10, *, filters: Filters | None = None, nprobe: int | None = None,
                   rescore: int | None = None, expand: int | None = None, expand_alpha: float | None = None,
                   verify: bool = True, shortlist: int | None = None, include_self: bool = False,
                   weight_class: str | int | None = None, weight_strength: float | None = None,
                   colour_weight: float | None = None):
        """The k nearest of catalogue images, by their stored vectors (each image's own hit left out unless
        `include_self`); class-weighted, by their images read again from where the catalogue keeps them."""
        one = isinstance(image_ids, str)
        ids = [image_ids] if one else list(image_ids)
        focus = self.class_focus(weight_class, weight_strength)
        params, verifies = self.search_params(nprobe, rescore, expand, expand_alpha), verify and self.verifies
        hits = []
        batch = self._batch(verify, shortlist)
        for lo in range(0, len(ids), batch):
            chunk = ids[lo:lo + batch]
            if focus is None:
                vectors, faiss_ids = vectors_of_ids(self._version, chunk)
            else:
                vectors, faiss_ids = self._embedder("class-weighted search").embed_catalogue(self._version, chunk,
                                                                                             focus)
            views = stored_views(self._version, faiss_ids) if verifies else None
            colours = ColourRanking.of(stored_colours(self._version, faiss_ids), colour_weight, shortlist)
            hits += self._placed(search_vectors(self._version, vectors, k, params, filters,
                                                None if include_self else faiss_ids,
                                                verification=Verification.of(views, shortlist), colours=colours))
        return hits[0] if one else hits

    def search_examples(self, images: Sequence[ImageLike] = (), image_ids: Sequence[str] = (), *,
                        negative_images: Sequence[ImageLike] = (), negative_ids: Sequence[str] = (),
                        negative_weight: float = NEGATIVE_WEIGHT, k: int = 10, filters: Filters | None = None,
                        nprobe: int | None = None, rescore: int | None = None, expand: int | None = None,
                        expand_alpha: float | None = None, verify: bool = True, shortlist: int | None = None,
                        weight_class: str | int | None = None, weight_strength: float | None = None,
                        crop: str | Sequence[float] | None = None, colour_weight: float | None = None) -> list[Hit]:
        """One search made of examples: images (paths or URIs, bytes, PIL images) and catalogue ids to find more
        of, and others to find fewer of. The query is the first ones' mean direction minus `negative_weight` times
        the others'; the shortlist is verified against every image to find more of; the catalogue examples are
        never hits. `crop` takes the same part of every image given."""
        uploads = [*images, *negative_images]
        embedder = self._embedder("search by example images") if uploads or weight_class is not None else None
        data = []
        if uploads:
            data = crop_images([image_bytes(i, embedder.read) for i in uploads], Crop.of(crop), embedder.limits)
        query = example_query(self._version, embedder, data[:len(images)], list(image_ids), data[len(images):],
                              list(negative_ids), negative_weight, self.class_focus(weight_class, weight_strength),
                              verify and self.verifies, bool(colour_weight))
        params = self.search_params(nprobe, rescore, expand, expand_alpha)
        colours = ColourRanking.of([query.colour], colour_weight, shortlist)
        return self._placed(search_vectors(self._version, query.vector, k, params, filters, query.exclude,
                                           verification=Verification.of(query.views, shortlist),
                                           colours=colours))[0]

    @overload
    def search_vectors(self, vectors: Sequence[float], k: int = 10, **options: Any) -> list[Hit]: ...
    @overload
    def search_vectors(self, vectors: Sequence[Sequence[float]] | np.ndarray, k: int = 10, **options: Any
                       ) -> list[list[Hit]]: ...

    @accepts_renamed
    def search_vectors(self, vectors, k: int = 10, *, filters: Filters | None = None, nprobe: int | None = None,
                       rescore: int | None = None, expand: int | None = None, expand_alpha: float | None = None):
        """The k nearest of raw vectors of the index's dimension (normalised here): one vector, or a matrix."""
        one = np.asarray(vectors).ndim == 1
        params = self.search_params(nprobe, rescore, expand, expand_alpha)
        hits = self._placed(search_vectors(self._version, as_queries(self._version, vectors), k, params, filters))
        return hits[0] if one else hits

    @overload
    def search_text(self, texts: str, k: int = 10, **options: Any) -> list[Hit]: ...
    @overload
    def search_text(self, texts: Sequence[str], k: int = 10, **options: Any) -> list[list[Hit]]: ...

    @accepts_renamed
    def search_text(self, texts, k: int = 10, *, filters: Filters | None = None, nprobe: int | None = None,
                    rescore: int | None = None, expand: int | None = None, expand_alpha: float | None = None):
        """The k images nearest a text ('bird in a circle'; comma-separated phrases average their vectors), for
        an index embedded in a word space (`--space words`)."""
        one = isinstance(texts, str)
        vectors = WordQueries(self._embedder("search by text").model).embed_texts([texts] if one else list(texts))
        hits = search_vectors(self._version, vectors, k, self.search_params(nprobe, rescore, expand, expand_alpha),
                              filters)
        return hits[0] if one else hits

    def embed(self, images: ImageLike | Sequence[ImageLike]) -> np.ndarray:
        """Query images as the index's vectors: (n, dim) float32, unit length (one row for one image)."""
        listed, _ = images_of(images)
        embedder = self._embedder("embed images")
        return embedder.embed([image_bytes(i, embedder.read) for i in listed])

    def explain(self, image_id: str, *, query: ImageLike | None = None, query_id: str | None = None,
                crop: str | Sequence[float] | None = None) -> Explanation:
        """Why catalogue image `image_id` matches a query image (`query`: a path or URI, bytes or a PIL image) or a
        catalogue image (`query_id`): the score's parts, the cosine's percentile among the catalogue's
        nearest-neighbour cosines, and the verified keypoint pairs with their transform (a comparison view draws
        them: `lookalike.retrieval.comparison`); `crop`, a part of the query image alone, as in `search`."""
        if (query is None) == (query_id is None):
            raise ConfigError("explain needs one query: query= (an image) or query_id= (a catalogue image)")
        if query_id is not None and crop is not None:
            raise ConfigError("crop takes a part of a query image: a query_id has its stored vector, not an image")
        calibration = self._served.calibration(self._version)
        if query_id is not None:
            return explain_id(self._version, query_id, image_id, calibration)
        embedder = self._embedder("explain a query image")
        data = crop_images([image_bytes(query, embedder.read)], Crop.of(crop), embedder.limits)[0]
        return explain_image(self._version, embedder, data, image_id, calibration)

    def image_bytes(self, image_id: str) -> bytes:
        """A catalogue image's bytes, read from where the catalogue keeps it (its uri)."""
        uris, _ = uris_of_ids(self._version, [image_id])
        return read_image_bytes(uris[0], self._served.store.options, self._served.settings.max_bytes)

    def vectors_of(self, image_ids: Sequence[str]) -> np.ndarray:
        """The stored vectors of catalogue images, in the order given."""
        return vectors_of_ids(self._version, list(image_ids))[0]

    @accepts_renamed
    def search_params(self, nprobe: int | None = None, rescore: int | None = None, expand: int | None = None,
                      expand_alpha: float | None = None) -> SearchParams:
        """The parameters a search runs with: the version's operating point, with the ones given instead."""
        return params_for(self._version, nprobe, rescore, expand, expand_alpha)

    def class_focus(self, weight_class: str | int | None, strength: float | None = None) -> ClassFocus | None:
        """What `weight_class` (an ImageNet class name or id) resolves to, or None for a plain search; what
        cannot be weighted raises QueryError saying why."""
        if weight_class is None and strength is None:
            return None
        return focus_of(self._embedder("weight a query toward a class").model, weight_class, strength)

    def _placed(self, hits: list[list[Hit]]) -> list[list[Hit]]:
        """Hits of image, id and vector queries with their cosines' percentiles in the catalogue (as the worker's)."""
        calibration = self._served.calibration(self._version)
        return hits if calibration is None else calibration.placed(hits)

    def _batch(self, verify: bool, shortlist: int | None) -> int:
        """Queries searched at a time: a worker's batch, fewer where a long shortlist would exceed what one batch
        may verify (QueryLimits.max_verified), so that any number of queries can be given at once."""
        if not (verify and self.verifies):
            return BATCH
        return max(1, min(BATCH, DEFAULT_LIMITS.max_verified // (shortlist or DEFAULT_SHORTLIST)))

    def _embedder(self, what: str) -> QueryEmbedder:
        embedder = self._served.embedder
        if embedder is None:
            raise ConfigError(f"{self.name}/{self.version} does not name the model of its vectors: cannot {what} "
                              "(open it with model=ModelSpec(...) of the model that made them)")
        return embedder

