"""Nightly incremental update: reuse LATEST's trained index, drop the ids of removed or changed images, add
the new ones under fresh ids — when a drift check says the trained quantizer still fits the data.

What the driver holds does not grow with the catalogue beyond the index itself: LATEST's vectors stay mapped and
the new version's are written into a mapped file; images are matched on their ids and a 64-bit prefix of their
content hashes (not on joined strings of both), so 10M images cost ~0.5 GB of keys instead of ~2 GB.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import faiss
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from lookalike.core.layout import IDS_FILE, INDEX_FILE, TRAINED_FILE, VECTORS_FILE, IndexLayout
from lookalike.core.store import Store
from lookalike.embed.versions import EmbeddingsVersion
from lookalike.index.choice import IndexChoice
from lookalike.index.publish import latest_version, open_version
from lookalike.index.reader import fetch_version
from lookalike.index.search import deserialize
from lookalike.index.tasks import training_fit

_KEY_CHUNK = 1 << 16         # content hashes folded at a time (32 MiB of uint64 nibbles)
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
class Keys:
    """Image ids and 64-bit content keys (content_keys) of a version's rows, in row order."""

    image_ids: pa.ChunkedArray
    content: np.ndarray      # uint64

    @classmethod
    def of(cls, batches: Iterable[pa.RecordBatch]) -> Keys:
        """From record batches with image_id and content_sha256: the hashes are folded a batch at a time, so
        their strings (~70 B a row) are never all held."""
        ids, keys = [], []
        for batch in batches:
            ids.append(batch.column("image_id"))
            keys.append(content_keys(batch.column("content_sha256")))
        return cls(pa.chunked_array(ids, pa.string()), np.concatenate(keys) if keys else np.zeros(0, np.uint64))


@dataclass
class Latest:
    """LATEST as an update needs it: its index in memory (it is edited), its vectors mapped, its ids' keys."""

    manifest: dict[str, Any]
    index: faiss.Index
    vectors: np.ndarray      # float16, row = faiss id, memory-mapped
    faiss_ids: np.ndarray    # faiss id of each row of its ids.parquet
    keys: Keys               # the same rows' image ids and content keys


def open_latest(store: Store, name: str, cache_dir: str) -> Latest:
    manifest = open_version(store, name, latest_version(store, name))
    local = fetch_version(store, manifest, cache_dir)
    ids = pq.ParquetFile(os.path.join(local, IDS_FILE))
    faiss_ids = ids.read(columns=["faiss_id"])["faiss_id"].to_numpy()
    keys = Keys.of(ids.iter_batches(batch_size=1 << 16, columns=["image_id", "content_sha256"]))
    return Latest(manifest, faiss.read_index(os.path.join(local, INDEX_FILE)),
                  np.load(os.path.join(local, VECTORS_FILE), mmap_mode="r", allow_pickle=False), faiss_ids, keys)


