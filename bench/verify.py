"""Local-feature verification of the global shortlist, side by side with the global search alone, on the same
queries: a recipe of bench/quality.py (default gem:320: the default model, efficientnet_lite0_marks; e.g.
gem:320@efficientnet_lite0 for the ImageNet weights), PCA-whitened 512 d, exact search, proposes the top
--shortlist of all 3,470 simple-icons logos; RootSIFT matches and a RANSAC similarity fit
(lookalike.retrieval.verify) re-rank them.

  copies            altered copies (lookalike.dev.alterations: recolour, rotate 15-30°, crop 20%, rescale,
                    mirror, busy background, overlaid text, JPEG q40) of logos of the test-half brands; the
                    original is the one relevant answer
  cross-collection  bench/quality.py's queries (iconify-logos, devicon drawings of the same brands)

Brands are split in two by a seeded hash of the brand id (as bench/rerank.py): the fusion settings are chosen on
the tune half of the cross-collection queries and the copies of tune brands, and reported on the test half. With
--training-split the training set's split (training/data.py) decides instead: chosen on its validation brands,
reported on its test brands, which no collection gave to training (the fair split for a trained model).
Also prints the verification time per query (in-process; shortlists of 50/100/200, p50/p99) and the stored
bytes per image. Vectors and features are computed once per model and kept in --cache.

  python bench/verify.py
  python bench/verify.py --training-split
  python bench/verify.py --recipe gem:320@efficientnet_lite0
"""

from __future__ import annotations

import argparse
import pickle
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
from benchkit.recipes import add_tuned_recipe_args, embed_all, exact, recipe_and_cache, sign_test, tune_and_report_rows
from benchkit.record import add_out_arg, record
from PIL import Image

from lookalike.batch.metrics import judge_queries, summary
from lookalike.dev.alterations import ALTERATIONS, altered
from lookalike.dev.datasets import COLLECTIONS, cross_collection_queries, simple_icons_catalogue
from lookalike.image.local_features import extract, mirrored
from lookalike.model.spec import ModelSpec
from lookalike.model.whitening import learn
from lookalike.retrieval.verify import VerifySettings, fuse, inlier_counts

SHOWN = ("precision@1", "recall@10", "map")


def load(data: Path, cache: Path, per_alteration: int, spec: ModelSpec) -> dict[str, Any]:
    if cache.exists():
        return pickle.loads(cache.read_bytes())
    database = pq.read_table(simple_icons_catalogue(data, limit=None))
    cross = pq.read_table(cross_collection_queries(data, collections=list(COLLECTIONS)))
    ids, uris = database["image_id"].to_pylist(), database["uri"].to_pylist()
    rng = np.random.default_rng(7)
    copy_rows, copy_uris, copy_kinds = [], [], []
    out_dir = data / "alterations"
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in ALTERATIONS:
        for row in rng.choice(len(ids), per_alteration, replace=False).tolist():
            path = out_dir / f"{ids[row]}-{name}.png"
            if not path.exists():
                altered(Image.open(uris[row]), name, row).save(path)
            copy_rows.append(row)
            copy_uris.append(str(path))
            copy_kinds.append(name)
    t0 = time.perf_counter()
    out = {"db_ids": ids, "x": embed_all(spec, uris), "cross_q": embed_all(spec, cross["uri"].to_pylist()),
           "cross_relevant": cross["relevant"].to_pylist(), "copy_q": embed_all(spec, copy_uris),
           "copy_relevant": [ids[r] for r in copy_rows], "copy_kinds": copy_kinds}
    embed_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    out["db_features"] = [extract(Image.open(u)) for u in uris]
    out["extract_ms"] = 1000 * (time.perf_counter() - t0) / len(uris)
    out["cross_features"] = [query_views(u) for u in cross["uri"].to_pylist()]
    out["copy_features"] = [query_views(u) for u in copy_uris]
    out["embed_s"] = embed_s
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_bytes(pickle.dumps(out))
    return out


def query_views(uri: str) -> list:
    image = Image.open(uri)
    return [extract(image), extract(mirrored(image))]


