"""The embed job: images table → embeddings version (Parquet shards, errors table, manifest, LATEST)."""

from __future__ import annotations

import logging
import time
from typing import Any

from lookalike.core.errors import JobFailed
from lookalike.core.layout import EmbeddingsLayout, embeddings_latest_key
from lookalike.core.logs import bind, run_context
from lookalike.core.manifest import new_manifest, new_run_id, read_manifest
from lookalike.core.spark import run_tasks
from lookalike.core.store import Store
from lookalike.embed.catalogue import load_catalogue
from lookalike.embed.config import EmbedConfig
from lookalike.embed.plan import PlanInfo, write_plan
from lookalike.embed.repair import record_failure, replan_failed
from lookalike.embed.task import EmbedTask
from lookalike.embed.versions import KIND, latest_run_id
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
    layout = EmbeddingsLayout(store, fingerprint_id, run_id, config.namespace)
    if store.exists(layout.manifest):
        log.info("run %s is already complete", run_id)
        manifest = read_manifest(store, layout.manifest, KIND)
        _point_latest(store, config, manifest)
        return manifest

    timings: dict[str, float] = {}
    if store.exists(layout.plan_info):  # written last when planning, so the plan is whole
        plan_info = PlanInfo.from_dict(store.read_json(layout.plan_info))
        log.info("resuming run %s: %d tasks planned", run_id, plan_info.tasks)
        if store.exists(layout.failed):  # it failed its error rate: the inputs may have been fixed since
            plan_info = replan_failed(config, store, layout, plan_info)
    else:
        t0 = time.perf_counter()
        catalogue = load_catalogue(config.images, config.storage_options)  # fails fast, before Spark
        timings["list_s"] = round(time.perf_counter() - t0, 3)
        t0 = time.perf_counter()
        plan_info = write_plan(config, store, layout, catalogue)
        del catalogue
        timings["plan_s"] = round(time.perf_counter() - t0, 3)

    t0 = time.perf_counter()
    n_tasks = plan_info.tasks
    task = EmbedTask(config, fingerprint_id, run_id, plan_info.previous_run is not None)
    markers = run_tasks(task, list(range(n_tasks)), config.master, "lookalike-embed", config.spark_conf,
                        stage="embed", unit="images", total=plan_info.images)
    timings["tasks_s"] = round(time.perf_counter() - t0, 3)
    markers = sorted(markers, key=lambda m: m["task"])
    if [m["task"] for m in markers] != list(range(n_tasks)):
        raise JobFailed(f"expected {n_tasks} task results, got {len(markers)}: rerun with --run-id {run_id}")

    counts = _counts(markers, plan_info)
    rate = counts["failed"] / max(1, counts["images"])
    if rate > config.max_error_rate:
        record_failure(store, layout, markers)
        raise ErrorRateExceeded(
            f"{counts['failed']} of {counts['images']} images failed ({rate:.1%}), above max_error_rate "
            f"{config.max_error_rate:.1%}; the errors table is at {store.child_url(layout.key('errors'))}. "
            f"Fix the inputs or raise --max-error-rate, then rerun with --run-id {run_id}")

    timings["total_s"] = round(time.perf_counter() - started, 3)
    manifest = new_manifest(
        KIND, run_id=run_id, fingerprint_id=fingerprint_id, fingerprint=model.fingerprint,
        dim=model.dim, counts=counts, timings={**timings, **_engine_totals(markers)},
        previous_run=plan_info.previous_run, inputs={"images": config.images, "store": config.store},
        config=config.for_manifest(), schema_version=1,
        files={"embeddings": [m["part"] for m in markers], "errors": [m["errors_part"] for m in markers],
               **({"features": [m["features_part"] for m in markers]} if config.local_features else {})},
        local_features=config.local_features.as_dict() if config.local_features else None,
        change_detection={"mode": plan_info.change_detection, "untagged": plan_info.untagged},
        memory={"worker_peak_rss_mb": max((m.get("worker_peak_rss_mb", 0) for m in markers), default=0)},
    )
    store.write_json(layout.manifest, manifest)                 # the commit of the version
    _point_latest(store, config, manifest)                      # then readers move to it
    return manifest


def _point_latest(store: Store, config: EmbedConfig, manifest: dict[str, Any]) -> None:
    """LATEST names this version, unless another run moved it on since this one was planned: a run killed
    between its manifest and its LATEST finishes the move when it is resumed."""
    fingerprint_id, run_id = manifest["fingerprint_id"], manifest["run_id"]
    latest = latest_run_id(store, fingerprint_id, config.namespace)
    if latest != run_id and latest == manifest.get("previous_run"):
        store.write_text(embeddings_latest_key(fingerprint_id, config.namespace), run_id + "\n")


def _counts(markers: list[dict[str, Any]], plan_info: PlanInfo) -> dict[str, int]:
    return {
        "images": sum(m["images"] for m in markers),
        "rows": sum(m["rows"] for m in markers),
        "new": sum(m["embedded"] for m in markers),
        "carried": sum(m["carried"] for m in markers),
        "failed": sum(m["errors"] for m in markers),
        "removed": plan_info.removed,
        # What finding the changes cost: carried on the listing's word, read from the store, hashed.
        "unchanged_by_listing": sum(m.get("carried_unread", 0) for m in markers),
        **{key: sum(m.get(key, 0) for m in markers) for key in ("read", "bytes_read", "hashed", "carried_by_hash")},
        # By image id against the previous version (a resumed run planned before these existed has none).
        **{key: sum(m.get(key, 0) for m in markers) for key in ("ids_added", "ids_changed", "ids_unchanged")},
        "tasks": len(markers),
    }


def _engine_totals(markers: list[dict[str, Any]]) -> dict[str, float]:
    keys = ("read_s", "decode_s", "model_s", "wall_s")
    totals = {f"engine_{k}": round(sum(m["stats"][k] for m in markers), 3) for k in keys}
    totals["devices"] = sorted({m["device"] for m in markers})
    return totals

