"""Export a published index version as N serving shards, one standalone bundle per host.

An IVF index is split by inverted-list ranges balanced by vector count: every shard keeps the whole coarse
quantizer (and OPQ rotation), so a shard searching with the global nprobe probes exactly the lists the
unsharded index would, skips the empty ones it does not own, and the merged top-k equals the unsharded one
(IndexShardsIVF's idea: one coarse search's worth of work, not N; IndexShards over vector slices made every
shard scan its own copy of every probed list). A flat index is split by faiss id modulo N.

A bundle is an index version in a store of its own: `DEST/indexes/<name>/<version>/{index.faiss, ids.parquet,
vectors.f16.npy, manifest.json, READY}` and `DEST/indexes/<name>/LATEST`, so `lookalike serve --store DEST`
serves it and `lookalike verify` checks it. READY is written after every file and the manifest.
"""

from __future__ import annotations

import io
import json
import os
import posixpath
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import faiss
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from lookalike.core.errors import ConfigError
from lookalike.core.layout import IDS_FILE, INDEX_FILE, TRAINED_FILE, VECTORS_FILE, IndexLayout
from lookalike.core.manifest import new_manifest, read_manifest
from lookalike.core.scratch import scratch
from lookalike.core.spark import run_tasks
from lookalike.core.store import Store, read_url, redact
from lookalike.index import publish
from lookalike.index.features import write_shard_features
from lookalike.index.publish import VersionError, write_file
from lookalike.index.reader import load_index_version
from lookalike.index.search import serialize, vectors_to_bytes
from lookalike.model.spec import MODEL_FILE_FIELDS, is_relative

READY = "READY"


@dataclass(frozen=True)
class ExportConfig:
    """What `lookalike export` writes: a published version split into one bundle per destination."""

    store: str
    name: str                              # the index's name
    destinations: tuple[str, ...]          # one store URL per shard (a folder, s3 prefix, sftp://...)
    version: str | None = None             # default LATEST
    storage_options: dict[str, Any] = field(default_factory=dict)
    destination_options: dict[str, Any] = field(default_factory=dict)
    master: str | None = "local[*]"
    spark_conf: dict[str, str] = field(default_factory=dict)

    def __post_init__(self):
        if len(self.destinations) < 1:
            raise ConfigError("give one --dest URL per shard (at least one)")
        if len(set(self.destinations)) != len(self.destinations):
            raise ConfigError("two shards cannot share a destination: give each host its own --dest URL")


def run(config: ExportConfig) -> dict[str, Any]:
    """Write every shard's bundle (skipping those already complete and verified); returns a summary."""
    store = Store(config.store, config.storage_options)
    manifest = publish.read_index_manifest(store, config.name, config.version)  # fails fast when missing
    for url in config.destinations:  # an unwritable destination fails here in one line, not inside a Spark task
        Store(url, config.destination_options or config.storage_options).check_writable()
    started = time.perf_counter()
    task = ExportTask(config, manifest["version"])
    shards = run_tasks(task, list(range(len(config.destinations))), config.master, "lookalike-export",
                       config.spark_conf, stage="export", unit="shards")
    return {"name": config.name, "version": manifest["version"], "ntotal": manifest["ntotal"],
            "split": shards[0]["split"], "shards": sorted(shards, key=lambda s: s["shard"]),
            "total_s": round(time.perf_counter() - started, 3)}


def list_ranges(sizes: np.ndarray, shards: int) -> list[tuple[int, int]]:
    """Contiguous inverted-list ranges holding about the same number of vectors each."""
    cumulative = np.cumsum(sizes)
    bounds = [0] + [int(np.searchsorted(cumulative, cumulative[-1] * s / shards)) + 1 for s in range(1, shards)]
    bounds = [min(b, len(sizes)) for b in bounds] + [len(sizes)]
    return [(bounds[s], max(bounds[s], bounds[s + 1])) for s in range(shards)]


