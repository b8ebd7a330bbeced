"""The build_index job: embeddings version → trained, distributed-built, recall-gated, published index version."""

from __future__ import annotations

import logging
import os
import time
from dataclasses import asdict, dataclass
from typing import Any

import faiss
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from lookalike.core.errors import InputError, JobFailed
from lookalike.core.layout import (
    IDS_FILE,
    INDEX_FILE,
    IVFDATA_FILE,
    TRAINED_FILE,
    VECTORS_FILE,
    IndexLayout,
    features_part_of,
)
from lookalike.core.logs import run_context
from lookalike.core.manifest import new_manifest
from lookalike.core.progress import progress
from lookalike.core.schemas import COLOUR_COLUMN, row_columns
from lookalike.core.scratch import scratch
from lookalike.core.spark import run_tasks
from lookalike.core.stages import timed
from lookalike.core.store import Store, redact
from lookalike.embed.versions import EmbeddingsVersion, open_ref
from lookalike.index import publish
from lookalike.index.choice import IndexChoice, choose_index, describe_factory
from lookalike.index.config import BuildIndexConfig
from lookalike.index.features import write_version_features
from lookalike.index.footprint import VersionFootprint
from lookalike.index.incremental import try_update
from lookalike.index.publish import write_file
from lookalike.index.recall import RecallTooLow, choose_operating_point, exact_ground_truth, sweep
from lookalike.index.search import deserialize, write_exact_scorer
from lookalike.index.tasks import AddTask, GroundTruthTask, ScanTask, TrainTask, save_npy

log = logging.getLogger(__name__)


class IndexInputError(InputError):
    """The embeddings cannot be indexed as they are; says what is wrong and how many rows."""


@dataclass(frozen=True)
class BuildPlan:
    """What one build works on: the source version's non-empty parts, where each starts, and the index type."""

    store: Store
    source: EmbeddingsVersion
    layout: IndexLayout
    parts: tuple[str, ...]
    offsets: tuple[int, ...]    # global row of each part's first row
    n: int
    d: int
    choice: IndexChoice


@dataclass(frozen=True)
class HeldOut:
    """The held-out query vectors of the recall table and their global rows (never in the training sample)."""

    queries: np.ndarray
    rows: np.ndarray


@dataclass
class Built:
    """The new version's index, from a full build or an in-place update of LATEST, and what its manifest says of
    how it was made."""

    index: faiss.Index
    vectors_path: str            # the re-scoring vectors (row = faiss id), a float16 .npy on local disk
    row_to_faiss: np.ndarray     # faiss id of every row of the source version
    training: dict[str, Any]
    trained_bytes: bytes
    choice: IndexChoice
    trained_ntotal: int          # how many vectors the trained quantizer was sized for (the drift check's reference)
    files: list[dict[str, Any]]  # manifest entries of the index files written so far
    on_disk: bool
    decision: dict[str, Any]     # full build or incremental, and why


@dataclass(frozen=True)
class Measured:
    table: list[dict[str, Any]]  # the recall/QPS sweep
    point: dict[str, Any]        # the default operating point


def run(config: BuildIndexConfig) -> dict[str, Any]:
    started = time.perf_counter()
    timings: dict[str, float] = {}
    plan = plan_build(config)
    with run_context(index=config.name, index_version=plan.layout.version):
        return _build(config, plan, started, timings)


def _footprint(plan: BuildPlan) -> VersionFootprint:
    features = plan.store.total_size(features_part_of(p) for p in plan.parts) if plan.source.local_features else 0
    return VersionFootprint.of(plan.n, plan.d, plan.choice.bytes_per_vector, features)


def _build(config: BuildIndexConfig, plan: BuildPlan, started: float, timings: dict[str, float]) -> dict[str, Any]:
    log.info("building %s %s over %d×%d: %s", config.name, plan.layout.version, plan.n, plan.d, plan.choice.factory)
    held_out = timed(timings, "scan_s", scan, config, plan)
    with scratch("lookalike-build-", config.scratch_dir, _footprint(plan).build_scratch) as tmp:
        built = build_or_update(config, plan, timings, tmp)
        exact = write_exact_scorer(np.load(built.vectors_path, mmap_mode="r"), os.path.join(tmp, "exact.faiss"))
        measured = timed(timings, "recall_s", measure, config, plan, built, held_out, exact)
        del exact
        _gate(config, plan, built, measured)
        files = _write_files(plan, built, tmp)
    timings["total_s"] = round(time.perf_counter() - started, 3)
    manifest = _manifest(config, plan, built, measured, files, timings)
    plan.store.write_json(plan.layout.manifest, manifest)  # the commit: the version exists from here
    plan.store.delete(plan.layout.scratch_prefix, recursive=True)
    if config.publish:
        publish.set_latest(plan.store, config.name, plan.layout.version)
        if config.keep:
            publish.retain(plan.store, config.name, config.keep)
    return manifest


