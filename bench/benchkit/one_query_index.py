"""The index both one-query benches search (bench/search_params.py, bench/expansion_cost.py): clustered vectors,
a faiss factory trained and filled in this process, and the float16 re-scoring vectors beside it."""

from __future__ import annotations

import argparse

import faiss
import numpy as np

from lookalike.dev.synthetic import clustered_vectors
from lookalike.index.search import exact_scorer


def add_index_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--d", type=int, default=64)
    parser.add_argument("--factory", default="OPQ16_64,IVF256_HNSW32,PQ16")
    parser.add_argument("--nprobe", type=int, default=16)
    parser.add_argument("--rescore", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)


def build(args: argparse.Namespace) -> tuple[np.ndarray, faiss.Index, faiss.Index]:
    """(vectors, the index over them, the exact re-scorer)."""
    x = clustered_vectors(args.n, args.d, seed=0)
    index = faiss.index_factory(args.d, args.factory, faiss.METRIC_L2)
    index.train(x[: min(args.n, 64 * 256)])
    index.add(x)
    return x, index, exact_scorer(x.astype(np.float16))
