"""Class-weighted search ("like this image, but weighted toward class C") on a labelled set: does the weighting
move the hits toward C without losing what the query looks like?

The set: icons of four general icon sets (tabler, lucide, mdi, carbon; npm) whose one-word name is drawn by at least
three of them, rasterised black on white (936 icons of 285 concepts). CONCEPT_CLASSES maps 38 of those concepts to
the ImageNet class that names the same thing (`umbrella` → 'umbrella', `lock` → 'padlock'). A query is a composite:
two icons of different mapped concepts A and B from one set, side by side. Every icon is the database; a concept's
icons (its own set's included: the composite is not any of them) are what its part of the query should find.

Side by side on the same queries, with the default model (EfficientNet-Lite0, GeM):
- plain: the composite searched as it is;
- toward A / toward B: the query's features weighted by class A's (B's) activation map before pooling (lookalike's
  class weighting, model/class_weighting.py), at several strengths;
- channels: the alternative the issue also names, re-weighting query and catalogue pooled channels by the class's
  positive classifier weights (a diagonal projection of both, exact scores), at strength 0.5.
Printed: mean AP of the asked part, of the other part, and of either part (the query's content: visual similarity
kept), the asked part's and either part's share of the top 10, and a sign test of the asked part's AP, weighted
against plain. Then single-icon queries: weighting toward their own class should keep their AP, toward another
class lower it.

  python bench/class_weighting.py [--data-dir D]
"""

from __future__ import annotations

import argparse
import io
import itertools
import random
import sys
import tempfile
from pathlib import Path

import numpy as np
from benchkit.record import add_out_arg, record
from PIL import Image
from scipy.stats import binomtest

from lookalike.dev.datasets import concept_icons
from lookalike.model.class_weighting import ClassFocus
from lookalike.model.imagenet import imagenet_classifier
from lookalike.model.loading import load_model
from lookalike.model.spec import ModelSpec
from lookalike.retrieval.embedder import QueryEmbedder

CONCEPT_CLASSES = {
    "ambulance": "ambulance", "balloon": "balloon", "barrel": "barrel", "bike": "mountain bike",
    "binoculars": "binoculars", "bus": "school bus", "camera": "reflex camera", "clock": "analog clock",
    "coffee": "coffee mug", "compass": "magnetic compass", "dumbbell": "dumbbell", "forklift": "forklift",
    "hammer": "hammer", "hourglass": "hourglass", "keyboard": "computer keyboard", "lamp": "table lamp",
    "laptop": "laptop", "lock": "padlock", "mailbox": "mailbox", "microphone": "microphone",
    "microwave": "microwave", "mosque": "mosque", "mouse": "mouse", "piano": "grand piano", "pizza": "pizza",
    "plane": "airliner", "printer": "printer", "puzzle": "jigsaw puzzle", "radio": "radio", "scale": "scale",
    "shield": "shield", "shovel": "shovel", "stethoscope": "stethoscope", "tent": "mountain tent",
    "tractor": "tractor", "truck": "trailer truck", "umbrella": "umbrella", "wallet": "wallet",
}
PAIRS_PER_SET = 40
STRENGTHS = (0.5, 1.0)


def average_precision(scores: np.ndarray, relevant: np.ndarray) -> float:
    order = np.argsort(-scores, kind="stable")
    hits = relevant[order].astype(np.float64)
    precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return float((precision * hits).sum() / hits.sum())


def png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def composites(uris: list[str], sets: list[str], concepts: list[str], seed: int) -> list[tuple[str, str, bytes]]:
    """(A, B, PNG of A's icon beside B's) for PAIRS_PER_SET random pairs of mapped concepts of each set."""
    rng = random.Random(seed)
    by_set: dict[str, dict[str, int]] = {}
    for j, (s, c) in enumerate(zip(sets, concepts, strict=True)):
        if c in CONCEPT_CLASSES:
            by_set.setdefault(s, {})[c] = j
    out = []
    for _, drawn in sorted(by_set.items()):
        pairs = list(itertools.combinations(sorted(drawn), 2))
        rng.shuffle(pairs)
        for a, b in pairs[:PAIRS_PER_SET]:
            a, b = (b, a) if rng.random() < 0.5 else (a, b)
            canvas = Image.new("RGB", (448, 224), "white")
            canvas.paste(Image.open(uris[drawn[a]]).convert("RGB").resize((224, 224)), (0, 0))
            canvas.paste(Image.open(uris[drawn[b]]).convert("RGB").resize((224, 224)), (224, 0))
            out.append((a, b, png(canvas)))
    return out


def channel_scores(classifier_row: np.ndarray, query: np.ndarray, database: np.ndarray, strength: float
                   ) -> np.ndarray:
    """The channel alternative: query and catalogue pooled channels weighted by the class's positive classifier
    weights (scaled to mean 1, mixed with 1 by strength), cosines of the weighted vectors."""
    votes = np.maximum(classifier_row, 0)
    w = (1 - strength) + strength * votes / votes.mean()
    q, x = query * w, database * w
    return (x @ q) / (np.linalg.norm(x, axis=1) * np.linalg.norm(q))