def plan_build(config: BuildIndexConfig) -> BuildPlan:
    store = Store(config.store, config.storage_options)
    source = open_ref(store, config.embeddings)
    rows = [f["rows"] for f in source.manifest["files"]["embeddings"]]
    n, d = sum(rows), source.dim
    if n == 0:
        raise IndexInputError(f"embeddings {source.layout.prefix} hold no vectors: nothing to index")
    choice = describe_factory(config.factory, n, d) if config.factory else \
        choose_index(n, d, config.memory_budget, config.flat_threshold, config.codes)
    parts = tuple(k for k, r in zip(source.parts, rows, strict=True) if r > 0)
    offsets = tuple(int(o) for o in np.cumsum([0] + [r for r in rows if r > 0])[:-1])
    return BuildPlan(store, source, IndexLayout(store, config.name, publish.new_version_id()), parts, offsets, n, d,
                     choice)


def scan(config: BuildIndexConfig, plan: BuildPlan) -> HeldOut:
    """Every part checked (NaN, zeros, dimension, norms), its share of a random training sample drawn and its
    held-out queries handed back, one task per part."""
    rng = np.random.default_rng(config.seed)
    train_size = plan.choice.train_size
    # An index that is trained keeps at least half the rows for training: the held-out queries give way.
    held_out = min(config.queries, plan.n if not train_size else plan.n // 2)
    query_rows = tuple(sorted(rng.choice(plan.n, max(1, held_out), replace=False).tolist()))
    fraction = min(1.0, 1.2 * train_size / max(1, plan.n - len(query_rows))) if train_size else 0.0
    results = run_tasks(ScanTask(plan.store, plan.parts, plan.offsets, fraction, query_rows, plan.layout, config.seed),
                        list(range(len(plan.parts))), config.master, "lookalike-index-scan", config.spark_conf,
                        stage="index: check and sample", unit="vectors", total=plan.n)
    _check_scan(results, plan.d, plan.source)
    sampled = sum(s["sampled"] for s in results)
    choice = plan.choice
    # k-means needs a point per centroid, ITQ's PCA a point per bit.
    needed = max(choice.nlist, 256 if choice.pq_m else 0, choice.code_bits) if train_size else 0
    if sampled < needed:
        raise IndexInputError(f"{choice.factory} needs at least {needed:,} training vectors ({choice.nlist} lists"
                              f"{', 256 codes per PQ sub-quantizer' if choice.pq_m else ''}"
                              f"{f', {choice.code_bits} ITQ bits' if choice.code_bits else ''}); "
                              f"{plan.n:,} vectors less {len(query_rows):,} held-out queries leave {sampled:,}: give a "
                              "factory with fewer lists, or Flat, or leave --factory out and let the builder choose")
    results = sorted(results, key=lambda s: s["part"])
    queries = np.concatenate([s["queries"] for s in results]).astype(np.float32)
    save_npy(plan.store, plan.layout.queries, queries)
    return HeldOut(queries, np.concatenate([s["query_rows"] for s in results]).astype(np.int64))


def build_or_update(config: BuildIndexConfig, plan: BuildPlan, timings: dict[str, float], tmp: str) -> Built:
    """LATEST updated in place of a rebuild (nightly, when the drift checks pass), else train, add in parallel
    and merge."""
    t0 = time.perf_counter()
    update = try_update(config.name, config.factory, config.codes, plan.store, plan.source, plan.parts, plan.n,
                        tmp) if config.incremental else None
    if update is not None and update.index is not None:
        timings["update_s"] = round(time.perf_counter() - t0, 3)
        files = [_upload_index(plan.store, plan.layout.key(INDEX_FILE), update.index, tmp)]
        return Built(update.index, update.vectors_path, update.row_to_faiss, update.training, update.trained_bytes,
                     update.choice, update.trained_ntotal, files, False, update.decision)
    decision = update.decision if update else {
        "incremental": False, "reason": "first build: no LATEST to update" if config.incremental else "full build"}
    return _full_build(config, plan, decision, timings, tmp)


def _full_build(config: BuildIndexConfig, plan: BuildPlan, decision: dict[str, Any], timings: dict[str, float],
                tmp: str) -> Built:
    """Train on one task, add every part on its own task, merge the inverted lists."""
    store, layout, choice = plan.store, plan.layout, plan.choice
    [training] = timed(timings, "train_s", run_tasks,
                        TrainTask(store, choice.factory, plan.d, len(plan.parts), max(1, choice.train_size), layout,
                                  config.seed), [0], config.master, "lookalike-index-train", config.spark_conf,
                        f"index: train {choice.factory}")
    added = timed(timings, "add_s", run_tasks, AddTask(store, plan.parts, plan.offsets, layout),
                   list(range(len(plan.parts))), config.master, "lookalike-index-add", config.spark_conf,
                   "index: add", "vectors", plan.n)
    if sum(a["added"] for a in added) != plan.n:
        raise JobFailed(f"add tasks indexed {sum(a['added'] for a in added)} vectors, expected {plan.n}")
    t0 = time.perf_counter()
    trained_bytes = store.read_bytes(layout.trained)
    index, files, on_disk = _merge(store, layout, trained_bytes, len(plan.parts), choice, plan.n,
                                   config.memory_budget, tmp)
    timings["merge_s"] = round(time.perf_counter() - t0, 3)
    return Built(index, _stream_vectors(plan, os.path.join(tmp, VECTORS_FILE)), np.arange(plan.n, dtype=np.int64),
                 training, trained_bytes, choice, plan.n, files, on_disk, decision)


def _stream_vectors(plan: BuildPlan, path: str) -> str:
    """The re-scoring vectors (row = faiss id = source row) written into a mapped local .npy one part at a time:
    the driver holds one part's vectors, never N × d (at 10M × 128 it held 2.4 GiB twice before)."""
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float16, shape=(plan.n, plan.d))
    for key, start in zip(plan.parts, plan.offsets, strict=True):
        for batch in plan.store.iter_parquet(key, ["embedding"]):
            column = batch.column(0)
            out[start:start + len(column)] = column.values.to_numpy().reshape(len(column), plan.d)
            start += len(column)
    out.flush()
    del out
    pa.default_memory_pool().release_unused()  # Arrow's allocator keeps freed pages otherwise
    return path


