"""Where an embeddings version lives in the store, and how to read one back through its manifest."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from lookalike.manifest import ManifestError, read_manifest
from lookalike.schemas import check_embeddings
from lookalike.storage import Store

MANIFEST = "_MANIFEST.json"
KIND = "embeddings"


@dataclass(frozen=True)
class RunLayout:
    """embeddings/<fingerprint>/<run_id>/{part-*.parquet, errors/, _tasks/, _plan.parquet, _MANIFEST.json}"""

    store: Store
    fingerprint_id: str
    run_id: str

    @property
    def prefix(self) -> str:
        return f"embeddings/{self.fingerprint_id}/{self.run_id}"

    def key(self, name: str) -> str:
        return f"{self.prefix}/{name}"

    @property
    def manifest(self) -> str:
        return self.key(MANIFEST)

    @property
    def plan(self) -> str:
        return self.key("_plan.parquet")

    @property
    def carry(self) -> str:
        return self.key("_carry.parquet")

    def part(self, task: int) -> str:
        return self.key(f"part-{task:05d}.parquet")

    def errors_part(self, task: int) -> str:
        return self.key(f"errors/part-{task:05d}.parquet")

    def marker(self, task: int) -> str:
        return self.key(f"_tasks/task-{task:05d}.json")


def read_vectors(store: Store, part_key: str) -> np.ndarray:
    """The embedding column of one shard as a (rows, dim) float32 array."""
    table = store.read_parquet(part_key, ["embedding"])
    column = table["embedding"].combine_chunks()
    return column.values.to_numpy().reshape(len(column), -1).astype(np.float32, copy=False)


def latest_key(fingerprint_id: str) -> str:
    return f"embeddings/{fingerprint_id}/LATEST"


def latest_run_id(store: Store, fingerprint_id: str) -> str | None:
    """The run id LATEST names for this fingerprint, or None before the first completed run."""
    try:
        return store.read_text(latest_key(fingerprint_id)).strip() or None
    except FileNotFoundError:
        return None


def fingerprints(store: Store) -> list[str]:
    return [k.rsplit("/", 1)[-1] for k in store.list("embeddings")]


@dataclass(frozen=True)
class EmbeddingsVersion:
    """A completed embeddings run, known only through its manifest."""

    layout: RunLayout
    manifest: dict[str, Any]

    @property
    def dim(self) -> int:
        return int(self.manifest["fingerprint"]["dim"])

    @property
    def parts(self) -> list[str]:
        return [f["key"] for f in self.manifest["files"]["embeddings"]]

    @property
    def error_parts(self) -> list[str]:
        return [f["key"] for f in self.manifest["files"]["errors"]]

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

    def model_spec(self) -> Any:
        """The ModelSpec the embed run recorded (its weights read with the store's options); None for vectors
        made outside lookalike. Imports torch only when called: executors reading vectors never do."""
        recorded = self.manifest.get("config", {}).get("model")
        if recorded is None:
            return None
        from lookalike.models import ModelSpec
        return ModelSpec.from_recorded(recorded, self.layout.store.options)

    def read_errors(self) -> pa.Table:
        tables = [self.layout.store.read_parquet(k) for k in self.error_parts]
        return pa.concat_tables(tables, promote_options="permissive")


def open_version(store: Store, fingerprint_id: str, run_id: str | None = None) -> EmbeddingsVersion:
    """A completed version: the given run, or LATEST. Fails with what to do when there is none."""
    run_id = run_id or latest_run_id(store, fingerprint_id)
    if run_id is None:
        raise ManifestError(f"no completed embeddings for model {fingerprint_id} in {store.url}: run "
                            "`lookalike embed` first")
    layout = RunLayout(store, fingerprint_id, run_id)
    try:
        manifest = read_manifest(store, layout.manifest, KIND)
    except ManifestError as e:
        raise ManifestError(f"embeddings run {run_id} of {fingerprint_id} is not complete (no manifest): "
                            "rerun `lookalike embed` with this --run-id to finish it") from e
    return EmbeddingsVersion(layout, manifest)


def open_spec(store: Store, spec: str) -> EmbeddingsVersion:
    """'FINGERPRINT' (its LATEST) or 'FINGERPRINT/RUN_ID', as users write it on the command line."""
    fingerprint_id, _, run_id = spec.partition("/")
    try:
        return open_version(store, fingerprint_id, run_id or None)
    except ManifestError as e:
        raise ManifestError(f"{e} (models in this store: {', '.join(fingerprints(store)) or 'none'})") from e
