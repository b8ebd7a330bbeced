"""Searching a Faiss index: nprobe per call (never set on the shared index), a shortlist re-scored exactly from
stored vectors, α-weighted query expansion, cosine scores."""

from __future__ import annotations

import io
from dataclasses import dataclass, replace

import faiss
import numpy as np

from lookalike.core.cpus import available_cpus
from lookalike.index.rerank import Expansion, expand

# Batches below this size search on the calling thread alone (see use_threads_for).
SMALL_BATCH = 16
_ALL_THREADS = available_cpus()  # OpenMP's own default is the node's CPU count, not the pod's


def use_threads_for(n_queries: int) -> None:
    """OpenMP threads for the calling thread's next searches (libgomp keeps the setting per thread). A few
    queries run on this thread alone: when many serving threads each start a team of OpenMP threads on the
    same cores, they fight over them and concurrent clients get a fraction of the throughput (bench/query.py).
    A batch uses every core."""
    faiss.omp_set_num_threads(1 if n_queries < SMALL_BATCH else _ALL_THREADS)


@dataclass(frozen=True)
class SearchParams:
    nprobe: int = 1
    rescore: int = 0  # shortlist size re-scored exactly; 0 trusts the index's own (compressed) distances
    expand: int = 0  # αQE: the query plus its top `expand` hits, weighted cos^expand_alpha, searched again
    expand_alpha: float = 3.0

    @property
    def expansion(self) -> Expansion:
        return Expansion(self.expand, self.expand_alpha)

    def as_dict(self) -> dict[str, int | float]:
        return {"nprobe": self.nprobe, "rescore": self.rescore, "expand": self.expand,
                "expand_alpha": self.expand_alpha}


def serialize(index: faiss.Index) -> bytes:
    return faiss.serialize_index(index).tobytes()


def deserialize(data: bytes) -> faiss.Index:
    return faiss.deserialize_index(np.frombuffer(data, dtype=np.uint8))


def vectors_to_bytes(vectors: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, vectors.astype(np.float16), allow_pickle=False)
    return buf.getvalue()


def search_parameters(index: faiss.Index, params: SearchParams) -> faiss.SearchParameters | None:
    """The per-call faiss parameters of `params` for this index's structure. Nothing is set on the index itself:
    query workers search one shared index from many threads, and a setting on it (nprobe, the HNSW quantizer's
    efSearch) would leak from one request into another's. The parameter objects are only read by a search, so
    each index keeps the ones it was asked for (building them took a third of a one-query search)."""
    return _cached(index, params.nprobe, lambda: _parameters_for(index, params.nprobe))


def _refine_parameters(index: faiss.Index, params: SearchParams, k: int) -> faiss.IndexRefineSearchParameters:
    k_factor = params.rescore / k
    return _cached(index, ("refine", params.nprobe, k_factor), lambda: faiss.IndexRefineSearchParameters(
        k_factor=k_factor, base_index_params=search_parameters(index, params)))


def _cached(index: faiss.Index, key, build):
    cache = index.__dict__.setdefault("_lookalike_search_parameters", {})
    found = cache.get(key, _MISSING)
    if found is _MISSING:
        if len(cache) >= PARAMETER_CACHE:  # bounded, whatever values requests bring
            cache.clear()
        found = cache[key] = build()
    return found


_MISSING = object()
PARAMETER_CACHE = 1024


def ranks_by_hamming(index: faiss.Index) -> bool:
    """Whether the index compares binary codes (its distances count differing bits, not squared L2): such a
    shortlist is always re-scored from the stored vectors."""
    return _cached(index, "hamming", lambda: _hamming(index))


def _hamming(index: faiss.Index) -> bool:
    index = faiss.downcast_index(index)
    if isinstance(index, faiss.IndexPreTransform):
        return _hamming(index.index)
    return isinstance(index, (faiss.IndexIVFSpectralHash, faiss.IndexLSH))


def _parameters_for(index: faiss.Index, nprobe: int) -> faiss.SearchParameters | None:
    index = faiss.downcast_index(index)
    if isinstance(index, faiss.IndexPreTransform):  # OPQ: the IVF sits behind the rotation
        inner = _parameters_for(index.index, nprobe)
        return None if inner is None else faiss.SearchParametersPreTransform(index_params=inner)
    if not isinstance(index, faiss.IndexIVF):
        return None  # a flat index has nothing to probe
    quantizer = faiss.downcast_index(index.quantizer)
    nprobe = min(nprobe, index.nlist)
    if isinstance(quantizer, faiss.IndexHNSW):
        # An HNSW coarse quantizer must return at least nprobe centroids worth having.
        hnsw = faiss.SearchParametersHNSW(efSearch=max(quantizer.hnsw.efSearch, 2 * nprobe))
        return faiss.SearchParametersIVF(nprobe=nprobe, quantizer_params=hnsw)
    return faiss.SearchParametersIVF(nprobe=nprobe)


