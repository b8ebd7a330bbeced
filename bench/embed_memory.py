"""An embed worker's peak memory and throughput, side by side: the engine as it was (batch norms as layers of their
own, 32 images a batch) against folded batch norms at batches of 32, 16 and 8 (8 is the CPU default).

Each setting runs in a process of its own (peak RSS is a process's high-water mark, VmHWM), with the default
features (RootSIFT) and as many torch threads as one Spark task gets on `local[2]` (--threads 1), over the same
simple-icons logos, in interleaved rounds; prints medians and the ratios to the old engine.

  python bench/embed_memory.py [--images 1000] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from benchkit.memory import one_run
from benchkit.record import add_out_arg, record

SETTINGS = {  # name: (fold batch norms, batch size)
    "before: unfolded, batch 32": (False, 32),
    "folded, batch 32": (True, 32),
    "folded, batch 16": (True, 16),
    "folded, batch 8 (default)": (True, 8),
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=1000)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--data", type=Path, default=Path(tempfile.gettempdir()) / "lookalike-bench-data")
    p.add_argument("--one", nargs=4, metavar=("TABLE", "FOLD", "BATCH", "THREADS"), help=argparse.SUPPRESS)
    add_out_arg(p)
    args = p.parse_args()
    if args.one:
        table, fold, batch, threads = args.one
        print(json.dumps(one_run(table, fold == "1", int(batch), int(threads))))
        return

    from lookalike.dev.datasets import simple_icons_catalogue
    table = str(simple_icons_catalogue(args.data, limit=args.images))
    results: dict[str, list[dict]] = {name: [] for name in SETTINGS}
    for r in range(args.rounds):
        for name, (fold, batch) in SETTINGS.items():
            out = subprocess.run([sys.executable, __file__, "--one", table, str(int(fold)), str(batch),
                                  str(args.threads)], check=True, capture_output=True, text=True).stdout
            results[name].append(json.loads(out.strip().splitlines()[-1]))
            print(f"round {r + 1}: {name}: {results[name][-1]}", flush=True)
    base = statistics.median(x["images_per_s"] for x in results["before: unfolded, batch 32"])
    base_rss = max(x["peak_rss_mb"] for x in results["before: unfolded, batch 32"])
    print(f"\n{args.images} logos, {args.threads} torch thread(s), RootSIFT on, {args.rounds} rounds (medians)")
    print(f"{'setting':30} {'img/s':>7} {'× before':>9} {'peak RSS MB':>12} {'× before':>9}")
    figures = {}
    for name, runs in results.items():
        rate = statistics.median(x["images_per_s"] for x in runs)
        rss = max(x["peak_rss_mb"] for x in runs)
        print(f"{name:30} {rate:7.1f} {rate / base:9.3f} {rss:12,} {rss / base_rss:9.3f}")
        figures[name] = {"images_per_s": rate, "x_before": rate / base, "peak_rss_mb": rss,
                         "rss_x_before": rss / base_rss}
    record(args, {"images": args.images, "threads": args.threads, "settings": figures})


if __name__ == "__main__":
    main()
