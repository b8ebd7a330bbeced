"""The images table: listed from a folder or prefix URL, or read from a Parquet/CSV table, then checked."""

from __future__ import annotations

import posixpath
from collections.abc import Mapping
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from lookalike.core.errors import InputError
from lookalike.core.schemas import RESERVED_COLUMNS
from lookalike.core.store import filesystem, retry_attempts, with_retries
from lookalike.embed.source_tags import LISTED_SHA, SOURCE_TAG, listing_tag, table_tags

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp", ".tif", ".tiff"})
TABLE_EXTENSIONS = (".parquet", ".pq", ".csv")


class CatalogueError(InputError):
    """The images table cannot be used; says what to fix."""


def load_catalogue(images: str, options: Mapping[str, Any] | None = None) -> pa.Table:
    """An images table with `image_id`, `uri`, `source_tag`, `listed_sha256` and any metadata columns, sorted by
    image_id.

    `images` is a folder or prefix URL (listed recursively for image extensions, with each object's details:
    image_id is the path relative to it, `source_tag` what the listing says about its bytes) or a .parquet/.csv
    table with `image_id` and `uri` columns, and optionally `etag`, `version` or `content_sha256` columns that
    are trusted the same way (other columns are metadata and are carried through to every output).
    """
    if images.lower().endswith(TABLE_EXTENSIONS):
        table = validate(_read_table(images, options), images)
        tags, hashes = table_tags(table, images)
        table = table.drop_columns([c for c in ("content_sha256",) if c in table.column_names])
    else:
        table, tags = _list_folder(images, options)
        table = validate(table, images)  # sorted by image_id, as the listing's tags already are
        hashes = pa.nulls(table.num_rows, pa.string())
    return table.append_column(SOURCE_TAG, tags).append_column(LISTED_SHA, hashes)


def as_images_table(catalogue: pa.Table) -> pa.Table:
    """A loaded catalogue (or a slice of it) as an images table that load_catalogue reads back: its columns
    without the listing's own."""
    return catalogue.drop_columns([c for c in (SOURCE_TAG, LISTED_SHA) if c in catalogue.column_names])


def _list_folder(root_url: str, options: Mapping[str, Any] | None) -> tuple[pa.Table, pa.Array]:
    fs, root = filesystem(root_url, options)
    root = root.rstrip("/")
    try:
        attempts = retry_attempts(fs)
        if not with_retries(lambda: fs.isdir(root), f"stat {root_url}", attempts):
            raise CatalogueError(f"images root {root_url} is not a folder or prefix (or is unreachable): "
                                 "give a folder URL or a .parquet/.csv images table")
        image_ids, tags = with_retries(lambda: _walk(fs, root), f"list {root_url}", attempts)
    except CatalogueError:
        raise
    except Exception as e:
        raise CatalogueError(f"cannot list images root {root_url}: {type(e).__name__}: {e}") from e
    if not len(image_ids):
        raise CatalogueError(f"no images under {root_url} (looked for {', '.join(sorted(IMAGE_EXTENSIONS))})")
    order = pc.sort_indices(image_ids)
    image_ids = image_ids.take(order)
    uris = pc.binary_join_element_wise(pa.scalar(root_url.rstrip("/")), image_ids, "/")
    # Sorted by image_id here, so the tags stay aligned once validate sorts by image_id.
    return pa.table({"image_id": image_ids, "uri": uris}), tags.take(order).combine_chunks()


def _walk(fs, root: str) -> tuple[pa.ChunkedArray, pa.ChunkedArray]:
    """Every image under root (its path relative to root) and its source tag, listed a directory at a time with
    the details the same calls give (size, mtime, ETag/version), each directory turned into Arrow columns at once
    and dropped from the filesystem's listing cache, so the listing's dicts are never all held (one find call
    held them: bench/listing_memory.py at 1M, a peak of 393 bytes an image instead of 1,289, in 0.77× the time).
    A flat prefix of N objects is still one directory: give an inventory table at that size."""
    ids, tags = [], []
    # Our own walk: fsspec's walk(on_error="raise") omits sub-folders that fail to list (it does not pass
    # on_error down), and a folder dropped from a listing looks like images removed.
    pending = [root]
    while pending:
        directory = pending.pop()
        images = []
        for info in fs.ls(directory, detail=True):
            name = fs._strip_protocol(info["name"]).rstrip("/")
            if info["type"] == "directory":
                if name != directory:
                    pending.append(name)
            elif posixpath.splitext(name)[1].lower() in IMAGE_EXTENSIONS:
                images.append((posixpath.relpath(name, root), info))
        if images:
            ids.append(pa.array([rel for rel, _ in images], pa.string()))
            tags.append(pa.array([listing_tag(info) for _, info in images], pa.string()))
        fs.invalidate_cache(directory)
    return pa.chunked_array(ids, pa.string()), pa.chunked_array(tags, pa.string())


def _read_table(url: str, options: Mapping[str, Any] | None) -> pa.Table:
    fs, path = filesystem(url, options)
    try:
        with fs.open(path, "rb") as f:
            if url.lower().endswith(".csv"):
                # Every CSV column is a string: an id column of digits must stay "007", not 7.
                names = pacsv.open_csv(f).schema.names  # parses only the first block
                f.seek(0)
                return pacsv.read_csv(f, convert_options=pacsv.ConvertOptions(
                    column_types={n: pa.string() for n in names}))
            return pq.read_table(f)
    except FileNotFoundError as e:
        raise CatalogueError(f"images table {url} does not exist") from e
    except Exception as e:
        raise CatalogueError(f"cannot read images table {url}: {type(e).__name__}: {e}") from e


def validate(table: pa.Table, source: str) -> pa.Table:
    missing = [c for c in ("image_id", "uri") if c not in table.column_names]
    if missing:
        raise CatalogueError(f"images table {source} lacks column(s) {missing}; it has {table.column_names}")
    # content_sha256 is the one pipeline column a table may bring: a hash it vouches for (see source_tags).
    reserved = sorted(set(table.column_names) & (RESERVED_COLUMNS - {"image_id", "uri", "content_sha256"}))
    if reserved:
        raise CatalogueError(f"images table {source} has column(s) {reserved} that lookalike writes itself: "
                             "rename them")
    if table.num_rows == 0:
        raise CatalogueError(f"images table {source} is empty")
    for col in ("image_id", "uri"):
        table = table.set_column(table.column_names.index(col), col, pc.cast(table[col], pa.string()))
        nulls = table[col].null_count
        if nulls:
            raise CatalogueError(f"images table {source}: {nulls} row(s) have no {col}")
    ids = table["image_id"]
    if pc.count_distinct(ids).as_py() != table.num_rows:
        counts = pc.value_counts(ids)
        dup = [v["values"].as_py() for v in counts if v["counts"].as_py() > 1][:5]
        raise CatalogueError(f"images table {source}: duplicate image_id values, e.g. {dup}; ids must be unique")
    ordered = ["image_id", "uri"] + [c for c in table.column_names if c not in ("image_id", "uri")]
    return table.select(ordered).sort_by("image_id")
