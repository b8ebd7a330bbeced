"""The nightly reindex: under a lease, embed (only new or changed content) → build_index (incremental or
retrain) → publish, and a run report (JSON and a readable summary) in the store."""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from lookalike.core.errors import EXIT_BUG, EXIT_INTERRUPTED, ConfigError
from lookalike.core.layout import IDS_FILE, EmbeddingsLayout, IndexLayout, ReindexLayout
from lookalike.core.lease import Lease, outcome_of
from lookalike.core.logs import bind, run_context
from lookalike.core.manifest import new_run_id, utc_now
from lookalike.core.signals import interruption
from lookalike.core.stages import Stages
from lookalike.core.store import Store
from lookalike.embed.config import EmbedConfig
from lookalike.embed.versions import open_version
from lookalike.index import publish
from lookalike.model.spec import ModelSpec
from lookalike.pipelines import whitening as reindex_whitening
from lookalike.pipelines.whitening import FOLLOW_MODEL_CARD

log = logging.getLogger(__name__)
KIND = "reindex_report"


@dataclass(frozen=True)
class ReindexConfig:
    """The nightly run of one index: its embed and build configs (same store) and the run's own settings;
    `ReindexConfig.of(images, store, index)` makes one with the defaults of `lookalike reindex`."""

    embed: EmbedConfig                   # images, store, model, master, run_id (None: new, or resume)
    index: Any                           # BuildIndexConfig: name, budget, recall gate; `publish` is ours
    keep: int | None = None              # retention after publishing
    lease_ttl_s: float = 900.0           # a crashed run's lease blocks the next run at most this long
    fresh: bool = False                  # never resume the unfinished run a crashed or failed run left
    # PCA-whitening learned once from the catalogue: FOLLOW_MODEL_CARD (to DEFAULT_WHITEN_DIM unless the model's
    # card measured that it does not help), a number of dimensions (always), or None (never).
    whiten: int | str | None = FOLLOW_MODEL_CARD
    whiten_sample: int = reindex_whitening.SAMPLE_IMAGES  # images embedded unwhitened to learn it from

    def __post_init__(self):
        if (self.embed.store, self.embed.storage_options) != (self.index.store, self.index.storage_options):
            raise ConfigError("embed and build_index must use the same store and store options")
        if self.lease_ttl_s <= 0:
            raise ConfigError(f"lease_ttl_s must be > 0, got {self.lease_ttl_s}")
        if self.keep is not None and self.keep < 1:
            raise ConfigError("--keep must be >= 1")
        if self.whiten != FOLLOW_MODEL_CARD and self.whiten is not None and (
                not isinstance(self.whiten, int) or self.whiten < 1):
            raise ConfigError(f"--whiten must be >= 1 dimension, {FOLLOW_MODEL_CARD!r} or off, got {self.whiten!r}")
        if self.whiten_sample < 1:
            raise ConfigError(f"--whiten-sample must be >= 1, got {self.whiten_sample}")
        if self.embed.model.space != "visual":
            # A word space's vectors are the text encoder's: whitening them would leave the space text queries
            # are in.
            object.__setattr__(self, "whiten", None)

    @property
    def name(self) -> str:
        return self.index.name

    @classmethod
    def of(cls, images: str, store: str, index: str, *, master: str | None = "local[*]",
           storage_options: dict[str, Any] | None = None, model: ModelSpec | None = None, **options: Any
           ) -> ReindexConfig:
        """The nightly run of `index` over the images at `images` (a folder, a prefix URL or an images table) into
        `store`, with `lookalike reindex`'s defaults; `options` are this config's own fields (keep, whiten, ...)."""
        from lookalike.index.build import BuildIndexConfig  # faiss, only when a run is configured
        shared = {"store": store, "master": master, "storage_options": dict(storage_options or {})}
        return cls(embed=EmbedConfig(images=images, model=model or ModelSpec(), **shared),
                   index=BuildIndexConfig(name=index, incremental=True, **shared), **options)


