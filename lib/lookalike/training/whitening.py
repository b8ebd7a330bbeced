"""Learned whitening from a training set (model/whitening.py `learn_from_pairs`): the train split's drawings (and,
with `copies`, synthetic copies of each) embedded by a model, every two images of one brand or concept a matching
pair, the result stored under whitening/ like a PCA-whitening, for `--whitening URI`. The head-only alternative
to fine-tuning the backbone, and a layer on top of it."""

from __future__ import annotations

import hashlib
import io
import itertools
import random
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from lookalike.core.errors import ConfigError
from lookalike.core.layout import whitening_key
from lookalike.core.store import Store
from lookalike.model.loading import load_model, pick_device
from lookalike.model.spec import ModelSpec
from lookalike.model.whitening import Whitening, learn_from_pairs
from lookalike.training.augment import synthetic_copy
from lookalike.training.data import read_split
from lookalike.training.validation import embed_pngs

# A large group (a concept drawn by ten sets) would otherwise outweigh many two-drawing brands: g·(g−1)/2 pairs.
MAX_PAIRS_PER_GROUP = 28


@dataclass(frozen=True)
class PairWhiteningConfig:
    store: str
    data: str = "default"                # the training set (training-data/<name>)
    model: ModelSpec = field(default_factory=ModelSpec)
    dim: int = 512
    split: str = "train"
    copies: int = 0                      # synthetic copies of each drawing, in its group
    seed: int = 0
    storage_options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        if self.model.whitening_uri or self.model.space != "visual":
            raise ConfigError("learn a whitening for a visual model without one: drop --whitening and --space")
        if self.copies < 0:
            raise ConfigError(f"copies must be >= 0, got {self.copies}")


def matching_pairs(groups: list[str], sources: list[int], seed: int = 0) -> np.ndarray:
    """(n, 2) row indices of matching pairs: two drawings of one group (at most MAX_PAIRS_PER_GROUP a group, chosen
    at random), and each synthetic copy with the drawing it was made from (`sources[i]`: row i's drawing)."""
    rng = np.random.default_rng(seed)
    drawings: dict[str, list[int]] = {}
    pairs: list[tuple[int, int]] = []
    for i, (group, source) in enumerate(zip(groups, sources, strict=True)):
        if source == i:
            drawings.setdefault(group, []).append(i)
        else:
            pairs.append((source, i))
    for members in drawings.values():
        group_pairs = list(itertools.combinations(members, 2))
        if len(group_pairs) > MAX_PAIRS_PER_GROUP:
            group_pairs = [group_pairs[i] for i in rng.choice(len(group_pairs), MAX_PAIRS_PER_GROUP, replace=False)]
        pairs.extend(group_pairs)
    return np.asarray(pairs, dtype=np.int64).reshape(-1, 2)


def with_copies(pngs: list[bytes], groups: list[str], copies: int, seed: int
                ) -> tuple[list[bytes], list[str], list[int]]:
    """The drawings, then `copies` synthetic copies of each (PNG) in its group; and each row's drawing."""
    rng = random.Random(seed)
    out_pngs, out_groups, sources = list(pngs), list(groups), list(range(len(pngs)))
    for source, (png, group) in enumerate(zip(pngs, groups, strict=True)) if copies else ():
        image = Image.open(io.BytesIO(png)).convert("RGB")
        for _ in range(copies):
            buf = io.BytesIO()
            synthetic_copy(image, rng).save(buf, "PNG")
            out_pngs.append(buf.getvalue())
            out_groups.append(group)
            sources.append(source)
    return out_pngs, out_groups, sources


def run(config: PairWhiteningConfig) -> tuple[str, Whitening, dict[str, Any]]:
    """Learn, store under whitening/ (named by the model's fingerprint, the dimension and the content) and return
    the URI, the whitening and what it was learned from."""
    store = Store(config.store, config.storage_options)
    table = read_split(store, config.data, config.split)
    model = load_model(config.model, pick_device())
    pngs, groups, sources = with_copies(table["png"].to_pylist(), table["group"].to_pylist(), config.copies,
                                        config.seed)
    vectors = embed_pngs(model, pngs)
    pairs = matching_pairs(groups, sources, config.seed)
    whitening = learn_from_pairs(vectors, pairs, config.dim)
    data = whitening.to_bytes()
    key = whitening_key(model.fingerprint_id, config.dim, hashlib.sha256(data).hexdigest()[:12])
    store.write_bytes(key, data)
    return store.child_url(key), whitening, {
        "training_set": config.data, "split": config.split, "images": len(groups), "copies": config.copies,
        "groups": len(set(groups)), "pairs": len(pairs), "model": model.fingerprint_id}
