"""`lookalike serve` (the query worker) and `lookalike search` (the same answers without a server)."""

from __future__ import annotations

import argparse
import json
import logging
from typing import Any

from lookalike.cli.args import (
    add_deprecated_flag,
    add_expansion_args,
    add_index_arg,
    add_json_arg,
    add_listen_args,
    add_model_args,
    add_search_args,
    add_store_args,
    add_store_option_arg,
    add_token_arg,
    add_version_arg,
    key_values,
    model_spec,
    read_token,
)
from lookalike.core.errors import ConfigError
from lookalike.core.extras import require
from lookalike.core.options import add_options, option_values
from lookalike.core.store import Store
from lookalike.index.local_cache import CACHE_ENV, default_cache_dir
from lookalike.retrieval.examples import NEGATIVE_WEIGHT
from lookalike.retrieval.filters import parse_filters
from lookalike.retrieval.limits import DEFAULT_SHORTLIST, QueryLimits
from lookalike.serve.settings import ApiSettings, WorkerSettings

# The worker's settings, its API's and a request's bounds, each defined once on its settings class.
WORKER_OPTIONS = ("poll_s", "retry_s", "max_pixels", "max_pixels_in_flight", "show_columns")
API_OPTIONS = ("allow_uri_prefixes", "max_body_bytes", "max_batch", "request_timeout_s")
LIMIT_OPTIONS = ("max_rescore", "max_nprobe", "max_candidates", "max_verified")

log = logging.getLogger(__name__)


def add_worker_args(p: argparse.ArgumentParser) -> None:
    add_store_args(p)
    add_index_arg(p)
    p.add_argument("--cache-dir", default=None,
                   help=f"where copies of index versions are kept on this host (a version and its predecessor: "
                        f"plan disk for both); default ${CACHE_ENV}, else ~/.cache/lookalike")
    add_model_args(p)


def serve_parser(p: argparse.ArgumentParser) -> None:
    add_worker_args(p)
    add_listen_args(p, port=8000)
    add_token_arg(p, "the clients")
    p.add_argument("--metrics-port", type=int, default=None,
                   help="also serve Prometheus /metrics alone on this port, without the token (for a scraper)")
    add_options(p, WorkerSettings, WORKER_OPTIONS)
    add_options(p, ApiSettings, API_OPTIONS)
    add_options(p, QueryLimits, LIMIT_OPTIONS)
    add_deprecated_flag(p, "--max-rerank", "--max-rescore", type=int)


def search_parser(p: argparse.ArgumentParser) -> None:
    add_worker_args(p)
    p.add_argument("images", nargs="*", metavar="IMAGE", help="query image paths or URIs")
    p.add_argument("--text", action="append", default=[], dest="texts", metavar="WORDS",
                   help="a text query against a word-space index, e.g. 'bird in a circle'; comma-separated phrases "
                        "average their vectors (repeatable)")
    p.add_argument("--id", action="append", default=[], dest="ids", metavar="IMAGE_ID",
                   help="search with a catalogue image's stored vector (repeatable); its own hit is left out")
    add_version_arg(p)
    add_search_args(p)
    add_expansion_args(p, default=None)
    p.add_argument("--no-verify", dest="verify", action="store_false",
                   help="rank by the global descriptor alone (by default an index with local features verifies "
                        "each image's and id's shortlist geometrically)")
    # As the join's (JoinConfig.shortlist): tests/test_options.py checks that the two stay one definition.
    p.add_argument("--shortlist", type=int, default=DEFAULT_SHORTLIST,
                   help=f"candidates verified per query (default {DEFAULT_SHORTLIST})")
    p.add_argument("--filter", action="append", default=[], metavar="COLUMN OP VALUE[,VALUE]",
                   help="keep hits whose metadata meets it (repeatable, all must hold): nice=25,9 (any of; a list "
                        "column holds one), vienna&=03.01.01,26.04.02 (holds all), status!=expired (none of), "
                        "vienna^=03.01 (starts with), filed>=2020-01-01 (also >, <=, <)")
    p.add_argument("--weight-class", default=None, metavar="NAME|ID",
                   help="like this image, but weighted toward an ImageNet class ('umbrella', 'running shoe' or an id "
                        "0-999): image and --id queries are pooled where the class is seen")
    p.add_argument("--weight-strength", type=float, default=None, metavar="S",
                   help="0 = plain search … 1 = only where the class is seen (the default)")
    add_crop_arg(p)
    p.add_argument("--colour-weight", type=float, default=None, metavar="W",
                   help="0-1: rank the shortlist of image and --id queries by their colours too (0: by shape alone, "
                        "the default; 1: colour decides)")
    p.add_argument("--examples", action="store_true",
                   help="one search made of every IMAGE and --id as examples to find more of (their mean direction); "
                        "--negative and --negative-id add examples to find fewer of")
    p.add_argument("--negative", action="append", default=[], dest="negative_images", metavar="IMAGE",
                   help="an image (path or URI) to find fewer of, in a search by examples (repeatable)")
    p.add_argument("--negative-id", action="append", default=[], dest="negative_ids", metavar="IMAGE_ID",
                   help="a catalogue image to find fewer of, in a search by examples (repeatable)")
    p.add_argument("--negative-weight", type=float, default=NEGATIVE_WEIGHT, metavar="W",
                   help=f"0-1: the query is the examples' mean minus W times the negatives' (default "
                        f"{NEGATIVE_WEIGHT:g})")
    add_json_arg(p, "the hits")


