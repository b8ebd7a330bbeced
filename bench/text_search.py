"""Text → image search in the word space, on concepts no part of it was trained on.

The set: icons of four general icon sets (tabler, lucide, mdi, carbon; npm, permissive licences) whose plain
one-word name is drawn by at least three of them (`camera`, `anchor`, `bell`, ...); a concept's icons are what a
query of its name should find. Only the test concepts of the shipped map's split are searched (their icons are
the database): no icon whose name holds one of their words was trained on (dev/words_training.py).

Side by side on the same queries and images: `--space words` (the shipped DeViSE map), `--space conse` (no
training: the ImageNet classifier's top-10 classes over their names' text vectors) and a random ranking. Prints
P@1, R@10 (the share of a concept's icons in its top 10), success@10 (one of them there) and mAP, and a sign test
of the queries' average precisions, words against conse.

  python bench/text_search.py
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from benchkit.record import add_out_arg, record
from scipy.stats import binomtest

from lookalike.batch.metrics import judge_queries
from lookalike.dev.datasets import concept_icons
from lookalike.dev.words_training import concept_split
from lookalike.model.loading import load_model
from lookalike.model.spec import ModelSpec
from lookalike.retrieval.embedder import QueryEmbedder
from lookalike.retrieval.word_queries import WordQueries
from lookalike.training.words import text_to_image


def average_precisions(queries: np.ndarray, images: np.ndarray, image_concepts: list[str], concepts: list[str]
                       ) -> np.ndarray:
    order = np.argsort(-(queries @ images.T), axis=1, kind="stable")
    judged = judge_queries([[int(j) for j in row] for row in order],
                           [{j for j, c in enumerate(image_concepts) if c == name} for name in concepts])
    hits = judged.relevant.astype(np.float64)
    precision = np.cumsum(hits, axis=1) / np.arange(1, hits.shape[1] + 1)
    return (precision * hits).sum(axis=1) / judged.n_relevant


def docs_table(results: dict[str, dict]) -> str:
    """The docs' table of a run (docs/quality.md includes the committed record's)."""
    named = {"words": "`words` (DeViSE, shipped)", "conse": "`conse` (no training)", "random": "random ranking"}
    out = ["| space | P@1 | R@10 | success@10 | mAP | images/s |", "| --- | --- | --- | --- | --- | --- |"]
    for name, r in results.items():
        out.append(f"| {named.get(name, name)} | {r['P@1']:.3f} | {r['R@10']:.3f} | {r['success@10']:.3f} | "
                   f"{r['mAP']:.3f} | {r.get('images/s', '')} |")
    return "\n".join(out)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", default=None, help="where the npm packages and renderings are kept")
    p.add_argument("--split", default="test", choices=("test", "validation"))
    p.add_argument("--seed", type=int, default=0)
    add_out_arg(p)
    args = p.parse_args()
    data_dir = Path(args.data_dir or tempfile.mkdtemp(prefix="lookalike-concepts-"))
    words = QueryEmbedder(load_model(ModelSpec(space="words")))
    size = words.model.preprocessing.image_size
    table = concept_icons(data_dir, size=size)
    keep = [i for i, c in enumerate(table["concept"].to_pylist()) if concept_split(c) == args.split]
    table = table.take(keep)
    uris, image_concepts = table["uri"].to_pylist(), table["concept"].to_pylist()
    concepts = sorted(set(image_concepts))
    print(f"{len(uris)} icons of the {len(concepts)} {args.split} concepts drawn by ≥ 3 of tabler, lucide, mdi, "
          f"carbon ({size} px); a query is a concept's name")
    spaces = {"words": words, "conse": QueryEmbedder(load_model(ModelSpec(space="conse", image_size=size)))}
    results, ap = {}, {}
    for name, embedder in spaces.items():
        t0 = time.perf_counter()
        images = np.concatenate([embedder.embed([Path(u).read_bytes() for u in uris[i:i + 32]])
                                 for i in range(0, len(uris), 32)])
        rate = len(uris) / (time.perf_counter() - t0)
        queries = WordQueries(embedder.model).embed_texts(concepts)
        results[name] = {**text_to_image(queries, images, image_concepts, concepts), "images/s": round(rate, 1)}
        ap[name] = average_precisions(queries, images, image_concepts, concepts)
    rng = np.random.default_rng(args.seed)
    random_images = rng.standard_normal((len(uris), 8))
    results["random"] = text_to_image(rng.standard_normal((len(concepts), 8)), random_images, image_concepts,
                                      concepts)
    print(f"\n{'space':>8}  {'P@1':>6} {'R@10':>6} {'succ@10':>8} {'mAP':>6}  {'images/s':>8}")
    for name, r in results.items():
        print(f"{name:>8}  {r['P@1']:6.3f} {r['R@10']:6.3f} {r['success@10']:8.3f} {r['mAP']:6.3f}  "
              f"{r.get('images/s', ''):>8}")
    better, worse = int((ap["words"] > ap["conse"]).sum()), int((ap["words"] < ap["conse"]).sum())
    p_value = binomtest(better, better + worse).pvalue if better + worse else 1.0
    print(f"\nwords vs conse, per query AP: {better} better, {worse} worse, "
          f"{len(concepts) - better - worse} tied; sign test p = {p_value:.2g}")
    record(args, {"icons": len(uris), "concepts": len(concepts), "split": args.split, "spaces": results,
                  "words vs conse": {"better": better, "worse": worse, "p": p_value}}, docs_table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
