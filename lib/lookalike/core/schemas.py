"""Arrow schemas of every artefact, with the schema version readers check."""

from __future__ import annotations

import pyarrow as pa

from lookalike.core.errors import InputError

SCHEMA_VERSION = 1

# Columns the pipeline owns; every other column of the images table is metadata, carried through.
CORE_EMBEDDING_COLUMNS = ("image_id", "uri", "content_sha256", "width", "height", "embedding")
# source_tag: what the listing said about the bytes embedded (embed.source_tags), on parts written since it
# existed; optional for readers, and not a metadata column of hits.
SOURCE_TAG_COLUMN = "source_tag"
# colour_histogram: each image's colours (image/colour.py), on parts written since it existed (null for images
# carried from older parts); an index keeps it for colour-aware search, not as a metadata column of hits.
COLOUR_COLUMN = "colour_histogram"
RESERVED_COLUMNS = frozenset(CORE_EMBEDDING_COLUMNS) | {"stage", "error_kind", "message", "task",
                                                        SOURCE_TAG_COLUMN, "listed_sha256", COLOUR_COLUMN}


class SchemaError(InputError):
    """An artefact does not have the schema this version of lookalike reads."""


def row_columns(names: list[str]) -> list[str]:
    """The columns of an embeddings part that describe its images (ids, uri, hash, size, metadata): all but the
    vector and the pipeline's own bookkeeping. What a join's output carries; an index's ids table keeps the colours
    too."""
    return [n for n in names if n not in ("embedding", SOURCE_TAG_COLUMN, COLOUR_COLUMN)]


def embedding_type(dim: int) -> pa.DataType:
    return pa.list_(pa.float32(), dim)


def embeddings_schema(dim: int, metadata: pa.Schema | None = None, source_tags: bool = False,
                      colours: bool = False) -> pa.Schema:
    fields = [
        pa.field("image_id", pa.string(), nullable=False),
        pa.field("uri", pa.string(), nullable=False),
        pa.field("content_sha256", pa.string(), nullable=False),
        pa.field("width", pa.int32(), nullable=False),
        pa.field("height", pa.int32(), nullable=False),
        pa.field("embedding", embedding_type(dim), nullable=False),
    ]
    if source_tags:
        fields.append(pa.field(SOURCE_TAG_COLUMN, pa.string()))
    if colours:
        fields.append(pa.field(COLOUR_COLUMN, pa.binary()))
    fields += list(metadata or [])
    return pa.schema(fields, metadata={b"lookalike.schema_version": str(SCHEMA_VERSION).encode()})


def errors_schema(metadata: pa.Schema | None = None) -> pa.Schema:
    fields = [
        pa.field("image_id", pa.string(), nullable=False),
        pa.field("uri", pa.string(), nullable=False),
        pa.field("stage", pa.string(), nullable=False),       # read / decode / embed
        pa.field("error_kind", pa.string(), nullable=False),  # a short stable code, e.g. "truncated"
        pa.field("message", pa.string(), nullable=False),     # readable reason
    ]
    fields += list(metadata or [])
    return pa.schema(fields, metadata={b"lookalike.schema_version": str(SCHEMA_VERSION).encode()})


def check_embeddings(schema: pa.Schema, dim: int | None = None, where: str = "embeddings") -> int:
    """Check a schema read back from the store; returns the embedding dimension."""
    version = (schema.metadata or {}).get(b"lookalike.schema_version")
    if version is not None and int(version) > SCHEMA_VERSION:
        raise SchemaError(f"{where} has schema version {int(version)}; this lookalike reads up to "
                          f"{SCHEMA_VERSION}: upgrade lookalike")
    missing = [c for c in CORE_EMBEDDING_COLUMNS if c not in schema.names]
    if missing:
        raise SchemaError(f"{where} lacks columns {missing}: is it an embeddings version?")
    emb = schema.field("embedding").type
    if not pa.types.is_fixed_size_list(emb) or emb.value_type != pa.float32():
        raise SchemaError(f"{where}: embedding must be fixed_size_list<float32>, found {emb}")
    if dim is not None and emb.list_size != dim:
        raise SchemaError(f"{where}: embedding dimension {emb.list_size} != expected {dim}")
    return emb.list_size


def features_schema() -> pa.Schema:
    """A features part: one row per embeddings row, in the same order; positions float32 (x, y) pairs and
    descriptors (float16 RootSIFT or uint8 ORB rows) as raw little-endian bytes."""
    return pa.schema([
        pa.field("image_id", pa.string(), nullable=False),
        pa.field("content_sha256", pa.string(), nullable=False),
        pa.field("keypoints", pa.int32(), nullable=False),
        pa.field("xy", pa.binary(), nullable=False),
        pa.field("descriptors", pa.binary(), nullable=False),
    ])
