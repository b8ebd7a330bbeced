"""An index version's local features: the source embeddings version's features tables laid out by faiss id in
three plain .npy files (offsets, positions, descriptors), so query workers map them and read a shortlist's
keypoints without parsing anything. Written by the build, streamed part by part (the driver holds one part at a
time, never the catalogue's features), listed in the manifest with their sha256 like every file of a version.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from lookalike.core.layout import IndexLayout, features_part_of
from lookalike.core.store import Store
from lookalike.embed.versions import EmbeddingsVersion
from lookalike.image.feature_spec import FeatureSettings
from lookalike.image.local_features import LocalFeatures
from lookalike.index import publish

OFFSETS_FILE, XY_FILE, DESCRIPTORS_FILE = "features.offsets.npy", "features.xy.npy", "features.descriptors.npy"
FEATURE_FILES = (OFFSETS_FILE, XY_FILE, DESCRIPTORS_FILE)


@dataclass(frozen=True)
class VersionFeatures:
    settings: FeatureSettings
    offsets: np.ndarray      # (faiss ids + 1,) int64: keypoints of faiss id f are rows offsets[f]:offsets[f + 1]
    xy: np.ndarray           # (keypoints, 2) float32
    descriptors: np.ndarray  # (keypoints, width) float16 or uint8

    def of(self, faiss_ids: np.ndarray) -> list[LocalFeatures | None]:
        out: list[LocalFeatures | None] = []
        for f in np.asarray(faiss_ids).tolist():
            if f < 0 or f + 1 >= len(self.offsets):
                out.append(None)
                continue
            lo, hi = int(self.offsets[f]), int(self.offsets[f + 1])
            out.append(LocalFeatures(np.asarray(self.xy[lo:hi]), np.asarray(self.descriptors[lo:hi])))
        return out


def read_features_part(store: Store, key: str, settings: FeatureSettings) -> list[LocalFeatures]:
    """One features part (row for row with its embeddings part) as LocalFeatures."""
    table = store.read_parquet(key, ["keypoints", "xy", "descriptors"])
    dtype = np.uint8 if settings.kind == "orb" else np.float16
    return [LocalFeatures(np.frombuffer(xy, dtype="<f4").reshape(n, 2),
                          np.frombuffer(d, dtype=dtype).reshape(n, settings.descriptor_width))
            for n, xy, d in zip(table["keypoints"].to_pylist(), table["xy"].to_pylist(),
                                table["descriptors"].to_pylist(), strict=True)]


def write_version_features(store: Store, layout: IndexLayout, source: EmbeddingsVersion, parts: tuple[str, ...],
                           row_to_faiss: np.ndarray, tmp: str) -> list[dict[str, Any]]:
    """The three files for a version whose rows (over `parts`, in order) have these faiss ids; [] when the
    source has no local features."""
    settings = source.local_features
    if settings is None:
        return []
    keys = [features_part_of(p) for p in parts]
    counts = np.zeros(int(row_to_faiss.max(initial=-1)) + 1, dtype=np.int64)
    start = 0
    for key in keys:  # first pass: sizes only
        n = store.read_parquet(key, ["keypoints"])["keypoints"].to_numpy()
        counts[row_to_faiss[start:start + len(n)]] = n
        start += len(n)
    offsets = np.concatenate([[0], np.cumsum(counts)])
    total = int(offsets[-1])
    paths = {name: os.path.join(tmp, name) for name in FEATURE_FILES}
    np.save(paths[OFFSETS_FILE], offsets)
    dtype = np.uint8 if settings.kind == "orb" else np.float16
    if total == 0:  # nothing to map: images without a single keypoint (blank, tiny)
        np.save(paths[XY_FILE], np.zeros((0, 2), np.float32))
        np.save(paths[DESCRIPTORS_FILE], np.zeros((0, settings.descriptor_width), dtype))
        return [publish.upload_file(store, layout.key(name), paths[name]) for name in FEATURE_FILES]
    xy = np.lib.format.open_memmap(paths[XY_FILE], mode="w+", dtype=np.float32, shape=(total, 2))
    descriptors = np.lib.format.open_memmap(paths[DESCRIPTORS_FILE], mode="w+", dtype=dtype,
                                            shape=(total, settings.descriptor_width))
    start = 0
    for key in keys:  # second pass: each part's keypoints into place
        table = store.read_parquet(key, ["keypoints", "xy", "descriptors"])
        for f, n, raw_xy, raw_d in zip(row_to_faiss[start:start + table.num_rows].tolist(),
                                       table["keypoints"].to_pylist(), table["xy"].to_pylist(),
                                       table["descriptors"].to_pylist(), strict=True):
            lo = int(offsets[f])
            xy[lo:lo + n] = np.frombuffer(raw_xy, dtype="<f4").reshape(n, 2)
            descriptors[lo:lo + n] = np.frombuffer(raw_d, dtype=dtype).reshape(n, settings.descriptor_width)
        start += table.num_rows
    xy.flush()
    descriptors.flush()
    del xy, descriptors
    return [publish.upload_file(store, layout.key(name), paths[name]) for name in FEATURE_FILES]


def write_shard_features(dest: Store, layout: IndexLayout, features: VersionFeatures | None,
                         source_ids: np.ndarray, tmp: str) -> list[dict[str, Any]]:
    """An exported shard's features: local id i holds the keypoints of source faiss id source_ids[i]."""
    if features is None:
        return []
    counts = features.offsets[source_ids + 1] - features.offsets[source_ids]
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    xy = np.zeros((int(offsets[-1]), 2), np.float32)
    descriptors = np.zeros((int(offsets[-1]), features.descriptors.shape[1]), features.descriptors.dtype)
    for i, g in enumerate(source_ids.tolist()):
        lo, hi = int(features.offsets[g]), int(features.offsets[g + 1])
        xy[offsets[i]:offsets[i + 1]] = features.xy[lo:hi]
        descriptors[offsets[i]:offsets[i + 1]] = features.descriptors[lo:hi]
    files = []
    for name, array in ((OFFSETS_FILE, offsets), (XY_FILE, xy), (DESCRIPTORS_FILE, descriptors)):
        path = os.path.join(tmp, f"shard-{name}")
        np.save(path, array)
        files.append(publish.upload_file(dest, layout.key(name), path))
    return files


def load_version_features(local: str, manifest: dict[str, Any], mmap: bool = True) -> VersionFeatures | None:
    settings = FeatureSettings.from_dict(manifest.get("local_features"))
    if settings is None:
        return None
    mode = "r" if mmap else None
    return VersionFeatures(settings, *(np.load(os.path.join(local, name), mmap_mode=mode, allow_pickle=False)
                                       for name in FEATURE_FILES))
