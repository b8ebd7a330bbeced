"""Re-ranking after the first search, side by side with search without it, on the cross-collection logo set of
bench/quality.py (simple-icons database, iconify-logos + devicon queries) at a recipe of bench/quality.py (default
gem:320, the default model; gem:320@efficientnet_lite0 for the ImageNet weights), PCA-whitened to 512 d, exact
search:

  αQE            query expansion over the top n neighbours, weights cos^α            (retrieval.rerank.expand)
  DBA            every database vector augmented with its own top n neighbours         (retrieval.rerank.expand)
  DBA + αQE      both
  k-reciprocal   the shortlist re-ordered by k-reciprocal Jaccard distance            (k_reciprocal_rerank)

Two protocols: "cross-collection" (each iconify/devicon query has one relevant answer, its brand's simple-icons
logo) and "all renditions" (all three collections in one database, every logo of a brand drawn by at least two
collections a query, its brand's other renditions the relevant answers, itself left out): re-ranking in the
descriptor space has more to work with where several answers are relevant.

The brands are split in two by a seeded hash of the brand id: each method's settings are chosen on the "tune"
half (best mAP) and reported on the "test" half, paired per query against no re-ranking with the exact sign
test, so no reported figure was tuned on. With --training-split the training set's split decides instead: tuned
on its validation brands, reported on its test brands (the fair split for a trained model). Vectors are embedded
once per model and kept in --cache.

  python bench/rerank.py
  python bench/rerank.py --training-split
  python bench/rerank.py --recipe gem:320@efficientnet_lite0
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
from benchkit.recipes import add_tuned_recipe_args, embed_all, exact, recipe_and_cache, sign_test, tune_and_report_rows
from benchkit.record import add_out_arg, record

from lookalike.batch.metrics import judge_queries, summary
from lookalike.dev.datasets import COLLECTIONS, cross_collection_queries, simple_icons_catalogue
from lookalike.index.rerank import Expansion, KReciprocal, NeighbourLists, expand, k_reciprocal_rerank
from lookalike.model.spec import ModelSpec
from lookalike.model.whitening import learn

SHORTLIST = 100
SHOWN = ("precision@1", "recall@10", "map")
OFF = Expansion()


def vectors(data: Path, cache: Path, spec: ModelSpec) -> dict[str, np.ndarray]:
    if cache.exists():
        return dict(np.load(cache))
    database = pq.read_table(simple_icons_catalogue(data, limit=None))
    queries = pq.read_table(cross_collection_queries(data, collections=list(COLLECTIONS)))
    out = {"x": embed_all(spec, database["uri"].to_pylist()), "q": embed_all(spec, queries["uri"].to_pylist()),
           "db_ids": np.array(database["image_id"].to_pylist()), "relevant": np.array(queries["relevant"].to_pylist())}
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, **out)
    return out


class Bench:
    def __init__(self, x: np.ndarray, q: np.ndarray, db_ids: list[str], relevant: list[set[str]],
                 query_rows: np.ndarray | None = None):
        """query_rows: where the queries are database rows (left out of their own results), else None."""
        self.x, self.q, self.db_ids, self.relevant, self.query_rows = x, q, db_ids, relevant, query_rows
        self.self_ids, self.self_scores = exact(x, x, SHORTLIST + 1)  # each item's own list (itself first)
        self._dba: dict[Expansion, np.ndarray] = {}

    def dba(self, e: Expansion) -> np.ndarray:
        if e not in self._dba:
            ids, scores = self.self_ids[:, 1:], self.self_scores[:, 1:]  # without the item itself
            self._dba[e] = expand(self.x, self.x[ids[:, :e.n]], scores[:, :e.n], e)
        return self._dba[e]

    def run(self, dba: Expansion = OFF, qe: Expansion = OFF, kr: KReciprocal | None = None
            ) -> tuple[np.ndarray, np.ndarray]:
        x = self.dba(dba) if dba.enabled else self.x
        q = self.q if self.query_rows is None else x[self.query_rows]  # the database's own (augmented) rows
        ids, scores = self._search(x, q)
        if qe.enabled:
            ids, scores = self._search(x, expand(q, x[ids[:, :qe.n]], scores[:, :qe.n], qe))
        if kr is not None:
            self_ids, self_scores = exact(x, x, SHORTLIST + 1) if dba.enabled else (self.self_ids, self.self_scores)
            lists = NeighbourLists.of_arrays(self_ids, self_scores, SHORTLIST)
            ids, scores = k_reciprocal_rerank(ids, scores, lists, kr)
        return ids, scores

    def _search(self, x: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        ids, scores = exact(x, q, SHORTLIST + 1)
        if self.query_rows is None:
            return ids[:, :SHORTLIST], scores[:, :SHORTLIST]
        own = ids == self.query_rows[:, None]  # leave the query itself out
        order = np.argsort(own, axis=1, kind="stable")[:, :SHORTLIST]
        return np.take_along_axis(ids, order, axis=1), np.take_along_axis(scores, order, axis=1)

    def judge(self, ids: np.ndarray, rows: np.ndarray) -> dict[str, Any]:
        judged = judge_queries([[self.db_ids[i] for i in row if i >= 0] for row in ids[rows]],
                               [self.relevant[r] for r in rows])
        return {**summary(judged), "hit@1": judged.relevant[:, 0].copy()}


def grid() -> dict[str, list[dict[str, Any]]]:
    qe = [Expansion(n, a) for n, a in itertools.product((1, 2, 3, 5), (1.0, 3.0, 5.0))]
    dba = [Expansion(n, a) for n, a in itertools.product((1, 2, 3), (1.0, 3.0))]
    kr = [KReciprocal(k1, k2, lam) for k1, k2, lam in itertools.product((10, 20), (1, 4), (0.3, 0.7))]
    return {"αQE": [{"qe": e} for e in qe], "DBA": [{"dba": e} for e in dba],
            "DBA + αQE": [{"dba": d, "qe": e} for d in dba for e in qe if e.n <= 3],
            "k-reciprocal": [{"kr": k} for k in kr]}


def describe(settings: dict[str, Any]) -> str:
    parts = []
    for key, value in settings.items():
        if isinstance(value, Expansion):
            parts.append(f"{key} n={value.n} α={value.alpha:g}")
        else:
            parts.append(f"k1={value.k1} k2={value.k2} λ={value.lambda_:g}")
    return ", ".join(parts)


def compare(protocol: str, bench: Bench, tune: np.ndarray, test: np.ndarray) -> dict[str, Any]:
    print(f"\n{protocol}: settings chosen on {len(tune)} tune-brand queries, reported on {len(test)} test-brand "
          "queries")
    base_ids, _ = bench.run()
    base = bench.judge(base_ids, test)
    print(f"{'no re-ranking':44s} " + "  ".join(f"{k} {base[k]:.3f}" for k in SHOWN))
    figures: dict[str, Any] = {"tune_queries": len(tune), "test_queries": len(test),
                               "no re-ranking": {k: float(base[k]) for k in SHOWN}}
    for method, candidates in grid().items():
        t = time.perf_counter()
        scored = [(bench.judge(bench.run(**c)[0], tune)["map"], i) for i, c in enumerate(candidates)]
        best = candidates[max(scored)[1]]
        t_run = time.perf_counter()
        m = bench.judge(bench.run(**best)[0], test)
        took = time.perf_counter() - t_run
        wins, losses = int((m["hit@1"] & ~base["hit@1"]).sum()), int((~m["hit@1"] & base["hit@1"]).sum())
        print(f"{method + ' (' + describe(best) + ')':44s} "
              + "  ".join(f"{k} {m[k]:.3f} ({m[k] - base[k]:+.3f})" for k in SHOWN)
              + f"  P@1 +{wins}/-{losses} p={sign_test(wins, losses):.3f}  "
                f"[{len(candidates)} tried in {t_run - t:.0f}s; {took:.2f}s for {len(bench.relevant)} queries]",
              flush=True)
        figures[method] = {"chosen": describe(best), **{k: float(m[k]) for k in SHOWN},
                           "sign test": {"up": wins, "down": losses, "p": sign_test(wins, losses)},
                           "seconds": took}
    return figures


def table(figures: dict[str, Any]) -> str:
    """The docs' table of a run (docs/quality.md includes the committed record's)."""
    out = ["| test brands | P@1 | R@10 | mAP | P@1 gained / lost (p) |", "|---|---|---|---|---|"]
    for protocol, f in figures.items():
        m = f["no re-ranking"]
        out.append(f"| {protocol} ({f['test_queries']} queries): none | {m['precision@1']:.3f} | "
                   f"{m['recall@10']:.3f} | {m['map']:.3f} | |")
        for method in grid():
            m, test = f[method], f[method]["sign test"]
            out.append(f"| {method} ({m['chosen']}) | {m['precision@1']:.3f} | {m['recall@10']:.3f} | "
                       f"{m['map']:.3f} | {test['up']} / {test['down']} ({test['p']:.2g}) |")
    return "\n".join(out)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="data", help="where the npm packages and rasterised logos are kept")
    add_tuned_recipe_args(p, "rerank-{}.npz")
    add_out_arg(p)
    args = p.parse_args()
    t0 = time.perf_counter()
    spec, cache = recipe_and_cache(args)
    v = vectors(Path(args.data), cache, spec)
    whitening = learn(v["x"], 512)
    x, q = whitening.apply(v["x"]), whitening.apply(v["q"])
    relevant = v["relevant"].tolist()
    print(f"{len(q):,} queries against {len(x):,} logos ({time.perf_counter() - t0:.0f}s to embed or load)")
    cross = Bench(x, q, v["db_ids"].tolist(), [{r} for r in relevant])
    figures = {"cross-collection": compare("cross-collection", cross, *tune_and_report_rows(relevant, args))}
    # All renditions: simple-icons rows are their brand id; iconify/devicon rows name the brand they draw.
    brands = v["db_ids"].tolist() + relevant
    labels = [f"{b}#{i}" for i, b in enumerate(brands)]
    counts = {b: brands.count(b) for b in set(brands)}
    rows = np.array([i for i, b in enumerate(brands) if counts[b] >= 2])
    together = np.vstack([x, q])
    everyone = Bench(together, together[rows], labels,
                     [{labels[j] for j, c in enumerate(brands) if c == brands[i] and j != i} for i in rows], rows)
    halves = tune_and_report_rows([brands[i] for i in rows], args)
    figures["all renditions"] = compare("all renditions", everyone, *halves)
    record(args, figures, table(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
