"""The index build at 10M vectors with the inverted lists merged on disk, side by side with exact search.

Writes N clustered unit vectors as a real embeddings version (part by part: the bench never holds them all),
runs lookalike build_index with a factory larger than the memory budget, so that the partial indexes of the
add tasks are merged into one mmap-able `index.ivfdata` (faiss.contrib.ondisk) instead of in memory, and
reports build stages, the driver's peak memory, sizes on disk, and search on the memory-mapped index
(recall from the build's own held-out queries) against exact brute force over the same vectors.

  python bench/ondisk_merge.py                      # 10M × 128, OPQ32_128,IVF4096,PQ32, 256 MiB budget
  python bench/ondisk_merge.py --n 1000000          # a quicker look
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import faiss
import numpy as np
from benchkit.memory import RssSampler, current_rss
from benchkit.record import record
from benchkit.synthetic_index import FINGERPRINT, add_build_args, version_parts, write_version_streaming

from lookalike.core.store import Store
from lookalike.index import build as index_build
from lookalike.index.build import BuildIndexConfig
from lookalike.index.reader import load_index_version


def exact_qps(store: Store, parts: list[str], queries: np.ndarray, k: int = 10) -> float:
    """Brute force over every part (IndexFlatL2, all cores), the vectors read outside the timing."""
    from lookalike.embed.versions import read_vectors
    spent = 0.0
    for key in parts:
        flat = faiss.IndexFlatL2(queries.shape[1])
        flat.add(read_vectors(store, key))
        t0 = time.perf_counter()
        flat.search(queries, k)
        spent += time.perf_counter() - t0
    return len(queries) / spent


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_build_args(p, 256, "below the index size: forces the on-disk merge")
    args = p.parse_args()
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    work = Path(tempfile.mkdtemp(prefix="lookalike-ondisk-bench-"))
    store = Store(str(work / "store"))
    t0 = time.perf_counter()
    queries = write_version_streaming(store, args.n, args.d, args.parts, seed=1)
    print(f"data: {args.n:,} × {args.d} clustered unit vectors in {args.parts} parts "
          f"({time.perf_counter() - t0:.0f}s to make); machine: {os.cpu_count()} cores; RSS before the build "
          f"{current_rss() / 2**30:.2f} GiB", flush=True)

    with RssSampler() as rss:
        manifest = index_build.run(BuildIndexConfig(
            store=store.url, name="bench", embeddings=f"{FINGERPRINT}/bench", factory=args.factory,
            memory_budget=args.budget_mib << 20, queries=1000, master=args.master, publish=True))
    driver_peak = rss.peak_gib
    t = manifest["timings"]
    sizes = {f["key"].rsplit("/", 1)[-1]: f["bytes"] for f in manifest["files"]}
    point = manifest["operating_point"]
    print(f"build     {manifest['factory']} on_disk={manifest['on_disk']}  total {t['total_s']:.0f}s (scan "
          f"{t['scan_s']:.0f}, train {t['train_s']:.0f}, add {t['add_s']:.0f}, merge {t['merge_s']:.0f}, recall "
          f"{t['recall_s']:.0f})  driver peak RSS {driver_peak:.2f} GiB ({rss.peak_anon / 2**30:.2f} GiB "
          "anonymous, the rest mapped files)")
    print("files     " + ", ".join(f"{k} {v / 2**20:,.0f} MiB" for k, v in sorted(sizes.items())))

    version = load_index_version(store, "bench", cache_dir=str(work / "cache"))
    t0 = time.perf_counter()
    version.search(queries, 11)  # the first pass faults the mapped lists and vectors in from disk
    cold = len(queries) / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    version.search(queries, 11)
    ours = len(queries) / (time.perf_counter() - t0)
    exact = exact_qps(store, version_parts(store), queries)
    print(f"search    mmap'd lists, {point['params']}: 10-R@10 {point['recall_at_10']:.3f} (build's held-out "
          f"queries)  {ours:,.0f} QPS ({cold:,.0f} on the first, cold pass)   exact {exact:,.1f} QPS   "
          f"ours/exact {ours / exact:,.0f}×")
    record(args, {
        "n": args.n, "d": args.d, "factory": manifest["factory"], "on_disk": manifest["on_disk"],
        "timings": t, "driver_peak_rss_gib": driver_peak,
        "driver_peak_anon_gib": rss.peak_anon / 2**30, "files": sizes, "operating_point": point,
        "qps": ours, "cold_qps": cold, "exact_qps": exact})
    return 0


if __name__ == "__main__":
    sys.exit(main())
