"""Nightly incremental update: reuse LATEST's trained index, drop the ids of removed or changed images, add
the new ones under fresh ids — when a drift check says the trained quantizer still fits the data.

What the driver holds does not grow with the catalogue beyond the index itself: LATEST's vectors stay mapped and
the new version's are written into a mapped file; images are matched on 64-bit keys of their ids and content
hashes (index.row_keys), and the plan is made before the index is read.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import faiss
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from lookalike.core.layout import IDS_FILE, INDEX_FILE, TRAINED_FILE, VECTORS_FILE, IndexLayout
from lookalike.core.row_keys import KeyCollision, RowKeys, match_rows
from lookalike.core.store import Store
from lookalike.embed.versions import EmbeddingsVersion
from lookalike.index.choice import IndexChoice
from lookalike.index.publish import latest_version, read_index_manifest
from lookalike.index.reader import fetch_version
from lookalike.index.search import deserialize
from lookalike.index.tasks import training_fit

MAX_ERROR_RATIO = 1.25      # new vectors' mean distance to their centroid vs the training sample's
MAX_IMBALANCE_RATIO = 1.5   # inverted-list imbalance after the update vs at training
MAX_GROWTH = 2.0            # nlist was sized for the N it was trained on


@dataclass
class Update:
    """What changes between LATEST and the new embeddings version, in faiss ids and new-version rows."""

    row_to_faiss: np.ndarray   # faiss id of every row of the new version, in row order
    removed: np.ndarray        # faiss ids in LATEST that are gone (removed, or their content changed)
    added_rows: np.ndarray     # rows of the new version that need vectors added
    added_ids: np.ndarray      # the faiss ids they get


@dataclass
class Latest:
    """LATEST as an update needs it once the plan is made: its index in memory (it is edited), its vectors
    mapped."""

    manifest: dict[str, Any]
    index: faiss.Index
    vectors: np.ndarray      # float16, row = faiss id, memory-mapped


def open_latest(manifest: dict[str, Any], local: str) -> Latest:
    return Latest(manifest, faiss.read_index(os.path.join(local, INDEX_FILE)),
                  np.load(os.path.join(local, VECTORS_FILE), mmap_mode="r", allow_pickle=False))


def latest_keys(local: str) -> tuple[np.ndarray, RowKeys]:
    """The faiss id and the keys of every row of a fetched version's ids.parquet, read a batch at a time."""
    ids = pq.ParquetFile(os.path.join(local, IDS_FILE))
    faiss_ids = ids.read(columns=["faiss_id"])["faiss_id"].to_numpy()
    return faiss_ids, RowKeys.of(ids.iter_batches(batch_size=1 << 16, columns=["image_id", "content_sha256"]))


def plan_update(faiss_ids: np.ndarray, previous: RowKeys, keys: RowKeys) -> Update:
    """faiss_ids, previous: LATEST's rows; keys: the new version's rows, in row order. An image keeps its faiss id
    while its content is unchanged; changed content is a removal plus an addition."""
    old_row = match_rows(previous, keys)
    same_id = old_row >= 0
    known = same_id.copy()
    known[same_id] = previous.content[old_row[same_id]] == keys.content[same_id]
    row_to_faiss = np.full(len(keys.ids), -1, dtype=np.int64)
    row_to_faiss[known] = faiss_ids[old_row[known]]
    kept = np.zeros(len(faiss_ids), dtype=bool)
    kept[old_row[known]] = True
    del old_row, same_id
    added_rows = np.flatnonzero(~known)
    next_id = int(faiss_ids.max()) + 1 if len(faiss_ids) else 0
    added_ids = np.arange(next_id, next_id + len(added_rows), dtype=np.int64)
    row_to_faiss[added_rows] = added_ids
    return Update(row_to_faiss, faiss_ids[~kept], added_rows, added_ids)


def list_imbalance(index: faiss.Index) -> float:
    ivf = faiss.extract_index_ivf(index)
    sizes = np.array([ivf.invlists.list_size(i) for i in range(ivf.nlist)], dtype=np.float64)
    return float(ivf.nlist * (sizes ** 2).sum() / max(1.0, sizes.sum()) ** 2)


