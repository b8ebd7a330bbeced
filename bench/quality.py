"""Retrieval quality of embedding recipes on a real cross-collection logo set, side by side in one run:

  database  every simple-icons logo (~3,470, monochrome glyphs in their brand colour)
  queries   the same brands as drawn by @iconify-json/logos (~700, full colour, often with a wordmark) and by
            devicon (~380, developer tools); each query's one relevant answer is its brand's simple-icons
            logo, all others are distractors

For each recipe (pooling × input size × scales × model) it embeds both sides, by default with the default model
(EfficientNet-Lite0 trained on marks, efficientnet_lite0_marks), searches exactly, and prints P@1, R@10, mAP
(= MRR here, one relevant item) and nDCG@10, raw and after a PCA-whitening learned on the database vectors (what
the nightly reindex does), then a sweep of whitening sizes on the first recipe and the differences from the first
recipe. Quality figures are deterministic: no rounds needed.

  python bench/quality.py
  python bench/quality.py --recipes gem:224 avg:224 gem:224:1.414,1,0.707 --collections iconify
  python bench/quality.py --recipes gem:224 gem:320 --whiten-dims --whiten-samples --base gem:224+pcaw512
  python bench/quality.py --recipes gem:320@efficientnet_lite0 gem:320 --split test
  python bench/quality.py --recipes gem:320 gem:320@training/r1/best.pt --weights-store STORE --split test

A recipe's `~URI` applies a stored whitening (e.g. a learned one, `lookalike whiten --training-set`) in the model;
its `@MODEL` names another model (`@efficientnet_lite0`: the ImageNet weights, the default before training),
its `@URI` gives the default architecture's weights (a trained model; relative URIs are read from --weights-store).
`--split test` keeps the queries whose brand is a test brand of the training set's split (training/data.py): no
collection contributed a drawing of those brands to training.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))

import faiss  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from lookalike.batch.metrics import judge_queries, summary  # noqa: E402
from lookalike.dev.datasets import COLLECTIONS, cross_collection_queries, simple_icons_catalogue  # noqa: E402
from lookalike.embed.engine import EmbeddingEngine  # noqa: E402
from lookalike.model.loading import cached_model  # noqa: E402
from lookalike.model.spec import BACKBONE_NAMES, ModelSpec  # noqa: E402
from lookalike.model.whitening import learn  # noqa: E402
from lookalike.training.data import brand_group, split_of  # noqa: E402

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


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="data", help="where the npm packages and rasterised logos are kept")
    p.add_argument("--recipes", nargs="+", default=list(RECIPES),
                   metavar="POOLING:SIZE[:SCALES][@MODEL|@URI][~WHITENING]",
                   help="e.g. gem:224, multi-scale gem:224:1.414,1,0.707, gem:320@efficientnet_lite0~lw.npz")
    p.add_argument("--collections", nargs="+", default=list(COLLECTIONS), choices=COLLECTIONS)
    p.add_argument("--whiten-samples", nargs="*", type=int, default=[600, 768, 1000, 1536, 2500],
                   help=f"on the first recipe, the {WHITEN_DIM}-d whitening learned from only this many random "
                        "database vectors (how soon the reindex may learn it)")
    p.add_argument("--base", nargs="*", default=None,
                   help="rows the others are compared with, each in turn (default: the first and its whitened "
                        f"{WHITEN_DIM}-d version)")
    p.add_argument("--whiten-dims", nargs="*", type=int, default=[1280, 256],
                   help=f"other PCA-whitening sizes tried on the first recipe (every recipe gets {WHITEN_DIM})")
    p.add_argument("--weights-store", default=None, help="where relative @URI weights of recipes are read from")
    p.add_argument("--split", default=None, choices=("train", "validation", "test"),
                   help="only the queries of brands on this side of the training split (test: never trained on)")
    p.add_argument("--split-seed", type=int, default=0, help="the training set's split seed")
    args = p.parse_args()
    data = Path(args.data)
    database = pq.read_table(simple_icons_catalogue(data, limit=None))
    queries = pq.read_table(cross_collection_queries(data, collections=args.collections))
    if args.split:
        keep = [training_split_of(b, args.split_seed) == args.split for b in queries["relevant"].to_pylist()]
        queries = queries.filter(pa.array(keep))
    judge = Judge(database["image_id"].to_pylist(), [{b} for b in queries["relevant"].to_pylist()])
    counts = {c: queries["collection"].to_pylist().count(c) for c in args.collections}
    print(f"{len(queries):,} queries ({', '.join(f'{n} {c}' for c, n in counts.items())}) against "
          f"{len(database):,} simple-icons logos, exact search, top {DEPTH}", flush=True)
    rows = []
    for recipe in args.recipes:
        t0 = time.perf_counter()
        spec = spec_of(recipe, args.weights_store)
        x = embed_all(spec, database["uri"].to_pylist())
        q = embed_all(spec, queries["uri"].to_pylist())
        took = time.perf_counter() - t0
        for name, m in ((recipe, judge(x, q)), (f"{recipe}+pcaw{WHITEN_DIM}", judge.whitened(x, q, WHITEN_DIM))):
            rows.append((name, m))
            print(line(name, m, f"  ({took:.0f}s embedding)" if name == recipe else ""), flush=True)
        if recipe == args.recipes[0]:
            for dim in args.whiten_dims:
                rows.append((f"{recipe}+pcaw{dim}", judge.whitened(x, q, dim)))
                print(line(*rows[-1]), flush=True)
            for sample in args.whiten_samples:
                rows.append((f"{recipe}+pcaw{WHITEN_DIM}-from{sample}", judge.whitened(x, q, WHITEN_DIM, sample)))
                print(line(*rows[-1]), flush=True)
    p1 = rows[0][1]["precision@1"]
    print(f"\none standard error of P@1: ±{np.sqrt(p1 * (1 - p1) / len(queries)):.3f}")
    by_name = dict(rows)
    for base_name in args.base or [rows[0][0], f"{rows[0][0]}+pcaw{WHITEN_DIM}"]:
        base = by_name[base_name]
        print(f"\ndifferences from {base_name} (positive = better); P@1 paired per query: queries only this "
              "recipe gets right at rank 1 / only the base does, and the exact two-sided sign-test p-value:")
        for name, m in rows:
            if name == base_name:
                continue
            wins, losses = int((m["hit@1"] & ~base["hit@1"]).sum()), int((~m["hit@1"] & base["hit@1"]).sum())
            print(f"{name:30s} " + "  ".join(f"{k} {m[k] - base[k]:+.3f}" for k in SHOWN)
                  + f"  (+{wins}/-{losses}, p={sign_test(wins, losses):.3f})")
    return 0


def sign_test(wins: int, losses: int) -> float:
    """Exact two-sided binomial test of wins vs losses at p = 1/2 (McNemar's exact test on discordant pairs)."""
    from math import comb
    n = wins + losses
    if n == 0:
        return 1.0
    tail = sum(comb(n, i) for i in range(min(wins, losses) + 1)) / 2 ** n
    return min(1.0, 2 * tail)


if __name__ == "__main__":
    sys.exit(main())
