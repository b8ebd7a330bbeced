"""Whether a PCA-whitening helps a model: the measurement its model card records and `lookalike reindex` follows
(lookalike.training.whitening_effect). On the training set's validation groups, brands and concepts apart, the
whitening learned without labels from the same drawings (as the reindex learns it from a catalogue), then each
drawing searched against the others, raw and whitened.

  lookalike train-data --store STORE                       # the training set (npm packages, rendered once)
  python bench/whitening_effect.py --store STORE            # the shipped model and the ImageNet one
  python bench/whitening_effect.py --store STORE --card lib/lookalike/model/artefacts/lite0-marks.json
                                                            # ... and the first recipe's answer into that card
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from benchkit.recipes import spec_of
from benchkit.record import add_out_arg, record

from lookalike.core.store import Store
from lookalike.model.loading import load_model
from lookalike.model.spec import DEFAULT_WHITEN_DIM
from lookalike.training.data import read_split
from lookalike.training.whitening_effect import KINDS, whitening_effect


def table(results: dict[str, dict]) -> str:
    out = ["| model | kind | images | raw P@1 / mAP | whitened P@1 / mAP | mean mAP gain | whitening helps |",
           "|---|---|---|---|---|---|---|"]
    for recipe, r in results.items():
        for kind in KINDS:
            k = r[kind]
            if "raw" not in k:
                continue
            out.append(f"| {recipe} | {kind} | {k['images']:,} | {k['raw']['P@1']:.3f} / {k['raw']['mAP']:.3f} | "
                       f"{k['whitened']['P@1']:.3f} / {k['whitened']['mAP']:.3f} | {r['mAP_gain']:+.3f} | "
                       f"{'yes' if r['helps'] else 'no'} |")
    return "\n".join(out)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--store", required=True, help="the store holding the training set")
    p.add_argument("--training-set", default="default")
    p.add_argument("--recipes", nargs="+", default=["gem:320", "gem:320@efficientnet_lite0"],
                   metavar="POOLING:SIZE[@MODEL|@URI]")
    p.add_argument("--max-images", type=int, default=3000, help="validation drawings per kind (whole groups)")
    p.add_argument("--card", type=Path, default=None, help="write the first recipe's measurement into this card")
    add_out_arg(p)
    args = p.parse_args()
    validation = read_split(Store(args.store), args.training_set, "validation")
    results = {}
    for recipe in args.recipes:
        t0 = time.perf_counter()
        results[recipe] = whitening_effect(load_model(spec_of(recipe)), validation, DEFAULT_WHITEN_DIM,
                                           args.max_images)
        print(f"{recipe}: {json.dumps(results[recipe])} ({time.perf_counter() - t0:.0f}s)", flush=True)
    print(table(results))
    if args.card:
        card = json.loads(args.card.read_text())
        card["whitening"] = {**results[args.recipes[0]], "measured_by": f"python bench/whitening_effect.py "
                                                                        f"--recipes {args.recipes[0]}"}
        args.card.write_text(json.dumps(card, indent=2, sort_keys=True) + "\n")
        print(f"wrote the measurement into {args.card}")
    record(args, results, table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