def apply_update(previous: Latest, trained: faiss.Index, update: Update, added: np.ndarray, n_new: int,
                 vectors_path: str) -> tuple[faiss.Index | None, dict[str, Any]]:
    """Run the drift checks, then update LATEST's index (in place: it was read for this) and write the new
    version's vectors to vectors_path. Returns (index, decision); (None, decision) with the reason when the index
    must be retrained."""
    training = previous.manifest["training"]
    trained_on = previous.manifest.get("trained_ntotal", previous.manifest["ntotal"])
    checks: dict[str, Any] = {"added": len(update.added_rows), "removed": len(update.removed),
                              "growth": round(n_new / max(1, trained_on), 3)}
    if len(added):
        fit = training_fit(trained, added)
        checks["error_ratio"] = round(fit["coarse_error"] / training["coarse_error"], 3)
    reasons = []
    if checks["growth"] > MAX_GROWTH or checks["growth"] < 1 / MAX_GROWTH:
        reasons.append(f"the index holds {checks['growth']}× the vectors it was trained for (limit {MAX_GROWTH}×)")
    if checks.get("error_ratio", 0) > MAX_ERROR_RATIO:
        reasons.append(f"new vectors sit {checks['error_ratio']}× farther from their centroids than the training "
                       f"data (limit {MAX_ERROR_RATIO}×)")
    if reasons:
        return None, {"incremental": False, "reason": "retrained: " + "; ".join(reasons), "checks": checks}

    index = previous.index
    before = list_imbalance(index)
    if len(update.removed):
        index.remove_ids(faiss.IDSelectorBatch(update.removed))
    if len(added):
        index.add_with_ids(np.ascontiguousarray(added), update.added_ids)
    checks["imbalance_ratio"] = round(list_imbalance(index) / max(1e-9, before), 3)
    if checks["imbalance_ratio"] > MAX_IMBALANCE_RATIO:
        return None, {
            "incremental": False, "checks": checks,
            "reason": f"retrained: inverted lists became {checks['imbalance_ratio']}× more uneven (limit "
                      f"{MAX_IMBALANCE_RATIO}×)"}
    _write_vectors(previous.vectors, update, added, vectors_path)
    return index, {"incremental": True, "checks": checks,
                   "reason": f"reused the trained index of {previous.manifest['version']}: drift within bounds; "
                             "removed and added ids only"}


def _write_vectors(old: np.ndarray, update: Update, added: np.ndarray, path: str, chunk_rows: int = 1 << 18) -> None:
    """Vectors are stored by faiss id: LATEST's copied a chunk at a time into a mapped file, removed ids zeroed
    (they stay as zero rows until the next retrain compacts them), added ids written."""
    size = int(max(update.row_to_faiss.max(initial=-1), len(old) - 1)) + 1
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float16, shape=(size, old.shape[1]))
    for start in range(0, len(old), chunk_rows):
        end = min(start + chunk_rows, len(old))
        out[start:end] = old[start:end]
    out[update.removed] = 0
    out[update.added_ids] = added.astype(np.float16)
    out.flush()
    del out


@dataclass
class UpdateOutcome:
    """LATEST updated in place of a rebuild; index is None when the decision is to retrain (and why)."""

    decision: dict[str, Any]
    index: faiss.Index | None = None
    vectors_path: str = ""       # the new version's vectors (float16 .npy, row = faiss id) on local disk
    row_to_faiss: np.ndarray | None = None
    training: dict[str, Any] | None = None
    trained_bytes: bytes = b""
    choice: IndexChoice | None = None
    trained_ntotal: int = 0


def try_update(name: str, factory: str | None, codes: str, store: Store, source: EmbeddingsVersion,
               parts: tuple[str, ...], n: int, tmp: str) -> UpdateOutcome | None:
    """Update LATEST when that is possible and the drift checks pass; None when there is no LATEST."""
    latest = latest_version(store, name)
    if latest is None:
        return None
    m = read_index_manifest(store, name, latest)
    why_not = None
    if m["fingerprint_id"] != source.layout.fingerprint_id:
        why_not = f"the model changed ({m['fingerprint_id']} → {source.layout.fingerprint_id})"
    elif m["choice"]["nlist"] == 0:
        why_not = "LATEST is a flat index: rebuilding it costs no training"
    elif factory and factory != m["factory"]:
        why_not = f"--factory {factory} differs from LATEST's {m['factory']}"
    elif codes != "auto" and (codes == "binary") != bool(m["choice"].get("code_bits")):
        why_not = f"--codes {codes} differs from LATEST's {'binary' if m['choice'].get('code_bits') else 'pq'} codes"
    elif m.get("on_disk"):
        why_not = "LATEST keeps its lists on disk; on-disk lists are rebuilt, not edited"
    if why_not:
        return UpdateOutcome({"incremental": False, "reason": f"retrained: {why_not}"})
    local = fetch_version(store, m, tmp)
    faiss_ids, previous_keys = latest_keys(local)
    keys = RowKeys.of(batch for p in parts for batch in store.iter_parquet(p, ["image_id", "content_sha256"]))
    try:
        update = plan_update(faiss_ids, previous_keys, keys)
    except KeyCollision as e:
        return UpdateOutcome({"incremental": False, "reason": f"retrained: {e}", "from_version": m["version"]})
    del faiss_ids, previous_keys, keys
    added = source.read_rows(update.added_rows)
    pa.default_memory_pool().release_unused()  # the batches read: Arrow's allocator keeps freed pages otherwise
    trained_bytes = store.read_bytes(IndexLayout(store, name, m["version"]).key(TRAINED_FILE))
    vectors_path = os.path.join(tmp, VECTORS_FILE)
    index, decision = apply_update(open_latest(m, local), deserialize(trained_bytes), update, added, n,
                                   vectors_path)
    decision["from_version"] = m["version"]
    if index is None:
        return UpdateOutcome(decision)
    return UpdateOutcome(decision, index, vectors_path, update.row_to_faiss, m["training"], trained_bytes,
                         IndexChoice(**m["choice"]), m.get("trained_ntotal", m["ntotal"]))
