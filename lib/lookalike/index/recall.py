"""Recall of an index against exact search on held-out queries, the nprobe × re-scoring sweep, and the
choice of the default operating point."""

from __future__ import annotations

import time
from typing import Any

import faiss
import numpy as np

from lookalike.core.errors import JobFailed
from lookalike.core.progress import Progress, progress
from lookalike.index.choice import IndexChoice
from lookalike.index.search import SearchParams, search

RESCORES = (0, 50, 100, 200)
# Hamming distances rank coarsely (a 128-bit code has 129 values): binary codes need longer shortlists, and
# always one, for their scores to be cosines.
BINARY_RESCORES = (50, 100, 200, 500, 1000)


class RecallTooLow(JobFailed):
    """The index does not reach --min-recall at any setting; nothing is published."""


def exact_ground_truth(partials: list[tuple[np.ndarray, np.ndarray]], query_ids: np.ndarray, k: int) -> np.ndarray:
    """Merge per-part exact top lists into the global top-k per query, the query itself left out (it is in
    the database, and finding it is no achievement)."""
    distances = np.concatenate([p[0] for p in partials], axis=1)
    ids = np.concatenate([p[1] for p in partials], axis=1)
    distances = np.where((ids == query_ids[:, None]) | (ids < 0), np.inf, distances)
    order = np.argsort(distances, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(ids, order, axis=1)


def drop_self(ids: np.ndarray, query_ids: np.ndarray, k: int) -> np.ndarray:
    """Each row without the query's own id, first k kept (rows are ranked, so order is kept)."""
    out = np.full((len(ids), k), -1, dtype=np.int64)
    for q, row in enumerate(ids):
        kept = row[(row != query_ids[q]) & (row >= 0)][:k]
        out[q, : len(kept)] = kept
    return out


def recall_at(found: np.ndarray, truth: np.ndarray, k: int) -> float:
    """k-R@k as Faiss defines it: the share of the true top-k found in the returned top-k."""
    hits = [len(set(f[:k].tolist()) & set(t[:k].tolist())) for f, t in zip(found, truth, strict=True)]
    return float(np.mean(hits) / k)


def nprobe_values(choice: IndexChoice) -> list[int]:
    if choice.is_flat or not choice.nlist:
        return [1]
    values, p = [], 1
    while p <= min(choice.nlist, 1024):
        values.append(p)
        p *= 2
    return values


def sweep(index: faiss.Index, queries: np.ndarray, query_ids: np.ndarray, truth: np.ndarray,
          exact: faiss.Index, k: int, choice: IndexChoice) -> list[dict[str, Any]]:
    """recall@1, recall@10 (k-R@k) and QPS for each (nprobe, rescore), re-scoring with `exact` (the version's
    stored vectors as a scorer); stops raising nprobe once recall with the widest re-scoring stops improving."""
    rescores = (0,) if choice.is_flat else BINARY_RESCORES if choice.is_binary else RESCORES
    nprobes = nprobe_values(choice)
    # How many settings are measured is known only at the end: the sweep stops when recall stops improving.
    with progress("index: recall sweep", None, "settings") as step:
        return _sweep(index, queries, query_ids, truth, exact, k, nprobes, rescores, step)


def _sweep(index: faiss.Index, queries: np.ndarray, query_ids: np.ndarray, truth: np.ndarray, exact: faiss.Index,
           k: int, nprobes: list[int], rescores: tuple[int, ...], step: Progress) -> list[dict[str, Any]]:
    table = []
    last_best = -1.0
    for nprobe in nprobes:
        best_here = 0.0
        for rescore in rescores:
            params = SearchParams(nprobe=nprobe, rescore=rescore)
            search(index, queries[: min(50, len(queries))], k + 1, params, exact)  # warm caches
            t0 = time.perf_counter()
            _, ids = search(index, queries, k + 1, params, exact)
            elapsed = time.perf_counter() - t0
            found = drop_self(ids, query_ids, k)
            row = {"nprobe": nprobe, "rescore": rescore, "recall_at_1": recall_at(found, truth, 1),
                   "recall_at_10": recall_at(found, truth, min(10, k)), "qps": round(len(queries) / elapsed, 1)}
            table.append(row)
            step.advance()
            best_here = max(best_here, row["recall_at_10"])
        if best_here >= 0.999 or best_here - last_best < 1e-3:
            break
        last_best = best_here
    return table


def choose_operating_point(table: list[dict[str, Any]], target: float) -> dict[str, Any]:
    """The fastest setting reaching the target 10-R@10; if none does, the most accurate one."""
    reaching = [r for r in table if r["recall_at_10"] >= target]
    row = max(reaching, key=lambda r: r["qps"]) if reaching else max(
        table, key=lambda r: (r["recall_at_10"], r["qps"]))
    return {**row, "target_recall_at_10": target, "target_met": bool(reaching),
            "params": SearchParams(row["nprobe"], row["rescore"]).as_dict()}
