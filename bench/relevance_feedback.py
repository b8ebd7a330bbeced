"""More like these, not like those: does one round of an examiner's feedback (retrieval/examples.py, what
`POST /search/examples`, `lookalike search --examples` and the page's more/less like this run) find the rest of a
brand's marks sooner, and which `negative_weight` should be the default?

  database  every simple-icons logo and the same brands drawn by @iconify-json/logos (~4,500 marks)
  queries   devicon's drawings of the brands that both of the others draw: two right answers each

One round, as an examiner clicks it on the first page of 10 hits: "more like this" on the first right hit
there, "less like this" on every wrong hit ranked above it; where no right hit is there, "less like this" on the
first three. Then the query is searched again with those examples, for each negative_weight. Measured on what
is left to find (the residual collection: the examples themselves are out of both rankings), against the query
searched alone with the same images left out:

- `found` queries (a right hit was marked): the rank of the other right answer;
- `missed` queries (only wrong hits marked): the rank of the first right answer.

  python bench/relevance_feedback.py
  python bench/relevance_feedback.py --weights 0 0.5 1 --recipes gem:320
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from benchkit.recipes import embed_all, exact, spec_of, training_split_of
from benchkit.record import add_out_arg, record

from lookalike.dev.datasets import cross_collection_queries, simple_icons_catalogue
from lookalike.retrieval.examples import NEGATIVE_WEIGHT, Examples

PAGE = 10        # the hits an examiner looks at before clicking
MISSED_NEGATIVES = 3


def residual_rank(scores: np.ndarray, relevant: set[int], examples: set[int]) -> int:
    """The 1-based rank of the best right answer among the database rows that are not examples (0: none left)."""
    order = [r for r in np.argsort(-scores, kind="stable") if r not in examples]
    return next((i + 1 for i, r in enumerate(order) if r in relevant), 0)


def figures_of(ranks: list[int]) -> dict[str, float]:
    ranks = np.asarray(ranks)
    found = ranks > 0
    reciprocal = np.where(found, 1.0 / np.maximum(ranks, 1), 0.0)
    return {"R@1": round(float((found & (ranks <= 1)).mean()), 3),
            "R@10": round(float((found & (ranks <= 10)).mean()), 3), "MRR": round(float(reciprocal.mean()), 3)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="data", help="where the npm packages and rasterised logos are kept")
    p.add_argument("--recipes", nargs="+", default=["gem:320", "gem:320@efficientnet_lite0"],
                   metavar="POOLING:SIZE[@MODEL|@URI]", help="default: the shipped model and its ImageNet weights")
    p.add_argument("--weights", nargs="+", type=float, default=[0.0, 0.25, 0.5, 0.75, 1.0],
                   help="negative_weight values to compare")
    p.add_argument("--weights-store", default=None, help="where relative @URI weights of recipes are read from")
    add_out_arg(p)
    args = p.parse_args()
    data = Path(args.data)
    simple = pq.read_table(simple_icons_catalogue(data, limit=None))
    drawn = pq.read_table(cross_collection_queries(data, collections=("iconify", "devicon")))
    iconify = drawn.filter(pc.equal(drawn["collection"], "iconify"))
    devicon = drawn.filter(pc.equal(drawn["collection"], "devicon"))
    uris = simple["uri"].to_pylist() + iconify["uri"].to_pylist()
    brand_of = simple["image_id"].to_pylist() + iconify["relevant"].to_pylist()
    rows_of: dict[str, set[int]] = {}
    for row, brand in enumerate(brand_of):
        rows_of.setdefault(brand, set()).add(row)
    keep = [i for i, b in enumerate(devicon["relevant"].to_pylist()) if len(rows_of.get(b, ())) >= 2]
    queries = devicon.take(pa.array(keep))
    brands = queries["relevant"].to_pylist()
    print(f"{len(queries):,} devicon queries with two or more right answers among {len(uris):,} marks "
          f"({len(simple):,} simple-icons, {len(iconify):,} iconify), exact search", flush=True)

    test = {i for i, b in enumerate(brands) if training_split_of(b) == "test"}
    runs = {}
    for recipe in args.recipes:
        t0 = time.perf_counter()
        spec = spec_of(recipe, args.weights_store)
        x, q = embed_all(spec, uris), embed_all(spec, queries["uri"].to_pylist())
        runs[recipe] = one_round(x, q, [rows_of[b] for b in brands], test, args.weights)
        print(f"{recipe} ({time.perf_counter() - t0:.0f} s):", flush=True)
        for key, group in runs[recipe].items():
            print(f"  {key}: {group}", flush=True)
    figures = {"queries": len(queries), "database": len(uris), "page": PAGE,
               "default_negative_weight": NEGATIVE_WEIGHT, "recipes": runs}
    record(args, figures, table(figures, args.weights))
    return 0


def one_round(x: np.ndarray, q: np.ndarray, relevant_rows: list[set[int]], test: set[int], weights: list[float]
              ) -> dict[str, dict]:
    """Each query's first page judged as the examiner would, searched again with those examples at each weight;
    the residual figures of the query alone and of each weight, per group and for the test brands alone."""
    ids, _ = exact(x, q, PAGE)
    groups: dict[str, list[int]] = {"found": [], "missed": []}
    before: dict[int, int] = {}
    after: dict[float, dict[int, int]] = {w: {} for w in weights}
    for i, relevant in enumerate(relevant_rows):
        page = [int(r) for r in ids[i]]
        first_right = next((j for j, r in enumerate(page) if r in relevant), None)
        if first_right is None:
            positives, negatives = [], page[:MISSED_NEGATIVES]
        else:
            positives, negatives = [page[first_right]], page[:first_right]
        examples = set(positives) | set(negatives)
        if not relevant - examples:
            continue
        groups["found" if positives else "missed"].append(i)
        before[i] = residual_rank(x @ q[i], relevant, examples)
        for w in weights:
            query = Examples(np.vstack([q[i:i + 1], x[positives]]), x[negatives], w).query()[0]
            after[w][i] = residual_rank(x @ query, relevant, examples)
    results: dict[str, dict] = {}
    for name, members in groups.items():
        for split, chosen in (("all", members), ("test brands", [i for i in members if i in test])):
            results[f"{name} ({split})"] = {
                "queries": len(chosen), "query alone": figures_of([before[i] for i in chosen]),
                **{f"negative_weight {w:g}": figures_of([after[w][i] for i in chosen]) for w in weights}}
    return results


def table(figures: dict, weights: list[float]) -> str:
    """The docs' table: per recipe and group, the query alone against each weight, as R@1 / MRR."""
    columns = ["query alone", *(f"negative_weight {w:g}" for w in weights)]
    out = ["| recipe | queries | n | " + " | ".join(c.replace("negative_weight ", "w = ") for c in columns) + " |",
           "|---|---|---|" + "---|" * len(columns)]
    for recipe, groups in figures["recipes"].items():
        for key, group in groups.items():
            cells = [f"{group[c]['R@1']:.3f} / {group[c]['MRR']:.3f}" for c in columns]
            out.append(f"| `{recipe}` | {key} | {group['queries']} | " + " | ".join(cells) + " |")
    return "\n".join(out)


if __name__ == "__main__":
    sys.exit(main())
