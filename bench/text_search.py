"""Text → image search in the word space, on a labelled set no part of it was trained on.

The set: icons of four general icon sets (tabler, lucide, mdi, carbon; npm, permissive licences) whose plain
one-word name is drawn by at least three of them (`camera`, `anchor`, `bell`, ...), each concept's icons being
what a query of its name should find. The word space is ConSE over the bundled EfficientNet-Lite0's ImageNet
classifier and all-MiniLM-L6-v2 (`--space words`): nothing was trained or tuned on these icons or names.

Prints, for each query wording, P@1, R@10 (the share of a concept's icons in its top 10), success@10 (a query with
at least one of its icons in the top 10) and mAP, beside what a random ranking scores.

  python bench/text_search.py
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))

from lookalike.batch.metrics import judge_queries, mean_average_precision, precision_at, recall_at  # noqa: E402
from lookalike.dev.datasets import concept_icons  # noqa: E402
from lookalike.model.loading import load_model  # noqa: E402
from lookalike.model.spec import ModelSpec  # noqa: E402
from lookalike.retrieval.query import QueryEmbedder  # noqa: E402

WORDINGS = {"name": "{}", "an icon of": "an icon of a {}", "a photo of": "a photo of a {}"}


def scores(rankings: list[list[str]], relevant: list[set[str]]) -> dict[str, float]:
    judged = judge_queries(rankings, relevant)
    found_in_10 = float(np.mean(judged.relevant[:, :10].any(axis=1)))
    return {"P@1": precision_at(judged, 1), "R@10": recall_at(judged, 10), "success@10": found_in_10,
            "mAP": mean_average_precision(judged)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", default=None, help="where the npm packages and renderings are kept")
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    data_dir = Path(args.data_dir or tempfile.mkdtemp(prefix="lookalike-concepts-"))
    table = concept_icons(data_dir, size=args.image_size)
    ids, concepts = table["image_id"].to_pylist(), table["concept"].to_pylist()
    names = sorted(set(concepts))
    print(f"{len(ids)} icons of {len(names)} concepts drawn by ≥ 3 of tabler, lucide, mdi, carbon "
          f"({args.image_size} px)")

    embedder = QueryEmbedder(load_model(ModelSpec(space="words", image_size=args.image_size)))
    t0 = time.perf_counter()
    uris = table["uri"].to_pylist()
    vectors = np.concatenate([embedder.embed([Path(u).read_bytes() for u in uris[i:i + 32]])
                              for i in range(0, len(uris), 32)])
    print(f"embedded in the word space in {time.perf_counter() - t0:.1f} s "
          f"({len(ids) / (time.perf_counter() - t0):.1f} images/s)")

    relevant = [{i for i, c in zip(ids, concepts, strict=True) if c == name} for name in names]
    rng = np.random.default_rng(args.seed)
    chance = scores([list(rng.permutation(ids)) for _ in names], relevant)
    print(f"\n{'wording':>16}  {'P@1':>6} {'R@10':>6} {'succ@10':>8} {'mAP':>6}")
    for label, template in WORDINGS.items():
        queries = embedder.embed_texts([template.format(n) for n in names])
        order = np.argsort(-(queries @ vectors.T), axis=1, kind="stable")
        s = scores([[ids[j] for j in row] for row in order], relevant)
        print(f"{label:>16}  {s['P@1']:6.3f} {s['R@10']:6.3f} {s['success@10']:8.3f} {s['mAP']:6.3f}")
    print(f"{'random ranking':>16}  {chance['P@1']:6.3f} {chance['R@10']:6.3f} {chance['success@10']:8.3f} "
          f"{chance['mAP']:6.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