class Protocol:
    def __init__(self, name: str, x: np.ndarray, q: np.ndarray, relevant: list[str], db_ids: list[str],
                 features: list, db_features: list, shortlist: int):
        self.name, self.relevant, self.db_ids = name, relevant, db_ids
        self.ids, self.scores = exact(x, q, shortlist)
        self.brands = relevant
        t0 = time.perf_counter()
        self.inliers = np.stack([inlier_counts(features[i], [db_features[j] for j in self.ids[i]])
                                 for i in range(len(q))])
        self.verify_s = time.perf_counter() - t0

    def judge(self, rows: np.ndarray, settings: VerifySettings | None) -> dict[str, Any]:
        ids, scores = self.ids[rows], self.scores[rows]
        if settings is not None:
            fused = fuse(scores, self.inliers[rows], settings)
            order = np.argsort(-fused, axis=1, kind="stable")
            ids = np.take_along_axis(ids, order, axis=1)
        judged = judge_queries([[self.db_ids[j] for j in row] for row in ids], [{self.relevant[r]} for r in rows])
        return {**summary(judged), "hit@1": judged.relevant[:, 0].copy()}


def report(label: str, m: dict[str, Any], base: dict[str, Any] | None = None) -> str:
    line = f"{label:44s} " + "  ".join(f"{k} {m[k]:.3f}" + (f" ({m[k] - base[k]:+.3f})" if base else "")
                                       for k in SHOWN)
    if base:
        wins, losses = int((m["hit@1"] & ~base["hit@1"]).sum()), int((~m["hit@1"] & base["hit@1"]).sum())
        line += f"  P@1 +{wins}/-{losses} p={sign_test(wins, losses):.3g}"
    return line


def timing(q_features: list, db_features: list, ids: np.ndarray, shortlist: int, n: int = 200) -> dict[str, float]:
    times = []
    for i in range(min(n, len(q_features))):
        t0 = time.perf_counter()
        inlier_counts(q_features[i], [db_features[j] for j in ids[i, :shortlist]])
        times.append(1000 * (time.perf_counter() - t0))
    return {"p50_ms": float(np.percentile(times, 50)), "p99_ms": float(np.percentile(times, 99))}


