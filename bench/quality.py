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
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from benchkit.recipes import (
    DEPTH,
    RECIPES,
    SHOWN,
    WHITEN_DIM,
    Judge,
    embed_all,
    line,
    sign_test,
    spec_of,
    training_split_of,
)
from benchkit.record import add_out_arg, record

from lookalike.dev.datasets import COLLECTIONS, cross_collection_queries, simple_icons_catalogue


def table(rows: list[tuple[str, dict]], base_name: str, took: dict[str, float]) -> str:
    """The docs' table of a run (docs/quality.md includes the committed record's): every row with its P@1 sign test
    against `base_name`."""
    base = dict(rows)[base_name]
    out = [f"| recipe | embed | P@1 | R@10 | mAP | nDCG@10 | P@1 vs {base_name}: +/- (sign test p) |",
           "|---|---|---|---|---|---|---|"]
    for name, m in rows:
        wins, losses = int((m["hit@1"] & ~base["hit@1"]).sum()), int((~m["hit@1"] & base["hit@1"]).sum())
        test = "" if name == base_name else f"+{wins} / -{losses} (p = {sign_test(wins, losses):.2g})"
        embed = f"{took[name]:.0f} s" if name in took else ""
        out.append(f"| {name} | {embed} | " + " | ".join(f"{m[k]:.3f}" for k in SHOWN) + f" | {test} |")
    return "\n".join(out)


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
    add_out_arg(p)
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
    rows, took = [], {}
    for recipe in args.recipes:
        t0 = time.perf_counter()
        spec = spec_of(recipe, args.weights_store)
        x = embed_all(spec, database["uri"].to_pylist())
        q = embed_all(spec, queries["uri"].to_pylist())
        took[recipe] = time.perf_counter() - t0
        for name, m in ((recipe, judge(x, q)), (f"{recipe}+pcaw{WHITEN_DIM}", judge.whitened(x, q, WHITEN_DIM))):
            rows.append((name, m))
            print(line(name, m, f"  ({took[recipe]:.0f}s embedding)" if name == recipe else ""), flush=True)
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
    bases = args.base or [rows[0][0], f"{rows[0][0]}+pcaw{WHITEN_DIM}"]
    for base_name in bases:
        base = by_name[base_name]
        print(f"\ndifferences from {base_name} (positive = better); P@1 paired per query: queries only this "
              "recipe gets right at rank 1 / only the base does, and the exact two-sided sign-test p-value:")
        for name, m in rows:
            if name == base_name:
                continue
            wins, losses = int((m["hit@1"] & ~base["hit@1"]).sum()), int((~m["hit@1"] & base["hit@1"]).sum())
            print(f"{name:30s} " + "  ".join(f"{k} {m[k] - base[k]:+.3f}" for k in SHOWN)
                  + f"  (+{wins}/-{losses}, p={sign_test(wins, losses):.3f})")
    record(args, {"queries": len(queries), "by_collection": counts, "database": len(database),
                  "split": args.split, "embed_s": took,
                  "recipes": {name: {k: float(m[k]) for k in SHOWN} for name, m in rows}}, table(rows, bases[0], took))
    return 0


if __name__ == "__main__":
    sys.exit(main())
