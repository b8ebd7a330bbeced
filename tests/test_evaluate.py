"""`lookalike evaluate` on real photos: each photo and its resized, recompressed and cropped copies share a
label, other photos are unlabelled distractors; the report is written and its figures are the metrics'."""

import csv
import json

import pytest

from lookalike import embed, index_build
from lookalike.cli import main
from lookalike.config import IN_PROCESS, EmbedConfig
from lookalike.index_build import BuildIndexConfig
from lookalike.storage import Store

import imagefactory
from conftest import store_option_args

LABELLED = ("coffee", "chelsea", "astronaut", "rocket", "horse", "camera")
DISTRACTORS = ("coins", "colorwheel", "brick", "clock", "text")


def test_evaluate_writes_the_report_for_exact_and_index_search(s3_store, model, tmp_path, capsys):
    root = tmp_path / "images"
    root.mkdir()
    rows = ["image_id,uri,label"]
    for name in LABELLED + DISTRACTORS:
        img = imagefactory.photo(name, 256)
        w, h = img.size
        copies = {f"{name}.jpg": imagefactory.jpeg_bytes(img)}
        if name in LABELLED:
            copies[f"{name}-small.jpg"] = imagefactory.jpeg_bytes(img.resize((w // 2, h // 2)))
            copies[f"{name}-q25.jpg"] = imagefactory.jpeg_bytes(img, quality=25)
            copies[f"{name}-crop.jpg"] = imagefactory.jpeg_bytes(img.crop((w // 10, h // 10, w - w // 10, h - h // 10)))
        for file, data in copies.items():
            (root / file).write_bytes(data)
            rows.append(f"{file},{root / file},{name if name in LABELLED else ''}")
    (tmp_path / "images.csv").write_text("\n".join(rows) + "\n")
    store = Store(s3_store.url, s3_store.options)
    m = embed.run(EmbedConfig(images=str(tmp_path / "images.csv"), store=store.url, storage_options=store.options,
                              master=IN_PROCESS))
    index_build.run(BuildIndexConfig(store=store.url, storage_options=store.options, name="photos",
                                     master=IN_PROCESS, publish=True, queries=5))
    report = tmp_path / "report"
    assert main(["evaluate", "--store", store.url, *store_option_args(store.options), "--embeddings",
                 f"{m['fingerprint_id']}/{m['run_id']}", "--index", "photos", "--report", str(report),
                 "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    exact, ann = metrics["exact"], metrics["index"]
    assert exact["queries"] == 4 * len(LABELLED) and exact["skipped"] == len(DISTRACTORS)
    # Copies of a photo score >= 0.81 with each other and other photos <= 0.60 with this model: all found first.
    assert exact["precision@1"] == 1.0 and exact["r_precision"] == 1.0 and exact["map@r"] == pytest.approx(1.0)
    assert exact["recall@5"] == pytest.approx(1.0) and exact["precision@5"] == pytest.approx(3 / 5)
    assert ann == pytest.approx(exact)  # a flat index: the same neighbours
    for name in ("metrics.json", "metrics.csv", "per_label.csv", "pr_curve.png", "grids.png", "index.html"):
        assert (report / name).stat().st_size > 100, name
    per_label = list(csv.DictReader((report / "per_label.csv").open()))
    assert sorted(r["label"] for r in per_label) == sorted(LABELLED) and all(r["images"] == "4" for r in per_label)
    page = (report / "index.html").read_text()
    assert "<img src=\"grids.png\"" in page and "map@r" in page
    assert main(["evaluate", "--store", store.url, *store_option_args(store.options), "--embeddings",
                 m["fingerprint_id"], "--report", str(tmp_path / "r2"), "--label-column", "class"]) == 2
    assert "no 'class' column" in capsys.readouterr().err
