"""A failed run's second chance. A run with more failed images than max_error_rate commits nothing and says "fix
the inputs, then rerun": the user deletes or replaces the bad files and runs again. The rerun re-plans the failed
rows from a fresh listing (an image gone is dropped, an image replaced is read again under its new listing), and
runs again only the tasks that held such rows or rows that failed for a reason that can pass without the bytes
changing (a store's hiccup, a permission since granted); every other committed task is kept.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from lookalike.core.layout import EmbeddingsLayout
from lookalike.core.scratch import scratch
from lookalike.core.store import Store
from lookalike.embed.catalogue import load_catalogue
from lookalike.embed.config import EmbedConfig
from lookalike.embed.plan import PREVIOUS_KEY, PlanInfo
from lookalike.embed.source_tags import LISTED_SHA, SOURCE_TAG
from lookalike.image.read import MAY_PASS_UNCHANGED

log = logging.getLogger(__name__)

# The plan's columns a fresh listing replaces for an image that changed (metadata too, where the table has it).
RELISTED = ("uri", SOURCE_TAG, LISTED_SHA)


@dataclass(frozen=True)
class Repair:
    rerun: list[int]      # tasks whose markers are dropped, so that they run again
    dropped: int          # failed images no longer listed
    dropped_previous: int  # ... of which the previous version held the id: removed from the catalogue
    refreshed: int        # failed images listed again under another tag or uri


def record_failure(store: Store, layout: EmbeddingsLayout, markers: list[dict[str, Any]]) -> None:
    """What a rerun re-plans: the tasks that had failed images."""
    store.write_json(layout.failed, {"tasks": sorted(m["task"] for m in markers if m["errors"])})


def replan_failed(config: EmbedConfig, store: Store, layout: EmbeddingsLayout, info: PlanInfo) -> PlanInfo:
    """Re-plan the failed rows of the run that left `_failed.json`, drop the markers of the tasks to run again,
    and return the plan's new counts. Safe to repeat after a crash at any point."""
    failed = set(store.read_json(layout.failed)["tasks"])
    catalogue = load_catalogue(config.images, config.storage_options)
    repair, tables = _repaired_tasks(store, layout, failed, catalogue)
    for task in repair.rerun:  # first: a crash after this reruns them whatever the plan says by then
        store.delete(layout.marker(task))
    if tables:
        _rewrite_plan(store, layout, info.tasks, tables)
    info = replace(info, images=info.images - repair.dropped, removed=info.removed + repair.dropped_previous)
    store.write_json(layout.plan_info, info.as_dict())
    store.delete(layout.failed)
    log.warning("rerunning %d of %d tasks of run %s: %d failed images are no longer listed, %d were replaced, the "
                "others failed for reasons a rerun may get past", len(repair.rerun), info.tasks, layout.run_id,
                repair.dropped, repair.refreshed)
    return info


def _repaired_tasks(store: Store, layout: EmbeddingsLayout, failed: set[int], catalogue: pa.Table
                    ) -> tuple[Repair, dict[int, pa.Table]]:
    rerun, tables = [], {}
    dropped = dropped_previous = refreshed = 0
    for task in sorted(failed):
        plan = store.read_row_group(layout.plan, task)
        errors = store.read_parquet(layout.errors_part(task), ["image_id", "stage", "error_kind"])
        errored = pc.is_in(plan["image_id"], value_set=errors["image_id"]).to_numpy(zero_copy_only=False)
        at = pc.index_in(plan["image_id"], value_set=catalogue["image_id"])
        gone = errored & at.is_null().to_numpy(zero_copy_only=False)
        listed = catalogue.take(pc.fill_null(at, 0))
        changed = errored & ~gone & _differs(plan, listed)
        again = pc.or_(pc.equal(errors["stage"], "embed"),
                       pc.is_in(errors["error_kind"], value_set=pa.array(sorted(MAY_PASS_UNCHANGED))))
        if not (gone.any() or changed.any() or pc.any(again).as_py()):
            continue  # the same bytes would fail the same way: the task's result stands
        rerun.append(task)
        dropped += int(gone.sum())
        dropped_previous += int((gone & plan[PREVIOUS_KEY].is_valid().to_numpy(zero_copy_only=False)).sum())
        refreshed += int(changed.sum())
        if gone.any() or changed.any():
            tables[task] = _relisted(plan, listed, changed).filter(pa.array(~gone))
    return Repair(rerun, dropped, dropped_previous, refreshed), tables


def _differs(plan: pa.Table, listed: pa.Table) -> np.ndarray:
    """Rows the listing now shows under another uri or tag (or with no tag: nothing says they are the same)."""
    out = np.zeros(plan.num_rows, bool)
    for name in ("uri", SOURCE_TAG):
        same = pc.fill_null(pc.equal(plan[name], listed[name].cast(plan.schema.field(name).type)), False)
        out |= ~same.to_numpy(zero_copy_only=False)
    return out


def _relisted(plan: pa.Table, listed: pa.Table, changed: np.ndarray) -> pa.Table:
    """The plan's rows, the changed ones with the fresh listing's uri, tag, vouched hash and metadata."""
    mask = pa.array(changed)
    reserved = {"image_id", "task", PREVIOUS_KEY, "carry_part", "carry_row"}
    for name in plan.column_names:
        if name in reserved or name not in listed.column_names or (name not in RELISTED and
                                                                   listed.schema.field(name).type !=
                                                                   plan.schema.field(name).type):
            continue
        column = pc.if_else(mask, listed[name].cast(plan.schema.field(name).type), plan[name])
        plan = plan.set_column(plan.schema.get_field_index(name), name, column)
    return plan


def _rewrite_plan(store: Store, layout: EmbeddingsLayout, tasks: int, tables: dict[int, pa.Table]) -> None:
    """The plan again, one row group per task (a task whose images are all gone keeps an empty one)."""
    with scratch("lookalike-replan-") as tmp:
        before, after = os.path.join(tmp, "before.parquet"), os.path.join(tmp, "after.parquet")
        store.download(layout.plan, before)
        source = pq.ParquetFile(before)
        with pq.ParquetWriter(after, source.schema_arrow) as writer:
            for task in range(tasks):
                table = tables[task] if task in tables else source.read_row_group(task)
                writer.write_table(table.cast(source.schema_arrow), row_group_size=max(1, table.num_rows))
        store.upload(after, layout.plan)
