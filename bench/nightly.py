"""Two nights of the embed job side by side: night 1 embeds a whole catalogue, night 2 runs after 0.5% of the
images were changed (rewritten as another rendition, so new bytes and a new mtime/ETag) and 0.5% added.

Night 2 must read only the new and changed objects (its bytes read against theirs) and cost a small fraction of
night 1 (the ratio of wall times, both on the same machine in the same run). Run on a local-folder catalogue and
on an S3 server on 127.0.0.1 (moto, in this process); the catalogue is real marks (simple-icons, rendered with
resvg) under deterministic alterations (lookalike.dev.alterations), small PNGs like a trademark register's.
Prints each night's counters, stage times and the embed workers' peak RSS; --out records them.

  python bench/nightly.py                                   # 200,000 on the folder store, 20,000 on S3
  python bench/nightly.py --images 20000 --s3-images 2000   # a shorter run
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from benchkit.record import add_out_arg, record
from PIL import Image

from lookalike.dev.alterations import ALTERATIONS, altered, recolour
from lookalike.dev.datasets import SIMPLE_ICONS, fetch_npm_package, render_svg
from lookalike.embed import job as embed
from lookalike.embed.config import EmbedConfig
from lookalike.image.feature_spec import FeatureSettings
from lookalike.model.spec import ModelSpec

CHANGE, ADD = 0.005, 0.005
NAMES = sorted(ALTERATIONS)


def marks(data: Path, size: int) -> list[Image.Image]:
    package = fetch_npm_package(*SIMPLE_ICONS, data / "npm")
    out = []
    for svg in sorted((package / "icons").glob("*.svg")):
        out.append(render_svg(svg.read_text(), size, "1D2330"))
    return out


def rendition(base: list[Image.Image], i: int, night: int = 0) -> Image.Image:
    """Image i of the catalogue: mark i mod M, recoloured, under alteration (i // M) mod A; night > 0 redraws it.
    Every image's bytes are distinct (the recolouring's seed is its index)."""
    seed = i * 7919 + night * 104729
    mark = recolour(base[i % len(base)], np.random.default_rng(seed))
    return altered(mark, NAMES[(i // len(base) + night) % len(NAMES)], seed)


def write_catalogue(folder: Path, base: list[Image.Image], n: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    done = {p.name for p in folder.iterdir()}
    for i in range(n):
        name = f"m{i:07d}.png"
        if name not in done:
            rendition(base, i).save(folder / name, optimize=False)


def change_night(folder: Path, base: list[Image.Image], n: int, seed: int = 1) -> tuple[list[str], list[str]]:
    """Rewrite CHANGE × n images as other renditions and add ADD × n new ones; returns their names."""
    rng = np.random.default_rng(seed)
    changed = sorted(rng.choice(n, max(1, int(n * CHANGE)), replace=False).tolist())
    names = []
    for i in changed:
        path = folder / f"m{i:07d}.png"
        rendition(base, i, night=1).save(path)
        os.utime(path, (time.time() + 5, time.time() + 5))  # a later mtime even on a coarse-clock filesystem
        names.append(path.name)
    added = []
    for i in range(n, n + max(1, int(n * ADD))):
        rendition(base, i).save(folder / f"m{i:07d}.png")
        added.append(f"m{i:07d}.png")
    return names, added


def run_night(images: str, store: str, options: dict, args) -> dict:
    started = time.perf_counter()
    m = embed.run(EmbedConfig(images=images, store=store, master=args.master, storage_options=options,
                              images_per_task=args.images_per_task, model=ModelSpec(image_size=args.image_size),
                              local_features=FeatureSettings() if args.local_features else None))
    c, t = m["counts"], m["timings"]
    return {"wall_s": round(time.perf_counter() - started, 2), "images": c["images"],
            "unchanged_by_listing": c["unchanged_by_listing"], "read": c["read"], "bytes_read": c["bytes_read"],
            "hashed": c["hashed"], "embedded": c["new"], "carried": c["carried"], "failed": c["failed"],
            "list_s": t.get("list_s"), "plan_s": t.get("plan_s"), "tasks_s": t.get("tasks_s"),
            "worker_peak_rss_mb": m["memory"]["worker_peak_rss_mb"], "change_detection": m["change_detection"]}


def bench(kind: str, folder: Path, base, n: int, work: Path, args) -> dict:
    if kind == "folder":
        images, store, options, put = str(folder), str(work / "store-folder"), {}, None
    else:
        images, store, options, put = _s3(work)
        put(folder)
    first = run_night(images, store, options, args)
    changed, added = change_night(folder, base, n)
    if put:
        put(folder, changed + added)
    second = run_night(images, store, options, args)
    wanted = sum((folder / f).stat().st_size for f in changed + added)
    result = {"store": kind, "images": n, "night1": first, "night2": second, "changed": len(changed),
              "added": len(added), "changed_and_added_bytes": wanted,
              "bytes_read_ratio": round(second["bytes_read"] / wanted, 4),
              "time_ratio": round(second["wall_s"] / first["wall_s"], 4)}
    return result


def _s3(work: Path):
    import logging

    import fsspec
    from moto.server import ThreadedMotoServer
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # a line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    port = server.get_host_and_port()[1]
    options = {"key": "moto", "secret": "moto", "client_kwargs": {"endpoint_url": f"http://127.0.0.1:{port}"}}
    fs = fsspec.filesystem("s3", **options)
    fs.mkdir("bench")

    def put(folder: Path, names: list[str] | None = None) -> None:
        names = names if names is not None else sorted(p.name for p in folder.iterdir())
        fs.put([str(folder / x) for x in names], [f"bench/images/{x}" for x in names])

    return "s3://bench/images", "s3://bench/store", options, put


def table(results: list[dict]) -> str:
    """The docs' table of a run (docs/performance.md and deploy/SCALING.md include the committed record's)."""
    out = ["| store | images | night 1 | night 2 | night 2 / night 1 | night 2 read "
           "| its bytes / changed + added bytes |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in results:
        one, two = r["night1"], r["night2"]
        out.append(f"| {'local folder' if r['store'] == 'folder' else 'S3 (moto on 127.0.0.1)'} | {r['images']:,} | "
                   f"{one['wall_s']:.1f} s (list {one['list_s']:.1f}, tasks {one['tasks_s']:.1f}) | "
                   f"{two['wall_s']:.1f} s (list {two['list_s']:.1f}, plan {two['plan_s']:.1f}, "
                   f"tasks {two['tasks_s']:.1f}) | "
                   f"**{r['time_ratio']:.3f}** | "
                   f"{two['read']:,} objects, {two['bytes_read'] / 1e6:.1f} MB ({two['unchanged_by_listing']:,} "
                   f"unchanged by the listing) | **{r['bytes_read_ratio']:.3f}** |")
    peaks = [r[night]["worker_peak_rss_mb"] for r in results for night in ("night1", "night2")]
    out += ["", f"Embed workers' peak RSS {min(peaks):,}–{max(peaks):,} MB over every night."]
    return "\n".join(out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=200_000, help="catalogue size on the folder store")
    p.add_argument("--s3-images", type=int, default=20_000, help="catalogue size on the S3 server (0: skip)")
    p.add_argument("--size", type=int, default=96, help="rendered image size in pixels")
    p.add_argument("--master", default="local[2]")
    p.add_argument("--images-per-task", type=int, default=2000)
    p.add_argument("--image-size", type=int, default=None,
                   help="the model's input size (default: the model's own, 320 px); smaller makes night 1 cheaper, "
                        "which only makes night 2's share of it larger")
    p.add_argument("--no-local-features", dest="local_features", action="store_false",
                   help="vectors only (night 2 then copies no features parts either)")
    p.add_argument("--data", type=Path, default=Path(tempfile.gettempdir()) / "lookalike-bench-nightly")
    add_out_arg(p)
    args = p.parse_args()

    base = marks(args.data, args.size)
    results = []
    for kind, n in (("folder", args.images), ("s3", args.s3_images)):
        if n <= 0:
            continue
        work = args.data / f"run-{kind}-{n}"
        shutil.rmtree(work, ignore_errors=True)
        folder = work / "catalogue"
        t0 = time.perf_counter()
        write_catalogue(folder, base, n)
        print(f"{kind}: {n:,} images written in {time.perf_counter() - t0:.0f}s", flush=True)
        r = bench(kind, folder, base, n, work, args)
        results.append(r)
        for night in ("night1", "night2"):
            x = r[night]
            print(f"  {night}: {x['wall_s']:8.1f}s  listed {x['images']:,}, unchanged by listing "
                  f"{x['unchanged_by_listing']:,}, read {x['read']:,} ({x['bytes_read'] / 1e6:,.1f} MB), hashed "
                  f"{x['hashed']:,}, embedded {x['embedded']:,}, carried {x['carried']:,}; list {x['list_s']}s, "
                  f"plan {x['plan_s']}s, tasks {x['tasks_s']}s; worker peak RSS {x['worker_peak_rss_mb']:,} MB",
                  flush=True)
        print(f"  night 2 / night 1 time: {r['time_ratio']:.3f}; bytes read / changed+added bytes "
              f"({r['changed']:,} changed, {r['added']:,} added, {r['changed_and_added_bytes'] / 1e6:.2f} MB): "
              f"{r['bytes_read_ratio']:.3f}", flush=True)
        shutil.rmtree(work, ignore_errors=True)
    record(args, results, table(results))


if __name__ == "__main__":
    main()
