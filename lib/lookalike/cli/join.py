"""`lookalike join`: batch similarity joins and near-duplicate sweeps (also `spark-submit jobs/similarity_join.py`)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from lookalike.batch.join_config import JoinConfig
from lookalike.cli.args import (
    add_expansion_args,
    add_index_arg,
    add_json_arg,
    add_master_arg,
    add_run_id_arg,
    add_search_args,
    add_spark_args,
    add_store_args,
    add_version_arg,
    key_values,
    spark_conf,
)
from lookalike.core.options import add_options, option_values

# The join's own options: JoinConfig's fields (the search ones are `search`'s).
JOIN_OPTIONS = ("threshold", "verify", "shortlist", "with_metadata", "batch_size")


def join_parser(p: argparse.ArgumentParser, submitted: bool = False) -> None:
    add_store_args(p)
    base = p.add_argument_group("base (one of)")
    add_index_arg(base, required=False, help="a published index")
    add_version_arg(base)
    base.add_argument("--base-embeddings", default=None, metavar="FINGERPRINT[/RUN]",
                      help="an embeddings version, searched exactly (small sets, or to check the index)")
    queries = p.add_argument_group("queries (one of)")
    queries.add_argument("--query-embeddings", default=None, metavar="FINGERPRINT[/RUN]",
                         help="an embeddings version made with the base's model")
    queries.add_argument("--query-images", default=None, metavar="URL",
                         help="an images folder/table: embedded first with the base's model")
    queries.add_argument("--query-texts", default=None, metavar="URL",
                         help="a UTF-8 text file, one text query a line ('bird in a circle'), against a word-space "
                              "base: embedded by its text encoder; the text is the query_id")
    queries.add_argument("--self-join", action="store_true",
                         help="near-duplicate sweep of the base's own images: pairs above --threshold and clusters")
    add_search_args(p)
    add_expansion_args(p)
    add_options(p, JoinConfig, JOIN_OPTIONS)
    add_run_id_arg(p)
    add_master_arg(p, submitted)
    add_spark_args(p)
    add_json_arg(p)


def join_config(args: argparse.Namespace) -> JoinConfig:
    return JoinConfig(
        store=args.store, index=args.index, index_version=args.version, base_embeddings=args.base_embeddings,
        query_embeddings=args.query_embeddings, query_images=args.query_images, query_texts=args.query_texts,
        self_join=args.self_join,
        k=args.k, nprobe=args.nprobe, rescore=args.rescore, expand=args.expand, expand_alpha=args.expand_alpha,
        run_id=args.run_id, master=args.master, storage_options=key_values(args.store_option, "--store-option"),
        spark_conf=spark_conf(args.spark_conf, args.event_log, key_values(args.store_option, "--store-option")),
        **option_values(args, JoinConfig, JOIN_OPTIONS))


def summarise_join(m: dict[str, Any]) -> str:
    c, t, base = m["counts"], m["timings"], m["base"]
    against = (f"index {base['index']} version {base['version']} ({base['factory']})" if "index" in base
               else f"embeddings {base['embeddings']} (exact)")
    output = m.get("output", f"joins/{m['run_id']}")
    lines = [f"join {m['run_id']}: {c['queries']:,} queries → {c['pairs']:,} pairs against {against} in "
             f"{t['total_s']:.1f}s ({t['queries_per_s']:,.0f} queries/s)",
             f"  pairs: {output}/part-*.parquet (query_id, rank, neighbor_id, score)"]
    if "clusters" in c:
        lines.append(f"  {c['clusters']:,} near-duplicate clusters over {c['clustered_images']:,} images (largest "
                     f"{c['largest_cluster']}): {output}/clusters.parquet")
    return "\n".join(lines)


def run_join(args: argparse.Namespace) -> str:
    from lookalike.batch import join
    manifest = join.run(join_config(args))
    return json.dumps(manifest, indent=2) if args.json else summarise_join(manifest)
