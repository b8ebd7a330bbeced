"""Open a published index version from a local cache: every file checked against its manifest sha256 on
arrival and again whenever the version is opened, then memory-mapped so worker processes share the pages."""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from typing import Any

import faiss
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from lookalike.core.errors import InputError
from lookalike.core.layout import IDS_FILE, INDEX_FILE, IVFDATA_FILE, VECTORS_FILE
from lookalike.core.progress import progress
from lookalike.core.store import Store
from lookalike.index.features import VersionFeatures, load_version_features
from lookalike.index.local_cache import default_cache_dir
from lookalike.index.publish import VersionError, read_index_manifest
from lookalike.index.search import SearchParams, exact_scorer, search, write_exact_scorer

log = logging.getLogger(__name__)

LOCAL_MANIFEST = "manifest.json"  # written last into a cached version: a folder without it is incomplete
EXACT_FILE = "exact.faiss"        # derived locally from vectors.f16.npy, mapped instead of rebuilt each time


@dataclass
class IndexVersion:
    manifest: dict[str, Any]
    index: faiss.Index
    vectors: np.ndarray      # float16, row = faiss id (memory-mapped)
    ids: pa.Table            # faiss_id, image_id, uri, content_sha256, [width, height, metadata...]
    exact: faiss.Index       # the same vectors, for re-scoring shortlists
    local_dir: str | None = None
    features: VersionFeatures | None = None  # local features by faiss id, where the source version had them
    _row_of_faiss: np.ndarray | None = field(default=None, repr=False)
    _faiss_of_image: dict[str, int] | None = field(default=None, repr=False)

    @property
    def version(self) -> str:
        return self.manifest["version"]

    @property
    def dim(self) -> int:
        return int(self.manifest["dim"])

    @property
    def default_params(self) -> SearchParams:
        return SearchParams(**self.manifest["default_search"])

    def search(self, queries: np.ndarray, k: int, params: SearchParams | None = None):
        if queries.ndim != 2 or queries.shape[1] != self.dim:
            raise InputError(f"queries have shape {queries.shape}; this index takes vectors of dimension {self.dim}")
        return search(self.index, queries, k, params or self.default_params, self.exact)

    @property
    def row_of_faiss(self) -> np.ndarray:
        """faiss id → row of `ids` (-1 for ids freed by incremental updates)."""
        if self._row_of_faiss is None:
            faiss_ids = self.ids["faiss_id"].to_numpy()
            rows = np.full(int(faiss_ids.max(initial=-1)) + 1, -1, dtype=np.int64)
            rows[faiss_ids] = np.arange(len(faiss_ids))
            self._row_of_faiss = rows
        return self._row_of_faiss

    def faiss_id_of(self, image_id: str) -> int | None:
        # Built on first use: a dict of a few million strings is the price of O(1) lookups by id.
        if self._faiss_of_image is None:
            self._faiss_of_image = dict(zip(self.ids["image_id"].to_pylist(),
                                            self.ids["faiss_id"].to_pylist(), strict=True))
        return self._faiss_of_image.get(image_id)


def load_index_version(store: Store, name: str, version: str | None = None, cache_dir: str | None = None,
                       mmap: bool = True) -> IndexVersion:
    """Fetch a complete version (LATEST by default) into the cache, verify it, and open it. With mmap=False
    the index is read into memory (for callers that edit it)."""
    manifest = read_index_manifest(store, name, version)
    local = fetch_version(store, manifest, cache_dir or default_cache_dir())
    return open_local(local, manifest, mmap)


def version_dir(cache_dir: str, manifest: dict[str, Any]) -> str:
    return os.path.join(cache_dir, manifest["name"], manifest["version"])


