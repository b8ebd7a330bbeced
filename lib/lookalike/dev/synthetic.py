"""Seeded, structured synthetic embeddings for tests and benchmarks: a mixture of anisotropic Gaussians on
the unit sphere (uniform noise has no neighbours worth finding), written as a real embeddings version."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pyarrow as pa

from lookalike.core.layout import EmbeddingsLayout, embeddings_latest_key
from lookalike.core.manifest import new_manifest
from lookalike.core.schemas import embeddings_schema
from lookalike.core.store import Store
from lookalike.embed.versions import KIND


def clustered_vectors(n: int, d: int, clusters: int = 256, seed: int = 0, spread: float = 0.35,
                      part: int | None = None) -> np.ndarray:
    """Unit vectors around `clusters` centres, each cluster stretched along its own random directions.
    With `part`, the members come from that part's own stream around the same centres: a large set can be
    made part by part without holding it whole."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, d)).astype(np.float32)
    scales = rng.gamma(2.0, 0.5, size=(clusters, d)).astype(np.float32)  # anisotropic per cluster and axis
    if part is not None:
        rng = np.random.default_rng([seed, part])
    out = np.empty((n, d), dtype=np.float32)
    for start in range(0, n, 65_536):
        stop = min(n, start + 65_536)
        which = rng.integers(0, clusters, stop - start)
        noise = rng.standard_normal((stop - start, d)).astype(np.float32) * scales[which]
        out[start:stop] = centres[which] / np.sqrt(d) + spread * noise / np.sqrt(d)
    out /= np.linalg.norm(out, axis=1, keepdims=True)
    return out


def write_embeddings_version(store: Store, vectors: np.ndarray, run_id: str = "synthetic", parts: int = 4,
                             fingerprint_id: str | None = None, id_prefix: str = "img",
                             image_ids: list[str] | None = None, content_hashes: list[str] | None = None,
                             metadata: dict[str, list] | None = None) -> dict:
    """Write vectors as a committed embeddings version (shards, empty errors, manifest, LATEST); metadata
    columns, one value per vector, are carried like an images table's."""
    bounds = np.linspace(0, len(vectors), parts + 1).astype(int)
    return write_embeddings_parts(store, (vectors[lo:hi] for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)),
                                  vectors.shape[1], run_id, fingerprint_id, id_prefix, image_ids, content_hashes,
                                  metadata)


def write_embeddings_parts(store: Store, parts: Iterable[np.ndarray], d: int, run_id: str = "synthetic",
                           fingerprint_id: str | None = None, id_prefix: str = "img",
                           image_ids: list[str] | None = None, content_hashes: list[str] | None = None,
                           metadata: dict[str, list] | None = None) -> dict:
    """The same, one part at a time from an iterable (a large version need never be held whole); ids, hashes
    and metadata are indexed by the row's position in the whole version."""
    fingerprint = {"architecture": "synthetic", "weights_sha256": "0" * 64, "preprocessing": {},
                   "pooling": "none", "gem_p": None, "whitening": None, "normalisation": "l2", "dim": d}
    fingerprint_id = fingerprint_id or f"synthetic-d{d}"
    layout = EmbeddingsLayout(store, fingerprint_id, run_id)
    files = []
    lo = 0
    for p, part in enumerate(parts):
        hi = lo + len(part)
        ids = image_ids[lo:hi] if image_ids else [f"{id_prefix}-{i:08d}" for i in range(lo, hi)]
        hashes = content_hashes[lo:hi] if content_hashes else [f"{i:064x}" for i in range(lo, hi)]
        extra = pa.table({k: v[lo:hi] for k, v in (metadata or {}).items()})
        table = pa.Table.from_pydict({
            "image_id": ids, "uri": [f"mem://{i}" for i in ids], "content_sha256": hashes,
            "width": pa.array(np.full(hi - lo, 256), pa.int32()), "height": pa.array(np.full(hi - lo, 256), pa.int32()),
            "embedding": pa.FixedSizeListArray.from_arrays(pa.array(np.ascontiguousarray(part).reshape(-1)), d),
            **{name: extra[name] for name in extra.column_names},
        }, schema=embeddings_schema(d, extra.schema if metadata else None))
        files.append({"key": layout.part(p), "rows": int(hi - lo), "bytes": store.write_parquet(layout.part(p), table)})
        lo = hi
    manifest = new_manifest(KIND, run_id=run_id, fingerprint_id=fingerprint_id, fingerprint=fingerprint, dim=d,
                            counts={"images": lo, "rows": lo, "new": lo, "carried": 0, "failed": 0, "removed": 0,
                                    "tasks": len(files)},
                            timings={}, files={"embeddings": files, "errors": []}, previous_run=None)
    store.write_json(layout.manifest, manifest)
    store.write_text(embeddings_latest_key(fingerprint_id), run_id + "\n")
    return manifest
