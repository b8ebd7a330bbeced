"""DeViSE (Frome et al. 2013): a linear map from the visual embedding into the text encoder's space, trained so
that an icon lands near the text vector of its name (dev/words_training.py, bench/text_search.py). The shipped
map lives in model/artefacts/ with its model card; its sha256 is part of the word space's fingerprint. A map
trained with the backbone (`lookalike train --objective words`) sits beside those weights instead."""

from __future__ import annotations

import hashlib
import io
import json
import posixpath
from dataclasses import dataclass
from importlib import resources
from typing import Any

import numpy as np
import torch
from torch import nn

from lookalike.core.store import read_url
from lookalike.model.cards import model_card
from lookalike.model.pooling import GeM
from lookalike.model.spec import ModelError, ModelSpec

ARTEFACT = "devise-lite0-minilm.pt"   # fp16 state dict of DeViSEHead.projection, plus the vocabulary
CARD = "devise-lite0-minilm.json"     # how it was made and what it measured


class DeViSEHead(nn.Module):
    """(B, C, H, W) backbone features → GeM → L2 → linear map → L2: a vector of the text encoder's space."""

    def __init__(self, projection: nn.Linear, vocabulary: list[str], vocabulary_vectors: torch.Tensor,
                 gem_p: float = 3.0):
        super().__init__()
        self.pooling = GeM(p=gem_p)
        self.projection = projection
        self.vocabulary = vocabulary
        self.register_buffer("vocabulary_vectors", vocabulary_vectors.float())

    def tags(self, vectors: torch.Tensor, k: int) -> list[list[tuple[str, float]]]:
        """The k vocabulary phrases nearest each word-space vector, with their cosines."""
        return nearest_words(vectors, self.vocabulary_vectors, self.vocabulary, k)

    def embed_visual(self, pooled: torch.Tensor) -> torch.Tensor:
        """Already pooled visual vectors (B, C) → word-space vectors: what training optimises."""
        return nn.functional.normalize(self.projection(nn.functional.normalize(pooled.float(), dim=-1)), dim=-1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.embed_visual(self.pooling(features))


@dataclass(frozen=True)
class DeViSEArtefact:
    state: dict[str, torch.Tensor]
    vocabulary: list[str]        # the training phrases and ImageNet's class names: an image's tags
    vocabulary_vectors: torch.Tensor
    sha256: str
    card: dict[str, Any]

    def head(self, visual_dim: int, text_dim: int) -> DeViSEHead:
        weight = self.state["weight"]
        if tuple(weight.shape) != (text_dim, visual_dim):
            raise ModelError(f"the shipped word-space map takes {weight.shape[1]}-d visual vectors to "
                             f"{weight.shape[0]}-d text ones; this model makes {visual_dim}-d and the text encoder "
                             f"{text_dim}-d: use --space conse for other backbones")
        projection = nn.Linear(visual_dim, text_dim)
        projection.load_state_dict({k: v.float() for k, v in self.state.items()})
        return DeViSEHead(projection, self.vocabulary, self.vocabulary_vectors).eval()


def artefact_bytes(projection: nn.Linear, vocabulary: list[str], vocabulary_vectors: np.ndarray) -> bytes:
    """The map as fp16 with its tag vocabulary and their text vectors."""
    buffer = io.BytesIO()
    torch.save({"state": {k: v.detach().half() for k, v in projection.state_dict().items()},
                "vocabulary": vocabulary, "vocabulary_vectors": torch.from_numpy(vocabulary_vectors).half()},
               buffer)
    return buffer.getvalue()


def save_artefact(path: str, projection: nn.Linear, vocabulary: list[str], vocabulary_vectors: np.ndarray) -> str:
    """The map written to path; returns its sha256."""
    data = artefact_bytes(projection, vocabulary, vocabulary_vectors)
    with open(path, "wb") as f:
        f.write(data)
    return hashlib.sha256(data).hexdigest()


def load_artefact() -> DeViSEArtefact:
    """The shipped map (model/artefacts/)."""
    folder = resources.files("lookalike.model").joinpath("artefacts")
    try:
        data = folder.joinpath(ARTEFACT).read_bytes()
        card = json.loads(folder.joinpath(CARD).read_text())
    except FileNotFoundError as e:
        raise ModelError(f"the shipped word-space map {ARTEFACT} is missing from the package: reinstall lookalike, "
                         "or train one with `lookalike train --objective words`") from e
    return _artefact(data, card)


def words_map_uri(weights_uri: str) -> str:
    """Where a words run's map sits: beside its weights (`best.pt` → `best.words.pt`)."""
    return posixpath.splitext(weights_uri)[0] + ".words.pt"


def load_trained_artefact(spec: ModelSpec) -> DeViSEArtefact:
    """The map trained with the spec's weights (`lookalike train --objective words`), which their card describes."""
    space = (model_card(spec) or {}).get("word_space")
    if not isinstance(space, dict):
        raise ModelError(f"weights {spec.weights_uri} were not trained for words (their model card has no "
                         "word_space): train them with `lookalike train --objective words`, or drop --weights for "
                         "the shipped word space")
    uri = words_map_uri(spec.weights_uri)
    try:
        data = read_url(uri, spec.weights_options or {}, "read the word-space map")
    except FileNotFoundError as e:
        raise ModelError(f"the word-space map {uri} of weights {spec.weights_uri} is missing: keep it beside the "
                         "weights (`lookalike train --out` writes both)") from e
    if hashlib.sha256(data).hexdigest() != space.get("sha256"):
        raise ModelError(f"the word-space map {uri} is not the one trained with weights {spec.weights_uri} (its "
                         "sha256 differs from their card's): copy the run's pair together")
    return _artefact(data, space)


def _artefact(data: bytes, card: dict[str, Any]) -> DeViSEArtefact:
    saved = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    return DeViSEArtefact(saved["state"], list(saved["vocabulary"]), saved["vocabulary_vectors"],
                          hashlib.sha256(data).hexdigest(), card)


def nearest_words(vectors: torch.Tensor, word_vectors: torch.Tensor, words: list[str], k: int
                  ) -> list[list[tuple[str, float]]]:
    """The k words (rows of word_vectors) nearest each vector, with their cosines, best first."""
    scores, rows = (vectors.float() @ word_vectors.float().T).topk(min(k, len(words)), dim=-1)
    return [[(words[r], round(float(s), 4)) for r, s in zip(row_r.tolist(), row_s.tolist(), strict=True)]
            for row_r, row_s in zip(rows, scores, strict=True)]