@dataclass(frozen=True)
class ExportTask:
    config: ExportConfig
    version: str

    def __call__(self, shard: int) -> dict[str, Any]:
        dest = Store(self.config.destinations[shard], self.config.destination_options or self.config.storage_options)
        layout = IndexLayout(dest, self.config.name, self.version)
        if dest.exists(layout.key(READY)):
            try:
                verify_bundle(dest, self.config.name, self.version)
                existing = read_manifest(dest, layout.manifest, publish.KIND)
                return {**existing["shard"], "skipped": True}
            except VersionError:
                pass  # damaged or partial: written again below
        store = Store(self.config.store, self.config.storage_options)
        with scratch("lookalike-export-") as tmp:
            source = load_index_version(store, self.config.name, self.version, cache_dir=tmp, mmap=False)
            empty = faiss.read_index(os.path.join(source.local_dir, TRAINED_FILE))
            index, global_ids, split = _shard_index(source.index, empty, shard, len(self.config.destinations))
            dest.delete(layout.key(READY))
            feature_files = write_shard_features(dest, layout, source.features, global_ids, tmp)
        ids = source.ids.take(pa.array(source.row_of_faiss[global_ids]))
        ids = ids.set_column(0, "faiss_id", pa.array(np.arange(len(global_ids), dtype=np.int64)))
        ids = ids.append_column("source_faiss_id", pa.array(global_ids))
        sink = io.BytesIO()
        pq.write_table(ids, sink, compression="zstd")
        files = [write_file(dest, layout.key(INDEX_FILE), serialize(index)),
                 write_file(dest, layout.key(IDS_FILE), sink.getvalue()),
                 write_file(dest, layout.key(VECTORS_FILE), vectors_to_bytes(np.asarray(
                     source.vectors[global_ids]))), *feature_files]
        info = {"shard": shard, "shards": len(self.config.destinations), "split": split["kind"],
                "range": split["range"], "ntotal": int(index.ntotal), "destination": dest.url}
        model, model_files = _bundle_model_files(store, dest, layout, source.manifest.get("model"))
        files += model_files
        m = {k: v for k, v in source.manifest.items()
             if k not in ("kind", "format_version", "files", "ntotal", "created_at", "code_version")}
        m["model"] = model
        manifest = new_manifest(publish.KIND, **{**m, "ntotal": int(index.ntotal), "files": files, "shard": info,
                                                 "source_ntotal": source.manifest["ntotal"],
                                                 "export": {**asdict(self.config), "storage_options": redact(
                                                     self.config.storage_options), "destination_options": redact(
                                                     self.config.destination_options)}})
        dest.write_json(layout.manifest, manifest)
        dest.write_text(layout.key(READY), json.dumps({"version": self.version, "shard": shard}) + "\n")
        publish.set_latest(dest, self.config.name, self.version)
        return {**info, "skipped": False}


