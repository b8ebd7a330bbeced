"""Embedding throughput, side by side in one run, on real images:

  (a) model forward only, on pre-decoded uint8 tensors      — the ceiling
  (b) the in-process engine end to end (read, hash, decode, resize, forward)
  (f) the same engine also extracting local features (RootSIFT, 256 keypoints) in its IO threads
  (c) the embed job on Spark local[2] (plan, tasks, Parquet shards, manifest; with local features, the default)

and the ratios b/a, f/b and c/f. Runs without Spark with --no-spark (e.g. on a GPU box that has torch only).

  python bench/embed_throughput.py                          # 2,000 simple-icons logos, CPU, all three
  python bench/embed_throughput.py --images DIR --model resnet50 --random-weights --device cuda --no-spark
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from benchkit.record import add_out_arg, record

from lookalike.embed.catalogue import load_catalogue
from lookalike.embed.engine import EmbeddingEngine
from lookalike.image.decode import decode, to_tensor
from lookalike.image.feature_spec import FeatureSettings
from lookalike.model.backbones import BACKBONES
from lookalike.model.loading import load_model, pick_device
from lookalike.model.spec import DEFAULT_MODEL, ModelSpec


def image_uris(args) -> list[str]:
    if args.images:
        table = load_catalogue(args.images)
    else:
        from lookalike.dev.datasets import simple_icons_catalogue
        table = load_catalogue(str(simple_icons_catalogue(Path(args.data_dir), limit=None)))
    uris = table["uri"].to_pylist()
    if len(uris) < args.limit:
        print(f"note: only {len(uris)} images available (asked for {args.limit})", file=sys.stderr)
    return uris[: args.limit]


def model_spec(args) -> ModelSpec:
    weights = args.weights
    if args.random_weights:  # speed does not depend on weight values; the fingerprint still names the file
        net = BACKBONES[args.model].build()
        weights = os.path.join(tempfile.mkdtemp(), f"{args.model}-random.pth")
        torch.save(net.state_dict(), weights)
    return ModelSpec(name=args.model, weights_uri=weights)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def forward_only(model, device, uris: list[str], batch_size: int) -> float:
    tensors = [to_tensor(decode(Path(u).read_bytes(), model.preprocessing.image_size).image,
                         model.preprocessing) for u in uris]
    batches = [torch.stack(tensors[i:i + batch_size]) for i in range(0, len(tensors), batch_size)]
    engine = EmbeddingEngine(model, device, batch_size)
    engine.forward(batches[0])  # warm-up: allocator, kernels
    sync(device)
    start = time.perf_counter()
    for batch in batches:  # the engine's own forward: channels_last, pinned copy, autocast on GPU
        engine.forward(batch)
    sync(device)
    return len(uris) / (time.perf_counter() - start)


def engine_end_to_end(model, device, uris, batch_size, io_threads, features=None) -> tuple[float, dict]:
    engine = EmbeddingEngine(model, device, batch_size, io_threads, local_features=features)
    list(engine.run(uris[:batch_size]))  # warm-up: allocator, kernels, thread pool
    start = time.perf_counter()
    results = list(engine.run(uris))
    sync(device)
    rate = len(results) / (time.perf_counter() - start)
    return rate, engine.stats.as_dict()


def spark_job(spec: ModelSpec, uris: list[str], batch_size: int, io_threads: int, master: str) -> float:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from lookalike.core.spark import session
    from lookalike.embed import job as embed
    from lookalike.embed.config import EmbedConfig

    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    session(master, "lookalike-bench").sparkContext.setLogLevel("ERROR")
    tmp = Path(tempfile.mkdtemp())
    table = tmp / "images.parquet"
    pq.write_table(pa.table({"image_id": [f"{i:06d}" for i in range(len(uris))], "uri": uris}), table)
    warm = tmp / "warm.parquet"
    pq.write_table(pa.table({"image_id": ["w0", "w1"], "uri": uris[:2]}), warm)

    def job(images: Path, store: str, per_task: int) -> float:
        start = time.perf_counter()
        embed.run(EmbedConfig(images=str(images), store=store, model=spec, master=master,
                              images_per_task=per_task, batch_size=batch_size, io_threads=io_threads))
        return time.perf_counter() - start

    job(warm, str(tmp / "warm-store"), 1)  # JVM, Python workers and their model load, as in a long job
    per_task = max(32, len(uris) // 16)
    return len(uris) / job(table, str(tmp / "store"), per_task)


def table(result: dict) -> str:
    """The docs' table of a run (docs/performance.md includes the committed record's)."""
    spark = "median_spark_img_s" in result
    head = "| | (a) forward only | (b) engine, end to end | (f) engine + local features |"
    head += " (c) Spark job, with local features | b/a | f/b | c/f |" if spark else " b/a | f/b |"
    out = [head, "|---" * head.count(" | ") + "|---|"]
    rows = [(f"round {i}", row) for i, row in enumerate(result["rounds"], 1)]
    rows.append(("**median**", {k.removeprefix("median_"): v for k, v in result.items() if k.startswith("median_")}))
    for name, row in rows:
        cells = [f"{row['forward_img_s']:.1f} img/s", f"{row['engine_img_s']:.1f} img/s",
                 f"{row['features_img_s']:.1f} img/s"] + ([f"{row['spark_img_s']:.1f} img/s"] if spark else [])
        cells += [f"{row['b_over_a']:.2f}", f"{row['f_over_b']:.2f}"] + ([f"{row['c_over_f']:.2f}"] if spark else [])
        out.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", help="folder or images table (default: the simple-icons logos)")
    p.add_argument("--data-dir", default="data")
    p.add_argument("--limit", type=int, default=2000)
    p.add_argument("--model", default=DEFAULT_MODEL)
    p.add_argument("--weights")
    p.add_argument("--random-weights", action="store_true")
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--io-threads", type=int, default=2)
    p.add_argument("--master", default="local[2]")
    p.add_argument("--no-spark", action="store_true")
    p.add_argument("--rounds", type=int, default=3)
    add_out_arg(p)
    args = p.parse_args()

    device = pick_device("0") if args.device == "cuda" else torch.device("cpu")
    uris = image_uris(args)
    spec = model_spec(args)
    model = load_model(spec, device)
    env = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu x{os.cpu_count()}",
           "torch": torch.__version__, "threads": torch.get_num_threads(), "model": args.model,
           "images": len(uris), "batch_size": args.batch_size, "io_threads": args.io_threads}
    print(json.dumps(env))
    # This machine is noisy: measurements are interleaved in rounds, and the ratios are taken within a round.
    rounds = []
    for r in range(1, args.rounds + 1):
        a = forward_only(model, device, uris, args.batch_size)
        b, stats = engine_end_to_end(model, device, uris, args.batch_size, args.io_threads)
        f, _ = engine_end_to_end(model, device, uris, args.batch_size, args.io_threads, FeatureSettings())
        row = {"forward_img_s": a, "engine_img_s": b, "features_img_s": f, "b_over_a": b / a, "f_over_b": f / b}
        line = (f"round {r}: (a) forward {a:7.1f} img/s  (b) engine {b:7.1f} img/s  (f) + features {f:7.1f} img/s"
                f"  b/a {b / a:.2f}  f/b {f / b:.2f}")
        if not args.no_spark:
            c = spark_job(spec, uris, args.batch_size, args.io_threads, args.master)
            row.update(spark_img_s=c, c_over_f=c / f)
            line += f"  (c) Spark {args.master} {c:7.1f} img/s  c/f {c / f:.2f}"
        print(line, flush=True)
        print(f"         engine: read {stats['read_s']:.1f}s decode {stats['decode_s']:.1f}s (thread-summed), "
              f"model {stats['model_s']:.1f}s, wall {stats['wall_s']:.1f}s", flush=True)
        rounds.append(row)
    result = {**env, "rounds": rounds}
    for key in ("forward_img_s", "engine_img_s", "features_img_s", "spark_img_s", "b_over_a", "f_over_b",
                "c_over_f"):
        if key in rounds[0]:
            result[f"median_{key}"] = statistics.median(row[key] for row in rounds)
    print("median: " + "  ".join(f"{k.removeprefix('median_')} {v:.2f}" for k, v in result.items()
                                  if k.startswith("median_")))
    record(args, result, table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
