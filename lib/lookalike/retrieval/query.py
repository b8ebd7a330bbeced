"""Queries against an opened index version: by vector, by catalogue id or by image bytes; metadata filters;
hits with their ids, uris, cosine scores, ranks and metadata. Shared by the HTTP worker and `lookalike search`."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import faiss
import numpy as np
import pyarrow as pa

from lookalike.core.deadline import checkpoint
from lookalike.core.schemas import COLOUR_COLUMN
from lookalike.image.histogram import as_matrix, similarity
from lookalike.image.local_features import LocalFeatures
from lookalike.index.reader import IndexVersion
from lookalike.index.search import (
    SearchParams,
    cosine,
    expand_queries,
    search,
    search_with,
    use_threads_for,
)
from lookalike.retrieval.filters import allowed_rows
from lookalike.retrieval.hit import Hit
from lookalike.retrieval.limits import DEFAULT_LIMITS, DEFAULT_SHORTLIST, QueryError, QueryLimits
from lookalike.retrieval.vectors import unit_rows
from lookalike.retrieval.verify import VerifySettings, fuse, inlier_counts

# A filter that leaves at most this many vectors is answered by scoring exactly those vectors (fast and
# exact); a broader filter asks the index for a shortlist enlarged by 1 / (the fraction that passes).
EXACT_FILTER_LIMIT = 100_000
SHORTLIST_ROUNDS = 5
HIT_COLUMNS = ("faiss_id", "image_id", "uri", "source_faiss_id", COLOUR_COLUMN)  # source_: in exported shards


@dataclass(frozen=True)
class Verification:
    """Geometric verification of each query's shortlist: the query's views (the query and its mirror; None for
    a query without them, which is then ranked by its cosines alone)."""
    views: list[list[LocalFeatures] | None]
    shortlist: int = DEFAULT_SHORTLIST
    settings: VerifySettings = VerifySettings()

    @classmethod
    def of(cls, views: list[list[LocalFeatures] | None] | None, shortlist: int | None = None) -> Verification | None:
        """Verification of the queries' shortlists where they have views (None: the global ranking alone)."""
        return None if views is None else cls(views, shortlist or DEFAULT_SHORTLIST)


@dataclass(frozen=True)
class ColourRanking:
    """Colour-aware ranking of each query's shortlist: each query's colour histogram (image/colour.py; None: that
    query is ranked by shape alone) and how much colour weighs: each candidate's score becomes (1 - weight) ×
    its score + weight × the colours' similarity, so 0 is the shape ranking and 1 lets colour decide."""
    histograms: list[bytes | None]
    weight: float
    shortlist: int = DEFAULT_SHORTLIST

    @classmethod
    def of(cls, histograms: list[bytes | None], weight: float | None, shortlist: int | None = None
           ) -> ColourRanking | None:
        """The ranking a request asks for: None where colour does not weigh (no weight, or 0). A query without
        colours (a vector query without its `colour`, a catalogue image embedded before colours were kept) is
        ranked by shape alone."""
        return cls(histograms, float(weight), shortlist or DEFAULT_SHORTLIST) if weight else None


def params_for(version: IndexVersion, nprobe: int | None = None, rescore: int | None = None,
               expand: int | None = None, expand_alpha: float | None = None) -> SearchParams:
    """The version's default operating point, with per-request overrides (bounded by QueryLimits.check)."""
    base = version.default_params
    if (nprobe is not None and nprobe < 1) or (rescore is not None and rescore < 0):
        raise QueryError("nprobe must be >= 1 and rescore >= 0")
    if (expand is not None and expand < 0) or (expand_alpha is not None and not expand_alpha >= 0):
        raise QueryError("expand and expand_alpha must be >= 0")
    return SearchParams(nprobe=nprobe or base.nprobe, rescore=base.rescore if rescore is None else rescore,
                        expand=base.expand if expand is None else expand,
                        expand_alpha=base.expand_alpha if expand_alpha is None else expand_alpha)


def as_queries(version: IndexVersion, vectors: Any) -> np.ndarray:
    """Raw vectors from a request → unit float32 rows of the index's dimension."""
    return unit_rows(vectors, version.dim)


def stored_views(version: IndexVersion, faiss_ids: np.ndarray) -> list[list[LocalFeatures] | None]:
    """Catalogue images as queries (-1: none): their stored features as their one view (no mirror view: a
    mirrored copy in the catalogue is found by its own mirror view when it is the query)."""
    return [None if f is None else [f] for f in version.features.of(np.asarray(faiss_ids, dtype=np.int64))]


