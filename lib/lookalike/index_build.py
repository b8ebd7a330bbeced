"""The build_index job: embeddings version → trained, distributed-built, recall-gated, published index version."""

from __future__ import annotations

import logging
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import faiss
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from lookalike import publish
from lookalike.config import ConfigError
from lookalike.embeddings import EmbeddingsVersion, fingerprints, open_version, read_vectors
from lookalike.index_choice import FLAT_THRESHOLD, IndexChoice, choose_index, describe_factory
from lookalike.index_incremental import apply_update, plan_update, read_rows
from lookalike.index_reader import load_index_version
from lookalike.index_tasks import AddTask, GroundTruthTask, ScanTask, TrainTask, save_npy
from lookalike.manifest import new_manifest
from lookalike.publish import VersionLayout, write_file
from lookalike.recall import RecallTooLow, choose_operating_point, exact_ground_truth, sweep
from lookalike.search import deserialize, serialize
from lookalike.spark import run_tasks
from lookalike.storage import Store, redact

log = logging.getLogger(__name__)
GiB = 1 << 30


class IndexInputError(ValueError):
    """The embeddings cannot be indexed as they are; says what is wrong and how many rows."""


@dataclass(frozen=True)
class BuildIndexConfig:
    store: str
    name: str
    embeddings: str | None = None        # "FINGERPRINT" or "FINGERPRINT/RUN_ID"; None: the store's only one
    memory_budget: int = 4 * GiB
    factory: str | None = None           # forces a Faiss factory string
    flat_threshold: int = FLAT_THRESHOLD
    target_recall: float = 0.95          # 10-R@10 the default operating point must reach
    min_recall: float = 0.0              # below this (best of the sweep), nothing is published
    force: bool = False
    publish: bool = False                # move LATEST to the new version
    incremental: bool = False            # update LATEST (add new, drop removed) when the drift check passes
    keep: int | None = None              # retention after publishing
    queries: int = 1000                  # held-out queries for the recall table
    k: int = 10
    seed: int = 0
    master: str | None = "local[*]"
    storage_options: dict[str, Any] = field(default_factory=dict)
    spark_conf: dict[str, str] = field(default_factory=dict)

    def __post_init__(self):
        if not self.name or "/" in self.name:
            raise ConfigError(f"index name {self.name!r}: give a name without '/'")
        if self.memory_budget < 16 << 10:
            raise ConfigError(f"memory_budget is in bytes; {self.memory_budget} is less than 16 KiB")
        if not 0 <= self.min_recall <= 1 or not 0 < self.target_recall <= 1:
            raise ConfigError("min_recall and target_recall are fractions in [0, 1]")
        if self.queries < 1 or self.k < 1:
            raise ConfigError("queries and k must be >= 1")


def resolve_embeddings(store: Store, spec: str | None) -> EmbeddingsVersion:
    if spec:
        fingerprint_id, _, run_id = spec.partition("/")
        return open_version(store, fingerprint_id, run_id or None)
    found = fingerprints(store)
    if len(found) != 1:
        raise ConfigError(f"the store holds embeddings of {len(found)} models ({', '.join(found) or 'none'}): "
                          "choose one with --embeddings FINGERPRINT[/RUN_ID]")
    return open_version(store, found[0])


