"""PCA-whitening learned on a catalogue's own embeddings: learned once from an embeddings version, stored as a
small .npz in the store, applied by the model after pooling (then L2 again), and part of the fingerprint."""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from lookalike.embeddings import EmbeddingsVersion, read_vectors
from lookalike.storage import Store

# Whitening divides each principal direction by the square root of its eigenvalue (eigen_power -1/2): the
# directions a backbone's features spread along most, which say least about identity, stop dominating
# distances (Jégou & Chum, ECCV 2012; measured on the logo benchmark at 320 px: +0.047 P@1 and +0.055 mAP at
# 512 d, bench/quality.py).
EIGEN_POWER = -0.5


class WhiteningError(ValueError):
    """A whitening cannot be learned or does not fit the model; the message says what would."""


@dataclass(frozen=True)
class Whitening:
    """y = normalise(projection @ x + bias): faiss PCAMatrix's A and b."""

    projection: np.ndarray  # (dim_out, dim_in) float32
    bias: np.ndarray        # (dim_out,) float32

    @property
    def dim_in(self) -> int:
        return self.projection.shape[1]

    @property
    def dim_out(self) -> int:
        return self.projection.shape[0]

    def apply(self, vectors: np.ndarray) -> np.ndarray:
        out = vectors.astype(np.float32) @ self.projection.T + self.bias
        return out / np.linalg.norm(out, axis=1, keepdims=True)

    def to_bytes(self) -> bytes:
        buf = io.BytesIO()
        np.savez(buf, projection=self.projection, bias=self.bias)
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes, where: str) -> Whitening:
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as f:
                projection, bias = f["projection"].astype(np.float32), f["bias"].astype(np.float32)
        except Exception as e:
            raise WhiteningError(f"{where} is not a whitening written by `lookalike whiten`: {e}") from e
        if projection.ndim != 2 or bias.shape != (projection.shape[0],):
            raise WhiteningError(f"{where}: projection {projection.shape} and bias {bias.shape} do not fit")
        return cls(projection, bias)


def learn(vectors: np.ndarray, dim: int) -> Whitening:
    """PCA with eigenvalue^-1/2 scaling to `dim` dimensions, learned on the rows of `vectors`."""
    import faiss
    n, d = vectors.shape
    if not 1 <= dim <= d:
        raise WhiteningError(f"whitening dimension {dim}: give 1..{d} (the embeddings' dimension)")
    if n <= dim:
        raise WhiteningError(f"{n} vectors cannot whiten to {dim} dimensions: learn it from more images than "
                             "dimensions (ideally 10× more), or give a smaller --dim")
    pca = faiss.PCAMatrix(d, dim, EIGEN_POWER)
    pca.train(np.ascontiguousarray(vectors, dtype=np.float32))
    projection = faiss.vector_to_array(pca.A).reshape(dim, d).astype(np.float32)
    bias = faiss.vector_to_array(pca.b).astype(np.float32)
    return Whitening(projection, bias)


def sample_vectors(version: EmbeddingsVersion, size: int, seed: int = 0) -> np.ndarray:
    """A uniformly random sample of the version's vectors (never the first rows), read part by part."""
    rows = [f["rows"] for f in version.manifest["files"]["embeddings"]]
    total = sum(rows)
    chosen = np.sort(np.random.default_rng(seed).choice(total, min(size, total), replace=False))
    out, start = [], 0
    for key, count in zip(version.parts, rows, strict=True):
        mine = chosen[(chosen >= start) & (chosen < start + count)] - start
        if len(mine):
            out.append(read_vectors(version.layout.store, key)[mine])
        start += count
    return np.concatenate(out) if out else np.zeros((0, version.dim), np.float32)


PREFIX = "whitening"  # STORE/whitening/<fingerprint>-<dim>d-<sha12>.npz


def key_stem(fingerprint_id: str, dim: int) -> str:
    """How the whitenings learned for one model and output size start their names (several may exist)."""
    return f"{fingerprint_id}-{dim}d-"


def learn_from_version(store: Store, version: EmbeddingsVersion, dim: int, sample: int = 200_000,
                       seed: int = 0) -> tuple[str, Whitening]:
    """Learn from a version and store the result under whitening/, named by its content; returns its URI."""
    if version.manifest["fingerprint"].get("whitening"):
        raise WhiteningError(f"{version.layout.prefix} is already whitened: learn from the unwhitened embeddings")
    whitening = learn(sample_vectors(version, sample, seed), dim)
    data = whitening.to_bytes()
    key = f"{PREFIX}/{key_stem(version.layout.fingerprint_id, dim)}{hashlib.sha256(data).hexdigest()[:12]}.npz"
    store.write_bytes(key, data)
    return store.child_url(key), whitening


class WhiteningHead(nn.Module):
    """The whitening as the model's last layer (it runs where the model runs, GPU included), then L2."""

    def __init__(self, whitening: Whitening):
        super().__init__()
        self.linear = nn.Linear(whitening.dim_in, whitening.dim_out)
        with torch.no_grad():
            self.linear.weight.copy_(torch.from_numpy(whitening.projection))
            self.linear.bias.copy_(torch.from_numpy(whitening.bias))

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.normalize(self.linear(pooled.float()), dim=-1)
