"""The embed job: images table → embeddings version (Parquet shards, errors table, manifest, LATEST)."""

from __future__ import annotations

import logging
import math
import time
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from lookalike.core.errors import JobFailed
from lookalike.core.layout import EmbeddingsLayout, embeddings_latest_key
from lookalike.core.logs import bind, run_context
from lookalike.core.manifest import ManifestError, new_manifest, new_run_id, read_manifest
from lookalike.core.spark import IN_PROCESS, run_tasks
from lookalike.core.store import Store
from lookalike.embed.catalogue import load_catalogue
from lookalike.embed.config import EmbedConfig
from lookalike.embed.task import PREVIOUS_SHA, EmbedTask
from lookalike.embed.versions import KIND, latest_run_id, open_version
from lookalike.model.loading import cached_model

log = logging.getLogger(__name__)


class ErrorRateExceeded(JobFailed):
    """More images failed than max_error_rate allows; the version is not committed."""


def run(config: EmbedConfig) -> dict[str, Any]:
    """Embed every image of the catalogue into a new embeddings version and return its manifest.

    Rerunning with the same run id resumes: committed tasks are skipped, the others are redone, and a run
    that already has its manifest returns it unchanged.
    """
    run_id = config.run_id or new_run_id()
    with run_context(run_id=run_id):
        return _run(config, run_id)


def _run(config: EmbedConfig, run_id: str) -> dict[str, Any]:
    started = time.perf_counter()
    store = Store(config.store, config.storage_options)
    model = cached_model(config.model, "cpu")  # the driver needs only the fingerprint and dimension
    fingerprint_id = model.fingerprint_id
    bind(fingerprint_id=fingerprint_id)
    layout = EmbeddingsLayout(store, fingerprint_id, run_id)
    if store.exists(layout.manifest):
        log.info("run %s is already complete", run_id)
        return read_manifest(store, layout.manifest, KIND)

    timings: dict[str, float] = {}
    if store.exists(layout.plan_info):  # written last when planning, so the plan is whole
        plan_info = store.read_json(layout.plan_info)
        log.info("resuming run %s: %d tasks planned", run_id, plan_info["tasks"])
    else:
        t0 = time.perf_counter()
        catalogue = load_catalogue(config.images, config.storage_options)  # fails fast, before Spark
        plan_info = _write_plan(config, store, layout, catalogue)
        timings["plan_s"] = round(time.perf_counter() - t0, 3)

    t0 = time.perf_counter()
    n_tasks = plan_info["tasks"]
    task = EmbedTask(config, fingerprint_id, run_id, plan_info["previous_run"] is not None,
                     show_progress=config.progress and config.master == IN_PROCESS)
    bar = _TaskBar(n_tasks, plan_info["images"]) if config.progress and config.master != IN_PROCESS else None
    try:
        markers = run_tasks(task, list(range(n_tasks)), config.master, "lookalike-embed", config.spark_conf,
                            on_progress=bar.set_done if bar else None)
    finally:
        if bar:
            bar.close()
    timings["tasks_s"] = round(time.perf_counter() - t0, 3)
    markers = sorted(markers, key=lambda m: m["task"])
    if [m["task"] for m in markers] != list(range(n_tasks)):
        raise JobFailed(f"expected {n_tasks} task results, got {len(markers)}: rerun with --run-id {run_id}")

    counts = _counts(markers, plan_info)
    rate = counts["failed"] / max(1, counts["images"])
    if rate > config.max_error_rate:
        raise ErrorRateExceeded(
            f"{counts['failed']} of {counts['images']} images failed ({rate:.1%}), above max_error_rate "
            f"{config.max_error_rate:.1%}; the errors table is at {store.child_url(layout.key('errors'))}. "
            f"Fix the inputs or raise --max-error-rate, then rerun with --run-id {run_id}")

    timings["total_s"] = round(time.perf_counter() - started, 3)
    manifest = new_manifest(
        KIND, run_id=run_id, fingerprint_id=fingerprint_id, fingerprint=model.fingerprint,
        dim=model.dim, counts=counts, timings={**timings, **_engine_totals(markers)},
        previous_run=plan_info["previous_run"], inputs={"images": config.images, "store": config.store},
        config=config.for_manifest(), schema_version=1,
        files={"embeddings": [m["part"] for m in markers], "errors": [m["errors_part"] for m in markers],
               **({"features": [m["features_part"] for m in markers]} if config.local_features else {})},
        local_features=config.local_features.as_dict() if config.local_features else None,
    )
    store.write_json(layout.manifest, manifest)                 # the commit of the version
    store.write_text(embeddings_latest_key(fingerprint_id), run_id + "\n")  # then readers move to it
    return manifest


