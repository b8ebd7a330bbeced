"""The errors table of an embeddings version as a user asks for it: of a complete version, or of a run that failed its
error rate and has no manifest (what its committed tasks recorded)."""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa
import pyarrow.compute as pc

from lookalike.core.layout import EmbeddingsLayout, EmbeddingsRef
from lookalike.core.manifest import ManifestMissing
from lookalike.core.schemas import errors_schema
from lookalike.core.store import Store
from lookalike.embed.versions import open_ref


def errors_of(store: Store, embeddings: str | None = None, kinds: Sequence[str] = ()) -> tuple[str, pa.Table]:
    """(which version, its error rows of the given kinds, by image id); embeddings: FINGERPRINT[/RUN_ID], or None
    for the store's only model's LATEST."""
    try:
        version = open_ref(store, embeddings)
        keys, where = version.error_parts, f"embeddings {version.layout.prefix}"
    except ManifestMissing:
        # A run without a manifest (it failed, or is under way): what its committed tasks recorded.
        ref = EmbeddingsRef.parse(embeddings or "")
        if ref.run_id is None:
            raise
        layout = EmbeddingsLayout(store, ref.fingerprint_id, ref.run_id)
        markers = [store.read_json(k) for k in store.list(layout.markers)]
        keys = [m["errors_part"]["key"] for m in sorted(markers, key=lambda m: m["task"])]
        where = f"embeddings run {layout.prefix} (not committed: {len(markers)} tasks done)"
    tables = [store.read_parquet(k) for k in keys]
    table = pa.concat_tables(tables, promote_options="permissive") if tables else errors_schema().empty_table()
    if kinds:
        table = table.filter(pc.is_in(table["error_kind"], value_set=pa.array(list(kinds))))
    return where, table.sort_by("image_id")