def stored_colours(version: IndexVersion, faiss_ids: np.ndarray) -> list[bytes | None]:
    """Catalogue images' colour histograms (None where an image has none, or the version keeps none)."""
    if COLOUR_COLUMN not in version.ids.column_names:
        return [None] * len(faiss_ids)
    return version.ids[COLOUR_COLUMN].take(pa.array(version.row_of_faiss[np.asarray(faiss_ids)])).to_pylist()


def search_vectors(version: IndexVersion, queries: np.ndarray, k: int, params: SearchParams | None = None,
                   filters: Mapping[str, Any] | None = None, exclude: np.ndarray | None = None,
                   exact_filter_limit: int = EXACT_FILTER_LIMIT, limits: QueryLimits = DEFAULT_LIMITS,
                   verification: Verification | None = None, colours: ColourRanking | None = None
                   ) -> list[list[Hit]]:
    """Top-k hits per query row. `exclude` holds the faiss ids to leave out of each query's hits: one per query
    (its own image), or a row per query (-1 where a row has fewer). With `verification` and a version that has
    local features, each query's top `shortlist` are verified geometrically and re-ranked by the fused score
    before the top k are taken. With `colours`, each query's shortlist is then ranked with its colours too."""
    params = params or version.default_params
    verify = verification is not None and version.features is not None
    if colours is not None and COLOUR_COLUMN not in version.ids.column_names:
        raise QueryError(f"{version.manifest['name']}/{version.version} has no colour histograms (its images were "
                         "embedded before they were kept): re-embed them (lookalike reindex) to weigh colour")
    limits.check(len(queries), k, params, verification.shortlist if verify else 0)
    if exclude is not None:
        exclude = np.asarray(exclude, dtype=np.int64).reshape(len(queries), -1)
    # Hits asked of the index: one more for each image that drops out (the query's own, or its examples).
    depth = k + (0 if exclude is None else exclude.shape[1])
    if verify:
        depth = max(depth, verification.shortlist)
    if colours is not None:
        depth = max(depth, colours.shortlist)
    if filters:
        mask, plain = allowed_rows(version.ids, filters), replace(params, expand=0)
        if params.expand:  # expanded with the hits that pass the filter, as the unfiltered search does with all
            scores, ids = _filtered(version, queries, max(depth, params.expand), plain, mask, exact_filter_limit)
            queries = expand_queries(queries, scores, ids, version.exact, params.expansion)
        scores, ids = _filtered(version, queries, depth, plain, mask, exact_filter_limit)
    else:
        scores, ids = search(version.index, queries, depth, params, version.exact)
    if exclude is not None:
        dropped = (ids[:, :, None] == exclude[:, None, :]).any(axis=2)
        ids = np.where(dropped, -1, ids)
    cosines, inliers = scores.copy(), None
    if verify:
        scores, cosines, ids, inliers = _verified(version, scores, ids, verification)
    similar = None
    if colours is not None:
        scores, cosines, ids, inliers, similar = _coloured(version, scores, cosines, ids, inliers, colours)
    return _hits(version, scores, ids, k, inliers, cosines, similar)


def _coloured(version: IndexVersion, scores: np.ndarray, cosines: np.ndarray, ids: np.ndarray,
              inliers: np.ndarray | None, colours: ColourRanking
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None, np.ndarray]:
    """Each query's shortlist re-ordered by its score blended with the colours' similarity: (blended scores,
    cosines, ids, inliers, similarities), the similarity NaN where the query has no colours (a catalogue image
    without a histogram counts as no colour in common)."""
    blended, similar = scores.copy(), np.full(ids.shape, np.nan, dtype=np.float32)
    for q, histogram in enumerate(colours.histograms):
        if histogram is None:
            continue
        found = ids[q] >= 0
        stored = version.ids[COLOUR_COLUMN].take(pa.array(version.row_of_faiss[ids[q][found]])).to_pylist()
        matrix, present = as_matrix(stored)
        row = np.zeros(len(ids[q]), dtype=np.float32)
        row[found] = np.where(present, similarity(histogram, matrix), 0.0)
        ranked = np.full(len(ids[q]), -np.inf, dtype=np.float32)  # an empty slot (id -1) has no score to blend
        ranked[found] = (1 - colours.weight) * scores[q][found] + colours.weight * row[found]
        order = np.argsort(-ranked, kind="stable")
        blended[q], cosines[q], ids[q], similar[q] = ranked[order], cosines[q][order], ids[q][order], row[order]
        if inliers is not None:
            inliers[q] = inliers[q][order]
    return blended, cosines, ids, inliers, similar


