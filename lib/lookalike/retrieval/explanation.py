"""What explains a match, as every path returns it (in-process, the HTTP worker and router, the client): the
score's parts, the cosine's percentile in the catalogue and the verified fit's keypoint pairs. No torch or faiss
here, so a client reads explanations without them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Match:
    """The geometric fit drawn by a comparison view. Coordinates are pixels of each image resized to the longest
    side `feature_size` (the size local features are extracted at), the query's in its own orientation."""
    feature_size: int
    mirrored: bool            # the query's mirror image is what fitted (the transform maps the mirror)
    transform: np.ndarray     # (2, 3) similarity or (3, 3) homography, query (or its mirror) → candidate
    query_xy: np.ndarray      # (inliers, 2)
    candidate_xy: np.ndarray  # (inliers, 2)

    def as_dict(self) -> dict[str, Any]:
        return {"feature_size": self.feature_size, "mirrored": self.mirrored,
                "transform": np.round(self.transform, 6).tolist(),
                "query_xy": np.round(self.query_xy, 2).tolist(),
                "candidate_xy": np.round(self.candidate_xy, 2).tolist()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Match:
        return cls(int(d["feature_size"]), bool(d["mirrored"]), np.asarray(d["transform"], dtype=np.float64),
                   np.asarray(d["query_xy"], dtype=np.float32).reshape(-1, 2),
                   np.asarray(d["candidate_xy"], dtype=np.float32).reshape(-1, 2))


@dataclass(frozen=True)
class Explanation:
    image_id: str
    uri: str
    score: float              # what a verified search ranks the candidate by: the cosine, plus the bonus if verified
    cosine: float             # the global descriptors' cosine
    inliers: int | None       # keypoints that fit one transform (None: the version or the query has no features)
    verified: bool            # inliers reached the verification's minimum: the score has its bonus
    percentile: float | None  # the cosine's percentile among the catalogue's nearest-neighbour cosines
    reading: str              # that percentile in one sentence
    metadata: dict[str, Any]
    match: Match | None       # the verified fit's keypoints (None: not verified)

    def as_dict(self) -> dict[str, Any]:
        return {"image_id": self.image_id, "uri": self.uri, "score": round(self.score, 6),
                "cosine": round(self.cosine, 6), "inliers": self.inliers, "verified": self.verified,
                "percentile": self.percentile, "reading": self.reading, "metadata": self.metadata,
                "match": None if self.match is None else self.match.as_dict()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Explanation:
        """An explanation as the HTTP API writes it (as_dict)."""
        return cls(d["image_id"], d["uri"], float(d["score"]), float(d["cosine"]), d.get("inliers"),
                   bool(d["verified"]), d.get("percentile"), d.get("reading", ""), dict(d.get("metadata") or {}),
                   None if d.get("match") is None else Match.from_dict(d["match"]))

    def describe(self) -> str:
        """The score's parts in a few lines, as `lookalike explain` prints them."""
        parts = [f"{self.image_id}: score {self.score:.3f} (cosine {self.cosine:.3f}"]
        if self.inliers is None:
            parts[0] += "; not verified: the index has no local features)"
        else:
            parts[0] += (f" + {self.score - self.cosine:.3f} for {self.inliers} inliers)" if self.verified else
                         f"; {self.inliers} inliers: too few to verify)")
        if self.reading:
            parts.append(self.reading)
        if self.match is not None:
            parts.append(f"{self.match.query_xy.shape[0]} keypoint pairs fit one transform"
                         + (" of the query's mirror image" if self.match.mirrored else ""))
        return "\n".join(parts)
