"""What αQE costs a query: one-query searches (the query worker's common case) with exact re-scoring, without
and with query expansion over the top n hits (a second search plus the hits' stored vectors), side by side on
the same index and queries; interleaved rounds, medians, and the ratios.

  python bench/expansion_cost.py                 # 100k × 64 clustered vectors, OPQ16,IVF256_HNSW32,PQ16
  python bench/expansion_cost.py --n 20000 --rounds 3
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from benchkit.one_query_index import add_index_args, build
from benchkit.record import add_out_arg, record

from lookalike.index.search import SearchParams, search


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_index_args(parser)
    parser.add_argument("--expand", type=int, nargs="+", default=[1, 3, 10])
    parser.add_argument("--searches", type=int, default=2000, help="per round and setting")
    add_out_arg(parser)
    args = parser.parse_args()
    x, index, exact = build(args)
    queries = x[np.random.default_rng(1).choice(args.n, args.searches, replace=False)] + 0.01
    settings = {"no expansion": SearchParams(args.nprobe, args.rescore)}
    settings |= {f"αQE n={n}": SearchParams(args.nprobe, args.rescore, expand=n) for n in args.expand}
    seconds: dict[str, list[float]] = {name: [] for name in settings}
    for params in settings.values():  # warm: the first searches pay for caches and parameter objects
        for q in queries[:100]:
            search(index, q[None], 10, params, exact)
    for _ in range(args.rounds):
        for name, params in settings.items():
            started = time.perf_counter()
            for q in queries:
                search(index, q[None], 10, params, exact)
            seconds[name].append((time.perf_counter() - started) / len(queries))
    base = float(np.median(seconds["no expansion"]))
    print(f"{args.factory} over {args.n:,} × {args.d}, nprobe {args.nprobe}, rescore {args.rescore}, k 10, "
          "1 query/search")
    figures = {}
    for name, s in seconds.items():
        median = float(np.median(s))
        print(f"  {name:14} {1e6 * median:7.0f} µs/search  ({median / base:.2f}× no expansion, "
              f"+{1e6 * (median - base):.0f} µs; median of {args.rounds})")
        figures[name] = {"us_per_search": 1e6 * median, "x_no_expansion": median / base}
    table = "\n".join(["| search | µs per search | × no expansion |", "|---|---|---|",
                        *(f"| {name} | {f['us_per_search']:,.0f} | {f['x_no_expansion']:.2f} |"
                          for name, f in figures.items())])
    record(args, {"factory": args.factory, "n": args.n, "d": args.d, "settings": figures}, table)


if __name__ == "__main__":
    main()
