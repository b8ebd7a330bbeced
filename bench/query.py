"""Query worker throughput and latency, side by side with in-process search on the same index and queries:

  http        `lookalike serve` in its own process, loopback HTTP, N client threads (one connection each)
  in-process  the same work from N threads of this process, no HTTP, no JSON: lookalike.retrieval.query's
              search for vectors, the Python API's search (embedding, local features, verification) for images

Two workloads: search by vector (synthetic clustered vectors, an IVF-PQ index chosen by build_index under a
memory budget, the manifest's operating point with exact re-scoring) and search by image (simple-icons logos
embedded with the bundled model, altered copies uploaded as JPEG). Prints QPS and p50/p99 latency per
concurrency, and the http/in-process ratios. Every cell runs for --seconds; the machine is noisy, read ratios.

  python bench/query.py                      # 200k × 256 vectors, 500 logos, 1/4/16 clients, 5 s per cell
  python bench/query.py --n 50000 --logos 200 --seconds 2
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
from benchkit.record import add_out_arg, record

from lookalike.api.index import open_index
from lookalike.core.spark import IN_PROCESS
from lookalike.core.store import Store
from lookalike.dev.datasets import logo_variant, simple_icons_catalogue
from lookalike.dev.net import free_port
from lookalike.dev.synthetic import clustered_vectors, write_embeddings_version
from lookalike.embed import job as embed
from lookalike.embed.config import EmbedConfig
from lookalike.index import build as index_build
from lookalike.index.build import BuildIndexConfig
from lookalike.retrieval.query import params_for, search_vectors
from lookalike.serve.worker import ServedIndex, WorkerSettings

CONCURRENCY = (1, 4, 16)
K = 10


def measure(call: Callable[[int], None], clients: int, seconds: float) -> dict[str, float]:
    """`clients` threads call `call(i)` with a running counter until the time is up; QPS and latencies."""
    latencies: list[float] = []
    lock = threading.Lock()
    stop = time.perf_counter() + seconds
    counter = iter(range(10**9))

    def client() -> None:
        mine = []
        while time.perf_counter() < stop:
            t0 = time.perf_counter()
            call(next(counter))
            mine.append(time.perf_counter() - t0)
        with lock:
            latencies.extend(mine)

    started = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    ms = np.array(latencies) * 1000
    return {"qps": len(ms) / wall, "p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)),
            "requests": len(ms)}


def http_client(url: str, path: str, body: Callable[[int], dict]) -> Callable[[int], None]:
    local = threading.local()

    def call(i: int) -> None:
        if not hasattr(local, "client"):
            local.client = httpx.Client(base_url=url, timeout=60)
        local.client.post(path, **body(i)).raise_for_status()
    return call


def start_worker(store: Path, name: str, cache: Path, log: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "lookalike.cli.main", "serve", "--store", str(store), "--index",
                             name, "--port", str(port), "--cache-dir", str(cache), "--max-batch", "256"],
                            stdout=log.open("wb"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"worker exited:\n{log.read_text()}")
        try:
            if httpx.get(url + "/healthz").status_code == 200:
                return proc, url
        except httpx.TransportError:
            time.sleep(0.2)
    raise TimeoutError("the worker did not start")


def vector_workload(work: Path, n: int, d: int) -> tuple[Path, np.ndarray]:
    store = work / "vector-store"
    if not (store / "indexes" / "vectors" / "LATEST").exists():
        vectors = clustered_vectors(n, d, clusters=1024, spread=0.6, seed=5)
        write_embeddings_version(Store(str(store)), vectors, parts=4)
        index_build.run(BuildIndexConfig(store=str(store), name="vectors", master=IN_PROCESS, publish=True,
                                         memory_budget=max(8 << 20, n * 48), queries=500))
    queries = clustered_vectors(2000, d, clusters=1024, spread=0.6, seed=6)  # same clusters, other draws
    return store, queries


def image_workload(work: Path, logos: int) -> tuple[Path, list[bytes]]:
    store = work / "logo-store"
    table = simple_icons_catalogue(work / "data", limit=logos)
    if not (store / "indexes" / "logos" / "LATEST").exists():
        embed.run(EmbedConfig(images=str(table), store=str(store), master=IN_PROCESS, images_per_task=250))
        index_build.run(BuildIndexConfig(store=str(store), name="logos", master=IN_PROCESS, publish=True,
                                         queries=100))
    import pyarrow.parquet as pq
    slugs = pq.read_table(table, columns=["image_id"])["image_id"].to_pylist()[::max(1, logos // 32)]
    return store, [logo_variant(work / "data", s).read_bytes() for s in slugs]


def run_pair(label: str, http_call, local_call, seconds: float) -> list[dict]:
    rows = []
    for clients in CONCURRENCY:
        http_call(0), local_call(0)  # warm: connections, caches, first-touch of mapped pages
        h = measure(http_call, clients, seconds)
        p = measure(local_call, clients, seconds)
        rows.append({"workload": label, "clients": clients, "http": h, "in_process": p,
                     "qps_ratio": h["qps"] / p["qps"], "p50_ratio": h["p50_ms"] / p["p50_ms"]})
        print(f"{label:7s} {clients:>3d} clients | http {h['qps']:8.1f} QPS p50 {h['p50_ms']:7.2f} ms "
              f"p99 {h['p99_ms']:7.2f} ms | in-process {p['qps']:8.1f} QPS p50 {p['p50_ms']:7.2f} ms "
              f"p99 {p['p99_ms']:7.2f} ms | QPS ratio {rows[-1]['qps_ratio']:.2f}, p50 ratio "
              f"{rows[-1]['p50_ratio']:.2f}", flush=True)
    return rows


def bench_index(kind: str, store: Path, name: str, work: Path, seconds: float, queries: np.ndarray | None = None,
                uploads: list[bytes] | None = None) -> list[dict]:
    served = ServedIndex(Store(str(store)), WorkerSettings(name=name, cache_dir=str(work / "cache-local")))
    served.start(watch=False)
    version = served.current
    params = params_for(version)
    m = version.manifest
    print(f"{kind}: index {m['factory']} over {m['ntotal']:,} vectors, default {m['default_search']}", flush=True)
    if kind == "vector":
        def local(i: int) -> None:
            search_vectors(version, queries[i % len(queries)][None, :], K, params)

        def body(i: int) -> dict:
            return {"json": {"vectors": [queries[i % len(queries)].tolist()], "k": K}}
    else:
        # What the worker's upload route does (embedding, the query's local features, verification), in-process.
        index = open_index(str(store), name, cache_dir=str(work / "cache-local"))

        def local(i: int) -> None:
            index.search(uploads[i % len(uploads)], K)

        def body(i: int) -> dict:
            return {"files": {"images": ("q.jpg", uploads[i % len(uploads)], "image/jpeg")}, "data": {"k": str(K)}}
    proc, url = start_worker(store, name, work / "cache-http", work / f"worker-{name}.log")
    model = m["fingerprint_id"].rsplit("-", 1)[0]
    what = (f"by vector: {m['ntotal']:,} × {m['dim']}, {m['factory']}, nprobe {params.nprobe}, "
            f"rescore {params.rescore}" if kind == "vector" else
            f"by image: {m['ntotal']:,} logos, JPEG upload, {model} on CPU")
    try:
        return [{**row, "described": what} for row in
                run_pair(kind, http_client(url, f"/search/{kind}s", body), local, seconds)]
    finally:
        proc.terminate()
        proc.wait(30)


def ms(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


def table(rows: list[dict]) -> str:
    """The docs' table of a run (docs/performance.md includes the committed record's)."""
    out = ["| workload | clients | HTTP QPS | p50 / p99 ms | in-process QPS | p50 / p99 ms | QPS ratio |",
           "|---|---|---|---|---|---|---|"]
    shown = None
    for r in rows:
        h, p = r["http"], r["in_process"]
        out.append(f"| {r['described'] if r['described'] != shown else ''} | {r['clients']} | {h['qps']:,.1f} | "
                   f"{ms(h['p50_ms'])} / {ms(h['p99_ms'])} | {p['qps']:,.1f} | {ms(p['p50_ms'])} / {ms(p['p99_ms'])} | "
                   f"{r['qps_ratio']:.2f} |")
        shown = r["described"]
    return "\n".join(out)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", default=".bench-data/query", help="where the stores and the logo set are kept")
    p.add_argument("--n", type=int, default=200_000, help="vectors in the vector-search index")
    p.add_argument("--d", type=int, default=256)
    p.add_argument("--logos", type=int, default=500)
    p.add_argument("--seconds", type=float, default=5.0, help="duration of each measured cell")
    p.add_argument("--only", choices=("vector", "image"), default=None, help="run one workload")
    add_out_arg(p)
    args = p.parse_args()
    work = Path(args.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")

    print(f"preparing: {args.n:,}×{args.d} vectors and {args.logos} logos under {work} ...", flush=True)
    results = []
    if args.only in (None, "vector"):
        vector_store, queries = vector_workload(work, args.n, args.d)
        results += bench_index("vector", vector_store, "vectors", work, args.seconds, queries=queries)
    if args.only in (None, "image"):
        logo_store, uploads = image_workload(work, args.logos)
        results += bench_index("image", logo_store, "logos", work, args.seconds, uploads=uploads)
    record(args, results, table(results))
    print("\nratio = http / in-process on the same index, queries and concurrency (QPS: higher is better for "
          "http; p50: lower is)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
