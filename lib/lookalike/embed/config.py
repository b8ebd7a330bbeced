"""The embed job's config: typed, frozen, validated up front, copied whole into the manifest (no torch here)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from lookalike.core.errors import ConfigError
from lookalike.core.layout import EMBEDDINGS_PREFIX, RUN_ID_PATTERN, check_namespace
from lookalike.core.options import option
from lookalike.core.store import Store, redact
from lookalike.image.feature_spec import FeatureSettings
from lookalike.image.limits import DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS
from lookalike.model.spec import MODEL_FILE_FIELDS, ModelSpec


@dataclass(frozen=True)
class EmbedConfig:
    """What `lookalike embed` does: which images, into which store, with which model, on which master."""

    images: str                          # folder/prefix URL, or a .parquet/.csv images table
    store: str                           # store root URL
    model: ModelSpec = field(default_factory=ModelSpec)
    run_id: str | None = None            # None: a new timestamped run; an existing id resumes that run
    master: str | None = "local[*]"      # a Spark master URL, "in-process", or None: spark-submit's
    storage_options: dict[str, Any] = field(default_factory=dict)  # fsspec options for s3:// etc.
    images_per_task: int = option(500, "images per Spark task: a task is what a failure retries and a rerun skips "
                                       "when committed")
    batch_size: int | None = option(None, "images per forward pass (default 8 on a CPU, where a batch's activations "
                                          "are the worker's memory; 64 on a GPU)", parse=int)
    io_threads: int = option(2, "threads per task reading and decoding images (and extracting local features) while "
                                "the model runs")
    max_error_rate: float = option(0.05, "the share of images that may fail (errors table) before the run refuses "
                                         "to commit")
    max_bytes: int = DEFAULT_MAX_BYTES
    max_pixels: int = DEFAULT_MAX_PIXELS
    incremental: bool = True             # carry over vectors of content already embedded by this model
    rehash: bool = option(False, "read and hash every image instead of trusting the listing's ETag/mtime (a weekly "
                                 "check)")
    images_in_flight: int | None = option(None, "per task, images read, decoded or batched at once: fewer bound a "
                                                "worker's memory more tightly, more keep the model busier on a slow "
                                                "store (default: 2 batches)", parse=int, metavar="N")
    # Keypoints beside each vector, for geometric verification of searches by image (None: vectors only).
    local_features: FeatureSettings | None = field(default_factory=FeatureSettings)
    spark_conf: dict[str, str] = field(default_factory=dict)
    # The store folder of this run's version: every catalogue's is `embeddings`; a one-off use (a join's query
    # images) gets its own, so that it never moves a catalogue's LATEST nor becomes the previous version of a
    # catalogue's next run.
    namespace: str = EMBEDDINGS_PREFIX

    def __post_init__(self):
        if not self.images:
            raise ConfigError("images: give a folder/prefix URL or a .parquet/.csv images table")
        if not self.store:
            raise ConfigError("store: give the store root URL (a folder path, file://..., s3://bucket/prefix)")
        if self.run_id is not None and not RUN_ID_PATTERN.match(self.run_id):
            raise ConfigError(f"run_id {self.run_id!r}: use letters, digits, '.', '_' and '-' (at most 128)")
        if self.images_per_task < 1:
            raise ConfigError(f"images_per_task must be >= 1, got {self.images_per_task}")
        if (self.batch_size is not None and self.batch_size < 1) or self.io_threads < 1:
            raise ConfigError("batch_size and io_threads must be >= 1")
        if not 0.0 <= self.max_error_rate <= 1.0:
            raise ConfigError(f"max_error_rate is a fraction in [0, 1], got {self.max_error_rate}")
        if self.images_in_flight is not None and self.images_in_flight < (self.batch_size or 1):
            raise ConfigError(f"images_in_flight ({self.images_in_flight}) must be at least batch_size "
                              f"({self.batch_size}): a batch is made of images in flight")
        if self.max_bytes < 1 or self.max_pixels < 1:
            raise ConfigError("max_bytes and max_pixels must be >= 1")
        check_namespace(self.namespace)

    def for_manifest(self) -> dict[str, Any]:
        """The config as a manifest records it: secrets redacted, and the model's files that live in this store
        (a whitening the nightly learned, weights a training run wrote) named by their key in it, so that a store
        copied or moved elsewhere still finds them (ModelSpec.from_recorded resolves them against its root)."""
        d = asdict(self)
        d["storage_options"] = redact(self.storage_options)
        d["model"].pop("weights_options", None)
        store = Store(self.store, self.storage_options)
        for name in MODEL_FILE_FIELDS:
            key = store.key_of(d["model"][name]) if d["model"].get(name) else None
            if key is not None:
                d["model"][name] = key
        return d
