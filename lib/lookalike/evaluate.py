"""`lookalike evaluate`: retrieval quality of an embeddings version with a `label` column — every labelled image
a query against all others (leave-one-out), exactly and through a published index — as a report folder:
metrics.json, metrics.csv, per_label.csv, pr_curve.png, grids.png and index.html."""

from __future__ import annotations

import csv
import html
import io
import json
import os
from dataclasses import dataclass, field
from typing import Any

import faiss
import numpy as np
import pyarrow as pa

from lookalike.config import ConfigError
from lookalike.decode import ImageError, decode
from lookalike.embeddings import open_spec, read_vectors
from lookalike.engine import DEFAULT_MAX_BYTES, read_image_bytes
from lookalike.metrics import (
    DEFAULT_KS,
    Judged,
    judge_leave_one_out,
    mean_average_precision,
    precision_at,
    recall_at,
    summary,
)
from lookalike.storage import Store

GRID_QUERIES, GRID_HITS = 6, 8


@dataclass(frozen=True)
class EvaluateConfig:
    store: str
    embeddings: str                       # FINGERPRINT[/RUN] whose images table had a `label` column
    report: str                           # local folder for the report
    index: str | None = None              # also search through this published index
    label_column: str = "label"
    storage_options: dict[str, Any] = field(default_factory=dict)


def run(config: EvaluateConfig) -> dict[str, Any]:
    store = Store(config.store, config.storage_options)
    version = open_spec(store, config.embeddings)
    columns = set(store.read_parquet_schema(version.parts[0]).names) if version.parts else set()
    if config.label_column not in columns:
        raise ConfigError(f"embeddings {version.layout.prefix} have no {config.label_column!r} column: give the "
                          "images table a label column (same label = relevant to each other) and embed it again")
    table = pa.concat_tables([version.read_part(p, ["image_id", "uri", config.label_column]) for p in version.parts])
    x = np.concatenate([read_vectors(store, p) for p in version.parts])
    labels = [lab if lab not in (None, "") else f"\0unlabelled-{i}"  # distractors: relevant to nothing
              for i, lab in enumerate(table[config.label_column].to_pylist())]
    _, counts = np.unique(labels, return_counts=True)
    depth = int(min(len(x), max(counts.max() + 1, max(DEFAULT_KS) + 1)))

    flat = faiss.IndexFlatIP(x.shape[1])
    flat.add(x)
    exact_scores, exact_nb = flat.search(x, depth)
    runs = {"exact": (exact_scores, exact_nb)}
    if config.index:
        runs["index"] = _index_neighbours(store, config.index, table, x, depth, version.layout.fingerprint_id)
    judged = {name: judge_leave_one_out(nb, labels) for name, (_, nb) in runs.items()}
    metrics = {name: summary(j) for name, j in judged.items()}

    os.makedirs(config.report, exist_ok=True)
    _write_metrics(config.report, metrics)
    per_label = _per_label(judged["exact"], labels)
    _write_per_label(config.report, per_label)
    _pr_curve(config.report, judged)
    shown = _grids(config.report, store, table, labels, judged["exact"].rows, *runs["exact"])
    _html(config.report, version.layout.prefix, metrics, per_label, shown)
    return {"embeddings": version.layout.prefix, "index": config.index, "metrics": metrics,
            "report": os.path.abspath(config.report)}


def _index_neighbours(store: Store, name: str, table: pa.Table, x: np.ndarray, depth: int, fingerprint_id: str):
    from lookalike.index_reader import load_index_version
    from lookalike.search import search
    v = load_index_version(store, name)
    if v.manifest["fingerprint_id"] != fingerprint_id:
        raise ConfigError(f"index {name} holds vectors of {v.manifest['fingerprint_id']}, the embeddings are "
                          f"{fingerprint_id}: evaluate an index built from these embeddings")
    row_of_image = {image_id: row for row, image_id in enumerate(table["image_id"].to_pylist())}
    index_row = np.array([row_of_image.get(i, -1) for i in v.ids["image_id"].to_pylist()], dtype=np.int64)
    scores, ids = search(v.index, x, depth, v.default_params, v.exact)
    rows = np.where(ids >= 0, index_row[v.row_of_faiss[np.maximum(ids, 0)]], -1)
    return scores, rows


