"""The index build's driver memory at catalogue scale, for a full build and for the nightly incremental update.

Night 1 builds and publishes an index over N clustered unit vectors (a real embeddings version, written part by
part); night 2 is a new embeddings version with 0.5% of the images changed and 0.5% added (its other parts are
night 1's, as an incremental embed run's would hold the same vectors) and updates LATEST incrementally. The
driver's peak RSS and anonymous RSS (mapped files excluded: the page cache can drop them) are sampled every 50 ms
during each build; Spark's JVM and the Python workers are other processes and not counted.

  python bench/driver_memory.py                     # 10M × 128, OPQ32_128,IVF4096,PQ32 (lists in memory)
  python bench/driver_memory.py --n 1000000         # a quicker look
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from benchkit.memory import RssSampler, current_rss
from benchkit.record import record
from benchkit.synthetic_index import FINGERPRINT, add_build_args, write_version_streaming

from lookalike.core.layout import EmbeddingsLayout
from lookalike.core.store import Store
from lookalike.dev.synthetic import clustered_vectors, write_embeddings_parts
from lookalike.embed.versions import open_version, read_vectors
from lookalike.index import build as index_build
from lookalike.index.build import BuildIndexConfig


def write_night_two(store: Store, n: int, d: int, seed: int) -> tuple[int, int]:
    """Night 2: part 0 rewritten with 0.5% of N changed (new vectors and hashes), 0.5% added in a new part, the
    other parts night 1's own files. Returns (changed, added)."""
    night1 = open_version(store, FINGERPRINT, "bench")
    first = night1.parts[0]
    x = read_vectors(store, first).copy()
    rows0 = len(x)
    changed = min(rows0, n // 200)
    x[:changed] = clustered_vectors(changed, d, clusters=max(64, n // 2000), seed=seed, part=97)
    added = n // 200
    fresh = clustered_vectors(added, d, clusters=max(64, n // 2000), seed=seed, part=98)
    ids = [f"img-{i:08d}" for i in range(rows0)] + [f"new-{i:08d}" for i in range(added)]
    hashes = [f"{i + 10**9:064x}" if i < changed else f"{i:064x}" for i in range(rows0)] + \
        [f"{i + 2 * 10**9:064x}" for i in range(added)]
    m = write_embeddings_parts(store, iter([x, fresh]), d, run_id="night2", fingerprint_id=FINGERPRINT,
                               image_ids=ids, content_hashes=hashes)
    own = m["files"]["embeddings"]
    m["files"]["embeddings"] = [own[0], *night1.manifest["files"]["embeddings"][1:], own[1]]
    m["counts"].update(images=n + added, rows=n + added)
    store.write_json(EmbeddingsLayout(store, FINGERPRINT, "night2").manifest, m)
    return changed, added


def build(store: Store, run_id: str, args, incremental: bool) -> tuple[dict, RssSampler]:
    with RssSampler() as rss:
        manifest = index_build.run(BuildIndexConfig(
            store=store.url, name="bench", embeddings=f"{FINGERPRINT}/{run_id}", factory=args.factory,
            memory_budget=args.budget_mib << 20, queries=1000, master=args.master, publish=True,
            incremental=incremental))
    return manifest, rss


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_build_args(p, 4096, "above the index size: lists merged in memory")
    args = p.parse_args()
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    scratch = tempfile.TemporaryDirectory(prefix="lookalike-driver-bench-")  # ~11 GB at 10M, removed at exit
    work = Path(scratch.name)
    store = Store(str(work / "store"))
    t0 = time.perf_counter()
    write_version_streaming(store, args.n, args.d, args.parts, seed=1)
    print(f"data: {args.n:,} × {args.d} in {args.parts} parts ({time.perf_counter() - t0:.0f}s to make); "
          f"{os.cpu_count()} cores; driver RSS before the build {current_rss() / 2**30:.2f} GiB", flush=True)
    results = {}
    for night, incremental in (("night1", False), ("night2", True)):
        if night == "night2":
            changed, added = write_night_two(store, args.n, args.d, seed=1)  # night 1's mixture
            print(f"night 2: {changed:,} changed, {added:,} added", flush=True)
        manifest, rss = build(store, "bench" if night == "night1" else "night2", args, incremental)
        t = manifest["timings"]
        mode = manifest["build_mode"]
        results[night] = {"mode": "incremental" if mode.get("incremental") else "full", "reason": mode.get("reason"),
                          "timings": t, "peak_rss_gib": round(rss.peak_gib, 3),
                          "peak_anon_gib": round(rss.peak_anon / 2**30, 3), "ntotal": manifest["ntotal"],
                          "recall_at_10": manifest["operating_point"]["recall_at_10"]}
        r = results[night]
        print(f"{night}: {r['mode']} build ({r['reason']}) of {r['ntotal']:,} ({manifest['factory']}) in "
              f"{t['total_s']:.0f}s "
              f"({', '.join(f'{k[:-2]} {v:.0f}' for k, v in t.items() if k != 'total_s')}); 10-R@10 "
              f"{r['recall_at_10']:.3f}; driver peak RSS {r['peak_rss_gib']:.2f} GiB, anonymous "
              f"{r['peak_anon_gib']:.2f} GiB", flush=True)
    record(args, {"n": args.n, "d": args.d, **results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
