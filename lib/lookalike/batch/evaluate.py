"""`lookalike evaluate`: retrieval quality of an embeddings version, searched exactly and through a published
index, as a report folder: metrics.json, metrics.csv, per_label.csv, pr_curve.png, grids.png and index.html.

Two protocols (see lookalike.batch.metrics):
- leave-one-out: the images table had a `label` column; every labelled image is a query against all others;
- query set (`queries`): a table of query images (not in the catalogue) with the catalogue image ids relevant
  to each (`relevant`) and optionally ids to ignore (`junk`); the queries are embedded with the model that
  made the catalogue's vectors, so the evaluation runs the path a query worker runs.
"""

from __future__ import annotations

import csv
import html
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import faiss
import numpy as np
import pyarrow as pa
import torch

from lookalike.batch.metrics import (
    DEFAULT_KS,
    Judged,
    judge_leave_one_out,
    judge_queries,
    mean_average_precision,
    precision_at,
    recall_at,
    summary,
)
from lookalike.core.errors import ConfigError
from lookalike.core.extras import require
from lookalike.core.progress import progress
from lookalike.core.store import Store
from lookalike.embed.catalogue import load_catalogue
from lookalike.embed.config import EmbedConfig
from lookalike.embed.engine import EmbeddingEngine
from lookalike.embed.provenance import of_embeddings
from lookalike.embed.versions import EmbeddingsVersion, open_ref, open_version, read_vectors
from lookalike.image.decode import ImageError, decode
from lookalike.image.feature_spec import FeatureSettings
from lookalike.image.limits import DEFAULT_MAX_BYTES
from lookalike.image.local_features import LocalFeatures, extract, mirrored
from lookalike.image.read import read_image_bytes
from lookalike.index.rerank import Expansion, KReciprocal, NeighbourLists, k_reciprocal_rerank
from lookalike.index.search import SearchParams, search, stored_vectors
from lookalike.retrieval.query import Verification, search_vectors, stored_views

log = logging.getLogger(__name__)

GRID_QUERIES, GRID_HITS = 6, 8
VERIFIED_BATCH = 64  # queries verified between two progress updates
ID_SEPARATOR = "|"  # several relevant/junk ids in one text column (CSV): "a|b|c"


@dataclass(frozen=True)
class EvaluateConfig:
    """What `lookalike evaluate` measures: which vectors (and index), under which protocol, into which report."""

    store: str
    report: str                           # local folder for the report
    embeddings: str | None = None         # FINGERPRINT[/RUN]; None: the version `index` was built from
    images: EmbedConfig | None = None     # embed this images table first (incremental) and evaluate that
    index: str | None = None              # also search through this published index (its LATEST)
    queries: str | None = None            # query set table (image_id, uri, relevant[, junk]); None: leave-one-out
    label_column: str = "label"
    relevant_column: str = "relevant"
    junk_column: str = "junk"
    depth: int = 100                      # ranked results judged per query (raised to fit the largest R)
    expansion: Expansion = Expansion()    # αQE: also report each search with query expansion
    k_reciprocal: KReciprocal | None = None  # also report exact search re-ranked k-reciprocally
    verify: bool = True                   # with an index that has local features: also report it verified
    device: str = "cpu"                   # where query images are embedded
    storage_options: dict[str, Any] = field(default_factory=dict)


@dataclass
class Protocol:
    """What is judged: the query vectors, how a ranking (database rows) becomes relevance, and how the
    report shows queries."""

    description: str
    queries: np.ndarray                   # (Q, d) query vectors
    query_ids: list[str]
    query_uris: list[str]
    groups: list[str]                     # per query: the group the per-label table breaks down by
    judge: Callable[[np.ndarray], Judged]  # (Q, depth) database rows, -1 padded → Judged
    is_relevant: Callable[[int, int], bool]  # (query, database row)
    min_depth: int                        # the depth that sees every relevant item (and junk) of every query
    leave_one_out: bool
    extra: dict[str, Any] = field(default_factory=dict)  # counts reported beside the metrics


