"""What a query worker holds and spends under a heavy but valid request: 16 uploads of 6300×6300 PNGs (about 110 KB
each, 119 MB each decoded), searched with verification and without it, each in a fresh `lookalike serve` process;
then the same request with a time limit shorter than its work, and the CPU the worker spends after answering 504.
The baseline is the same upload without verification: verification's decodes share the pixel budget, so it should
cost about the same memory.

    python bench/worker_bounds.py [--images 16] [--budget 50000000] [--timeout 5]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from benchkit.record import add_out_arg, record

from lookalike.dev.imagefactory import PHOTOS, keypoint_rich_png, write_photo_crops
from lookalike.dev.net import free_port
from lookalike.dev.procfs import cpu_seconds, status_bytes
from lookalike.embed import job as embed
from lookalike.embed.config import EmbedConfig
from lookalike.index import build
from lookalike.index.build import BuildIndexConfig


def measure(store: str, files: list, verify: bool, budget: int, timeout: float) -> dict[str, float]:
    port = free_port()
    with tempfile.TemporaryDirectory() as cache:
        worker = subprocess.Popen([sys.executable, "-m", "lookalike.cli.main", "serve", "--store", store, "--index",
                                   "marks", "--port", str(port), "--cache-dir", cache, "--request-timeout",
                                   str(timeout), "--max-pixels-in-flight", str(budget)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{port}"
        try:
            while True:
                try:
                    if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.3)
            before = status_bytes(worker.pid, "VmHWM")
            started = time.monotonic()
            r = httpx.post(url + "/search/images", files=files, data={"k": "1", "verify": str(verify).lower()},
                           timeout=600)
            took = time.monotonic() - started
            cpu = cpu_seconds(worker.pid)
            time.sleep(5)
            return {"status": r.status_code, "seconds": took, "grown_mib": (status_bytes(worker.pid, "VmHWM") - before)
                    / 2 ** 20, "cpu_after_answer_s": cpu_seconds(worker.pid) - cpu}
        finally:
            worker.terminate()
            worker.wait(30)


def table(cases: dict[str, dict], plain: dict) -> str:
    """The docs' table of a run (docs/performance.md includes the committed record's)."""
    out = ["| request | answer | worker peak memory | CPU after the answer |", "| --- | --- | --- | --- |"]
    for name, m in cases.items():
        ratio = "" if m is plain else f" ({m['grown_mib'] / max(plain['grown_mib'], 1):.2f}×)"
        out.append(f"| {name} | {m['status']} in {m['seconds']:.1f} s | +{m['grown_mib']:,.0f} MiB{ratio} | "
                   f"{m['cpu_after_answer_s']:.2f} s |")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--budget", type=int, default=50_000_000, help="the worker's --max-pixels-in-flight")
    parser.add_argument("--timeout", type=float, default=5.0, help="the time limit of the timed-out run")
    add_out_arg(parser)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        images = Path(tmp) / "images"
        images.mkdir()
        write_photo_crops(images, PHOTOS[:4], per_photo=2)
        store = str(Path(tmp) / "store")
        embed.run(EmbedConfig(images=str(images), store=store, master="in-process"))
        build.run(BuildIndexConfig(store=store, name="marks", master="in-process", publish=True, queries=2))
        files = [("images", (f"big-{i}.png", keypoint_rich_png(6300, i), "image/png")) for i in range(args.images)]
        plain = measure(store, files, False, args.budget, 600)
        verified = measure(store, files, True, args.budget, 600)
        late = measure(store, files, True, args.budget, args.timeout)
    for name, m in (("without verification", plain), ("with verification", verified),
                    (f"with verification, {args.timeout:g} s limit", late)):
        print(f"{name:36} HTTP {m['status']} in {m['seconds']:5.1f} s; worker peak +{m['grown_mib']:6.0f} MiB; "
              f"CPU after the answer {m['cpu_after_answer_s']:.2f} s")
    print(f"verification / none: peak memory {verified['grown_mib'] / max(plain['grown_mib'], 1):.2f}×, "
          f"time {verified['seconds'] / plain['seconds']:.2f}×")
    cases = {"without verification": plain, "with verification (the default)": verified,
             f"with verification, `--request-timeout {args.timeout:g}`": late}
    record(args, {"images": args.images, "budget_pixels": args.budget, **cases}, table(cases, plain))


if __name__ == "__main__":
    main()