def fetch_version(store: Store, manifest: dict[str, Any], cache_dir: str) -> str:
    """Make cache_dir/<name>/<version>/ hold every file of the version, each matching its sha256. A cached file
    that does not match (a damaged disk, an interrupted copy) is downloaded again; returns the folder."""
    listed = {entry["key"].rsplit("/", 1)[-1] for entry in manifest.get("files") or []}
    lacking = sorted({INDEX_FILE, IDS_FILE, VECTORS_FILE} - listed)
    if lacking:
        raise VersionError(f"{manifest['name']}/{manifest['version']}: its manifest lists no {', '.join(lacking)}: the "
                           "version is damaged; roll LATEST back to another (`lookalike publish --rollback VERSION`) "
                           "or build it again")
    target = version_dir(cache_dir, manifest)
    os.makedirs(target, exist_ok=True)
    # Executors on one host share the cache: one process fetches, the others wait and then find it verified.
    with open(f"{target}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        missing = []
        for entry in manifest["files"]:
            path = os.path.join(target, entry["key"].rsplit("/", 1)[-1])
            if os.path.exists(path):
                problem = file_problem(path, entry)
                if problem is None:
                    continue
                log.warning("cached %s is damaged (%s); downloading it again", path, problem)
            missing.append((entry, path))
        if missing:  # said, since a version can take gigabytes of the cache's disk
            megabytes = sum(entry["bytes"] for entry, _ in missing) / 1e6
            log.info("copying %s/%s (%.1f MB) into the cache %s", manifest["name"], manifest["version"], megabytes,
                     cache_dir)
            with progress(f"download {manifest['name']}/{manifest['version']}", len(missing), "files") as step:
                for entry, path in missing:
                    _download(store, entry, path)
                    step.advance()
        tmp = os.path.join(target, f"{LOCAL_MANIFEST}.{os.getpid()}.tmp")
        with open(tmp, "w") as f:
            json.dump(manifest, f)
        os.replace(tmp, os.path.join(target, LOCAL_MANIFEST))
    return target


def file_problem(path: str, entry: dict[str, Any]) -> str | None:
    """None when the file has the manifest's size and sha256, else what is wrong with it."""
    size = os.path.getsize(path)
    if size != entry["bytes"]:
        return f"{size:,} bytes, the manifest says {entry['bytes']:,}"
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            digest.update(chunk)
    if digest.hexdigest() != entry["sha256"]:
        return f"sha256 {digest.hexdigest()[:12]}…, the manifest says {entry['sha256'][:12]}…"
    return None


def _download(store: Store, entry: dict[str, Any], path: str) -> None:
    # Into a temporary name, verified, then renamed: a mapped older copy keeps its inode and stays valid.
    tmp = f"{path}.{os.getpid()}.part"
    try:
        store.download(entry["key"], tmp)
        problem = file_problem(tmp, entry)
        if problem is not None:
            raise VersionError(f"{store.child_url(entry['key'])} is damaged in the store ({problem}): republish "
                               "the version or roll LATEST back")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def open_local(local: str, manifest: dict[str, Any], mmap: bool = True) -> IndexVersion:
    """Open a fetched version. On-disk inverted lists (.ivfdata) are always mapped; otherwise mmap maps the
    whole index file without copying it (faiss IO_FLAG_MMAP_IFC)."""
    index_path = os.path.join(local, INDEX_FILE)
    if os.path.exists(os.path.join(local, IVFDATA_FILE)):
        # OnDiskInvertedLists maps the .ivfdata itself; adding IO_FLAG_MMAP segfaults the first search (faiss 1.15).
        index = faiss.read_index(index_path, faiss.IO_FLAG_ONDISK_SAME_DIR)
    else:
        index = faiss.read_index(index_path, faiss.IO_FLAG_MMAP_IFC if mmap else 0)
    vectors = np.load(os.path.join(local, VECTORS_FILE), mmap_mode="r" if mmap else None, allow_pickle=False)
    # One chunk per column: `take` over a chunked table costs a search many times over (bench/query.py).
    ids = pq.read_table(os.path.join(local, IDS_FILE)).combine_chunks()
    if index.ntotal != manifest["ntotal"] or ids.num_rows != manifest["ntotal"]:
        raise VersionError(f"{manifest['name']}/{manifest['version']}: the index holds {index.ntotal} vectors, ids "
                           f"{ids.num_rows}, the manifest says {manifest['ntotal']}")
    return IndexVersion(manifest, index, vectors, ids, _exact(local, vectors, mmap), local,
                        features=load_version_features(local, manifest, mmap))


def _exact(local: str, vectors: np.ndarray, mmap: bool) -> faiss.Index:
    if not mmap:
        return exact_scorer(vectors)
    path = os.path.join(local, EXACT_FILE)
    with open(f"{local}.lock", "w") as lock:  # built once per host, however many processes open the version
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not os.path.exists(path):
            fd, tmp = tempfile.mkstemp(dir=local, suffix=".part")
            os.close(fd)
            try:
                write_exact_scorer(vectors, tmp)
                os.replace(tmp, path)
            finally:
                if os.path.exists(tmp):
                    os.remove(tmp)
    return faiss.read_index(path, faiss.IO_FLAG_MMAP_IFC)


def prune_cache(cache_dir: str, name: str, keep: set[str]) -> list[str]:
    """Delete cached versions of `name` other than `keep`; returns what was deleted. Files still mapped by
    this process stay readable until unmapped (POSIX keeps an unlinked inode alive)."""
    root = os.path.join(cache_dir, name)
    deleted = []
    for entry in sorted(os.listdir(root)) if os.path.isdir(root) else []:
        if entry not in keep and os.path.isdir(os.path.join(root, entry)):  # versions, not their lock files
            shutil.rmtree(os.path.join(root, entry), ignore_errors=True)
            deleted.append(entry)
    return deleted