def run(config: EvaluateConfig) -> dict[str, Any]:
    require("report", "lookalike evaluate's report (curves and result grids)")
    store = Store(config.store, config.storage_options)
    # One index version for the whole evaluation, even if LATEST moves meanwhile.
    index = _open_index(store, config.index) if config.index else None
    version = _database_version(store, config, index)
    database = pa.concat_tables([version.read_part(p, _columns(store, version, config)) for p in version.parts])
    x = np.concatenate([read_vectors(store, p) for p in version.parts])
    protocol = (_query_set(store, config, version, database) if config.queries
                else _leave_one_out(config, database, x))
    depth = int(min(len(x), max(config.depth, protocol.min_depth, max(DEFAULT_KS) + 1)))

    flat = faiss.IndexFlatL2(x.shape[1])  # unit vectors: search() turns L2 into cosines
    flat.add(x)
    runs = {"exact": search(flat, protocol.queries, depth, SearchParams())}
    if config.expansion.enabled:
        runs["exact+αQE"] = search(flat, protocol.queries, depth, _expanded(SearchParams(), config.expansion))
    if config.k_reciprocal:
        runs["exact+k-reciprocal"] = _k_reciprocal(flat, *runs["exact"], config.k_reciprocal)
    if index:
        runs["index"] = _index_neighbours(store, index, database, protocol.queries, depth,
                                          version.layout.fingerprint_id, Expansion())
        if config.expansion.enabled:
            runs["index+αQE"] = _index_neighbours(store, index, database, protocol.queries, depth,
                                                  version.layout.fingerprint_id, config.expansion)
        if config.verify:
            verified = _verified_neighbours(store, index, database, protocol, depth)
            if verified is not None:
                runs["index+verified"] = verified
    judged = {name: protocol.judge(rows) for name, (_, rows) in runs.items()}
    metrics = {name: summary(j) for name, j in judged.items()}

    os.makedirs(config.report, exist_ok=True)
    _write_metrics(config.report, metrics)
    per_label = _per_label(judged["exact"], protocol.groups)
    _write_per_label(config.report, per_label)
    _pr_curve(config.report, judged, protocol.leave_one_out)
    shown = _grids(config.report, store, protocol, database, judged["exact"].rows, *runs["exact"])
    _html(config.report, version.layout.prefix, index, protocol, metrics, per_label, shown)
    return {"embeddings": version.layout.prefix, "index": index, "protocol": protocol.description,
            **protocol.extra, "metrics": metrics, "report": os.path.abspath(config.report)}


def metrics_table(out: dict) -> list[str]:
    """The metrics of an evaluate run as aligned text lines, then what was left out and where the report is."""
    width = max(8, *(len(name) for name in out["metrics"]))  # "exact+k-reciprocal" and the like
    lines = [f"{'search':{width}} {'queries':>7} {'P@1':>6} {'R@10':>6} {'R-prec':>7} {'mAP':>6} {'mAP@R':>6} "
             f"{'nDCG@10':>8}"]
    for name, m in out["metrics"].items():
        lines.append(f"{name:{width}} {m['queries']:>7} {m['precision@1']:>6.3f} {m['recall@10']:>6.3f} "
                     f"{m['r_precision']:>7.3f} {m['map']:>6.3f} {m['map@r']:>6.3f} {m['ndcg@10']:>8.3f}")
    for failed in out.get("failed_queries", []):
        lines.append(f"query {failed['image_id']} left out: {failed['reason']}")
    if out.get("relevant_not_in_catalogue"):
        lines.append(f"{out['relevant_not_in_catalogue']} relevant id(s) are not in the catalogue (counted as missed)")
    lines.append(f"report: {out['report']}/index.html")
    return lines


def _open_index(store: Store, name: str) -> dict[str, Any]:
    """LATEST of the index: its name, version, factory and default search parameters."""
    from lookalike.index.publish import read_index_manifest
    m = read_index_manifest(store, name, None)
    return {"name": name, "version": m["version"], "factory": m["factory"], "search": m["default_search"],
            "fingerprint_id": m["fingerprint_id"], "source_run_id": m["source"]["run_id"]}


