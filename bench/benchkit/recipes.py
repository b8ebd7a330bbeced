"""Embedding recipes on the logo benchmarks: which model and pooling, embedding both sides, judging the
results, the brand split the training used, and the sign test that compares two settings query by query."""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from lookalike.batch.metrics import judge_queries, summary
from lookalike.embed.engine import EmbeddingEngine
from lookalike.model.loading import cached_model
from lookalike.model.spec import BACKBONE_NAMES, ModelSpec
from lookalike.model.whitening import learn
from lookalike.training.data import brand_group, split_of

# The default recipe (320 px, GeM) first: the whitening sweeps run on it; the ImageNet model beside it.
RECIPES = ("gem:320", "gem:320@efficientnet_lite0", "gem:224", "avg:224", "max:224", "rmac:224", "gem:224:1,0.707",
           "gem:224:1.414,1,0.707")


WHITEN_DIM = 512


DEPTH = 100


SHOWN = ("precision@1", "recall@10", "map", "ndcg@10")


def spec_of(recipe: str, weights_store: str | None = None) -> ModelSpec:
    """POOLING:SIZE[:SCALES][@MODEL|@URI][~WHITENING]: the default model, a model by name, or the default model's
    architecture with weights from a URI (a trained model); ~ a whitening's URI (`lookalike whiten`)."""
    recipe, _, whitening = recipe.partition("~")
    recipe, _, weights = recipe.partition("@")
    pooling, size, *scales = recipe.split(":")
    name = weights if weights in BACKBONE_NAMES else None
    if name:
        weights = ""
    elif weights and "://" not in weights and not weights.startswith("/") and weights_store:
        weights = f"{weights_store.rstrip('/')}/{weights}"
    return ModelSpec(name=name, pooling=pooling, image_size=int(size), weights_uri=weights or None,
                     whitening_uri=whitening or None,
                     scales=tuple(float(s) for s in scales[0].split(",")) if scales else (1.0,))


def training_split_of(brand: str, seed: int = 0) -> str:
    """Which side of the training set's split (training/data.py) a benchmark brand is on."""
    return split_of(f"brand:{brand_group(brand)}", seed)


def add_tuned_recipe_args(p: argparse.ArgumentParser, cache_name: str) -> None:
    """The arguments of a bench that embeds one recipe once (cached per model) and tunes on one side of the brands,
    reporting on the other: bench/verify.py, bench/rerank.py. `cache_name` has a {} for the fingerprint id."""
    p.add_argument("--recipe", default="gem:320", help="POOLING:SIZE[:SCALES][@MODEL|@URI], as bench/quality.py")
    p.add_argument("--cache", default=None,
                   help=f"what is embedded, made once (default: DATA/{cache_name.format('<fingerprint id>')})")
    p.add_argument("--training-split", action="store_true",
                   help="tune on the training split's validation brands, report on its test brands")
    p.add_argument("--split-seed", type=int, default=0, help="the training set's split seed")
    p.set_defaults(cache_name=cache_name)


def recipe_and_cache(args: argparse.Namespace) -> tuple[ModelSpec, Path]:
    """The recipe's model spec and its cache file: named by the model's fingerprint, so a changed default model or
    retrained weights never reuse another model's vectors."""
    spec = spec_of(args.recipe)
    print(f"recipe {args.recipe}: {spec.name}", flush=True)
    fingerprint = cached_model(spec, "cpu").fingerprint_id
    return spec, Path(args.cache or Path(args.data) / args.cache_name.format(fingerprint))


def tune_and_report_rows(brands: list[str], args: argparse.Namespace) -> tuple[np.ndarray, np.ndarray]:
    """Rows to tune on and rows to report: the training split's validation and test brands with --training-split
    (the fair split for a trained model), else two halves of the brands by a seeded hash."""
    if args.training_split:
        sides = np.array([training_split_of(b, args.split_seed) for b in brands])
        return np.flatnonzero(sides == "validation"), np.flatnonzero(sides == "test")
    half = np.array([int(hashlib.sha1(f"15:{b}".encode()).hexdigest(), 16) % 2 for b in brands])
    return np.flatnonzero(half == 0), np.flatnonzero(half == 1)


def embed_all(spec: ModelSpec, uris: list[str]) -> np.ndarray:
    vectors, failed = EmbeddingEngine(cached_model(spec, "cpu"), batch_size=32, io_threads=2).embed_all(uris)
    if failed:
        raise RuntimeError(f"{len(failed)} image(s) could not be embedded, e.g. {next(iter(failed.values()))}")
    return vectors


class Judge:
    def __init__(self, db_ids: list[str], relevant: list[set]):
        self.db_ids, self.relevant = db_ids, relevant

    def __call__(self, x: np.ndarray, q: np.ndarray) -> dict[str, Any]:
        flat = faiss.IndexFlatIP(x.shape[1])
        flat.add(x)
        _, nb = flat.search(q, DEPTH)
        judged = judge_queries([[self.db_ids[i] for i in row] for row in nb], self.relevant)
        # Per-query hits at rank 1, for paired comparisons between recipes (every query has its answer).
        return {**summary(judged), "hit@1": judged.relevant[:, 0].copy()}

    def whitened(self, x: np.ndarray, q: np.ndarray, dim: int, sample: int | None = None) -> dict[str, Any]:
        """PCA-whitening (eigenvalues^-1/2) learned on the database vectors (or a random sample of them, as
        a young catalogue would have), applied to both sides, then L2."""
        rows = np.random.default_rng(0).choice(len(x), sample, replace=False) if sample else slice(None)
        w = learn(x[rows], dim)
        return self(w.apply(x), w.apply(q))


def line(name: str, m: dict[str, Any], note: str = "") -> str:
    return (f"{name:30s} P@1 {m['precision@1']:.3f}  R@10 {m['recall@10']:.3f}  mAP {m['map']:.3f}  "
            f"nDCG@10 {m['ndcg@10']:.3f}{note}")


def sign_test(wins: int, losses: int) -> float:
    """Exact two-sided binomial test of wins vs losses at p = 1/2 (McNemar's exact test on discordant pairs)."""
    from math import comb
    n = wins + losses
    if n == 0:
        return 1.0
    tail = sum(comb(n, i) for i in range(min(wins, losses) + 1)) / 2 ** n
    return min(1.0, 2 * tail)


def exact(x: np.ndarray, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    flat = faiss.IndexFlatIP(x.shape[1])
    flat.add(np.ascontiguousarray(x, dtype=np.float32))
    scores, ids = flat.search(np.ascontiguousarray(q, dtype=np.float32), k)
    return ids, scores
