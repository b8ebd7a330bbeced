"""The tasks of build_index. Each reads its inputs from the store and writes its outputs there, so Spark only
schedules them: nothing heavy is pickled from the driver."""

from __future__ import annotations

import io
import os
import time
from dataclasses import dataclass
from typing import Any

import faiss
import numpy as np

from lookalike.core.cpus import available_cpus
from lookalike.core.layout import IndexLayout
from lookalike.core.spark import task_resources
from lookalike.core.store import Store
from lookalike.embed.versions import read_vectors
from lookalike.index.search import deserialize, serialize


def save_npy(store: Store, key: str, array: np.ndarray) -> None:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    store.write_bytes(key, buf.getvalue())


def load_npy(store: Store, key: str) -> np.ndarray:
    return np.load(io.BytesIO(store.read_bytes(key)), allow_pickle=False)


def _use_task_cpus() -> None:
    cpus, _ = task_resources()
    faiss.omp_set_num_threads(cpus)


@dataclass(frozen=True)
class ScanTask:
    """Check one embeddings part (NaN, zero vectors, dimension), draw its share of the training sample and
    hand back its held-out query vectors. Sampling is seeded per part, never 'the first rows'."""

    store: Store
    parts: tuple[str, ...]
    offsets: tuple[int, ...]     # global row of each part's first row
    train_fraction: float
    query_rows: tuple[int, ...]  # global rows held out as queries (never in the training sample)
    layout: IndexLayout
    seed: int

    def __call__(self, i: int) -> dict[str, Any]:
        x = read_vectors(self.store, self.parts[i])
        n = len(x)
        lo = self.offsets[i]
        finite = np.isfinite(x).all(axis=1)
        norms = np.linalg.norm(np.where(finite[:, None], x, 0), axis=1)
        queries = np.array([r - lo for r in self.query_rows if lo <= r < lo + n], dtype=np.int64)
        rng = np.random.default_rng([self.seed, i])
        take = rng.random(n) < self.train_fraction
        take[queries] = False
        take &= finite & (norms > 0)
        save_npy(self.store, self.layout.sample(i), x[take])
        return {"part": i, "rows": n, "dim": x.shape[1] if x.ndim == 2 else 0,
                "non_finite": int((~finite).sum()), "zero": int((finite & (norms == 0)).sum()),
                "max_norm_error": float(np.abs(norms[finite] - 1).max()) if finite.any() else 0.0,
                "sampled": int(take.sum()), "query_rows": (queries + lo).tolist(), "queries": x[queries]}


@dataclass(frozen=True)
class TrainTask:
    """Train the empty index on the pooled random sample (one task) and write it to the store."""

    store: Store
    factory: str
    dim: int
    n_parts: int
    train_size: int
    layout: IndexLayout
    seed: int

    def __call__(self, _: int) -> dict[str, Any]:
        # The only task of its stage: it may use every core of its executor, not just spark.task.cpus.
        faiss.omp_set_num_threads(available_cpus())
        started = time.perf_counter()
        sample = np.concatenate([load_npy(self.store, self.layout.sample(i))
                                 for i in range(self.n_parts)])
        rng = np.random.default_rng(self.seed)
        if len(sample) > self.train_size:
            sample = sample[rng.choice(len(sample), self.train_size, replace=False)]
        index = faiss.index_factory(self.dim, self.factory, faiss.METRIC_L2)
        _seed_clustering(index, self.seed)
        index.train(np.ascontiguousarray(sample, dtype=np.float32))
        data = serialize(index)
        self.store.write_bytes(self.layout.trained, data)
        return {"train_s": round(time.perf_counter() - started, 3), "train_vectors": len(sample),
                "trained_bytes": len(data), **training_fit(index, sample)}


def _seed_clustering(index: faiss.Index, seed: int) -> None:
    """Seed k-means, and skip polysemous training: it only serves Hamming-filtered search, which we never
    use, and it took 13 of 14 s when training IVF64,PQ16 on 4,096 vectors here."""
    try:
        ivf = faiss.downcast_index(faiss.extract_index_ivf(index))
    except RuntimeError:
        return
    ivf.cp.seed = seed
    if hasattr(ivf, "pq"):
        ivf.pq.cp.seed = seed
    if hasattr(ivf, "do_polysemous_training"):
        ivf.do_polysemous_training = False


def training_fit(index: faiss.Index, sample: np.ndarray) -> dict[str, float]:
    """How well the coarse quantizer fits vectors: mean squared distance to the nearest centroid and the
    imbalance of the list sizes (1.0 = perfectly even). Recorded at training, compared on new data."""
    try:
        ivf = faiss.extract_index_ivf(index)
    except RuntimeError:
        return {}
    x = np.ascontiguousarray(sample[: 20_000], dtype=np.float32)
    pre = faiss.downcast_index(index)
    if isinstance(pre, faiss.IndexPreTransform):  # OPQ rotates before the coarse quantizer sees the vector
        for i in range(pre.chain.size()):
            x = pre.chain.at(i).apply(x)
    distances, lists = ivf.quantizer.search(x, 1)
    counts = np.bincount(lists[:, 0], minlength=ivf.nlist).astype(np.float64)
    imbalance = float(ivf.nlist * (counts ** 2).sum() / counts.sum() ** 2)
    return {"coarse_error": float(distances.mean()), "imbalance": imbalance}


@dataclass(frozen=True)
class AddTask:
    """Add one embeddings part to a copy of the trained index under dense ids; write the partial index."""

    store: Store
    parts: tuple[str, ...]
    offsets: tuple[int, ...]
    layout: IndexLayout

    def __call__(self, i: int) -> dict[str, Any]:
        _use_task_cpus()
        started = time.perf_counter()
        index = deserialize(self.store.read_bytes(self.layout.trained))
        x = read_vectors(self.store, self.parts[i])
        ids = np.arange(self.offsets[i], self.offsets[i] + len(x), dtype=np.int64)
        if isinstance(faiss.downcast_index(index), faiss.IndexFlat):
            index.add(x)  # flat ids are positions; parts are merged in order, so positions = global rows
        else:
            index.add_with_ids(x, ids)
        self.store.write_bytes(self.layout.partial(i), serialize(index))
        return {"part": i, "added": len(x), "add_s": round(time.perf_counter() - started, 3), "pid": os.getpid()}


@dataclass(frozen=True)
class GroundTruthTask:
    """Exact top-k of every held-out query within one part (brute force); the driver merges the parts."""

    store: Store
    parts: tuple[str, ...]
    offsets: tuple[int, ...]
    layout: IndexLayout
    k: int

    def __call__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        _use_task_cpus()
        queries = load_npy(self.store, self.layout.queries)
        x = read_vectors(self.store, self.parts[i])
        flat = faiss.IndexFlatL2(x.shape[1])
        flat.add(x)
        distances, ids = flat.search(queries, min(self.k, len(x)))
        return distances, np.where(ids >= 0, ids + self.offsets[i], -1)
