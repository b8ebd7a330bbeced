"""`lookalike whiten`: learn a PCA-whitening from an embeddings version, for `--whitening URI`."""

from __future__ import annotations

import argparse
import json

from lookalike.cli.args import add_store_args, key_values


def whiten_parser(p: argparse.ArgumentParser) -> None:
    add_store_args(p)
    p.add_argument("--embeddings", default=None, metavar="FINGERPRINT[/RUN]",
                   help="the unwhitened embeddings to learn from (default: the store's only model, LATEST)")
    p.add_argument("--dim", type=int, default=512, help="dimensions kept (512 measured best on the logo set)")
    p.add_argument("--sample", type=int, default=200_000, help="vectors sampled at random to learn from")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true")


def run_whiten(args: argparse.Namespace) -> str:
    from lookalike.core.store import Store
    from lookalike.embed.versions import open_ref
    from lookalike.embed.whitening import learn_from_version
    store = Store(args.store, key_values(args.store_option, "--store-option"))
    version = open_ref(store, args.embeddings)
    uri, whitening = learn_from_version(store, version, args.dim, args.sample, args.seed)
    if args.json:
        return json.dumps({"uri": uri, "dim_in": whitening.dim_in, "dim_out": whitening.dim_out,
                           "learned_from": version.layout.prefix})
    return (f"whitening {whitening.dim_in} → {whitening.dim_out} d learned from {version.layout.prefix}: {uri}\n"
            f"use it with --whitening {uri} (embed, reindex, serve): a new model fingerprint, so the catalogue "
            "is embedded once more under it")
