"""`lookalike build-index` (also `spark-submit jobs/build_index.py`), `lookalike publish` (rollback, retention) and
`lookalike indexes list`."""

from __future__ import annotations

import argparse
import json
from typing import Any

from lookalike.cli.args import (
    add_deprecated_flag,
    add_embeddings_arg,
    add_expansion_args,
    add_index_arg,
    add_json_arg,
    add_keep_arg,
    add_master_arg,
    add_spark_args,
    add_store_args,
    key_values,
    spark_conf,
)
from lookalike.core.options import add_options, option_values
from lookalike.index.config import BuildIndexConfig

# What index is built and the recall it must reach: BuildIndexConfig's fields, flags of `build-index` and `reindex`.
INDEX_BUILD_OPTIONS = ("memory_budget", "factory", "codes", "target_recall", "min_recall", "queries", "seed",
                       "scratch_dir")


def build_index_parser(p: argparse.ArgumentParser, submitted: bool = False) -> None:
    add_store_args(p)
    add_index_arg(p)
    add_embeddings_arg(p)
    add_index_build_args(p)
    p.add_argument("--force", action="store_true", help="publish even below --min-recall")
    p.add_argument("--publish", action="store_true", help="move LATEST to the new version")
    add_keep_arg(p)
    p.add_argument("--incremental", action="store_true",
                   help="update LATEST (drop removed ids, add new ones) instead of retraining, if drift allows")
    add_master_arg(p, submitted)
    add_spark_args(p)
    add_json_arg(p)


def add_index_build_args(p: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """What index is built and the recall it must reach: shared by `build-index` and `reindex`."""
    add_options(p, BuildIndexConfig, INDEX_BUILD_OPTIONS)


def build_index_config(args: argparse.Namespace, **decided: Any) -> BuildIndexConfig:
    """The build's config from `build-index`'s or `reindex`'s arguments; `decided`: what reindex sets itself
    (embeddings, publish, incremental, keep, force)."""
    options = key_values(args.store_option, "--store-option")
    chosen = decided or {"embeddings": args.embeddings, "force": args.force, "publish": args.publish,
                         "keep": args.keep, "incremental": args.incremental}
    return BuildIndexConfig(
        store=args.store, name=args.index, master=args.master, storage_options=options,
        spark_conf=spark_conf(args.spark_conf, args.event_log, options),
        **chosen, **option_values(args, BuildIndexConfig, INDEX_BUILD_OPTIONS))


def summarise_index(m: dict[str, Any]) -> str:
    p = m["operating_point"]
    return (f"index {m['name']}/{m['version']}: {m['factory']} over {m['ntotal']:,} vectors, "
            f"{m['bytes_per_vector']} bytes/vector; default nprobe {p['nprobe']} rescore {p['rescore']}: "
            f"10-R@10 {p['recall_at_10']:.3f}, R@1 {p['recall_at_1']:.3f}, {p['qps']:.0f} QPS "
            f"(target {'met' if p['target_met'] else 'NOT met'}); built in {m['timings']['total_s']:.1f}s")


def publish_parser(p: argparse.ArgumentParser) -> None:
    add_store_args(p)
    add_index_arg(p)
    p.add_argument("--rollback", metavar="VERSION", help="make this complete version LATEST")
    add_keep_arg(p)


def indexes_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=["list"])
    add_store_args(p)
    add_index_arg(p)
    add_json_arg(p, "the versions")


def run_build_index(args: argparse.Namespace) -> str:
    from lookalike.index import build as index_build
    manifest = index_build.run(build_index_config(args))
    return json.dumps(manifest, indent=2) if args.json else summarise_index(manifest)


def run_publish(args: argparse.Namespace) -> str:
    from lookalike.core.store import Store
    from lookalike.index import publish
    store = Store(args.store, key_values(args.store_option, "--store-option"))
    lines = []
    if args.rollback:
        publish.set_latest(store, args.index, args.rollback)
        lines.append(f"LATEST of {args.index} is now {args.rollback}")
    if args.keep:
        deleted = publish.retain(store, args.index, args.keep)
        lines.append(f"deleted {len(deleted)} version(s): {', '.join(deleted) or '-'}")
    return "\n".join(lines) or "nothing to do: give --rollback VERSION and/or --keep N"


def run_list(args: argparse.Namespace) -> str:
    from lookalike.core.store import Store
    from lookalike.index import publish
    rows = publish.list_versions(Store(args.store, key_values(args.store_option, "--store-option")), args.index)
    if args.json:
        return json.dumps(rows, indent=2)
    out = [f"{'version':28} {'state':10} {'vectors':>10} {'10-R@10':>8}  factory"]
    for r in rows:
        state = "LATEST" if r["latest"] else ("complete" if r["complete"] else
                                              "damaged" if r.get("damaged") else "incomplete")
        out.append(f"{r['version']:28} {state:10} {r.get('ntotal', 0):>10,} {r.get('recall_at_10', 0):>8.3f}  "
                   f"{r.get('factory', '') or r.get('damaged', '')}")
    return "\n".join(out)




def augment_parser(p: argparse.ArgumentParser, submitted: bool = False) -> None:
    add_store_args(p)
    add_embeddings_arg(p)
    add_expansion_args(p, default=1, of="catalogue")
    add_deprecated_flag(p, "--neighbours", "--expand", type=int)
    add_deprecated_flag(p, "--alpha", "--expand-alpha", type=float)
    p.add_argument("--batch-size", type=int, default=4096, help="vectors searched at once in a task")
    add_master_arg(p, submitted)
    add_spark_args(p)
    add_json_arg(p)


def run_augment(args: argparse.Namespace) -> str:
    from lookalike.index import augment
    from lookalike.index.rerank import Expansion
    m = augment.run(augment.AugmentConfig(
        store=args.store, embeddings=args.embeddings, expansion=Expansion(args.expand, args.expand_alpha),
        master=args.master, batch_size=args.batch_size, storage_options=key_values(args.store_option, "--store-option"),
        spark_conf=spark_conf(args.spark_conf, args.event_log, key_values(args.store_option, "--store-option"))))
    if args.json:
        return json.dumps(m, indent=2)
    ref = f"{m['fingerprint_id']}/{m['run_id']}"
    return (f"augmented {m['counts']['rows']:,} vectors of {m['fingerprint_id']}/{m['augmented']['source_run']} "
            f"(DBA, {m['augmented']['neighbours']} neighbours, α {m['augmented']['alpha']:g}) into {ref} in "
            f"{m['timings']['total_s']:.1f}s; index it with: lookalike build-index --embeddings {ref} ...")
