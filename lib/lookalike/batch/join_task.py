"""One similarity-join task: its part of the query embeddings → top-k neighbours from the base (a published
index, or an embeddings version searched exactly) → one Parquet shard and a commit marker."""

from __future__ import annotations

import functools
import json
import os
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from lookalike.core.layout import JoinLayout, features_part_of
from lookalike.core.schemas import row_columns
from lookalike.core.scratch import scratch_root
from lookalike.core.store import Store
from lookalike.embed.versions import open_version as open_embeddings
from lookalike.embed.versions import read_vectors
from lookalike.index.augment import exact_index
from lookalike.index.features import read_features_part
from lookalike.index.reader import load_index_version
from lookalike.index.search import SearchParams, search
from lookalike.retrieval.verify import fuse, inlier_counts

PAIR_COLUMNS = ("query_id", "rank", "neighbor_id", "score")


@dataclass
class Base:
    """What queries are searched against: faiss ids → image ids, and a search function."""

    image_ids: pa.Array
    metadata: pa.Table | None  # rows aligned with image_ids
    search: Any                # (queries, k) -> (cosine scores, rows of image_ids; -1 = none)
    features: Any = None       # rows -> their LocalFeatures (None: the base has none)


@functools.lru_cache(maxsize=2)
def open_base(store_url: str, options_json: str, kind: str, name: str, version: str) -> Base:
    """Loaded once per executor process (Spark reuses Python workers): the index version through the local
    cache, or an embeddings version's vectors as an exact inner-product index."""
    store = Store(store_url, json.loads(options_json))
    if kind == "index":
        cache = os.path.join(scratch_root(), "lookalike-index-cache")
        v = load_index_version(store, name, version, cache_dir=cache)
        rows = v.row_of_faiss

        def search_index(queries: np.ndarray, k: int, params: SearchParams):
            scores, ids = search(v.index, queries, k, params, v.exact)
            return scores, np.where(ids >= 0, rows[np.maximum(ids, 0)], -1)
        meta = v.ids.drop_columns(["faiss_id", "image_id"])
        faiss_of_row = v.ids["faiss_id"].to_numpy()
        features = None if v.features is None else (
            lambda rows: v.features.of(np.where(rows >= 0, faiss_of_row[np.maximum(rows, 0)], -1)))
        return Base(v.ids["image_id"], meta, search_index, features)
    source = open_embeddings(store, name, version)
    tables = [source.read_part(p, row_columns(store.read_parquet_schema(p).names))
              for p in source.parts]
    table = pa.concat_tables(tables).combine_chunks()
    flat = exact_index(store_url, options_json, name, version)

    def search_exact(queries: np.ndarray, k: int, params: SearchParams):
        return search(flat, queries, k, params)
    return Base(table["image_id"], table.drop_columns(["image_id"]), search_exact)


