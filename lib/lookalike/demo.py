"""`make demo`: the main job on the embedded default — local Spark, a local folder as the store, the bundled
model, and ~1,000 real brand logos from the npm package simple-icons (DEMO_FULL=1 for all ~3,500)."""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path

from lookalike import embed
from lookalike.cli import summarise_embed
from lookalike.config import EmbedConfig
from lookalike.datasets import simple_icons_catalogue

ROOT = Path(os.environ.get("DEMO_DIR", Path.cwd()))


def main() -> int:
    logging.basicConfig(level=logging.WARNING)
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    full = os.environ.get("DEMO_FULL") == "1"
    started = time.perf_counter()
    print("1/2 fetching and rasterising the simple-icons logo set (npm, CC0) ...", flush=True)
    table = simple_icons_catalogue(ROOT / "data", limit=None if full else 1000)
    store = (ROOT / "demo-store").resolve()
    print(f"2/2 embedding {table.name} with Spark local[2] into {store} ...", flush=True)
    manifest = embed.run(EmbedConfig(images=str(table), store=str(store), master="local[2]",
                                     images_per_task=250, progress=sys.stderr.isatty()))
    print(summarise_embed(manifest))
    t = manifest["timings"]
    print(f"  engine time: read {t['engine_read_s']:.1f}s, decode {t['engine_decode_s']:.1f}s, "
          f"model {t['engine_model_s']:.1f}s (summed over tasks)")
    print(f"  manifest: {store}/embeddings/{manifest['fingerprint_id']}/{manifest['run_id']}/_MANIFEST.json")
    print(f"demo finished in {time.perf_counter() - started:.0f}s; run it again to see an incremental run "
          "carry every vector over")
    return 0


if __name__ == "__main__":
    sys.exit(main())