def measure(config: BuildIndexConfig, plan: BuildPlan, built: Built, held_out: HeldOut, exact: faiss.Index
            ) -> Measured:
    """Exact ground truth of the held-out queries (distributed brute force), then the recall/QPS sweep."""
    partial = run_tasks(GroundTruthTask(plan.store, plan.parts, plan.offsets, plan.layout, config.k + 1),
                        list(range(len(plan.parts))), config.master, "lookalike-index-gt", config.spark_conf,
                        stage="index: exact neighbours of the held-out queries", unit="vectors", total=plan.n)
    # Tasks see rows of the embeddings version; the index speaks faiss ids.
    row_to_faiss = built.row_to_faiss
    partial = [(dist, np.where(ids >= 0, row_to_faiss[np.maximum(ids, 0)], -1)) for dist, ids in partial]
    query_ids = row_to_faiss[held_out.rows]
    truth = exact_ground_truth(partial, query_ids, config.k)
    table = sweep(built.index, held_out.queries, query_ids, truth, exact, config.k, built.choice)
    return Measured(table, choose_operating_point(table, config.target_recall))


def _gate(config: BuildIndexConfig, plan: BuildPlan, built: Built, measured: Measured) -> None:
    best = max(r["recall_at_10"] for r in measured.table)
    if best < config.min_recall and not config.force:
        plan.store.delete(plan.layout.scratch_prefix, recursive=True)
        raise RecallTooLow(f"{built.choice.factory}: the best 10-R@10 reached is {best:.3f} < --min-recall "
                           f"{config.min_recall}; nothing was published. Give a larger --memory-budget or a "
                           "better --factory, or --force to publish anyway")


def _write_files(plan: BuildPlan, built: Built, tmp: str) -> list[dict[str, Any]]:
    """The rest of the version's files (the index files are written already); the manifest comes after them."""
    store, layout = plan.store, plan.layout
    ids_path = _write_ids(plan, built.row_to_faiss, os.path.join(tmp, IDS_FILE))
    return [*built.files,
            publish.upload_file(store, layout.key(VECTORS_FILE), built.vectors_path),
            write_file(store, layout.key(TRAINED_FILE), built.trained_bytes),
            publish.upload_file(store, layout.key(IDS_FILE), ids_path),
            *write_version_features(store, layout, plan.source, plan.parts, built.row_to_faiss, tmp)]


