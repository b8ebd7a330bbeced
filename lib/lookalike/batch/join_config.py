"""The similarity join's config: typed, frozen, validated up front, copied into the manifest; light to import,
since the command line derives its flags from it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from lookalike.core.errors import ConfigError
from lookalike.core.layout import RUN_ID_PATTERN
from lookalike.core.options import option
from lookalike.retrieval.limits import DEFAULT_SHORTLIST, MAX_K


@dataclass(frozen=True)
class JoinConfig:
    """What `lookalike join` searches: one base (an index or an embeddings version) and one kind of queries."""

    store: str
    index: str | None = None              # base: a published index name ...
    index_version: str | None = None      # ... at this version (default LATEST)
    base_embeddings: str | None = None    # ... or FINGERPRINT[/RUN], searched exactly
    query_embeddings: str | None = None   # queries: FINGERPRINT[/RUN] ...
    query_images: str | None = None       # ... or an images folder/table, embedded first with the base's model
    query_texts: str | None = None        # ... or a UTF-8 text file, one text query a line (a word-space base)
    self_join: bool = False               # queries = the base's own images; each image's own hit is left out
    k: int = 10
    threshold: float | None = option(None, "keep pairs with cosine score >= this", parse=float)
    nprobe: int | None = None             # default: the index's operating point
    rescore: int | None = None
    expand: int = 0                       # αQE neighbours (0 = off), as in `lookalike search --expand`
    verify: bool = option(False, "verify each query's shortlist geometrically, where queries and base both carry "
                                 "local features (the costliest step of a query, so off by default in joins; "
                                 "docs/performance.md)")
    shortlist: int = option(DEFAULT_SHORTLIST, "candidates verified per query")
    expand_alpha: float = 3.0
    with_metadata: bool = option(False, "add both sides' columns (query_*, neighbor_*)")
    run_id: str | None = None
    master: str | None = "local[*]"
    storage_options: dict[str, Any] = field(default_factory=dict)
    batch_size: int = option(4096, "queries searched at once in a task")
    spark_conf: dict[str, str] = field(default_factory=dict)

    def __post_init__(self):
        if (self.index is None) == (self.base_embeddings is None):
            raise ConfigError("give exactly one base: --index NAME (a published index) or --base-embeddings "
                              "FINGERPRINT[/RUN] (exact search)")
        given = sum(x is not None for x in (self.query_embeddings, self.query_images, self.query_texts))
        if self.self_join and given:
            raise ConfigError("--self-join searches the base's own images: give no --query-* option with it")
        if not self.self_join and given != 1:
            raise ConfigError("give the queries: --query-embeddings FINGERPRINT[/RUN], --query-images URL or "
                              "--query-texts URL (or --self-join)")
        if self.self_join and self.threshold is None:
            raise ConfigError("--self-join needs --threshold: clusters are made of the pairs scoring above it")
        if not 1 <= self.k <= MAX_K:
            raise ConfigError(f"k must be between 1 and {MAX_K}, got {self.k}")
        if self.threshold is not None and not -1.0 <= self.threshold <= 1.0:
            raise ConfigError(f"threshold is a cosine similarity in [-1, 1], got {self.threshold}")
        if self.run_id is not None and not RUN_ID_PATTERN.match(self.run_id):
            raise ConfigError(f"run_id {self.run_id!r}: use letters, digits, '.', '_' and '-' (at most 128)")