def _write_plan(config: EmbedConfig, store: Store, layout: EmbeddingsLayout, catalogue: pa.Table) -> dict[str, Any]:
    """Fix the task of every image and the carry-over table; a resumed run reuses both unchanged."""
    per_task = config.images_per_task
    n_tasks = math.ceil(catalogue.num_rows / per_task)
    tasks = pa.array([i // per_task for i in range(catalogue.num_rows)], pa.int32())
    plan = catalogue.append_column("task", tasks)

    previous_run = None
    removed = 0
    carry_rows = 0
    prev_run_id = latest_run_id(store, layout.fingerprint_id) if config.incremental else None
    previous = None
    if prev_run_id is not None and prev_run_id != layout.run_id:
        try:
            previous = open_version(store, layout.fingerprint_id, prev_run_id)
        except ManifestError as e:
            log.warning("not carrying over from %s: %s", prev_run_id, e)
        else:
            if not _features_carry(config, previous):
                previous = None
        if previous is not None:
            rows = _previous_rows(previous)
            carry = rows.group_by("content_sha256", use_threads=False).aggregate(
                [("part", "first"), ("row", "first")]).rename_columns(["content_sha256", "part", "row"])
            carry_rows = carry.num_rows
            store.write_parquet(layout.carry, carry)
            previous_run = prev_run_id
            removed = int(pc.sum(pc.invert(pc.is_in(rows["image_id"], catalogue["image_id"]))).as_py() or 0)
            # Each image's content hash in the previous version (null for a new id): tasks compare it with
            # the hash they compute, so a run reports which ids were added, changed or left unchanged.
            at = pc.index_in(catalogue["image_id"], value_set=rows["image_id"])
            plan = plan.append_column(PREVIOUS_SHA, rows["content_sha256"].take(at))
    if PREVIOUS_SHA not in plan.column_names:
        plan = plan.append_column(PREVIOUS_SHA, pa.nulls(plan.num_rows, pa.string()))

    sink = pa.BufferOutputStream()
    pq.write_table(plan, sink, row_group_size=per_task)  # one row group per task
    store.write_bytes(layout.plan, sink.getvalue().to_pybytes())
    info = {"tasks": n_tasks, "images": catalogue.num_rows, "previous_run": previous_run,
            "removed": removed, "carry_rows": carry_rows}
    store.write_json(layout.plan_info, info)
    return info


def _features_carry(config: EmbedConfig, previous) -> bool:
    """Whether the previous version can be carried over: always for vectors alone; with local features only
    from a version that has the same ones (else every image is read again, once, to extract them)."""
    wanted = config.local_features.as_dict() if config.local_features else None
    if wanted is None or previous.manifest.get("local_features") == wanted:
        return True
    log.warning("not carrying over from %s: it has local features %s, this run wants %s (every image is read "
                "and embedded again, once)", previous.layout.run_id, previous.manifest.get("local_features"), wanted)
    return False


def _previous_rows(previous) -> pa.Table:
    """image_id, content_sha256, and where each row sits (part, row) in the previous version: one read."""
    tables = []
    for key in previous.parts:
        t = previous.read_part(key, ["image_id", "content_sha256"])
        tables.append(t.append_column("part", pa.array([key] * t.num_rows, pa.string()))
                       .append_column("row", pa.array(range(t.num_rows), pa.int64())))
    return pa.concat_tables(tables) if tables else pa.table(
        {"image_id": pa.array([], pa.string()), "content_sha256": pa.array([], pa.string()),
         "part": pa.array([], pa.string()), "row": pa.array([], pa.int64())})


def _counts(markers: list[dict[str, Any]], plan_info: dict[str, Any]) -> dict[str, int]:
    return {
        "images": sum(m["images"] for m in markers),
        "rows": sum(m["rows"] for m in markers),
        "new": sum(m["embedded"] for m in markers),
        "carried": sum(m["carried"] for m in markers),
        "failed": sum(m["errors"] for m in markers),
        "removed": plan_info["removed"],
        # By image id against the previous version (a resumed run planned before these existed has none).
        **{key: sum(m.get(key, 0) for m in markers) for key in ("ids_added", "ids_changed", "ids_unchanged")},
        "tasks": len(markers),
    }


def _engine_totals(markers: list[dict[str, Any]]) -> dict[str, float]:
    keys = ("read_s", "decode_s", "model_s", "wall_s")
    totals = {f"engine_{k}": round(sum(m["stats"][k] for m in markers), 3) for k in keys}
    totals["devices"] = sorted({m["device"] for m in markers})
    return totals


class _TaskBar:
    """Progress over Spark tasks, reported in images (tasks hold about the same number each)."""

    def __init__(self, tasks: int, images: int):
        from tqdm.auto import tqdm
        self.per_task = images / max(1, tasks)
        self.bar = tqdm(total=images, unit="img", desc="embed")

    def set_done(self, tasks_done: int) -> None:
        self.bar.n = min(self.bar.total, round(tasks_done * self.per_task))
        self.bar.refresh()

    def close(self) -> None:
        self.bar.close()
