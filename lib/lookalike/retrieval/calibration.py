"""Scores people can read: a cosine placed among the catalogue's own nearest-neighbour cosines.

A raw cosine means little on its own (0.83 is a near-copy under one model and noise under another): what an
examiner can weigh is how it compares with the catalogue. For a seeded sample of catalogue images, the cosine of
each to its nearest other catalogue image (found at the version's operating point) is kept; a score's percentile
is the share of those sampled images whose nearest neighbour is less similar than it. A hit at the 99th
percentile is closer to the query than almost any two marks of the catalogue are to each other.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from lookalike.index.reader import IndexVersion
from lookalike.retrieval.hit import Hit

SAMPLE = 2_000  # catalogue images whose nearest neighbour is measured (percentiles to about ±1 point)


@dataclass(frozen=True)
class ScoreCalibration:
    nearest: np.ndarray  # sorted cosines of sampled catalogue images to their nearest other catalogue image

    @classmethod
    def of(cls, version: IndexVersion, sample: int = SAMPLE, seed: int = 0) -> ScoreCalibration | None:
        """The version's calibration; None for a catalogue of fewer than two images."""
        live = version.ids["faiss_id"].to_numpy()
        if len(live) < 2:
            return None
        faiss_ids = np.sort(np.random.default_rng(seed).choice(live, min(sample, len(live)), replace=False))
        vectors = np.asarray(version.vectors[faiss_ids], dtype=np.float32)
        vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        # The cosines a plain search returns (query expansion would score expanded queries instead).
        scores, ids = version.search(vectors, 2, replace(version.default_params, expand=0))
        return cls.from_neighbours(faiss_ids, scores, ids)

    @classmethod
    def from_neighbours(cls, sampled: np.ndarray, scores: np.ndarray, ids: np.ndarray) -> ScoreCalibration | None:
        """From each sampled image's two nearest catalogue images (cosines and ids, itself usually first): the
        cosine of the nearest other one (a duplicate may come before the image itself). None where no sampled
        image found another (a search at a low nprobe may find only the image itself)."""
        itself_first = ids[:, 0] == sampled
        other = np.where(itself_first, scores[:, 1], scores[:, 0])
        found = np.where(itself_first, ids[:, 1], ids[:, 0]) >= 0
        return cls(np.sort(other[found]).astype(np.float32)) if found.any() else None

    def percentile(self, cosine: float) -> float:
        """The share (0–100) of sampled catalogue images whose nearest other image is less similar than `cosine`."""
        return round(100.0 * int(np.searchsorted(self.nearest, cosine, side="left")) / len(self.nearest), 1)

    def placed(self, hits: list[list[Hit]]) -> list[list[Hit]]:
        """The hits with their cosines' percentiles."""
        return [[replace(h, percentile=self.percentile(h.cosine)) for h in row] for row in hits]

    def describe(self, cosine: float) -> str:
        p = self.percentile(cosine)
        return (f"cosine {cosine:.3f} is above the nearest-neighbour cosine of {p:g} % of catalogue images (their "
                f"median: {float(np.median(self.nearest)):.3f})")
