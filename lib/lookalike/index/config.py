"""The index build's config: typed, frozen, validated up front, copied into the manifest; light to import (no
faiss), since the command line derives its flags from it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from lookalike.core.errors import ConfigError
from lookalike.core.options import option, parse_bytes
from lookalike.index.choice import CODES, FLAT_THRESHOLD

GiB = 1 << 30


@dataclass(frozen=True)
class BuildIndexConfig:
    """What `lookalike build-index` builds: from which embeddings version, in which memory, to which recall."""

    store: str
    name: str                            # the index's name: indexes/<name>/ in the store
    embeddings: str | None = None        # "FINGERPRINT" or "FINGERPRINT/RUN_ID"; None: the store's only one
    memory_budget: int = option(4 * GiB, "bytes the index may take, e.g. 48MiB: the largest code that fits is "
                                         "chosen", parse=parse_bytes, shown="4GiB")
    factory: str | None = option(None, "force a Faiss factory string, e.g. 'OPQ32_128,IVF4096,PQ32' (default: "
                                       "chosen from the vectors' count and the budget)", parse=str)
    codes: str = option("auto", "the index's codes: 'pq' (IVF-PQ), 'binary' (ITQ bits ranked by Hamming distance, "
                                "then re-scored exactly: faster for top-1000 answers, slower for top-10 ones), or "
                                "'auto', the builder's choice (IVF-PQ)", choices=CODES)
    flat_threshold: int = FLAT_THRESHOLD
    target_recall: float = option(0.95, "10-R@10 the default operating point must reach (the fastest setting "
                                        "that does is chosen)")
    min_recall: float = option(0.0, "refuse to publish below this best 10-R@10")
    force: bool = False
    publish: bool = False                # move LATEST to the new version
    incremental: bool = False            # update LATEST (add new, drop removed) when the drift check passes
    keep: int | None = None              # retention after publishing
    queries: int = option(1000, "held-out queries for the recall table")
    k: int = 10
    seed: int = option(0, "of the training sample and the held-out queries")
    scratch_dir: str | None = option(None, "where the build writes its local files (vectors, exact scorer, index, "
                                           "keypoints: about twice the version's size; checked before it starts); "
                                           "default: $LOOKALIKE_SCRATCH_DIR, else Spark's local dirs "
                                           "(SPARK_LOCAL_DIRS, spark.local.dir), else the system's temp folder",
                                     parse=str, metavar="DIR")
    master: str | None = "local[*]"
    storage_options: dict[str, Any] = field(default_factory=dict)
    spark_conf: dict[str, str] = field(default_factory=dict)

    def __post_init__(self):
        if not self.name or "/" in self.name:
            raise ConfigError(f"index name {self.name!r}: give a name without '/'")
        if self.memory_budget < 16 << 10:
            raise ConfigError(f"memory_budget is in bytes; {self.memory_budget} is less than 16 KiB")
        if not 0 <= self.min_recall <= 1 or not 0 < self.target_recall <= 1:
            raise ConfigError("min_recall and target_recall are fractions in [0, 1]")
        if self.queries < 1 or self.k < 1:
            raise ConfigError("queries and k must be >= 1")
        if self.codes not in CODES:
            raise ConfigError(f"codes {self.codes!r}: give one of {', '.join(CODES)}")
        if self.factory and self.codes != "auto":
            raise ConfigError(f"--factory {self.factory} and --codes {self.codes} both say what to build: give one")
