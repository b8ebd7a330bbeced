"""Searching a Faiss index: nprobe, a shortlist re-scored exactly from stored vectors, cosine scores."""

from __future__ import annotations

import io
from dataclasses import dataclass

import faiss
import numpy as np

# Batches below this size search on the calling thread alone (see use_threads_for).
SMALL_BATCH = 16
_ALL_THREADS = faiss.omp_get_max_threads()


def use_threads_for(n_queries: int) -> None:
    """OpenMP threads for the calling thread's next searches (libgomp keeps the setting per thread). A few
    queries run on this thread alone: when many serving threads each started a team of OpenMP threads on the
    same cores, 16 concurrent clients got 433 QPS instead of 2,700 (bench/query.py, 2 cores). A batch uses
    every core."""
    faiss.omp_set_num_threads(1 if n_queries < SMALL_BATCH else _ALL_THREADS)


@dataclass(frozen=True)
class SearchParams:
    nprobe: int = 1
    rerank: int = 0  # shortlist size re-scored exactly; 0 trusts the index's own (compressed) distances

    def as_dict(self) -> dict[str, int]:
        return {"nprobe": self.nprobe, "rerank": self.rerank}


def serialize(index: faiss.Index) -> bytes:
    return faiss.serialize_index(index).tobytes()


def deserialize(data: bytes) -> faiss.Index:
    return faiss.deserialize_index(np.frombuffer(data, dtype=np.uint8))


def vectors_to_bytes(vectors: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, vectors.astype(np.float16), allow_pickle=False)
    return buf.getvalue()


def set_nprobe(index: faiss.Index, nprobe: int) -> None:
    try:
        ivf = faiss.extract_index_ivf(index)
    except RuntimeError:
        return  # a flat index has nothing to probe
    ivf.nprobe = min(nprobe, ivf.nlist)
    quantizer = faiss.downcast_index(ivf.quantizer)
    if isinstance(quantizer, faiss.IndexHNSWFlat):
        # An HNSW coarse quantizer must return at least nprobe centroids worth having.
        quantizer.hnsw.efSearch = max(quantizer.hnsw.efSearch, 2 * nprobe)


def cosine(l2_squared: np.ndarray) -> np.ndarray:
    """For unit vectors ‖a−b‖² = 2 − 2·cos: report the cosine, which people read more easily."""
    return 1.0 - l2_squared / 2.0


def exact_scorer(vectors: np.ndarray) -> faiss.Index:
    """The stored float16 vectors (row = faiss id) as a faiss fp16 scalar-quantizer index: the same bytes,
    so re-scoring a shortlist runs in C++ on every core instead of gathering rows in numpy."""
    scorer = faiss.IndexScalarQuantizer(vectors.shape[1], faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_L2)
    for start in range(0, len(vectors), 65_536):
        scorer.add(np.ascontiguousarray(vectors[start:start + 65_536], dtype=np.float32))
    return scorer


def search(index: faiss.Index, queries: np.ndarray, k: int, params: SearchParams,
           exact: faiss.Index | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Top-k (cosine scores, faiss ids) per query; -1 ids pad rows with fewer than k hits. With `exact` and
    params.rerank > k, the index proposes rerank candidates and `exact` re-scores them."""
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    use_threads_for(len(queries))
    set_nprobe(index, params.nprobe)
    if exact is None or params.rerank <= k:
        distances, ids = index.search(queries, k)
        return cosine(distances), ids
    # IndexRefine insists on equal sizes when built; the scorer may hold more rows (ids freed by incremental
    # updates stay as zero rows), so it is built over the index itself and then pointed at the scorer.
    refine = faiss.IndexRefine(index, index)
    refine.refine_index = exact
    refine.ntotal = exact.ntotal  # labels are checked against this: the scorer's rows, not the live count
    refine.k_factor = params.rerank / k
    distances, ids = refine.search(queries, k)
    return cosine(np.where(ids >= 0, distances, 4.0)), ids
