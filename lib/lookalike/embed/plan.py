"""The embed run's plan: each image's task, and what the previous version already says about it.

Written once by the driver, one row group per task, so a task reads only its own rows, and a resumed run reuses
the plan unchanged. For every image the plan says either "carried": the previous version holds this id with the
same source tag (the listing or the images table vouches the bytes are the ones embedded then) or holds the
content hash the table gave, so the task copies the vector from (carry_part, carry_row) without reading the
object; or "read": the task reads and hashes it, and looks the hash up in the carry index (a renamed or copied
file whose bytes were embedded before is carried once read).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from lookalike.core.layout import EmbeddingsLayout
from lookalike.core.manifest import ManifestError
from lookalike.core.store import Store
from lookalike.embed.carry import carry_table, write_carry
from lookalike.embed.config import EmbedConfig
from lookalike.embed.source_tags import LISTED_SHA, SOURCE_TAG
from lookalike.embed.versions import EmbeddingsVersion, latest_run_id, open_version

log = logging.getLogger(__name__)

PREVIOUS_SHA = "previous_content_sha256"  # the id's content hash in the previous version (null: a new id)
# Set for carried images: the content hash, and where the vector is (carry_part indexes the carry file's parts).
CARRY_SHA, CARRY_PART, CARRY_ROW = "carry_sha256", "carry_part", "carry_row"
PLAN_COLUMNS = ("image_id", "uri", "task", SOURCE_TAG, PREVIOUS_SHA, CARRY_SHA, CARRY_PART, CARRY_ROW)


@dataclass(frozen=True)
class PlanInfo:
    """_plan.json: written last when planning, so a plan is whole once it exists."""

    tasks: int
    images: int
    previous_run: str | None
    removed: int                 # ids of the previous version the catalogue no longer lists
    carry_rows: int              # distinct hashes in the carry index
    unchanged_by_listing: int    # images carried without being read
    untagged: int                # images whose listing or table row said nothing about their bytes
    change_detection: str        # "listing", "rehash" (--rehash), "read" (no previous version or no tags)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PlanInfo:
        # Plans written before listing-based change detection lack its counters.
        return cls(**{"unchanged_by_listing": 0, "untagged": d.get("images", 0), "change_detection": "read", **d})


def write_plan(config: EmbedConfig, store: Store, layout: EmbeddingsLayout, catalogue: pa.Table) -> PlanInfo:
    """Fix the task of every image, what is carried, and the carry index; a resumed run reuses all three."""
    per_task = config.images_per_task
    n = catalogue.num_rows
    plan = catalogue.append_column("task", pa.array(np.arange(n, dtype=np.int32) // per_task))
    listed_sha = plan[LISTED_SHA]
    plan = plan.drop_columns([LISTED_SHA])
    untagged = plan[SOURCE_TAG].null_count

    previous = _previous(config, store, layout)
    info = dict(tasks=math.ceil(n / per_task), images=n, previous_run=None, removed=0, carry_rows=0,
                unchanged_by_listing=0, untagged=untagged, change_detection="read")
    if previous is None:
        plan = _with_carry(plan, pa.nulls(n, pa.string()), pa.nulls(n, pa.string()), pa.nulls(n, pa.int32()),
                           pa.nulls(n, pa.int64()))
    else:
        rows = _previous_rows(previous)
        carry = carry_table(rows)
        write_carry(store, layout.carry, carry, previous.parts)
        at = pc.index_in(plan["image_id"], value_set=rows["image_id"])  # this id's row there, or null
        before = rows.take(at)
        # An id whose tag is unchanged is carried from its own row; else a hash the table vouches for is
        # carried from wherever the previous version stored it. --rehash trusts neither.
        vouched = carry.take(pc.index_in(listed_sha, value_set=carry["content_sha256"]))
        if config.rehash:
            same = use_vouched = pa.array(np.zeros(n, dtype=bool))
        else:
            same = pc.fill_null(pc.equal(plan[SOURCE_TAG], before[SOURCE_TAG]), False)
            use_vouched = pc.and_(pc.invert(same), pc.is_valid(vouched["content_sha256"]))

        def pick(column: str) -> pa.Array:
            own = pc.if_else(same, before[column], pa.nulls(n, before[column].type))
            return pc.if_else(use_vouched, vouched[column], own)

        plan = _with_carry(plan, before["content_sha256"], pick("content_sha256"), pick("part"), pick("row"))
        unchanged = int(pc.sum(same).as_py() or 0) + int(pc.sum(use_vouched).as_py() or 0)
        info.update(previous_run=previous.layout.run_id, carry_rows=carry.num_rows, unchanged_by_listing=unchanged,
                    removed=int(pc.sum(pc.invert(pc.is_in(rows["image_id"], plan["image_id"]))).as_py() or 0),
                    change_detection="rehash" if config.rehash else "listing" if untagged < n else "read")
        if untagged == n and not config.rehash:
            log.warning("the images listing gives no ETag, version or modification time: every image is read and "
                        "hashed to find what changed")

    sink = pa.BufferOutputStream()
    pq.write_table(plan, sink, row_group_size=per_task)  # one row group per task
    store.write_bytes(layout.plan, sink.getvalue().to_pybytes())
    plan_info = PlanInfo(**info)
    store.write_json(layout.plan_info, plan_info.as_dict())
    return plan_info


def _with_carry(plan: pa.Table, previous_sha, sha, part, row) -> pa.Table:
    return (plan.append_column(PREVIOUS_SHA, previous_sha).append_column(CARRY_SHA, sha)
            .append_column(CARRY_PART, pc.cast(part, pa.int32())).append_column(CARRY_ROW, pc.cast(row, pa.int64())))


def _previous(config: EmbedConfig, store: Store, layout: EmbeddingsLayout) -> EmbeddingsVersion | None:
    """The version this run carries over from: LATEST of the same model, unless it cannot be carried."""
    prev_run_id = latest_run_id(store, layout.fingerprint_id) if config.incremental else None
    if prev_run_id is None or prev_run_id == layout.run_id:
        return None
    try:
        previous = open_version(store, layout.fingerprint_id, prev_run_id)
    except ManifestError as e:
        log.warning("not carrying over from %s: %s", prev_run_id, e)
        return None
    return previous if _features_carry(config, previous) else None


def _features_carry(config: EmbedConfig, previous: EmbeddingsVersion) -> bool:
    """Whether the previous version can be carried over: always for vectors alone; with local features only
    from a version that has the same ones (else every image is read again, once, to extract them)."""
    wanted = config.local_features.as_dict() if config.local_features else None
    if wanted is None or previous.manifest.get("local_features") == wanted:
        return True
    log.warning("not carrying over from %s: it has local features %s, this run wants %s (every image is read "
                "and embedded again, once)", previous.layout.run_id, previous.manifest.get("local_features"), wanted)
    return False


def _previous_rows(previous: EmbeddingsVersion) -> pa.Table:
    """image_id, content_sha256, source_tag and where each row sits in the previous version: part (int32, an
    index into previous.parts) and row."""
    tables = []
    # One writer wrote every part of a version: the first says whether they carry source tags.
    has_tags = bool(previous.parts) and SOURCE_TAG in previous.layout.store.read_parquet_schema(previous.parts[0]).names
    for index, key in enumerate(previous.parts):
        t = previous.read_part(key, ["image_id", "content_sha256"] + ([SOURCE_TAG] if has_tags else []))
        if not has_tags:  # written before source tags: its images are read once more, then tagged
            t = t.append_column(SOURCE_TAG, pa.nulls(t.num_rows, pa.string()))
        tables.append(t.append_column("part", pa.array(np.full(t.num_rows, index, np.int32)))
                       .append_column("row", pa.array(np.arange(t.num_rows, dtype=np.int64))))
    if tables:
        return pa.concat_tables(tables)
    return pa.table({"image_id": pa.array([], pa.string()), "content_sha256": pa.array([], pa.string()),
                     SOURCE_TAG: pa.array([], pa.string()), "part": pa.array([], pa.int32()),
                     "row": pa.array([], pa.int64())})
