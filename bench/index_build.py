"""Index build and search, side by side in one run on the same vectors, queries and exact ground truth:

  ours       lookalike build_index (choice, random-sample training, distributed add, merge, re-scoring)
  exact      IndexFlatL2 brute force: recall 1 by definition, the QPS baseline
  autofaiss  autofaiss build_index under the same memory budget (its own venv: it needs an older faiss)

Prints build times, bytes/vector, 10-R@10, R@1 and QPS, and the ratios the targets are stated in.

  python bench/index_build.py                       # 1M × 256 clustered vectors, 48 MiB budget
  python bench/index_build.py --n 200000 --no-autofaiss
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import faiss
import numpy as np
from benchkit.record import add_out_arg, record

from lookalike.core.store import Store
from lookalike.dev.synthetic import clustered_vectors, write_embeddings_version
from lookalike.index import build as index_build
from lookalike.index.build import BuildIndexConfig
from lookalike.index.reader import load_index_version
from lookalike.index.recall import drop_self, recall_at
from lookalike.index.search import SearchParams

AUTOFAISS_VENV = Path(__file__).resolve().parent / ".autofaiss-venv"
AUTOFAISS_REQUIREMENTS = ["numpy<2", "faiss-cpu==1.8.0", "pyarrow<17", "autofaiss", "packaging"]

AUTOFAISS_SCRIPT = r"""
import json, sys, time, numpy as np, faiss
from autofaiss import build_index
x = np.load(sys.argv[1]); q = np.load(sys.argv[2]); qids = np.load(sys.argv[3]); truth = np.load(sys.argv[4])
t0 = time.perf_counter()
index, infos = build_index(x, save_on_disk=False, max_index_memory_usage=sys.argv[5], current_memory_available="16G",
                           metric_type="l2", min_nearest_neighbors_to_retrieve=20, verbose=30)
build_s = time.perf_counter() - t0
index.search(q[:50], 11)
t0 = time.perf_counter(); _, ids = index.search(q, 11); search_s = time.perf_counter() - t0
found = []
for row, qid in zip(ids, qids):
    kept = [i for i in row if i != qid and i >= 0][:10]
    found.append(kept + [-1] * (10 - len(kept)))
found = np.array(found)
r10 = float(np.mean([len(set(f) & set(t)) for f, t in zip(found, truth)]) / 10)
r1 = float(np.mean(found[:, 0] == truth[:, 0]))
print(json.dumps({"build_s": build_s, "factory": infos.get("index_key"), "params": infos.get("index_param"),
                  "bytes": int(faiss.serialize_index(index).nbytes), "recall_at_10": r10, "recall_at_1": r1,
                  "qps": len(q) / search_s}))
