"""Which local features an embeddings version carries (no OpenCV here: configs and manifests read it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lookalike.core.errors import ConfigError

KINDS = ("rootsift", "orb")


@dataclass(frozen=True)
class FeatureSettings:
    kind: str = "rootsift"
    max_keypoints: int = 256    # the strongest this many are kept: bounds storage and matching time
    image_size: int = 320       # longest side features are extracted at

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ConfigError(f"local features are one of {KINDS}, not {self.kind!r}")
        if self.max_keypoints < 4 or self.image_size < 32:
            raise ConfigError("local features need max_keypoints >= 4 and image_size >= 32")

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "max_keypoints": self.max_keypoints, "image_size": self.image_size}

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> FeatureSettings | None:
        return None if d is None else cls(d["kind"], int(d["max_keypoints"]), int(d["image_size"]))

    @property
    def descriptor_width(self) -> int:
        return 32 if self.kind == "orb" else 128
