"""Where to put a near-duplicate threshold, raw vs PCA-whitened vectors, side by side in one run:

  catalogue   the demo's 1,000 simple-icons logos (256 px PNG)
  copies      every 5th logo re-encoded as JPEG quality 70 and resized to 180 px: a near-duplicate of it
  others      each logo's closest *other* catalogue logo: what a threshold must stay above

The whitening (512 d) is learned from the catalogue's own vectors, as the nightly reindex does. Printed per
space: percentiles of copy-to-original scores and of closest-other scores, and at the thresholds where 1 % and
5 % of logos pair with some other logo, the share of near copies caught.
Whitened scores are lower and spread wider than raw cosine: thresholds do not carry over between the two.

  python bench/near_duplicate_scores.py [--model efficientnet_lite0]
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from benchkit.record import add_out_arg, record
from PIL import Image

from lookalike.dev.datasets import simple_icons_catalogue
from lookalike.embed.engine import EmbeddingEngine
from lookalike.model.loading import cached_model
from lookalike.model.spec import ModelSpec
from lookalike.model.whitening import learn


def embed(uris: list[str], model: str | None) -> np.ndarray:
    vectors, failed = EmbeddingEngine(cached_model(ModelSpec(name=model), "cpu"), batch_size=32,
                                      io_threads=2).embed_all(uris)
    if failed:
        raise RuntimeError(f"{len(failed)} image(s) could not be embedded, e.g. {next(iter(failed.values()))}")
    return vectors


def near_copy(src: str, dest: Path, size: int, quality: int) -> str:
    image = Image.open(src).convert("RGB").resize((size, size), Image.Resampling.BICUBIC)
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=quality)
    dest.write_bytes(buf.getvalue())
    return str(dest)


def describe(name: str, catalogue: np.ndarray, copies: np.ndarray, originals: np.ndarray) -> dict:
    pair = (copies * catalogue[originals]).sum(axis=1)
    sims = catalogue @ catalogue.T
    np.fill_diagonal(sims, -np.inf)
    other = sims.max(axis=1)  # each logo's closest other logo: a false pair at any threshold below it
    print(f"{name:9s} copy→original  min {pair.min():.3f}  p5 {np.quantile(pair, 0.05):.3f}  "
          f"median {np.median(pair):.3f}")
    print(f"{'':9s} closest other  median {np.median(other):.3f}  p95 {np.quantile(other, 0.95):.3f}  "
          f"p99 {np.quantile(other, 0.99):.3f}  ({(other > 0.999).sum()} logos have an identical twin)")
    figures = {"copy_to_original": {"min": float(pair.min()), "p5": float(np.quantile(pair, 0.05)),
                                    "median": float(np.median(pair))},
               "closest_other": {"median": float(np.median(other)), "p95": float(np.quantile(other, 0.95)),
                                 "p99": float(np.quantile(other, 0.99))}, "thresholds": []}
    for false_rate in (0.01, 0.05):
        threshold = float(np.quantile(other, 1 - false_rate))
        print(f"{'':9s} threshold {threshold:.2f} ({false_rate:.0%} of logos pair with another logo above it) "
              f"catches {(pair >= threshold).mean():.1%} of the near copies")
        figures["thresholds"].append({"false_pair_rate": false_rate, "threshold": threshold,
                                      "copies_caught": float((pair >= threshold).mean())})
    return figures


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="data")
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--every", type=int, default=5, help="make a near copy of every n-th logo")
    p.add_argument("--size", type=int, default=180)
    p.add_argument("--quality", type=int, default=70)
    p.add_argument("--model", default=None, help="default: the default model")
    add_out_arg(p)
    args = p.parse_args()
    data = Path(args.data)
    table = pq.read_table(simple_icons_catalogue(data, limit=1000))
    uris = table["uri"].to_pylist()
    originals = np.arange(0, len(uris), args.every)
    out_dir = data / f"near-copies-{args.size}px-q{args.quality}"
    out_dir.mkdir(parents=True, exist_ok=True)
    copy_uris = [near_copy(uris[i], out_dir / f"{Path(uris[i]).stem}.jpg", args.size, args.quality)
                 for i in originals]
    print(f"{len(uris):,} logos, {len(copy_uris)} near copies (JPEG q{args.quality}, {args.size} px), "
          f"{ModelSpec(name=args.model).name} GeM; whitening to {args.dim} d learned on the catalogue", flush=True)
    catalogue, copies = embed(uris, args.model), embed(copy_uris, args.model)
    raw = describe("raw", catalogue, copies, originals)
    whitening = learn(catalogue, args.dim)
    whitened = describe("whitened", whitening.apply(catalogue), whitening.apply(copies), originals)
    record(args, {"logos": len(uris), "copies": len(copy_uris), "model": ModelSpec(name=args.model).name,
                  "raw": raw, "whitened": whitened})
    return 0


if __name__ == "__main__":
    sys.exit(main())
