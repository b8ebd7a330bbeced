"""`lookalike errors`: the images an embed run could not use (its errors table), one line each, or as JSON."""

from __future__ import annotations

import argparse
import json

from lookalike.cli.args import add_embeddings_arg, add_index_arg, add_store_args, key_values
from lookalike.core.errors import ConfigError


def errors_parser(p: argparse.ArgumentParser) -> None:
    add_store_args(p)
    which = p.add_mutually_exclusive_group()
    add_index_arg(which, required=False, help="the embeddings version LATEST of this index was built from")
    add_embeddings_arg(which, "an embeddings version (a failed run's too: its errors are kept until it is rerun); "
                              "default: the store's only model, LATEST")
    p.add_argument("--kind", action="append", default=[], metavar="KIND",
                   help="only errors of this kind (not_found, corrupt, truncated, ...; repeatable)")
    p.add_argument("--limit", type=int, default=100, help="rows printed (0: all)")
    p.add_argument("--json", action="store_true", help="one JSON object per error, a line each")


def run_errors(args: argparse.Namespace) -> str:
    from lookalike.core.store import Store
    from lookalike.embed.errors_table import errors_of
    from lookalike.index.publish import read_index_manifest

    if args.limit < 0:
        raise ConfigError("--limit must be >= 0 (0: all)")
    store = Store(args.store, key_values(args.store_option, "--store-option"))
    embeddings = args.embeddings
    if args.index is not None:  # what LATEST of the index was built from
        source = read_index_manifest(store, args.index)["source"]
        embeddings = f"{source['embeddings'].split('/')[1]}/{source['run_id']}"
    where, table = errors_of(store, embeddings, args.kind)
    if args.index is not None:
        where = f"index {args.index}: {where}"
    shown = table if not args.limit else table.slice(0, args.limit)
    rows = shown.select(["image_id", "uri", "stage", "error_kind", "message"]).to_pylist()
    if args.json:
        return "\n".join(json.dumps(r) for r in rows)
    if not rows:
        return f"{where}: no errors" + (f" of kind {', '.join(args.kind)}" if args.kind else "")
    width = min(60, max(len(r["image_id"]) for r in rows))
    lines = [f"{where}: {table.num_rows:,} image(s) could not be used" + (
        f" (first {len(rows)}; --limit 0 for all)" if len(rows) < table.num_rows else "")]
    lines += [f"  {r['image_id']:{width}}  {r['error_kind']:<18} {r['message']}" for r in rows]
    return "\n".join(lines)
