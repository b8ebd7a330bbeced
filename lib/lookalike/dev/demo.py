"""`make demo`: the main job on the embedded default — local Spark, a local folder as the store, the bundled
default model (trained on marks), and ~1,000 real brand logos from the npm package simple-icons (DEMO_FULL=1 for
all ~3,500) — then a query worker on the published index, and its evaluation on the same brands drawn by another
logo collection."""

from __future__ import annotations

import io
import os
import sys
import time
from pathlib import Path

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

import lookalike
from lookalike.batch import evaluate
from lookalike.batch.evaluate import EvaluateConfig, metrics_table
from lookalike.core.logs import configure
from lookalike.core.store import Store
from lookalike.dev.datasets import cross_collection_queries, logo_variant, simple_icons_catalogue
from lookalike.embed import job as embed
from lookalike.embed.config import EmbedConfig
from lookalike.image.limits import DEFAULT_MAX_BYTES
from lookalike.image.read import read_image_bytes
from lookalike.index import build
from lookalike.index.build import BuildIndexConfig
from lookalike.model.spec import ModelSpec
from lookalike.pipelines import reindex
from lookalike.pipelines.reindex import ReindexConfig
from lookalike.retrieval.comparison import comparison_png
from lookalike.serve.http_api import create_app, running
from lookalike.serve.worker import ServedIndex, WorkerSettings
from lookalike.training.data import brand_group, split_of

QUERIES = ("python", "docker", "adidas")  # in the default 1,000-logo subset
COMPARED = "docker"  # the query whose top hit's comparison view is drawn (a verified one)
TEXT_QUERIES = ("bird", "camera", "music", "shopping cart")
TAGGED = "python"

ROOT = Path(os.environ.get("DEMO_DIR", Path.cwd()))


def main() -> int:
    configure(verbose=False)  # warnings, and the long steps' progress
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    full = os.environ.get("DEMO_FULL") == "1"
    started = time.perf_counter()
    print("1/5 fetching and rasterising the simple-icons logo set (npm, CC0) ...", flush=True)
    table = simple_icons_catalogue(ROOT / "data", limit=None if full else 1000)
    store = (ROOT / "demo-store").resolve()
    print(f"2/5 nightly reindex of {table.name} with Spark local[2] into {store}: embed (only new or changed "
          "logos), build or update the index 'logos', measure its recall, publish ...", flush=True)
    report = reindex.run(ReindexConfig(
        embed=EmbedConfig(images=str(table), store=str(store), master="local[2]", images_per_task=250),
        index=BuildIndexConfig(store=str(store), name="logos", master="local[2]", incremental=True, queries=200),
        keep=3))
    print(reindex.summarise(report))
    print(f"  report: {store}/reindex/logos/{report['run_id']}/report.json")
    print("3/5 starting a query worker on the published index and searching it with altered logos ...", flush=True)
    report_dir = ROOT / "demo-report"
    query_worker(store, ROOT / "data", report_dir)
    print("4/5 evaluating the index: the same brands as drawn by @iconify-json/logos and devicon are the "
          "queries, each one's simple-icons logo its one relevant answer, every other logo a distractor → "
          f"{report_dir}/ ...", flush=True)
    evaluation(store, table, ROOT / "data", report_dir)
    print("5/5 the same logos in the word space (--space words): embedded, indexed as 'logos-words', searched by "
          "text, and a logo's tags ...", flush=True)
    words(store, table, ROOT / "data")
    print(f"demo finished in {time.perf_counter() - started:.0f}s; run it again: the next night finds nothing "
          "changed and leaves LATEST as it is.\nBrowse it: .venv/bin/lookalike serve --store demo-store --index "
          "logos, then open http://127.0.0.1:8000/")
    return 0


