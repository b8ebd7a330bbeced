"""`lookalike embed` (also `spark-submit jobs/embed.py`): images → an embeddings version."""

from __future__ import annotations

import argparse
import json
from typing import Any

from lookalike.cli.args import (
    add_local_features_arg,
    add_master_arg,
    add_model_args,
    add_spark_args,
    add_store_args,
    key_values,
    local_features,
    model_spec,
    spark_conf,
)
from lookalike.embed.config import EmbedConfig


def embed_parser(p: argparse.ArgumentParser, submitted: bool = False) -> None:
    p.add_argument("--images", required=True, help="folder/prefix URL, or a .parquet/.csv images table")
    add_store_args(p)
    add_model_args(p)
    add_master_arg(p, submitted)
    p.add_argument("--run-id", default=None, help="name of the run; an existing id resumes it")
    add_embedding_args(p)
    p.add_argument("--no-incremental", action="store_true", help="recompute every vector")
    add_spark_args(p)
    p.add_argument("--json", action="store_true", help="print the manifest as JSON")


def add_embedding_args(p: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """How images are read and embedded: shared by `embed` and `reindex`."""
    p.add_argument("--images-per-task", type=int, default=500,
                   help="images per Spark task: a task is what a failure retries and a rerun skips when committed")
    p.add_argument("--batch-size", type=int, default=None,
                   help="images per forward pass (default 8 on a CPU, where a batch's activations are the worker's "
                        "memory; 64 on a GPU)")
    p.add_argument("--io-threads", type=int, default=2,
                   help="threads per task reading and decoding images (and extracting local features) while the "
                        "model runs")
    p.add_argument("--images-in-flight", type=int, default=None, metavar="N",
                   help="per task, images read, decoded or batched at once: fewer bound a worker's memory more "
                        "tightly, more keep the model busier on a slow store (default: 2 batches)")
    p.add_argument("--max-error-rate", type=float, default=0.05,
                   help="the share of images that may fail (errors table) before the run refuses to commit")
    p.add_argument("--rehash", action="store_true",
                   help="read and hash every image instead of trusting the listing's ETag/mtime (a weekly check)")
    add_local_features_arg(p)


def embed_config(args: argparse.Namespace) -> EmbedConfig:
    options = key_values(args.store_option, "--store-option")
    return EmbedConfig(
        images=args.images, store=args.store, model=model_spec(args, options), run_id=args.run_id,
        master=args.master, storage_options=options, images_per_task=args.images_per_task,
        batch_size=args.batch_size, io_threads=args.io_threads, max_error_rate=args.max_error_rate,
        incremental=not args.no_incremental, rehash=args.rehash, images_in_flight=args.images_in_flight,
        local_features=local_features(args),
        spark_conf=spark_conf(args.spark_conf, args.event_log, key_values(args.store_option, "--store-option")),
    )


def summarise_embed(manifest: dict[str, Any]) -> str:
    c, t = manifest["counts"], manifest["timings"]
    rate = c["images"] / t["tasks_s"] if t.get("tasks_s") else 0.0
    return (f"embeddings {manifest['fingerprint_id']}/{manifest['run_id']}: {c['rows']} rows "
            f"({c['new']} embedded, {c['carried']} carried over; images: {c.get('ids_added', 0)} new, "
            f"{c.get('ids_changed', 0)} changed, {c['removed']} removed, {c['failed']} failed) "
            f"in {t['total_s']:.1f}s ({rate:.1f} img/s); {c.get('unchanged_by_listing', 0)} unchanged by the "
            f"listing, {c.get('read', c['images'])} read ({c.get('bytes_read', 0):,} bytes)")


def run_embed(args: argparse.Namespace) -> str:
    from lookalike.embed import job as embed  # torch is imported only when a command embeds
    manifest = embed.run(embed_config(args))
    return json.dumps(manifest, indent=2) if args.json else summarise_embed(manifest)


