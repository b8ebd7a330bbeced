"""Re-ranking in the descriptor space, after the first search: α-weighted query expansion (αQE),
database-side augmentation (DBA) and k-reciprocal re-ranking.

All three work on unit vectors and cosine scores, and on neighbour lists as the searches return them (faiss ids,
-1 padding). They are plain array functions: the search paths (index.search, the index build, batch jobs)
decide when to call them and with what lists.

- αQE (Radenović, Tolias, Chum 2018): the query is replaced by the normalised sum of itself and its top n
  neighbours, each weighted by its cosine to the power α, and searched again.
- DBA (Arandjelović & Zisserman 2012, α-weighted as in Radenović et al.): the same done to every database vector
  with its own neighbours, once, when the index is built; queries cost nothing more.
- k-reciprocal (Zhong, Zheng, Cao, Li 2017): a candidate close to the query whose own nearest neighbours also
  hold the query is more likely right; the Jaccard distance of the two k-reciprocal neighbourhoods is blended
  with the original distance. Sparse here: only the shortlist and the database's own neighbour lists are used,
  so its cost grows with the shortlist, not with the database.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Expansion:
    """αQE or DBA settings: the top `n` neighbours (0 = off), weighted by cosine ** alpha."""
    n: int = 0
    alpha: float = 3.0

    def __post_init__(self) -> None:
        if self.n < 0 or self.alpha < 0:
            raise ValueError(f"expansion needs n >= 0 and alpha >= 0, got n={self.n} alpha={self.alpha}")

    @property
    def enabled(self) -> bool:
        return self.n > 0


def expand(vectors: np.ndarray, neighbour_vectors: np.ndarray, neighbour_scores: np.ndarray,
           expansion: Expansion) -> np.ndarray:
    """αQE / DBA: each row of `vectors` (m, d) plus its top expansion.n neighbours (m, n', d) with their cosines
    (m, n'), weighted by max(cos, 0) ** alpha, L2-normalised. Padding neighbours carry a score of -inf or NaN and
    weigh nothing. A row is its own weight-1 term, so a row with no usable neighbour is returned as it was."""
    if not expansion.enabled:
        return vectors
    n = min(expansion.n, neighbour_vectors.shape[1])
    scores = np.nan_to_num(neighbour_scores[:, :n].astype(np.float64), nan=0.0, neginf=0.0)
    weights = np.clip(scores, 0.0, 1.0) ** expansion.alpha
    summed = vectors.astype(np.float64) + np.einsum("mn,mnd->md", weights, neighbour_vectors[:, :n])
    norms = np.linalg.norm(summed, axis=1, keepdims=True)
    return (summed / np.where(norms == 0, 1.0, norms)).astype(np.float32)


@dataclass(frozen=True)
class KReciprocal:
    """k-reciprocal re-ranking settings (Zhong et al. 2017): neighbourhoods of k1, local expansion over k2,
    final distance (1 - lambda_) * Jaccard + lambda_ * original."""
    k1: int = 20
    k2: int = 6
    lambda_: float = 0.3

    def __post_init__(self) -> None:
        if not (1 <= self.k2 <= self.k1) or not 0.0 <= self.lambda_ <= 1.0:
            raise ValueError(f"k-reciprocal needs 1 <= k2 <= k1 and 0 <= lambda <= 1, got {self}")


class NeighbourLists:
    """Database items' own neighbour lists (faiss ids and cosines, best first, the item itself anywhere or
    absent), fetched in batches on first use and kept: k-reciprocal re-ranking needs those of the shortlist, of
    their neighbours and of theirs, never the whole database's."""

    def __init__(self, fetch: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]], k: int):
        self.fetch, self.k = fetch, k
        self._lists: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    @classmethod
    def of_arrays(cls, ids: np.ndarray, scores: np.ndarray, k: int) -> NeighbourLists:
        """Lists already computed for every item (row = faiss id), as a self-join gives them."""
        return cls(lambda wanted: (ids[wanted], scores[wanted]), k)

    def prefetch(self, items: Iterable[int]) -> None:
        missing = np.array(sorted({int(i) for i in items} - self._lists.keys()), dtype=np.int64)
        if len(missing):
            ids, scores = self.fetch(missing)
            for item, row_ids, row_scores in zip(missing.tolist(), ids, scores, strict=True):
                keep = (row_ids >= 0) & (row_ids != item)
                self._lists[item] = (row_ids[keep][:self.k], row_scores[keep][:self.k].astype(np.float64))

    def __getitem__(self, item: int) -> tuple[np.ndarray, np.ndarray]:
        if item not in self._lists:
            self.prefetch([item])
        return self._lists[item]

    def ids(self, item: int, k: int) -> list[int]:
        return self[item][0][:k].tolist()