def run(config: BuildIndexConfig) -> dict[str, Any]:
    started = time.perf_counter()
    store = Store(config.store, config.storage_options)
    source = resolve_embeddings(store, config.embeddings)
    rows = [f["rows"] for f in source.manifest["files"]["embeddings"]]
    n, d = sum(rows), source.dim
    if n == 0:
        raise IndexInputError(f"embeddings {source.layout.prefix} hold no vectors: nothing to index")
    choice = describe_factory(config.factory, n, d) if config.factory else \
        choose_index(n, d, config.memory_budget, config.flat_threshold)
    layout = VersionLayout(store, config.name, publish.new_version_id())
    parts = tuple(k for k, r in zip(source.parts, rows, strict=True) if r > 0)
    offsets = tuple(int(o) for o in np.cumsum([0] + [r for r in rows if r > 0])[:-1])
    timings: dict[str, float] = {}
    log.info("building %s %s over %d×%d: %s", config.name, layout.version, n, d, choice.factory)

    # 1. Scan every part (checks + random training sample + held-out queries), one task per part.
    t0 = time.perf_counter()
    rng = np.random.default_rng(config.seed)
    query_rows = tuple(sorted(rng.choice(n, min(config.queries, n), replace=False).tolist()))
    fraction = min(1.0, 1.2 * choice.train_size / max(1, n - len(query_rows))) if choice.train_size else 0.0
    scan = run_tasks(ScanTask(store, parts, offsets, fraction, query_rows, layout.scratch_prefix, config.seed),
                     list(range(len(parts))), config.master, "lookalike-index-scan", config.spark_conf)
    _check_scan(scan, d, source)
    queries = np.concatenate([s["queries"] for s in sorted(scan, key=lambda s: s["part"])]).astype(np.float32)
    query_ids = np.concatenate([s["query_rows"] for s in sorted(scan, key=lambda s: s["part"])]).astype(np.int64)
    save_npy(store, layout.scratch("queries.npy"), queries)
    timings["scan_s"] = round(time.perf_counter() - t0, 3)

    # 2-4. Either update LATEST in place of a rebuild (nightly), or train, add in parallel and merge.
    with tempfile.TemporaryDirectory(prefix="lookalike-merge-") as tmp:
        t0 = time.perf_counter()
        update = _incremental(config, store, source, parts, offsets, n, d, tmp) if config.incremental else None
        decision = update.decision if update else {
            "incremental": False, "reason": "first build: no LATEST to update" if config.incremental else "full build"}
        trained_ntotal = n  # how many vectors the trained quantizer was sized for (the drift check's reference)
        if update and update.index is not None:
            index, vectors, row_to_faiss = update.index, update.vectors, update.row_to_faiss
            training, trained_bytes, choice = update.training, update.trained_bytes, update.choice
            trained_ntotal = update.trained_ntotal
            files = [write_file(store, layout.key("index.faiss"), serialize(index))]
            on_disk = False
            timings["update_s"] = round(time.perf_counter() - t0, 3)
        else:
            training, trained_bytes, index, files, on_disk = _full_build(config, store, layout, choice, parts,
                                                                         offsets, n, d, timings, tmp)
            vectors = _gather_vectors(store, parts, offsets, n, d)
            row_to_faiss = np.arange(n, dtype=np.int64)
        # The re-scoring vectors go to local disk now and are mapped back: from here the driver holds them
        # once (inside the sweep's exact scorer) instead of also as an array and as the .npy being written
        # (driver peak at 10M × 128: 11.7 GiB before, see bench/ondisk_merge.py).
        vectors_path = os.path.join(tmp, "vectors.f16.npy")
        np.save(vectors_path, vectors.astype(np.float16, copy=False), allow_pickle=False)
        if update:
            update.vectors = None
        vectors = np.load(vectors_path, mmap_mode="r")

        # 5. Exact ground truth (distributed brute force), then the recall/QPS sweep and the gate.
        t0 = time.perf_counter()
        partial = run_tasks(GroundTruthTask(store, parts, offsets, layout.scratch_prefix, config.k + 1),
                            list(range(len(parts))), config.master, "lookalike-index-gt", config.spark_conf)
        # Tasks see rows of the embeddings version; the index speaks faiss ids.
        partial = [(dist, np.where(ids >= 0, row_to_faiss[np.maximum(ids, 0)], -1)) for dist, ids in partial]
        query_ids = row_to_faiss[query_ids]
        truth = exact_ground_truth(partial, query_ids, config.k)
        table = sweep(index, queries, query_ids, truth, vectors, config.k, choice)
        point = choose_operating_point(table, config.target_recall)
        timings["recall_s"] = round(time.perf_counter() - t0, 3)
        best = max(r["recall_at_10"] for r in table)
        if best < config.min_recall and not config.force:
            store.delete(layout.scratch_prefix, recursive=True)
            raise RecallTooLow(f"{choice.factory}: the best 10-R@10 reached is {best:.3f} < --min-recall "
                               f"{config.min_recall}; nothing was published. Give a larger --memory-budget or a "
                               "better --factory, or --force to publish anyway")

        # 6. Write the version: files first, manifest last; then (with --publish) LATEST.
        del vectors  # the mapping, before the folder holding its file goes
        files.append(publish.upload_file(store, layout.key("vectors.f16.npy"), vectors_path))
        files.append(write_file(store, layout.key("trained.faiss"), trained_bytes))
        files.append(write_file(store, layout.key("ids.parquet"), _ids_parquet(source, parts, row_to_faiss)))
    timings["total_s"] = round(time.perf_counter() - started, 3)
    manifest = new_manifest(
        publish.KIND, name=config.name, version=layout.version, fingerprint=source.manifest["fingerprint"],
        fingerprint_id=source.layout.fingerprint_id, dim=d, metric="L2", ntotal=n, factory=choice.factory,
        factory_reason=choice.reason, choice=asdict(choice), on_disk=on_disk,
        bytes_per_vector=round(sum(f["bytes"] for f in files if f["key"].rsplit("/", 1)[-1].startswith("index."))
                               / n, 2),
        training=training, build_mode=decision, recall_table=table, operating_point=point,
        trained_ntotal=trained_ntotal,
        default_search=point["params"], files=files, timings=timings,
        source={"embeddings": source.layout.prefix, "run_id": source.manifest["run_id"],
                "counts": source.manifest["counts"]},
        model=source.manifest.get("config", {}).get("model"),  # how query workers rebuild the model
        config={**asdict(config), "storage_options": redact(config.storage_options)},
    )
    store.write_json(layout.manifest, manifest)
    store.delete(layout.scratch_prefix, recursive=True)
    if config.publish:
        publish.set_latest(store, config.name, layout.version)
        if config.keep:
            publish.retain(store, config.name, config.keep)
    return manifest


