"""Queries in a word space: texts as vectors of the text encoder the model's word space was made with, and the
nearest words of image vectors (tags). Shared by the HTTP worker, `lookalike search --text`, `lookalike tag`, the
join's text queries and the Python API."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from lookalike.model.loading import LoadedModel
from lookalike.model.text import load_text_encoder
from lookalike.retrieval.limits import QueryError


def in_word_space(model: LoadedModel) -> bool:
    """Whether the model puts images in the text encoder's space (text search and tags work)."""
    return model.word_space is not None


class WordQueries:
    """Texts and tags with a word-space model; made for another model, it raises QueryError saying what to do."""

    def __init__(self, model: LoadedModel, what: str = "search by text"):
        if not in_word_space(model):
            raise QueryError(f"cannot {what}: this model's vectors are visual, not in a word space; build an "
                             "index of a version embedded with --space words")
        self.model = model

    @property
    def fingerprint_id(self) -> str:
        return self.model.fingerprint_id

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), dim) word-space query vectors, one per text (see TextEncoder.encode_queries)."""
        encoder = load_text_encoder()
        if encoder.fingerprint != self.model.word_space["text_encoder"]:
            raise QueryError(f"the installed text encoder {encoder.fingerprint} is not the one this model's word "
                             f"space was made with ({self.model.word_space['text_encoder']}): install that one")
        return encoder.encode_queries(texts)

    def tags(self, vectors: np.ndarray, k: int) -> list[list[tuple[str, float]]]:
        """The k words of the model's vocabulary nearest each word-space vector, with their cosines."""
        return self.model.module.pooling.tags(torch.from_numpy(vectors), k)
