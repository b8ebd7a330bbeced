"""Retrieval quality of embedding recipes on a real cross-collection logo set, side by side in one run:

  database  every simple-icons logo (~3,470, monochrome glyphs in their brand colour)
  queries   the same brands as drawn by @iconify-json/logos (~700, full colour, often with a wordmark);
            each query's one relevant answer is its brand's simple-icons logo, all others are distractors

For each recipe (pooling × input size × scales) it embeds both sides with the bundled EfficientNet-Lite0, searches
exactly, and prints P@1, R@10, mAP (= MRR here, one relevant item) and nDCG@10 — the default recipe first, the
others as differences from it. Quality figures are deterministic: no rounds needed.

  python bench/quality.py
  python bench/quality.py --recipes gem:224 avg:224 gem:224:1,0.707
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))

import faiss  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from lookalike.datasets import cross_collection_queries, simple_icons_catalogue  # noqa: E402
from lookalike.embed_task import cached_model  # noqa: E402
from lookalike.engine import Embedded, EmbeddingEngine  # noqa: E402
from lookalike.metrics import judge_queries, summary  # noqa: E402
from lookalike.models import ModelSpec  # noqa: E402

RECIPES = ("gem:224", "avg:224", "max:224", "rmac:224", "gem:320", "gem:224:1,0.707", "gem:320:1,0.707,0.5",
           "gem:224:1.414,1,0.707")
DEPTH = 100


def embed_all(spec: ModelSpec, uris: list[str]) -> np.ndarray:
    engine = EmbeddingEngine(cached_model(spec, "cpu"), batch_size=32, io_threads=2)
    out = np.zeros((len(uris), engine.model.dim), np.float32)
    for r in engine.run(uris):
        if not isinstance(r, Embedded):
            raise RuntimeError(f"{uris[r.index]} could not be embedded: {r}")
        out[r.index] = r.vector
    return out


def _whitened(x: np.ndarray, q: np.ndarray, dim: int, db_ids: list[str], relevant: list[set]) -> dict:
    """PCA-whitening (faiss PCAMatrix, eigenvalues^-1/2) learned on the catalogue, applied to both sides,
    then L2-normalised again: the classic post-processing of CNN retrieval descriptors."""
    pca = faiss.PCAMatrix(x.shape[1], dim, -0.5)
    pca.train(x)
    xw, qw = (faiss.normalize_L2(a) or a for a in (pca.apply(x), pca.apply(q)))
    flat = faiss.IndexFlatIP(dim)
    flat.add(xw)
    _, nb = flat.search(qw, DEPTH)
    return summary(judge_queries([[db_ids[i] for i in row] for row in nb], relevant))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="data", help="where the npm packages and rasterised logos are kept")
    p.add_argument("--recipes", nargs="+", default=list(RECIPES), metavar="POOLING:SIZE[:SCALES]",
                   help="e.g. gem:224 or, multi-scale, gem:320:1,0.707,0.5")
    p.add_argument("--whiten-dims", nargs="*", type=int, default=[1280, 512, 256],
                   help="PCA-whitening output sizes tried on the first recipe's vectors")
    args = p.parse_args()
    data = Path(args.data)
    database = pq.read_table(simple_icons_catalogue(data, limit=None))
    queries = pq.read_table(cross_collection_queries(data))
    db_ids = database["image_id"].to_pylist()
    relevant = [{b} for b in queries["relevant"].to_pylist()]
    print(f"{len(queries):,} iconify queries against {len(database):,} simple-icons logos, exact search, "
          f"top {DEPTH}", flush=True)
    rows = []
    for recipe in args.recipes:
        pooling, size, *scales = recipe.split(":")
        spec = ModelSpec(pooling=pooling, image_size=int(size),
                         scales=tuple(float(s) for s in scales[0].split(",")) if scales else (1.0,))
        t0 = time.perf_counter()
        x = embed_all(spec, database["uri"].to_pylist())
        q = embed_all(spec, queries["uri"].to_pylist())
        flat = faiss.IndexFlatIP(x.shape[1])
        flat.add(x)
        _, nb = flat.search(q, DEPTH)
        m = summary(judge_queries([[db_ids[i] for i in row] for row in nb], relevant))
        rows.append((recipe, m))
        if recipe == args.recipes[0]:
            whitened = [(f"{recipe}+pcaw{d}", _whitened(x, q, d, db_ids, relevant)) for d in args.whiten_dims]
        print(f"{recipe:21s} P@1 {m['precision@1']:.3f}  R@10 {m['recall@10']:.3f}  mAP {m['map']:.3f}  "
              f"nDCG@10 {m['ndcg@10']:.3f}  ({time.perf_counter() - t0:.0f}s)", flush=True)
    for name, m in whitened:
        rows.append((name, m))
        print(f"{name:21s} P@1 {m['precision@1']:.3f}  R@10 {m['recall@10']:.3f}  mAP {m['map']:.3f}  "
              f"nDCG@10 {m['ndcg@10']:.3f}  (PCA-whitening learned on the database vectors)")
    base_name, base = rows[0]
    print(f"\ndifferences from {base_name} (positive = better):")
    for recipe, m in rows[1:]:
        print(f"{recipe:21s} " + "  ".join(f"{k} {m[k] - base[k]:+.3f}" for k in
                                          ("precision@1", "recall@10", "map", "ndcg@10")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