def _verified(version: IndexVersion, scores: np.ndarray, ids: np.ndarray, verification: Verification
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Each verified query's shortlist re-ordered by the fused score: (fused scores, cosines, ids, inliers), the
    inliers -1 for a query without views (its fused scores are its cosines)."""
    fused, inliers = scores.copy(), np.full(ids.shape, -1, dtype=np.int32)
    for q, views in enumerate(verification.views):
        if not views:
            continue
        checkpoint()
        counts = inlier_counts(views, version.features.of(ids[q]), verification.settings)
        ranked = np.where(ids[q] >= 0, fuse(scores[q], counts, verification.settings), -np.inf)
        order = np.argsort(-ranked, kind="stable")
        fused[q], scores[q], ids[q], inliers[q] = ranked[order], scores[q][order], ids[q][order], counts[order]
    return fused, scores, ids, inliers


def _filtered(version: IndexVersion, queries: np.ndarray, k: int, params: SearchParams, mask: np.ndarray,
              exact_filter_limit: int) -> tuple[np.ndarray, np.ndarray]:
    allowed = version.ids["faiss_id"].to_numpy()[mask]
    if len(allowed) == 0:
        return np.zeros((len(queries), k), np.float32), np.full((len(queries), k), -1, np.int64)
    if len(allowed) <= exact_filter_limit:
        use_threads_for(len(queries))
        selector = faiss.IDSelectorBatch(np.ascontiguousarray(allowed, dtype=np.int64))
        distances, ids = search_with(version.exact, queries, k, faiss.SearchParameters(sel=selector))
        return cosine(np.where(ids >= 0, distances, 4.0)), ids
    passes = np.zeros(len(version.row_of_faiss), dtype=bool)
    passes[allowed] = True
    fraction = len(allowed) / len(mask)
    shortlist = min(version.index.ntotal, math.ceil(2 * k / fraction))
    # The k-th passing neighbour is about the (k / fraction)-th neighbour overall, further out than the operating
    # point was tuned for: probe more lists too, 1/√fraction of them, which keeps recall where probing the same lists
    # loses it (tests/test_query.py checks the filtered search's recall against exact search).
    nprobe = math.ceil(params.nprobe / math.sqrt(fraction))
    # Keep the operating point's shortlist-to-k proportion for the enlarged k.
    ratio = max(1.0, params.rescore / k) if params.rescore else 0.0
    for _ in range(SHORTLIST_ROUNDS):
        scores, ids = search(version.index, queries, shortlist,
                             SearchParams(nprobe, math.ceil(shortlist * ratio)),
                             version.exact)
        keep = (ids >= 0) & passes[np.maximum(ids, 0)]
        if keep.sum(axis=1).min() >= k or shortlist >= version.index.ntotal:
            break
        shortlist, nprobe = min(version.index.ntotal, shortlist * 4), nprobe * 2  # too few passed: widen
    order = np.argsort(~keep, axis=1, kind="stable")[:, :k]  # passing hits first, rank order kept
    scores = np.take_along_axis(scores, order, axis=1)
    ids = np.where(np.take_along_axis(keep, order, axis=1), np.take_along_axis(ids, order, axis=1), -1)
    return scores, ids


def _hits(version: IndexVersion, scores: np.ndarray, ids: np.ndarray, k: int, inliers: np.ndarray | None = None,
          cosines: np.ndarray | None = None, similar: np.ndarray | None = None) -> list[list[Hit]]:
    found = ids >= 0
    rows = version.row_of_faiss[ids[found]]
    records = version.ids.take(pa.array(rows)).to_pylist()
    out, position = [], 0
    for q in range(len(ids)):
        hits: list[Hit] = []
        for j, (score, ok) in enumerate(zip(scores[q], found[q], strict=True)):
            if not ok:
                continue
            record = records[position]
            position += 1
            if len(hits) < k:
                metadata = {c: v for c, v in record.items() if c not in HIT_COLUMNS}
                verified = None if inliers is None or inliers[q, j] < 0 else int(inliers[q, j])
                cosine = None if cosines is None else float(cosines[q, j])
                colour = None if similar is None or np.isnan(similar[q, j]) else round(float(similar[q, j]), 4)
                hits.append(Hit(record["image_id"], record["uri"], float(score), len(hits) + 1, metadata, verified,
                                cosine, colour=colour))
        out.append(hits)
    return out
