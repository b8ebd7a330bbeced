"""`lookalike whiten`: learn a PCA-whitening from an embeddings version, or a learned whitening from the matching
pairs of a training set (`--training-set`), for `--whitening URI`."""

from __future__ import annotations

import argparse
import json

from lookalike.cli.args import (
    add_embeddings_arg,
    add_json_arg,
    add_model_args,
    add_store_args,
    key_values,
    model_flags_given,
    model_spec,
)
from lookalike.core.errors import ConfigError
from lookalike.model.spec import DEFAULT_WHITEN_DIM


def whiten_parser(p: argparse.ArgumentParser) -> None:
    add_store_args(p)
    add_embeddings_arg(p, "the unwhitened embeddings to learn from (default: the store's only model, LATEST)")
    p.add_argument("--training-set", default=None, metavar="NAME",
                   help="learn from the matching pairs of this training set's train split instead (built by "
                        "`lookalike train-data`), its drawings embedded by --model")
    p.add_argument("--copies", type=int, default=0,
                   help="with --training-set: synthetic copies of each drawing added to its group")
    add_model_args(p)
    p.add_argument("--dim", type=int, default=DEFAULT_WHITEN_DIM, help="dimensions kept (the best size on the logo "
                                                                        "set: docs/quality.md)")
    p.add_argument("--sample", type=int, default=200_000, help="vectors sampled at random to learn from")
    p.add_argument("--seed", type=int, default=0, help="of the random sample")
    add_json_arg(p, "the whitening's URI and dimensions")


def run_whiten(args: argparse.Namespace) -> str:
    from lookalike.core.store import Store
    from lookalike.embed.versions import open_ref
    from lookalike.embed.whitening import learn_from_version
    options = key_values(args.store_option, "--store-option")
    store = Store(args.store, options)
    if args.training_set:
        from lookalike.training.whitening import PairWhiteningConfig, run
        if args.embeddings:
            raise ConfigError("give --embeddings (a PCA-whitening) or --training-set (a learned one), not both")
        uri, whitening, source = run(PairWhiteningConfig(
            store=args.store, data=args.training_set, model=model_spec(args, options), dim=args.dim,
            copies=args.copies, seed=args.seed, storage_options=options))
        learned_from = (f"{source['pairs']:,} matching pairs of {source['images']:,} images ({source['copies']} "
                        f"synthetic copies a drawing) of {source['groups']:,} groups of training set "
                        f"{source['training_set']}, embedded by {source['model']}")
    else:
        # A PCA-whitening is learned from vectors already embedded: their version's model is the model.
        ignored = model_flags_given(args) + (["--copies"] if args.copies else [])
        if ignored:
            raise ConfigError(f"{', '.join(ignored)} only go with --training-set (drawings embedded by that model): "
                              "a PCA-whitening is learned from the --embeddings version's vectors, made by its "
                              "own model")
        version = open_ref(store, args.embeddings)
        uri, whitening = learn_from_version(store, version, args.dim, args.sample, args.seed)
        learned_from = version.layout.prefix
    if args.json:
        return json.dumps({"uri": uri, "dim_in": whitening.dim_in, "dim_out": whitening.dim_out,
                           "learned_from": learned_from})
    return (f"whitening {whitening.dim_in} → {whitening.dim_out} d learned from {learned_from}: {uri}\n"
            f"use it with --whitening {uri} (embed, reindex, serve): a new model fingerprint, so the catalogue "
            "is embedded once more under it")
