"""A search by examples against a served version: each example's vector (an uploaded image embedded with the
index's model, a catalogue image's stored vector), the one query they make (retrieval/examples.py), the
positives' local features to verify the shortlist against (a candidate that fits any positive is verified), and
the catalogue examples left out of the hits. Shared by the query worker and lookalike.Index."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from lookalike.image.colour import query_colours
from lookalike.image.histogram import mean_histogram
from lookalike.image.local_features import LocalFeatures
from lookalike.index.reader import IndexVersion
from lookalike.model.class_weighting import ClassFocus
from lookalike.retrieval.embedder import QueryEmbedder
from lookalike.retrieval.examples import NEGATIVE_WEIGHT, Examples
from lookalike.retrieval.ids import vectors_of_ids
from lookalike.retrieval.query import stored_colours, stored_views
from lookalike.retrieval.views import query_views


@dataclass(frozen=True)
class ExampleQuery:
    vector: np.ndarray                   # (1, dim) unit
    views: list[list[LocalFeatures]] | None  # the one query's views: every positive's (None: not verified)
    exclude: np.ndarray                      # (1, m) faiss ids of the catalogue examples
    colour: bytes | None = None              # the positives' colours together (where asked)


def example_query(version: IndexVersion, embedder: QueryEmbedder | None, images: Sequence[bytes] = (),
                  image_ids: Sequence[str] = (), negative_images: Sequence[bytes] = (),
                  negative_ids: Sequence[str] = (), negative_weight: float = NEGATIVE_WEIGHT,
                  focus: ClassFocus | None = None, verify: bool = True, colours: bool = False) -> ExampleQuery:
    """The query of these examples (uploads already cropped as asked), with the positives' colours together where
    `colours` is asked. `embedder` may be None where every example is a catalogue id and no class weighting is
    asked."""
    def vectors(uploads: Sequence[bytes], ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        rows, faiss_ids = [np.zeros((0, version.dim), np.float32)], np.zeros(0, np.int64)
        if ids:
            if focus is None:
                stored, faiss_ids = vectors_of_ids(version, list(ids))
            else:  # the catalogue images themselves, re-pooled toward the class, as a search by id does
                stored, faiss_ids = embedder.embed_catalogue(version, list(ids), focus)
            rows.append(stored)
        if uploads:
            rows.append(embedder.embed(list(uploads), focus))
        return np.concatenate(rows), faiss_ids

    positives, positive_faiss_ids = vectors(images, image_ids)
    negatives, negative_faiss_ids = vectors(negative_images, negative_ids)
    vector = Examples(positives, negatives, negative_weight).query()
    views = None
    if verify and version.features is not None:
        views = [view for found in stored_views(version, positive_faiss_ids) if found for view in found]
        if images:
            views += [view for pair in query_views(images, version.features.settings, embedder.limits)
                      for view in pair]
        views = [views]
    colour = None
    if colours:
        uploaded = query_colours(list(images), embedder.limits) if images else []
        colour = mean_histogram([*stored_colours(version, positive_faiss_ids), *uploaded])
    return ExampleQuery(vector, views, np.concatenate([positive_faiss_ids, negative_faiss_ids])[None, :], colour)
