"""The bytes of an index version's files: on a query worker's disk, and in a build's scratch folder while it is
made. deploy/SCALING.md sizes the shipped volumes with these (deploy/pod_plan.py), and a build checks its scratch
space against them before it starts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lookalike.core.layout import VECTORS_FILE

IDS_BYTES_PER_ROW = 16   # ids.parquet, rounded up from what 10M rows take (deploy/SCALING.md) for long ids
FEATURES_BYTES_PER_LOGO = 17_600  # RootSIFT on logos, on average: bench/verify.py's record (bytes_per_image)


@dataclass(frozen=True)
class VersionFootprint:
    index: int       # index.faiss (+ index.ivfdata when its lists are merged on disk)
    vectors: int     # vectors.f16.npy, the re-scoring vectors
    ids: int         # ids.parquet
    features: int    # the keypoints of verification (0 without local features)

    @classmethod
    def of(cls, n: int, d: int, index_bytes_per_vector: float, features: int) -> VersionFootprint:
        return cls(int(n * index_bytes_per_vector), n * d * 2, n * IDS_BYTES_PER_ROW, features)

    @property
    def files(self) -> int:
        return self.index + self.vectors + self.ids + self.features

    @property
    def build_scratch(self) -> int:
        """A build's local files: the version's files and the exact scorer of the recall sweep (fp16 rows, as
        large as the vectors)."""
        return self.files + self.vectors

    @property
    def cached(self) -> int:
        """One version in a query worker's cache: its files and the exact scorer the worker writes beside them."""
        return self.files + self.vectors

    @property
    def worker_cache(self) -> int:
        """A query worker's cache: the version it serves and the one replacing it (an older one stays only while
        the disk has room for the coming version beside it)."""
        return 2 * self.cached


def cached_bytes(files: list[dict[str, Any]]) -> int:
    """A published version's bytes in a query worker's cache, from its manifest's files: theirs, and the exact
    scorer the worker writes beside them (fp16 rows, as large as the re-scoring vectors)."""
    return sum(int(f["bytes"]) * (2 if f["key"].endswith(VECTORS_FILE) else 1) for f in files)