"""


def ensure_autofaiss() -> Path:
    python = AUTOFAISS_VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(AUTOFAISS_VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *AUTOFAISS_REQUIREMENTS], check=True)
    return python


def exact_baseline(x: np.ndarray, queries: np.ndarray, query_ids: np.ndarray, k: int):
    flat = faiss.IndexFlatL2(x.shape[1])
    flat.add(x)
    flat.search(queries[:20], k + 1)
    t0 = time.perf_counter()
    _, ids = flat.search(queries, k + 1)
    qps = len(queries) / (time.perf_counter() - t0)
    return drop_self(ids, query_ids, k), qps


def timed_search(version, queries: np.ndarray, params: SearchParams | None = None) -> tuple[np.ndarray, float]:
    version.search(queries[:50], 11, params)
    t0 = time.perf_counter()
    _, ids = version.search(queries, 11, params)
    return ids, len(queries) / (time.perf_counter() - t0)


def table(result: dict) -> str:
    """The docs' table of a run (docs/performance.md includes the committed record's)."""
    ours, only = result["ours"], result["ours_index_only"]
    point = ", ".join(f"{k} {v}" for k, v in ours["params"].items() if k in ("nprobe", "rescore"))
    out = [f"| {result['n']:,} × {result['d']}, {result['budget_mib']} MiB | factory | build | index bytes/vector | "
           "operating point | 10-R@10 | R@1 | QPS |", "|---|---|---|---|---|---|---|---|",
           f"| lookalike | {ours['factory']} | {ours['build_s']:.0f} s (train {ours['train_s']:.0f}, add "
           f"{ours['add_s']:.0f}, merge {ours['merge_s']:.0f}) | {ours['bytes_per_vector']:.1f} | {point} | "
           f"{ours['recall_at_10']:.3f} | {ours['recall_at_1']:.3f} | {ours['qps']:,.0f} |",
           f"| lookalike, index only | same index | – | {ours['bytes_per_vector']:.1f} | nprobe "
           f"{ours['params']['nprobe']}, no re-scoring | {only['recall_at_10']:.3f} | {only['recall_at_1']:.3f} | "
           f"{only['qps']:,.0f} |",
           f"| exact IndexFlatL2 | Flat | – | {4 * result['d']:,} | – | 1.000 | 1.000 | {result['exact_qps']:,.0f} |"]
    af = result.get("autofaiss")
    if af:
        out.append(f"| autofaiss | {af['factory']} | {af['build_s']:.0f} s | {af['bytes'] / result['n']:.1f} | "
                   f"{af['params']} | {af['recall_at_10']:.3f} | {af['recall_at_1']:.3f} | {af['qps']:,.0f} |")
    out += ["", f"QPS {result['ours_over_exact_qps']:.1f}× exact search's"]
    if af:
        out[-1] += (f"; against autofaiss: build time {ours['build_s'] / af['build_s']:.2f}×, index bytes "
                    f"{ours['index_bytes'] / af['bytes']:.2f}×, QPS {ours['qps'] / af['qps']:.1f}×")
    out[-1] += "."
    return "\n".join(out)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=1_000_000)
    p.add_argument("--d", type=int, default=256)
    p.add_argument("--parts", type=int, default=8)
    p.add_argument("--budget-mib", type=int, default=48)
    p.add_argument("--queries", type=int, default=1000)
    p.add_argument("--master", default="local[2]")
    p.add_argument("--no-autofaiss", action="store_true")
    add_out_arg(p)
    args = p.parse_args()
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    work = Path(tempfile.mkdtemp(prefix="lookalike-index-bench-"))
    store = Store(str(work / "store"))
    t0 = time.perf_counter()
    x = clustered_vectors(args.n, args.d, clusters=max(64, args.n // 2000), seed=1)
    write_embeddings_version(store, x, parts=args.parts)
    print(f"data: {args.n:,} × {args.d} clustered unit vectors, {args.parts} parts "
          f"({time.perf_counter() - t0:.0f}s to make); budget {args.budget_mib} MiB; machine: {os.cpu_count()} cores")

    budget = args.budget_mib << 20
    manifest = index_build.run(BuildIndexConfig(store=store.url, name="bench", memory_budget=budget,
                                                queries=args.queries, master=args.master, publish=True))
    t = manifest["timings"]
    point = manifest["operating_point"]
    version = load_index_version(store, "bench", cache_dir=str(work / "cache"))
    query_rows = np.random.default_rng(7).choice(args.n, args.queries, replace=False)
    queries, query_ids = x[query_rows], query_rows.astype(np.int64)
    truth, exact_qps = exact_baseline(x, queries, query_ids, 10)
    ids, ours_qps = timed_search(version, queries)
    found = drop_self(ids, query_ids, 10)
    # The compressed index alone, without the exact re-scoring from the stored float16 vectors.
    only_ids, only_qps = timed_search(version, queries, SearchParams(nprobe=version.default_params.nprobe))
    only_found = drop_self(only_ids, query_ids, 10)
    ours = {"factory": manifest["factory"], "build_s": t["total_s"], "train_s": t["train_s"], "add_s": t["add_s"],
            "merge_s": t["merge_s"], "bytes_per_vector": manifest["bytes_per_vector"],
            "index_bytes": manifest["bytes_per_vector"] * args.n,
            "params": point["params"], "recall_at_10": recall_at(found, truth, 10),
            "recall_at_1": recall_at(found, truth, 1), "qps": ours_qps}
    print(f"ours      {ours['factory']}  build {ours['build_s']:.0f}s (train {ours['train_s']:.0f}s, add "
          f"{ours['add_s']:.0f}s, merge {ours['merge_s']:.0f}s)  {ours['bytes_per_vector']} B/vector  "
          f"{ours['params']}  10-R@10 {ours['recall_at_10']:.3f}  R@1 {ours['recall_at_1']:.3f}  {ours_qps:.0f} QPS")
    print(f"exact     IndexFlatL2  10-R@10 1.000  {exact_qps:.0f} QPS   ours/exact QPS = {ours_qps / exact_qps:.1f}×")
    result = {"n": args.n, "d": args.d, "budget_mib": args.budget_mib, "ours": ours, "exact_qps": exact_qps,
              "ours_over_exact_qps": ours_qps / exact_qps,
              "ours_index_only": {"recall_at_10": recall_at(only_found, truth, 10),
                                  "recall_at_1": recall_at(only_found, truth, 1), "qps": only_qps}}
    if not args.no_autofaiss:
        python = ensure_autofaiss()
        files = {name: work / f"{name}.npy" for name in ("x", "q", "qids", "truth")}
        for name, array in (("x", x), ("q", queries), ("qids", query_ids), ("truth", truth)):
            np.save(files[name], array)
        script = work / "autofaiss_run.py"
        script.write_text(AUTOFAISS_SCRIPT)
        out = subprocess.run([str(python), str(script), *map(str, files.values()), f"{args.budget_mib}M"],
                             capture_output=True, text=True, timeout=3600)
        if out.returncode != 0:
            print(out.stderr[-3000:], file=sys.stderr)
            return 1
        af = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"autofaiss {af['factory']}  build {af['build_s']:.0f}s  {af['bytes'] / args.n:.1f} B/vector  "
              f"{af['params']}  10-R@10 {af['recall_at_10']:.3f}  R@1 {af['recall_at_1']:.3f}  {af['qps']:.0f} QPS")
        print(f"ratios    recall ours-autofaiss {ours['recall_at_10'] - af['recall_at_10']:+.3f}  "
              f"QPS ours/autofaiss {ours_qps / af['qps']:.1f}×  build time ours/autofaiss "
              f"{ours['build_s'] / af['build_s']:.2f}  "
              f"index bytes ours/autofaiss {ours['index_bytes'] / af['bytes']:.2f}")
        result["autofaiss"] = af
    # Two records, two tables: the build against exact search, and against autofaiss where it finishes (smaller n).
    record(args, result, table(result), bench=None if args.no_autofaiss else "index_build-autofaiss")
    return 0


if __name__ == "__main__":
    sys.exit(main())
