"""Why a catalogue image matched a query, worked out: the score's parts (the global descriptors' cosine, the
inliers of the geometric fit and the fused score that ranks), the cosine placed among the catalogue's own
nearest-neighbour cosines, and the fit itself. Shared by the HTTP worker, `lookalike explain` and
`Index.explain`."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from lookalike.image.local_features import LocalFeatures
from lookalike.index.reader import IndexVersion
from lookalike.retrieval.calibration import ScoreCalibration
from lookalike.retrieval.embedder import QueryEmbedder
from lookalike.retrieval.explanation import Explanation, Match
from lookalike.retrieval.ids import faiss_ids_of, vectors_of_ids
from lookalike.retrieval.query import HIT_COLUMNS, stored_views
from lookalike.retrieval.verify import VerifySettings, best_fits, fuse
from lookalike.retrieval.views import views_of

MIRROR_VIEW = 1  # an image query's views: itself, then its mirror (retrieval/views.py)


def explain(version: IndexVersion, query: np.ndarray, views: Sequence[LocalFeatures] | None, image_id: str,
            calibration: ScoreCalibration | None, query_width: int | None = None,
            settings: VerifySettings | None = None) -> Explanation:
    """Why catalogue image `image_id` matches a query (its unit vector, and its local features' views where it has
    them). `query_width`: the width of the query's feature picture, which turns the mirror view's keypoints back
    into the query's own orientation."""
    settings = settings or VerifySettings()
    faiss_id = int(faiss_ids_of(version, [image_id])[0])
    query = query / max(float(np.linalg.norm(query)), 1e-12)
    stored = np.asarray(version.vectors[faiss_id], dtype=np.float32)
    cosine = float(np.dot(query, stored / max(float(np.linalg.norm(stored)), 1e-12)))
    inliers, match = None, None
    if version.features is not None and views:
        fit = best_fits(views, version.features.of(np.array([faiss_id])), settings)[0]
        inliers = 0 if fit is None else fit.inliers
        if fit is not None and inliers >= settings.min_inliers:  # a chance fit of a few keypoints is not drawn
            mirrored = fit.view == MIRROR_VIEW and query_width is not None
            query_xy = fit.query_xy.copy()
            if mirrored:  # the mirror's column x is the query's column (width - 1 - x)
                query_xy[:, 0] = query_width - 1 - query_xy[:, 0]
            match = Match(version.features.settings.image_size, mirrored, fit.transform, query_xy, fit.candidate_xy)
    score = cosine if inliers is None else float(fuse(np.array([cosine]), np.array([inliers]), settings)[0])
    row = version.ids.take([int(version.row_of_faiss[faiss_id])]).to_pylist()[0]
    return Explanation(
        image_id, row["uri"], score, cosine, inliers, inliers is not None and inliers >= settings.min_inliers,
        None if calibration is None else calibration.percentile(cosine),
        "" if calibration is None else calibration.describe(cosine),
        {c: v for c, v in row.items() if c not in HIT_COLUMNS}, match)


def explain_image(version: IndexVersion, embedder: QueryEmbedder, data: bytes, image_id: str,
                  calibration: ScoreCalibration | None, settings: VerifySettings | None = None) -> Explanation:
    """Why catalogue image `image_id` matches a query image (its bytes), embedded with the index's model."""
    faiss_ids_of(version, [image_id])  # an unknown candidate fails before the query is embedded
    vector = embedder.embed([data])[0]
    views, width = None, None
    if version.features is not None:
        views, width = views_of(data, version.features.settings, embedder.limits)
    return explain(version, vector, views, image_id, calibration, width, settings)


def explain_id(version: IndexVersion, query_id: str, image_id: str, calibration: ScoreCalibration | None,
               settings: VerifySettings | None = None) -> Explanation:
    """Why catalogue image `image_id` matches catalogue image `query_id` (its stored vector and features)."""
    faiss_ids_of(version, [image_id])
    vectors, faiss_ids = vectors_of_ids(version, [query_id])
    views = stored_views(version, faiss_ids)[0] if version.features is not None else None
    return explain(version, vectors[0], views, image_id, calibration, None, settings)
