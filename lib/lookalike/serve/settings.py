"""The settings of a query worker, of its HTTP API and of a router: light (no torch, faiss or web framework), so
that the command line declares its flags from these fields without importing the servers. Each option is defined
once here (`lookalike.core.options`)."""

from __future__ import annotations

from dataclasses import dataclass

from lookalike.core.errors import ConfigError
from lookalike.core.options import option
from lookalike.image.limits import DEFAULT_MAX_BYTES
from lookalike.model.spec import ModelSpec
from lookalike.retrieval.limits import DEFAULT_LIMITS, MAX_BODY_BYTES, QueryLimits


@dataclass(frozen=True)
class WorkerSettings:
    name: str
    cache_dir: str
    model: ModelSpec | None = None   # None: the model the served version names
    poll_s: float = option(10.0, "seconds between reads of LATEST", flag="--poll-interval")
    retry_s: float = option(60.0, "seconds before a version that failed to load is tried again", flag="--retry-after")
    max_bytes: int = DEFAULT_MAX_BYTES
    # Below the embed job's limit: a worker decodes what anyone who reaches it sends.
    max_pixels: int = option(40_000_000, "largest image accepted, in pixels")
    max_pixels_in_flight: int = option(160_000_000, "pixels decoded at once over all requests; a decode waits "
                                                    "beyond it")
    device: str = "cpu"
    show_columns: tuple[str, ...] = option(
        (), "the metadata columns hits and comparisons carry, comma-separated (e.g. owner,vienna,nice,status,filed); "
            "every column stays filterable", parse=lambda text: tuple(c.strip() for c in text.split(",") if c.strip()),
        metavar="COLUMN[,COLUMN...]", shown="all of them")


@dataclass(frozen=True)
class ApiSettings:
    token: str | None = None              # bearer token; None: no auth (bind to a private interface)
    max_body_bytes: int = option(MAX_BODY_BYTES, "larger request bodies are refused (413) before they are read")
    max_batch: int = option(64, "queries (vectors, ids, images, URIs) per request")
    request_timeout_s: float = option(30.0, "seconds a request may take (also the time limit of each URI read)",
                                      flag="--request-timeout")
    allow_uri_prefixes: tuple[str, ...] = option(
        (), "let /search/uris read images under this URI prefix (repeatable; default: none, URI search is off)",
        flag="--allow-uri", repeatable=True, metavar="PREFIX")
    limits: QueryLimits = DEFAULT_LIMITS  # k, nprobe, rescore and candidates per request


ON_MISSING = ("partial", "error")


@dataclass(frozen=True)
class RouterSettings:
    shards: tuple[str, ...]            # base URLs of the shard workers
    on_missing: str = option("partial", "a dead or slow shard: answer from the others and say so, or fail the "
                                        "request", choices=ON_MISSING)
    shard_timeout_s: float = option(5.0, "seconds a shard may take to answer before it counts as missing",
                                    flag="--shard-timeout")
    token: str | None = None           # clients must send it, and it is passed on to the shards
    max_body_bytes: int = option(MAX_BODY_BYTES, "larger request bodies are refused (413), never forwarded to the "
                                                 "shards")
    shard_batch: int = option(64, "the shards' --max-batch: the router asks them for stored vectors this many at a "
                                  "time")

    def __post_init__(self):
        if not self.shards:
            raise ConfigError("give the shard workers: --shards URL,URL,...")
        if self.on_missing not in ON_MISSING:
            raise ConfigError(f"on_missing is one of {ON_MISSING}, got {self.on_missing!r}")
        if self.shard_batch < 1:
            raise ConfigError(f"shard_batch must be >= 1, got {self.shard_batch}")
