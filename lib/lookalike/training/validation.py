"""How a model is judged on a training set's held-back groups: whole groups chosen by a seeded order (the same
images every time), their drawings embedded, each drawing a leave-one-out query whose relevant answers are the
other drawings of its group. Used by training's validations and by the whitening measurement of a model card."""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import torch
from PIL import Image

from lookalike.batch.metrics import judge_leave_one_out, mean_average_precision, precision_at
from lookalike.image.decode import to_tensor
from lookalike.model.loading import LoadedModel

DEPTH = 100  # ranked neighbours judged per query


def whole_groups(table: pa.Table, max_images: int, seed: int = 0) -> pa.Table:
    """The rows of whole groups, in a seeded order, until the next group would pass max_images."""
    groups = np.asarray(table["group"].to_pylist())
    chosen, count = [], 0
    for g in np.random.default_rng(seed).permutation(np.unique(groups)):
        size = int((groups == g).sum())
        if count + size > max_images:
            break
        chosen.append(g)
        count += size
    return table.take(np.flatnonzero(np.isin(groups, chosen)))


def leave_one_out(vectors: np.ndarray, groups: Sequence[str]) -> dict[str, float]:
    """P@1 and mAP of each row searched against the others (exact inner product)."""
    scores = vectors @ vectors.T
    np.fill_diagonal(scores, -np.inf)
    neighbours = np.argsort(-scores, axis=1)[:, :DEPTH]
    judged = judge_leave_one_out(neighbours, list(groups))
    return {"P@1": round(precision_at(judged, 1), 4), "mAP": round(mean_average_precision(judged), 4)}


def embed_pngs(model: LoadedModel, pngs: list[bytes], batch: int = 64) -> np.ndarray:
    out = []
    for lo in range(0, len(pngs), batch):
        images = [Image.open(io.BytesIO(p)).convert("RGB") for p in pngs[lo:lo + batch]]
        out.append(model.embed_batch(torch.stack([to_tensor(i, model.preprocessing) for i in images])))
    return np.concatenate(out) if out else np.zeros((0, model.dim), np.float32)