def _check_scan(scan: list[dict[str, Any]], d: int, source: EmbeddingsVersion) -> None:
    where = source.layout.store.child_url(source.layout.prefix)
    dims = {s["dim"] for s in scan}
    if dims != {d}:
        raise IndexInputError(f"embeddings {where}: vectors of dimension {sorted(dims)}, manifest says {d}: the "
                              "version mixes models; re-embed it")
    bad = sum(s["non_finite"] for s in scan)
    zero = sum(s["zero"] for s in scan)
    if bad or zero:
        raise IndexInputError(f"embeddings {where}: {bad} vectors with NaN/inf and {zero} all-zero vectors; "
                              "they cannot be searched. Re-embed the version")
    worst = max(s["max_norm_error"] for s in scan)
    if worst > 1e-2:
        raise IndexInputError(f"embeddings {where} are not L2-normalised (a norm is off by {worst:.3f}); "
                              "the L2 index assumes unit vectors")


def _merge(store: Store, layout: VersionLayout, trained_bytes: bytes, n_parts: int, choice: IndexChoice, n: int,
           budget: int, tmp: str) -> tuple[faiss.Index, list[dict[str, Any]], bool]:
    trained = deserialize(trained_bytes)
    estimated = n * choice.bytes_per_vector
    if choice.is_flat or estimated <= budget:
        for i in range(n_parts):
            trained.merge_from(deserialize(store.read_bytes(layout.scratch(f"partial-{i:05d}.faiss"))), 0)
        files = [write_file(store, layout.key("index.faiss"), serialize(trained))]
        return trained, files, False
    # Larger than the budget: merge the lists into one mmap-able .ivfdata file (faiss.contrib.ondisk).
    from faiss.contrib.ondisk import merge_ondisk
    names = []
    for i in range(n_parts):
        path = os.path.join(tmp, f"partial-{i:05d}.faiss")
        store.fs.get_file(store.path(layout.scratch(f"partial-{i:05d}.faiss")), path)
        names.append(path)
    ivfdata = os.path.join(tmp, "index.ivfdata")
    merge_ondisk(trained, names, ivfdata)
    index_path = os.path.join(tmp, "index.faiss")
    faiss.write_index(trained, index_path)
    files = [publish.upload_file(store, layout.key("index.faiss"), index_path),
             publish.upload_file(store, layout.key("index.ivfdata"), ivfdata)]
    return faiss.read_index(index_path, faiss.IO_FLAG_ONDISK_SAME_DIR), files, True


def _gather_vectors(store: Store, parts: tuple[str, ...], offsets: tuple[int, ...], n: int, d: int) -> np.ndarray:
    """Every vector as float16, filled part by part into one array (no concatenation copy)."""
    out = np.empty((n, d), np.float16)
    for key, start in zip(parts, offsets, strict=True):
        part = read_vectors(store, key)
        out[start:start + len(part)] = part
    return out


