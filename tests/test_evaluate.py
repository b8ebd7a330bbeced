"""`lookalike evaluate` on real photos: each photo and its resized, recompressed and cropped copies share a
label, other photos are unlabelled distractors; the report is written and its figures are the metrics'."""

import csv
import json

import pytest
from support.cli import store_option_args

from lookalike.cli.main import main
from lookalike.core.spark import IN_PROCESS
from lookalike.core.store import Store
from lookalike.dev import imagefactory
from lookalike.embed import job as embed
from lookalike.embed.config import EmbedConfig
from lookalike.index import build as index_build
from lookalike.index import publish
from lookalike.index.build import BuildIndexConfig

LABELLED = ("coffee", "chelsea", "astronaut", "rocket", "horse", "camera")
DISTRACTORS = ("coins", "colorwheel", "brick", "clock", "text")


@pytest.mark.slow
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
    # Copies of a photo score >= 0.77 with each other and other photos <= 0.61 with this model: all found first.
    assert exact["precision@1"] == 1.0 and exact["r_precision"] == 1.0 and exact["map@r"] == pytest.approx(1.0)
    assert exact["recall@5"] == pytest.approx(1.0) and exact["precision@5"] == pytest.approx(3 / 5)
    assert ann == pytest.approx(exact)  # a flat index: the same neighbours
    for name in ("metrics.json", "metrics.csv", "per_label.csv", "pr_curve.png", "grids.png", "index.html"):
        assert (report / name).stat().st_size > 100, name
    per_label = list(csv.DictReader((report / "per_label.csv").open()))
    assert sorted(r["label"] for r in per_label) == sorted(LABELLED) and all(r["images"] == "4" for r in per_label)
    page = (report / "index.html").read_text()
    assert "<img src=\"grids.png\"" in page and "map@r" in page
    # Re-ranked searches are reported beside the plain ones: here every copy is already first, so no loss.
    assert main(["evaluate", "--store", store.url, *store_option_args(store.options), "--embeddings",
                 f"{m['fingerprint_id']}/{m['run_id']}", "--index", "photos", "--report", str(tmp_path / "r3"),
                 "--expand", "2", "--k-reciprocal", "4,2,0.3", "--json"]) == 0
    reranked = json.loads(capsys.readouterr().out)
    # ... and the index search verified with the local features the embed job extracted (the default).
    assert set(reranked) == {"exact", "exact+αQE", "exact+k-reciprocal", "index", "index+αQE", "index+verified"}
    assert reranked["exact"] == pytest.approx(exact)
    for name in ("exact+αQE", "exact+k-reciprocal", "index+αQE", "index+verified"):
        assert reranked[name]["precision@1"] == 1.0 and reranked[name]["queries"] == exact["queries"], name
    assert main(["evaluate", "--store", store.url, *store_option_args(store.options), "--embeddings",
                 m["fingerprint_id"], "--report", str(tmp_path / "r2"), "--label-column", "class"]) == 2
    assert "no 'class' column" in capsys.readouterr().err


