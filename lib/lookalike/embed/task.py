"""One embed task: its slice of the plan → one embeddings shard, one errors shard and a commit marker."""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from lookalike.core.errors import ArtefactError
from lookalike.core.layout import EmbeddingsLayout, features_part_of
from lookalike.core.schemas import embedding_type, embeddings_schema, errors_schema, features_schema
from lookalike.core.spark import task_resources
from lookalike.core.store import Store
from lookalike.embed.config import EmbedConfig
from lookalike.embed.engine import Embedded, EmbeddingEngine, Failed, Known
from lookalike.embed.provenance import Provenance
from lookalike.model.loading import cached_model, pick_device

PREVIOUS_SHA = "previous_content_sha256"
PLAN_COLUMNS = ("image_id", "uri", "task", PREVIOUS_SHA)


@dataclass(frozen=True)
class EmbedTask:
    """Shipped to executors by value (a few hundred bytes); everything heavy is loaded inside the task."""

    config: EmbedConfig
    fingerprint_id: str
    run_id: str
    has_carry: bool
    show_progress: bool = False

    def __call__(self, task: int) -> dict[str, Any]:
        store = Store(self.config.store, self.config.storage_options)
        layout = EmbeddingsLayout(store, self.fingerprint_id, self.run_id)
        if store.exists(layout.marker(task)):
            return store.read_json(layout.marker(task))  # committed by an earlier attempt or run
        started = time.perf_counter()
        plan = _read_plan_slice(store, layout.plan, task)

        cpus, gpu = task_resources()
        torch.set_num_threads(cpus)
        device = pick_device(gpu)
        model = cached_model(self.config.model, str(device))
        planned = Provenance(f"embeddings run {layout.prefix} (as planned by the driver)", self.fingerprint_id,
                             model.dim, self.config.model)
        planned.check_model(model.fingerprint_id, "executors must see the same weights as the driver",
                            user="this executor's model")
        carry = store.read_parquet(layout.carry) if self.has_carry else None
        known = frozenset(carry["content_sha256"].to_pylist()) if carry is not None else frozenset()

        engine = EmbeddingEngine(model, device, self.config.batch_size, self.config.io_threads,
                                 self.config.max_bytes, self.config.max_pixels, self.config.storage_options,
                                 self.config.local_features)
        bar = _progress_bar(plan.num_rows, task) if self.show_progress else None
        results = list(engine.run(plan["uri"].to_pylist(), known, (lambda _: bar.update()) if bar else None))
        if bar:
            bar.close()

        ok = sorted((r for r in results if not isinstance(r, Failed)), key=lambda r: r.index)
        failed = sorted((r for r in results if isinstance(r, Failed)), key=lambda r: r.index)
        vectors, widths, heights = _vectors_for(ok, carry, store, model.dim)
        metadata = plan.drop_columns([c for c in PLAN_COLUMNS if c in plan.column_names])
        shard = _embeddings_table(plan, ok, vectors, widths, heights, metadata, model.dim)
        errors = _errors_table(plan, failed, metadata)
        features_part = None
        if self.config.local_features:
            features = _features_table(ok, _carried_features(ok, carry, store), shard)
            features_part = {"key": layout.features_part(task), "rows": features.num_rows,
                             "bytes": store.write_parquet(layout.features_part(task), features)}
        shard_bytes = store.write_parquet(layout.part(task), shard)
        errors_bytes = store.write_parquet(layout.errors_part(task), errors)
        marker = {
            "task": task, "images": plan.num_rows, "rows": shard.num_rows, "errors": errors.num_rows,
            "embedded": engine.stats.embedded, "carried": engine.stats.known, **_id_changes(plan, ok),
            "part": {"key": layout.part(task), "rows": shard.num_rows, "bytes": shard_bytes},
            "errors_part": {"key": layout.errors_part(task), "rows": errors.num_rows, "bytes": errors_bytes},
            **({"features_part": features_part} if features_part else {}),
            "device": str(device), "cpus": cpus,
            "stats": {**engine.stats.as_dict(), "task_s": round(time.perf_counter() - started, 3)},
        }
        store.write_json(layout.marker(task), marker)  # the commit: a rerun skips this task from now on
        return marker


def _id_changes(plan: pa.Table, ok: list) -> dict[str, int]:
    """How many of this task's embedded images are new ids, ids with changed content, or unchanged."""
    if PREVIOUS_SHA not in plan.column_names:
        return {}
    previous = plan[PREVIOUS_SHA].to_pylist()
    before = [previous[r.index] for r in ok]
    return {"ids_added": sum(b is None for b in before),
            "ids_changed": sum(b is not None and b != r.content_sha256 for b, r in zip(before, ok, strict=True)),
            "ids_unchanged": sum(b == r.content_sha256 for b, r in zip(before, ok, strict=True))}


def _read_plan_slice(store: Store, key: str, task: int) -> pa.Table:
    # The plan is written with one row group per task, so a task reads only its own rows.
    table = store.read_row_group(key, task)
    if table.num_rows == 0 or table["task"][0].as_py() != task:
        raise ArtefactError(f"plan {key}: row group {task} does not hold task {task}; the plan is damaged, "
                           "start a new run id")
    return table