def _database_version(store: Store, config: EvaluateConfig, index: dict[str, Any] | None) -> EmbeddingsVersion:
    if config.images is not None:
        if config.embeddings:
            raise ConfigError("give --images (embed, then evaluate) or --embeddings (evaluate a version), not both")
        from lookalike.embed import job as embed
        manifest = embed.run(config.images)
        return open_version(store, manifest["fingerprint_id"], manifest["run_id"])
    if config.embeddings:
        return open_ref(store, config.embeddings)
    if index is None:
        raise ConfigError("give --embeddings FINGERPRINT[/RUN] or --index NAME (its source embeddings are used)")
    return open_version(store, index["fingerprint_id"], index["source_run_id"])


def _columns(store: Store, version: EmbeddingsVersion, config: EvaluateConfig) -> list[str]:
    if config.queries:
        return ["image_id", "uri"]
    columns = set(store.read_parquet_schema(version.parts[0]).names) if version.parts else set()
    if config.label_column not in columns:
        raise ConfigError(f"embeddings {version.layout.prefix} have no {config.label_column!r} column: give the "
                          "images table a label column (same label = relevant to each other) and embed it again, "
                          "or evaluate with a query set (--queries)")
    return ["image_id", "uri", config.label_column]


def _leave_one_out(config: EvaluateConfig, database: pa.Table, x: np.ndarray) -> Protocol:
    labels = [lab if lab not in (None, "") else f"\0unlabelled-{i}"  # distractors: relevant to nothing
              for i, lab in enumerate(database[config.label_column].to_pylist())]
    _, counts = np.unique(labels, return_counts=True)
    return Protocol(
        description="leave-one-out: every labelled image is a query against all others; images sharing its "
                    "label are relevant, unlabelled images are distractors",
        queries=x, query_ids=database["image_id"].to_pylist(), query_uris=database["uri"].to_pylist(),
        groups=labels, judge=lambda rows: judge_leave_one_out(rows, labels),
        is_relevant=lambda q, row: labels[row] == labels[q], min_depth=int(counts.max()) + 1, leave_one_out=True)


def _query_set(store: Store, config: EvaluateConfig, version: EmbeddingsVersion, database: pa.Table) -> Protocol:
    table = load_catalogue(config.queries, store.options)
    if config.relevant_column not in table.column_names:
        raise ConfigError(f"query table {config.queries} has no {config.relevant_column!r} column (the catalogue "
                          f"image ids relevant to each query); it has {table.column_names}")
    relevant = [_id_set(v) for v in table[config.relevant_column].to_pylist()]
    junk = ([_id_set(v) for v in table[config.junk_column].to_pylist()]
            if config.junk_column in table.column_names else [set() for _ in relevant])
    db_ids = database["image_id"].to_pylist()
    known = set(db_ids)
    named = set().union(*relevant)
    missing = named - known
    if not named:
        raise ConfigError(f"no query of {config.queries} names a relevant id in {config.relevant_column!r}: give "
                          "each query the catalogue image ids that are right answers for it (queries that name none "
                          "are skipped)")
    if not named & known:
        raise ConfigError(f"none of the {len(named)} relevant ids of {config.queries} is an image_id of "
                          f"{version.layout.prefix} (e.g. {sorted(named)[:3]}): the relevant column must name "
                          "catalogue image ids")
    if missing:
        # They stay relevant and count as not found: an image the catalogue lost is a retrieval failure.
        log.warning("%d relevant id(s) are not in the catalogue, counted as not found: %s", len(missing),
                    sorted(missing)[:5])
    vectors, failed = _embed_queries(store, config, version, table["uri"].to_pylist())
    kept = [q for q in range(table.num_rows) if q not in failed]
    relevant, junk = [relevant[q] for q in kept], [junk[q] for q in kept]
    if not any(relevant):
        raise ConfigError(f"none of the {len(kept)} query image(s) of {config.queries} that could be read names a "
                          f"relevant id in {config.relevant_column!r}: nothing can be judged (the unreadable ones are "
                          f"{[table['uri'][q].as_py() for q in sorted(failed)][:3]}...)")
    groups_column = config.label_column if config.label_column in table.column_names else config.relevant_column
    groups = [str(v) for v in table[groups_column].to_pylist()]

    def judge(rows: np.ndarray) -> Judged:
        return judge_queries([[db_ids[r] for r in row if r >= 0] for row in rows], relevant, junk)

    return Protocol(
        description="query set: each query image is searched against the catalogue; the ids its table names "
                    "are relevant, junk ids are left out of its ranking, every other image is a distractor",
        queries=vectors, query_ids=[table["image_id"][q].as_py() for q in kept],
        query_uris=[table["uri"][q].as_py() for q in kept], groups=[groups[q] for q in kept], judge=judge,
        is_relevant=lambda q, row: db_ids[row] in relevant[q],
        min_depth=max((len(r) + len(j) for r, j in zip(relevant, junk, strict=True)), default=1),
        leave_one_out=False,
        extra={"failed_queries": [{"image_id": table["image_id"][q].as_py(), "reason": reason}
                                  for q, reason in sorted(failed.items())],
               "relevant_not_in_catalogue": len(missing)})