def docs_table(figures: dict) -> str:
    """The docs' table of a run (docs/quality.md includes the committed record's)."""
    out = ["| query | AP of the asked part | AP of the other part | AP of either part | asked part in top 10 | "
           "either part in top 10 | asked part's AP vs plain: up / down (sign test p) |", "| --- " * 7 + "|"]
    for name, f in figures["composite"].items():
        test = f.get("sign test")
        shown = "" if test is None else f"{test['up']} / {test['down']} (p = {test['p']:.2g})"
        out.append(f"| {name} | {f['AP asked']:.3f} | {f['AP other']:.3f} | {f['AP either']:.3f} | "
                   f"{f['asked in top 10']:.3f} | {f['either in top 10']:.3f} | {shown} |")
    out += ["", "| single-icon query | queries | mAP |", "| --- | --- | --- |"]
    out += [f"| {name} | {f['queries']} | {f['mAP']:.3f} |" for name, f in figures["single"].items()]
    return "\n".join(out)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", default=None, help="where the npm packages and renderings are kept")
    p.add_argument("--seed", type=int, default=0)
    add_out_arg(p)
    args = p.parse_args()
    data_dir = Path(args.data_dir or tempfile.mkdtemp(prefix="lookalike-concepts-"))
    embedder = QueryEmbedder(load_model(ModelSpec(name="efficientnet_lite0")))  # weighting reads its classifier
    table = concept_icons(data_dir, size=embedder.model.preprocessing.image_size)
    uris, concepts = table["uri"].to_pylist(), np.array(table["concept"].to_pylist())
    sets = [i.split("/")[0] for i in table["image_id"].to_pylist()]
    database = np.concatenate([embedder.embed([Path(u).read_bytes() for u in uris[i:i + 64]])
                               for i in range(0, len(uris), 64)])
    queries = composites(uris, sets, concepts.tolist(), args.seed)
    plain = embedder.embed([q for _, _, q in queries])
    classifier = imagenet_classifier(embedder.model.module.backbone).weight.detach().numpy()
    print(f"{len(uris)} icons of {len(set(concepts))} concepts (tabler, lucide, mdi, carbon); {len(queries)} "
          f"composite queries of two of the {len(CONCEPT_CLASSES)} concepts mapped to ImageNet classes")

    def judged(scores: np.ndarray, asked: str, other: str) -> tuple[float, ...]:
        top10 = concepts[np.argsort(-scores, kind="stable")[:10]]
        return (average_precision(scores, concepts == asked), average_precision(scores, concepts == other),
                average_precision(scores, (concepts == asked) | (concepts == other)), float((top10 == asked).mean()),
                float(((top10 == asked) | (top10 == other)).mean()))

    rows: dict[str, np.ndarray] = {}
    rows["plain"] = np.array([judged(database @ v, a, b) for (a, b, _), v in zip(queries, plain, strict=True)]
                             + [judged(database @ v, b, a) for (a, b, _), v in zip(queries, plain, strict=True)])
    for strength in STRENGTHS:
        judged_rows = []
        for asked_first in (True, False):
            for a, b, data in queries:
                asked, other = (a, b) if asked_first else (b, a)
                v = embedder.embed([data], ClassFocus.of(CONCEPT_CLASSES[asked], strength))[0]
                judged_rows.append(judged(database @ v, asked, other))
        rows[f"toward, CAM s={strength:g}"] = np.array(judged_rows)
    channel_rows = []
    for asked_first in (True, False):
        for (a, b, _), v in zip(queries, plain, strict=True):
            asked, other = (a, b) if asked_first else (b, a)
            row = classifier[ClassFocus.of(CONCEPT_CLASSES[asked]).class_id]
            channel_rows.append(judged(channel_scores(row, v, database, 0.5), asked, other))
    rows["toward, channels s=0.5"] = np.array(channel_rows)

    print(f"\n{'query':>24}  {'AP asked':>9} {'AP other':>9} {'AP either':>10} {'asked in top 10':>16} "
          f"{'either in top 10':>17}  sign test (AP asked)")
    figures: dict = {"icons": len(uris), "concepts": len(set(concepts)), "composite_queries": len(queries),
                     "composite": {}, "single": {}}
    for name, r in rows.items():
        mean = r.mean(axis=0)
        test = ""
        figures["composite"][name] = dict(zip(("AP asked", "AP other", "AP either", "asked in top 10",
                                               "either in top 10"), map(float, mean), strict=True))
        if name != "plain":
            better, worse = int((r[:, 0] > rows["plain"][:, 0]).sum()), int((r[:, 0] < rows["plain"][:, 0]).sum())
            test = f"{better} up, {worse} down, p = {binomtest(better, better + worse).pvalue:.2g}"
            figures["composite"][name]["sign test"] = {"up": better, "down": worse,
                                                       "p": binomtest(better, better + worse).pvalue}
        print(f"{name:>24}  {mean[0]:9.3f} {mean[1]:9.3f} {mean[2]:10.3f} {mean[3]:16.3f} {mean[4]:17.3f}  {test}")

    single = [j for j, c in enumerate(concepts) if c in CONCEPT_CLASSES and (concepts == c).sum() > 1]
    mapped = sorted(CONCEPT_CLASSES)
    icons = [Path(uris[j]).read_bytes() for j in single]
    singles: dict[str, list[float]] = {"plain": [], "toward its own class": [], "toward another class": []}
    for j, data in zip(single, icons, strict=True):
        keep = np.arange(len(concepts)) != j
        own = concepts[j]
        other = mapped[(mapped.index(own) + 7) % len(mapped)]
        for name, focus in (("plain", None), ("toward its own class", ClassFocus.of(CONCEPT_CLASSES[own])),
                            ("toward another class", ClassFocus.of(CONCEPT_CLASSES[other]))):
            v = database[j] if focus is None else embedder.embed([data], focus)[0]
            singles[name].append(average_precision((database @ v)[keep], (concepts == own)[keep]))
    print(f"\n{len(single)} single-icon queries (their concept's other icons are relevant), CAM s=1:")
    for name, aps in singles.items():
        print(f"{name:>24}  mAP {np.mean(aps):.3f}")
        figures["single"][name] = {"queries": len(aps), "mAP": float(np.mean(aps))}
    record(args, figures, docs_table(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
