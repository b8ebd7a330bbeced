"""Query images as vectors: images (bytes, or catalogue images read again) embedded with the model an index was
built with, within the worker's byte, pixel and time limits. Shared by the HTTP worker, `lookalike search` and the
Python API. Texts and tags: retrieval.word_queries; a class to weight toward: retrieval.class_focus; local
features: retrieval.views."""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from lookalike.core.deadline import checkpoint
from lookalike.image.budget import DecodeLimits, declared_pixels
from lookalike.image.decode import ImageError, decode, to_tensor
from lookalike.image.read import read_image_bytes
from lookalike.index.reader import IndexVersion
from lookalike.model.class_weighting import ClassFocus
from lookalike.model.loading import LoadedModel
from lookalike.retrieval.ids import uris_of_ids

FORWARD_BATCH = 8  # query images per forward pass, between two checks of the request's deadline


class QueryEmbedder:
    """Image bytes → unit vectors with the model the index was built with (its fingerprint checked by the
    caller). Forward passes are serialised: on a CPU worker concurrent ones only fight over the same cores."""

    def __init__(self, model: LoadedModel, limits: DecodeLimits | None = None,
                 storage_options: Mapping[str, Any] | None = None):
        self.model = model
        self.limits = limits or DecodeLimits()
        self.storage_options = dict(storage_options or {})
        self.device = next(model.module.parameters()).device
        self._lock = threading.Lock()

    @property
    def fingerprint_id(self) -> str:
        return self.model.fingerprint_id

    def embed(self, images: Sequence[bytes], focus: ClassFocus | None = None) -> np.ndarray:
        """(len(images), dim) float32; the first image that cannot be used raises ImageError naming it. focus:
        weighted toward an ImageNet class (retrieval.class_focus)."""
        tensors = []
        for i, data in enumerate(images):
            checkpoint()
            if len(data) > self.limits.max_bytes:
                raise ImageError("read", "too_large", f"image {i}: {len(data):,} bytes, above the limit of "
                                                      f"{self.limits.max_bytes:,}")
            # Held from decoding until the (small) input tensor exists: the full-size pixels live only in there.
            with self.limits.budget.hold(declared_pixels(data)):
                try:
                    decoded = decode(data, self.model.preprocessing.image_size, self.limits.max_pixels)
                except ImageError as e:
                    raise ImageError(e.stage, e.kind, f"image {i}: {e.message}") from e
                tensors.append(to_tensor(decoded.image, self.model.preprocessing))
        batches = []
        for lo in range(0, len(tensors), FORWARD_BATCH):
            checkpoint()
            with self._lock:
                batches.append(self.model.embed_batch(torch.stack(tensors[lo:lo + FORWARD_BATCH]), self.device, focus))
        return np.concatenate(batches)

    def embed_catalogue(self, version: IndexVersion, image_ids: Sequence[str], focus: ClassFocus | None
                        ) -> tuple[np.ndarray, np.ndarray]:
        """Catalogue images embedded again from where the catalogue keeps them (a class-weighted id query needs
        the image, not its stored vector), and their faiss ids; unknown ids raise UnknownImageIds."""
        uris, faiss_ids = uris_of_ids(version, image_ids)
        if not uris:
            return np.zeros((0, self.model.dim), np.float32), faiss_ids
        return self.embed([self.read(u) for u in uris], focus), faiss_ids

    def read(self, uri: str) -> bytes:
        return read_image_bytes(uri, self.storage_options, self.limits.max_bytes)
