"""`lookalike export` (shards for serving hosts), `lookalike verify` (a bundle on arrival) and `lookalike route`
(one API over the shard workers)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from lookalike.cli.args import (
    add_index_arg,
    add_master_arg,
    add_spark_args,
    add_store_args,
    add_version_arg,
    key_values,
    read_token,
    spark_conf,
)
from lookalike.core.extras import require


def export_parser(p: argparse.ArgumentParser, submitted: bool = False) -> None:
    add_store_args(p)
    add_index_arg(p)
    add_version_arg(p)
    p.add_argument("--dest", action="append", required=True, metavar="URL",
                   help="one destination store URL per shard, in shard order (repeat; folder, s3://, sftp://...)")
    p.add_argument("--dest-option", action="append", default=[], metavar="KEY=VALUE",
                   help="fsspec options for the destinations (default: the --store-option values)")
    add_master_arg(p, submitted)
    add_spark_args(p)
    p.add_argument("--json", action="store_true", help="print the export's summary as JSON")


def run_export(args: argparse.Namespace) -> str:
    from lookalike.index.export import ExportConfig, run
    summary = run(ExportConfig(
        store=args.store, name=args.index, destinations=tuple(args.dest), version=args.version,
        storage_options=key_values(args.store_option, "--store-option"),
        destination_options=key_values(args.dest_option, "--dest-option"), master=args.master,
        spark_conf=spark_conf(args.spark_conf, args.event_log, key_values(args.store_option, "--store-option"))))
    if args.json:
        return json.dumps(summary, indent=2)
    lines = [f"exported {summary['name']}/{summary['version']} ({summary['ntotal']:,} vectors) as "
             f"{len(summary['shards'])} shards split by {summary['split']} in {summary['total_s']:.1f}s"]
    lines += [f"  shard {s['shard']}: {s['ntotal']:,} vectors, {s['split']} {s['range']} → {s['destination']}"
              f"{' (already complete)' if s['skipped'] else ''}" for s in summary["shards"]]
    return "\n".join(lines)


def verify_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("bundle", metavar="BUNDLE_URL", help="URL/indexes/<name>/<version>, or a host's store root")
    p.add_argument("--store-option", action="append", default=[], metavar="KEY=VALUE",
                   help="fsspec option for an s3:// or other remote bundle (repeatable)")


def run_verify(args: argparse.Namespace) -> str:
    from lookalike.index.export import verify_url
    m = verify_url(args.bundle, key_values(args.store_option, "--store-option"))
    shard: dict[str, Any] = m.get("shard") or {}
    where = f"shard {shard['shard'] + 1} of {shard['shards']}, " if shard else ""
    return (f"ok: {m['name']}/{m['version']}, {where}{m['ntotal']:,} vectors, {len(m['files'])} files match "
            "their sha256")


def route_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("--shards", required=True, help="shard worker URLs, comma-separated")
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (127.0.0.1: this host only)")
    p.add_argument("--port", type=int, default=8100, help="port to listen on")
    p.add_argument("--on-missing", choices=("partial", "error"), default="partial",
                   help="a dead or slow shard: answer from the others and say so, or fail the request")
    p.add_argument("--shard-timeout", type=float, default=5.0,
                   help="seconds a shard may take to answer before it counts as missing")
    p.add_argument("--token-file", default=None, help="bearer token for clients and shards (or $LOOKALIKE_API_TOKEN)")
    p.add_argument("--max-body-bytes", type=int, default=20 * 1024 * 1024,
                   help="larger request bodies are refused (413), never forwarded to the shards")
    p.add_argument("--shard-batch", type=int, default=64,
                   help="the shards' --max-batch: the router asks them for stored vectors this many at a time")


def run_route(args: argparse.Namespace) -> None:
    require("serve", "lookalike route")
    import uvicorn

    from lookalike.serve.router import RouterSettings, create_router
    settings = RouterSettings(shards=tuple(s.strip().rstrip("/") for s in args.shards.split(",") if s.strip()),
                              on_missing=args.on_missing, shard_timeout_s=args.shard_timeout,
                              token=read_token(args.token_file), max_body_bytes=args.max_body_bytes,
                              shard_batch=args.shard_batch)
    print(f"routing over {len(settings.shards)} shards on http://{args.host}:{args.port}/", flush=True)
    uvicorn.run(create_router(settings), host=args.host, port=args.port, log_level="warning")