def _id_set(value: Any) -> set[str]:
    """A relevant or junk cell as image ids: a list, text 'a|b|c', or one id of any type (ids are text)."""
    if value is None:
        return set()
    if isinstance(value, str):
        return {v.strip() for v in value.split(ID_SEPARATOR) if v.strip()}
    if isinstance(value, list | tuple | set):
        return {str(v) for v in value if v is not None}
    return {str(value)}


def _embed_queries(store: Store, config: EvaluateConfig, version: EmbeddingsVersion, uris: list[str]
                   ) -> tuple[np.ndarray, dict[int, str]]:
    """The query images as vectors with the catalogue's model; images that cannot be used are left out with
    their reason (a bad query must not stop the evaluation)."""
    model = of_embeddings(version).load_model(config.device, "query images cannot be embedded the same way")
    engine = EmbeddingEngine(model, device=torch.device(config.device), storage_options=store.options)
    with progress("evaluate: embed the queries", len(uris), "images"):
        vectors, failed = engine.embed_all(uris)
    if failed:
        log.warning("%d query image(s) could not be embedded and are left out: %s", len(failed),
                    [uris[i] for i in sorted(failed)][:5])
    if not len(vectors):
        example = next(iter(failed.values()))
        raise ConfigError(f"none of the {len(uris)} query images could be embedded (e.g. {example})")
    return vectors, failed


def _expanded(params: SearchParams, expansion: Expansion) -> SearchParams:
    return replace(params, expand=expansion.n, expand_alpha=expansion.alpha)


