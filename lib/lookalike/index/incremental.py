"""Nightly incremental update: reuse LATEST's trained index, drop the ids of removed or changed images, add
the new ones under fresh ids — when a drift check says the trained quantizer still fits the data."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import faiss
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from lookalike.core.layout import TRAINED_FILE, IndexLayout
from lookalike.core.store import Store
from lookalike.embed.versions import EmbeddingsVersion
from lookalike.index.choice import IndexChoice
from lookalike.index.publish import latest_version
from lookalike.index.reader import IndexVersion, load_index_version
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


def plan_update(previous: IndexVersion, keys: pa.Table) -> Update:
    """keys: image_id, content_sha256 of the new version in row order. An image keeps its faiss id while
    its content is unchanged; changed content is a removal plus an addition."""
    prev = previous.ids
    prev_key = pc.binary_join_element_wise(prev["image_id"], prev["content_sha256"], "\x00")
    new_key = pc.binary_join_element_wise(keys["image_id"], keys["content_sha256"], "\x00")
    found = pc.index_in(new_key, value_set=prev_key)
    known = found.is_valid().to_numpy(zero_copy_only=False)
    position = pc.fill_null(found, -1).to_numpy(zero_copy_only=False).astype(np.int64)
    prev_ids = prev["faiss_id"].to_numpy()
    row_to_faiss = np.full(len(new_key), -1, dtype=np.int64)
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


def apply_update(previous: IndexVersion, trained: faiss.Index, update: Update, added: np.ndarray, n_new: int,
                 ) -> tuple[faiss.Index | None, np.ndarray | None, dict[str, Any]]:
    """Run the drift checks, then update a copy of LATEST's index and vectors. Returns (index, vectors,
    decision); (None, None, decision) with the reason when the index must be retrained."""
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
        return None, None, {"incremental": False, "reason": "retrained: " + "; ".join(reasons), "checks": checks}

    index = faiss.clone_index(previous.index)
    before = list_imbalance(index)
    if len(update.removed):
        index.remove_ids(faiss.IDSelectorBatch(update.removed))
    if len(added):
        index.add_with_ids(np.ascontiguousarray(added), update.added_ids)
    checks["imbalance_ratio"] = round(list_imbalance(index) / max(1e-9, before), 3)
    if checks["imbalance_ratio"] > MAX_IMBALANCE_RATIO:
        return None, None, {
            "incremental": False, "checks": checks,
            "reason": f"retrained: inverted lists became {checks['imbalance_ratio']}× more uneven (limit "
                      f"{MAX_IMBALANCE_RATIO}×)"}
    # Vectors are stored by faiss id: removed ids leave zero rows until the next retrain compacts them.
    size = int(max(update.row_to_faiss.max(initial=-1), len(previous.vectors) - 1)) + 1
    vectors = np.zeros((size, previous.vectors.shape[1]), dtype=np.float16)
    vectors[: len(previous.vectors)] = previous.vectors
    vectors[update.removed] = 0
    vectors[update.added_ids] = added.astype(np.float16)
    return index, vectors, {"incremental": True, "checks": checks,
                            "reason": f"reused the trained index of {previous.manifest['version']}: drift within "
                                      "bounds; removed and added ids only"}


@dataclass
class UpdateOutcome:
    """LATEST updated in place of a rebuild; index is None when the decision is to retrain (and why)."""

    decision: dict[str, Any]
    index: faiss.Index | None = None
    vectors: np.ndarray | None = None
    row_to_faiss: np.ndarray | None = None
    training: dict[str, Any] | None = None
    trained_bytes: bytes = b""
    choice: IndexChoice | None = None
    trained_ntotal: int = 0


def try_update(name: str, factory: str | None, store: Store, source: EmbeddingsVersion, parts: tuple[str, ...],
               n: int, tmp: str) -> UpdateOutcome | None:
    """Update LATEST when that is possible and the drift checks pass; None when there is no LATEST."""
    if latest_version(store, name) is None:
        return None
    previous = load_index_version(store, name, cache_dir=tmp, mmap=False)  # edited below
    m = previous.manifest
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
    trained_bytes = store.read_bytes(IndexLayout(store, name, m["version"]).key(TRAINED_FILE))
    keys = pa.concat_tables([source.read_part(p, ["image_id", "content_sha256"]) for p in parts])
    update = plan_update(previous, keys)
    added = source.read_rows(update.added_rows)
    index, vectors, decision = apply_update(previous, deserialize(trained_bytes), update, added, n)
    decision["from_version"] = m["version"]
    if not decision["incremental"]:
        return UpdateOutcome(decision)
    return UpdateOutcome(decision, index, vectors, update.row_to_faiss, m["training"], trained_bytes,
                         IndexChoice(**m["choice"]), m.get("trained_ntotal", m["ntotal"]))
