"""The `lookalike` command: the same jobs as jobs/*.py, for local use. This module only wires the command
modules together and turns the errors lookalike raises on purpose into one-line messages and exit codes."""

from __future__ import annotations

import argparse
import sys
import traceback
from collections.abc import Sequence

from lookalike.cli.embed import embed_parser, run_embed
from lookalike.cli.evaluate import evaluate_parser, run_evaluate
from lookalike.cli.export import export_parser, route_parser, run_export, run_route, run_verify, verify_parser
from lookalike.cli.index import (
    augment_parser,
    build_index_parser,
    indexes_parser,
    publish_parser,
    run_augment,
    run_build_index,
    run_list,
    run_publish,
)
from lookalike.cli.join import join_parser, run_join
from lookalike.cli.query import run_search, run_serve, run_tag, search_parser, serve_parser, tag_parser
from lookalike.cli.reindex import reindex_parser, run_reindex
from lookalike.cli.train import run_train, run_train_data, train_data_parser, train_parser
from lookalike.cli.whiten import run_whiten, whiten_parser
from lookalike.core.errors import EXIT_USAGE, LookalikeError
from lookalike.core.logs import LOG_FORMATS, configure


def main(argv: Sequence[str] | None = None, submitted: bool = False) -> int:
    """Run one command; `submitted` is set by the jobs/*.py entry points that spark-submit starts."""
    parser = argparse.ArgumentParser(prog="lookalike", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress, and show tracebacks of errors")
    parser.add_argument("--log-format", choices=LOG_FORMATS, default="text",
                        help="json: one JSON object per line, with the run id, for a cluster's log pipeline")
    sub = parser.add_subparsers(dest="command", required=True)
    embed_parser(sub.add_parser("embed", help="embed images into an embeddings version"), submitted)
    build_index_parser(sub.add_parser("build-index", help="build, measure and publish a Faiss index"), submitted)
    publish_parser(sub.add_parser("publish", help="roll LATEST back to a version, apply retention"))
    whiten_parser(sub.add_parser("whiten", help="learn a PCA-whitening from an embeddings version"))
    augment_parser(sub.add_parser("augment", help="database-side augmentation (DBA): an embeddings version whose "
                                                  "vectors are averaged with their neighbours"), submitted)
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
    indexes_parser(sub.add_parser("indexes", help="list the versions of an index"))
    tag_parser(sub.add_parser("tag", help="the nearest words of images in the word space (no index needed)"))
    train_data_parser(sub.add_parser("train-data", help="the training set: open collections' marks, grouped by "
                                                        "brand and concept, split by group"))
    train_parser(sub.add_parser("train", help="fine-tune the backbone on a training set, data-parallel on Spark"),
                 submitted)
    args = parser.parse_args(argv)
    configure(args.verbose, args.log_format)
    # Each command returns what it prints (None for the servers, which run until stopped).
    commands = {
        "embed": run_embed, "build-index": run_build_index, "publish": run_publish, "indexes": run_list,
        "join": run_join, "evaluate": run_evaluate, "export": run_export, "verify": run_verify,
        "route": run_route, "serve": run_serve, "search": run_search, "reindex": run_reindex,
        "whiten": run_whiten, "augment": run_augment, "tag": run_tag, "train-data": run_train_data,
        "train": run_train,
    }
    try:
        output = commands[args.command](args)
    except LookalikeError as e:
        return _report(args, e, e.exit_code)
    except OSError as e:
        # The environment's, not a bug: a path that is not there, a permission, an endpoint that does not answer.
        return _report(args, e, EXIT_USAGE)
    # Anything else is a bug: it propagates, so Python prints its traceback and exits 1.
    if output is not None:
        print(output)
    return 0


def _report(args: argparse.Namespace, error: BaseException, code: int) -> int:
    if args.verbose:
        traceback.print_exception(error, file=sys.stderr)
    print(f"lookalike {args.command}: error: {error}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
