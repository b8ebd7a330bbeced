"""What a listing or an images table says about an image's bytes, so a night can carry it over unread.

An image's *source tag* is a string that changes whenever its bytes may have changed: the object's version id or
ETag where the store gives one (S3, GCS, Azure), else its modification time, always with its size. Two nights
that list the same id with the same tag saw the same bytes, so the second carries the first's vector without
reading the object. A store whose listing gives neither leaves the tag null: that image is read and hashed
every night. The content hash stays the vector's identity; the tag only decides what need not be read.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from lookalike.core.errors import InputError
from lookalike.core.schemas import SOURCE_TAG_COLUMN

SOURCE_TAG = SOURCE_TAG_COLUMN   # on the catalogue, the plan and every embeddings part
LISTED_SHA = "listed_sha256"     # a content hash an images table vouches for (its content_sha256 column)

# fsspec backends name the same facts differently: s3fs, gcsfs, adlfs, local and others.
_VERSION_KEYS = ("VersionId", "version_id", "generation")
_ETAG_KEYS = ("ETag", "etag", "md5Hash", "content_md5")
_MTIME_KEYS = ("mtime", "LastModified", "last_modified", "updated", "modified", "mtime_ns")
_SHA256 = "^[0-9a-f]{64}$"


def listing_tag(info: Mapping[str, Any]) -> str | None:
    """The source tag of one listed object (an fsspec `ls(detail=True)` entry); None when the listing says
    nothing that would change with the bytes."""
    size = info.get("size")
    for kind, keys in (("version", _VERSION_KEYS), ("etag", _ETAG_KEYS), ("mtime", _MTIME_KEYS)):
        for key in keys:
            value = info.get(key)
            if value not in (None, "", "null"):
                return f"{kind}:{_text(value)}:{size}"
    return None


def table_tags(table: pa.Table, source: str) -> tuple[pa.Array, pa.Array]:
    """The source tags and vouched-for content hashes of an images table's rows, from its optional `version`,
    `etag` and `content_sha256` columns (nulls where it has none: those images are read)."""
    n = table.num_rows
    tags = pa.nulls(n, pa.string())
    for kind in ("etag", "version"):  # a version, where given, outranks an ETag
        if kind in table.column_names:
            column = pc.cast(table[kind], pa.string())
            tags = pc.if_else(pc.is_null(column), tags, pc.binary_join_element_wise(f"{kind}", column, ":"))
    hashes = pa.nulls(n, pa.string())
    if "content_sha256" in table.column_names:
        hashes = pc.utf8_lower(pc.cast(table["content_sha256"], pa.string()))
        # Checked in Arrow: an inventory table of 10M rows is never turned into Python strings.
        bad = hashes.filter(pc.invert(pc.match_substring_regex(hashes, _SHA256)))
        if len(bad):
            raise InputError(f"images table {source}: content_sha256 must be 64 hex digits (the SHA-256 of the "
                             f"image's bytes), found {bad[0].as_py()!r} and {len(bad) - 1} more; drop the column to "
                             "have every image read and hashed")
        tags = pc.if_else(pc.is_null(hashes), tags, pc.binary_join_element_wise("sha256", hashes, ":"))
    return _array(tags), _array(hashes)


def _array(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    return values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values


def _text(value: Any) -> str:
    if isinstance(value, dt.datetime):
        return value.isoformat()
    return str(value).strip('"')