def _per_label(judged: Judged, labels: list) -> list[dict[str, Any]]:
    """Metrics of each label's queries, hardest first."""
    query_labels = np.asarray(labels, dtype=object)[judged.rows]
    out = []
    for label in sorted(set(query_labels.tolist())):
        mask = query_labels == label
        sub = Judged(judged.relevant[mask], judged.n_relevant[mask])
        out.append({"label": label, "images": int(mask.sum()), "precision@1": precision_at(sub, 1),
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


def _pr_curve(report: str, judged: dict[str, Judged]) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(5, 4), dpi=120)
    for name, j in judged.items():
        ks = range(1, j.relevant.shape[1] + 1)
        ax.plot([recall_at(j, k) for k in ks], [precision_at(j, k) for k in ks], marker=".", label=name)
    ax.set(xlabel="recall@k", ylabel="precision@k", title="precision-recall over k (leave-one-out)", xlim=(0, 1),
           ylim=(0, 1.02))
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(os.path.join(report, "pr_curve.png"))
    plt.close(fig)


def _grids(report: str, store: Store, table: pa.Table, labels: list, query_rows: np.ndarray, scores: np.ndarray,
           neighbours: np.ndarray) -> list[str]:
    """The first image of a few labels and its top hits: green border = same label, red = not."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    queries, seen = [], set()
    for row in query_rows:
        if labels[row] not in seen:
            seen.add(labels[row])
            queries.append(int(row))
        if len(queries) == GRID_QUERIES:
            break
    uris, ids = table["uri"].to_pylist(), table["image_id"].to_pylist()
    fig, axes = plt.subplots(max(1, len(queries)), GRID_HITS + 1, figsize=(1.6 * (GRID_HITS + 1),
                                                                           1.8 * max(1, len(queries))), dpi=100,
                             squeeze=False)
    for r, q in enumerate(queries):
        hits = [(int(n), float(s)) for n, s in zip(neighbours[q], scores[q], strict=True) if n >= 0 and n != q]
        cells = [(q, None)] + hits[:GRID_HITS]
        for c, ax in enumerate(axes[r]):
            ax.set_xticks([])
            ax.set_yticks([])
            if c >= len(cells):
                ax.axis("off")
                continue
            row, score = cells[c]
            ax.imshow(_thumbnail(store, uris[row]))
            colour = "#1d2330" if score is None else ("#1a9641" if labels[row] == labels[q] else "#d7191c")
            for spine in ax.spines.values():
                spine.set(color=colour, linewidth=3)
            ax.set_title(ids[row][:18] if score is None else f"{score:.2f}", fontsize=7)
    fig.tight_layout()
    fig.savefig(os.path.join(report, "grids.png"))
    plt.close(fig)
    return [ids[q] for q in queries]


def _thumbnail(store: Store, uri: str) -> np.ndarray:
    try:
        image = decode(read_image_bytes(uri, store.options, DEFAULT_MAX_BYTES), 128).image
        image.thumbnail((128, 128))
        return np.asarray(image)
    except ImageError:
        return np.full((8, 8, 3), 200, np.uint8)


def _html(report: str, source: str, metrics: dict, per_label: list[dict], shown: list[str]) -> None:
    names = list(next(iter(metrics.values())))
    head = "".join(f"<th>{html.escape(n)}</th>" for n in names)
    body = "".join(f"<tr><th>{html.escape(r)}</th>" + "".join(f"<td>{m[n]:.4g}</td>" for n in names) + "</tr>"
                   for r, m in metrics.items())
    worst = "".join(f"<tr><td>{html.escape(str(p['label']))}</td><td>{p['images']}</td><td>{p['map@r']:.3f}</td>"
                    f"<td>{p['precision@1']:.3f}</td></tr>" for p in per_label[:20])
    buf = io.StringIO()
    buf.write(f"""<!doctype html><meta charset="utf-8"><title>lookalike evaluation</title>
<style>body{{font:14px system-ui;margin:24px}} table{{border-collapse:collapse}} td,th{{padding:3px 8px;
border-bottom:1px solid #ddd;text-align:right}}</style>
<h1>Retrieval quality of {html.escape(source)}</h1>
<p>Leave-one-out: every image with a label is a query against all other images; images sharing its label are
relevant, unlabelled images are distractors.</p>
<h2>Metrics</h2><table><tr><th></th>{head}</tr>{body}</table>
<h2>Precision-recall</h2><img src="pr_curve.png" alt="precision-recall curve">
<h2>Results for a few queries ({html.escape(', '.join(shown))})</h2>
<p>First column: the query; green border: same label, red: another.</p><img src="grids.png" alt="result grids">
<h2>Hardest labels (exact search)</h2><table><tr><th>label</th><th>images</th><th>mAP@R</th><th>P@1</th></tr>
{worst}</table>""")
    with open(os.path.join(report, "index.html"), "w") as f:
        f.write(buf.getvalue())