def run(config: ReindexConfig) -> dict[str, Any]:
    """One nightly run; returns its report. Raises LeaseHeld (nothing done) when another run holds the lease."""
    with run_context(index=config.name):
        return _run(config)


def _run(config: ReindexConfig) -> dict[str, Any]:
    started = time.perf_counter()
    store = Store(config.embed.store, config.embed.storage_options)
    layout = ReindexLayout(store, config.name)
    store.check_writable(ReindexLayout(store, config.name).prefix)
    lease = Lease(store, layout.lease, config.lease_ttl_s, f"index {config.name!r}")
    previous = lease.acquire(config.embed.run_id or new_run_id())
    run_id, resumed = _choose_run_id(config, previous, lease.record.run_id)
    bind(run_id=run_id)
    report: dict[str, Any] = {
        "kind": KIND, "name": config.name, "run_id": run_id, "status": "running", "started_at": utc_now(),
        "resumed": resumed, "took_over_lease": previous.describe() if previous else None,
        "latest": {"before": publish.latest_version(store, config.name)}, "timings": {},
    }
    stages = Stages(report["timings"], "embed")
    try:
        if run_id != lease.record.run_id:
            lease.renew(run_id)  # the lease names the run it protects, for whoever takes it over after a crash
        lease.start_heartbeat()
        with stages("embed", "embed_s"):
            whitening = reindex_whitening.plan(store, config.name, run_id, config.embed, config.whiten,
                                               lambda embed_config: _embed(embed_config, run_id),
                                               config.whiten_sample)
            report["whitening"] = whitening.report
            embedded = whitening.embedded or _embed(whitening.embed, run_id)
        report.update(_embed_part(store, embedded))
        with stages("build_index", "build_s"):
            source = f"{embedded['fingerprint_id']}/{run_id}"
            built = _built_from(store, config.name, source)
            unchanged = built is None and _same_content(store, config.name, embedded)
            if not unchanged and built is None:
                from lookalike.index import build as index_build  # faiss: only when there is something to build
                built = index_build.run(dataclasses.replace(config.index, embeddings=source, publish=False,
                                                            keep=None))
        if unchanged:
            report["status"] = "unchanged"
            report["latest"]["after"] = report["latest"]["before"]
        else:
            report["index"] = _index_part(built)
            with stages("publish", "publish_s"):
                lease.ensure_held()  # a run that lost its lease while stalled must not move LATEST
                if publish.latest_version(store, config.name) != built["version"]:
                    publish.set_latest(store, config.name, built["version"])
                report["latest"]["after"] = built["version"]
                report["retention"] = {"deleted": publish.retain(store, config.name, config.keep)
                                       if config.keep else []}
                report["status"] = "published"
    except BaseException as e:
        outcome = outcome_of(e)
        code = EXIT_INTERRUPTED if outcome == "interrupted" else getattr(e, "exit_code", EXIT_BUG)
        report.update(status=outcome, exit_code=code,
                      error={"stage": stages.current, "type": type(e).__name__, "message": str(interruption() or e)})
        lease.release(outcome)  # first: a retry may start the moment this process is gone
        _finish(report, started, layout)
        raise
    report["exit_code"] = 0
    _finish(report, started, layout)
    lease.release()
    return report


def _choose_run_id(config: ReindexConfig, previous, acquired_run_id: str) -> tuple[str, bool]:
    """Resume the run a crashed or failed holder left unfinished (its embed tasks and index are reused),
    unless the user named a run id or asked for a fresh run."""
    if config.embed.run_id or config.fresh or previous is None:
        return acquired_run_id, False
    log.info("resuming run %s, left unfinished by its holder (--fresh starts a new run instead)", previous.run_id)
    return previous.run_id, True


def _embed(config: EmbedConfig, run_id: str) -> dict[str, Any]:
    from lookalike.embed import job as embed
    return embed.run(dataclasses.replace(config, run_id=run_id, incremental=True))