def _shard_index(index: faiss.Index, empty: faiss.Index, shard: int, shards: int
                 ) -> tuple[faiss.Index, np.ndarray, dict[str, Any]]:
    """The shard's index with dense local ids 0..n-1, and the source faiss id of each local id. `empty` is the
    version's trained index (quantizer, rotation, codebooks, no vectors), which the shard's vectors go into:
    faiss.clone_index would copy every list only to drop them, and it shares, then frees twice, the transform
    of an IndexIVFSpectralHash (faiss 1.15)."""
    try:
        ivf = faiss.extract_index_ivf(index)
    except RuntimeError:
        ivf = None
    if ivf is None:
        flat = faiss.downcast_index(index)
        global_ids = np.arange(shard, flat.ntotal, shards, dtype=np.int64)
        part = empty
        if len(global_ids):
            part.add(flat.reconstruct_batch(global_ids))
        return part, global_ids, {"kind": "faiss id modulo shards", "range": [shard, shards]}
    sizes = np.array([ivf.invlists.list_size(i) for i in range(ivf.nlist)])
    lo, hi = list_ranges(sizes, shards)[shard]
    part = empty
    part_ivf = faiss.extract_index_ivf(part)
    ivf.copy_subset_to(part_ivf, faiss.InvertedLists.SUBSET_TYPE_INVLIST, lo, hi)
    part.ntotal = part_ivf.ntotal
    inv = part_ivf.invlists
    global_ids, next_id = [], 0
    for list_no in range(lo, hi):
        n = inv.list_size(list_no)
        if n == 0:
            continue
        old = faiss.rev_swig_ptr(inv.get_ids(list_no), n).copy()
        codes = faiss.rev_swig_ptr(inv.get_codes(list_no), n * inv.code_size).copy()
        new = np.arange(next_id, next_id + n, dtype=np.int64)
        inv.update_entries(list_no, 0, n, faiss.swig_ptr(new), faiss.swig_ptr(codes))
        global_ids.append(old)
        next_id += n
    ids = np.concatenate(global_ids) if global_ids else np.zeros(0, np.int64)
    return part, ids, {"kind": "inverted lists", "range": [int(lo), int(hi)]}


def _bundle_model_files(store: Store, dest: Store, layout: IndexLayout, model: dict[str, Any] | None
                        ) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """The model files the version's model is rebuilt from (a whitening, weights given by URI) copied into the
    bundle, and the recorded model pointing at them by keys relative to the bundle's store: a serving host
    needs nothing from the source store."""
    if not model:
        return model, []
    model, files = dict(model), []
    for name in MODEL_FILE_FIELDS:
        uri = model.get(name)
        if not uri:
            continue
        if is_relative(uri):  # already a bundle's own file (a bundle exported again)
            uri = store.child_url(uri)
        key = layout.key(f"model/{name.removesuffix('_uri')}-{posixpath.basename(uri)}")
        files.append(write_file(dest, key, read_url(uri, store.options, f"read {name}")))
        model[name] = key
    return model, files


def verify_bundle(dest: Store, name: str, version: str | None = None) -> dict[str, Any]:
    """Check a bundle as it arrived on a host: READY present, every file's size and sha256 as its manifest
    says. Returns the manifest; raises VersionError naming the first problem."""
    manifest = publish.read_index_manifest(dest, name, version)
    layout = IndexLayout(dest, name, manifest["version"])
    if not dest.exists(layout.key(READY)):
        raise VersionError(f"{dest.child_url(layout.prefix)} has no {READY} marker: the export did not finish; "
                           "run the export again")
    carried = {entry["key"] for entry in manifest["files"]}
    for name in MODEL_FILE_FIELDS:
        uri = (manifest.get("model") or {}).get(name)
        if uri and (not is_relative(uri) or uri not in carried):
            raise VersionError(f"{dest.child_url(layout.prefix)} is not self-contained: its model's {name} is "
                               f"{uri}, outside the bundle; export it again with this lookalike")
    for entry in manifest["files"]:
        publish.verify_file(dest.read_bytes(entry["key"]), entry)
    return manifest


def verify_url(url: str, options: dict[str, Any] | None = None) -> dict[str, Any]:
    """verify_bundle for a URL: a bundle's version folder (…/indexes/<name>/<version>) or its store root."""
    parts = url.rstrip("/").split("/")
    if len(parts) >= 3 and parts[-3] == "indexes":
        root = "/".join(parts[:-3]) or "/"
        return verify_bundle(Store(root, options), parts[-2], parts[-1])
    store = Store(url, options)
    names = [k.rsplit("/", 1)[-1] for k in store.list("indexes")]
    if len(names) != 1:
        held = f"indexes {', '.join(names)}" if names else "no index"
        raise ConfigError(f"{url} holds {held}: give the bundle's folder URL/indexes/<name>/<version>")
    return verify_bundle(store, names[0])

