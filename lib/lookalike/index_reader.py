"""Open a published index version: every file checked against its manifest sha256 before use."""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from typing import Any

import faiss
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from lookalike.publish import VersionError, open_version, verify_file
from lookalike.search import SearchParams, deserialize, exact_scorer, search
from lookalike.storage import Store


@dataclass
class IndexVersion:
    manifest: dict[str, Any]
    index: faiss.Index
    vectors: np.ndarray      # float16, row = faiss id
    ids: pa.Table            # faiss_id, image_id, uri, content_sha256
    exact: faiss.Index       # the same vectors, for re-scoring shortlists

    @property
    def default_params(self) -> SearchParams:
        return SearchParams(**self.manifest["default_search"])

    def search(self, queries: np.ndarray, k: int, params: SearchParams | None = None):
        if queries.ndim != 2 or queries.shape[1] != self.manifest["dim"]:
            raise ValueError(f"queries have shape {queries.shape}; this index takes vectors of dimension "
                             f"{self.manifest['dim']}")
        return search(self.index, queries, k, params or self.default_params, self.exact)


def load_index_version(store: Store, name: str, version: str | None = None, cache_dir: str | None = None
                       ) -> IndexVersion:
    """Download, verify and open a complete version (LATEST by default). An on-disk (.ivfdata) index is
    saved to cache_dir and memory-mapped; otherwise the index is read into memory."""
    manifest = open_version(store, name, version)
    files = {entry["key"].rsplit("/", 1)[-1]: entry for entry in manifest["files"]}
    blobs = {}
    for filename, entry in files.items():
        data = store.read_bytes(entry["key"])
        verify_file(data, entry)
        blobs[filename] = data
    if "index.ivfdata" in blobs:
        if cache_dir is None:
            raise VersionError("this version keeps its inverted lists on disk: give a cache_dir to map them from")
        target = os.path.join(cache_dir, manifest["version"])
        os.makedirs(target, exist_ok=True)
        for filename in ("index.faiss", "index.ivfdata"):
            with open(os.path.join(target, filename), "wb") as f:
                f.write(blobs[filename])
        # OnDiskInvertedLists maps the .ivfdata itself; adding IO_FLAG_MMAP segfaults the first search (faiss 1.15).
        index = faiss.read_index(os.path.join(target, "index.faiss"), faiss.IO_FLAG_ONDISK_SAME_DIR)
    else:
        index = deserialize(blobs["index.faiss"])
    vectors = np.load(io.BytesIO(blobs["vectors.f16.npy"]), allow_pickle=False)
    ids = pq.read_table(io.BytesIO(blobs["ids.parquet"]))
    if index.ntotal != manifest["ntotal"] or ids.num_rows != manifest["ntotal"]:
        raise VersionError(f"{name}/{manifest['version']}: the index holds {index.ntotal} vectors, ids "
                           f"{ids.num_rows}, the manifest says {manifest['ntotal']}")
    return IndexVersion(manifest, index, vectors, ids, exact_scorer(vectors))
