"""The embed driver's memory while it lists a folder catalogue: lookalike's listing against one `find` call.

load_catalogue lists a folder or prefix a directory at a time (fsspec `walk` with details) and turns each
directory into Arrow columns at once; the baseline is one `find(detail=True)` call, which returns every object's
details as Python dicts before any is converted (what lookalike did before). Both build the same table of ids,
URIs and source tags, each in a process of its own, sampling anonymous RSS every 5 ms; the folder holds N empty
`.png` files, 1,000 a directory.

  python bench/listing_memory.py [--n 1000000]
"""

from __future__ import annotations

import argparse
import os
import posixpath
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from benchkit.memory import anonymous_rss
from benchkit.record import add_out_arg, record


def make_folder(root: Path, n: int) -> None:
    for d in range(-(-n // 1000)):
        folder = root / f"{d:05d}"
        folder.mkdir(parents=True)
        for i in range(d * 1000, min(n, (d + 1) * 1000)):
            (folder / f"m{i:09d}.png").touch()


def find_listing(url: str):
    """The baseline: every object's details in one find call, then the same table."""
    import pyarrow as pa

    from lookalike.core.store import filesystem
    from lookalike.embed.catalogue import IMAGE_EXTENSIONS
    from lookalike.embed.source_tags import listing_tag
    fs, root = filesystem(url, None)
    listed = fs.find(root, withdirs=False, detail=True)
    paths = sorted(p for p in listed if posixpath.splitext(p)[1].lower() in IMAGE_EXTENSIONS)
    rel = [posixpath.relpath(p, root) for p in paths]
    return pa.table({"image_id": rel, "uri": [f"{url}/{r}" for r in rel],
                     "source_tag": pa.array([listing_tag(listed[p]) for p in paths], pa.string())})


def measure(way: str, url: str) -> None:
    """In its own process: list the folder one way, print 'rows seconds peak_added_bytes'."""
    peak = [0]

    def sample() -> None:
        while True:
            peak[0] = max(peak[0], anonymous_rss())
            time.sleep(0.005)
    threading.Thread(target=sample, daemon=True).start()
    from lookalike.embed.catalogue import load_catalogue
    time.sleep(0.05)
    before = anonymous_rss()
    t0 = time.perf_counter()
    table = load_catalogue(url) if way == "walk" else find_listing(url)
    elapsed = time.perf_counter() - t0
    time.sleep(0.02)
    print(table.num_rows, elapsed, peak[0] - before)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=1_000_000)
    p.add_argument("--measure", choices=("walk", "find"), help=argparse.SUPPRESS)
    p.add_argument("--url", help=argparse.SUPPRESS)
    add_out_arg(p)
    args = p.parse_args()
    if args.measure:
        measure(args.measure, args.url)
        return
    with tempfile.TemporaryDirectory(prefix="lookalike-listing-bench-") as tmp:
        t0 = time.perf_counter()
        make_folder(Path(tmp) / "catalogue", args.n)
        print(f"{args.n:,} files in {args.n // 1000:,} directories made in {time.perf_counter() - t0:.0f}s; "
              f"{os.cpu_count()} cores", flush=True)
        results = {}
        for way in ("find", "walk", "find", "walk"):  # interleaved: this machine is noisy
            out = subprocess.run([sys.executable, __file__, "--measure", way, "--url", f"{tmp}/catalogue"],
                                 check=True, capture_output=True, text=True).stdout.split()
            rows, seconds, added = int(out[0]), float(out[1]), int(out[2])
            assert rows == args.n, (way, rows)
            best = results.get(way)
            results[way] = (min(seconds, best[0]), min(added, best[1])) if best else (seconds, added)
        for way, label in (("find", "one find(detail=True)"), ("walk", "lookalike (walk)")):
            seconds, added = results[way]
            print(f"{label:24s} {seconds:6.1f}s  peak +{added / args.n:6.0f} B/image "
                  f"(+{added / 2**20:,.0f} MiB)")
        print(f"walk / find: time {results['walk'][0] / results['find'][0]:.2f}×, peak memory "
              f"{results['walk'][1] / results['find'][1]:.2f}×")
        record(args, {"files": args.n, **{way: {"s": s, "peak_bytes_per_image": added / args.n}
                                          for way, (s, added) in results.items()}})


if __name__ == "__main__":
    main()
