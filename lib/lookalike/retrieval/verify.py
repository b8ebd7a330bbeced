"""Geometric verification of a shortlist with local features, and its fusion with the global score.

For each candidate: the query's keypoints matched to the candidate's by Lowe's ratio test, then a RANSAC fit of
a similarity transform (rotation, uniform scale, translation: `cv2.estimateAffinePartial2D`) or a homography;
its inliers say how much of the candidate is the query's content in the same geometry, which global
descriptors cannot. The query's mirror image is verified too (SIFT is not mirror-invariant), and the better of
the two counts. All candidates' descriptors are matched in one matrix product, so 100 candidates cost one
BLAS call plus 100 small RANSAC fits.

Fusion: a candidate with at least `min_inliers` inliers is verified and scores cosine + bonus × min(1,
inliers / saturation); the others keep their cosine. The defaults (6 inliers, bonus 0.4 at 20 inliers) are the
ones bench/verify.py chose on its tune half of the brands; a bonus of 2 or more puts every verified candidate
above every unverified one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from lookalike.image.local_features import LocalFeatures

TRANSFORMS = ("similarity", "homography")


@dataclass(frozen=True)
class VerifySettings:
    ratio: float = 0.8            # Lowe's ratio test on descriptor distances
    reprojection: float = 6.0     # RANSAC inlier threshold, pixels at the extraction size
    min_inliers: int = 6          # fewer: not verified
    saturation: int = 20          # inliers past this add nothing more
    bonus: float = 0.4            # added to a verified candidate's cosine at saturation
    transform: str = "similarity"
    max_scale_change: float = 4.0  # a fit that shrinks or grows the query more than this is not a copy

    def __post_init__(self) -> None:
        if self.transform not in TRANSFORMS:
            raise ValueError(f"transform is one of {TRANSFORMS}, not {self.transform!r}")
        if not 0 < self.ratio <= 1 or self.min_inliers < 3 or self.saturation < 1:
            raise ValueError("verification needs 0 < ratio <= 1, min_inliers >= 3 and saturation >= 1")


@dataclass(frozen=True)
class Fit:
    """The transform that verified a candidate, and the keypoints it explains: the query's (in its view's
    coordinates) and the candidate's, pixels at the features' extraction size."""
    view: int                 # which of the query's views fitted best (for an image query: 0 itself, 1 its mirror)
    transform: np.ndarray     # (2, 3) similarity or (3, 3) homography, from the view onto the candidate
    query_xy: np.ndarray      # (inliers, 2)
    candidate_xy: np.ndarray  # (inliers, 2)

    @property
    def inliers(self) -> int:
        return len(self.query_xy)


def inlier_counts(query: Sequence[LocalFeatures], candidates: Sequence[LocalFeatures | None],
                  settings: VerifySettings = VerifySettings()) -> np.ndarray:
    """The best inlier count of any of the query's views (the query, its mirror, ...) against each candidate;
    0 for candidates without features."""
    return np.array([0 if fit is None else fit.inliers for fit in best_fits(query, candidates, settings)],
                    dtype=np.int32)


def best_fits(query: Sequence[LocalFeatures], candidates: Sequence[LocalFeatures | None],
              settings: VerifySettings = VerifySettings()) -> list[Fit | None]:
    """For each candidate, the fit of the query's view that explains most of its keypoints: RANSAC runs where a
    view has min_inliers ratio-test matches; None where nothing was fitted (or the candidate has no features)."""
    fits: list[Fit | None] = [None] * len(candidates)
    present = [i for i, c in enumerate(candidates) if c is not None and len(c) >= 3]
    views = [(v, view) for v, view in enumerate(query) if len(view) >= 3]
    if not present or not views:
        return fits
    bounds = np.cumsum([0, *(len(candidates[i]) for i in present)])
    stacked = _as_matrix(np.concatenate([candidates[i].descriptors for i in present]))
    sizes = np.diff(bounds)
    # One product of every view's keypoints against every candidate's, and the ratio test for all candidates
    # at once with reductions over each candidate's columns (per-candidate numpy calls took 2/3 of the time).
    rows = np.cumsum([0, *(len(view) for _, view in views)])
    distances = _distances(_as_matrix(np.concatenate([view.descriptors for _, view in views])), stacked)
    # Lowe's test compares distances; RootSIFT's here are squared, so their threshold is the ratio squared.
    threshold = settings.ratio if stacked.dtype == np.uint8 else settings.ratio ** 2
    for row, (v, view) in enumerate(views):
        keep, best = _ratio_matches(distances[rows[row]:rows[row + 1]], bounds[:-1], sizes, threshold)
        # RANSAC only where enough matches survived: most candidates of a shortlist are not copies.
        for slot in np.flatnonzero(keep.sum(axis=0) >= settings.min_inliers):
            i, matched = present[slot], np.flatnonzero(keep[:, slot])
            src, dst = view.xy[matched], candidates[i].xy[best[matched, slot] - bounds[slot]]
            fitted = _fit(src, dst, settings)
            if fitted is not None and (fits[i] is None or fitted[1].sum() > fits[i].inliers):
                transform, inlier = fitted
                fits[i] = Fit(v, transform, src[inlier], dst[inlier])
    return fits


def _as_matrix(descriptors: np.ndarray) -> np.ndarray:
    """float32 for RootSIFT (float16 matrix products are slow on CPUs), bits as they are for ORB."""
    return descriptors if descriptors.dtype == np.uint8 else descriptors.astype(np.float32)


def fuse(scores: np.ndarray, inliers: np.ndarray, settings: VerifySettings = VerifySettings()) -> np.ndarray:
    verified = inliers >= settings.min_inliers
    return scores + np.where(verified, settings.bonus * np.minimum(1.0, inliers / settings.saturation), 0.0)


def _distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Squared L2 between unit RootSIFT rows (2 - 2 cos), or Hamming between ORB bit strings."""
    if a.dtype == np.uint8:
        bits_a = np.unpackbits(a, axis=1).astype(np.float32)
        bits_b = np.unpackbits(b, axis=1).astype(np.float32)
        return bits_a.sum(1)[:, None] + bits_b.sum(1)[None, :] - 2.0 * bits_a @ bits_b.T
    return 2.0 - 2.0 * (a @ b.T)


