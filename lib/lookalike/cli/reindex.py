"""`lookalike reindex`: the nightly run (also `spark-submit jobs/reindex.py`, `deploy/submit.sh reindex`)."""

from __future__ import annotations

import argparse
import json

from lookalike.cli.args import (
    add_images_arg,
    add_index_arg,
    add_json_arg,
    add_keep_arg,
    add_master_arg,
    add_model_args,
    add_run_id_arg,
    add_spark_args,
    add_store_args,
)
from lookalike.cli.embed import add_embedding_args, embed_config
from lookalike.cli.index import add_index_build_args, build_index_config
from lookalike.model.spec import DEFAULT_WHITEN_DIM, MIN_IMAGES_PER_DIM
from lookalike.pipelines.whitening import FOLLOW_MODEL_CARD, SAMPLE_IMAGES


def reindex_parser(p: argparse.ArgumentParser, submitted: bool = False) -> None:
    add_images_arg(p)
    add_store_args(p)
    add_index_arg(p)
    add_model_args(p)
    add_master_arg(p, submitted)
    add_run_id_arg(p, "name of the run (default: new, or the unfinished run a crashed or failed run left)")
    p.add_argument("--fresh", action="store_true", help="start a new run even if an unfinished one is left")
    p.add_argument("--lease-ttl", type=float, default=900.0, metavar="SECONDS",
                   help="a crashed run's lease expires after this long (renewed every quarter of it)")
    p.add_argument("--retrain", action="store_true", help="train a new index instead of updating LATEST")
    add_keep_arg(p)
    p.add_argument("--whiten", type=whiten_dim, default=FOLLOW_MODEL_CARD, metavar="DIM",
                   help=f"PCA-whitening to DIM dimensions, learned from the catalogue once it has "
                        f"{MIN_IMAGES_PER_DIM}×DIM images, then fixed; --whitening URI gives one instead. Default "
                        f"{FOLLOW_MODEL_CARD!r}: to {DEFAULT_WHITEN_DIM} unless the model's card measured that "
                        "whitening does not help it (the shipped model's card: docs/quality.md)")
    p.add_argument("--no-whiten", dest="whiten", action="store_const", const=None,
                   help="index unwhitened vectors")
    p.add_argument("--whiten-sample", type=int, default=SAMPLE_IMAGES, metavar="IMAGES",
                   help=f"images embedded unwhitened to learn the whitening from (default {SAMPLE_IMAGES:,})")
    add_embedding_args(p.add_argument_group("embedding"))
    add_index_build_args(p.add_argument_group("index"))
    add_spark_args(p)
    add_json_arg(p, "the run report")


def whiten_dim(text: str) -> int | str:
    if text == FOLLOW_MODEL_CARD:
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a number of dimensions or {FOLLOW_MODEL_CARD!r}, got {text!r}") from None


def reindex_config(args: argparse.Namespace):
    from lookalike.pipelines.reindex import ReindexConfig
    # The two jobs' configs come from the same arguments; reindex decides publishing, resumption and mode.
    index = build_index_config(args, embeddings=None, force=False, publish=False, keep=None,
                               incremental=not args.retrain)
    return ReindexConfig(embed=embed_config(args, incremental=True), index=index, keep=args.keep,
                         lease_ttl_s=args.lease_ttl, fresh=args.fresh, whiten=args.whiten,
                         whiten_sample=args.whiten_sample)


def run_reindex(args: argparse.Namespace) -> str:
    from lookalike.pipelines import reindex
    report = reindex.run(reindex_config(args))
    return json.dumps(report, indent=2) if args.json else reindex.summarise(report)