@dataclass(frozen=True)
class JoinTask:
    """Shipped to executors by value: a few hundred bytes; the base and the queries are read inside."""

    store_url: str
    options_json: str
    run_id: str
    query_fingerprint: str | None  # None: the parts are text queries written by the join (batch/text_queries.py)
    query_run: str | None
    query_namespace: str | None    # where the query version lives (a join embeds query images under its run)
    query_parts: tuple[str, ...]
    base_kind: str             # "index" or "embeddings"
    base_name: str             # index name, or the base embeddings' fingerprint id
    base_version: str
    k: int
    params: SearchParams
    threshold: float | None
    self_join: bool
    with_metadata: bool
    batch_size: int = 4096
    shortlist: int | None = None  # verify each query's top `shortlist` geometrically (None: off)

    def __call__(self, task: int) -> dict[str, Any]:
        store = Store(self.store_url, json.loads(self.options_json))
        layout = JoinLayout(store, self.run_id)
        if store.exists(layout.marker(task)):
            return store.read_json(layout.marker(task))
        started = time.perf_counter()
        base = open_base(self.store_url, self.options_json, self.base_kind, self.base_name, self.base_version)
        queries = None if self.query_fingerprint is None else open_embeddings(store, self.query_fingerprint,
                                                                               self.query_run, self.query_namespace)
        key = self.query_parts[task]
        columns = row_columns(store.read_parquet_schema(key).names) if self.with_metadata else ["image_id"]
        query_table = store.read_parquet(key, columns) if queries is None else queries.read_part(key, columns)
        vectors = read_vectors(store, key)
        load_s = time.perf_counter() - started

        t0 = time.perf_counter()
        extra = 1 if self.self_join else 0
        views = self._query_views(store, queries, key, base)
        depth = self.k + extra if views is None else max(self.k + extra, self.shortlist)
        pieces = []
        for lo in range(0, len(vectors), self.batch_size):
            scores, rows = base.search(vectors[lo:lo + self.batch_size], depth, self.params)
            verified = None
            if views is not None:
                scores, rows, verified = _verified(scores, rows, views[lo:lo + len(rows)], base)
            pieces.append(self._pairs(query_table["image_id"].slice(lo, len(rows)), base, scores, rows, verified))
        search_s = time.perf_counter() - t0
        pairs = pa.concat_tables(pieces) if pieces else _empty_pairs(self.shortlist is not None)
        if self.with_metadata:
            pairs = _with_metadata(pairs, query_table, base)
        nbytes = store.write_parquet(layout.part(task), pairs)
        marker = {"task": task, "queries": len(vectors), "pairs": pairs.num_rows,
                  "part": {"key": layout.part(task), "rows": pairs.num_rows, "bytes": nbytes},
                  "timings": {"load_s": round(load_s, 3), "search_s": round(search_s, 3),
                              "task_s": round(time.perf_counter() - started, 3)}}
        store.write_json(layout.marker(task), marker)  # the commit of this task
        return marker

    def _query_views(self, store: Store, queries, key: str, base: Base) -> list | None:
        """The queries' stored local features, where both sides have the same kind: each query's shortlist is
        then verified as the query worker verifies a catalogue image's."""
        settings = None if queries is None else queries.local_features
        if not self.shortlist or base.features is None or settings is None:
            return None
        return [[f] for f in read_features_part(store, features_part_of(key), settings)]

    def _pairs(self, query_ids: pa.Array, base: Base, scores: np.ndarray, rows: np.ndarray,
               verified: tuple[np.ndarray, np.ndarray] | None = None) -> pa.Table:
        """scores: what ranks (with `verified`, the fused scores; then verified holds their cosines and inliers)."""
        valid = rows >= 0
        if self.self_join:
            # The image itself is not its own near-duplicate; compared by id, not by position, so exact
            # duplicates of it under other ids stay.
            neighbor = base.image_ids.take(pa.array(np.maximum(rows, 0).ravel())).to_numpy(zero_copy_only=False)
            query = np.repeat(query_ids.to_numpy(zero_copy_only=False), rows.shape[1])
            valid &= (neighbor != query).reshape(rows.shape)
        order = np.argsort(~valid, axis=1, kind="stable")[:, :self.k]  # kept hits first, in rank order
        keep = np.take_along_axis(valid, order, axis=1)
        scores = np.take_along_axis(scores, order, axis=1)
        rows = np.take_along_axis(rows, order, axis=1)
        cosines = scores if verified is None else np.take_along_axis(verified[0], order, axis=1)
        ranks = np.broadcast_to(np.arange(1, self.k + 1, dtype=np.int32), keep.shape)
        if self.threshold is not None:  # a threshold is on the cosine, verified or not
            keep &= cosines >= self.threshold
        q_index = np.broadcast_to(np.arange(len(rows))[:, None], keep.shape)[keep]
        columns = {
            "query_id": query_ids.take(pa.array(q_index)),
            "rank": pa.array(ranks[keep], pa.int32()),
            "neighbor_id": base.image_ids.take(pa.array(rows[keep])),
            "score": pa.array(scores[keep].astype(np.float32)),
        }
        if self.shortlist is not None:
            inliers = np.full(rows.shape, -1, np.int32) if verified is None else \
                np.take_along_axis(verified[1], order, axis=1)
            columns["cosine"] = pa.array(cosines[keep].astype(np.float32))
            columns["inliers"] = pa.array(inliers[keep], pa.int32(), mask=inliers[keep] < 0)
        return pa.table(columns)


def _verified(scores: np.ndarray, rows: np.ndarray, views: list, base: Base
              ) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray]]:
    """Each query's candidates re-ordered by the fused score (cosine + the inlier bonus): (fused scores, rows,
    (cosines, inliers)) in that order."""
    fused, cosines, rows = scores.copy(), scores.copy(), rows.copy()
    inliers = np.zeros(rows.shape, np.int32)
    for q, query_views in enumerate(views):
        counts = inlier_counts(query_views, base.features(rows[q]))
        ranked = np.where(rows[q] >= 0, fuse(scores[q], counts), -np.inf)
        order = np.argsort(-ranked, kind="stable")
        fused[q], cosines[q], rows[q], inliers[q] = ranked[order], scores[q][order], rows[q][order], counts[order]
    return fused, rows, (cosines, inliers)


def _empty_pairs(verified: bool) -> pa.Table:
    columns = {"query_id": pa.array([], pa.string()), "rank": pa.array([], pa.int32()),
               "neighbor_id": pa.array([], pa.string()), "score": pa.array([], pa.float32())}
    if verified:
        columns |= {"cosine": pa.array([], pa.float32()), "inliers": pa.array([], pa.int32())}
    return pa.table(columns)


def _with_metadata(pairs: pa.Table, queries: pa.Table, base: Base) -> pa.Table:
    """Both sides' columns, prefixed query_ and neighbor_ (uri, content hash, size and the images table's)."""
    q_rows = pc.index_in(pairs["query_id"], value_set=queries["image_id"])
    for name in queries.column_names:
        if name != "image_id":
            pairs = pairs.append_column(f"query_{name}", queries[name].take(q_rows))
    if base.metadata is not None:
        n_rows = pc.index_in(pairs["neighbor_id"], value_set=base.image_ids)
        for name in base.metadata.column_names:
            pairs = pairs.append_column(f"neighbor_{name}", base.metadata[name].take(n_rows))
    return pairs