def table(figures: dict[str, Any]) -> str:
    """The docs' table of a run (docs/quality.md includes the committed record's)."""
    out = ["| test brands | P@1 (= R@1) | R@10 | mAP | P@1 gained / lost (p) |", "|---|---|---|---|---|"]
    for name in ("copies", "cross-collection"):
        f = figures[name]
        for row, label in (("global", f"{name} ({f['queries']}): global"), ("verified", "+ verification")):
            m = f[row]
            test = "" if row == "global" else \
                f"{f['sign test']['up']} / {f['sign test']['down']} ({f['sign test']['p']:.2g})"
            out.append(f"| {label} | {m['precision@1']:.3f} | {m['recall@10']:.3f} | {m['map']:.3f} | {test} |")
    alterations, cost = figures["copies"]["R@1 by alteration"], figures["verify_ms_per_query"][100]
    out += ["", "R@1 global → verified by alteration: " + ", ".join(
        f"{kind} {a['global']:.3f} → {a['verified']:.3f}" for kind, a in alterations.items())
        + f". Fusion chosen on {figures['fusion']['tuned_on']}: min_inliers {figures['fusion']['min_inliers']}, "
        f"bonus {figures['fusion']['bonus']}, saturation {figures['fusion']['saturation']}. "
        f"{figures['keypoints_per_image']:.0f} keypoints and {figures['bytes_per_image'] / 1000:.1f} KB an image, "
        f"{figures['extract_ms']:.1f} ms to extract; verification of 100 candidates in-process p50 / p99 "
        f"{cost['p50_ms']:.1f} / {cost['p99_ms']:.1f} ms."]
    return "\n".join(out)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="data", help="where the npm packages and rasterised logos are kept")
    p.add_argument("--per-alteration", type=int, default=150, help="copies made per alteration")
    p.add_argument("--shortlist", type=int, default=100)
    add_tuned_recipe_args(p, "verify-{}.pickle")
    add_out_arg(p)
    args = p.parse_args()
    spec, cache = recipe_and_cache(args)
    v = load(Path(args.data), cache, args.per_alteration, spec)
    whitening = learn(v["x"], 512)
    x = whitening.apply(v["x"])
    db_bytes = np.mean([f.nbytes for f in v["db_features"]])
    print(f"{len(x):,} logos; features {np.mean([len(f) for f in v['db_features']]):.0f} keypoints and "
          f"{db_bytes:,.0f} bytes per image on average, {v['extract_ms']:.1f} ms each to extract")
    cross = Protocol("cross-collection", x, whitening.apply(v["cross_q"]), v["cross_relevant"], v["db_ids"],
                     v["cross_features"], v["db_features"], args.shortlist)
    copies = Protocol("copies", x, whitening.apply(v["copy_q"]), v["copy_relevant"], v["db_ids"],
                      v["copy_features"], v["db_features"], args.shortlist)
    halves = {p.name: tune_and_report_rows(p.relevant, args) for p in (cross, copies)}
    grid = [VerifySettings(min_inliers=m, bonus=b, saturation=s)
            for m in (6, 8, 10, 12, 16) for b in (0.05, 0.1, 0.2, 0.4, 1.0) for s in (20, 40)]

    def tuned(protocol: Protocol) -> float:
        tune = halves[protocol.name][0]
        return protocol.judge(tune, None)["map"]
    best = max(grid, key=lambda s: sum(p.judge(halves[p.name][0], s)["map"] - tuned(p) for p in (cross, copies)))
    tuned_on = "the validation brands" if args.training_split else "the tune halves"
    print(f"fusion chosen on {tuned_on}: min_inliers {best.min_inliers}, bonus {best.bonus}, "
          f"saturation {best.saturation}\n")
    figures: dict[str, Any] = {
        "logos": len(x), "keypoints_per_image": float(np.mean([len(f) for f in v["db_features"]])),
        "bytes_per_image": float(db_bytes), "extract_ms": float(v["extract_ms"]),
        "fusion": {"tuned_on": tuned_on, "min_inliers": best.min_inliers, "bonus": best.bonus,
                   "saturation": best.saturation}}
    for protocol in (copies, cross):
        test = halves[protocol.name][1]
        base = protocol.judge(test, None)
        verified, default = protocol.judge(test, best), protocol.judge(test, VerifySettings())
        figures[protocol.name] = {"queries": len(test), **{
            name: {k: float(m[k]) for k in SHOWN} for name, m in (("global", base), ("verified", verified),
                                                                    ("verified, default settings", default))}}
        wins, losses = int((verified["hit@1"] & ~base["hit@1"]).sum()), int((~verified["hit@1"] & base["hit@1"]).sum())
        figures[protocol.name]["sign test"] = {"up": wins, "down": losses, "p": sign_test(wins, losses)}
        print(f"{protocol.name}: {len(test)} test-brand queries, shortlist {args.shortlist}")
        print(report("  global search alone", base))
        print(report("  + local verification", verified, base))
        print(report("  + local verification, default settings", default, base))
        if protocol is copies:
            kinds = np.array(v["copy_kinds"])[test]
            for kind in ALTERATIONS:
                rows = test[kinds == kind]
                before, after = protocol.judge(rows, None), protocol.judge(rows, best)
                listed = np.mean([protocol.db_ids.index(protocol.relevant[r]) in protocol.ids[r] for r in rows])
                print(f"    {kind:16s} R@1 {before['precision@1']:.3f} → {after['precision@1']:.3f}  "
                      f"(in the shortlist: {listed:.3f}; {len(rows)} queries)")
                figures[protocol.name].setdefault("R@1 by alteration", {})[kind] = {
                    "global": float(before["precision@1"]), "verified": float(after["precision@1"]),
                    "in_shortlist": float(listed)}
        print()
    print("verification time per query (query and its mirror, in-process, this machine):")
    figures["verify_ms_per_query"] = {}
    for shortlist in (50, 100, 200):
        ids, _ = exact(x, whitening.apply(v["copy_q"]), shortlist)
        t = figures["verify_ms_per_query"][shortlist] = timing(v["copy_features"], v["db_features"], ids, shortlist)
        print(f"  shortlist {shortlist}: p50 {t['p50_ms']:.1f} ms, p99 {t['p99_ms']:.1f} ms")
    record(args, figures, table(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
