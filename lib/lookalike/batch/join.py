"""The similarity-join job: top-k neighbours (or all pairs above a threshold) for many queries against a
published index or, exactly, another embeddings version; self-joins group near-duplicates into clusters."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from typing import Any

from lookalike.batch.clusters import connected_clusters
from lookalike.batch.join_config import JoinConfig
from lookalike.batch.join_task import JoinTask
from lookalike.batch.text_queries import TEXT_QUERIES, embed_text_queries
from lookalike.core.errors import ConfigError
from lookalike.core.layout import EMBEDDINGS_PREFIX, JoinLayout
from lookalike.core.manifest import ManifestError, new_manifest, new_run_id, read_manifest
from lookalike.core.spark import run_tasks
from lookalike.core.store import Store, redact
from lookalike.embed import job as embed
from lookalike.embed.config import EmbedConfig
from lookalike.embed.provenance import Provenance, of_embeddings, of_index
from lookalike.embed.versions import EmbeddingsVersion, open_ref
from lookalike.embed.versions import open_version as open_embeddings
from lookalike.index.publish import read_index_manifest
from lookalike.index.search import SearchParams

log = logging.getLogger(__name__)
KIND = "join"


def run(config: JoinConfig) -> dict[str, Any]:
    """Join and return the manifest; rerunning a run id redoes only the tasks without a commit marker."""
    started = time.perf_counter()
    store = Store(config.store, config.storage_options)
    run_id = config.run_id or new_run_id()
    layout = JoinLayout(store, run_id)
    if store.exists(layout.manifest):
        return read_manifest(store, layout.manifest, KIND)
    plan_key = layout.plan
    if store.exists(plan_key):  # resuming: the same base version and queries, whatever LATEST is now
        plan = store.read_json(plan_key)
        base = _resolve_base(config, store, plan["base_version"])
        queries = _Queries.of_plan(store, plan)
        log.info("resuming join %s: %d tasks", run_id, plan["tasks"])
    elif config.query_texts is not None:
        base = _resolve_base(config, store, config.index_version)
        queries = _Queries.of_texts(embed_text_queries(store, config.query_texts, base["provenance"],
                                                       layout.key(TEXT_QUERIES)), config.query_texts)
    else:
        base = _resolve_base(config, store, config.index_version)
        queries = _Queries.of_version(_resolve_queries(config, store, base, layout))
    if queries.version is not None:
        _check_compatible(base, queries.version)  # before any Spark work
    params = _params(config, base)
    store.write_json(plan_key, {"base_version": base["version"], **queries.plan})

    task = JoinTask(store.url, json.dumps(config.storage_options, sort_keys=True), run_id,
                    queries.fingerprint_id, queries.run_id, queries.namespace, tuple(queries.parts), base["kind"],
                    base["name"], base["version"], config.k, params, config.threshold, config.self_join,
                    config.with_metadata, config.batch_size, config.shortlist if config.verify else None)
    t0 = time.perf_counter()
    markers = sorted(run_tasks(task, list(range(len(queries.parts))), config.master, "lookalike-join",
                               config.spark_conf, stage="join", unit="queries", total=queries.count),
                     key=lambda m: m["task"])
    timings = {"tasks_s": round(time.perf_counter() - t0, 3),
               "search_s": round(sum(m["timings"]["search_s"] for m in markers), 3)}
    n_queries = sum(m["queries"] for m in markers)
    counts = {"queries": n_queries, "pairs": sum(m["pairs"] for m in markers), "tasks": len(markers)}
    files = {"pairs": [m["part"] for m in markers]}
    if config.self_join:
        t0 = time.perf_counter()
        clusters, stats = connected_clusters(store, [m["part"]["key"] for m in markers])
        files["clusters"] = {"key": layout.clusters,
                             "bytes": store.write_parquet(layout.clusters, clusters),
                             "rows": clusters.num_rows}
        counts.update(stats)
        timings["clusters_s"] = round(time.perf_counter() - t0, 3)
    timings["total_s"] = round(time.perf_counter() - started, 3)
    timings["queries_per_s"] = round(n_queries / max(timings["tasks_s"], 1e-9), 1)
    manifest = new_manifest(
        KIND, run_id=run_id, base=base["describe"], queries=queries.describe, output=store.child_url(layout.prefix),
        params={"k": config.k, "threshold": config.threshold, **params.as_dict()}, counts=counts, timings=timings,
        files=files, config={**asdict(config), "storage_options": redact(config.storage_options)})
    store.write_json(layout.manifest, manifest)  # the commit of the whole join
    return manifest


@dataclass(frozen=True)
class _Queries:
    """What a join searches with: the parts of an embeddings version, or of text queries embedded for this run."""

    parts: list[str]
    plan: dict[str, Any]       # how a resumed run finds them again
    describe: dict[str, Any]   # the manifest's `queries`
    version: EmbeddingsVersion | None = None

    @property
    def fingerprint_id(self) -> str | None:
        return None if self.version is None else self.version.layout.fingerprint_id

    @property
    def run_id(self) -> str | None:
        return None if self.version is None else self.version.layout.run_id

    @property
    def count(self) -> int:
        return self.plan["query_texts"]["rows"] if self.version is None else sum(self.version.part_rows)

    @property
    def namespace(self) -> str | None:
        return None if self.version is None else self.version.layout.namespace

    @classmethod
    def of_version(cls, version: EmbeddingsVersion) -> _Queries:
        fingerprint_id, run = version.layout.fingerprint_id, version.layout.run_id
        return cls(version.parts, {"query_fingerprint": fingerprint_id, "query_run": run,
                                   "query_namespace": version.layout.namespace, "tasks": len(version.parts)},
                   {"embeddings": version.layout.prefix, "fingerprint_id": fingerprint_id}, version)

    @classmethod
    def of_texts(cls, written: dict[str, Any], source: str) -> _Queries:
        return cls([written["key"]], {"query_texts": written, "tasks": 1},
                   {"texts": source, "count": written["rows"], "text_encoder": written["text_encoder"]})

    @classmethod
    def of_plan(cls, store: Store, plan: dict[str, Any]) -> _Queries:
        if "query_texts" in plan:
            return cls.of_texts(plan["query_texts"], plan["query_texts"]["source"])
        return cls.of_version(open_embeddings(store, plan["query_fingerprint"], plan["query_run"],
                                              plan.get("query_namespace", EMBEDDINGS_PREFIX)))


def _resolve_base(config: JoinConfig, store: Store, version: str | None) -> dict[str, Any]:
    if config.index is not None:
        m = read_index_manifest(store, config.index, version)  # fails with what to do when missing
        return {"kind": "index", "name": config.index, "version": m["version"], "manifest": m,
                "provenance": of_index(store, m),
                "describe": {"index": config.index, "version": m["version"], "factory": m["factory"]}}
    fingerprint_id = config.base_embeddings.partition("/")[0]
    version = _embeddings(store, f"{fingerprint_id}/{version}" if version else config.base_embeddings,
                          "--base-embeddings")
    return {"kind": "embeddings", "name": version.layout.fingerprint_id, "version": version.layout.run_id,
            "manifest": version.manifest, "provenance": of_embeddings(version),
            "describe": {"embeddings": version.layout.prefix, "exact": True}}


def _resolve_queries(config: JoinConfig, store: Store, base: dict[str, Any], layout: JoinLayout
                     ) -> EmbeddingsVersion:
    if config.self_join:
        if base["kind"] == "embeddings":
            return open_embeddings(store, base["name"], base["version"])
        source = base["manifest"]["source"]
        return open_embeddings(store, base["provenance"].fingerprint_id, source["run_id"])
    if config.query_embeddings is not None:
        return _embeddings(store, config.query_embeddings, "--query-embeddings")
    spec = base["provenance"].require_spec("embed the queries yourself and give --query-embeddings")
    log.info("embedding the query images with %s before joining", spec.name)
    # Under the join's own run (a rerun of the join resumes it), never as a version of the catalogue.
    m = embed.run(EmbedConfig(images=config.query_images, store=config.store, model=spec, master=config.master,
                              run_id=layout.run_id, namespace=layout.queries_namespace,
                              storage_options=config.storage_options, spark_conf=config.spark_conf))
    return open_embeddings(store, m["fingerprint_id"], m["run_id"], layout.queries_namespace)


def _embeddings(store: Store, spec: str, flag: str) -> EmbeddingsVersion:
    try:
        return open_ref(store, spec)
    except ManifestError as e:
        raise ConfigError(f"{flag} {spec}: {e}") from e


def _check_compatible(base: dict[str, Any], queries: EmbeddingsVersion) -> None:
    base_space: Provenance = base["provenance"]
    base_space.check_vectors(of_embeddings(queries), "Embed the queries with the base's model (give --query-images "
                                                     "to have the join do it)")


def _params(config: JoinConfig, base: dict[str, Any]) -> SearchParams:
    if base["kind"] != "index":
        return SearchParams(expand=config.expand, expand_alpha=config.expand_alpha)
    default = SearchParams(**base["manifest"]["default_search"])
    return SearchParams(nprobe=config.nprobe or default.nprobe,
                        rescore=default.rescore if config.rescore is None else config.rescore,
                        expand=config.expand, expand_alpha=config.expand_alpha)