def worker_settings(args: argparse.Namespace, options: dict[str, Any], **extra):
    from lookalike.model.spec import ModelSpec
    # The model comes from the index unless a model option is given (--pooling alone counts): the fingerprint
    # check then guards the choice.
    spec = model_spec(args, options)
    return WorkerSettings(name=args.index, cache_dir=args.cache_dir or default_cache_dir(),
                          model=spec if spec != ModelSpec() else None, **extra)


def run_serve(args: argparse.Namespace) -> None:
    require("serve", "lookalike serve")
    import uvicorn

    from lookalike.serve.http_api import create_app, serve_metrics
    from lookalike.serve.uri_policy import UriAllowList
    from lookalike.serve.worker import ServedIndex
    options = key_values(args.store_option, "--store-option")
    # The settings first: a wrong one fails in one line before any version is loaded.
    token = read_token(args.token_file)
    api = ApiSettings(token=token, limits=QueryLimits(**option_values(args, QueryLimits, LIMIT_OPTIONS)),
                      **option_values(args, ApiSettings, API_OPTIONS))
    UriAllowList(api.allow_uri_prefixes)
    served = ServedIndex(Store(args.store, options),
                         worker_settings(args, options, **option_values(args, WorkerSettings, WORKER_OPTIONS)))
    served.start()
    if token is None and args.host not in ("127.0.0.1", "localhost", "::1"):
        log.warning("serving on %s without a token: anyone who reaches the port can search", args.host)
    status = served.status()
    print(f"serving {status['name']}/{status['version']} ({status['ntotal']:,} vectors) on "
          f"http://{args.host}:{args.port}/ (OpenAPI schema at /openapi.json)", flush=True)
    app = create_app(served, api)
    if args.metrics_port:
        serve_metrics(app, args.host, args.metrics_port)
    try:
        uvicorn.run(app, host=args.host, port=args.port, log_level="warning", timeout_keep_alive=5)
    finally:
        served.stop()


