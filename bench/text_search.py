"""Text → image search in the word space, on concepts no part of it was trained on.

The set: icons of four general icon sets (tabler, lucide, mdi, carbon; npm, permissive licences) whose plain
one-word name is drawn by at least three of them (`camera`, `anchor`, `bell`, ...); a concept's icons are what a
query of its name should find. Only the test concepts of the shipped map's split are searched (their icons are
the database): no icon whose name holds one of their words was trained on (dev/words_training.py).

Side by side on the same queries and images: `--space words` (the shipped DeViSE map), `--space conse` (no
training: the ImageNet classifier's top-10 classes over their names' text vectors) and a random ranking. Prints
P@1, R@10 (the share of a concept's icons in its top 10), success@10 (one of them there) and mAP, and a sign test
of the queries' average precisions, words against conse.

With `--store`, the set is instead the concept drawings of a training set's held-out split (`lookalike
train-data`: 61 general icon sets, names grouped into concepts, split by a seeded hash of the concept): a query is
a concept's name (`concept:shopping-cart` → "shopping cart"), the database every drawing of the split's concepts.
That is the split `lookalike train --objective words` never trains on (the shipped map was trained on the four
sets' own split, so some of these concepts were in its training: its figures here flatter it). `--weights` adds
word spaces trained that way (`--space words --weights RUN/best.pt`), each compared query by query with the
shipped map.

  python bench/text_search.py
  python bench/text_search.py --store STORE --weights STORE/training/w1/best.pt
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


def held_out_concepts(store: str, name: str, split: str) -> tuple[list[bytes], list[str], list[str]]:
    """The training set's concept drawings of a split: their PNGs, their concepts, and the concepts' names."""
    from lookalike.core.store import Store
    from lookalike.training.data import read_split
    from lookalike.training.words import concept_phrase, concept_rows
    table = concept_rows(read_split(Store(store), name, split))
    image_concepts = [concept_phrase(g) for g in table["group"].to_pylist()]
    return table["png"].to_pylist(), image_concepts, sorted(set(image_concepts))


def four_set_concepts(data_dir: Path, size: int, split: str) -> tuple[list[bytes], list[str], list[str]]:
    """The icons of the four sets' concepts of the shipped map's split."""
    table = concept_icons(data_dir, size=size)
    table = table.take([i for i, c in enumerate(table["concept"].to_pylist()) if concept_split(c) == split])
    image_concepts = table["concept"].to_pylist()
    return [Path(u).read_bytes() for u in table["uri"].to_pylist()], image_concepts, sorted(set(image_concepts))


def sign_test(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    """Per query average precision, a against b: queries better, worse, and the exact sign test."""
    better, worse = int((a > b).sum()), int((a < b).sum())
    return {"better": better, "worse": worse, "p": binomtest(better, better + worse).pvalue if better + worse else 1.0}


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
    p.add_argument("--store", default=None, help="search a training set's held-out concepts instead (lookalike "
                                                 "train-data)")
    p.add_argument("--training-set", default="default", help="with --store: the training set's name")
    p.add_argument("--weights", nargs="*", default=[], help="trained word spaces to add (lookalike train "
                                                            "--objective words: RUN/best.pt)")
    p.add_argument("--split", default="test", choices=("test", "validation"))
    p.add_argument("--seed", type=int, default=0)
    add_out_arg(p)
    args = p.parse_args()
    words = QueryEmbedder(load_model(ModelSpec(space="words")))
    size = words.model.preprocessing.image_size
    if args.store:
        pngs, image_concepts, concepts = held_out_concepts(args.store, args.training_set, args.split)
        print(f"{len(pngs)} drawings of the {len(concepts)} {args.split} concepts of training set "
              f"{args.training_set}; a query is a concept's name")
    else:
        data_dir = Path(args.data_dir or tempfile.mkdtemp(prefix="lookalike-concepts-"))
        pngs, image_concepts, concepts = four_set_concepts(data_dir, size, args.split)
        print(f"{len(pngs)} icons of the {len(concepts)} {args.split} concepts drawn by ≥ 3 of tabler, lucide, "
              f"mdi, carbon ({size} px); a query is a concept's name")
    spaces = {"words": words, "conse": QueryEmbedder(load_model(ModelSpec(space="conse", image_size=size)))}
    for uri in args.weights:
        spaces[f"words@{uri}"] = QueryEmbedder(load_model(ModelSpec(space="words", weights_uri=uri)))
    results, ap = {}, {}
    for name, embedder in spaces.items():
        t0 = time.perf_counter()
        images = np.concatenate([embedder.embed(pngs[i:i + 32]) for i in range(0, len(pngs), 32)])
        rate = len(pngs) / (time.perf_counter() - t0)
        queries = WordQueries(embedder.model).embed_texts(concepts)
        results[name] = {**text_to_image(queries, images, image_concepts, concepts), "images/s": round(rate, 1)}
        ap[name] = average_precisions(queries, images, image_concepts, concepts)
    rng = np.random.default_rng(args.seed)
    random_images = rng.standard_normal((len(pngs), 8))
    results["random"] = text_to_image(rng.standard_normal((len(concepts), 8)), random_images, image_concepts,
                                      concepts)
    print(f"\n{'space':>8}  {'P@1':>6} {'R@10':>6} {'succ@10':>8} {'mAP':>6}  {'images/s':>8}")
    for name, r in results.items():
        print(f"{name:>8}  {r['P@1']:6.3f} {r['R@10']:6.3f} {r['success@10']:8.3f} {r['mAP']:6.3f}  "
              f"{r.get('images/s', ''):>8}")
    tests = {"words vs conse": sign_test(ap["words"], ap["conse"])}
    tests |= {f"{name} vs words": sign_test(ap[name], ap["words"]) for name in spaces if name.startswith("words@")}
    for name, t in tests.items():
        print(f"{name}, per query AP: {t['better']} better, {t['worse']} worse, "
              f"{len(concepts) - t['better'] - t['worse']} tied; sign test p = {t['p']:.2g}")
    record(args, {"images": len(pngs), "concepts": len(concepts), "split": args.split,
                  "set": f"training set {args.training_set}" if args.store else "four sets", "spaces": results,
                  **tests}, docs_table(results),
           # a training set's held-out concepts are another benchmark than the four sets': a record of its own
           bench="text_search_concepts" if args.store else None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