@pytest.mark.slow
def test_evaluate_a_query_set_embeds_the_queries_with_the_catalogue_model(tmp_path, model, capsys):
    """Protocol (a) on real photos: query images outside the catalogue, relevant and junk ids per query; a bad
    query image is left out with its reason, a relevant id the catalogue lacks counts as missed."""
    catalogue, queries = tmp_path / "catalogue", tmp_path / "queries"
    catalogue.mkdir()
    queries.mkdir()
    photos = {name: imagefactory.photo(name, 256) for name in ("chelsea", "astronaut", "rocket", "coffee", "horse",
                                                               "camera", "coins", "colorwheel", "brick")}
    for name, img in photos.items():
        (catalogue / f"{name}.jpg").write_bytes(imagefactory.jpeg_bytes(img))
    w, h = photos["coffee"].size
    (catalogue / "coffee-small.jpg").write_bytes(imagefactory.jpeg_bytes(photos["coffee"].resize((w // 2, h // 2))))

    def crop(name: str) -> str:
        img = photos[name]
        w, h = img.size
        path = queries / f"{name}-crop.jpg"
        path.write_bytes(imagefactory.jpeg_bytes(img.crop((w // 8, h // 8, w - w // 8, h - h // 8)), quality=40))
        return str(path)

    (queries / "broken.jpg").write_bytes(imagefactory.jpeg_bytes(photos["coins"])[:400])
    rows = [("q-chelsea", crop("chelsea"), "chelsea.jpg", ""),
            ("q-astronaut", crop("astronaut"), "astronaut.jpg", ""),
            ("q-rocket", crop("rocket"), "rocket.jpg", ""),
            ("q-coffee", crop("coffee"), "coffee-small.jpg", "coffee.jpg"),   # the closer copy is junk here
            ("q-horse", crop("horse"), "horse.jpg|camera.jpg", ""),           # two relevant ids
            ("q-gone", crop("colorwheel"), "not-in-catalogue.jpg", ""),       # the catalogue lost it
            ("q-unjudged", crop("brick"), "", ""),                            # nothing relevant: skipped
            ("q-broken", str(queries / "broken.jpg"), "coins.jpg", "")]
    (tmp_path / "queries.csv").write_text("image_id,uri,relevant,junk\n" + "".join(",".join(r) + "\n" for r in rows))
    store = str(tmp_path / "store")
    m = embed.run(EmbedConfig(images=str(catalogue), store=store, master=IN_PROCESS))
    index_build.run(BuildIndexConfig(store=store, name="photos", master=IN_PROCESS, publish=True, queries=5))

    report = tmp_path / "report"
    # No --embeddings: the version the index was built from.
    assert main(["evaluate", "--store", store, "--index", "photos", "--queries", str(tmp_path / "queries.csv"),
                 "--report", str(report)]) == 0
    out = capsys.readouterr().out
    assert "query q-broken left out: corrupt: cannot open image" in out, out
    assert "1 relevant id(s) are not in the catalogue" in out
    metrics = json.loads((report / "metrics.json").read_text())
    exact = metrics["exact"]
    assert exact["queries"] == 6 and exact["skipped"] == 1            # q-broken is out before judging
    assert exact["precision@1"] == pytest.approx(5 / 6)                 # all but q-gone find their photo first
    # 10 catalogue images, q-coffee's junk removed: recall@10 is complete except for the lost image, and
    # precision@10 counts each query's relevant ids over 10.
    assert exact["recall@10"] == pytest.approx(5 / 6)
    assert exact["precision@10"] == pytest.approx((1 + 1 + 1 + 1 + 2 + 0) / 60)
    assert metrics["index"] == pytest.approx(exact)
    per_label = {r["label"]: r for r in csv.DictReader((report / "per_label.csv").open())}
    assert set(per_label) == {"chelsea.jpg", "astronaut.jpg", "rocket.jpg", "coffee-small.jpg", "horse.jpg|camera.jpg",
                              "not-in-catalogue.jpg"}
    assert float(per_label["horse.jpg|camera.jpg"]["recall@10"]) == 1.0
    assert float(per_label["not-in-catalogue.jpg"]["map@r"]) == 0.0
    page = (report / "index.html").read_text()
    assert "Query set:" in page and "q-broken" in page and (report / "grids.png").stat().st_size > 1000
    assert f"Index search: photos version {publish.latest_version(Store(store), 'photos')}, Flat" in page

    # Without the junk column coffee.jpg (closer to the crop than the half-size copy) takes rank 1 and the
    # relevant coffee-small.jpg comes second: junk is what made q-coffee a hit at 1.
    (tmp_path / "nojunk.csv").write_text(f"image_id,uri,relevant\nq-coffee,{crop('coffee')},coffee-small.jpg\n")
    assert main(["evaluate", "--store", store, "--embeddings", m["fingerprint_id"], "--queries",
                 str(tmp_path / "nojunk.csv"), "--report", str(tmp_path / "r2"), "--json"]) == 0
    nojunk = json.loads(capsys.readouterr().out)["exact"]
    assert nojunk["precision@1"] == 0.0 and nojunk["map"] == pytest.approx(1 / 2) and nojunk["recall@5"] == 1.0

    # Wrong inputs fail fast and say what to do.
    (tmp_path / "bad.csv").write_text("image_id,uri,answer\nq,{},x\n".format(crop("rocket")))
    assert main(["evaluate", "--store", store, "--index", "photos", "--queries", str(tmp_path / "bad.csv"),
                 "--report", str(tmp_path / "r3")]) == 2
    assert "no 'relevant' column" in capsys.readouterr().err
    (tmp_path / "strangers.csv").write_text("image_id,uri,relevant\nq,{},someone-else.jpg\n".format(crop("rocket")))
    assert main(["evaluate", "--store", store, "--index", "photos", "--queries", str(tmp_path / "strangers.csv"),
                 "--report", str(tmp_path / "r4")]) == 2
    assert "must name catalogue image ids" in capsys.readouterr().err
    (tmp_path / "unjudged.csv").write_text("image_id,uri,relevant\nq,{},\n".format(crop("rocket")))
    assert main(["evaluate", "--store", store, "--index", "photos", "--queries", str(tmp_path / "unjudged.csv"),
                 "--report", str(tmp_path / "r5")]) == 2
    assert "names a relevant id" in capsys.readouterr().err


@pytest.mark.slow
def test_evaluate_embeds_a_labelled_images_table_first_and_reuses_it(tmp_path, model, capsys):
    root = tmp_path / "images"
    root.mkdir()
    rows = ["image_id,uri,label"]
    for name in ("rocket", "coffee", "chelsea", "coins", "brick"):
        img = imagefactory.photo(name, 256)
        w, h = img.size
        copies = {f"{name}.jpg": imagefactory.jpeg_bytes(img),
                  f"{name}-half.jpg": imagefactory.jpeg_bytes(img.resize((w // 2, h // 2)), quality=50)}
        for file, data in copies.items():
            (root / file).write_bytes(data)
            rows.append(f"{file},{root / file},{name if name in ('rocket', 'coffee', 'chelsea') else ''}")
    (tmp_path / "labelled.csv").write_text("\n".join(rows) + "\n")
    store = Store(str(tmp_path / "store"))
    args = ["evaluate", "--store", store.url, "--images", str(tmp_path / "labelled.csv"), "--master", "in-process",
            "--json"]
    assert main([*args, "--report", str(tmp_path / "r1")]) == 0
    first = json.loads(capsys.readouterr().out)["exact"]
    assert first["queries"] == 6 and first["precision@1"] == 1.0 and first["r_precision"] == 1.0
    (fingerprint,) = [k.rsplit("/", 1)[-1] for k in store.list("embeddings")]
    run_1 = store.read_text(f"embeddings/{fingerprint}/LATEST").strip()
    assert main([*args, "--report", str(tmp_path / "r2")]) == 0
    assert json.loads(capsys.readouterr().out)["exact"] == first
    run_2 = store.read_text(f"embeddings/{fingerprint}/LATEST").strip()
    counts = store.read_json(f"embeddings/{fingerprint}/{run_2}/_MANIFEST.json")["counts"]
    assert run_2 != run_1 and counts["new"] == 0 and counts["carried"] == 10  # reused, nothing embedded again
    assert main([*args, "--embeddings", fingerprint, "--report", str(tmp_path / "r3")]) == 2
    assert "not both" in capsys.readouterr().err