def _embed_part(store: Store, manifest: dict[str, Any]) -> dict[str, Any]:
    c = manifest["counts"]
    errors = EmbeddingsLayout(store, manifest["fingerprint_id"], manifest["run_id"]).errors
    return {
        "embeddings": f"{manifest['fingerprint_id']}/{manifest['run_id']}",
        "images": {"listed": c["images"], "new": c.get("ids_added", 0), "changed": c.get("ids_changed", 0),
                   "unchanged": c.get("ids_unchanged", 0), "removed": c["removed"], "failed": c["failed"],
                   "embedded": c["new"], "carried_over": c["carried"], "indexed": c["rows"]},
        "errors_table": store.child_url(errors) if c["failed"] else None,
        # What finding the changes cost: the objects read and hashed are the ones the listing could not vouch for.
        "reading": {"listed": c["images"], "unchanged_by_listing": c.get("unchanged_by_listing", 0),
                    "read": c.get("read", c["images"]), "bytes_read": c.get("bytes_read"),
                    "hashed": c.get("hashed"), "carried_by_hash": c.get("carried_by_hash"),
                    "change_detection": manifest.get("change_detection", {}).get("mode", "read"),
                    "untagged": manifest.get("change_detection", {}).get("untagged")},
        "embed_timings": {k: manifest["timings"][k] for k in ("list_s", "plan_s", "tasks_s")
                          if k in manifest["timings"]},
        "memory": manifest.get("memory", {}),
    }


def _built_from(store: Store, name: str, source: str) -> dict[str, Any] | None:
    """A complete index version already built from this embeddings version (a resumed run that got that far)."""
    for row in publish.list_versions(store, name):
        if not row["complete"]:
            continue
        m = publish.read_index_manifest(store, name, row["version"])
        if m.get("source", {}).get("embeddings") == f"embeddings/{source}":
            return m
    return None


def _same_content(store: Store, name: str, embedded: dict[str, Any]) -> bool:
    """True when LATEST already indexes exactly these (image id, content) pairs with this model."""
    version = publish.latest_version(store, name)
    if version is None:
        return False
    m = publish.read_index_manifest(store, name, version)
    if m["fingerprint_id"] != embedded["fingerprint_id"] or m["ntotal"] != embedded["counts"]["rows"]:
        return False
    c = embedded["counts"]
    if c.get("ids_added", 1) or c.get("ids_changed", 1) or c["removed"]:
        return False
    keys = ["image_id", "content_sha256"]
    indexed = store.read_parquet(IndexLayout(store, name, version).key(IDS_FILE), keys)
    current = open_version(store, embedded["fingerprint_id"], embedded["run_id"]).read_all(keys)
    return _sorted_pairs(indexed).equals(_sorted_pairs(current))


def _sorted_pairs(table: pa.Table) -> pa.Table:
    return table.select(["image_id", "content_sha256"]).sort_by("image_id").combine_chunks()


def _index_part(m: dict[str, Any]) -> dict[str, Any]:
    point = m["operating_point"]
    return {"version": m["version"], "factory": m["factory"], "ntotal": m["ntotal"],
            "build_mode": "incremental" if m["build_mode"].get("incremental") else "full",
            "reason": m["build_mode"].get("reason"), "recall_at_10": point["recall_at_10"],
            "recall_at_1": point["recall_at_1"], "qps": point["qps"], "search": point["params"]}


def _finish(report: dict[str, Any], started: float, layout: ReindexLayout) -> None:
    report["finished_at"] = utc_now()
    report["timings"]["total_s"] = round(time.perf_counter() - started, 3)
    text = summarise(report)
    try:
        layout.store.write_json(layout.report(report["run_id"]), report)
        layout.store.write_text(layout.summary(report["run_id"]), text + "\n")
        layout.store.write_json(layout.last, report)
    except Exception as e:  # the run's outcome stands even if its report cannot be written
        log.error("could not write the reindex report to %s: %s", layout.store.url, e)
    # One line: the summary itself is what the command prints (or the caller shows), never twice with -v.
    log.info("reindex %s run %s %s; report at %s", report["name"], report["run_id"], report["status"],
             layout.store.child_url(layout.report(report["run_id"])))


