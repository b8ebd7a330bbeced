"""`lookalike export` (shards for serving hosts), `lookalike verify` (a bundle on arrival) and `lookalike route`
(one API over the shard workers)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from lookalike.cli.args import (
    add_index_arg,
    add_json_arg,
    add_listen_args,
    add_master_arg,
    add_spark_args,
    add_store_args,
    add_store_option_arg,
    add_token_arg,
    add_version_arg,
    key_values,
    read_token,
    spark_conf,
)
from lookalike.core.extras import require
from lookalike.core.options import add_options, option_values
from lookalike.serve.settings import RouterSettings

ROUTER_OPTIONS = ("on_missing", "shard_timeout_s", "max_body_bytes", "shard_batch")


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
    add_json_arg(p, "the export's summary")


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
    add_store_option_arg(p)


def run_verify(args: argparse.Namespace) -> str:
    from lookalike.index.export import verify_url
    m = verify_url(args.bundle, key_values(args.store_option, "--store-option"))
    shard: dict[str, Any] = m.get("shard") or {}
    where = f"shard {shard['shard'] + 1} of {shard['shards']}, " if shard else ""
    return (f"ok: {m['name']}/{m['version']}, {where}{m['ntotal']:,} vectors, {len(m['files'])} files match "
            "their sha256")


def route_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("--shards", required=True, help="shard worker URLs, comma-separated")
    add_listen_args(p, port=8100)
    add_token_arg(p, "the clients, also sent to the shards")
    add_options(p, RouterSettings, ROUTER_OPTIONS)


def run_route(args: argparse.Namespace) -> None:
    require("serve", "lookalike route")
    import uvicorn

    from lookalike.serve.router import create_router
    settings = RouterSettings(shards=tuple(s.strip().rstrip("/") for s in args.shards.split(",") if s.strip()),
                              token=read_token(args.token_file), **option_values(args, RouterSettings, ROUTER_OPTIONS))
    print(f"routing over {len(settings.shards)} shards on http://{args.host}:{args.port}/", flush=True)
    uvicorn.run(create_router(settings), host=args.host, port=args.port, log_level="warning")
