"""Arguments several commands share: the store, the model, the Spark master, KEY=VALUE options, sizes, the
API token. A leaf: it imports no other command module."""

from __future__ import annotations

import argparse
import json
import logging
import os
from collections.abc import Sequence
from typing import Any

from lookalike.core.errors import ConfigError
from lookalike.core.event_log import event_log_conf
from lookalike.model.spec import DEFAULT_MODEL, POOLINGS, SPACES, WORD_SPACE_MODEL, ModelSpec

TOKEN_ENV = "LOOKALIKE_API_TOKEN"


class DeprecatedFlag(argparse.Action):
    """A flag's name of an older release, kept for one more: it sets the new flag and says to use that name."""

    def __init__(self, option_strings: list[str], dest: str, replacement: str, **kwargs: Any):
        self.replacement = replacement
        super().__init__(option_strings, dest, help=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        logging.getLogger("lookalike.cli").warning("%s is deprecated: use %s", option_string, self.replacement)
        setattr(namespace, self.dest, values)


class OldSpelling(argparse._StoreAction):
    """A flag that also answers to an older spelling (listed after the current one), which still sets it but says
    to use the current one: for required flags, which a separate deprecated flag could not satisfy."""

    def __call__(self, parser, namespace, values, option_string=None):
        if option_string != self.option_strings[0]:
            logging.getLogger("lookalike.cli").warning("%s is deprecated: use %s", option_string,
                                                       self.option_strings[0])
        setattr(namespace, self.dest, values)


def add_deprecated_flag(p: argparse.ArgumentParser, old: str, new: str, **kwargs: Any) -> None:
    """`dest`: where the new flag stores its value, when not named after it."""
    kwargs.setdefault("dest", new.lstrip("-").replace("-", "_"))
    p.add_argument(old, action=DeprecatedFlag, replacement=new, **kwargs)


class CommandHelp(argparse.RawDescriptionHelpFormatter):
    """Help as written (descriptions keep their lines), every flag with its default where it has one."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "%(default)" in text or "default" in text.lower() or not action.option_strings or action.nargs == 0:
            return text
        if action.default in (None, argparse.SUPPRESS, [], ()) or action.required:
            return text
        return f"{text} (default: %(default)s)"


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


def add_spark_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--spark-conf", action="append", default=[], metavar="KEY=VALUE",
                   help="a Spark setting for this job, e.g. spark.executor.memory=4g (repeatable); it wins over "
                        "spark-submit's and the properties file's")
    p.add_argument("--event-log", default=None, metavar="URL",
                   help="write the job's Spark event log there, for a history server: a folder, hdfs://, or any "
                        "store URL (s3://, gs://, ...: written locally, then copied there with the --store-option "
                        "settings when the job ends)")


def spark_conf(pairs: Sequence[str], event_log: str | None,
               storage_options: dict[str, Any] | None = None) -> dict[str, str]:
    """--spark-conf KEY=VALUE pairs as Spark takes them: dotted keys kept whole, values as written; and the
    settings of --event-log."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--spark-conf {pair!r}: expected KEY=VALUE, e.g. spark.executor.memory=4g")
        out[key.strip()] = value
    if event_log:
        out |= event_log_conf(event_log, storage_options)
    return out


def add_store_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--store", required=True, help="store root URL: a folder, file://..., s3://bucket/prefix")
    add_store_option_arg(p)


def add_store_option_arg(p: argparse.ArgumentParser) -> None:
    """How remote URLs are read (the store's, and images or weights given by URL)."""
    p.add_argument("--store-option", action="append", default=[], metavar="KEY=VALUE",
                   help="fsspec option for s3:// and other remote URLs, e.g. "
                        "client_kwargs.endpoint_url=http://127.0.0.1:9000 (repeatable); credentials come "
                        "from the standard AWS environment, profile or instance role")


def add_images_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--images", required=True, help="folder/prefix URL, or a .parquet/.csv images table")


def add_embeddings_arg(p: argparse.ArgumentParser | argparse._ArgumentGroup,
                       help: str = "the embeddings version (default: the store's only model, LATEST)") -> None:
    p.add_argument("--embeddings", default=None, metavar="FINGERPRINT[/RUN_ID]", help=help)


def add_run_id_arg(p: argparse.ArgumentParser,
                   help: str = "name of the run; an existing id resumes it (default: a new one)") -> None:
    p.add_argument("--run-id", default=None, help=help)


def add_keep_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--keep", type=int, default=None, metavar="N",
                   help="keep the newest N versions, deleting older ones (never LATEST or its predecessor); "
                        "build-index and reindex do it after publishing")


def add_index_arg(p: argparse.ArgumentParser | argparse._ArgumentGroup, required: bool = True,
                  help: str = "index name, e.g. trademarks") -> None:
    """The index a command works on: --index in every command (--name, its first spelling, still works, with a
    warning)."""
    p.add_argument("--index", "--name", dest="index", required=required, default=None, metavar="NAME", help=help,
                   action=OldSpelling)