def k_reciprocal_rerank(query_ids: np.ndarray, query_scores: np.ndarray, database: NeighbourLists,
                        settings: KReciprocal = KReciprocal()) -> tuple[np.ndarray, np.ndarray]:
    """Re-order each query's shortlist by the k-reciprocal distance.

    query_ids/query_scores (m, s): each query's shortlist over the database (faiss ids, cosines; -1 pads), s >= k1.
    database: the database items' own neighbour lists, at least k1 long.
    Returns the shortlists re-ordered, with the blended distance turned back into a similarity (1 - d) so that
    larger is better as everywhere else. Candidates beyond the shortlist are never introduced.
    """
    k1, k2 = settings.k1, settings.k2
    weights_of = _DatabaseWeights(database, k1, k2)
    out_ids = np.full_like(query_ids, -1)
    out_scores = np.full(query_ids.shape, -np.inf, dtype=np.float32)
    for q in range(len(query_ids)):
        valid = query_ids[q] >= 0
        ids, scores = query_ids[q][valid], query_scores[q][valid].astype(np.float64)
        if len(ids) == 0:
            continue
        database.prefetch(ids.tolist())
        reciprocal = _query_reciprocal(ids, scores, database, k1)
        # Members reached through the database's lists but beyond the shortlist are at least as far as its end.
        weights = _weights(reciprocal, dict(zip(ids.tolist(), scores.tolist(), strict=True)), float(scores.min()))
        # Local query expansion: the query's weights averaged with those of its top k2 - 1 candidates.
        weights = _mean([weights, *(weights_of[g] for g in ids[:k2 - 1].tolist())])
        jaccard = np.array([_jaccard(weights, weights_of[g]) for g in ids.tolist()])
        original = 1.0 - scores  # cosine distance, in [0, 2]
        final = (1.0 - settings.lambda_) * jaccard + settings.lambda_ * original
        order = np.argsort(final, kind="stable")
        out_ids[q, :len(ids)] = ids[order]
        out_scores[q, :len(ids)] = 1.0 - final[order]
    return out_ids, out_scores


def _reciprocal_in_database(g: int, database: NeighbourLists, k: int) -> set[int]:
    """R(g, k) within the database: g's top-k neighbours that hold g in their own top k."""
    top = database.ids(g, k)
    database.prefetch(top)
    return {c for c in top if g in database.ids(c, k)}


def _expanded(core: set[int], database: NeighbourLists, k1: int) -> set[int]:
    """R*: R(., k1) grown by each member's own R(., k1/2) where two thirds of it already lies in R(., k1)."""
    grown = set(core)
    half = max(1, round(k1 / 2))
    for c in sorted(core):
        candidate = _reciprocal_in_database(c, database, half) | {c}
        if len(candidate & core) >= 2 / 3 * len(candidate):
            grown |= candidate
    return grown


def _query_reciprocal(ids: np.ndarray, scores: np.ndarray, database: NeighbourLists, k1: int) -> set[int]:
    # g's top k1 over the database plus the query: the query is among them when it is closer to g than g's k1-th
    # database neighbour is.
    core = set()
    for g, s in zip(ids[:k1].tolist(), scores[:k1].tolist(), strict=True):
        _, g_scores = database[g]
        if len(g_scores) < k1 or s >= g_scores[k1 - 1]:
            core.add(g)
    return _expanded(core, database, k1)


class _DatabaseWeights:
    """Each database item's k-reciprocal weights, locally expanded over its top k2 - 1, computed on demand."""

    def __init__(self, database: NeighbourLists, k1: int, k2: int):
        self.database, self.k1, self.k2 = database, k1, k2
        self._raw: dict[int, dict[int, float]] = {}
        self._expanded: dict[int, dict[int, float]] = {}

    def raw(self, g: int) -> dict[int, float]:
        if g not in self._raw:
            ids, scores = self.database[g]
            core = _reciprocal_in_database(g, self.database, self.k1) | {g}
            similarity = {int(c): float(s) for c, s in zip(ids.tolist(), scores.tolist(), strict=True)}
            similarity[g] = 1.0
            floor = float(scores.min()) if len(scores) else 0.0
            self._raw[g] = _weights(_expanded(core, self.database, self.k1), similarity, floor)
        return self._raw[g]

    def __getitem__(self, g: int) -> dict[int, float]:
        if g not in self._expanded:
            self._expanded[g] = _mean([self.raw(g), *(self.raw(c) for c in self.database.ids(g, self.k2 - 1))])
        return self._expanded[g]


def _weights(members: set[int], similarity: dict[int, float], floor: float) -> dict[int, float]:
    """Gaussian-kernel weights exp(-d) of the members' cosine distances (unknown ones at `floor`), summing to 1."""
    raw = {m: float(np.exp(-(1.0 - similarity.get(m, floor)))) for m in members}
    total = sum(raw.values())
    return {m: w / total for m, w in raw.items()} if total > 0 else {}


def _mean(vectors: list[dict[int, float]]) -> dict[int, float]:
    out: dict[int, float] = {}
    for v in vectors:
        for key, value in v.items():
            out[key] = out.get(key, 0.0) + value / len(vectors)
    return out


def _jaccard(a: dict[int, float], b: dict[int, float]) -> float:
    keys = a.keys() | b.keys()
    if not keys:
        return 1.0
    low = sum(min(a.get(k, 0.0), b.get(k, 0.0)) for k in keys)
    high = sum(max(a.get(k, 0.0), b.get(k, 0.0)) for k in keys)
    return 1.0 - low / high
