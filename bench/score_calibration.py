"""Scores people can read: does a hit's percentile among the catalogue's nearest-neighbour cosines
(retrieval/calibration.py, what `lookalike explain`, the worker and the page show) mean the same under two models,
where the raw cosine does not?

  database  every simple-icons logo (~3,470)
  queries   the same brands drawn by @iconify-json/logos and devicon (~1,080); each query's one right answer is its
            brand's simple-icons logo

For each recipe (default: the shipped marks model and the ImageNet weights it was trained from) it embeds both
sides, calibrates on the database (each logo's nearest other logo; the worker samples 2,000, and the bench says how
far that sample's percentiles are from the whole catalogue's), searches exactly and reports, side by side:

- where right and wrong top hits and the noise below them (ranks 2-10) sit, as cosines and as percentiles;
- the threshold an examiner would set on the base recipe to accept top hits at 90 % precision, as a cosine and as a
  percentile, and what each gives when the same number is used with the other recipe: a readable score keeps its
  precision there, a raw one does not.

  python bench/score_calibration.py
  python bench/score_calibration.py --recipes gem:320 gem:320@efficientnet_lite0 --split test
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from benchkit.recipes import embed_all, exact, spec_of, training_split_of
from benchkit.record import add_out_arg, record

from lookalike.dev.datasets import COLLECTIONS, cross_collection_queries, simple_icons_catalogue
from lookalike.retrieval.calibration import SAMPLE, ScoreCalibration

TARGET_PRECISION = 0.9
NOISE_RANKS = slice(1, 10)


def threshold_for(scores: np.ndarray, right: np.ndarray, precision: float) -> float:
    """The lowest threshold at which the top hits scoring at or above it are right at least `precision` of the
    time (inf where none is)."""
    order = np.argsort(-scores, kind="stable")
    hits = np.cumsum(right[order]) / np.arange(1, len(order) + 1)
    ok = np.flatnonzero(hits >= precision)
    return float(scores[order][ok[-1]]) if len(ok) else float("inf")


def accepted(scores: np.ndarray, right: np.ndarray, threshold: float) -> dict[str, float]:
    taken = scores >= threshold
    return {"precision": round(float(right[taken].mean()), 3) if taken.any() else float("nan"),
            "accepted": round(float(taken.mean()), 3), "recall": round(float((taken & right).mean()), 3)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="data", help="where the npm packages and rasterised logos are kept")
    p.add_argument("--recipes", nargs="+", default=["gem:320", "gem:320@efficientnet_lite0"],
                   metavar="POOLING:SIZE[@MODEL|@URI]", help="the first is the base the thresholds are set on")
    p.add_argument("--split", default=None, choices=("train", "validation", "test"),
                   help="only the queries of brands on this side of the training split (test: never trained on)")
    p.add_argument("--weights-store", default=None, help="where relative @URI weights of recipes are read from")
    add_out_arg(p)
    args = p.parse_args()
    data = Path(args.data)
    database = pq.read_table(simple_icons_catalogue(data, limit=None))
    queries = pq.read_table(cross_collection_queries(data, collections=COLLECTIONS))
    if args.split:
        sides = [training_split_of(b) == args.split for b in queries["relevant"].to_pylist()]
        queries = queries.filter(pa.array(sides))
    row_of = {i: r for r, i in enumerate(database["image_id"].to_pylist())}
    relevant = np.array([row_of[b] for b in queries["relevant"].to_pylist()])
    print(f"{len(queries):,} queries against {len(database):,} simple-icons logos, exact search", flush=True)

    runs = {}
    for recipe in args.recipes:
        t0 = time.perf_counter()
        spec = spec_of(recipe, args.weights_store)
        x, q = embed_all(spec, database["uri"].to_pylist()), embed_all(spec, queries["uri"].to_pylist())
        ids, scores = exact(x, x, 2)
        whole = ScoreCalibration.from_neighbours(np.arange(len(x)), scores, ids)
        sample = np.sort(np.random.default_rng(0).choice(len(x), min(SAMPLE, len(x)), replace=False))
        sampled = ScoreCalibration.from_neighbours(sample, scores[sample], ids[sample])
        hit_ids, hit_scores = exact(x, q, 10)
        top, right = hit_scores[:, 0], hit_ids[:, 0] == relevant
        noise = hit_scores[:, NOISE_RANKS][hit_ids[:, NOISE_RANKS] != relevant[:, None]]
        pct = np.vectorize(whole.percentile)
        runs[recipe] = {"top": top, "right": right, "top_pct": pct(top), "figures": {
            "P@1": round(float(right.mean()), 3),
            "catalogue nearest-neighbour cosine, median": round(float(np.median(whole.nearest)), 3),
            "right top hit": {"cosine": round(float(np.median(top[right])), 3),
                              "percentile": float(np.median(pct(top[right])))},
            "wrong top hit": {"cosine": round(float(np.median(top[~right])), 3),
                              "percentile": float(np.median(pct(top[~right])))},
            "noise, ranks 2-10": {"cosine": round(float(np.median(noise)), 3),
                                  "percentile": float(np.median(pct(noise)))},
            "sample of 2,000 vs whole catalogue: largest percentile difference": round(float(np.max(np.abs(
                pct(hit_scores.ravel()) - np.vectorize(sampled.percentile)(hit_scores.ravel())))), 1),
            "seconds": round(time.perf_counter() - t0, 1)}}
        print(f"{recipe}: {runs[recipe]['figures']}", flush=True)

    base = runs[args.recipes[0]]
    cosine_at = threshold_for(base["top"], base["right"], TARGET_PRECISION)
    percentile_at = threshold_for(base["top_pct"], base["right"], TARGET_PRECISION)
    print(f"\nthresholds that accept {args.recipes[0]}'s top hits at {TARGET_PRECISION:.0%} precision: cosine "
          f"{cosine_at:.3f}, percentile {percentile_at:g}; the same numbers with each recipe:")
    for recipe, run in runs.items():
        by_cosine = accepted(run["top"], run["right"], cosine_at)
        by_percentile = accepted(run["top_pct"], run["right"], percentile_at)
        run["figures"]["at the base's cosine threshold"] = by_cosine
        run["figures"]["at the base's percentile threshold"] = by_percentile
        print(f"  {recipe:32s} cosine: {by_cosine}   percentile: {by_percentile}")
    figures = {"queries": len(queries), "database": len(database), "split": args.split,
               "target_precision": TARGET_PRECISION, "cosine_threshold": round(cosine_at, 4),
               "percentile_threshold": percentile_at, "recipes": {r: run["figures"] for r, run in runs.items()}}
    record(args, figures, table(figures))
    return 0


def table(figures: dict) -> str:
    """The docs' table: where hits sit as cosines and percentiles, and each threshold used across recipes."""
    out = ["| recipe | P@1 | right top hit: cosine / pct | wrong top hit | noise (ranks 2-10) | at cosine "
           f"≥ {figures['cosine_threshold']:.3f}: precision / accepted | at percentile ≥ "
           f"{figures['percentile_threshold']:g}: precision / accepted |", "|---|---|---|---|---|---|---|"]
    for recipe, f in figures["recipes"].items():
        cells = [f"{f[k]['cosine']:.3f} / {f[k]['percentile']:g}" for k in ("right top hit", "wrong top hit",
                                                                            "noise, ranks 2-10")]
        c, p = f["at the base's cosine threshold"], f["at the base's percentile threshold"]
        out.append(f"| `{recipe}` | {f['P@1']:.3f} | " + " | ".join(cells)
                   + f" | {c['precision']:.3f} / {c['accepted']:.3f} | {p['precision']:.3f} / {p['accepted']:.3f} |")
    return "\n".join(out)


if __name__ == "__main__":
    sys.exit(main())