def run_search(args: argparse.Namespace) -> str:
    from lookalike.api.index import open_index
    from lookalike.image.crop import Crop
    if not args.images and not args.ids and not args.texts:
        raise ConfigError("give query images (paths or URIs), --id IMAGE_ID and/or --text WORDS")
    weighted = args.weight_class is not None or args.weight_strength is not None
    if weighted and args.texts:
        raise ConfigError("--weight-class weights a query image's features: text queries have none")
    if args.colour_weight is not None and not 0 <= args.colour_weight <= 1:
        raise ConfigError(f"--colour-weight is between 0 and 1, not {args.colour_weight:g}")
    if args.colour_weight and args.texts:
        raise ConfigError("--colour-weight weighs a query image's colours: text queries have none")
    examples = args.examples or args.negative_images or args.negative_ids
    if examples and args.texts:
        raise ConfigError("a search by examples takes images and --id: --text is searched on its own")
    if args.crop and not (args.images or args.negative_images):
        raise ConfigError("--crop takes a part of query images: give IMAGE paths or URIs (an --id query uses its "
                          "stored vector)")
    crop = Crop.of(args.crop)  # a wrong box or filter fails before the index is opened
    filters = parse_filters(args.filter)
    options = key_values(args.store_option, "--store-option")
    settings = worker_settings(args, options)
    index = open_index(args.store, args.index, args.version, storage_options=options, cache_dir=settings.cache_dir,
                       model=settings.model)
    common = {"filters": filters, "nprobe": args.nprobe, "rescore": args.rescore, "expand": args.expand,
              "expand_alpha": args.expand_alpha}
    by_image = {"verify": args.verify, "shortlist": args.shortlist, "weight_class": args.weight_class,
                "weight_strength": args.weight_strength, "colour_weight": args.colour_weight}
    focus = index.class_focus(args.weight_class, args.weight_strength)
    labels, results = [], []
    if examples:
        labels.append("examples")
        results.append(index.search_examples(
            args.images, args.ids, negative_images=args.negative_images, negative_ids=args.negative_ids,
            negative_weight=args.negative_weight, k=args.k, **common, **by_image, crop=crop))
    elif args.images:
        labels += args.images
        results += index.search(list(args.images), args.k, **common, **by_image, crop=crop)
    if args.texts:
        labels += args.texts
        results += index.search_text(list(args.texts), args.k, **common)
    if args.ids and not examples:
        labels += args.ids
        results += index.search_ids(list(args.ids), args.k, **common, **by_image)
    params = index.search_params(args.nprobe, args.rescore, args.expand, args.expand_alpha)
    if args.json:
        return json.dumps({"name": index.name, "version": index.version, "params": params.as_dict(),
                           **({"weighted_toward": focus.describe()} if focus else {}),
                           "results": [{"query": q, "hits": [h.as_dict() for h in hits]}
                                       for q, hits in zip(labels, results, strict=True)]}, indent=2,
                          default=str)  # metadata of types JSON lacks (dates, decimals) as text, as the worker writes
    expansion = f", αQE n={params.expand} α={params.expand_alpha:g}" if params.expand else ""
    toward = f", weighted toward {focus.name!r} ({focus.class_id}) at {focus.strength:g}" if focus else ""
    lines = [f"index {index.name}/{index.version} (nprobe {params.nprobe}, rescore {params.rescore}{expansion}"
             f"{toward}); rank, score, id"]
    for query, hits in zip(labels, results, strict=True):
        lines.append(f"{query}:")
        lines += [f"  {h.describe()}" for h in hits] or ["  (no hits)"]
    return "\n".join(lines)


def add_crop_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--crop", default=None, metavar="X0,Y0,X1,Y1",
                   help="search a part of each query image: a box as fractions of its width and height, e.g. "
                        "0.5,0,1,1 for its right half")


def explain_parser(p: argparse.ArgumentParser) -> None:
    add_worker_args(p)
    p.add_argument("image", nargs="?", metavar="IMAGE", help="the query image (a path or URI)")
    p.add_argument("--query-id", default=None, metavar="IMAGE_ID",
                   help="a catalogue image as the query, instead of IMAGE")
    p.add_argument("--hit", required=True, metavar="IMAGE_ID",
                   help="the catalogue image (a hit of the query's search) to compare with the query")
    add_version_arg(p)
    add_crop_arg(p)
    p.add_argument("--draw", default=None, metavar="PNG",
                   help="draw the comparison view into this PNG (a local path): both images side by side, the verified "
                        "keypoint pairs joined, the score's parts beneath")
    add_json_arg(p, "the explanation")


