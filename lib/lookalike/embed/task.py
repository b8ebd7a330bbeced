"""One embed task: its slice of the plan → one embeddings shard, one errors shard and a commit marker."""

from __future__ import annotations

import dataclasses
import resource
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
from lookalike.core.progress import tick
from lookalike.core.row_keys import string_keys
from lookalike.core.schemas import (
    COLOUR_COLUMN,
    embedding_type,
    embeddings_schema,
    errors_schema,
    features_schema,
)
from lookalike.core.spark import task_resources
from lookalike.core.store import Store
from lookalike.embed.carry import CarryLookup
from lookalike.embed.config import EmbedConfig
from lookalike.embed.engine import Embedded, EmbeddingEngine, Failed, Known
from lookalike.embed.plan import CARRY_PART, CARRY_ROW, PLAN_COLUMNS, PREVIOUS_KEY
from lookalike.embed.provenance import Provenance
from lookalike.embed.source_tags import LISTED_SHA, SOURCE_TAG
from lookalike.image.local_features import use_opencv_threads
from lookalike.model.loading import cached_model, pick_device

Location = tuple[str, int]  # (part key, row) of a vector in the previous version


@dataclass(frozen=True)
class EmbedTask:
    """Shipped to executors by value (a few hundred bytes); everything heavy is loaded inside the task."""

    config: EmbedConfig
    fingerprint_id: str
    run_id: str
    has_carry: bool

    def __call__(self, task: int) -> dict[str, Any]:
        store = Store(self.config.store, self.config.storage_options)
        layout = EmbeddingsLayout(store, self.fingerprint_id, self.run_id, self.config.namespace)
        if store.exists(layout.marker(task)):
            return store.read_json(layout.marker(task))  # committed by an earlier attempt or run
        started = time.perf_counter()
        plan = _read_plan_slice(store, layout.plan, task)

        cpus, gpu = task_resources()
        torch.set_num_threads(cpus)
        use_opencv_threads(cpus)  # its default is the node's CPU count, in every IO thread's keypoint extraction
        device = pick_device(gpu)
        model = cached_model(self.config.model, str(device))
        planned = Provenance(f"embeddings run {layout.prefix} (as planned by the driver)", self.fingerprint_id,
                             model.dim, self.config.model)
        planned.check_model(model.fingerprint_id, "executors must see the same weights as the driver",
                            user="this executor's model")
        carry = CarryLookup(store, layout.carry) if self.has_carry else None
        engine = EmbeddingEngine(model, device, self.config.batch_size, self.config.io_threads,
                                 self.config.max_bytes, self.config.max_pixels, self.config.storage_options,
                                 self.config.local_features, self.config.images_in_flight)
        # Each image ticks the driver's progress when the task runs in its process (the in-process master).
        results, locations, unread, read = _results(plan, engine, carry, store, lambda _: tick())

        ok = sorted((r for r in results if not isinstance(r, Failed)), key=lambda r: r.index)
        failed = sorted((r for r in results if isinstance(r, Failed)), key=lambda r: r.index)
        vectors, widths, heights, colours = _vectors_for(ok, locations, store, model.dim)
        metadata = plan.drop_columns([c for c in PLAN_COLUMNS if c in plan.column_names])
        shard = _embeddings_table(plan, ok, vectors, widths, heights, colours, metadata, model.dim)
        errors = _errors_table(plan, failed, metadata)
        features_part = None
        if self.config.local_features:
            features = _features_table(ok, _carried_features(ok, locations, store), shard)
            features_part = {"key": layout.features_part(task), "rows": features.num_rows,
                             "bytes": store.write_parquet(layout.features_part(task), features)}
        shard_bytes = store.write_parquet(layout.part(task), shard)
        errors_bytes = store.write_parquet(layout.errors_part(task), errors)
        carried = sum(isinstance(r, Known) for r in results)
        marker = {
            "task": task, "images": plan.num_rows, "rows": shard.num_rows, "errors": errors.num_rows,
            "embedded": engine.stats.embedded, "carried": carried, **_id_changes(plan, ok),
            # What finding the changes cost this task: objects read, their bytes, hashes computed.
            "carried_unread": unread, "read": read, "bytes_read": engine.stats.bytes_read,
            "hashed": engine.stats.hashed,
            "carried_by_hash": engine.stats.known, "carry_row_groups_read": carry.row_groups_read if carry else 0,
            "worker_peak_rss_mb": _peak_rss_mb(),
            "part": {"key": layout.part(task), "rows": shard.num_rows, "bytes": shard_bytes},
            "errors_part": {"key": layout.errors_part(task), "rows": errors.num_rows, "bytes": errors_bytes},
            **({"features_part": features_part} if features_part else {}),
            "device": str(device), "cpus": cpus,
            "stats": {**engine.stats.as_dict(), "task_s": round(time.perf_counter() - started, 3)},
        }
        store.write_json(layout.marker(task), marker)  # the commit: a rerun skips this task from now on
        return marker


