"""What one query request may ask for (k, nprobe, re-scoring, candidates), without torch or faiss: the command
line and the API schema read these bounds too."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from lookalike.core.errors import InputError
from lookalike.core.options import option

if TYPE_CHECKING:
    from lookalike.index.search import SearchParams


class QueryError(InputError):
    """A query that cannot be answered as asked; the message says what would be right."""


MAX_K = 1000
# Per-request bounds, so one request cannot take a worker's memory or minutes of its CPU (an unbounded rescore
# costs seconds and gigabytes, or crashes faiss). The defaults sit well above every operating point the builder
# chooses (its sweep's largest nprobe and rescore); a worker can be started with other ones.
MAX_NPROBE = 65_536
MAX_RESCORE = 10_000
MAX_CANDIDATES = 200_000     # query rows × max(k, rescore) in one request: 20 queries at rescore 10,000
DEFAULT_SHORTLIST = 100      # verified candidates per query (its cost and gain: bench/verify.py's record)
MAX_SHORTLIST = 1000         # candidates verified geometrically per query, each a RANSAC fit on a CPU core
# Candidates verified in one request (queries × shortlist): verification is the costliest step of a query, so it
# has its own budget; the default lets a full batch of 64 images verify the default shortlist.
MAX_VERIFIED = 64 * DEFAULT_SHORTLIST
MAX_EXPAND = 100             # αQE neighbours: past a few dozen the expanded query is the cluster's mean anyway
MAX_EXPAND_ALPHA = 20.0
MAX_BODY_BYTES = 20 * 1024 * 1024  # a request's body, at a worker and at a router alike

@dataclass(frozen=True)
class QueryLimits:
    """What one request (or one `lookalike search`) may ask for; refused with the limit named, before any work."""

    max_k: int = MAX_K
    max_nprobe: int = option(MAX_NPROBE, "largest nprobe a request may ask for")
    max_rescore: int = option(MAX_RESCORE, "largest rescore a request may ask for")
    max_candidates: int = option(MAX_CANDIDATES, "queries × max(k, rescore) one request may ask for")
    max_expand: int = MAX_EXPAND
    max_shortlist: int = MAX_SHORTLIST
    max_verified: int = option(MAX_VERIFIED, "queries × shortlist one request may verify geometrically (the "
                                             "costliest step of a query)")

    def check(self, n_queries: int, k: int, params: SearchParams, shortlist: int = 0) -> None:
        """Every bound of one request; `shortlist`: the candidates each query verifies (0: none)."""
        if shortlist:
            if not 1 <= shortlist <= self.max_shortlist:
                raise QueryError(f"shortlist must be between 1 and {self.max_shortlist}, got {shortlist}")
            if n_queries * shortlist > self.max_verified:
                raise QueryError(f"{n_queries} queries × {shortlist:,} candidates verified each is "
                                 f"{n_queries * shortlist:,}, above the limit of {self.max_verified:,} per request: "
                                 "send fewer images at a time, or a smaller shortlist")
        if not 1 <= k <= self.max_k:
            raise QueryError(f"k must be between 1 and {self.max_k}, got {k}")
        if not 1 <= params.nprobe <= self.max_nprobe:
            raise QueryError(f"nprobe must be between 1 and {self.max_nprobe}, got {params.nprobe}")
        if not 0 <= params.rescore <= self.max_rescore:
            raise QueryError(f"rescore must be between 0 and {self.max_rescore}, got {params.rescore}")
        if not 0 <= params.expand <= self.max_expand:
            raise QueryError(f"expand must be between 0 and {self.max_expand}, got {params.expand}")
        if not 0.0 <= params.expand_alpha <= MAX_EXPAND_ALPHA:
            raise QueryError(f"expand_alpha must be between 0 and {MAX_EXPAND_ALPHA:g}, got {params.expand_alpha}")
        work = n_queries * max(k, params.rescore)
        if work > self.max_candidates:
            raise QueryError(f"{n_queries} queries × {max(k, params.rescore):,} candidates each is {work:,}, above "
                             f"the limit of {self.max_candidates:,} per request: send fewer queries at a time, or "
                             "a smaller k or rescore")


DEFAULT_LIMITS = QueryLimits()