def summarise(r: dict[str, Any]) -> str:
    """The report as a few lines a person reads in a log or an alert."""
    lines = [f"reindex {r['name']} run {r['run_id']}: {r['status'].upper()}"
             + (" (resumed)" if r.get("resumed") else "") + f" in {r['timings'].get('total_s', 0):.1f}s"]
    if "images" in r:
        i = r["images"]
        lines.append(f"  images: {i['listed']:,} listed; {i['new']:,} new, {i['changed']:,} changed, "
                     f"{i['removed']:,} removed, {i['failed']:,} failed; {i['embedded']:,} embedded, "
                     f"{i['carried_over']:,} carried over")
        if r.get("reading"):
            d = r["reading"]
            how = {"listing": "by the listing", "rehash": "--rehash: everything read",
                   "read": "by reading (the listing gives no ETag or mtime)",
                   "first": "by reading every image (the first version: nothing to compare with)",
                   "full": "by reading every image (the previous version is not carried from)"}.get(
                d["change_detection"], d["change_detection"])
            lines.append(f"  changes found {how}: {d['unchanged_by_listing']:,} unchanged by the listing, "
                         f"{d['read']:,} read ({(d['bytes_read'] or 0) / 1e6:,.1f} MB), {d['hashed'] or 0:,} hashed"
                         + (f"; worker peak RSS {r['memory']['worker_peak_rss_mb']:,} MB"
                            if r.get("memory", {}).get("worker_peak_rss_mb") else ""))
        if r.get("errors_table"):
            lines.append(f"  errors table: {r['errors_table']}")
    w = r.get("whitening") or {}
    if w.get("status") == "waiting":
        lines.append(f"  whitening to {w['dim']} d waits for {w['needed']:,} images (the catalogue has "
                     f"{w['images']:,}): unwhitened vectors indexed")
    elif w.get("status") == "learned":
        lines.append(f"  whitening to {w['dim']} d learned from {w['learned_from_images']:,} images "
                     f"({w['learned_from']}; later runs reuse it): {w['uri']}")
    elif w.get("uri"):
        lines.append(f"  whitening: {w['uri']}")
    if w.get("model_card"):
        gain = w["model_card"].get("mAP_gain")
        measured = f" (validation mAP {gain:+.3f} whitened)" if isinstance(gain, int | float) else ""
        lines.append(f"  the model's card measured that whitening does not help it{measured}: " + (
            "its vectors are indexed unwhitened" if w["status"] == "off" else
            "this index keeps the whitening it was built with; --no-whiten indexes unwhitened vectors (the "
            "catalogue is embedded once more)"))
    if "index" in r:
        x = r["index"]
        lines.append(f"  index {x['version']}: {x['build_mode']} ({x['reason']}), {x['factory']} over "
                     f"{x['ntotal']:,} vectors; 10-R@10 {x['recall_at_10']:.3f}, R@1 {x['recall_at_1']:.3f}, "
                     f"{x['qps']:.0f} QPS")
    latest = r.get("latest", {})
    if r["status"] == "published":
        lines.append(f"  LATEST: {latest.get('before') or '-'} → {latest['after']}")
    elif r["status"] == "unchanged":
        lines.append(f"  nothing changed: LATEST stays {latest.get('before')}")
    if r.get("error"):
        e = r["error"]
        lines.append(f"  failed in {e['stage']}: {e['type']}: {e['message']}")
        lines.append(f"  LATEST untouched: {latest.get('before') or '-'}; the next run resumes {r['run_id']} "
                     "(--fresh starts over)")
    t = r["timings"]
    lines.append("  timings: " + ", ".join(f"{k.removesuffix('_s')} {v:.1f}s" for k, v in t.items()))
    return "\n".join(lines)