def run_explain(args: argparse.Namespace) -> str:
    """Why a catalogue image matches a query: the score's parts, the cosine's percentile in the catalogue, the
    keypoint pairs of the geometric fit; with --draw, the comparison view as a PNG."""
    from lookalike.api.index import open_index
    if (args.image is None) == (args.query_id is None):
        raise ConfigError("give the query: an IMAGE path or URI, or --query-id IMAGE_ID")
    options = key_values(args.store_option, "--store-option")
    settings = worker_settings(args, options)
    index = open_index(args.store, args.index, args.version, storage_options=options, cache_dir=settings.cache_dir,
                       model=settings.model)
    explanation = index.explain(args.hit, query=args.image, query_id=args.query_id, crop=args.crop)
    if args.draw:
        from pathlib import Path

        from lookalike.api.images import as_uri
        from lookalike.image.crop import Crop, crop_picture
        from lookalike.image.decode import decode
        from lookalike.image.read import read_image_bytes
        from lookalike.retrieval.comparison import PANEL, comparison_png
        query = index.image_bytes(args.query_id) if args.query_id else \
            read_image_bytes(as_uri(args.image), options, settings.max_bytes)
        pictures = [decode(data, 2 * PANEL).image for data in (query, index.image_bytes(args.hit))]
        pictures[0] = crop_picture(pictures[0], Crop.of(args.crop))  # the part that was explained
        Path(args.draw).write_bytes(comparison_png(*pictures, explanation))
    if args.json:
        return json.dumps({"name": index.name, "version": index.version,
                           "query": args.query_id or args.image, **explanation.as_dict()}, indent=2, default=str)
    return explanation.describe() + (f"\ncomparison view: {args.draw}" if args.draw else "")


def parts_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("images", nargs="+", metavar="IMAGE", help="mark image paths or URIs")
    add_store_option_arg(p)
    add_json_arg(p, "the parts")


def run_parts(args: argparse.Namespace) -> str:
    """The parts of each composite mark, each with the --crop that searches it (no index needed)."""
    from lookalike.api.parts import propose_parts
    found = propose_parts(list(args.images), storage_options=key_values(args.store_option, "--store-option"))
    if args.json:
        return json.dumps([{"image": i, "parts": [p.as_dict() for p in parts]}
                           for i, parts in zip(args.images, found, strict=True)], indent=2)
    return "\n".join(f"{i}:\n" + ("\n".join(f"  {p.describe()}" for p in parts) or "  one part (nothing to split)")
                     for i, parts in zip(args.images, found, strict=True))


def tag_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image paths or URIs")
    p.add_argument("--k", type=int, default=5, help="words per image (default 5)")
    add_model_args(p)
    p.set_defaults(space="words")
    add_store_option_arg(p)
    add_json_arg(p, "the tags")


def run_tag(args: argparse.Namespace) -> str:
    """The nearest words of each image in the word space (ImageNet class names), with no index needed."""
    from lookalike.api.images import as_uri
    from lookalike.model.loading import cached_model
    from lookalike.retrieval.embedder import QueryEmbedder
    from lookalike.retrieval.word_queries import WordQueries
    options = key_values(args.store_option, "--store-option")
    if args.k < 1:
        raise ConfigError("--k must be >= 1")
    embedder = QueryEmbedder(cached_model(model_spec(args, options), "cpu"), storage_options=options)
    words = WordQueries(embedder.model, "tag images")  # before any image is read
    tags = words.tags(embedder.embed([embedder.read(as_uri(i)) for i in args.images]), args.k)
    if args.json:
        return json.dumps([{"image": i, "tags": [{"word": w, "score": s} for w, s in row]}
                           for i, row in zip(args.images, tags, strict=True)], indent=2)
    return "\n".join(f"{i}: " + ", ".join(f"{w} ({s:.2f})" for w, s in row)
                     for i, row in zip(args.images, tags, strict=True))
