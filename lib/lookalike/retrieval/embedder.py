"""Queries as vectors: images (bytes) embedded with the model an index was built with, within the worker's byte,
pixel and time limits; their local features for verification; texts in a word space; tags; a class to weight a
query toward. Shared by the HTTP worker, `lookalike search` and the Python API."""

from __future__ import annotations

import functools
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import torch
from PIL import Image

from lookalike.core.cpus import available_cpus
from lookalike.core.deadline import checkpoint
from lookalike.image.budget import PixelBudget, declared_pixels
from lookalike.image.decode import ImageError, decode, to_tensor
from lookalike.image.feature_spec import FeatureSettings
from lookalike.image.limits import DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS
from lookalike.image.local_features import LocalFeatures, extract, grey, mirrored
from lookalike.image.read import read_image_bytes
from lookalike.index.reader import IndexVersion
from lookalike.model.class_weighting import DEFAULT_STRENGTH, ClassFocus, ClassWeightingError
from lookalike.model.imagenet import imagenet_classifier
from lookalike.model.loading import LoadedModel
from lookalike.model.spec import ModelError
from lookalike.model.text import load_text_encoder
from lookalike.retrieval.ids import uris_of_ids
from lookalike.retrieval.limits import QueryError

FORWARD_BATCH = 8  # query images per forward pass, between two checks of the request's deadline


@functools.cache
def _feature_threads() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max(2, available_cpus()), thread_name_prefix="lookalike-features")


class QueryEmbedder:
    """Image bytes → unit vectors with the model the index was built with (its fingerprint checked by the
    caller). Forward passes are serialised: on a CPU worker concurrent ones only fight over the same cores."""

    def __init__(self, model: LoadedModel, max_bytes: int = DEFAULT_MAX_BYTES,
                 max_pixels: int = DEFAULT_MAX_PIXELS, storage_options: Mapping[str, Any] | None = None,
                 budget: PixelBudget | None = None):
        self.model = model
        self.max_bytes = max_bytes
        self.max_pixels = max_pixels
        self.storage_options = dict(storage_options or {})
        self.budget = budget or PixelBudget(4 * max_pixels)
        self.device = next(model.module.parameters()).device
        self._lock = threading.Lock()

    @property
    def fingerprint_id(self) -> str:
        return self.model.fingerprint_id

    def embed(self, images: Sequence[bytes], focus: ClassFocus | None = None) -> np.ndarray:
        """(len(images), dim) float32; the first image that cannot be used raises ImageError naming it. focus:
        weighted toward an ImageNet class (see focus())."""
        tensors = []
        for i, data in enumerate(images):
            checkpoint()
            if len(data) > self.max_bytes:
                raise ImageError("read", "too_large", f"image {i}: {len(data):,} bytes, above the limit of "
                                                      f"{self.max_bytes:,}")
            # Held from decoding until the (small) input tensor exists: the full-size pixels live only in there.
            with self.budget.hold(declared_pixels(data)):
                try:
                    decoded = decode(data, self.model.preprocessing.image_size, self.max_pixels)
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

    @property
    def class_weighting(self) -> bool:
        """Whether queries can be weighted toward an ImageNet class (a visual model with its classifier)."""
        try:
            return self.focus(0) is not None
        except QueryError:
            return False

    def focus(self, weight_class: str | int | None, strength: float | None = None) -> ClassFocus | None:
        """The ClassFocus of a class-weighted query ("like this image, but weighted toward class C": an ImageNet
        class name or id), or None for a plain one; what cannot be weighted raises QueryError saying why."""
        if weight_class is None:
            if strength is not None:
                raise QueryError("a class weighting strength needs the class to weight toward (weight_class)")
            return None
        if self.word_space:
            raise QueryError("class-weighted search re-weights a visual model's features; this index's vectors "
                             "are in a word space: search a visual index")
        try:
            imagenet_classifier(self.model.module.backbone, "class-weighted search", "search without a class")
            return ClassFocus.of(weight_class, DEFAULT_STRENGTH if strength is None else strength)
        except (ClassWeightingError, ModelError) as e:
            raise QueryError(str(e)) from e

    @property
    def word_space(self) -> bool:
        """Whether the model puts images in the text encoder's space (text search and tags work)."""
        return self.model.word_space is not None

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), dim) word-space query vectors, one per text (see TextEncoder.encode_queries)."""
        self._check_word_space("search by text")
        encoder = load_text_encoder()
        if encoder.fingerprint != self.model.word_space["text_encoder"]:
            raise QueryError(f"the installed text encoder {encoder.fingerprint} is not the one this model's word "
                             f"space was made with ({self.model.word_space['text_encoder']}): install that one")
        return encoder.encode_queries(texts)

    def tags(self, vectors: np.ndarray, k: int) -> list[list[tuple[str, float]]]:
        """The k words of the model's vocabulary nearest each word-space vector, with their cosines."""
        self._check_word_space("tag images")
        return self.model.module.pooling.tags(torch.from_numpy(vectors), k)

    def _check_word_space(self, what: str) -> None:
        if not self.word_space:
            raise QueryError(f"cannot {what}: this model's vectors are visual, not in a word space; build an "
                             "index of a version embedded with --space words")

    def views(self, images: Sequence[bytes], settings: FeatureSettings) -> list[list[LocalFeatures]]:
        """Each image's local features and its mirror's, for geometric verification (the bytes were checked by
        embed()). Each image is decoded within the pixel budget, as embed() does, and only its grey picture at
        the features' size outlives the decode. The views are extracted on threads of their own: OpenCV
        releases the GIL."""
        pictures = []
        for data in images:
            checkpoint()
            with self.budget.hold(declared_pixels(data)):
                small = Image.fromarray(grey(decode(data, settings.image_size, self.max_pixels).image,
                                             settings.image_size), "L")
            pictures += [small, mirrored(small)]
        features = list(_feature_threads().map(lambda picture: extract(picture, settings), pictures))
        return [features[i:i + 2] for i in range(0, len(features), 2)]

    def read(self, uri: str) -> bytes:
        return read_image_bytes(uri, self.storage_options, self.max_bytes)
