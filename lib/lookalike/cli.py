"""The `lookalike` command: the same jobs as jobs/*.py, for local use."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from typing import Any

from lookalike.config import ConfigError, EmbedConfig
from lookalike.decode import ImageError
from lookalike.models import DEFAULT_MODEL, ModelSpec
from lookalike.pooling import POOLINGS

# Another run holds the lease: nothing was done, try later (sysexits EX_TEMPFAIL), so schedulers can tell
# "skipped" from "failed".
EXIT_BUSY = 75


def key_values(pairs: Sequence[str], what: str) -> dict[str, Any]:
    """['a=1', 'b.c=x'] → {'a': 1, 'b': {'c': 'x'}}; values parse as JSON when they can."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"{what} {pair!r}: expected KEY=VALUE")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        node = out
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return out


def add_store_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--store", required=True, help="store root URL: a folder, file://..., s3://bucket/prefix")
    p.add_argument("--store-option", action="append", default=[], metavar="KEY=VALUE",
                   help="fsspec option for s3:// and other remote URLs, e.g. "
                        "client_kwargs.endpoint_url=http://127.0.0.1:9000 (repeatable); credentials come "
                        "from the standard AWS environment, profile or instance role")


def add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=DEFAULT_MODEL, help=f"backbone (default {DEFAULT_MODEL}, weights bundled)")
    p.add_argument("--weights", default=None, help="state dict URI for models without bundled weights")
    p.add_argument("--pooling", default="gem", choices=POOLINGS)
    p.add_argument("--gem-p", type=float, default=3.0)
    p.add_argument("--image-size", type=int, default=None)
    p.add_argument("--resize", default="pad", choices=("pad", "crop", "squash"))
    p.add_argument("--whitening", default=None, metavar="URI",
                   help="apply a PCA-whitening learned with `lookalike whiten` (part of the model fingerprint)")
    p.add_argument("--scales", default=(1.0,), type=scale_factors, metavar="S1,S2,...",
                   help="multi-scale descriptor: the input resized by each factor, e.g. 1,0.707 (default 1)")


def scale_factors(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(s) for s in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"scales are comma-separated numbers, e.g. 1,0.707; got {text!r}") from None


def model_spec(args: argparse.Namespace, options: dict[str, Any]) -> ModelSpec:
    return ModelSpec(name=args.model, weights_uri=args.weights, pooling=args.pooling, gem_p=args.gem_p,
                     image_size=args.image_size, resize=args.resize, whitening_uri=args.whitening,
                     scales=args.scales, weights_options=options)


def add_master_arg(p: argparse.ArgumentParser, submitted: bool) -> None:
    # Under spark-submit the master comes from the submit command; a default here would override it.
    p.add_argument("--master", default=None if submitted else "local[*]",
                   help="Spark master URL, or 'in-process' to run without Spark "
                        f"(default {'the one spark-submit was given' if submitted else 'local[*]'})")