def _k_reciprocal(flat: faiss.Index, scores: np.ndarray, rows: np.ndarray, settings: KReciprocal
                  ) -> tuple[np.ndarray, np.ndarray]:
    """The exact shortlists re-ordered k-reciprocally; the database's own lists come from the same exact index,
    for the rows the re-ranking asks about."""
    def neighbours(items: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        s, ids = search(flat, stored_vectors(flat, items), settings.k1 + 1, SearchParams())
        return ids, s
    ids, reranked = k_reciprocal_rerank(rows, scores, NeighbourLists(neighbours, settings.k1), settings)
    return reranked, ids


def _verified_neighbours(store: Store, index: dict[str, Any], database: pa.Table, protocol: Protocol, depth: int
                         ) -> tuple[np.ndarray, np.ndarray] | None:
    """The index search with each shortlist verified geometrically, as the query worker does it: query images'
    own features (and their mirror's) for a query set, the stored ones for leave-one-out. None when the index
    version has no local features."""
    from lookalike.index.reader import load_index_version
    v = load_index_version(store, index["name"], index["version"])
    if v.features is None:
        return None
    hits = []
    with progress("evaluate: verify the index's shortlists", len(protocol.queries), "queries") as step:
        for lo in range(0, len(protocol.queries), VERIFIED_BATCH):
            chunk = slice(lo, lo + VERIFIED_BATCH)
            if protocol.leave_one_out:
                faiss_ids = [v.faiss_id_of(i) for i in protocol.query_ids[chunk]]
                views = stored_views(v, np.array([-1 if f is None else f for f in faiss_ids]))
            else:
                views = [_image_views(store, uri, v.features.settings) for uri in protocol.query_uris[chunk]]
            hits += search_vectors(v, protocol.queries[chunk], depth, v.default_params,
                                   verification=Verification(views))
            step.advance(len(views))
    row_of_image = {image_id: row for row, image_id in enumerate(database["image_id"].to_pylist())}
    rows = np.full((len(hits), depth), -1, dtype=np.int64)
    scores = np.zeros((len(hits), depth), dtype=np.float32)
    for q, row in enumerate(hits):
        for j, h in enumerate(row):
            rows[q, j], scores[q, j] = row_of_image.get(h.image_id, -1), h.score
    return scores, rows


def _image_views(store: Store, uri: str, settings: FeatureSettings) -> list[LocalFeatures] | None:
    try:
        image = decode(read_image_bytes(uri, store.options, DEFAULT_MAX_BYTES), settings.image_size).image
    except ImageError:
        return None  # ranked by its cosines alone, like a worker query without features
    return [extract(image, settings), extract(mirrored(image), settings)]


def _index_neighbours(store: Store, index: dict[str, Any], database: pa.Table, queries: np.ndarray, depth: int,
                      fingerprint_id: str, expansion: Expansion) -> tuple[np.ndarray, np.ndarray]:
    from lookalike.index.reader import load_index_version
    if index["fingerprint_id"] != fingerprint_id:
        raise ConfigError(f"index {index['name']} holds vectors of {index['fingerprint_id']}, the embeddings are "
                          f"{fingerprint_id}: evaluate an index built from these embeddings")
    v = load_index_version(store, index["name"], index["version"])
    row_of_image = {image_id: row for row, image_id in enumerate(database["image_id"].to_pylist())}
    index_row = np.array([row_of_image.get(i, -1) for i in v.ids["image_id"].to_pylist()], dtype=np.int64)
    params = _expanded(v.default_params, expansion) if expansion.enabled else v.default_params
    scores, ids = search(v.index, queries, depth, params, v.exact)
    rows = np.where(ids >= 0, index_row[v.row_of_faiss[np.maximum(ids, 0)]], -1)
    return scores, rows


def _per_label(judged: Judged, groups: list[str]) -> list[dict[str, Any]]:
    """Metrics of each group's queries (label, or relevant ids), hardest first."""
    query_groups = np.asarray(groups, dtype=object)[judged.rows]
    out = []
    for group in sorted(set(query_groups.tolist()), key=str):
        mask = query_groups == group
        sub = Judged(judged.relevant[mask], judged.n_relevant[mask])
        out.append({"label": group, "images": int(mask.sum()), "precision@1": precision_at(sub, 1),
                    "recall@10": recall_at(sub, 10), "map@r": mean_average_precision(sub, at_r=True)})
    return sorted(out, key=lambda r: (r["map@r"], str(r["label"])))


def _write_metrics(report: str, metrics: dict[str, dict[str, float]]) -> None:
    with open(os.path.join(report, "metrics.json"), "w") as f:
        json.dump(metrics, f, indent=2)
    names = list(next(iter(metrics.values())))
    with open(os.path.join(report, "metrics.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["search", *names])
        for run_name, m in metrics.items():
            w.writerow([run_name, *(m[n] for n in names)])


def _write_per_label(report: str, rows: list[dict[str, Any]]) -> None:
    with open(os.path.join(report, "per_label.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, ["label", "images", "precision@1", "recall@10", "map@r"])
        w.writeheader()
        w.writerows(rows)


def _pr_curve(report: str, judged: dict[str, Judged], leave_one_out: bool) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(5, 4), dpi=120)
    for name, j in judged.items():
        ks = range(1, j.relevant.shape[1] + 1)
        ax.plot([recall_at(j, k) for k in ks], [precision_at(j, k) for k in ks], marker=".", label=name)
    ax.set(xlabel="recall@k", ylabel="precision@k", xlim=(0, 1), ylim=(0, 1.02),
           title=f"precision-recall over k ({'leave-one-out' if leave_one_out else 'query set'})")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(os.path.join(report, "pr_curve.png"))
    plt.close(fig)


def _grids(report: str, store: Store, protocol: Protocol, database: pa.Table, query_rows: np.ndarray,
           scores: np.ndarray, neighbours: np.ndarray) -> list[str]:
    """One query of each of a few groups spread over the query set, and its top hits: green border = relevant,
    red = not."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    firsts, seen = [], set()
    for q in query_rows:
        if protocol.groups[q] not in seen:
            seen.add(protocol.groups[q])
            firsts.append(int(q))
    picks = np.unique(np.linspace(0, len(firsts) - 1, min(GRID_QUERIES, len(firsts))).round().astype(int))
    queries = [firsts[i] for i in picks]
    uris = database["uri"].to_pylist()
    fig, axes = plt.subplots(max(1, len(queries)), GRID_HITS + 1, figsize=(1.6 * (GRID_HITS + 1),
                                                                           1.8 * max(1, len(queries))), dpi=100,
                             squeeze=False)
    for r, q in enumerate(queries):
        hits = [(int(n), float(s)) for n, s in zip(neighbours[q], scores[q], strict=True)
                if n >= 0 and not (protocol.leave_one_out and n == q)][:GRID_HITS]
        cells = [(protocol.query_uris[q], protocol.query_ids[q][:18], "#1d2330")] + [
            (uris[n], f"{s:.2f}", "#1a9641" if protocol.is_relevant(q, n) else "#d7191c") for n, s in hits]
        for c, ax in enumerate(axes[r]):
            ax.set_xticks([])
            ax.set_yticks([])
            if c >= len(cells):
                ax.axis("off")
                continue
            uri, title, colour = cells[c]
            ax.imshow(_thumbnail(store, uri))
            for spine in ax.spines.values():
                spine.set(color=colour, linewidth=3)
            ax.set_title(title, fontsize=7)
    fig.tight_layout()
    fig.savefig(os.path.join(report, "grids.png"))
    plt.close(fig)
    return [protocol.query_ids[q] for q in queries]


def _thumbnail(store: Store, uri: str) -> np.ndarray:
    try:
        image = decode(read_image_bytes(uri, store.options, DEFAULT_MAX_BYTES), 128).image
        image.thumbnail((128, 128))
        return np.asarray(image)
    except ImageError:
        return np.full((8, 8, 3), 200, np.uint8)


def _html(report: str, source: str, index: dict[str, Any] | None, protocol: Protocol, metrics: dict,
          per_label: list[dict], shown: list[str]) -> None:
    names = list(next(iter(metrics.values())))
    head = "".join(f"<th>{html.escape(n)}</th>" for n in names)
    body = "".join(f"<tr><th>{html.escape(r)}</th>" + "".join(f"<td>{m[n]:.4g}</td>" for n in names) + "</tr>"
                   for r, m in metrics.items())
    worst = "".join(f"<tr><td>{html.escape(str(p['label']))}</td><td>{p['images']}</td><td>{p['map@r']:.3f}</td>"
                    f"<td>{p['precision@1']:.3f}</td></tr>" for p in per_label[:20])
    failed = protocol.extra.get("failed_queries") or []
    failed_html = "" if not failed else (
        f"<h2>Query images that could not be embedded ({len(failed)}, left out)</h2><ul>"
        + "".join(f"<li>{html.escape(f['image_id'])}: {html.escape(f['reason'])}</li>" for f in failed) + "</ul>")
    index_html = "" if index is None else (
        f"<p>Index search: {html.escape(index['name'])} version {html.escape(index['version'])}, "
        f"{html.escape(index['factory'])}, {html.escape(json.dumps(index['search']))}.</p>")
    page = f"""<!doctype html><meta charset="utf-8"><title>lookalike evaluation</title>
<style>body{{font:14px system-ui;margin:24px}} table{{border-collapse:collapse}} td,th{{padding:3px 8px;
border-bottom:1px solid #ddd;text-align:right}}</style>
<h1>Retrieval quality of {html.escape(source)}</h1>{index_html}
<p>{html.escape(protocol.description[0].upper() + protocol.description[1:])}.</p>
<h2>Metrics</h2><table><tr><th></th>{head}</tr>{body}</table>
<h2>Precision-recall</h2><img src="pr_curve.png" alt="precision-recall curve">
<h2>Results for a few queries ({html.escape(', '.join(shown))})</h2>
<p>First column: the query; green border: relevant, red: not.</p><img src="grids.png" alt="result grids">
<h2>Hardest {'labels' if protocol.leave_one_out else 'queries'} (exact search)</h2>
<table><tr><th>{'label' if protocol.leave_one_out else 'group'}</th><th>queries</th><th>mAP@R</th><th>P@1</th></tr>
{worst}</table>{failed_html}"""
    with open(os.path.join(report, "index.html"), "w") as f:
        f.write(page)
