"""The concept benchmark, beside the brand one: the same concept drawn by other icon sets. Each drawing of a
concept group of the training set's held-out split (test by default: never trained on) is a query against all
the split's concept drawings; its relevant answers are the other sets' drawings of that concept, and drawings of
it by its own set (its outline and filled styles) are junk, neither right nor wrong. Exact search, each recipe
raw; the rows after the first are compared with it query by query (rank-1 hits only one of the two gets, and the
exact sign test).

  lookalike train-data --store STORE                        # the training set (npm packages, rendered once)
  python bench/concepts.py --store STORE                     # ImageNet, then the shipped model
  python bench/concepts.py --store STORE --recipes gem:320@efficientnet_lite0 gem:320 gem:320@training/r2/best.pt
                                                            # a trained run's weights, in the store
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from benchkit.recipes import sign_test, spec_of
from benchkit.record import add_out_arg, record

from lookalike.batch.metrics import judge_queries, summary
from lookalike.core.store import Store
from lookalike.model.loading import load_model
from lookalike.training.data import read_split
from lookalike.training.validation import embed_pngs

DEPTH = 100
SHOWN = {"P@1": "precision@1", "R@10": "recall@10", "mAP": "map", "mAP@R": "map@r"}


def judge(vectors: np.ndarray, table: pa.Table) -> dict:
    """Each row a query against the others: relevant the same group by another collection, junk by its own."""
    groups, sets = np.asarray(table["group"].to_pylist()), np.asarray(table["collection"].to_pylist())
    scores = vectors @ vectors.T
    np.fill_diagonal(scores, -np.inf)
    ranked = np.argsort(-scores, axis=1, kind="stable")[:, :DEPTH + len(table)]
    same = groups[:, None] == groups[None, :]
    other_set = sets[:, None] != sets[None, :]
    relevant = [set(np.flatnonzero(same[q] & other_set[q]).tolist()) for q in range(len(table))]
    junk = [set(np.flatnonzero(same[q] & ~other_set[q]).tolist()) - {q} for q in range(len(table))]
    rankings = [[int(i) for i in row if int(i) != q and int(i) not in junk[q]][:DEPTH] for q, row in enumerate(ranked)]
    judged = judge_queries(rankings, relevant, junk)
    return {**{name: summary(judged)[key] for name, key in SHOWN.items()}, "queries": len(judged.n_relevant),
            "hit@1": judged.relevant[:, 0].copy()}


def table(rows: dict[str, dict], base: str) -> str:
    out = [f"| recipe | queries | {' | '.join(SHOWN)} | vs {base}: rank-1 +/- (sign test p) |",
           "|---|---|" + "---|" * len(SHOWN) + "---|"]
    for name, m in rows.items():
        test = "" if name == base else f"+{m['up']} / -{m['down']} (p = {m['p']:.2g})"
        out.append(f"| {name} | {m['queries']} | " + " | ".join(f"{m[k]:.3f}" for k in SHOWN) + f" | {test} |")
    return "\n".join(out)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--store", required=True, help="the store holding the training set")
    p.add_argument("--training-set", default="default")
    p.add_argument("--split", default="test", choices=("test", "validation"))
    p.add_argument("--recipes", nargs="+", default=["gem:320@efficientnet_lite0", "gem:320"],
                   metavar="POOLING:SIZE[@MODEL|@URI]")
    add_out_arg(p)
    args = p.parse_args()
    drawings = read_split(Store(args.store), args.training_set, args.split).filter(pc.field("kind") == "concept")
    print(f"{drawings.num_rows:,} drawings of {len(set(drawings['group'].to_pylist()))} {args.split} concepts by "
          f"{len(set(drawings['collection'].to_pylist()))} icon sets; a query's relevant answers are the other "
          "sets' drawings of its concept", flush=True)
    rows: dict[str, dict] = {}
    for recipe in args.recipes:
        t0 = time.perf_counter()
        rows[recipe] = judge(embed_pngs(load_model(spec_of(recipe, args.store)), drawings["png"].to_pylist()),
                            drawings)
        print(f"{recipe}: " + ", ".join(f"{k} {rows[recipe][k]:.3f}" for k in SHOWN)
              + f" ({time.perf_counter() - t0:.0f}s)", flush=True)
    base = rows[args.recipes[0]]
    for m in rows.values():
        m["up"] = int((m["hit@1"] & ~base["hit@1"]).sum())
        m["down"] = int((~m["hit@1"] & base["hit@1"]).sum())
        m["p"] = sign_test(m["up"], m["down"])
    print(table(rows, args.recipes[0]))
    figures = {name: {k: v for k, v in m.items() if k != "hit@1"} for name, m in rows.items()}
    record(args, {"split": args.split, "drawings": drawings.num_rows, "recipes": figures},
           table(rows, args.recipes[0]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
