"""The batch jobs as functions of their typed configs, each returning its manifest (the reindex: its report) as a
dict: what `lookalike reindex | embed | build-index | join | export | evaluate` and the spark-submit entry points
run. Each config is validated when it is made; a wrong one raises ConfigError saying which field and why."""

from __future__ import annotations

from typing import Any

from lookalike.batch import evaluate as evaluate_job
from lookalike.batch import join as join_job
from lookalike.batch.evaluate import EvaluateConfig
from lookalike.batch.join import JoinConfig
from lookalike.embed import job as embed_job
from lookalike.embed.config import EmbedConfig
from lookalike.index import build as build_job
from lookalike.index import export as export_job
from lookalike.index.build import BuildIndexConfig
from lookalike.index.export import ExportConfig
from lookalike.pipelines import reindex as reindex_job
from lookalike.pipelines.reindex import ReindexConfig


def reindex(config: ReindexConfig) -> dict[str, Any]:
    """The nightly run of one index, under its lease: embed what changed, update or rebuild the index, publish
    it, and report (the report is also written to STORE/reindex/<index>/). Raises LeaseHeld (nothing done) when
    another run holds the lease, JobFailed when the run refused its result."""
    return reindex_job.run(config)


def embed(config: EmbedConfig) -> dict[str, Any]:
    """Images → an embeddings version (vectors, local features, errors table); returns its manifest."""
    return embed_job.run(config)


def build_index(config: BuildIndexConfig) -> dict[str, Any]:
    """An embeddings version → a trained, recall-measured index version (published when config.publish)."""
    return build_job.run(config)


def join(config: JoinConfig) -> dict[str, Any]:
    """Top-k neighbours of many queries (or a near-duplicate sweep) as Parquet pairs under STORE/joins/<run>/."""
    return join_job.run(config)


def export(config: ExportConfig) -> dict[str, Any]:
    """A published version split into shard bundles, one per destination store (serving hosts)."""
    return export_job.run(config)


def evaluate(config: EvaluateConfig) -> dict[str, Any]:
    """Retrieval metrics of an embeddings version (and of an index over it) on labelled queries, with a report."""
    return evaluate_job.run(config)


__all__ = ["BuildIndexConfig", "EmbedConfig", "EvaluateConfig", "ExportConfig", "JoinConfig", "ReindexConfig",
           "build_index", "embed", "evaluate", "export", "join", "reindex"]
