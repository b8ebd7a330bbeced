"""More like these, not like those: one query made of example images, some to find more of and some to find
fewer of (Rocchio's relevance feedback). The query is the positives' mean direction minus `negative_weight`
times the negatives' mean direction, normalised. Numpy only: the router combines the examples' vectors too."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from lookalike.retrieval.limits import QueryError
from lookalike.retrieval.vectors import unit_rows

# Rocchio's classic weights give the negatives 0.15-0.25, for text queries whose negatives are far from the query;
# an examiner's "less like this" is a near miss, whose direction must weigh more to move the ranking at all. In
# bench/relevance_feedback.py, where the first right hit is on the first page (and the wrong hits above it are the
# negatives) any weight finds the rest of the brand as well; where none is, 0.75 finds the right answer sooner
# than 0.25 or 0.5 under both models, and at 1 the two models part ways.
NEGATIVE_WEIGHT = 0.75


@dataclass(frozen=True)
class Examples:
    positives: np.ndarray | Sequence[Sequence[float]]  # (p, dim) vectors of the images to find more of, p >= 1
    negatives: np.ndarray | Sequence[Sequence[float]]  # (n, dim) vectors of the images to find fewer of
    negative_weight: float = NEGATIVE_WEIGHT

    def __post_init__(self) -> None:
        if len(self.positives) == 0:
            raise QueryError("a search by examples needs at least one image to find more of (a positive example)")
        if not 0 <= self.negative_weight <= 1:
            raise QueryError(f"negative_weight is between 0 and 1, not {self.negative_weight}")

    def query(self) -> np.ndarray:
        """The one query row (1, dim), unit length."""
        direction = unit_rows(self.positives).mean(axis=0)
        if len(self.negatives):
            dim = direction.shape[0]
            direction = direction - self.negative_weight * unit_rows(self.negatives, dim).mean(axis=0)
        if np.linalg.norm(direction) < 1e-6:
            raise QueryError("the examples cancel out (the images to find fewer of are the images to find more "
                             "of): leave out a negative example or lower negative_weight")
        return unit_rows(direction)
