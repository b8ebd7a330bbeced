"""The embed driver's memory while it plans a night: the listing of N images against a previous version of N rows.

Planning (lookalike.embed.plan.write_plan) joins the catalogue's listing with the previous version's ids, hashes
and source tags (as 64-bit keys, matched by sorting), and writes the plan and the hash-sorted carry index
(streamed through local spill files); beyond the listing itself, what it holds is ~100 bytes an image. The
previous version is real embeddings parts (tiny 8-d vectors: planning never reads vectors), the listing a table
with every tag unchanged but 1%. Prints the driver's peak RSS over the planning and the bytes per image.

  python bench/plan_memory.py [--n 1000000]
"""

from __future__ import annotations

import argparse
import hashlib
import tempfile
import time

import numpy as np
import pyarrow as pa
from benchkit.memory import RssSampler, anonymous_rss, current_rss
from benchkit.record import add_out_arg, record

from lookalike.core.layout import EmbeddingsLayout
from lookalike.core.store import Store
from lookalike.dev.synthetic import write_embeddings_version
from lookalike.embed.config import EmbedConfig
from lookalike.embed.plan import write_plan
from lookalike.embed.source_tags import LISTED_SHA, SOURCE_TAG


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=1_000_000)
    p.add_argument("--parts", type=int, default=20)
    add_out_arg(p)
    args = p.parse_args()
    n = args.n
    scratch = tempfile.TemporaryDirectory(prefix="lookalike-plan-bench-")  # removed at exit
    store = Store(scratch.name)
    ids = [f"marks/{i // 1000:05d}/m{i:09d}.png" for i in range(n)]
    tags = [f"etag:{i * 2654435761 % 2**64:016x}{i:016x}:{20000 + i % 5000}" for i in range(n)]
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((n, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    hashes = [hashlib.sha256(i.encode()).hexdigest() for i in ids]  # real hashes: uniform, as the carry index expects
    m = write_embeddings_version(store, vectors, run_id="night1", parts=args.parts, fingerprint_id="plan-bench",
                                 image_ids=ids, content_hashes=hashes)
    for f in m["files"]["embeddings"]:  # the tags a night-1 embed run would have stored
        part = store.read_parquet(f["key"])
        lo = int(part["image_id"][0].as_py().rsplit("m", 1)[1].split(".")[0])
        store.write_parquet(f["key"], part.append_column(SOURCE_TAG, pa.array(tags[lo:lo + part.num_rows])))
    changed = set(rng.choice(n, n // 100, replace=False).tolist())
    listing = pa.table({"image_id": ids, "uri": [f"s3://catalogue/{i}" for i in ids],
                        SOURCE_TAG: [t + "x" if i in changed else t for i, t in enumerate(tags)],
                        LISTED_SHA: pa.nulls(n, pa.string())})
    del vectors, tags, hashes
    before = current_rss()
    config = EmbedConfig(images="s3://catalogue", store=store.url, images_per_task=2000, local_features=None)
    t0 = time.perf_counter()
    with RssSampler() as rss:
        info = write_plan(config, store, EmbeddingsLayout(store, "plan-bench", "night2"), listing)
    elapsed = time.perf_counter() - t0
    listing_bytes = listing.nbytes
    print(f"{n:,} images, {n // 100:,} changed tags: planned in {elapsed:.1f}s, {info.unchanged_by_listing:,} carried "
          f"by the listing; listing table {listing_bytes / 2**20:,.0f} MiB ({listing_bytes / n:.0f} B/image); driver "
          f"RSS {before / 2**30:.2f} GiB before planning, peak {rss.peak_gib:.2f} GiB (anonymous "
          f"{rss.peak_anon / 2**30:.2f}); planning added {(rss.peak - before) / n:.0f} B/image at its peak; "
          f"now {anonymous_rss() / 2**30:.2f} GiB anonymous")
    record(args, {"images": n, "changed": n // 100, "plan_s": elapsed, "carried_by_listing": info.unchanged_by_listing,
                  "listing_bytes_per_image": listing_bytes / n, "rss_before_gib": before / 2**30,
                  "peak_rss_gib": rss.peak_gib, "added_bytes_per_image": (rss.peak - before) / n})


if __name__ == "__main__":
    main()
