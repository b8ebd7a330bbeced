"""The `lookalike` command: the same jobs as jobs/*.py, for local use. This module only wires the command
modules together and turns the errors lookalike raises on purpose into one-line messages and exit codes."""

from __future__ import annotations

import argparse
import contextlib
import sys
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from lookalike._version import __version__
from lookalike.cli.args import CommandHelp
from lookalike.cli.embed import embed_parser, run_embed
from lookalike.cli.errors import errors_parser, run_errors
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
from lookalike.cli.query import (
    explain_parser,
    parts_parser,
    run_explain,
    run_parts,
    run_search,
    run_serve,
    run_tag,
    search_parser,
    serve_parser,
    tag_parser,
)
from lookalike.cli.reindex import reindex_parser, run_reindex
from lookalike.cli.status import run_status, status_parser
from lookalike.cli.train import run_train, run_train_data, train_data_parser, train_parser
from lookalike.cli.whiten import run_whiten, whiten_parser
from lookalike.core.errors import EXIT_CODES, EXIT_USAGE, LookalikeError
from lookalike.core.event_log import upload_staged
from lookalike.core.logs import LOG_FORMATS, configure
from lookalike.core.progress import DEFAULT_INTERVAL_S, MODES
from lookalike.core.signals import interruption, stop_on_sigterm

DESCRIPTION = """\
Find the images of a catalogue that look like a given one, at catalogue scale: embed images into vectors (on
Spark, or in this process for small folders), build and publish a Faiss index, search it, serve it, join many
queries against it, export it to serving hosts.

Index a folder of images and search it:
  lookalike reindex --images marks/ --store store/ --index marks --master in-process
  lookalike search --store store/ --index marks query.png
  lookalike serve --store store/ --index marks        # a search page and an HTTP API on 127.0.0.1:8000

`lookalike COMMAND --help` describes a command and every flag with its default."""


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    add_arguments: Callable[..., None]
    run: Callable[[argparse.Namespace], str | None]  # what to print; None for the servers, which run until stopped
    submittable: bool = False  # also a spark-submit job: its --master defaults to spark-submit's
    server: bool = False       # runs until stopped, and stops gracefully on SIGTERM by itself (uvicorn)


COMMANDS = (
    Command("reindex", "the nightly run: embed what changed, update the index, publish, report; one run per index "
            "at a time", reindex_parser, run_reindex, True),
    Command("embed", "embed images into an embeddings version", embed_parser, run_embed, True),
    Command("build-index", "build, measure and publish a Faiss index", build_index_parser, run_build_index, True),
    Command("search", "top-k neighbours of images, texts or catalogue ids, without a server", search_parser,
            run_search),
    Command("explain", "why a catalogue image matches a query: score parts, percentile, keypoint pairs; --draw "
            "draws the comparison", explain_parser, run_explain),
    Command("parts", "the parts of composite marks (devices, lettering), each with the --crop that searches it",
            parts_parser, run_parts),
    Command("serve", "query worker: HTTP API and a search page over LATEST of an index", serve_parser, run_serve,
            server=True),
    Command("join", "top-k neighbours of many queries, or a near-duplicate sweep", join_parser, run_join, True),
    Command("export", "split a published version into shard bundles for serving hosts", export_parser, run_export,
            True),
    Command("verify", "check an exported bundle: READY and every file's sha256", verify_parser, run_verify),
    Command("route", "one search API over shard workers, merging their top-k", route_parser, run_route,
            server=True),
    Command("indexes", "list the versions of an index", indexes_parser, run_list),
    Command("publish", "roll LATEST back to a version, apply retention", publish_parser, run_publish),
    Command("errors", "the images an embed run could not use, and why", errors_parser, run_errors),
    Command("status", "is an index fresh, and how did its last run end (for monitoring: exit 4 when not)",
            status_parser, run_status),
    Command("evaluate", "retrieval metrics and a visual report for labelled images", evaluate_parser, run_evaluate),
    Command("whiten", "learn a PCA-whitening from an embeddings version", whiten_parser, run_whiten),
    Command("augment", "database-side augmentation (DBA): an embeddings version whose vectors are averaged with "
            "their neighbours", augment_parser, run_augment, True),
    Command("tag", "the nearest words of images in the word space (no index needed)", tag_parser, run_tag),
    Command("train-data", "the training set: open collections' marks, grouped by brand and concept, split by group",
            train_data_parser, run_train_data),
    Command("train", "fine-tune the backbone on a training set, data-parallel on Spark", train_parser, run_train,
            True),
)


