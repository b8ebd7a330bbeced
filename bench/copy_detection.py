"""Copy detection with the ImageNet model and the trained one, side by side on the same queries:

  database  every simple-icons logo (3,470)
  queries   logos of the training split's test brands (no collection gave a drawing of them to training) under
            each alteration of lookalike.dev.alterations (recolour, rotate 15-30°, crop 20%, rescale, mirror,
            busy background, overlaid text, JPEG q40: written apart from training's synthetic copies); the
            original is the one relevant answer

Prints R@1 (= P@1 here) and R@10 per alteration and over all, exact search, raw and PCA-whitened (512 d, learned
on the database), and the paired sign test of rank-1 hits against the first recipe.

  python bench/copy_detection.py --data D [--per-alteration 100]
  python bench/copy_detection.py --recipes gem:320@efficientnet_lite0 gem:320
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from benchkit.recipes import WHITEN_DIM, Judge, embed_all, sign_test, spec_of, training_split_of
from benchkit.record import add_out_arg, record
from PIL import Image

from lookalike.dev.alterations import ALTERATIONS, altered
from lookalike.dev.datasets import simple_icons_catalogue


def table(recipes: dict[str, dict], names: list[str]) -> str:
    """The docs' table of a run (docs/quality.md includes the committed record's)."""
    out = ["| recipe | R@1 | R@10 | " + " | ".join(names) + " | vs the first: rank-1 +/- (sign test p) |",
           "|---|---|---|" + "---|" * len(names) + "---|"]
    for name, m in recipes.items():
        test = m.get("sign test")
        shown = "" if test is None else f"+{test['up']} / -{test['down']} (p = {test['p']:.2g})"
        out.append(f"| {re.sub(r'@.*/', '@', name)} | {m['R@1']:.3f} | {m['R@10']:.3f} | "
                   + " | ".join(f"{m['R@1 by alteration'][n]:.2f}" for n in names) + f" | {shown} |")
    return "\n".join(out)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="data", help="where the npm packages and rasterised logos are kept")
    p.add_argument("--recipes", nargs="+", default=["gem:320@efficientnet_lite0", "gem:320"],
                   metavar="POOLING:SIZE[@MODEL|@URI]")
    p.add_argument("--per-alteration", type=int, default=100, help="test-brand logos altered by each alteration")
    p.add_argument("--split-seed", type=int, default=0)
    p.add_argument("--weights-store", default=None, help="where relative @URI weights of recipes are read from")
    add_out_arg(p)
    args = p.parse_args()
    data = Path(args.data)
    database = pq.read_table(simple_icons_catalogue(data, limit=None))
    ids, uris = database["image_id"].to_pylist(), database["uri"].to_pylist()
    test = [i for i, slug in enumerate(ids) if training_split_of(slug, args.split_seed) == "test"]
    rng = np.random.default_rng(7)
    out_dir = data / "alterations"
    out_dir.mkdir(parents=True, exist_ok=True)
    query_uris, relevant, kinds = [], [], []
    for name in ALTERATIONS:
        for row in rng.choice(test, min(args.per_alteration, len(test)), replace=False).tolist():
            path = out_dir / f"{ids[row]}-{name}.png"
            if not path.exists():
                altered(Image.open(uris[row]), name, row).save(path)
            query_uris.append(str(path))
            relevant.append(ids[row])
            kinds.append(name)
    kinds_array = np.asarray(kinds)
    print(f"{len(query_uris):,} altered copies of {len(set(relevant))} test-brand logos ({len(test)} in all) against "
          f"{len(ids):,} simple-icons logos, exact search", flush=True)
    judge = Judge(ids, [{r} for r in relevant])
    rows = []
    for recipe in args.recipes:
        spec = spec_of(recipe, args.weights_store)
        x, q = embed_all(spec, uris), embed_all(spec, query_uris)
        rows += [(recipe, judge(x, q)), (f"{recipe}+pcaw{WHITEN_DIM}", judge.whitened(x, q, WHITEN_DIM))]
    names = list(ALTERATIONS)
    print(f"\n{'recipe':>40}  {'R@1':>6} {'R@10':>6}  " + " ".join(f"{n[:10]:>10}" for n in names) + "  (R@1 each)")
    base = rows[0][1]
    figures: dict = {"queries": len(query_uris), "database": len(ids), "recipes": {}}
    for name, m in rows:
        hits = m["hit@1"]
        each = " ".join(f"{hits[kinds_array == n].mean():10.3f}" for n in names)
        wins, losses = int((hits & ~base["hit@1"]).sum()), int((~hits & base["hit@1"]).sum())
        test_text = "" if m is base else f"  +{wins}/-{losses}, p={sign_test(wins, losses):.2g}"
        print(f"{re.sub(r'@.*/', '@', name):>40}  {m['precision@1']:6.3f} {m['recall@10']:6.3f}  "
              f"{each}{test_text}")
        figures["recipes"][name] = {"R@1": float(m["precision@1"]), "R@10": float(m["recall@10"]),
                                    "R@1 by alteration": {n: float(hits[kinds_array == n].mean()) for n in names},
                                    **({} if m is base else {"sign test": {"up": wins, "down": losses,
                                                                           "p": sign_test(wins, losses)}})}
    record(args, figures, table(figures["recipes"], names))
    return 0


if __name__ == "__main__":
    sys.exit(main())
