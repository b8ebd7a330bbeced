"""Searching a Faiss index: nprobe, a shortlist re-scored exactly from stored vectors, cosine scores."""

from __future__ import annotations

import io
from dataclasses import dataclass

import faiss
import numpy as np


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


def search(index: faiss.Index, queries: np.ndarray, k: int, params: SearchParams,
           vectors: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Top-k (scores, faiss ids) per query; -1 ids pad rows with fewer than k hits."""
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    set_nprobe(index, params.nprobe)
    shortlist = max(k, params.rerank) if vectors is not None else k
    distances, ids = index.search(queries, shortlist)
    if vectors is None or params.rerank <= 0:
        return cosine(distances[:, :k]), ids[:, :k]
    return rescore(queries, ids, vectors, k)


def rescore(queries: np.ndarray, candidates: np.ndarray, vectors: np.ndarray, k: int):
    """Exact L2 between each query and its candidates (vectors row = faiss id), best k kept."""
    valid = candidates >= 0
    safe = np.where(valid, candidates, 0)
    cand = vectors[safe.reshape(-1)].astype(np.float32).reshape(*safe.shape, -1)
    d2 = ((cand - queries[:, None, :]) ** 2).sum(-1)
    d2 = np.where(valid, d2, np.inf)
    order = np.argsort(d2, axis=1, kind="stable")[:, :k]
    best = np.take_along_axis(d2, order, axis=1)
    ids = np.where(np.isfinite(best), np.take_along_axis(candidates, order, axis=1), -1)
    return cosine(np.where(np.isfinite(best), best, 4.0)), ids
