"""Binary hash codes against IVF-PQ at equal bytes, side by side on the same vectors, queries and exact truth.

  pq      the builder's IVF-PQ (OPQ-rotated, choose_index(codes="pq")), shortlists re-scored from the vectors
  binary  the builder's binary codes (IVF over ITQ bits ranked by Hamming distance, choose_index(codes="binary")),
          shortlists always re-scored from the vectors

Both take their factory strings from lookalike's chooser at a budget that buys the same code bytes (PQ16 and
ITQ128 are 16 bytes a vector, PQ32 and ITQ256 32), are trained on the same random sample and searched through
lookalike.index.search (per-call nprobe, exact re-scoring from float16 vectors). Prints build time, bytes per
vector, 10-R@10 and QPS over nprobe × shortlist, the fastest setting reaching each recall, and the latency of a
top-1000 answer (one query at a time, on one thread, as a worker serves it) against the 1 s of the original
coarse-to-fine design (Lin et al. 2015: 2.5M images, top 1,000).

  python bench/binary_codes.py                           # 1M and 2.5M × 256, 16 and 32 bytes
  python bench/binary_codes.py --sizes 200000 --bytes 16
"""

from __future__ import annotations

import argparse
import sys
import time

import faiss
import numpy as np
from benchkit.record import add_out_arg, record

from lookalike.dev.synthetic import clustered_vectors
from lookalike.index.choice import ID_BYTES, choose_index, coarse_lists
from lookalike.index.recall import recall_at
from lookalike.index.search import SearchParams, exact_scorer, search, serialize

NPROBES = (8, 16, 32, 64)
SHORTLISTS = {"pq": (0, 50, 100, 200, 500), "binary": (50, 100, 200, 500, 1000, 2000)}
RECALLS = (0.90, 0.95)


def budget_for(n: int, d: int, code_bytes: int) -> int:
    """A memory budget that buys exactly `code_bytes` of code a vector after the quantizer and the ids."""
    nlist, hnsw, _ = coarse_lists(n, d, 1 << 62)
    return nlist * d * 4 * (2 if hnsw else 1) + n * (code_bytes + ID_BYTES) + n // 2


def build(factory: str, x: np.ndarray, train_rows: np.ndarray) -> tuple[faiss.Index, dict]:
    index = faiss.index_factory(x.shape[1], factory, faiss.METRIC_L2)
    ivf = faiss.downcast_index(faiss.extract_index_ivf(index))
    ivf.cp.seed = 0
    if hasattr(ivf, "do_polysemous_training"):
        ivf.do_polysemous_training = False  # as the builder does: Hamming-filtered PQ search is never used
    t0 = time.perf_counter()
    index.train(np.ascontiguousarray(x[train_rows]))
    train_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for start in range(0, len(x), 262_144):
        index.add(x[start:start + 262_144])
    add_s = time.perf_counter() - t0
    return index, {"train_s": round(train_s, 1), "add_s": round(add_s, 1), "build_s": round(train_s + add_s, 1),
                   "bytes_per_vector": round(len(serialize(index)) / len(x), 2)}


def sweep(kind: str, index: faiss.Index, exact: faiss.Index, queries: np.ndarray, truth: np.ndarray) -> list[dict]:
    rows = []
    for nprobe in NPROBES:
        for shortlist in SHORTLISTS[kind]:
            params = SearchParams(nprobe=nprobe, rescore=shortlist)
            search(index, queries[:50], 10, params, exact)
            t0 = time.perf_counter()
            _, ids = search(index, queries, 10, params, exact)
            elapsed = time.perf_counter() - t0
            rows.append({"nprobe": nprobe, "shortlist": shortlist, "recall_at_10": round(recall_at(ids, truth, 10), 3),
                         "qps": round(len(queries) / elapsed)})
    return rows


def fastest(rows: list[dict], target: float) -> dict | None:
    reaching = [r for r in rows if r["recall_at_10"] >= target]
    return max(reaching, key=lambda r: r["qps"]) if reaching else None


def top_1000(index: faiss.Index, exact: faiss.Index, queries: np.ndarray, truth: np.ndarray, nprobe: int
             ) -> dict:
    """One query at a time on one thread (search() does that for batches under 16): ms per top-1000 answer and
    its 1000-R@1000 against exact search."""
    params = SearchParams(nprobe=nprobe, rescore=2000)
    times, found = [], []
    for q in queries:
        t0 = time.perf_counter()
        _, ids = search(index, q[None], 1000, params, exact)
        times.append(time.perf_counter() - t0)
        found.append(ids[0])
    return {"nprobe": nprobe, "shortlist": 2000, "median_ms": round(1000 * float(np.median(times)), 1),
            "p95_ms": round(1000 * float(np.percentile(times, 95)), 1),
            "recall_at_1000": round(recall_at(np.array(found), truth, 1000), 3)}


