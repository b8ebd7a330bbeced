"""One hit of a search, as every search path returns it (in-process, the HTTP worker and router, the client): no
torch or faiss here, so a client reads hits without them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Hit:
    image_id: str
    uri: str
    score: float   # what the hits are ranked by: the cosine, plus the verification bonus where verified
    rank: int      # 1-based
    metadata: dict[str, Any]
    inliers: int | None = None  # geometric verification: keypoints that fit one transform (None: not verified)
    cosine: float = None  # type: ignore[assignment]  # the global descriptors' cosine (not given: the score)
    # The cosine's percentile among the catalogue's nearest-neighbour cosines (retrieval/calibration.py); None
    # where it means nothing (text queries) or the catalogue is too small to calibrate.
    percentile: float | None = None
    colour: float | None = None  # the colours' similarity (0-1), where colour weighed in the ranking

    def __post_init__(self) -> None:
        if self.cosine is None:  # unverified: what ranks is the cosine itself
            object.__setattr__(self, "cosine", self.score)

    def as_dict(self) -> dict[str, Any]:
        out = {"rank": self.rank, "image_id": self.image_id, "uri": self.uri, "score": round(self.score, 6),
               "cosine": round(self.cosine, 6), "metadata": self.metadata}
        if self.inliers is not None:
            out["inliers"] = self.inliers
        if self.percentile is not None:
            out["percentile"] = self.percentile
        if self.colour is not None:
            out["colour"] = self.colour
        return out

    def describe(self) -> str:
        """One line of a ranked list: rank, the score that ranks, the id, and the score's parts when verified."""
        parts = [] if self.inliers is None else [f"cosine {self.cosine:.3f}", f"{self.inliers} inliers"]
        if self.percentile is not None:
            parts.append(f"percentile {self.percentile:g}")
        if self.colour is not None:
            parts.append(f"colour {self.colour:.2f}")
        return f"{self.rank:3d}  {self.score:.3f}  {self.image_id}" + (f"  ({', '.join(parts)})" if parts else "")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Hit:
        """A hit as the HTTP API writes it (as_dict)."""
        verified = d.get("inliers")
        percentile, colour = d.get("percentile"), d.get("colour")
        return cls(d["image_id"], d["uri"], float(d["score"]), int(d["rank"]), dict(d.get("metadata") or {}),
                   verified, float(d["cosine"]) if "cosine" in d else None,
                   None if percentile is None else float(percentile), None if colour is None else float(colour))
