"""What one embed task's Python worker holds, for sizing executor pods (deploy/SCALING.md, "Memory per pod"):
its peak resident memory (VmHWM: what the pod's memory limit must hold) and its peak address space (VmPeak: what
an RLIMIT_AS such as `spark.executor.pyspark.memory` caps, far above the resident figure because torch and its
allocator reserve address space they never touch), at the batch sizes the shipped settings use.

Each setting runs the real engine (the default model and RootSIFT features) in a process of its own over the
same simple-icons logos, with the shipped executors' IO threads, one torch thread per task as on `local[N]`:

  python bench/pod_memory.py [--images 600] [--batches 8 64 128] [--io-threads 8]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from benchkit.memory import one_run
from benchkit.record import add_out_arg, record


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=600)
    p.add_argument("--batches", type=int, nargs="+", default=[8, 64, 128])
    p.add_argument("--io-threads", type=int, default=8)
    p.add_argument("--data", type=Path, default=Path(tempfile.gettempdir()) / "lookalike-bench-data")
    p.add_argument("--one", nargs=3, metavar=("TABLE", "BATCH", "IO_THREADS"), help=argparse.SUPPRESS)
    add_out_arg(p)
    args = p.parse_args()
    if args.one:
        table, batch, io_threads = args.one
        print(json.dumps(one_run(table, True, int(batch), 1, int(io_threads))))
        return

    from lookalike.dev.datasets import simple_icons_catalogue
    table = str(simple_icons_catalogue(args.data, limit=args.images))
    print(f"{args.images} logos, RootSIFT on, {args.io_threads} IO threads, 1 torch thread, CPU")
    print(f"{'batch':>6} {'img/s':>7} {'peak RSS MiB':>13} {'peak address space MiB':>23} {'ratio':>6}")
    figures = {}
    for batch in args.batches:
        out = subprocess.run([sys.executable, __file__, "--one", table, str(batch), str(args.io_threads)],
                             check=True, capture_output=True, text=True).stdout
        r = json.loads(out.strip().splitlines()[-1])
        print(f"{batch:>6} {r['images_per_s']:7.1f} {r['peak_rss_mb']:13,} {r['peak_address_space_mb']:23,} "
              f"{r['peak_address_space_mb'] / r['peak_rss_mb']:6.1f}", flush=True)
        figures[batch] = r
    record(args, {"images": args.images, "io_threads": args.io_threads, "batches": figures})


if __name__ == "__main__":
    main()