def _manifest(config: BuildIndexConfig, plan: BuildPlan, built: Built, measured: Measured,
              files: list[dict[str, Any]], timings: dict[str, float]) -> dict[str, Any]:
    source, choice = plan.source, built.choice
    index_bytes = sum(f["bytes"] for f in files if f["key"].rsplit("/", 1)[-1].startswith("index."))
    return new_manifest(
        publish.KIND, name=config.name, version=plan.layout.version, fingerprint=source.manifest["fingerprint"],
        fingerprint_id=source.layout.fingerprint_id, dim=plan.d, metric="L2", ntotal=plan.n, factory=choice.factory,
        factory_reason=choice.reason, choice=asdict(choice), on_disk=built.on_disk,
        bytes_per_vector=round(index_bytes / plan.n, 2),
        training=built.training, build_mode=built.decision, recall_table=measured.table,
        operating_point=measured.point, trained_ntotal=built.trained_ntotal,
        default_search=measured.point["params"], files=files, timings=timings,
        source={"embeddings": source.layout.prefix, "run_id": source.manifest["run_id"],
                "counts": source.manifest["counts"]},
        model=source.manifest.get("config", {}).get("model"),  # how query workers rebuild the model
        local_features=source.manifest.get("local_features"),  # what verification matches queries with
        config={**asdict(config), "storage_options": redact(config.storage_options)},
    )


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


def _merge(store: Store, layout: IndexLayout, trained_bytes: bytes, n_parts: int, choice: IndexChoice, n: int,
           budget: int, tmp: str) -> tuple[faiss.Index, list[dict[str, Any]], bool]:
    trained = deserialize(trained_bytes)
    estimated = n * choice.bytes_per_vector
    if not choice.nlist or estimated <= budget:  # on-disk lists are inverted lists: an IVF's only
        with progress("index: merge", n_parts, "parts") as step:
            for i in range(n_parts):
                trained.merge_from(deserialize(store.read_bytes(layout.partial(i))), 0)
                step.advance()
        return trained, [_upload_index(store, layout.key(INDEX_FILE), trained, tmp)], False
    # Larger than the budget: merge the lists into one mmap-able .ivfdata file (faiss.contrib.ondisk).
    from faiss.contrib.ondisk import merge_ondisk
    names = []
    for i in range(n_parts):
        path = os.path.join(tmp, f"partial-{i:05d}.faiss")
        store.download(layout.partial(i), path)
        names.append(path)
    ivfdata = os.path.join(tmp, IVFDATA_FILE)
    merge_ondisk(trained, names, ivfdata)
    files = [_upload_index(store, layout.key(INDEX_FILE), trained, tmp),
             publish.upload_file(store, layout.key(IVFDATA_FILE), ivfdata)]
    return faiss.read_index(os.path.join(tmp, INDEX_FILE), faiss.IO_FLAG_ONDISK_SAME_DIR), files, True


def _upload_index(store: Store, key: str, index: faiss.Index, tmp: str) -> dict[str, Any]:
    """Written to tmp under the key's file name and uploaded from it (the file stays for the caller): serialising
    to bytes held two more copies of the index (0.8 GiB at 10M × PQ32)."""
    path = os.path.join(tmp, key.rsplit("/", 1)[-1])
    faiss.write_index(index, path)
    return publish.upload_file(store, key, path)


def _write_ids(plan: BuildPlan, row_to_faiss: np.ndarray, path: str) -> str:
    """ids.parquet: faiss_id → image_id, uri, content_sha256, width, height and the metadata columns, what a query
    worker returns with each hit and filters on; written one part at a time (rows in the source's order, which
    is faiss id order for a full build; readers map faiss ids to rows, IndexVersion.row_of_faiss). The images'
    colour histograms go along where the source has them, for colour-aware search."""
    names = plan.store.read_parquet_schema(plan.parts[0]).names
    columns = row_columns(names) + ([COLOUR_COLUMN] if COLOUR_COLUMN in names else [])
    writer = None
    try:
        for key, start in zip(plan.parts, plan.offsets, strict=True):
            for batch in plan.store.iter_parquet(key, columns):
                table = pa.Table.from_batches([batch])
                table = table.add_column(0, "faiss_id", pa.array(row_to_faiss[start:start + len(batch)], pa.int64()))
                start += len(batch)
                if writer is None:
                    writer = pq.ParquetWriter(path, table.schema, compression="zstd")
                writer.write_table(table.cast(writer.schema))
    finally:
        if writer is not None:
            writer.close()
    pa.default_memory_pool().release_unused()
    return path