def _results(plan: pa.Table, engine: EmbeddingEngine, carry: CarryLookup | None, store: Store, on_result
             ) -> tuple[list, dict[int, Location], int, int]:
    """Every plan row's result (by plan row index), where each Known one's vector is, how many were carried
    unread and how many read.

    Rows the plan carries (same id, same tag) are Known without a read, their hashes read from the previous
    version's rows; rows whose vouched-for hash (listed_sha256) the carry index holds likewise; the others go
    through the engine, whose Known results (bytes embedded before under another id or tag) are located in the
    carry index.
    """
    results: list = []
    locations: dict[int, Location] = {}
    parts, rows = plan[CARRY_PART].to_pylist(), plan[CARRY_ROW].to_pylist()
    by_part: dict[int, list[int]] = defaultdict(list)
    for i, part in enumerate(parts):
        if part is not None:
            by_part[part].append(i)
    for part, indexes in by_part.items():
        key = carry.part_key(part)
        hashes = store.read_parquet(key, ["content_sha256"])["content_sha256"].take(
            pa.array([rows[i] for i in indexes], pa.int64())).to_pylist()
        for i, sha in zip(indexes, hashes, strict=True):
            results.append(Known(i, sha))
            locations[i] = (key, rows[i])
    to_read = []
    for i, (part, listed) in enumerate(zip(parts, plan[LISTED_SHA].to_pylist(), strict=True)):
        if part is not None:
            continue
        at = carry.locate(listed) if listed is not None and carry is not None else None
        if at is None:
            to_read.append(i)
        else:
            results.append(Known(i, listed))
            locations[i] = at
    if on_result:
        for r in results:
            on_result(r)
    unread = len(results)
    uris = plan["uri"].take(pa.array(to_read, pa.int64())).to_pylist()
    for r in engine.run(uris, carry if carry is not None else frozenset(), on_result):
        r = dataclasses.replace(r, index=to_read[r.index])
        if isinstance(r, Known):
            locations[r.index] = carry.locate(r.content_sha256)
        results.append(r)
    return results, locations, unread, len(to_read)


def _peak_rss_mb() -> int:
    """This Python worker's peak resident memory so far (Spark reuses a worker for many tasks)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024


def _id_changes(plan: pa.Table, ok: list) -> dict[str, int]:
    """How many of this task's embedded images are new ids, ids with changed content, or unchanged."""
    column = plan[PREVIOUS_KEY]
    is_new = pc.is_null(column).to_numpy(zero_copy_only=False)
    keys = pc.fill_null(column, 0).to_numpy()
    rows = np.array([r.index for r in ok], np.int64)
    now = string_keys(pa.array([r.content_sha256 for r in ok], pa.string()))
    new, same = is_new[rows], keys[rows] == now
    return {"ids_added": int(new.sum()), "ids_changed": int((~new & ~same).sum()),
            "ids_unchanged": int((~new & same).sum())}


def _read_plan_slice(store: Store, key: str, task: int) -> pa.Table:
    # The plan is written with one row group per task, so a task reads only its own rows.
    table = store.read_row_group(key, task)  # empty when every image of the task was gone at a rerun (embed.repair)
    if table.num_rows and table["task"][0].as_py() != task:
        raise ArtefactError(f"plan {key}: row group {task} does not hold task {task}; the plan is damaged, "
                           "start a new run id")
    # A plan written before 64-bit keys: its hash columns are not metadata (its carry rows are still valid).
    table = table.drop_columns([c for c in ("previous_content_sha256", "carry_sha256") if c in table.column_names])
    # A plan written before source tags and listed carry-over: every image is read, as it was planned.
    for name, kind in ((SOURCE_TAG, pa.string()), (LISTED_SHA, pa.string()), (PREVIOUS_KEY, pa.uint64()),
                       (CARRY_PART, pa.int32()), (CARRY_ROW, pa.int64())):
        if name not in table.column_names:
            table = table.append_column(name, pa.nulls(table.num_rows, kind))
    return table


def _vectors_for(ok: list, locations: dict[int, Location], store: Store, dim: int):
    """Vectors (and sizes and colours) for embedded rows from the engine, for known content from the previous
    version's shards (no colours where those shards were written before colours were kept)."""
    vectors = np.empty((len(ok), dim), dtype=np.float32)
    widths = np.empty(len(ok), dtype=np.int32)
    heights = np.empty(len(ok), dtype=np.int32)
    colours: list[bytes | None] = [None] * len(ok)
    wanted: dict[str, list[tuple[int, int]]] = defaultdict(list)  # previous part -> (row there, row here)
    for i, r in enumerate(ok):
        if isinstance(r, Embedded):
            vectors[i], widths[i], heights[i], colours[i] = r.vector, r.width, r.height, r.colours
        else:
            part, row = locations[r.index]
            wanted[part].append((row, i))
    for part, pairs in wanted.items():
        has_colours = COLOUR_COLUMN in store.read_parquet_schema(part).names
        prev = store.read_parquet(part, ["embedding", "width", "height", *([COLOUR_COLUMN] if has_colours else [])])
        taken = prev.take(pa.array([p[0] for p in pairs], pa.int64()))
        here = [p[1] for p in pairs]
        vectors[here] = taken["embedding"].combine_chunks().values.to_numpy().reshape(-1, dim)
        widths[here] = taken["width"].to_numpy()
        heights[here] = taken["height"].to_numpy()
        if has_colours:
            for i, value in zip(here, taken[COLOUR_COLUMN].to_pylist(), strict=True):
                colours[i] = value
    return vectors, widths, heights, colours


def _carried_features(ok: list, locations: dict[int, Location], store: Store) -> dict[int, tuple[int, bytes, bytes]]:
    """Features of known content, from the previous version's features parts (row-aligned with its embeddings
    parts): result position -> (keypoints, xy, descriptors)."""
    wanted: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for i, r in enumerate(ok):
        if isinstance(r, Known):
            part, row = locations[r.index]
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


def _embeddings_table(plan: pa.Table, ok: list, vectors: np.ndarray, widths, heights, colours: list[bytes | None],
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
        SOURCE_TAG: plan[SOURCE_TAG].take(idx),  # what the listing said of these bytes: the next night compares
        COLOUR_COLUMN: pa.array(colours, pa.binary()),
    }
    columns.update({name: metadata[name].take(idx) for name in metadata.column_names})
    return pa.Table.from_pydict(columns, schema=embeddings_schema(dim, metadata.schema, source_tags=True,
                                                                  colours=True))


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

