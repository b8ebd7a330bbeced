"""Learning a PCA-whitening from a stored embeddings version: a random sample of its vectors, and the result
stored under whitening/, named by its content, for `--whitening URI`."""

from __future__ import annotations

import hashlib

import numpy as np

from lookalike.core.layout import whitening_key
from lookalike.core.store import Store
from lookalike.embed.versions import EmbeddingsVersion
from lookalike.model.whitening import Whitening, WhiteningError, learn


def sample_vectors(version: EmbeddingsVersion, size: int, seed: int = 0) -> np.ndarray:
    """A uniformly random sample of the version's vectors (never the first rows), read part by part."""
    total = sum(version.part_rows)
    return version.read_rows(np.sort(np.random.default_rng(seed).choice(total, min(size, total), replace=False)))


def learn_from_version(store: Store, version: EmbeddingsVersion, dim: int, sample: int = 200_000,
                       seed: int = 0) -> tuple[str, Whitening]:
    """Learn from a version and store the result under whitening/, named by its content; returns its URI."""
    if version.manifest["fingerprint"].get("whitening"):
        raise WhiteningError(f"{version.layout.prefix} is already whitened: learn from the unwhitened embeddings")
    whitening = learn(sample_vectors(version, sample, seed), dim)
    data = whitening.to_bytes()
    key = whitening_key(version.layout.fingerprint_id, dim, hashlib.sha256(data).hexdigest()[:12])
    store.write_bytes(key, data)
    return store.child_url(key), whitening
