"""`lookalike embed` (also `spark-submit jobs/embed.py`): images → an embeddings version."""

from __future__ import annotations

import argparse
import json
from typing import Any

from lookalike.cli.args import (
    add_images_arg,
    add_json_arg,
    add_local_features_arg,
    add_master_arg,
    add_model_args,
    add_run_id_arg,
    add_spark_args,
    add_store_args,
    key_values,
    local_features,
    model_spec,
    spark_conf,
)
from lookalike.core.options import add_options, option_values
from lookalike.embed.config import EmbedConfig

# How images are read and embedded: EmbedConfig's fields, flags of `embed` and `reindex` alike.
EMBEDDING_OPTIONS = ("images_per_task", "batch_size", "io_threads", "images_in_flight", "max_error_rate", "rehash")


def embed_parser(p: argparse.ArgumentParser, submitted: bool = False) -> None:
    add_images_arg(p)
    add_store_args(p)
    add_model_args(p)
    add_master_arg(p, submitted)
    add_run_id_arg(p)
    add_embedding_args(p)
    p.add_argument("--no-incremental", action="store_true", help="recompute every vector")
    add_spark_args(p)
    add_json_arg(p)


def add_embedding_args(p: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """How images are read and embedded: shared by `embed` and `reindex`."""
    add_options(p, EmbedConfig, EMBEDDING_OPTIONS)
    add_local_features_arg(p)


def embed_config(args: argparse.Namespace, incremental: bool | None = None) -> EmbedConfig:
    """The embed job's config from `embed`'s or `reindex`'s arguments (reindex decides `incremental` itself)."""
    options = key_values(args.store_option, "--store-option")
    return EmbedConfig(
        images=args.images, store=args.store, model=model_spec(args, options), run_id=args.run_id,
        master=args.master, storage_options=options, local_features=local_features(args),
        incremental=not args.no_incremental if incremental is None else incremental,
        spark_conf=spark_conf(args.spark_conf, args.event_log, options),
        **option_values(args, EmbedConfig, EMBEDDING_OPTIONS))


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