def search_with(index: faiss.Index, queries: np.ndarray, k: int, params: faiss.SearchParameters | None
                ) -> tuple[np.ndarray, np.ndarray]:
    """index.search with per-call parameters, through the SWIG call itself: faiss.contrib.torch_utils (imported
    by pytorch-metric-learning, for one) replaces Index.search with a version that takes no params."""
    x = np.ascontiguousarray(queries, dtype=np.float32)
    distances = np.empty((len(x), k), dtype=np.float32)
    ids = np.empty((len(x), k), dtype=np.int64)
    index.search_c(len(x), faiss.swig_ptr(x), k, faiss.swig_ptr(distances), faiss.swig_ptr(ids), params)
    return distances, ids


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


def write_exact_scorer(vectors: np.ndarray, path: str, chunk_rows: int = 65_536) -> faiss.Index:
    """exact_scorer(vectors) written straight to a file a chunk at a time, then mapped: the scorer never sits in
    anonymous memory (10M × 512 would be 10 GB), so a driver or worker holds it in the page cache only.

    An fp16 scalar-quantizer index is faiss's header (ntotal at byte 8), the quantizer, then its codes as one
    length-prefixed byte vector, and fp16 codes are the float16 rows themselves: the file is the empty index's
    bytes with ntotal and that length set, then the rows. The result is checked against the rows it was made of.
    """
    n, d = vectors.shape
    empty = faiss.serialize_index(faiss.IndexScalarQuantizer(d, faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_L2))
    head = bytearray(empty.tobytes())
    if head[:4] != b"IxSQ" or head[-8:] != bytes(8):
        raise RuntimeError("this faiss writes scalar-quantizer indexes in a layout lookalike does not know")
    head[8:16] = np.int64(n).tobytes()
    head[-8:] = np.uint64(n * d * 2).tobytes()
    with open(path, "wb") as f:
        f.write(head)
        for start in range(0, n, chunk_rows):
            f.write(np.ascontiguousarray(vectors[start:start + chunk_rows], dtype=np.float16).tobytes())
    scorer = faiss.read_index(path, faiss.IO_FLAG_MMAP_IFC)
    probe = np.unique(np.array([0, n // 2, n - 1])) if n else np.zeros(0, np.int64)
    if scorer.ntotal != n or (n and not np.array_equal(scorer.reconstruct_batch(probe).astype(np.float16),
                                                       np.asarray(vectors[probe], dtype=np.float16))):
        raise RuntimeError(f"{path}: the written scorer does not read back as the vectors it was made of")
    return scorer


def search(index: faiss.Index, queries: np.ndarray, k: int, params: SearchParams,
           exact: faiss.Index | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Top-k (cosine scores, faiss ids) per query; -1 ids pad rows with fewer than k hits. With `exact` and
    params.rescore > k, the index proposes rescore candidates and `exact` re-scores them. With params.expand, a
    first search finds the hits each query is expanded with (their vectors from `exact`, else the index), and
    the expanded queries are searched with the same parameters."""
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    use_threads_for(len(queries))
    if params.expand > 0:
        scores, ids = _search_once(index, queries, max(k, params.expand), params, exact)
        queries = expand_queries(queries, scores, ids, exact if exact is not None else index, params.expansion)
    return _search_once(index, queries, k, params, exact)


def expand_queries(queries: np.ndarray, scores: np.ndarray, ids: np.ndarray, vectors_from: faiss.Index,
                   expansion: Expansion) -> np.ndarray:
    """αQE from a first search's hits (cosines, faiss ids; -1 pads), their vectors taken from `vectors_from`."""
    n = expansion.n
    neighbours = stored_vectors(vectors_from, ids[:, :n])
    return expand(queries, neighbours, np.where(ids[:, :n] >= 0, scores[:, :n], -np.inf), expansion)


def stored_vectors(index: faiss.Index, ids: np.ndarray) -> np.ndarray:
    """The vectors an index holds for these ids (any shape; -1 gives zeros), as float32 of shape ids.shape + (d,)."""
    flat = ids.ravel()
    out = np.zeros((len(flat), index.d), dtype=np.float32)
    found = flat >= 0
    if found.any():
        out[found] = index.reconstruct_batch(np.ascontiguousarray(flat[found], dtype=np.int64))
    return out.reshape(*ids.shape, index.d)


def _search_once(index: faiss.Index, queries: np.ndarray, k: int, params: SearchParams,
                 exact: faiss.Index | None) -> tuple[np.ndarray, np.ndarray]:
    if ranks_by_hamming(index):
        if exact is None:
            raise ValueError("a binary-code index ranks by Hamming distance: search it with the stored vectors "
                             "(exact) that re-score its shortlist")
        params = replace(params, rescore=max(params.rescore, k))
    elif exact is None or params.rescore <= k:
        distances, ids = search_with(index, queries, k, search_parameters(index, params))
        return cosine(distances), ids
    # IndexRefine insists on equal sizes when built; the scorer may hold more rows (ids freed by incremental
    # updates stay as zero rows), so it is built over the index itself and then pointed at the scorer. It is
    # built per call, and k_factor travels in the call's parameters.
    refine = faiss.IndexRefine(index, index)
    refine.refine_index = exact
    refine.ntotal = exact.ntotal  # labels are checked against this: the scorer's rows, not the live count
    distances, ids = search_with(refine, queries, k, _refine_parameters(index, params, k))
    return cosine(np.where(ids >= 0, distances, 4.0)), ids
