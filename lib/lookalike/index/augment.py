"""Database-side augmentation (DBA) as an embeddings version of its own: every vector of a source version replaced
by the α-weighted mean of itself and its top n neighbours in that version (lookalike.index.rerank.expand).

One Spark task per source part: the task searches its part's vectors against the whole version exactly (the
version's vectors loaded once per executor process, as `join --base-embeddings` does), drops each vector's own
hit, augments, and writes the part again with only the embedding column changed. The result lives under the
same model fingerprint (queries are embedded by the same model and are not augmented), as run
`<source run>.dba<n>-a<alpha>`, and never moves the fingerprint's LATEST: nightly runs keep carrying over the
model's own vectors. Build an index from it with `build-index --embeddings FINGERPRINT/<that run>`.

Tasks commit a part and a marker each; a rerun with the same settings skips committed parts and finishes; the
manifest is written last.
"""

from __future__ import annotations

import functools
import json
import time
from dataclasses import dataclass, field
from typing import Any

import faiss
import numpy as np
import pyarrow as pa

from lookalike.core.errors import ConfigError
from lookalike.core.layout import EmbeddingsLayout
from lookalike.core.manifest import new_manifest
from lookalike.core.schemas import embedding_type
from lookalike.core.spark import run_tasks
from lookalike.core.store import Store
from lookalike.embed.versions import KIND, open_ref, open_version, read_vectors
from lookalike.index.rerank import Expansion, expand
from lookalike.index.search import SearchParams, search, stored_vectors


@dataclass(frozen=True)
class AugmentConfig:
    store: str
    embeddings: str | None = None         # FINGERPRINT[/RUN]; None: the store's only model, its LATEST
    expansion: Expansion = Expansion(1, 3.0)
    master: str | None = "local[*]"
    batch_size: int = 4096
    storage_options: dict[str, Any] = field(default_factory=dict)
    spark_conf: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.expansion.enabled:
            raise ConfigError("DBA needs at least one neighbour: --neighbours N with N >= 1")


def augmented_run_id(source_run: str, expansion: Expansion) -> str:
    return f"{source_run}.dba{expansion.n}-a{expansion.alpha:g}"


def run(config: AugmentConfig) -> dict[str, Any]:
    started = time.perf_counter()
    store = Store(config.store, config.storage_options)
    source = open_ref(store, config.embeddings)
    if "augmented" in source.manifest:
        raise ConfigError(f"{source.layout.prefix} is already augmented ({source.manifest['augmented']}): augment "
                          "the model's own version")
    run_id = augmented_run_id(source.layout.run_id, config.expansion)
    layout = EmbeddingsLayout(store, source.layout.fingerprint_id, run_id)
    if store.exists(layout.manifest):
        return open_version(store, layout.fingerprint_id, run_id).manifest  # done before: the same version
    offsets = np.concatenate([[0], np.cumsum(source.part_rows)]).tolist()
    task = AugmentTask(store.url, json.dumps(store.options), source.layout.fingerprint_id, source.layout.run_id,
                       run_id, tuple(source.parts), tuple(offsets[:-1]), config.expansion, config.batch_size)
    markers = sorted(run_tasks(task, list(range(len(source.parts))), config.master, "lookalike-dba",
                               config.spark_conf, stage="augment", unit="vectors", total=sum(source.part_rows)),
                     key=lambda m: m["task"])
    manifest = new_manifest(
        KIND, run_id=run_id, fingerprint_id=source.layout.fingerprint_id, fingerprint=source.manifest["fingerprint"],
        dim=source.dim, counts={**source.manifest["counts"], "rows": sum(m["rows"] for m in markers)},
        timings={"total_s": round(time.perf_counter() - started, 3),
                 "tasks_s": round(sum(m["seconds"] for m in markers), 3)},
        previous_run=None, inputs={"embeddings": source.layout.prefix, "store": config.store},
        config=source.manifest.get("config", {}), schema_version=1,
        augmented={"method": "dba", "neighbours": config.expansion.n, "alpha": config.expansion.alpha,
                   "source_run": source.layout.run_id},
        files={"embeddings": [m["part"] for m in markers], "errors": source.manifest["files"]["errors"]},
    )
    store.write_json(layout.manifest, manifest)  # the commit; LATEST stays the model's own version
    return manifest


@functools.lru_cache(maxsize=2)
def exact_index(store_url: str, options_json: str, fingerprint_id: str, run_id: str) -> faiss.Index:
    """Every vector of an embeddings version in an exact L2 index (row = position over its parts), loaded once
    per executor process (Spark reuses Python workers)."""
    store = Store(store_url, json.loads(options_json))
    version = open_version(store, fingerprint_id, run_id)
    flat = faiss.IndexFlatL2(version.dim)  # unit vectors: L2 ranks as cosine does; search() reports cosines
    for key in version.parts:
        flat.add(read_vectors(store, key))
    return flat


@dataclass(frozen=True)
class AugmentTask:
    store_url: str
    options_json: str
    fingerprint_id: str
    source_run: str
    run_id: str
    parts: tuple[str, ...]
    offsets: tuple[int, ...]   # global row of each part's first vector
    expansion: Expansion
    batch_size: int

    def __call__(self, task: int) -> dict[str, Any]:
        store = Store(self.store_url, json.loads(self.options_json))
        layout = EmbeddingsLayout(store, self.fingerprint_id, self.run_id)
        if store.exists(layout.marker(task)):
            return store.read_json(layout.marker(task))  # committed by an earlier attempt
        started = time.perf_counter()
        flat = exact_index(self.store_url, self.options_json, self.fingerprint_id, self.source_run)
        table = store.read_parquet(self.parts[task])
        vectors = read_vectors(store, self.parts[task])
        augmented = np.empty_like(vectors)
        n = self.expansion.n
        for lo in range(0, len(vectors), self.batch_size):
            batch = vectors[lo:lo + self.batch_size]
            scores, ids = search(flat, batch, n + 1, SearchParams())
            own = self.offsets[task] + lo + np.arange(len(batch))
            # Each vector's own hit out (first, or tied with an exact duplicate); then the top n others.
            order = np.argsort(ids == own[:, None], axis=1, kind="stable")[:, :n]
            ids, scores = np.take_along_axis(ids, order, axis=1), np.take_along_axis(scores, order, axis=1)
            scores = np.where(ids >= 0, scores, -np.inf)
            augmented[lo:lo + len(batch)] = expand(batch, stored_vectors(flat, ids), scores, self.expansion)
        dim = vectors.shape[1]
        column = pa.FixedSizeListArray.from_arrays(pa.array(augmented.ravel(), pa.float32()), dim)
        table = table.set_column(table.schema.get_field_index("embedding"),
                                 pa.field("embedding", embedding_type(dim), nullable=False), column)
        nbytes = store.write_parquet(layout.part(task), table)
        marker = {"task": task, "rows": table.num_rows, "seconds": round(time.perf_counter() - started, 3),
                  "part": {"key": layout.part(task), "rows": table.num_rows, "bytes": nbytes}}
        store.write_json(layout.marker(task), marker)
        return marker
