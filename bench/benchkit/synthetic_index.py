"""Large synthetic embeddings versions written part by part, for the index-build and driver-memory benches."""

from __future__ import annotations

import argparse

import numpy as np

from benchkit.record import add_out_arg
from lookalike.core.store import Store
from lookalike.dev.synthetic import clustered_vectors, write_embeddings_parts

FINGERPRINT = "synthetic-ondisk"


def write_version_streaming(store: Store, n: int, d: int, parts: int, seed: int) -> np.ndarray:
    """One part at a time (each its own seeded slice of one mixture); returns 1,000 query vectors."""
    bounds = np.linspace(0, n, parts + 1).astype(int)
    queries = []

    def generate():
        for p in range(parts):
            x = clustered_vectors(int(bounds[p + 1] - bounds[p]), d, clusters=max(64, n // 2000), seed=seed, part=p)
            queries.append(x[:: max(1, len(x) // (1000 // parts + 1))][: 1000 // parts + 1])
            yield x
    write_embeddings_parts(store, generate(), d, run_id="bench", fingerprint_id=FINGERPRINT)
    return np.concatenate(queries)[:1000]


def add_build_args(p: argparse.ArgumentParser, budget_mib: int, budget_help: str) -> None:
    """The 10M build's data and index arguments, shared with bench/driver_memory.py."""
    p.add_argument("--n", type=int, default=10_000_000)
    p.add_argument("--d", type=int, default=128)
    p.add_argument("--parts", type=int, default=20)
    p.add_argument("--factory", default="OPQ32_128,IVF4096,PQ32")
    p.add_argument("--budget-mib", type=int, default=budget_mib, help=budget_help)
    p.add_argument("--master", default="local[2]")
    add_out_arg(p)


def version_parts(store: Store) -> list[str]:
    from lookalike.embed.versions import open_version
    return open_version(store, FINGERPRINT, "bench").parts