def content_keys(hashes: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """Each content hash folded to 64 bits, the same for the same string whatever array it sits in: the XOR of a
    hex SHA-256's four 64-bit words (vectorised), BLAKE2b-64 of any other string. What an update compares an id's
    old and new content by: different contents collide with probability 2⁻⁶⁴, and only two contents of the same
    image id are ever compared."""
    column = hashes.combine_chunks() if isinstance(hashes, pa.ChunkedArray) else hashes
    n = len(column)
    keys = np.zeros(n, dtype=np.uint64)
    if not n:
        return keys
    offsets = np.frombuffer(column.buffers()[1], np.int32, n + 1, column.offset * 4).astype(np.int64)
    data = np.frombuffer(column.buffers()[2], np.uint8)
    hexlike = (np.diff(offsets) == 64) & column.is_valid().to_numpy(zero_copy_only=False)
    rows = np.flatnonzero(hexlike)
    contiguous = len(rows) == n  # the usual case: every value is 64 characters, one after the other
    shifts = np.uint64(4) * np.arange(15, -1, -1, dtype=np.uint64)
    for lo in range(0, len(rows), _KEY_CHUNK):  # in chunks: a row's nibbles are 512 bytes as uint64
        chunk = rows[lo:lo + _KEY_CHUNK]
        chars = (data[offsets[0] + 64 * lo: offsets[0] + 64 * (lo + len(chunk))] if contiguous
                 else data[offsets[chunk][:, None] + np.arange(64)]).reshape(len(chunk), 4, 16)
        is_hex = ((chars >= ord("0")) & (chars <= ord("9")) | (chars >= ord("a")) & (chars <= ord("f"))).all(
            axis=(1, 2))
        nibbles = np.where(chars >= ord("a"), chars - (ord("a") - 10), chars - ord("0")).astype(np.uint64)
        keys[chunk] = np.bitwise_xor.reduce((nibbles << shifts).sum(axis=2, dtype=np.uint64), axis=1)
        hexlike[chunk[~is_hex]] = False
    for i in np.flatnonzero(~hexlike):
        keys[i] = int.from_bytes(hashlib.blake2b(str(column[int(i)].as_py()).encode(), digest_size=8).digest(),
                                 "little")
    return keys


def plan_update(previous: Latest, keys: Keys) -> Update:
    """keys: of the new version's rows, in row order. An image keeps its faiss id while its content is unchanged;
    changed content is a removal plus an addition."""
    found = pc.index_in(keys.image_ids, value_set=previous.keys.image_ids)
    position = pc.fill_null(found, -1).to_numpy(zero_copy_only=False).astype(np.int64)
    same_id = position >= 0
    known = same_id.copy()
    known[same_id] = previous.keys.content[position[same_id]] == keys.content[same_id]
    prev_ids = previous.faiss_ids
    row_to_faiss = np.full(len(keys.content), -1, dtype=np.int64)
    row_to_faiss[known] = prev_ids[position[known]]
    added_rows = np.flatnonzero(~known)
    next_id = int(prev_ids.max()) + 1 if len(prev_ids) else 0
    added_ids = np.arange(next_id, next_id + len(added_rows), dtype=np.int64)
    row_to_faiss[added_rows] = added_ids
    removed = np.setdiff1d(prev_ids, row_to_faiss[known], assume_unique=True)
    return Update(row_to_faiss, removed, added_rows, added_ids)


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


def try_update(name: str, factory: str | None, store: Store, source: EmbeddingsVersion, parts: tuple[str, ...],
               n: int, tmp: str) -> UpdateOutcome | None:
    """Update LATEST when that is possible and the drift checks pass; None when there is no LATEST."""
    latest = latest_version(store, name)
    if latest is None:
        return None
    m = open_version(store, name, latest)
    why_not = None
    if m["fingerprint_id"] != source.layout.fingerprint_id:
        why_not = f"the model changed ({m['fingerprint_id']} → {source.layout.fingerprint_id})"
    elif m["choice"]["nlist"] == 0:
        why_not = "LATEST is a flat index: rebuilding it costs no training"
    elif factory and factory != m["factory"]:
        why_not = f"--factory {factory} differs from LATEST's {m['factory']}"
    elif m.get("on_disk"):
        why_not = "LATEST keeps its lists on disk; on-disk lists are rebuilt, not edited"
    if why_not:
        return UpdateOutcome({"incremental": False, "reason": f"retrained: {why_not}"})
    previous = open_latest(store, name, tmp)
    trained_bytes = store.read_bytes(IndexLayout(store, name, m["version"]).key(TRAINED_FILE))
    keys = Keys.of(batch for p in parts for batch in store.iter_parquet(p, ["image_id", "content_sha256"]))
    update = plan_update(previous, keys)
    del keys
    added = source.read_rows(update.added_rows)
    vectors_path = os.path.join(tmp, VECTORS_FILE)
    index, decision = apply_update(previous, deserialize(trained_bytes), update, added, n, vectors_path)
    decision["from_version"] = m["version"]
    if index is None:
        return UpdateOutcome(decision)
    return UpdateOutcome(decision, index, vectors_path, update.row_to_faiss, m["training"], trained_bytes,
                         IndexChoice(**m["choice"]), m.get("trained_ntotal", m["ntotal"]))
