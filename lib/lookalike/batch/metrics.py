"""Retrieval metrics — precision@k, recall@k, R-precision, mAP, mAP@R, nDCG@k — under the two protocols of
image retrieval: labelled queries with relevant (and junk) lists, and whole-database leave-one-out by label.

Everything reduces to one boolean matrix: row q marks which of query q's ranked results are relevant, after
junk and the query itself are removed, beside n_relevant[q], the number of relevant items that exist. Ranked
lists may be truncated at a depth; metrics that look past it (mAP, R-precision with R > depth) then count the
missing relevant items as not found, so evaluate with a depth of at least the largest R for exact values.
Ties are not re-ordered: the ranking given (the search's, stable by database order) is the ranking judged.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np

DEFAULT_KS = (1, 5, 10)


@dataclass(frozen=True)
class Judged:
    """Relevance of ranked results: relevant[q, i] for the i-th result of query q (False past its list)."""

    relevant: np.ndarray    # (queries, depth) bool
    n_relevant: np.ndarray  # (queries,) int: relevant items that exist for the query
    skipped: int = 0        # queries with nothing relevant to find, left out
    rows: np.ndarray | None = None  # which input queries the rows are (the ones not skipped)


def judge_queries(rankings: Sequence[Sequence[Hashable]], relevant: Sequence[set], junk: Sequence[set] | None = None
                  ) -> Judged:
    """Protocol (a): each query's ranked ids, its relevant ids and optional junk ids (removed from the ranking
    before judging, as in Revisited Oxford/Paris). Queries without relevant ids are skipped."""
    if len(rankings) != len(relevant) or (junk is not None and len(junk) != len(rankings)):
        raise ValueError("rankings, relevant and junk need one entry per query")
    rows, counts, kept = [], [], []
    for q, ranking in enumerate(rankings):
        if not relevant[q]:
            continue
        ignore = junk[q] if junk is not None else ()
        rows.append([i in relevant[q] for i in ranking if i not in ignore])
        counts.append(len(relevant[q]))
        kept.append(q)
    return Judged(_pad(rows), np.asarray(counts, dtype=np.int64), len(rankings) - len(kept), np.asarray(kept))


def judge_leave_one_out(neighbours: np.ndarray, labels: Sequence[Hashable]) -> Judged:
    """Protocol (b): every labelled item is a query against all the others. neighbours[q] are database rows
    ranked for item q (-1 pads); q itself is removed wherever it appears. Items whose label no other item
    shares are skipped."""
    labels = np.asarray(labels)
    _, inverse, sizes = np.unique(labels, return_inverse=True, return_counts=True)
    n_relevant = sizes[inverse] - 1
    valid = (neighbours >= 0) & (neighbours != np.arange(len(neighbours))[:, None])
    same = valid & (labels[np.maximum(neighbours, 0)] == labels[:, None])
    # Drop the removed positions so ranks close up, then keep the queries that have something to find.
    order = np.argsort(~valid, axis=1, kind="stable")
    relevant = np.take_along_axis(same, order, axis=1)
    keep = n_relevant > 0
    return Judged(relevant[keep], n_relevant[keep], int((~keep).sum()), np.flatnonzero(keep))


def precision_at(j: Judged, k: int) -> float:
    return float(j.relevant[:, :k].sum(axis=1).mean() / k) if len(j.n_relevant) else 0.0


def recall_at(j: Judged, k: int) -> float:
    """Found relevant items in the top k over all relevant items (the retrieval definition, not the
    "at least one hit" of metric-learning papers)."""
    if not len(j.n_relevant):
        return 0.0
    return float((j.relevant[:, :k].sum(axis=1) / j.n_relevant).mean())


def r_precision(j: Judged) -> float:
    """Precision in the top R, R = the query's number of relevant items."""
    if not len(j.n_relevant):
        return 0.0
    hits = np.cumsum(j.relevant, axis=1)
    at_r = hits[np.arange(len(hits)), np.minimum(j.n_relevant, hits.shape[1]) - 1]
    return float((at_r / j.n_relevant).mean())


def mean_average_precision(j: Judged, at_r: bool = False) -> float:
    """mAP: per query the mean, over its relevant items, of the precision at each one's rank (items never
    retrieved contribute 0). at_r=True gives mAP@R (Musgrave et al. 2020): only the top R ranks count."""
    if not len(j.n_relevant):
        return 0.0
    rel = j.relevant
    ranks = np.arange(1, rel.shape[1] + 1)
    if at_r:
        rel = rel & (ranks[None, :] <= j.n_relevant[:, None])
    precision = np.cumsum(rel, axis=1) / ranks
    return float(((precision * rel).sum(axis=1) / j.n_relevant).mean())


def ndcg_at(j: Judged, k: int) -> float:
    """Binary-gain nDCG@k: DCG of the ranking over that of an ideal one with min(k, R) relevant items first."""
    if not len(j.n_relevant):
        return 0.0
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    gains = j.relevant[:, :k].astype(float)
    dcg = (gains * discounts[: gains.shape[1]]).sum(axis=1)
    ideal = np.cumsum(discounts)[np.minimum(j.n_relevant, k) - 1]
    return float((dcg / ideal).mean())


def summary(j: Judged, ks: Sequence[int] = DEFAULT_KS) -> dict[str, float]:
    """Every metric, as the evaluate report and the README quality table print them."""
    out: dict[str, float] = {"queries": len(j.n_relevant), "skipped": j.skipped}
    for k in ks:
        out[f"precision@{k}"] = precision_at(j, k)
        out[f"recall@{k}"] = recall_at(j, k)
    out["r_precision"] = r_precision(j)
    out["map"] = mean_average_precision(j)
    out["map@r"] = mean_average_precision(j, at_r=True)
    out[f"ndcg@{max(ks)}"] = ndcg_at(j, max(ks))
    return out


def _pad(rows: list[list[bool]]) -> np.ndarray:
    depth = max((len(r) for r in rows), default=0) or 1
    out = np.zeros((len(rows), depth), dtype=bool)
    for q, r in enumerate(rows):
        out[q, : len(r)] = r
    return out
