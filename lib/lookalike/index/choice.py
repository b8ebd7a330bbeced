"""Which Faiss index to build for N vectors of dimension d within a memory budget, and why."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from lookalike.core.errors import ConfigError

FLAT_THRESHOLD = 50_000        # below this, exact search is fast enough and needs no training
HNSW_QUANTIZER_FROM = 1_000_000  # from here a flat coarse quantizer costs more than the lists it selects
PQ_SIZES = (8, 16, 24, 32, 48, 64, 96, 128)
CODE_BITS = (64, 128, 256, 512)  # binary codes: ITQ learns at most d bits (a rotation of the top-d PCA axes)
ID_BYTES = 8                   # each inverted-list entry stores its int64 id beside the code
CODES = ("auto", "pq", "binary")


def check_buildable(factory: str, d: int) -> None:
    """Refuse, before any work, a factory string faiss cannot make for d dimensions or the build cannot run: the
    build adds to the index on many tasks and merges their inverted lists, which only Flat and IVF indexes (behind
    an optional rotation such as OPQ) allow; PQ codes are of 8 bits."""
    import faiss  # here: the command line imports this module to know the choices, without faiss

    try:
        index = faiss.index_factory(d, factory)
    except RuntimeError as e:
        reason = str(e).rsplit("failed: ", 1)[-1].rsplit("Error: ", 1)[-1].strip()
        raise IndexChoiceError(f"--factory {factory}: faiss cannot make it for vectors of {d} dimensions: "
                               f"{reason}") from e
    inner = faiss.downcast_index(index.index) if isinstance(index, faiss.IndexPreTransform) else index
    if not isinstance(inner, faiss.IndexIVF | faiss.IndexFlat):
        raise IndexChoiceError(f"--factory {factory} makes a {type(inner).__name__}, which the build cannot add to in "
                               "parallel and merge: give Flat or an inverted-list index such as IVF1024,PQ32 (an "
                               "HNSW graph can be its coarse quantizer: IVF65536_HNSW32,PQ32)")
    if isinstance(inner, faiss.IndexIVF) and inner.nlist < 1:
        raise IndexChoiceError(f"--factory {factory}: an inverted-list index needs at least one list (IVF1 or more)")
    nbits = re.search(r"PQ\d+x(\d+)", factory)
    if nbits and int(nbits.group(1)) != 8:
        raise IndexChoiceError(f"--factory {factory}: lookalike builds PQ codes of 8 bits a sub-quantizer; write "
                               f"PQ{{m}} or PQ{{m}}x8")


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
    code_bits: int = 0         # > 0: binary codes compared by Hamming distance, re-scored exactly from the vectors

    @property
    def is_flat(self) -> bool:
        """Exact search: no coarse quantizer and no compressed code."""
        return self.nlist == 0 and self.pq_m == 0 and self.code_bits == 0

    @property
    def is_binary(self) -> bool:
        return self.code_bits > 0


def choose_index(n: int, d: int, memory_budget: int, flat_threshold: int = FLAT_THRESHOLD,
                 codes: str = "auto") -> IndexChoice:
    """Exact search for small sets; else OPQ-rotated IVF-PQ with the largest code the budget allows, or, with
    codes="binary", IVF over ITQ binary codes (see binary_choice). "auto" takes IVF-PQ: at equal code bytes it
    answers a top-10 at 10-R@10 ≥ 0.95 at 1.2-3× the QPS of binary codes, which need shortlists 2-5× as long,
    and builds as fast or faster (its coarse k-means runs in the OPQ-reduced space); binary codes only answer
    top-1000 queries 5-20% faster (bench/binary_codes.py at 1M and 2.5M × 256).

    L2 on unit vectors ranks exactly like inner product, and k-means (the coarse quantizer) minimises L2:
    measured here, an inner-product IVF-PQ reached 10-R@10 0.38 where L2 reached 0.54 at equal bytes.
    """
    if codes not in CODES:
        raise IndexChoiceError(f"codes {codes!r}: give one of {', '.join(CODES)}")
    if n <= 0:
        raise IndexChoiceError("no vectors to index")
    flat_bytes = n * d * 4
    if n < flat_threshold and flat_bytes <= memory_budget:
        return IndexChoice("Flat", f"{n:,} vectors < {flat_threshold:,}: exact search, {flat_bytes / 2**20:.1f} MiB",
                           bytes_per_vector=d * 4)
    nlist, hnsw, per_vector = coarse_lists(n, d, memory_budget)
    if codes == "binary":
        return binary_choice(n, d, memory_budget, nlist, hnsw, per_vector)
    fitting = [m for m in PQ_SIZES if m <= per_vector and m <= d]
    if not fitting:
        need = n * (PQ_SIZES[0] + ID_BYTES) + nlist * d * 4 * (2 if hnsw else 1)
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


def coarse_lists(n: int, d: int, memory_budget: int) -> tuple[int, bool, float]:
    """The coarse quantizer for n vectors: nlist, whether it is an HNSW graph, and the bytes per vector left
    for the code once it is paid for."""
    # nlist ≈ 4·√N (the low end of the usual 4–16·√N, to keep k-means affordable), a power of two,
    # and at least 39 training points per centroid.
    nlist = 2 ** round(math.log2(4 * math.sqrt(n)))
    nlist = max(16, min(nlist, 2 ** int(math.log2(max(16, n // 39)))))
    hnsw = n >= HNSW_QUANTIZER_FROM
    quantizer_bytes = nlist * d * 4 * (2 if hnsw else 1)
    return nlist, hnsw, (memory_budget - quantizer_bytes) / n - ID_BYTES


def binary_choice(n: int, d: int, memory_budget: int, nlist: int, hnsw: bool, per_vector: float) -> IndexChoice:
    """IVF over binary codes: ITQ (a PCA to `bits` dims, then the rotation that loses least to taking signs;
    Gong & Lazebnik 2011) turns each vector into bits, lists hold the packed bits, and a search ranks the probed
    lists by Hamming distance. The shortlist is always re-scored exactly from the stored vectors (coarse to
    fine, as in Lin et al. 2015). The codes are those an IndexBinaryIVF would hold over the same ITQ bits; the
    float-vector interface (faiss IndexIVFSpectralHash with a global threshold) lets the index go through the
    same train, add, merge, publish, serve, export and incremental paths as IVF-PQ."""
    fitting = [b for b in CODE_BITS if b <= d and b / 8 <= per_vector]
    if not fitting:
        smallest = CODE_BITS[0]
        if smallest > d:
            raise IndexChoiceError(f"binary codes need at least {smallest} dimensions (ITQ learns at most d bits); "
                                   f"the vectors have {d}: use codes 'pq'")
        raise IndexChoiceError(f"{n:,} vectors need at least {n * (smallest / 8 + ID_BYTES) / 2**20:.0f} MiB for "
                               f"{smallest}-bit codes; the memory budget is {memory_budget / 2**20:.0f} MiB: raise "
                               "--memory-budget")
    bits = fitting[-1]
    coarse = f"IVF{nlist}_HNSW32" if hnsw else f"IVF{nlist}"
    reason = (f"binary codes asked for: IVF with nlist {nlist} (≈4·√N), {'an HNSW' if hnsw else 'a flat'} coarse "
              f"quantizer, ITQ{bits} = the longest code within the {memory_budget / 2**20:.0f} MiB budget "
              f"({bits // 8 + ID_BYTES} bytes/vector with ids), Hamming shortlists re-scored exactly")
    return IndexChoice(f"{coarse},ITQ{bits},SH", reason, nlist, 0, min(n, 64 * nlist), bits / 8 + ID_BYTES,
                       code_bits=bits)


def describe_factory(factory: str, n: int, d: int) -> IndexChoice:
    """An IndexChoice for a factory string the user forced (checked to be one the build can make first)."""
    ivf = re.search(r"IVF(\d+)", factory)
    pq = re.search(r"PQ(\d+)", factory)
    binary = re.search(r"ITQ(\d+),(SH|LSH)", factory)
    nlist = int(ivf.group(1)) if ivf else 0
    m = int(pq.group(1)) if pq else 0
    bits = int(binary.group(1)) if binary else 0
    if bits and not nlist:
        raise IndexChoiceError(f"--factory {factory}: lookalike keeps binary codes in inverted lists (export shards "
                               f"them by list); give e.g. IVF{max(16, 2 ** round(math.log2(4 * math.sqrt(n))))},"
                               f"ITQ{bits},SH")
    if bits > d:
        raise IndexChoiceError(f"--factory {factory}: ITQ learns at most d = {d} bits; give ITQ{d} or fewer")
    check_buildable(factory, d)
    compressed = m or bits
    train = min(n, 64 * nlist) if nlist else (min(n, 256 * 1000) if compressed else 0)
    per_vector = (m + ID_BYTES) if m else (bits / 8 + ID_BYTES) if bits else d * 4
    return IndexChoice(factory, "forced with --factory", nlist, m, train, per_vector, code_bits=bits)