def _vectors_for(ok: list, carry: pa.Table | None, store: Store, dim: int):
    """Vectors for embedded rows from the engine, for known content from the previous version's shards."""
    vectors = np.empty((len(ok), dim), dtype=np.float32)
    widths = np.empty(len(ok), dtype=np.int32)
    heights = np.empty(len(ok), dtype=np.int32)
    wanted: dict[str, list[tuple[int, int]]] = defaultdict(list)  # previous part -> (row there, row here)
    known = [i for i, r in enumerate(ok) if isinstance(r, Known)]
    for i, r in enumerate(ok):
        if isinstance(r, Embedded):
            vectors[i], widths[i], heights[i] = r.vector, r.width, r.height
    if known:
        # Only this task's hashes are looked up (vectorised): the carry table spans the whole catalogue.
        hashes = pa.array([ok[i].content_sha256 for i in known], pa.string())
        at = pc.index_in(hashes, value_set=carry["content_sha256"]).to_numpy(zero_copy_only=False)
        parts = carry["part"].take(pa.array(at, pa.int64())).to_pylist()
        rows = carry["row"].take(pa.array(at, pa.int64())).to_pylist()
        for i, part, row in zip(known, parts, rows, strict=True):
            wanted[part].append((row, i))
    for part, pairs in wanted.items():
        prev = store.read_parquet(part, ["embedding", "width", "height"])
        rows = pa.array([p[0] for p in pairs], pa.int64())
        taken = prev.take(rows)
        here = [p[1] for p in pairs]
        vectors[here] = taken["embedding"].combine_chunks().values.to_numpy().reshape(-1, dim)
        widths[here] = taken["width"].to_numpy()
        heights[here] = taken["height"].to_numpy()
    return vectors, widths, heights


def _carried_features(ok: list, carry: pa.Table | None, store: Store) -> dict[int, tuple[int, bytes, bytes]]:
    """Features of known content, from the previous version's features parts (row-aligned with its embeddings
    parts, which the carry table points into): result position -> (keypoints, xy, descriptors)."""
    known = [i for i, r in enumerate(ok) if isinstance(r, Known)]
    if not known:
        return {}
    hashes = pa.array([ok[i].content_sha256 for i in known], pa.string())
    at = pa.array(pc.index_in(hashes, value_set=carry["content_sha256"]).to_numpy(zero_copy_only=False), pa.int64())
    wanted: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for i, part, row in zip(known, carry["part"].take(at).to_pylist(), carry["row"].take(at).to_pylist(),
                            strict=True):
        wanted[features_part_of(part)].append((row, i))
    out = {}
    for part, pairs in wanted.items():
        taken = store.read_parquet(part, ["keypoints", "xy", "descriptors"]).take(pa.array([p[0] for p in pairs]))
        for (_, i), n, xy, d in zip(pairs, taken["keypoints"].to_pylist(), taken["xy"].to_pylist(),
                                    taken["descriptors"].to_pylist(), strict=True):
            out[i] = (n, xy, d)
    return out


def _features_table(ok: list, carried: dict[int, tuple[int, bytes, bytes]], shard: pa.Table) -> pa.Table:
    """One row per shard row, in its order: extracted now for embedded images, carried for known ones."""
    counts, positions, descriptors = [], [], []
    for i, r in enumerate(ok):
        if isinstance(r, Embedded):
            xy, d = r.features.to_bytes()
            counts.append(len(r.features))
        else:
            n, xy, d = carried[i]
            counts.append(n)
        positions.append(xy)
        descriptors.append(d)
    return pa.Table.from_pydict({"image_id": shard["image_id"], "content_sha256": shard["content_sha256"],
                                 "keypoints": pa.array(counts, pa.int32()), "xy": pa.array(positions, pa.binary()),
                                 "descriptors": pa.array(descriptors, pa.binary())}, schema=features_schema())


def _embeddings_table(plan: pa.Table, ok: list, vectors: np.ndarray, widths, heights,
                      metadata: pa.Table, dim: int) -> pa.Table:
    idx = pa.array([r.index for r in ok], pa.int64())
    columns = {
        "image_id": plan["image_id"].take(idx),
        "uri": plan["uri"].take(idx),
        "content_sha256": pa.array([r.content_sha256 for r in ok], pa.string()),
        "width": pa.array(widths, pa.int32()),
        "height": pa.array(heights, pa.int32()),
        "embedding": pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1), pa.float32()), dim)
        if len(ok) else pa.array([], embedding_type(dim)),
    }
    columns.update({name: metadata[name].take(idx) for name in metadata.column_names})
    return pa.Table.from_pydict(columns, schema=embeddings_schema(dim, metadata.schema))


def _errors_table(plan: pa.Table, failed: list[Failed], metadata: pa.Table) -> pa.Table:
    idx = pa.array([r.index for r in failed], pa.int64())
    columns = {
        "image_id": plan["image_id"].take(idx),
        "uri": plan["uri"].take(idx),
        "stage": pa.array([r.stage for r in failed], pa.string()),
        "error_kind": pa.array([r.kind for r in failed], pa.string()),
        "message": pa.array([r.message for r in failed], pa.string()),
    }
    columns.update({name: metadata[name].take(idx) for name in metadata.column_names})
    return pa.Table.from_pydict(columns, schema=errors_schema(metadata.schema))


def _progress_bar(total: int, task: int):
    from tqdm.auto import tqdm
    return tqdm(total=total, desc=f"task {task}", unit="img", leave=False)