def _ratio_matches(distances: np.ndarray, starts: np.ndarray, sizes: np.ndarray, threshold: float
                   ) -> tuple[np.ndarray, np.ndarray]:
    """For one view's distances to all candidates' keypoints (candidate c's columns start at starts[c]): a
    (query keypoints, candidates) mask of the keypoints that match c (best distance below `threshold` times the
    second best, and each other's nearest: a candidate keypoint is matched once), and the matched column."""
    columns = np.arange(distances.shape[1])
    first = np.minimum.reduceat(distances, starts, axis=1)                        # (q, C) best distance
    is_first = distances == np.repeat(first, sizes, axis=1)
    best = np.minimum.reduceat(np.where(is_first, columns, columns[-1] + 1), starts, axis=1)  # its column
    second = np.minimum.reduceat(np.where(columns == np.repeat(best, sizes, axis=1), np.inf, distances), starts,
                                 axis=1)
    nearest_query = np.argmin(distances, axis=0)                                  # (columns,)
    mutual = nearest_query[best] == np.arange(len(distances))[:, None]
    keep = (first < threshold * np.maximum(second, 1e-12)) & mutual & (sizes >= 2)[None, :]
    return keep, best


def _fit(src: np.ndarray, dst: np.ndarray, settings: VerifySettings) -> tuple[np.ndarray, np.ndarray] | None:
    """RANSAC's transform from src onto dst and its inlier mask (bool per pair); None where there is no fit."""
    src, dst = src.reshape(-1, 1, 2), dst.reshape(-1, 1, 2)
    if settings.transform == "homography":
        if len(src) < 4:
            return None
        transform, mask = cv2.findHomography(src, dst, cv2.RANSAC, settings.reprojection, maxIters=500,
                                             confidence=0.99)
    else:
        transform, mask = cv2.estimateAffinePartial2D(src, dst, method=cv2.RANSAC,
                                                      ransacReprojThreshold=settings.reprojection, maxIters=500,
                                                      confidence=0.99)
    if mask is None or transform is None:
        return None
    # A degenerate fit (everything shrunk onto a few points, or blown up) explains chance matches: refused.
    scale = float(np.sqrt(abs(np.linalg.det(transform[:2, :2]))))
    if not 1 / settings.max_scale_change <= scale <= settings.max_scale_change:
        return None
    return transform, mask.ravel().astype(bool)
