"""`make demo`: the main job on the embedded default — local Spark, a local folder as the store, the bundled
model, and ~1,000 real brand logos from the npm package simple-icons (DEMO_FULL=1 for all ~3,500)."""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path

import numpy as np

from lookalike import embed, index_build
from lookalike.cli import summarise_embed, summarise_index
from lookalike.config import EmbedConfig
from lookalike.datasets import simple_icons_catalogue
from lookalike.index_build import BuildIndexConfig
from lookalike.index_reader import IndexVersion, load_index_version
from lookalike.storage import Store

QUERIES = ("python", "docker", "adidas")  # in the default 1,000-logo subset

ROOT = Path(os.environ.get("DEMO_DIR", Path.cwd()))


def main() -> int:
    logging.basicConfig(level=logging.WARNING)
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    full = os.environ.get("DEMO_FULL") == "1"
    started = time.perf_counter()
    print("1/3 fetching and rasterising the simple-icons logo set (npm, CC0) ...", flush=True)
    table = simple_icons_catalogue(ROOT / "data", limit=None if full else 1000)
    store = (ROOT / "demo-store").resolve()
    print(f"2/3 embedding {table.name} with Spark local[2] into {store} ...", flush=True)
    manifest = embed.run(EmbedConfig(images=str(table), store=str(store), master="local[2]",
                                     images_per_task=250, progress=sys.stderr.isatty()))
    print(summarise_embed(manifest))
    t = manifest["timings"]
    print(f"  engine time: read {t['engine_read_s']:.1f}s, decode {t['engine_decode_s']:.1f}s, "
          f"model {t['engine_model_s']:.1f}s (summed over tasks)")
    print(f"  manifest: {store}/embeddings/{manifest['fingerprint_id']}/{manifest['run_id']}/_MANIFEST.json")
    print("3/3 building, measuring and publishing the index 'logos' ...", flush=True)
    index = index_build.run(BuildIndexConfig(store=str(store), name="logos", master="local[2]", publish=True,
                                             incremental=True, queries=200))
    print(summarise_index(index))
    print_neighbours(load_index_version(Store(str(store)), "logos"))
    print(f"demo finished in {time.perf_counter() - started:.0f}s; run it again to see an incremental run "
          "carry every vector over")
    return 0


def print_neighbours(version: IndexVersion, k: int = 5) -> None:
    """Top hits of a few catalogue logos, searched with their own stored vectors (self-match dropped)."""
    ids = version.ids.to_pydict()
    row_of = {image_id: i for i, image_id in enumerate(ids["image_id"])}
    for name in (q for q in QUERIES if q in row_of):
        faiss_id = ids["faiss_id"][row_of[name]]
        scores, hits = version.search(version.vectors[[faiss_id]].astype(np.float32), k + 1)
        found = [(ids["image_id"][int(np.searchsorted(ids["faiss_id"], h))], s)
                 for h, s in zip(hits[0], scores[0], strict=True) if h >= 0 and h != faiss_id][:k]
        print(f"  {name:8s} → " + ", ".join(f"{image_id} ({score:.2f})" for image_id, score in found))


if __name__ == "__main__":
    sys.exit(main())