def _ids_parquet(source: EmbeddingsVersion, parts: tuple[str, ...], row_to_faiss: np.ndarray) -> bytes:
    """faiss_id → image_id, uri, content_sha256, width, height and the metadata columns, sorted by faiss id:
    what a query worker returns with each hit and filters on."""
    columns = [c for c in source.layout.store.read_parquet_schema(parts[0]).names if c != "embedding"] \
        if parts else ["image_id", "uri", "content_sha256"]
    ids = pa.concat_tables([source.read_part(p, columns) for p in parts])
    ids = ids.add_column(0, "faiss_id", pa.array(row_to_faiss, pa.int64())).sort_by("faiss_id")
    sink = pa.BufferOutputStream()
    pq.write_table(ids, sink, compression="zstd")
    return sink.getvalue().to_pybytes()


def _full_build(config: BuildIndexConfig, store: Store, layout: VersionLayout, choice: IndexChoice,
                parts: tuple[str, ...], offsets: tuple[int, ...], n: int, d: int, timings: dict[str, float],
                tmp: str) -> tuple[dict[str, Any], bytes, faiss.Index, list[dict[str, Any]], bool]:
    """Train on one task, add every part on its own task, merge the inverted lists."""
    t0 = time.perf_counter()
    [training] = run_tasks(TrainTask(store, choice.factory, d, len(parts), max(1, choice.train_size),
                                     layout.scratch_prefix, config.seed), [0], config.master,
                           "lookalike-index-train", config.spark_conf)
    timings["train_s"] = round(time.perf_counter() - t0, 3)
    t0 = time.perf_counter()
    added = run_tasks(AddTask(store, parts, offsets, layout.scratch_prefix), list(range(len(parts))),
                      config.master, "lookalike-index-add", config.spark_conf)
    timings["add_s"] = round(time.perf_counter() - t0, 3)
    if sum(a["added"] for a in added) != n:
        raise RuntimeError(f"add tasks indexed {sum(a['added'] for a in added)} vectors, expected {n}")
    t0 = time.perf_counter()
    trained_bytes = store.read_bytes(layout.scratch("trained.faiss"))
    index, files, on_disk = _merge(store, layout, trained_bytes, len(parts), choice, n, config.memory_budget, tmp)
    timings["merge_s"] = round(time.perf_counter() - t0, 3)
    return training, trained_bytes, index, files, on_disk


@dataclass
class _Incremental:
    """LATEST updated in place of a rebuild; index is None when the decision is to retrain (and why)."""

    decision: dict[str, Any]
    index: faiss.Index | None = None
    vectors: np.ndarray | None = None
    row_to_faiss: np.ndarray | None = None
    training: dict[str, Any] | None = None
    trained_bytes: bytes = b""
    choice: IndexChoice | None = None
    trained_ntotal: int = 0


def _incremental(config: BuildIndexConfig, store: Store, source: EmbeddingsVersion, parts: tuple[str, ...],
                 offsets: tuple[int, ...], n: int, d: int, tmp: str) -> _Incremental | None:
    """Update LATEST when that is possible and the drift checks pass; None when there is no LATEST."""
    if publish.latest_version(store, config.name) is None:
        return None
    previous = load_index_version(store, config.name, cache_dir=tmp, mmap=False)  # edited below
    m = previous.manifest
    why_not = None
    if m["fingerprint_id"] != source.layout.fingerprint_id:
        why_not = f"the model changed ({m['fingerprint_id']} → {source.layout.fingerprint_id})"
    elif m["choice"]["nlist"] == 0:
        why_not = "LATEST is a flat index: rebuilding it costs no training"
    elif config.factory and config.factory != m["factory"]:
        why_not = f"--factory {config.factory} differs from LATEST's {m['factory']}"
    elif m.get("on_disk"):
        why_not = "LATEST keeps its lists on disk; on-disk lists are rebuilt, not edited"
    if why_not:
        return _Incremental({"incremental": False, "reason": f"retrained: {why_not}"})
    trained_bytes = store.read_bytes(VersionLayout(store, config.name, m["version"]).key("trained.faiss"))
    keys = pa.concat_tables([source.read_part(p, ["image_id", "content_sha256"]) for p in parts])
    update = plan_update(previous, keys)
    added = read_rows(source, parts, offsets, update.added_rows, d)
    index, vectors, decision = apply_update(previous, deserialize(trained_bytes), update, added, n)
    decision["from_version"] = m["version"]
    if not decision["incremental"]:
        return _Incremental(decision)
    return _Incremental(decision, index, vectors, update.row_to_faiss, m["training"], trained_bytes,
                        IndexChoice(**m["choice"]), m.get("trained_ntotal", m["ntotal"]))
