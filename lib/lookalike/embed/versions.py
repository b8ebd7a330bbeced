"""Where an embeddings version lives in the store, and how to read one back through its manifest."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from lookalike.core.errors import ConfigError, InputError
from lookalike.core.layout import EMBEDDINGS_PREFIX, EmbeddingsLayout, EmbeddingsRef, embeddings_latest_key
from lookalike.core.manifest import EmbeddingsManifest, ManifestError, ManifestMissing, read_manifest
from lookalike.core.schemas import check_embeddings
from lookalike.core.store import Store
from lookalike.image.feature_spec import FeatureSettings
from lookalike.model.spec import ModelSpec

KIND = "embeddings"


def read_vectors(store: Store, part_key: str) -> np.ndarray:
    """The embedding column of one shard as a (rows, dim) float32 array."""
    table = store.read_parquet(part_key, ["embedding"])
    column = table["embedding"].combine_chunks()
    return column.values.to_numpy().reshape(len(column), -1).astype(np.float32, copy=False)


def latest_run_id(store: Store, fingerprint_id: str, namespace: str = EMBEDDINGS_PREFIX) -> str | None:
    """The run id LATEST names for this fingerprint, or None before the first completed run."""
    try:
        return store.read_text(embeddings_latest_key(fingerprint_id, namespace)).strip() or None
    except FileNotFoundError:
        return None


def fingerprints(store: Store) -> list[str]:
    return [k.rsplit("/", 1)[-1] for k in store.list(EMBEDDINGS_PREFIX)]


@dataclass(frozen=True)
class EmbeddingsVersion:
    """A completed embeddings run, known only through its manifest."""

    layout: EmbeddingsLayout
    manifest: EmbeddingsManifest

    @property
    def dim(self) -> int:
        return self.manifest.dim

    @property
    def parts(self) -> list[str]:
        return [f["key"] for f in self.manifest["files"]["embeddings"]]

    @property
    def error_parts(self) -> list[str]:
        return [f["key"] for f in self.manifest["files"]["errors"]]

    @property
    def local_features(self) -> FeatureSettings | None:
        """The local features this version carries beside its vectors, if any."""
        return FeatureSettings.from_dict(self.manifest.get("local_features"))

    @property
    def feature_parts(self) -> list[str]:
        """Row-aligned with `parts`; empty for a version without local features."""
        return [f["key"] for f in self.manifest["files"].get("features", [])]

    @property
    def part_rows(self) -> list[int]:
        return [int(f["rows"]) for f in self.manifest["files"]["embeddings"]]

    def read_rows(self, rows: np.ndarray, dtype: type = np.float32) -> np.ndarray:
        """The vectors of the given rows of the whole version (row r: the r-th over its parts in order), in the
        order given, reading only the parts that hold them: the one reader of rows by global position."""
        rows = np.asarray(rows, dtype=np.int64)
        total = sum(self.part_rows)
        if len(rows) and (rows.min() < 0 or rows.max() >= total):
            raise InputError(f"rows {rows.min()}..{rows.max()} asked of {self.layout.prefix}, which has {total}")
        out = np.empty((len(rows), self.dim), dtype)
        order = np.argsort(rows, kind="stable")
        ordered = rows[order]
        part_start = 0
        for key, count in zip(self.parts, self.part_rows, strict=True):
            lo, hi = (int(x) for x in np.searchsorted(ordered, [part_start, part_start + count]))
            batch_start = part_start
            # A part's batches one at a time, up to the last one wanted: the driver holds a batch, not a part.
            for batch in self.layout.store.iter_parquet(key, ["embedding"]) if hi > lo else ():
                end = int(np.searchsorted(ordered, batch_start + len(batch)))
                if end > lo:
                    column = batch.column(0)
                    vectors = column.flatten().to_numpy().reshape(len(column), self.dim)
                    out[order[lo:end]] = vectors[ordered[lo:end] - batch_start]
                    lo = end
                batch_start += len(batch)
                if lo >= hi:
                    break
            part_start += count
        return out

    def read_part(self, key: str, columns: list[str] | None = None) -> pa.Table:
        table = self.layout.store.read_parquet(key, columns)
        if columns is None or "embedding" in columns:
            check_embeddings(table.schema, self.dim, where=self.layout.store.child_url(key))
        return table

    def iter_tables(self, columns: list[str] | None = None) -> Iterator[pa.Table]:
        for key in self.parts:
            yield self.read_part(key, columns)

    def read_all(self, columns: list[str] | None = None) -> pa.Table:
        tables = list(self.iter_tables(columns))
        return pa.concat_tables(tables) if tables else pa.table({})

    def model_spec(self) -> ModelSpec | None:
        """The ModelSpec the embed run recorded (its weights read with the store's options); None for vectors
        made outside lookalike."""
        recorded = self.manifest.recorded_model
        if recorded is None:
            return None
        return ModelSpec.from_recorded(recorded, self.layout.store.options, self.layout.store.child_url())

    def read_errors(self) -> pa.Table:
        tables = [self.layout.store.read_parquet(k) for k in self.error_parts]
        return pa.concat_tables(tables, promote_options="permissive")


def open_version(store: Store, fingerprint_id: str, run_id: str | None = None,
                 namespace: str = EMBEDDINGS_PREFIX) -> EmbeddingsVersion:
    """A completed version: the given run, or LATEST. Fails with what to do when there is none."""
    run_id = run_id or latest_run_id(store, fingerprint_id, namespace)
    if run_id is None:
        raise ManifestError(f"no completed embeddings for model {fingerprint_id} in {store.url}: run "
                            "`lookalike embed` first")
    layout = EmbeddingsLayout(store, fingerprint_id, run_id, namespace)
    try:
        manifest = read_manifest(store, layout.manifest, KIND)
    except ManifestMissing as e:
        raise ManifestMissing(f"embeddings run {run_id} of {fingerprint_id} is not complete (no manifest): "
                              "rerun `lookalike embed` with this --run-id to finish it") from e
    return EmbeddingsVersion(layout, manifest)


def open_ref(store: Store, ref: str | EmbeddingsRef | None) -> EmbeddingsVersion:
    """The version a user named (`FINGERPRINT`: its LATEST, or `FINGERPRINT/RUN_ID`); with no name, the LATEST of
    the store's only model. Fails with the models the store holds when the name finds nothing."""
    found = fingerprints(store)
    if ref is None or ref == "":
        if len(found) != 1:
            raise ConfigError(f"the store holds embeddings of {len(found)} models ({', '.join(found) or 'none'}): "
                              "choose one with --embeddings FINGERPRINT[/RUN_ID]")
        return open_version(store, found[0])
    parsed = ref if isinstance(ref, EmbeddingsRef) else EmbeddingsRef.parse(ref)
    try:
        return open_version(store, parsed.fingerprint_id, parsed.run_id)
    except ManifestError as e:  # the same kind (a missing manifest stays ManifestMissing), with what there is
        raise type(e)(f"{e} (models in this store: {', '.join(found) or 'none'})") from e
