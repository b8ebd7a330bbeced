"""The embed run's plan: each image's task, and what the previous version already says about it.

Written once by the driver, one row group per task, so a task reads only its own rows, and a resumed run reuses
the plan unchanged. For every image the plan says "carried" when the previous version holds this id with the
same source tag (the listing or the images table vouches the bytes are the ones embedded then): the task copies
the vector from (carry_part, carry_row) without reading the object. Otherwise the task looks up the content hash
an images table vouches for (listed_sha256) in the carry index and carries that unread, or reads and hashes the
image and looks its hash up (a renamed or copied file whose bytes were embedded before is carried once read).
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from lookalike.core.layout import EmbeddingsLayout
from lookalike.core.manifest import ManifestError
from lookalike.core.row_keys import KeyCollision, RowKeys, match_rows, string_keys
from lookalike.core.scratch import scratch
from lookalike.core.store import Store
from lookalike.embed.carry import write_carry
from lookalike.embed.config import EmbedConfig
from lookalike.embed.source_tags import LISTED_SHA, SOURCE_TAG
from lookalike.embed.versions import EmbeddingsVersion, latest_run_id, open_version

log = logging.getLogger(__name__)

PREVIOUS_KEY = "previous_content_key"  # 64-bit key of the id's content hash in the previous version (null: new id)
# Set for images carried on the listing's word: where the vector is (carry_part indexes the carry file's parts).
CARRY_PART, CARRY_ROW = "carry_part", "carry_row"
PLAN_COLUMNS = ("image_id", "uri", "task", SOURCE_TAG, LISTED_SHA, PREVIOUS_KEY, CARRY_PART, CARRY_ROW)


@dataclass(frozen=True)
class PlanInfo:
    """_plan.json: written last when planning, so a plan is whole once it exists."""

    tasks: int
    images: int
    previous_run: str | None
    removed: int                 # ids of the previous version the catalogue no longer lists
    carry_rows: int              # distinct hashes in the carry index
    unchanged_by_listing: int    # images the plan carries on their tag, unread (tasks add vouched hashes found)
    untagged: int                # images whose listing or table row said nothing about their bytes
    # "listing", "rehash" (--rehash), "read" (the listing has no tags), "first" (no previous version), "full" (a
    # previous version not carried from: --no-incremental, other local features)
    change_detection: str

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PlanInfo:
        # Plans written before listing-based change detection lack its counters.
        return cls(**{"unchanged_by_listing": 0, "untagged": d.get("images", 0), "change_detection": "read", **d})


def write_plan(config: EmbedConfig, store: Store, layout: EmbeddingsLayout, catalogue: pa.Table) -> PlanInfo:
    """Fix the task of every image, what is carried, and the carry index; a resumed run reuses all three.

    Beyond the catalogue itself the driver holds ~100 bytes an image at the peak (bench/plan_memory.py): the
    previous version is read as 64-bit keys of its ids, tags and hashes (core.row_keys), matched by sorting, and
    the carry index is streamed through local files.
    """
    per_task = config.images_per_task
    n = catalogue.num_rows
    plan = catalogue.append_column("task", pa.array(np.arange(n, dtype=np.int32) // per_task))
    untagged = plan[SOURCE_TAG].null_count
    if config.rehash:  # nothing is carried unread: neither a tag nor a hash the table vouches for
        plan = plan.set_column(plan.schema.get_field_index(LISTED_SHA), LISTED_SHA, pa.nulls(n, pa.string()))
    previous = _previous(config, store, layout)
    info = dict(tasks=math.ceil(n / per_task), images=n, previous_run=None, removed=0, carry_rows=0,
                unchanged_by_listing=0, untagged=untagged, change_detection="read")
    with scratch("lookalike-plan-") as tmp:
        if previous is None:
            plan = _with_carry(plan, pa.nulls(n, pa.uint64()), pa.nulls(n, pa.int32()), pa.nulls(n, pa.int64()))
            # Nothing to compare with: the first version of this model, or one not carried from.
            known = latest_run_id(store, layout.fingerprint_id, layout.namespace) not in (None, layout.run_id)
            info["change_detection"] = "full" if known else "first"
        else:
            carry_rows = write_carry(store, layout.carry, previous.parts, tmp)
            before = PreviousRows.read(previous)
            try:
                at = match_rows(before.keys, RowKeys(string_keys(plan["image_id"]), np.zeros(n, np.uint64)))
            except KeyCollision as e:
                log.warning("%s: every image is read and hashed this run", e)
                at = np.full(n, -1, np.int64)
            found = at >= 0
            # An id whose tag is unchanged is carried from its own row unread; --rehash trusts no tag.
            same = found.copy() if not config.rehash else np.zeros(n, bool)
            tags = plan[SOURCE_TAG]
            if same.any():
                valid = tags.is_valid().to_numpy(zero_copy_only=False)
                same &= valid & before.tagged[np.maximum(at, 0)]
                same[same] = string_keys(tags.filter(pa.array(same))) == before.tags[at[same]]
            plan = _with_carry(plan, _where(found, before.keys.content, at, pa.uint64()),
                               _where(same, before.part, at, pa.int32()), _where(same, before.row, at, pa.int64()))
            info.update(previous_run=previous.layout.run_id, carry_rows=carry_rows,
                        unchanged_by_listing=int(same.sum()), removed=len(before.part) - int(found.sum()),
                        change_detection="rehash" if config.rehash else "listing" if untagged < n else "read")
            if untagged == n and not config.rehash:
                log.warning("the images listing gives no ETag, version or modification time: every image is read "
                            "and hashed to find what changed")
            del before, at, found, same
        local = os.path.join(tmp, "plan.parquet")
        pq.write_table(plan, local, row_group_size=per_task)  # one row group per task
        store.upload(local, layout.plan)
    plan_info = PlanInfo(**info)
    store.write_json(layout.plan_info, plan_info.as_dict())
    return plan_info


@dataclass
class PreviousRows:
    """The previous version's rows as planning needs them: keys of their ids, hashes and tags, and where each
    sits (part: an index into previous.parts; row)."""

    keys: RowKeys          # ids and content hashes
    tags: np.ndarray       # uint64 key of the source tag
    tagged: np.ndarray     # bool: the row has a source tag (rows written before tags have none)
    part: np.ndarray       # int32
    row: np.ndarray        # int64

    @classmethod
    def read(cls, previous: EmbeddingsVersion) -> PreviousRows:
        store = previous.layout.store
        # One writer wrote every part of a version: the first says whether they carry source tags.
        has_tags = bool(previous.parts) and SOURCE_TAG in store.read_parquet_schema(previous.parts[0]).names
        ids, content, tags, tagged, part, row = ([] for _ in range(6))
        for index, key in enumerate(previous.parts):
            start = 0
            columns = ["image_id", "content_sha256"] + ([SOURCE_TAG] if has_tags else [])
            for batch in store.iter_parquet(key, columns):
                k = len(batch)
                ids.append(string_keys(batch.column("image_id")))
                content.append(string_keys(batch.column("content_sha256")))
                tag = batch.column(SOURCE_TAG) if has_tags else pa.nulls(k, pa.string())
                tags.append(string_keys(tag))
                tagged.append(tag.is_valid().to_numpy(zero_copy_only=False))
                part.append(np.full(k, index, np.int32))
                row.append(np.arange(start, start + k, dtype=np.int64))
                start += k
        def joined(chunks: list[np.ndarray], dtype) -> np.ndarray:
            return np.concatenate(chunks) if chunks else np.zeros(0, dtype)
        return cls(RowKeys(joined(ids, np.uint64), joined(content, np.uint64)), joined(tags, np.uint64),
                   joined(tagged, bool), joined(part, np.int32), joined(row, np.int64))


def _where(mask: np.ndarray, values: np.ndarray, at: np.ndarray, kind: pa.DataType) -> pa.Array:
    """values[at] where mask holds, null elsewhere."""
    out = np.zeros(len(mask), values.dtype)
    out[mask] = values[at[mask]]
    return pa.array(out, kind, mask=~mask)


def _with_carry(plan: pa.Table, previous_key: pa.Array, part: pa.Array, row: pa.Array) -> pa.Table:
    return (plan.append_column(PREVIOUS_KEY, previous_key).append_column(CARRY_PART, part)
            .append_column(CARRY_ROW, row))


def _previous(config: EmbedConfig, store: Store, layout: EmbeddingsLayout) -> EmbeddingsVersion | None:
    """The version this run carries over from: LATEST of the same model, unless it cannot be carried."""
    prev_run_id = latest_run_id(store, layout.fingerprint_id, layout.namespace) if config.incremental else None
    if prev_run_id is None or prev_run_id == layout.run_id:
        return None
    try:
        previous = open_version(store, layout.fingerprint_id, prev_run_id, layout.namespace)
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
