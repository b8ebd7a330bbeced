"""`lookalike evaluate`: retrieval metrics and a visual report for an embeddings version with labels."""

from __future__ import annotations

import argparse
import json

from lookalike.cli.args import (
    add_embeddings_arg,
    add_expansion_args,
    add_index_arg,
    add_json_arg,
    add_master_arg,
    add_model_args,
    add_store_args,
    key_values,
    model_spec,
)


def evaluate_parser(p: argparse.ArgumentParser) -> None:
    add_store_args(p)
    add_embeddings_arg(p, "the catalogue's embeddings version (default: the one --index was built from)")
    p.add_argument("--images", default=None, metavar="URL_OR_TABLE",
                   help="embed this images table first (incremental: what is embedded is reused), with the "
                        "model options below, and evaluate it")
    add_model_args(p)
    add_master_arg(p, submitted=False)
    add_index_arg(p, required=False, help="also search through this published index (ANN vs exact); without "
                  "--embeddings, the version it was built from is evaluated")
    p.add_argument("--queries", default=None, metavar="TABLE",
                   help="a query set (.parquet/.csv: image_id, uri, relevant[, junk]; several ids as a list or "
                        "'a|b'): its images are embedded with the catalogue's model and searched; without it, "
                        "leave-one-out over the catalogue's label column")
    p.add_argument("--label-column", default="label",
                   help="leave-one-out: same label = relevant; with --queries: groups the per-label table")
    p.add_argument("--relevant-column", default="relevant", help="the query set's column of relevant ids")
    p.add_argument("--junk-column", default="junk",
                   help="the query set's column of ids left out of a query's ranking (neither right nor wrong)")
    p.add_argument("--depth", type=int, default=100, help="ranked results judged per query (default 100)")
    add_expansion_args(p)
    p.add_argument("--no-verify", dest="verify", action="store_false",
                   help="with --index: do not also report the index search with geometric verification")
    p.add_argument("--k-reciprocal", default=None, metavar="K1,K2,LAMBDA", type=k_reciprocal,
                   help="also report exact search re-ranked k-reciprocally (e.g. 20,6,0.3)")
    p.add_argument("--device", default="cpu", help="where query images are embedded (cpu, cuda, cuda:1)")
    p.add_argument("--report", required=True, help="folder for metrics.json/csv, per_label.csv, PNGs, index.html")
    add_json_arg(p, "the metrics")


def k_reciprocal(text: str):
    from lookalike.index.rerank import KReciprocal
    try:
        k1, k2, lambda_ = text.split(",")
        return KReciprocal(int(k1), int(k2), float(lambda_))
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"K1,K2,LAMBDA such as 20,6,0.3 (1 <= K2 <= K1, 0 <= LAMBDA <= 1), "
                                         f"not {text!r}") from e


def run_evaluate(args: argparse.Namespace) -> str:
    from lookalike.batch.evaluate import EvaluateConfig, metrics_table, run
    from lookalike.embed.config import EmbedConfig
    from lookalike.index.rerank import Expansion
    options = key_values(args.store_option, "--store-option")
    images = None if args.images is None else EmbedConfig(
        images=args.images, store=args.store, model=model_spec(args, options), master=args.master,
        storage_options=options)
    out = run(EvaluateConfig(store=args.store, embeddings=args.embeddings, images=images, report=args.report,
                             index=args.index,
                             queries=args.queries, label_column=args.label_column,
                             relevant_column=args.relevant_column, junk_column=args.junk_column, depth=args.depth,
                             device=args.device, storage_options=options,
                             expansion=Expansion(args.expand, args.expand_alpha), k_reciprocal=args.k_reciprocal,
                             verify=args.verify))
    if args.json:
        return json.dumps(out["metrics"], indent=2)
    return "\n".join(metrics_table(out))
