"""What geometric verification adds to a search by image through the query worker: `lookalike serve` in its own
process, one client uploading altered simple-icons logos (JPEG) over loopback HTTP, without verification and
with it at shortlists of 50, 100 and 200, interleaved in rounds on the same worker, index and queries; p50/p99
latency and the difference from the unverified search.

  python bench/verify_http.py                    # 1,000 logos, 3 rounds of 4 s per setting
  python bench/verify_http.py --logos 300 --seconds 2 --rounds 2
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from benchkit.record import add_out_arg, record
from query import http_client, image_workload, measure, start_worker

SETTINGS = {"no verification": {"verify": "false"}, "verified, shortlist 50": {"shortlist": "50"},
            "verified, shortlist 100": {"shortlist": "100"}, "verified, shortlist 200": {"shortlist": "200"}}


def table(figures: dict[str, dict[str, float]]) -> str:
    """The docs' table of a run (docs/performance.md includes the committed record's)."""
    out = ["| `/search/images` | p50 | p99 | added p50 / p99 | QPS |", "|---|---|---|---|---|"]
    for name, f in figures.items():
        added = "" if name == "no verification" else f"+{f['added_p50_ms']:.1f} / +{f['added_p99_ms']:.1f} ms"
        out.append(f"| {name} | {f['p50_ms']:.1f} ms | {f['p99_ms']:.1f} ms | {added} | {f['qps']:.1f} |")
    return "\n".join(out)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", default=".bench-data/verify-http", help="where the store and the logo set are kept")
    p.add_argument("--logos", type=int, default=1000)
    p.add_argument("--seconds", type=float, default=4.0, help="duration of each measured cell")
    p.add_argument("--rounds", type=int, default=3)
    add_out_arg(p)
    args = p.parse_args()
    work = Path(args.work)
    store, uploads = image_workload(work, args.logos)
    proc, url = start_worker(store, "logos", work / "cache-http", work / "worker.log")
    try:
        calls = {name: http_client(url, "/search/images", lambda i, extra=extra: {
            "files": {"images": ("q.jpg", uploads[i % len(uploads)], "image/jpeg")}, "data": {"k": "10", **extra}})
            for name, extra in SETTINGS.items()}
        for call in calls.values():
            call(0)  # warm: connection, mapped pages of the features
        cells: dict[str, list[dict]] = {name: [] for name in SETTINGS}
        for _ in range(args.rounds):
            for name, call in calls.items():
                cells[name].append(measure(call, 1, args.seconds))
    finally:
        proc.terminate()
        proc.wait(30)
    base = {k: float(np.median([c[k] for c in cells["no verification"]])) for k in ("p50_ms", "p99_ms")}
    print(f"{args.logos} simple-icons logos with RootSIFT features, {len(uploads)} altered JPEG queries, 1 client, "
          f"median of {args.rounds} rounds of {args.seconds:g} s")
    figures = {}
    for name, rows in cells.items():
        p50, p99 = (float(np.median([c[k] for c in rows])) for k in ("p50_ms", "p99_ms"))
        qps = float(np.median([c["qps"] for c in rows]))
        print(f"  {name:24s} p50 {p50:6.1f} ms (+{p50 - base['p50_ms']:5.1f})  p99 {p99:6.1f} ms "
              f"(+{p99 - base['p99_ms']:5.1f})  {qps:5.1f} QPS")
        figures[name] = {"p50_ms": p50, "p99_ms": p99, "added_p50_ms": p50 - base["p50_ms"],
                         "added_p99_ms": p99 - base["p99_ms"], "qps": qps}
    record(args, {"logos": args.logos, "queries": len(uploads), "clients": 1, "settings": figures}, table(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