def query_worker(store: Path, data_dir: Path, report_dir: Path, k: int = 5) -> None:
    """The worker users run (`lookalike serve`), in this process: logos redrawn in another colour, size and
    margin go up as uploads, the top hits come back over HTTP, their shortlist verified with local features
    (each hit's score, the one it is ranked by, with its cosine and inliers in brackets when verified); then why
    the top hit of the COMPARED query matched, drawn as a comparison view."""
    served = ServedIndex(Store(str(store)), WorkerSettings(name="logos", cache_dir=str(data_dir / "worker-cache"),
                                                           poll_s=3600))
    served.start(watch=False)
    with running(create_app(served)) as url:
        for slug in QUERIES:
            query = logo_variant(data_dir, slug)
            answer = httpx.post(f"{url}/search/images", files={"images": (query.name, query.read_bytes())},
                                data={"k": str(k)}, timeout=60).raise_for_status().json()
            hits = answer["results"][0]["hits"]
            print(f"  {query.name:18s} → " + ", ".join(
                f"{h['metadata'].get('title', h['image_id'])} {h['score']:.2f}"
                + (f" (cosine {h['cosine']:.2f}, {h['inliers']} inliers)" if h.get("inliers") else "") for h in hits))
        print(f"  (answered by {url} from version {answer['version']}; {answer['took_ms']:.0f} ms for the last "
              "query, embedding included)")
        query = logo_variant(data_dir, COMPARED)
        with lookalike.Client(url) as client:
            top = client.search(query, k=1)[0]
            why = client.explain(top.image_id, query=query)
        report_dir.mkdir(parents=True, exist_ok=True)
        compare = report_dir / f"compare-{COMPARED}.png"
        candidate = Image.open(io.BytesIO(read_image_bytes(top.uri, {}, DEFAULT_MAX_BYTES)))
        compare.write_bytes(comparison_png(Image.open(query), candidate, why))
        print("  why " + query.name + " matched: " + why.describe().replace("\n", "; ") + f" → {compare}")


def words(store: Path, catalogue: Path, data_dir: Path, k: int = 5) -> None:
    """`lookalike embed --space words`, `build-index`, then `POST /search/text` and `POST /tag` on its worker."""
    m = embed.run(EmbedConfig(images=str(catalogue), store=str(store), master="local[2]", images_per_task=250,
                              model=ModelSpec(space="words"), local_features=None))
    build.run(BuildIndexConfig(store=str(store), name="logos-words", embeddings=f"{m['fingerprint_id']}/{m['run_id']}",
                               master="local[2]", queries=200, publish=True))
    served = ServedIndex(Store(str(store)), WorkerSettings(name="logos-words", poll_s=3600,
                                                           cache_dir=str(data_dir / "worker-cache")))
    served.start(watch=False)
    with running(create_app(served)) as url:
        answer = httpx.post(f"{url}/search/text", json={"texts": list(TEXT_QUERIES), "k": k},
                            timeout=60).raise_for_status().json()
        for result in answer["results"]:
            print(f"  {result['query']!r:18s} → " + ", ".join(
                f"{h['metadata'].get('title', h['image_id'])} ({h['score']:.2f})" for h in result["hits"]))
        logo = logo_variant(data_dir, TAGGED)
        tags = httpx.post(f"{url}/tag", files={"images": (logo.name, logo.read_bytes())}, data={"k": str(k)},
                          timeout=60).raise_for_status().json()["results"][0]["tags"]
        print(f"  tags of {logo.name}: " + ", ".join(f"{t['word']} ({t['score']:.2f})" for t in tags))


def evaluation(store: Path, catalogue: Path, data_dir: Path, report_dir: Path) -> None:
    """`lookalike evaluate --index logos --queries ...`: exact search and the published index side by side, on all
    queries and on those of the brands the default model never saw in training (its test brands)."""
    queries = cross_collection_queries(data_dir, within=pq.read_table(catalogue, columns=["image_id"])
                                       ["image_id"].to_pylist())
    out = evaluate.run(EvaluateConfig(store=str(store), index="logos", queries=str(queries), report=str(report_dir)))
    print("\n".join("  " + line for line in metrics_table(out)))
    print(f"  (the same by hand: .venv/bin/lookalike evaluate --store demo-store --index logos --queries "
          f"{queries.relative_to(ROOT) if queries.is_relative_to(ROOT) else queries} --report demo-report)")
    table = pq.read_table(queries)
    held_out = table.filter(pa.array([split_of(f"brand:{brand_group(b)}") == "test"
                                      for b in table["relevant"].to_pylist()]))
    held_out_path = queries.with_name(f"{queries.stem}-test-brands.parquet")
    pq.write_table(held_out, held_out_path)
    print(f"  the default model was trained on drawings of most of these brands (by these collections too); the "
          f"{len(held_out)} queries of its test brands, which no collection gave to training:")
    out = evaluate.run(EvaluateConfig(store=str(store), index="logos", queries=str(held_out_path),
                                      report=str(report_dir / "test-brands")))
    print("\n".join("  " + line for line in metrics_table(out)))


if __name__ == "__main__":
    sys.exit(main())