def embed_parser(p: argparse.ArgumentParser, submitted: bool = False) -> None:
    p.add_argument("--images", required=True, help="folder/prefix URL, or a .parquet/.csv images table")
    add_store_args(p)
    add_model_args(p)
    add_master_arg(p, submitted)
    p.add_argument("--run-id", default=None, help="name of the run; an existing id resumes it")
    p.add_argument("--images-per-task", type=int, default=500)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--io-threads", type=int, default=2)
    p.add_argument("--max-error-rate", type=float, default=0.05)
    p.add_argument("--no-incremental", action="store_true", help="recompute every vector")
    p.add_argument("--spark-conf", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--json", action="store_true", help="print the manifest as JSON")


def embed_config(args: argparse.Namespace) -> EmbedConfig:
    options = key_values(args.store_option, "--store-option")
    return EmbedConfig(
        images=args.images, store=args.store, model=model_spec(args, options), run_id=args.run_id,
        master=args.master, storage_options=options, images_per_task=args.images_per_task,
        batch_size=args.batch_size, io_threads=args.io_threads, max_error_rate=args.max_error_rate,
        incremental=not args.no_incremental, progress=sys.stderr.isatty() and not args.json,
        spark_conf={k: str(v) for k, v in key_values(args.spark_conf, "--spark-conf").items()},
    )


def summarise_embed(manifest: dict[str, Any]) -> str:
    c, t = manifest["counts"], manifest["timings"]
    rate = c["images"] / t["tasks_s"] if t.get("tasks_s") else 0.0
    return (f"embeddings {manifest['fingerprint_id']}/{manifest['run_id']}: {c['rows']} rows "
            f"({c['new']} embedded, {c['carried']} carried over; images: {c.get('ids_added', 0)} new, "
            f"{c.get('ids_changed', 0)} changed, {c['removed']} removed, {c['failed']} failed) "
            f"in {t['total_s']:.1f}s ({rate:.1f} img/s)")


def build_index_parser(p: argparse.ArgumentParser, submitted: bool = False) -> None:
    add_store_args(p)
    p.add_argument("--name", required=True, help="index name, e.g. trademarks")
    p.add_argument("--embeddings", default=None, help="FINGERPRINT[/RUN_ID] (default: the store's only model, LATEST)")
    p.add_argument("--memory-budget", type=parse_bytes, default="4GiB", help="bytes for the index, e.g. 48MiB")
    p.add_argument("--factory", default=None, help="force a Faiss factory string, e.g. 'OPQ32_128,IVF4096,PQ32'")
    p.add_argument("--target-recall", type=float, default=0.95, help="10-R@10 the default operating point reaches")
    p.add_argument("--min-recall", type=float, default=0.0, help="refuse to publish below this best 10-R@10")
    p.add_argument("--force", action="store_true", help="publish even below --min-recall")
    p.add_argument("--publish", action="store_true", help="move LATEST to the new version")
    p.add_argument("--keep", type=int, default=None, help="after publishing, keep this many versions")
    p.add_argument("--incremental", action="store_true",
                   help="update LATEST (drop removed ids, add new ones) instead of retraining, if drift allows")
    p.add_argument("--queries", type=int, default=1000, help="held-out queries for the recall table")
    p.add_argument("--seed", type=int, default=0)
    add_master_arg(p, submitted)
    p.add_argument("--spark-conf", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--json", action="store_true", help="print the manifest as JSON")


def parse_bytes(text: str) -> int:
    units = {"": 1, "b": 1, "kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "kb": 10**3, "mb": 10**6, "gb": 10**9}
    number = text.strip().rstrip("BbIiKkMmGg")
    unit = text.strip()[len(number):].lower()
    if unit not in units:
        raise argparse.ArgumentTypeError(f"{text!r}: a size such as 512MiB, 4GiB or 1000000")
    return int(float(number) * units[unit])


def build_index_config(args: argparse.Namespace):
    from lookalike.index_build import BuildIndexConfig
    options = key_values(args.store_option, "--store-option")
    return BuildIndexConfig(
        store=args.store, name=args.name, embeddings=args.embeddings, memory_budget=args.memory_budget,
        factory=args.factory, target_recall=args.target_recall, min_recall=args.min_recall, force=args.force,
        publish=args.publish, keep=args.keep, incremental=args.incremental, queries=args.queries, seed=args.seed,
        master=args.master, storage_options=options,
        spark_conf={k: str(v) for k, v in key_values(args.spark_conf, "--spark-conf").items()})


def summarise_index(m: dict[str, Any]) -> str:
    p = m["operating_point"]
    return (f"index {m['name']}/{m['version']}: {m['factory']} over {m['ntotal']:,} vectors, "
            f"{m['bytes_per_vector']} bytes/vector; default nprobe {p['nprobe']} rerank {p['rerank']}: "
            f"10-R@10 {p['recall_at_10']:.3f}, R@1 {p['recall_at_1']:.3f}, {p['qps']:.0f} QPS "
            f"(target {'met' if p['target_met'] else 'NOT met'}); built in {m['timings']['total_s']:.1f}s")


def run_embed(args: argparse.Namespace) -> str:
    from lookalike import embed
    manifest = embed.run(embed_config(args))
    return json.dumps(manifest, indent=2) if args.json else summarise_embed(manifest)


def run_build_index(args: argparse.Namespace) -> str:
    from lookalike import index_build
    manifest = index_build.run(build_index_config(args))
    return json.dumps(manifest, indent=2) if args.json else summarise_index(manifest)


def run_publish(args: argparse.Namespace) -> str:
    from lookalike import publish
    from lookalike.storage import Store
    store = Store(args.store, key_values(args.store_option, "--store-option"))
    lines = []
    if args.rollback:
        publish.set_latest(store, args.name, args.rollback)
        lines.append(f"LATEST of {args.name} is now {args.rollback}")
    if args.keep:
        deleted = publish.retain(store, args.name, args.keep)
        lines.append(f"deleted {len(deleted)} version(s): {', '.join(deleted) or '-'}")
    return "\n".join(lines) or "nothing to do: give --rollback VERSION and/or --keep N"


def run_list(args: argparse.Namespace) -> str:
    from lookalike import publish
    from lookalike.storage import Store
    rows = publish.list_versions(Store(args.store, key_values(args.store_option, "--store-option")), args.name)
    if args.json:
        return json.dumps(rows, indent=2)
    out = [f"{'version':28} {'state':10} {'vectors':>10} {'10-R@10':>8}  factory"]
    for r in rows:
        state = "LATEST" if r["latest"] else ("complete" if r["complete"] else "incomplete")
        out.append(f"{r['version']:28} {state:10} {r.get('ntotal', 0):>10,} {r.get('recall_at_10', 0):>8.3f}  "
                   f"{r.get('factory', '')}")
    return "\n".join(out)


def main(argv: Sequence[str] | None = None, submitted: bool = False) -> int:
    """Run one command; `submitted` is set by the jobs/*.py entry points that spark-submit starts."""
    parser = argparse.ArgumentParser(prog="lookalike", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)
    embed_parser(sub.add_parser("embed", help="embed images into an embeddings version"), submitted)
    build_index_parser(sub.add_parser("build-index", help="build, measure and publish a Faiss index"), submitted)
    pub = sub.add_parser("publish", help="roll LATEST back to a version, apply retention")
    add_store_args(pub)
    pub.add_argument("--name", required=True)
    pub.add_argument("--rollback", metavar="VERSION", help="make this complete version LATEST")
    pub.add_argument("--keep", type=int, help="keep the newest N versions (never LATEST or its predecessor)")
    from lookalike.cli_evaluate import evaluate_parser, run_evaluate
    from lookalike.cli_export import export_parser, route_parser, run_export, run_route, run_verify, verify_parser
    from lookalike.cli_join import join_parser, run_join
    from lookalike.cli_query import run_search, run_serve, search_parser, serve_parser
    from lookalike.cli_reindex import reindex_parser, run_reindex
    from lookalike.cli_whiten import run_whiten, whiten_parser
    whiten_parser(sub.add_parser("whiten", help="learn a PCA-whitening from an embeddings version"))
    reindex_parser(sub.add_parser("reindex", help="the nightly run: embed what changed, update the index, "
                                                  "publish, report; one run per index at a time"), submitted)
    join_parser(sub.add_parser("join", help="top-k neighbours of many queries, or a near-duplicate sweep"), submitted)
    export_parser(sub.add_parser("export", help="split a published version into shard bundles for serving hosts"),
                  submitted)
    verify_parser(sub.add_parser("verify", help="check an exported bundle: READY and every file's sha256"))
    evaluate_parser(sub.add_parser("evaluate", help="retrieval metrics and a visual report for labelled images"))
    route_parser(sub.add_parser("route", help="one search API over shard workers, merging their top-k"))
    serve_parser(sub.add_parser("serve", help="query worker: HTTP API and a search page over LATEST of an index"))
    search_parser(sub.add_parser("search", help="top-k neighbours of images or catalogue ids, without a server"))
    indexes = sub.add_parser("indexes", help="list the versions of an index")
    indexes.add_argument("action", choices=["list"])
    add_store_args(indexes)
    indexes.add_argument("--name", required=True)
    indexes.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # Each command returns what it prints (None for the servers, which run until stopped).
    commands = {
        "embed": run_embed, "build-index": run_build_index, "publish": run_publish, "indexes": run_list,
        "join": run_join, "evaluate": run_evaluate, "export": run_export, "verify": run_verify,
        "route": run_route, "serve": run_serve, "search": run_search, "reindex": run_reindex,
        "whiten": run_whiten,
    }
    try:
        output = commands[args.command](args)
        if output is not None:
            print(output)
    except (ConfigError, ValueError, RuntimeError, FileNotFoundError, ImageError) as e:
        print(f"lookalike {args.command}: error: {e}", file=sys.stderr)
        return EXIT_BUSY if type(e).__name__ == "LeaseHeld" else 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