def run_size(n: int, d: int, code_bytes: tuple[int, ...], n_queries: int, seed: int) -> list[dict]:
    clusters = max(64, n // 2000)
    x = clustered_vectors(n, d, clusters=clusters, seed=seed)
    queries = clustered_vectors(n_queries, d, clusters=clusters, seed=seed, part=10_000)  # not in the database
    t0 = time.perf_counter()
    flat = faiss.IndexFlatL2(d)
    flat.add(x)
    _, truth = flat.search(queries, 10)
    _, truth_1000 = flat.search(queries[:100], 1000)
    exact_qps = n_queries / (time.perf_counter() - t0)
    del flat
    exact = exact_scorer(x.astype(np.float16))
    print(f"\n{n:,} × {d} clustered unit vectors ({clusters} clusters), {n_queries} queries not in the database; "
          f"exact search {exact_qps:.0f} QPS", flush=True)
    results = []
    for nbytes in code_bytes:
        budget = budget_for(n, d, nbytes)
        for kind in ("pq", "binary"):
            choice = choose_index(n, d, budget, codes=kind)
            rng = np.random.default_rng(seed)
            train_rows = np.sort(rng.choice(n, choice.train_size, replace=False))
            index, built = build(choice.factory, x, train_rows)
            rows = sweep(kind, index, exact, queries, truth)
            latency = top_1000(index, exact, queries[:100], truth_1000, nprobe=32)
            result = {"n": n, "d": d, "code_bytes": nbytes, "kind": kind, "factory": choice.factory, **built,
                      "sweep": rows, "top_1000": latency,
                      **{f"at_{t:.2f}": fastest(rows, t) for t in RECALLS}}
            results.append(result)
            best = max(r["recall_at_10"] for r in rows)
            print(f"  {kind:6} {choice.factory:30} build {built['build_s']:6.1f} s (train {built['train_s']}, add "
                  f"{built['add_s']}), {built['bytes_per_vector']:5.1f} B/vector, best 10-R@10 {best:.3f}; "
                  + "; ".join(f"≥{t:.2f}: " + (f"{r['qps']:,} QPS (nprobe {r['nprobe']}, shortlist {r['shortlist']})"
                                               if (r := result[f'at_{t:.2f}']) else "not reached") for t in RECALLS)
                  + f"; top-1000 {latency['median_ms']} ms median, {latency['p95_ms']} p95, "
                    f"1000-R@1000 {latency['recall_at_1000']}", flush=True)
            del index
        pq, binary = results[-2], results[-1]
        ratios = [f"build {binary['build_s'] / pq['build_s']:.2f}×",
                  f"bytes {binary['bytes_per_vector'] / pq['bytes_per_vector']:.2f}×",
                  f"top-1000 latency {binary['top_1000']['median_ms'] / pq['top_1000']['median_ms']:.2f}×"]
        for t in RECALLS:
            a, b = pq[f"at_{t:.2f}"], binary[f"at_{t:.2f}"]
            ratios.append(f"QPS at 10-R@10 ≥ {t:.2f} " + (f"{b['qps'] / a['qps']:.2f}×" if a and b else "n/a"))
        print(f"  binary / pq at {nbytes} B: " + ", ".join(ratios), flush=True)
    return results


def table(results: list[dict]) -> str:
    """The docs' table of a run (docs/performance.md includes the committed record's)."""
    out = ["| vectors | code | factory | build s (train + add) | bytes/vector | best 10-R@10 | "
           + " | ".join(f"QPS at 10-R@10 ≥ {t:.2f}" for t in RECALLS)
           + " | top-1000 median / p95 ms (1000-R@1000) |", "|---" * (7 + len(RECALLS)) + "|"]
    for r in results:
        at = [f"{a['qps']:,}" if (a := r[f"at_{t:.2f}"]) else "not reached" for t in RECALLS]
        top = r["top_1000"]
        out.append(f"| {r['n'] / 1e6:g}M | {r['code_bytes']} B {r['kind']} | `{r['factory']}` | "
                   f"{r['build_s']:.0f} ({r['train_s']:.0f} + {r['add_s']:.0f}) | {r['bytes_per_vector']:.1f} | "
                   f"{max(x['recall_at_10'] for x in r['sweep']):.3f} | " + " | ".join(at)
                   + f" | {top['median_ms']} / {top['p95_ms']} ({top['recall_at_1000']}) |")
    return "\n".join(out)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="1000000,2500000")
    p.add_argument("--d", type=int, default=256)
    p.add_argument("--bytes", default="16,32", help="code bytes a vector (PQm with m = bytes; ITQ with 8 × bytes)")
    p.add_argument("--queries", type=int, default=1000)
    p.add_argument("--seed", type=int, default=1)
    add_out_arg(p)
    args = p.parse_args()
    print(f"faiss {faiss.__version__}, {faiss.omp_get_max_threads()} threads")
    results = []
    for n in (int(s) for s in args.sizes.split(",")):
        results += run_size(n, args.d, tuple(int(b) for b in args.bytes.split(",")), args.queries, args.seed)
    record(args, results, table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