def exit_codes_text() -> str:
    return "exit codes:\n" + "\n".join(f"  {code:<3} {meaning}" for code, meaning in EXIT_CODES.items())


def build_parser(submitted: bool = False) -> argparse.ArgumentParser:
    """The whole command line; `submitted`: as the jobs/*.py entry points that spark-submit starts see it."""
    parser = argparse.ArgumentParser(prog="lookalike", description=DESCRIPTION, epilog=exit_codes_text(),
                                     formatter_class=CommandHelp)
    parser.add_argument("--version", action="version", version=f"lookalike {__version__}")
    add_output_options(parser)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        p = sub.add_parser(command.name, help=command.help, description=command.help, formatter_class=CommandHelp,
                           epilog=exit_codes_text())
        # Also after the command (`lookalike reindex ... --log-format json`), as the jobs/*.py entry points that
        # spark-submit starts take them: given there, they win; not given, the top level's stand.
        add_output_options(p, defaults=False)
        if command.submittable:
            command.add_arguments(p, submitted)
        else:
            command.add_arguments(p)
    return parser


def add_output_options(p: argparse.ArgumentParser, defaults: bool = True) -> None:
    """How a command logs and shows progress: before the command, or after it (where a value left out must not
    override one given before, so the defaults are in the help text only)."""
    def value(default, help: str) -> dict:
        return {"default": default if defaults else argparse.SUPPRESS, "help": f"{help} (default: {default})"}

    p.add_argument("-v", "--verbose", action="store_true", default=False if defaults else argparse.SUPPRESS,
                   help="log what each step does (and the Spark JVM's warnings), and show tracebacks of errors")
    p.add_argument("--log-format", choices=LOG_FORMATS, **value(
        "text", "json: one JSON object per line, with the run id, for a cluster's log pipeline"))
    p.add_argument("--progress", choices=MODES, **value(
        "auto", "how long steps show their progress: a bar, a log line every --progress-interval, or nothing; auto "
                "is a bar on a terminal and log lines elsewhere, but none beside a command's --json output "
                "(spark-submit mixes a driver's stderr into its stdout)"))
    p.add_argument("--progress-interval", type=float, metavar="SECONDS", **value(
        DEFAULT_INTERVAL_S, "seconds between two progress lines in a log"))


def main(argv: Sequence[str] | None = None, submitted: bool = False) -> int:
    """Run one command; `submitted` is set by the jobs/*.py entry points that spark-submit starts."""
    args = build_parser(submitted).parse_args(argv)
    progress = args.progress
    if progress == "auto" and getattr(args, "json", False) and not sys.stderr.isatty():
        progress = "off"  # a program reads the output: no lines of ours in it, ever
    configure(args.verbose, args.log_format, progress, args.progress_interval)
    command = {c.name: c for c in COMMANDS}[args.command]
    try:
        with contextlib.nullcontext() if command.server else stop_on_sigterm(f"lookalike {command.name}"):
            try:
                output = command.run(args)
            finally:
                upload_staged()  # --event-log to a store URL: the log of this run, failed or not
    except BaseException as e:
        error = interruption() or e  # stopped by SIGTERM, whatever the exception it surfaced as (a py4j call's)
        if isinstance(error, LookalikeError):
            return _report(args, error, error.exit_code)
        if isinstance(error, OSError):
            # The environment's, not a bug: a path that is not there, a permission, an endpoint that does not answer.
            return _report(args, error, EXIT_USAGE)
        # Anything else is a bug: it propagates, so Python prints its traceback and exits 1.
        raise
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
