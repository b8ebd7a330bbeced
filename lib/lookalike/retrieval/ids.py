"""Catalogue images by id: their faiss ids, stored vectors and uris in an index version, and, for an id that is not
there, what ids look like and which ones come close."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from lookalike.index.reader import IndexVersion
from lookalike.retrieval.limits import QueryError

SUGGESTIONS = 3


class UnknownImageIds(QueryError):
    def __init__(self, missing: list[str], version: str, hint: str = ""):
        shown = ", ".join(repr(m) for m in missing[:5]) + (" …" if len(missing) > 5 else "")
        super().__init__(f"{len(missing)} image id(s) not in index version {version}: {shown}" + hint)
        self.missing = missing


def faiss_ids_of(version: IndexVersion, image_ids: Sequence[str]) -> np.ndarray:
    """The faiss ids of catalogue images; unknown ids raise UnknownImageIds."""
    faiss_ids = [version.faiss_id_of(i) for i in image_ids]
    missing = [i for i, f in zip(image_ids, faiss_ids, strict=True) if f is None]
    if missing:
        raise UnknownImageIds(missing, version.version, id_hint(version, missing[0]))
    return np.asarray(faiss_ids, dtype=np.int64)


def id_hint(version: IndexVersion, wanted: str) -> str:
    """What the version's ids look like, and up to a few that hold what was asked for (its name without the
    extension, any case): the usual slip is a bare name where the id is a path with its extension."""
    ids = version.ids["image_id"]
    if not len(ids):
        return ""
    stem = wanted.rsplit("/", 1)[-1].rsplit(".", 1)[0] or wanted
    near = ids.filter(pc.match_substring(ids, stem, ignore_case=True)).slice(0, SUGGESTIONS).to_pylist()
    hint = (f". Ids are the images' paths relative to the folder that was indexed, extension included (this "
            f"index has {len(ids):,}, e.g. {ids[0].as_py()!r})")
    return hint + (f"; did you mean {', '.join(map(repr, near))}?" if near else "")


def vectors_of_ids(version: IndexVersion, image_ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """The stored vectors of catalogue images and their faiss ids; unknown ids raise UnknownImageIds."""
    ids = faiss_ids_of(version, image_ids)
    vectors = np.asarray(version.vectors[ids], dtype=np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True), ids


def uris_of_ids(version: IndexVersion, image_ids: Sequence[str]) -> tuple[list[str], np.ndarray]:
    """Where catalogue images are (their uris) and their faiss ids: a query that needs the image itself, not its
    stored vector (class-weighted search re-pools its feature map); unknown ids raise UnknownImageIds."""
    ids = faiss_ids_of(version, image_ids)
    return version.ids["uri"].take(pa.array(version.row_of_faiss[ids])).to_pylist(), ids
