"""Similarity join throughput, side by side in one run on the same index and queries:

  spark     lookalike join on Spark local[2] (tasks load the index once per executor, search their part in
            batches with the index's operating point, write Parquet shards and commit markers)
  single    one process: load the same index version, search every query in batches, no output written
  exact     IndexFlatIP brute force over the base vectors: the recall reference and a speed baseline

Prints queries/s, the spark/single ratio (the target is >= 0.8), and the join's 10-R@10 against exact.

  python bench/join.py                      # 200k × 256 base, 1M queries in 16 parts
  python bench/join.py --queries 400000     # one size: fixed costs (index load per executor) weigh more
  python bench/join.py --n 50000 --queries 20000
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import faiss
import numpy as np
import pyarrow as pa
from benchkit.record import add_out_arg, record

from lookalike.batch import join
from lookalike.batch.join import JoinConfig
from lookalike.core.spark import IN_PROCESS
from lookalike.core.store import Store
from lookalike.dev.synthetic import clustered_vectors, write_embeddings_version
from lookalike.index import build as index_build
from lookalike.index.build import BuildIndexConfig
from lookalike.index.reader import load_index_version
from lookalike.index.search import search

K = 10


def prepare(work: Path, n: int, d: int, q: int, parts: int) -> tuple[Store, np.ndarray, np.ndarray]:
    store = Store(str(work / "store"))
    base = clustered_vectors(n, d, clusters=1024, spread=0.6, seed=5)
    rng = np.random.default_rng(6)
    queries = base[rng.choice(n, q)] + rng.normal(0, 0.05, (q, d)).astype(np.float32)
    queries = (queries / np.linalg.norm(queries, axis=1, keepdims=True)).astype(np.float32)
    if not (work / "store" / "indexes" / "base" / "LATEST").exists():
        write_embeddings_version(store, base, run_id="base", parts=4)
        index_build.run(BuildIndexConfig(store=store.url, name="base", master=IN_PROCESS, publish=True,
                                         memory_budget=max(8 << 20, n * 48), queries=500))
    queries_run = f"queries-{q}-{parts}"
    if not (work / "store" / "embeddings" / f"synthetic-d{d}" / queries_run).exists():
        write_embeddings_version(store, queries, run_id=queries_run, parts=parts, id_prefix="q")
    return store, base, queries


def one_join(work: Path, args: argparse.Namespace, n_queries: int, startup_s: float) -> dict:
    fp = f"synthetic-d{args.d}"
    print(f"preparing {args.n:,}×{args.d} base, {n_queries:,} queries in {args.parts} parts under {work} ...",
          flush=True)
    store, base, queries = prepare(work, args.n, args.d, n_queries, args.parts)
    t0 = time.perf_counter()
    m = join.run(JoinConfig(store=store.url, index="base", query_embeddings=f"{fp}/queries-{n_queries}-{args.parts}",
                            k=K, master="local[2]", run_id=f"bench-{int(time.time())}"))
    spark_wall = time.perf_counter() - t0
    spark_qps = n_queries / m["timings"]["tasks_s"]
    pairs = pa.concat_tables([store.read_parquet(f["key"]) for f in m["files"]["pairs"]])
    print(f"index {m['base']}, operating point nprobe {m['params']['nprobe']} rescore {m['params']['rescore']}")

    version = load_index_version(store, "base", cache_dir=str(work / "cache"))
    t0 = time.perf_counter()
    for lo in range(0, len(queries), 4096):
        search(version.index, queries[lo:lo + 4096], K, version.default_params, version.exact)
    single_s = time.perf_counter() - t0

    # Exact search of every query would dominate the run: the first --exact-sample queries give its speed and
    # the join's recall.
    flat = faiss.IndexFlatIP(args.d)
    flat.add(base)
    sample = min(args.exact_sample, len(queries))
    t0 = time.perf_counter()
    _, truth = flat.search(queries[:sample], K)
    exact_s = time.perf_counter() - t0

    got = np.array([int(x.split("-")[1]) for x in pairs["neighbor_id"].to_pylist()]).reshape(-1, K)
    order = np.argsort([int(x.split("-")[1]) for x in pairs["query_id"].to_pylist()[::K]])
    got = got[order][:sample]
    recall = np.mean([len(set(a) & set(b)) / K for a, b in zip(got, truth, strict=True)])
    single_qps, exact_qps = n_queries / single_s, sample / exact_s
    print(f"spark local[2] join   {spark_qps:10,.0f} queries/s in tasks ({m['timings']['tasks_s']:.1f}s; "
          f"{spark_wall:.1f}s with the plan and manifest; Spark start-up before it {startup_s:.1f}s), "
          f"10-R@10 vs exact {recall:.3f} ({sample:,} queries)")
    print(f"single-process loop   {single_qps:10,.0f} queries/s ({single_s:.1f}s, same index and parameters)")
    print(f"exact brute force     {exact_qps:10,.0f} queries/s ({exact_s:.1f}s for {sample:,} queries)")
    print(f"ratios: spark/single {spark_qps / single_qps:.2f} (target >= 0.8), spark/exact "
          f"{spark_qps / exact_qps:.2f}, single/exact {single_qps / exact_qps:.2f}", flush=True)
    return {"queries": n_queries, "operating_point": m["params"],
            "spark": {"queries_per_s": spark_qps, "tasks_s": m["timings"]["tasks_s"], "wall_s": spark_wall,
                      "recall_10_at_10": float(recall), "recall_sample": sample},
            "single": {"queries_per_s": single_qps, "s": single_s},
            "exact": {"queries_per_s": exact_qps, "s": exact_s},
            "ratios": {"spark/single": spark_qps / single_qps, "spark/exact": spark_qps / exact_qps}}


def table(runs: list[dict], args: argparse.Namespace) -> str:
    """The docs' table of a run (docs/performance.md includes the committed record's)."""
    out = ["| queries | Spark join | single process | exact | Spark / single | 10-R@10 vs exact |",
           "|---|---|---|---|---|---|"]
    for r in runs:
        out.append(f"| {r['queries']:,} in {args.parts} shards | {r['spark']['queries_per_s']:,.0f} q/s "
                   f"({r['spark']['tasks_s']:.1f} s) | {r['single']['queries_per_s']:,.0f} q/s | "
                   f"{r['exact']['queries_per_s']:,.0f} q/s | **{r['ratios']['spark/single']:.2f}** | "
                   f"{r['spark']['recall_10_at_10']:.3f} |")
    return "\n".join(out)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", default=".bench-data/join")
    p.add_argument("--n", type=int, default=200_000)
    p.add_argument("--d", type=int, default=256)
    p.add_argument("--queries", type=int, nargs="+", default=[1_000_000, 400_000],
                   help="one join per count")
    p.add_argument("--parts", type=int, default=16)
    p.add_argument("--exact-sample", type=int, default=20_000)
    add_out_arg(p)
    args = p.parse_args()
    work = Path(args.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    # A nightly or ad-hoc job pays Spark's start-up once whatever its size: start the session
    # first, so the figure is the join's own throughput. Spark first is also the fair order for the page cache.
    from lookalike.core.spark import session
    t0 = time.perf_counter()
    session("local[2]", "lookalike-join")
    startup_s = time.perf_counter() - t0
    runs = [one_join(work, args, q, startup_s) for q in args.queries]
    record(args, {"n": args.n, "d": args.d, "parts": args.parts, "spark_startup_s": startup_s, "runs": runs},
           table(runs, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
