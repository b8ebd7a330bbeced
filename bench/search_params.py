"""The cost of thread-safe search: per-call faiss parameters (lookalike.index.search.search, what every query
path calls) side by side with the old way of setting nprobe on the shared index before each search (fast, but
one request could search with another's nprobe, and under 8 threads it crashed faiss). One query per search
with exact re-scoring, the query worker's common case; interleaved rounds, medians, and the ratio.

  python bench/search_params.py                  # 100k × 64 clustered vectors, OPQ16,IVF256_HNSW32,PQ16
  python bench/search_params.py --n 20000 --rounds 3
"""

from __future__ import annotations

import argparse
import time

import faiss
import numpy as np
from benchkit.one_query_index import add_index_args, build
from benchkit.record import add_out_arg, record

from lookalike.index.search import SearchParams, search


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_index_args(parser)
    parser.add_argument("--searches", type=int, default=3000, help="per round and way")
    add_out_arg(parser)
    args = parser.parse_args()
    x, index, exact = build(args)
    query, k = x[:1], 10
    params = SearchParams(args.nprobe, args.rescore)

    def shared_nprobe():
        faiss.omp_set_num_threads(1)
        faiss.extract_index_ivf(index).nprobe = args.nprobe
        refine = faiss.IndexRefine(index, index)
        refine.refine_index, refine.ntotal, refine.k_factor = exact, exact.ntotal, args.rescore / k
        return refine.search(query, k)

    def per_call():
        return search(index, query, k, params, exact)

    assert (per_call()[1] == shared_nprobe()[1]).all(), "the two ways must find the same hits"
    rates: dict[str, list[float]] = {"per-call parameters": [], "nprobe set on the index": []}
    for _ in range(args.rounds):
        for name, fn in (("per-call parameters", per_call), ("nprobe set on the index", shared_nprobe)):
            started = time.perf_counter()
            for _ in range(args.searches):
                fn()
            rates[name].append(args.searches / (time.perf_counter() - started))
    medians = {name: float(np.median(r)) for name, r in rates.items()}
    print(f"{args.factory} over {args.n:,} × {args.d}, nprobe {args.nprobe}, rescore {args.rescore}, 1 query/search")
    for name, rate in medians.items():
        print(f"  {name:24} {rate:8,.0f} searches/s (median of {args.rounds})")
    ratio = medians["per-call parameters"] / medians["nprobe set on the index"]
    print(f"  ratio per-call / shared: {ratio:.3f}")
    table = "\n".join(["| faiss parameters | searches/s |", "|---|---|",
                        *(f"| {name} | {rate:,.0f} |" for name, rate in medians.items()),
                        f"| ratio per-call / shared | {ratio:.3f} |"])
    record(args, {"factory": args.factory, "n": args.n, "d": args.d, "searches_per_s": medians,
                  "per_call_over_shared": ratio}, table)


if __name__ == "__main__":
    main()
