"""64-bit keys of a version's image ids and content hashes, and the join of two versions' rows on them.

What the embed plan and the index's incremental update match 10M images by: a few uint64 arrays a version (160 MB
at 10M) and a sort, instead of both versions' id strings in Arrow and a hash table over them (~1.5 GB at 10M). A
key is a mix of the string's bytes and length, the same for the same string in any array; two different ids of
one version that happen to share a key (probability ~n²/2⁶⁵: 3·10⁻⁶ at 10M) are detected, never silently merged,
two versions can only be confused by a new id sharing both its id key and its content key with an old one
(~2⁻¹²⁸), and a changed image is taken for unchanged only if its old and new hash (or tag) share a key (2⁻⁶⁴).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from lookalike.core.errors import InputError

_GATHER_BYTES = 1 << 21       # bytes of strings padded and mixed at a time (index arrays 8× that)
_SEED = np.uint64(0x9E3779B97F4A7C15)
_M1, _M2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31 = np.uint64(30), np.uint64(27), np.uint64(31)


class KeyCollision(InputError):
    """Two different image ids of one version share a 64-bit key (or one id is listed twice)."""


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser, in place: every input bit moves every output bit."""
    x ^= x >> _S30
    x *= _M1
    x ^= x >> _S27
    x *= _M2
    x ^= x >> _S31
    return x


def string_keys(strings: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A uint64 key of each string (nulls as the empty string): its length, then its bytes eight at a time,
    each step through splitmix64's mixer. Vectorised over rows: strings are padded to the longest of a chunk."""
    if isinstance(strings, pa.ChunkedArray):
        return np.concatenate([string_keys(c) for c in strings.chunks]) if strings.num_chunks else \
            np.zeros(0, np.uint64)
    wide = pa.types.is_large_string(strings.type)
    column = strings if wide or pa.types.is_string(strings.type) else strings.cast(pa.string())
    n = len(column)
    keys = np.zeros(n, np.uint64)
    if not n:
        return keys
    width_of_offset = 8 if wide else 4
    offsets = np.frombuffer(column.buffers()[1], np.int64 if wide else np.int32, n + 1,
                            column.offset * width_of_offset).astype(np.int64)
    lengths = np.diff(offsets)
    if column.null_count:
        lengths[~column.is_valid().to_numpy(zero_copy_only=False)] = 0
    data = np.frombuffer(column.buffers()[2], np.uint8) if column.buffers()[2] is not None else np.zeros(0, np.uint8)
    rows = max(1, _GATHER_BYTES // max(8, int(lengths.max())))
    for lo in range(0, n, rows):
        length = lengths[lo:lo + rows]
        width = -(-max(1, int(length.max())) // 8) * 8
        cols = np.arange(width)
        inside = cols < length[:, None]
        padded = np.zeros((len(length), width), np.uint8)
        if len(data):
            padded[inside] = data[(offsets[lo:lo + len(length), None] + cols)[inside]]
        words = padded.view("<u8")
        h = _mix(length.astype(np.uint64) + _SEED)
        for j in range(words.shape[1]):  # only a string's own words: its key must not depend on the padding
            within = 8 * j < length
            if within.all():
                h ^= words[:, j]
                _mix(h)
            else:
                h[within] = _mix(h[within] ^ words[within, j])
        keys[lo:lo + len(length)] = h
    return keys


@dataclass
class RowKeys:
    """The 64-bit keys of a version's rows, in row order."""

    ids: np.ndarray        # uint64 key of each row's image_id
    content: np.ndarray    # uint64 key of its content_sha256

    @classmethod
    def of(cls, batches: Iterable[pa.RecordBatch]) -> RowKeys:
        """From record batches with image_id and content_sha256, a batch at a time: no strings are kept."""
        ids, content = [np.zeros(0, np.uint64)], [np.zeros(0, np.uint64)]
        for batch in batches:
            ids.append(string_keys(batch.column("image_id")))
            content.append(string_keys(batch.column("content_sha256")))
        pa.default_memory_pool().release_unused()  # the batches' pages: Arrow's allocator keeps them otherwise
        return cls(np.concatenate(ids), np.concatenate(content))


def match_rows(old: RowKeys, new: RowKeys) -> np.ndarray:
    """For each row of new, the row of old with the same image id (-1: an id old does not have). Raises
    KeyCollision when either version has two rows under one id key."""
    order = np.argsort(old.ids, kind="stable")
    sorted_old = old.ids[order]
    _check_unique(sorted_old, "the previous version")
    new_order = np.argsort(new.ids, kind="stable")  # sorted keys are searched with far fewer cache misses
    sorted_new = new.ids[new_order]
    _check_unique(sorted_new, "the new version")
    rows = np.full(len(new.ids), -1, np.int64)
    if len(sorted_old):
        at = np.searchsorted(sorted_old, sorted_new)
        np.minimum(at, len(sorted_old) - 1, out=at)
        found = sorted_old[at] == sorted_new
        del sorted_old, sorted_new  # at 10M each of these arrays is 80 MB
        rows[new_order[found]] = order[at[found]]
    return rows


def _check_unique(sorted_keys: np.ndarray, where: str) -> None:
    clashes = int(np.count_nonzero(sorted_keys[1:] == sorted_keys[:-1]))
    if clashes:
        raise KeyCollision(f"{where} has {clashes} image id(s) sharing a 64-bit key with another row (a repeated "
                           "id or a hash collision)")
