"""Whitening: PCA-whitening learned from a matrix of a catalogue's own vectors, or learned whitening from the
matching pairs of a labelled training set; kept as a small .npz, applied by the model after pooling (then L2
again) as its last layer, and part of the fingerprint. Learning it from a stored embeddings version is
embed/whitening.py, from a training set training/whitening.py."""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from lookalike.core.errors import InputError

# Whitening divides each principal direction by the square root of its eigenvalue (eigen_power -1/2): the
# directions a backbone's features spread along most, which say least about identity, stop dominating
# distances (Jégou & Chum, ECCV 2012; what it does on the logo benchmark: bench/quality.py's record).
EIGEN_POWER = -0.5


class WhiteningError(InputError):
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
    _check_dim(dim, d)
    if n <= dim:
        raise WhiteningError(f"{n} vectors cannot whiten to {dim} dimensions: learn it from more images than "
                             "dimensions (ideally 10× more), or give a smaller --dim")
    pca = faiss.PCAMatrix(d, dim, EIGEN_POWER)
    pca.train(np.ascontiguousarray(vectors, dtype=np.float32))
    projection = faiss.vector_to_array(pca.A).reshape(dim, d).astype(np.float32)
    bias = faiss.vector_to_array(pca.b).astype(np.float32)
    return Whitening(projection, bias)


def learn_from_pairs(vectors: np.ndarray, pairs: np.ndarray, dim: int) -> Whitening:
    """Learned whitening (Radenović, Tolias & Chum, TPAMI 2018, "Lw"): whiten by the covariance of the differences
    between matching pairs (rows i, j of `vectors` that show the same thing), so that what varies between two
    drawings of one mark counts least, then rotate onto the principal directions of all vectors in that space and
    keep the first `dim`. Unlike PCA-whitening it needs labels: the pairs of a training set's groups."""
    d = vectors.shape[1]
    _check_dim(dim, d)
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    if len(pairs) <= d:
        raise WhiteningError(f"{len(pairs)} matching pairs cannot whiten {d}-d vectors: learn it from more pairs "
                             "than dimensions (ideally 10× more)")
    x = vectors.astype(np.float64)
    mean = x[pairs[:, 0]].mean(axis=0)
    diff = x[pairs[:, 0]] - x[pairs[:, 1]]
    within = diff.T @ diff / len(diff)
    # A ridge of 1e-6 of the mean variance keeps directions no pair varies along from blowing up.
    within += np.eye(d) * 1e-6 * np.trace(within) / d
    to_white = np.linalg.inv(np.linalg.cholesky(within))  # L⁻¹ with L Lᵀ = within: whitened differences
    spread = (x - mean) @ to_white.T
    eigenvalues, eigenvectors = np.linalg.eigh(spread.T @ spread)
    order = np.argsort(eigenvalues)[::-1][:dim]
    projection = (eigenvectors[:, order].T @ to_white).astype(np.float32)
    return Whitening(projection, (-projection.astype(np.float64) @ mean).astype(np.float32))


def _check_dim(dim: int, d: int) -> None:
    if not 1 <= dim <= d:
        raise WhiteningError(f"whitening dimension {dim}: give 1..{d} (the embeddings' dimension)")


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
