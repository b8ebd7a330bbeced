"""A handful of images to vectors in memory, with no store, no index and no Spark: the model the embed job runs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from lookalike.api.images import ImageLike, image_bytes, images_of
from lookalike.model.loading import cached_model, pick_device
from lookalike.model.spec import ModelSpec
from lookalike.retrieval.embedder import QueryEmbedder


def embed_images(images: ImageLike | Sequence[ImageLike], model: str | ModelSpec | None = None, *,
                 device: str | None = None, storage_options: Mapping[str, Any] | None = None) -> np.ndarray:
    """Images (paths or URIs, bytes, PIL images) as unit vectors, one row each: (n, dim) float32.

    `model`: a model name (default: the bundled `efficientnet_lite0_marks`) or a ModelSpec with its pooling,
    input size, whitening, scales or space. The vectors are those `lookalike embed` writes for the same model,
    so they can be searched in an index of its embeddings. `device`: "cpu", "cuda", ... (default: a GPU if one is
    visible). An image that cannot be used raises ImageError naming it and why.
    """
    spec = model if isinstance(model, ModelSpec) else ModelSpec(name=model)
    loaded = cached_model(spec, str(device or pick_device()))
    embedder = QueryEmbedder(loaded, storage_options=storage_options)
    listed, _ = images_of(images)
    return embedder.embed([image_bytes(i, embedder.read) for i in listed])
