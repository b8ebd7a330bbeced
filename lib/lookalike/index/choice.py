"""Which Faiss index to build for N vectors of dimension d within a memory budget, and why."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from lookalike.core.errors import ConfigError

FLAT_THRESHOLD = 50_000        # below this, exact search is fast enough and needs no training
HNSW_QUANTIZER_FROM = 1_000_000  # from here a flat coarse quantizer costs more than the lists it selects
PQ_SIZES = (8, 16, 24, 32, 48, 64, 96, 128)
ID_BYTES = 8                   # each inverted-list entry stores its int64 id beside the code


class IndexChoiceError(ConfigError):
    """No index fits the data within the budget; the message says what would."""


@dataclass(frozen=True)
class IndexChoice:
    factory: str
    reason: str
    nlist: int = 0             # 0 for a flat index
    pq_m: int = 0
    train_size: int = 0        # vectors in the random training sample
    bytes_per_vector: float = 0.0

    @property
    def is_flat(self) -> bool:
        return self.nlist == 0


def choose_index(n: int, d: int, memory_budget: int, flat_threshold: int = FLAT_THRESHOLD) -> IndexChoice:
    """Exact search for small sets; else OPQ-rotated IVF-PQ with the largest code the budget allows.

    L2 on unit vectors ranks exactly like inner product, and k-means (the coarse quantizer) minimises L2:
    measured here, an inner-product IVF-PQ reached 10-R@10 0.38 where L2 reached 0.54 at equal bytes.
    """
    if n <= 0:
        raise IndexChoiceError("no vectors to index")
    flat_bytes = n * d * 4
    if n < flat_threshold and flat_bytes <= memory_budget:
        return IndexChoice("Flat", f"{n:,} vectors < {flat_threshold:,}: exact search, {flat_bytes / 2**20:.1f} MiB",
                           bytes_per_vector=d * 4)
    # nlist ≈ 4·√N (the low end of the usual 4–16·√N, to keep k-means affordable), a power of two,
    # and at least 39 training points per centroid.
    nlist = 2 ** round(math.log2(4 * math.sqrt(n)))
    nlist = max(16, min(nlist, 2 ** int(math.log2(max(16, n // 39)))))
    hnsw = n >= HNSW_QUANTIZER_FROM
    quantizer_bytes = nlist * d * 4 * (2 if hnsw else 1)
    per_vector = (memory_budget - quantizer_bytes) / n - ID_BYTES
    fitting = [m for m in PQ_SIZES if m <= per_vector and m <= d]
    if not fitting:
        need = n * (PQ_SIZES[0] + ID_BYTES) + quantizer_bytes
        raise IndexChoiceError(f"{n:,} vectors need at least {need / 2**20:.0f} MiB for the smallest index "
                               f"(PQ{PQ_SIZES[0]}); the memory budget is {memory_budget / 2**20:.0f} MiB: raise "
                               "--memory-budget")
    m = fitting[-1]
    rotated = min(d - d % m, 4 * m)  # OPQ output dim: a multiple of m, 4 dims per sub-quantizer
    coarse = f"IVF{nlist}_HNSW32" if hnsw else f"IVF{nlist}"
    train = min(n, 64 * nlist)
    reason = (f"{n:,} vectors ≥ {flat_threshold:,}: IVF-PQ with nlist {nlist} (≈4·√N), "
              f"{'an HNSW' if hnsw else 'a flat'} coarse quantizer, PQ{m} = the largest code within the "
              f"{memory_budget / 2**20:.0f} MiB budget ({m + ID_BYTES} bytes/vector with ids), OPQ to {rotated} dims")
    return IndexChoice(f"OPQ{m}_{rotated},{coarse},PQ{m}", reason, nlist, m, train, m + ID_BYTES)


def describe_factory(factory: str, n: int, d: int) -> IndexChoice:
    """An IndexChoice for a factory string the user forced."""
    ivf = re.search(r"IVF(\d+)", factory)
    pq = re.search(r"PQ(\d+)", factory)
    nlist = int(ivf.group(1)) if ivf else 0
    m = int(pq.group(1)) if pq else 0
    train = min(n, 64 * nlist) if nlist else (min(n, 256 * 1000) if m else 0)
    per_vector = (m + ID_BYTES) if m else d * 4
    return IndexChoice(factory, "forced with --factory", nlist, m, train, per_vector)