def add_version_arg(p: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """An index version other than LATEST (--index-version, the join's first spelling, still works, with a
    warning)."""
    p.add_argument("--version", "--index-version", dest="version", default=None, metavar="VERSION", action=OldSpelling,
                   help="a version of the index other than LATEST (`lookalike indexes list` shows them; "
                        "default: LATEST)")


def add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=None,
                   help=f"backbone (default {DEFAULT_MODEL}, trained for marks; {WORD_SPACE_MODEL}, ImageNet, for "
                        "--space words and conse; weights of both bundled)")
    p.add_argument("--weights", default=None, help="state dict URI for models without bundled weights")
    p.add_argument("--pooling", default="gem", choices=POOLINGS,
                   help="how the backbone's feature map becomes one vector (generalised mean, average, max, R-MAC)")
    p.add_argument("--gem-p", type=float, default=3.0, help="GeM's exponent: 1 is the average, larger nears the max")
    p.add_argument("--image-size", type=int, default=None,
                   help="the model's input size in pixels (default: the model's own, 320 for EfficientNet-Lite0)")
    p.add_argument("--resize", default="pad", choices=("pad", "crop", "squash"),
                   help="to the square input: pad keeps the whole image (aspect kept, on white), crop its centre, "
                        "squash stretches it")
    p.add_argument("--whitening", default=None, metavar="URI",
                   help="apply a PCA-whitening learned with `lookalike whiten` (part of the model fingerprint)")
    p.add_argument("--scales", default=(1.0,), type=scale_factors, metavar="S1,S2,...",
                   help="multi-scale descriptor: the input resized by each factor, e.g. 1,0.707 (default 1)")
    p.add_argument("--space", default="visual", choices=SPACES,
                   help="visual: pooled features (default); words: each image as a vector of the text encoder's "
                        "space (the shipped DeViSE map), searchable with `search --text`; conse: that space "
                        "without training (ConSE over the ImageNet classifier)")


def model_flags_given(args: argparse.Namespace) -> list[str]:
    """The flags of add_model_args set to anything but their defaults: for a command that takes its model from
    elsewhere in some of its modes, so that such flags are refused there instead of silently ignored."""
    defaults = argparse.ArgumentParser()
    add_model_args(defaults)
    return [f"--{dest.replace('_', '-')}" for dest, default in vars(defaults.parse_args([])).items()
            if getattr(args, dest, default) != default]


def scale_factors(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(s) for s in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"scales are comma-separated numbers, e.g. 1,0.707; got {text!r}") from None


def model_spec(args: argparse.Namespace, options: dict[str, Any]) -> ModelSpec:
    return ModelSpec(name=args.model, weights_uri=args.weights, pooling=args.pooling, gem_p=args.gem_p,
                     image_size=args.image_size, resize=args.resize, whitening_uri=args.whitening,
                     scales=args.scales, space=args.space, weights_options=options)


def add_local_features_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--local-features", choices=["rootsift", "orb", "none"], default="rootsift",
                   help="keypoints extracted beside each vector, so searches by image verify their shortlist "
                        "geometrically, lifting copies and redrawn marks to rank 1 (default rootsift; "
                        "docs/quality.md); none to skip")
    p.add_argument("--max-keypoints", type=int, default=256, help="local features kept per image (default 256)")


def local_features(args: argparse.Namespace):
    from lookalike.image.feature_spec import FeatureSettings
    return None if args.local_features == "none" else FeatureSettings(args.local_features, args.max_keypoints)


def add_search_args(p: argparse.ArgumentParser) -> None:
    """How many hits, and the operating point of a search (the index manifest's unless overridden)."""
    p.add_argument("--k", type=int, default=10, help="hits per query")
    p.add_argument("--nprobe", type=int, default=None,
                   help="inverted lists probed (default: the index's operating point, chosen by its recall sweep)")
    p.add_argument("--rescore", type=int, default=None,
                   help="candidates re-scored exactly from the stored vectors (default: the index's operating point)")
    add_deprecated_flag(p, "--rerank", "--rescore", type=int)


def add_expansion_args(p: argparse.ArgumentParser, default: int | None = 0, of: str = "queries") -> None:
    """The flags of an Expansion (lookalike.index.rerank): αQE of the queries after the first search, off by
    default since on the logo benchmarks it did not win (docs/quality.md, "Re-ranking"), and None leaves the index
    manifest's own setting; or DBA of the catalogue (`of="catalogue"`, `lookalike augment`)."""
    from lookalike.index.rerank import Expansion
    what = ("αQE: average each query with its top N hits and search again" if of == "queries" else
            "DBA: average each catalogue vector with its top N neighbours")
    p.add_argument("--expand", type=int, default=default, metavar="N", help=f"{what} (0 = off)")
    p.add_argument("--expand-alpha", type=float, default=None if default is None else Expansion.alpha,
                   metavar="ALPHA", help="neighbours weigh cosine ** ALPHA")


def add_json_arg(p: argparse.ArgumentParser, what: str = "the manifest") -> None:
    p.add_argument("--json", action="store_true", help=f"print {what} as JSON")


def add_master_arg(p: argparse.ArgumentParser, submitted: bool) -> None:
    # Under spark-submit the master comes from the submit command; a default here would override it.
    p.add_argument("--master", default=None if submitted else "local[*]",
                   help="Spark master URL, or 'in-process' to run without Spark "
                        f"(default {'the one spark-submit was given' if submitted else 'local[*]'})")


def add_listen_args(p: argparse.ArgumentParser, port: int) -> None:
    """Where a server listens (the worker and the router)."""
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1: this host only)")
    p.add_argument("--port", type=int, default=port, help="port to listen on")


def add_token_arg(p: argparse.ArgumentParser, who: str) -> None:
    p.add_argument("--token-file", default=None, metavar="PATH",
                   help=f"file holding the bearer token of {who} (or set ${TOKEN_ENV}); without either, no auth")


def read_token(path: str | None) -> str | None:
    """The bearer token from --token-file, else $LOOKALIKE_API_TOKEN; None means no auth."""
    if path:
        try:
            with open(path, encoding="utf-8") as f:
                token = f.read().strip()
        except UnicodeDecodeError as e:
            raise ConfigError(f"--token-file {path} is not UTF-8 text ({e.reason} at byte {e.start}): write the "
                              "token as text") from e
    else:
        token = os.environ.get(TOKEN_ENV, "").strip()
    if path and not token:
        raise ConfigError(f"--token-file {path} is empty")
    return token or None
