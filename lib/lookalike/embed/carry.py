"""The carry-over index: every content hash of the previous version and where its vector sits (part, row).

Parts are named by their index into the previous version's list of parts, kept in the file's metadata: an int32
a row instead of a key string a row.

Written once by the driver, streamed through local spill files (it never holds the N hashes), sorted by hash, in
small row groups whose min/max statistics say which hashes each holds; an embed task reads the footer and then
only the row groups of the hashes it meets, so what a task reads follows the images it had to hash, not the size
of the catalogue (at 10M images the table is ~1 GB; a task that read 100 changed images reads ~100 row groups of
~4,096 rows).
"""

from __future__ import annotations

import bisect
import json
import os
import threading

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from lookalike.core.errors import ArtefactError
from lookalike.core.store import Store, with_retries

ROW_GROUP_ROWS = 4096
COLUMNS = ("content_sha256", "part", "row")  # part: int32, an index into the parts list in the file's metadata
PARTS_METADATA = b"lookalike.parts"


def write_carry(store: Store, key: str, parts: list[str], tmp: str) -> int:
    """Write the carry index of a version's parts (one row per distinct hash: the first place it is stored),
    streamed: the hashes are spilled to local files by their first two characters, then each bucket is sorted
    and written in order, so the driver holds one batch or one bucket (~N/256 rows), never the N hashes.
    Returns the number of distinct hashes."""
    spill = os.path.join(tmp, "carry-buckets")
    os.makedirs(spill, exist_ok=True)
    writers: dict[str, pa.ipc.RecordBatchStreamWriter] = {}
    files: dict[str, str] = {}
    schema = pa.schema([("content_sha256", pa.string()), ("part", pa.int32()), ("row", pa.int64())])
    try:
        for index, part in enumerate(parts):
            row = 0
            for batch in store.iter_parquet(part, ["content_sha256"]):
                hashes = batch.column(0)
                table = pa.table([hashes, pa.array(np.full(len(hashes), index, np.int32)),
                                  pa.array(np.arange(row, row + len(hashes), dtype=np.int64))], schema=schema)
                row += len(hashes)
                table = table.filter(pc.is_valid(hashes))  # a row without a hash has nothing to carry
                buckets = pc.utf8_slice_codeunits(table["content_sha256"], 0, 2).combine_chunks()
                order = pc.sort_indices(buckets)  # stable: a bucket's rows stay in part and row order
                table, runs = table.take(order), pc.run_end_encode(buckets.take(order))
                start = 0
                for end, bucket in zip(runs.run_ends.to_pylist(), runs.values.to_pylist(), strict=True):
                    if bucket not in writers:
                        files[bucket] = os.path.join(spill, f"{len(files):05d}.arrow")
                        writers[bucket] = pa.ipc.new_stream(files[bucket], schema)
                    writers[bucket].write_table(table.slice(start, end - start))
                    start = end
            pa.default_memory_pool().release_unused()  # mimalloc keeps the batches' freed pages otherwise
    finally:
        for w in writers.values():
            w.close()
    local = os.path.join(tmp, "carry.parquet")
    distinct = 0
    metadata = {PARTS_METADATA: json.dumps(parts).encode()}
    with pq.ParquetWriter(local, schema.with_metadata(metadata), compression="zstd", write_statistics=True) as out:
        # Buckets in the order of their prefix, each sorted whole: the file is sorted by hash end to end.
        for bucket in sorted(files):
            name = files[bucket]
            with pa.memory_map(name) as source:
                rows = pa.ipc.open_stream(source).read_all()
            first = rows.group_by("content_sha256", use_threads=False).aggregate([("part", "first"), ("row", "first")])
            first = first.rename_columns(list(COLUMNS)).sort_by("content_sha256")
            out.write_table(first.cast(schema.with_metadata(metadata)), row_group_size=ROW_GROUP_ROWS)
            distinct += first.num_rows
            os.remove(name)
            pa.default_memory_pool().release_unused()
    store.upload(local, key)
    os.remove(local)
    return distinct


class CarryLookup:
    """Membership and location of content hashes in a carry table, reading only the row groups asked for.

    Safe to call from the engine's IO threads: one lock guards the open file and the row groups read so far.
    """

    def __init__(self, store: Store, key: str):
        self._store, self._key = store, key
        self._lock = threading.Lock()
        self._file: pq.ParquetFile | None = None
        self._lows: list[str] = []
        self._highs: list[str] = []
        self._groups: dict[int, dict[str, tuple[str, int]]] = {}
        self._parts: list[str] = []

    @property
    def row_groups_read(self) -> int:
        return len(self._groups)

    def part_key(self, part: int) -> str:
        """The key of the previous version's part with this index (the plan's carry_part)."""
        with self._lock:
            self._open()
            return self._parts[part]

    def __contains__(self, sha: object) -> bool:
        return isinstance(sha, str) and self.locate(sha) is not None

    def locate(self, sha: str) -> tuple[str, int] | None:
        """(part, row) of the previous version's vector for this content, or None if it has none."""
        with self._lock:
            self._open()
            at = bisect.bisect_right(self._lows, sha) - 1
            if at < 0 or sha > self._highs[at]:
                return None
            if at not in self._groups:
                self._groups[at] = self._read_group(at)
            return self._groups[at].get(sha)

    def _open(self) -> None:
        if self._file is not None:
            return
        path = self._store.path(self._key)
        self._file = with_retries(lambda: pq.ParquetFile(self._store.fs.open(path, "rb")), f"open {path}",
                                  self._store.attempts)
        meta = self._file.metadata
        parts = (self._file.schema_arrow.metadata or {}).get(PARTS_METADATA)
        if parts is None:
            raise ArtefactError(f"carry table {self._store.child_url(self._key)} names no parts: it was written by an "
                                "older lookalike; start a new run id")
        self._parts = json.loads(parts)
        for g in range(meta.num_row_groups):
            stats = meta.row_group(g).column(0).statistics
            if stats is None or not stats.has_min_max:
                raise ArtefactError(f"carry table {self._store.child_url(self._key)} has no hash statistics in row "
                                    f"group {g}: it was not written by write_carry; start a new run id")
            self._lows.append(stats.min)
            self._highs.append(stats.max)

    def _read_group(self, group: int) -> dict[str, tuple[str, int]]:
        table = with_retries(lambda: self._file.read_row_group(group), f"read {self._key} row group {group}",
                             self._store.attempts)
        parts = [self._parts[p] for p in table["part"].to_pylist()]
        return dict(zip(table["content_sha256"].to_pylist(), zip(parts, table["row"].to_pylist(), strict=True),
                        strict=True))
