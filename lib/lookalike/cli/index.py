"""`lookalike build-index` (also `spark-submit jobs/build_index.py`), `lookalike publish` (rollback, retention) and
`lookalike indexes list`."""

from __future__ import annotations

import argparse
import json
from typing import Any

from lookalike.cli.args import (
    add_index_arg,
    add_master_arg,
    add_spark_args,
    add_store_args,
    key_values,
    parse_bytes,
    spark_conf,
)
from lookalike.index.choice import CODES


def build_index_parser(p: argparse.ArgumentParser, submitted: bool = False) -> None:
    add_store_args(p)
    add_index_arg(p)
    p.add_argument("--embeddings", default=None, help="FINGERPRINT[/RUN_ID] (default: the store's only model, LATEST)")
    add_index_build_args(p)
    p.add_argument("--force", action="store_true", help="publish even below --min-recall")
    p.add_argument("--publish", action="store_true", help="move LATEST to the new version")
    p.add_argument("--keep", type=int, default=None, help="after publishing, keep this many versions")
    p.add_argument("--incremental", action="store_true",
                   help="update LATEST (drop removed ids, add new ones) instead of retraining, if drift allows")
    add_master_arg(p, submitted)
    add_spark_args(p)
    p.add_argument("--json", action="store_true", help="print the manifest as JSON")


def add_index_build_args(p: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """What index is built and the recall it must reach: shared by `build-index` and `reindex`."""
    p.add_argument("--memory-budget", type=parse_bytes, default="4GiB",
                   help="bytes the index may take, e.g. 48MiB: the largest code that fits is chosen")
    p.add_argument("--factory", default=None, help="force a Faiss factory string, e.g. 'OPQ32_128,IVF4096,PQ32' "
                                                   "(default: chosen from the vectors' count and the budget)")
    p.add_argument("--codes", choices=CODES, default="auto",
                   help="the index's codes: 'pq' (IVF-PQ), 'binary' (ITQ bits ranked by Hamming distance, then "
                        "re-scored exactly: faster for top-1000 answers, slower for top-10 ones), or 'auto', the "
                        "builder's choice (IVF-PQ)")
    p.add_argument("--target-recall", type=float, default=0.95,
                   help="10-R@10 the default operating point must reach (the fastest setting that does is chosen)")
    p.add_argument("--min-recall", type=float, default=0.0, help="refuse to publish below this best 10-R@10")
    p.add_argument("--queries", type=int, default=1000, help="held-out queries for the recall table")
    p.add_argument("--seed", type=int, default=0, help="of the training sample and the held-out queries")
    p.add_argument("--scratch-dir", default=None, metavar="DIR",
                   help="where the build writes its local files (vectors, exact scorer, index, keypoints: about "
                        "twice the version's size; checked before it starts); default: $LOOKALIKE_SCRATCH_DIR, "
                        "else Spark's local dirs (SPARK_LOCAL_DIRS, spark.local.dir), else the system's temp folder")


def build_index_config(args: argparse.Namespace):
    from lookalike.index.build import BuildIndexConfig
    options = key_values(args.store_option, "--store-option")
    return BuildIndexConfig(
        store=args.store, name=args.index, embeddings=args.embeddings, memory_budget=args.memory_budget,
        factory=args.factory, codes=args.codes, target_recall=args.target_recall, min_recall=args.min_recall,
        force=args.force, publish=args.publish, keep=args.keep, incremental=args.incremental, queries=args.queries,
        seed=args.seed, scratch_dir=args.scratch_dir, master=args.master, storage_options=options,
        spark_conf=spark_conf(args.spark_conf, args.event_log, key_values(args.store_option, "--store-option")))


def summarise_index(m: dict[str, Any]) -> str:
    p = m["operating_point"]
    return (f"index {m['name']}/{m['version']}: {m['factory']} over {m['ntotal']:,} vectors, "
            f"{m['bytes_per_vector']} bytes/vector; default nprobe {p['nprobe']} rerank {p['rerank']}: "
            f"10-R@10 {p['recall_at_10']:.3f}, R@1 {p['recall_at_1']:.3f}, {p['qps']:.0f} QPS "
            f"(target {'met' if p['target_met'] else 'NOT met'}); built in {m['timings']['total_s']:.1f}s")


def publish_parser(p: argparse.ArgumentParser) -> None:
    add_store_args(p)
    add_index_arg(p)
    p.add_argument("--rollback", metavar="VERSION", help="make this complete version LATEST")
    p.add_argument("--keep", type=int, help="keep the newest N versions (never LATEST or its predecessor)")


def indexes_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=["list"])
    add_store_args(p)
    add_index_arg(p)
    p.add_argument("--json", action="store_true", help="print the versions as JSON")


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
    p.add_argument("--embeddings", default=None, help="FINGERPRINT[/RUN_ID] (default: the store's only model, LATEST)")
    p.add_argument("--neighbours", type=int, default=1, metavar="N", help="top N neighbours averaged in (default 1)")
    p.add_argument("--alpha", type=float, default=3.0, help="neighbours weigh cosine ** ALPHA (default 3)")
    p.add_argument("--batch-size", type=int, default=4096, help="vectors searched at once in a task")
    add_master_arg(p, submitted)
    add_spark_args(p)
    p.add_argument("--json", action="store_true", help="print the manifest as JSON")


def run_augment(args: argparse.Namespace) -> str:
    from lookalike.index import augment
    from lookalike.index.rerank import Expansion
    m = augment.run(augment.AugmentConfig(
        store=args.store, embeddings=args.embeddings, expansion=Expansion(args.neighbours, args.alpha),
        master=args.master, batch_size=args.batch_size, storage_options=key_values(args.store_option, "--store-option"),
        spark_conf=spark_conf(args.spark_conf, args.event_log, key_values(args.store_option, "--store-option"))))
    if args.json:
        return json.dumps(m, indent=2)
    ref = f"{m['fingerprint_id']}/{m['run_id']}"
    return (f"augmented {m['counts']['rows']:,} vectors of {m['fingerprint_id']}/{m['augmented']['source_run']} "
            f"(DBA, {m['augmented']['neighbours']} neighbours, α {m['augmented']['alpha']:g}) into {ref} in "
            f"{m['timings']['total_s']:.1f}s; index it with: lookalike build-index --embeddings {ref} ...")
