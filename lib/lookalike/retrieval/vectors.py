"""Query vectors as a request gives them → unit float32 rows: the one normalisation of the worker and the router
(numpy only, so the router needs no torch or faiss)."""

from __future__ import annotations

from typing import Any

import numpy as np

from lookalike.retrieval.limits import QueryError


def unit_rows(vectors: Any, dim: int | None = None) -> np.ndarray:
    """Raw vectors (one, or a list of them) → unit float32 rows; `dim`: the length they must have."""
    try:
        q = np.asarray(vectors, dtype=np.float64)
    except (TypeError, ValueError, OverflowError) as e:
        raise QueryError(f"vectors must be a list of lists of numbers: {e}") from e
    if q.ndim == 1:
        q = q[None, :]
    if q.ndim != 2 or q.shape[0] == 0 or q.shape[1] == 0 or (dim is not None and q.shape[1] != dim):
        raise QueryError(f"vectors of shape {list(q.shape)}: this index takes vectors of length {dim}")
    if not np.isfinite(q).all():
        raise QueryError("vectors contain NaN or infinity")
    # Only the direction matters: scaled by the largest component first, so that components of 1e20 (or 1e308)
    # neither overflow the sum of squares nor become infinities in float32.
    scale = np.abs(q).max(axis=1, keepdims=True)
    if (scale == 0).any():
        raise QueryError("a vector is all zeros: it has no direction to search")
    q = q / scale
    return (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)  # the index holds unit vectors
