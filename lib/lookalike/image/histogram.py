"""Colour histograms as they are stored and compared (image/colour.py makes them): 64 bytes, BINS³ bins of L, a
and b, each 0-255 and summing to about 255. Numpy only: the router and clients handle them too."""

from __future__ import annotations

import base64
import binascii

import numpy as np

from lookalike.core.errors import InputError

BINS = 4             # per axis: L, a, b → 64 bins
SIZE = BINS ** 3     # bytes a histogram takes


def mean_histogram(histograms: list[bytes | None]) -> bytes | None:
    """The colours of several images together (the examples of a query): their histograms' mean; None for none."""
    matrix, present = as_matrix(histograms)
    if not present.any():
        return None
    return np.round(matrix[present].astype(np.float64).mean(axis=0)).astype(np.uint8).tobytes()


def as_text(histogram: bytes | None) -> str | None:
    """A histogram as JSON carries it (base64)."""
    return None if histogram is None else base64.b64encode(histogram).decode()


def from_text(text: str | None) -> bytes | None:
    """A histogram from its base64 text; a text that is not one is refused."""
    if text is None:
        return None
    try:
        value = base64.b64decode(text, validate=True)
    except (ValueError, binascii.Error) as e:
        raise InputError(f"a colour histogram is base64 of {SIZE} bytes: {e}") from e
    if len(value) != SIZE:
        raise InputError(f"a colour histogram is base64 of {SIZE} bytes, not {len(value)}")
    return value


def as_matrix(histograms: list[bytes | None]) -> tuple[np.ndarray, np.ndarray]:
    """Stored histograms as an (n, SIZE) uint8 matrix, and which rows have one (images embedded before colour
    histograms were kept have none)."""
    present = np.array([h is not None and len(h) == SIZE for h in histograms], dtype=bool)
    matrix = np.zeros((len(histograms), SIZE), dtype=np.uint8)
    for i in np.flatnonzero(present):
        matrix[i] = np.frombuffer(histograms[i], dtype=np.uint8)
    return matrix, present


def similarity(query: bytes, candidates: np.ndarray) -> np.ndarray:
    """Histogram intersection of the query's colours with each candidate's: 1 the same colours in the same
    shares, 0 none in common."""
    q = np.frombuffer(query, dtype=np.uint8).astype(np.int32)
    return np.clip(np.minimum(candidates.astype(np.int32), q).sum(axis=1) / 255.0, 0.0, 1.0)
