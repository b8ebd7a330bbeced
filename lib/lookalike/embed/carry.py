"""The carry-over index: every content hash of the previous version and where its vector sits (part, row).

Parts are named by their index into the previous version's list of parts, kept in the file's metadata: an int32
a row instead of a key string a row (at 10M rows, 40 MB instead of ~800 MB on the driver that writes it).

Written once by the driver, sorted by hash, in small row groups whose min/max statistics say which hashes each
holds; an embed task reads the footer and then only the row groups of the hashes it meets, so what a task reads
follows the images it had to hash, not the size of the catalogue (at 10M images the table is ~1 GB; a task that
read 100 changed images reads ~100 row groups of ~4,096 rows).
"""

from __future__ import annotations

import bisect
import json
import threading

import pyarrow as pa
import pyarrow.parquet as pq

from lookalike.core.errors import ArtefactError
from lookalike.core.store import Store, with_retries

ROW_GROUP_ROWS = 4096
COLUMNS = ("content_sha256", "part", "row")  # part: int32, an index into the parts list in the file's metadata
PARTS_METADATA = b"lookalike.parts"


def carry_table(rows: pa.Table) -> pa.Table:
    """One (content_sha256, part, row) per distinct hash of `rows` (the first place it is stored), sorted by hash."""
    first = rows.group_by("content_sha256", use_threads=False).aggregate([("part", "first"), ("row", "first")])
    return first.rename_columns(list(COLUMNS)).sort_by("content_sha256")


def write_carry(store: Store, key: str, carry: pa.Table, parts: list[str]) -> int:
    """Write a carry table (from carry_table; part = index into `parts`) with the row groups lookups read one at
    a time; returns its bytes."""
    sink = pa.BufferOutputStream()
    table = carry.select(list(COLUMNS)).combine_chunks()
    table = table.replace_schema_metadata({PARTS_METADATA: json.dumps(parts).encode()})
    pq.write_table(table, sink, row_group_size=ROW_GROUP_ROWS, compression="zstd", write_statistics=True)
    data = sink.getvalue().to_pybytes()
    store.write_bytes(key, data)
    return len(data)


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
        self._file = with_retries(lambda: pq.ParquetFile(self._store.fs.open(path, "rb")), f"open {path}")
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
        table = with_retries(lambda: self._file.read_row_group(group), f"read {self._key} row group {group}")
        parts = [self._parts[p] for p in table["part"].to_pylist()]
        return dict(zip(table["content_sha256"].to_pylist(), zip(parts, table["row"].to_pylist(), strict=True),
                        strict=True))
