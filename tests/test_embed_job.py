"""The embed job on Spark local[2] with the store on the S3 server: outputs, errors, incremental, resume; each
image's colours kept beside its vector."""

import hashlib

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image, ImageDraw
from support.cli import run_cli_until_committed, store_option_args

from lookalike.core.layout import EmbeddingsLayout
from lookalike.core.schemas import COLOUR_COLUMN
from lookalike.core.spark import IN_PROCESS
from lookalike.core.store import Store
from lookalike.dev.imagefactory import jpeg_bytes, photo
from lookalike.embed import job as embed
from lookalike.embed.config import EmbedConfig
from lookalike.embed.versions import latest_run_id, open_version
from lookalike.image.histogram import SIZE, as_matrix, similarity
from lookalike.index import build as index_build
from lookalike.index.build import BuildIndexConfig
from lookalike.model.spec import ModelSpec
from lookalike.retrieval.query import search_vectors
from lookalike.serve.worker import ServedIndex, WorkerSettings


def upload(folder, s3_store, prefix="images") -> str:
    fs = fsspec.filesystem("s3", **s3_store.options)
    fs.put(str(folder) + "/", f"{s3_store.url.removeprefix('s3://')}/{prefix}/", recursive=True)
    return f"{s3_store.url}/{prefix}"


def config(images, store, **kw) -> EmbedConfig:
    kw.setdefault("master", "local[2]")
    kw.setdefault("images_per_task", 6)
    kw.setdefault("max_error_rate", 0.5)
    return EmbedConfig(images=images, store=store.url if hasattr(store, "url") else store,
                       storage_options=getattr(store, "options", {}), **kw)


def rows_by_id(version) -> dict:
    table = version.read_all()
    vectors = table["embedding"].combine_chunks().values.to_numpy().reshape(table.num_rows, -1)
    return {i: (sha, vectors[k]) for k, (i, sha) in
            enumerate(zip(table["image_id"].to_pylist(), table["content_sha256"].to_pylist(), strict=True))}


@pytest.mark.slow
def test_embed_job_on_s3_embeds_every_good_image_and_records_every_bad_one(spark, s3_store, image_set, model):
    root, expected = image_set
    images = upload(root, s3_store)
    manifest = embed.run(config(images, s3_store, run_id="r1"))

    ok = sorted(i for i, e in expected.items() if e == "ok")
    bad = {i: e for i, e in expected.items() if e != "ok"}
    c = manifest["counts"]
    assert (c["images"], c["rows"], c["new"], c["carried"], c["failed"]) == (
        len(expected), len(ok), len(ok), 0, len(bad))
    assert c["tasks"] == -(-len(expected) // 6)

    store = Store(s3_store.url, s3_store.options)
    assert latest_run_id(store, model.fingerprint_id) == "r1"
    version = open_version(store, model.fingerprint_id)
    table = version.read_all()
    assert table.schema.field("embedding").type == pa.list_(pa.float32(), 1280)
    assert sorted(table["image_id"].to_pylist()) == ok
    for image_id, (sha, vector) in rows_by_id(version).items():
        assert sha == hashlib.sha256((root / image_id).read_bytes()).hexdigest()
        assert abs(np.linalg.norm(vector) - 1) < 1e-5
    errors = version.read_errors()
    assert dict(zip(errors["image_id"].to_pylist(), errors["error_kind"].to_pylist(), strict=True)) == bad
    assert all(len(m) > 10 for m in errors["message"].to_pylist())

    # A rerun of a completed run id changes nothing and returns the same manifest.
    assert embed.run(config(images, s3_store, run_id="r1")) == manifest


@pytest.mark.slow  # starts local Spark
def test_spark_and_in_process_give_the_same_vectors(spark, tmp_path, image_set):
    root, expected = image_set
    a = embed.run(config(str(root), str(tmp_path / "a"), run_id="x"))
    b = embed.run(config(str(root), str(tmp_path / "b"), run_id="x", master="in-process"))
    va = rows_by_id(open_version(Store(str(tmp_path / "a")), a["fingerprint_id"]))
    vb = rows_by_id(open_version(Store(str(tmp_path / "b")), b["fingerprint_id"]))
    usable = sum(1 for kind in expected.values() if kind == "ok")
    assert a["counts"]["new"] == b["counts"]["new"] == usable > 0
    assert va.keys() == vb.keys() and len(va) == usable
    for k in va:
        np.testing.assert_allclose(va[k][1], vb[k][1], atol=1e-5)


@pytest.mark.slow
def test_incremental_run_embeds_only_new_or_changed_content(spark, s3_store, tmp_path, model):
    folder = tmp_path / "catalogue"
    folder.mkdir()
    names = ["coffee", "chelsea", "astronaut", "rocket", "coins", "colorwheel"]
    for n in names:
        (folder / f"{n}.jpg").write_bytes(jpeg_bytes(photo(n)))
    (folder / "copy_of_rocket.jpg").write_bytes((folder / "rocket.jpg").read_bytes())
    images = upload(folder, s3_store)
    first = embed.run(config(images, s3_store, run_id="night1"))
    assert (first["counts"]["new"], first["counts"]["carried"]) == (7, 0)
    assert (first["counts"]["ids_added"], first["counts"]["ids_changed"]) == (7, 0)

    fs = fsspec.filesystem("s3", **s3_store.options)
    base = images.removeprefix("s3://")
    fs.rm(f"{base}/coins.jpg")                                                   # removed
    fs.pipe_file(f"{base}/coffee.jpg", jpeg_bytes(photo("coffee").rotate(90)))  # changed
    fs.pipe_file(f"{base}/hubble.jpg", jpeg_bytes(photo("hubble_deep_field")))  # added
    fs.pipe_file(f"{base}/chelsea_again.jpg", (folder / "chelsea.jpg").read_bytes())  # known content
    second = embed.run(config(images, s3_store, run_id="night2"))
    c = second["counts"]
    # new: changed coffee + hubble; carried: 4 unchanged + the copy of rocket + chelsea_again (known content)
    assert (c["new"], c["carried"], c["removed"], c["failed"], c["rows"]) == (2, 6, 1, 0, 8)
    # By id: hubble and chelsea_again are new ids, coffee changed, the other five are unchanged.
    assert (c["ids_added"], c["ids_changed"], c["ids_unchanged"]) == (2, 1, 5)
    assert second["previous_run"] == "night1"

    store = Store(s3_store.url, s3_store.options)
    v1 = rows_by_id(open_version(store, model.fingerprint_id, "night1"))
    v2 = rows_by_id(open_version(store, model.fingerprint_id, "night2"))
    assert "coins.jpg" not in v2
    for unchanged in ("astronaut.jpg", "rocket.jpg", "colorwheel.jpg"):
        assert v2[unchanged][0] == v1[unchanged][0]
        np.testing.assert_array_equal(v2[unchanged][1], v1[unchanged][1])  # carried bit for bit
    np.testing.assert_array_equal(v2["chelsea_again.jpg"][1], v1["chelsea.jpg"][1])
    assert v2["coffee.jpg"][0] != v1["coffee.jpg"][0]
    assert float(v2["coffee.jpg"][1] @ v1["coffee.jpg"][1]) < 0.999
    assert latest_run_id(store, model.fingerprint_id) == "night2"

    # Another pooling is another embedding space: nothing is carried across fingerprints.
    other = embed.run(config(images, s3_store, run_id="avg", model=ModelSpec(pooling="avg")))
    assert other["fingerprint_id"] != model.fingerprint_id
    assert (other["counts"]["carried"], other["previous_run"]) == (0, None)


@pytest.mark.slow
def test_killed_run_resumes_with_only_unfinished_tasks_and_identical_output(spark, s3_store, tmp_path, image_set,
                                                                            model):
    root, _ = image_set
    images = upload(root, s3_store)
    store = Store(s3_store.url, s3_store.options)
    layout = EmbeddingsLayout(store, model.fingerprint_id, "crashy")
    committed = run_cli_until_committed(
        ["embed", "--images", images, "--store", s3_store.url, *store_option_args(s3_store.options), "--master",
         "in-process", "--run-id", "crashy", "--images-per-task", "2", "--max-error-rate", "0.5"],
        store, f"{layout.prefix}/_tasks", 3)
    assert 3 <= len(committed) < 11, "the kill should land mid-run"
    assert not store.exists(layout.manifest)
    before = {k: store.read_bytes(k) for k in committed}

    resumed = embed.run(config(images, s3_store, run_id="crashy", images_per_task=2))
    assert {k: store.read_bytes(k) for k in committed} == before  # finished tasks were not redone
    clean = embed.run(config(str(root), str(tmp_path / "clean"), run_id="clean", images_per_task=2))
    assert resumed["counts"] == clean["counts"]
    got = rows_by_id(open_version(store, model.fingerprint_id, "crashy"))
    want = rows_by_id(open_version(Store(str(tmp_path / "clean")), model.fingerprint_id, "clean"))
    assert got.keys() == want.keys()  # no row lost
    ids = open_version(store, model.fingerprint_id, "crashy").read_all(["image_id"])["image_id"].to_pylist()
    assert len(ids) == len(set(ids)) == resumed["counts"]["rows"]  # none duplicated in the shards themselves
    for k in got:
        assert got[k][0] == want[k][0]
        np.testing.assert_allclose(got[k][1], want[k][1], atol=1e-5)


def test_too_many_errors_fail_the_job_but_keep_the_errors_table(spark, tmp_path, image_set, model):
    root, expected = image_set
    store = Store(str(tmp_path / "store"))
    with pytest.raises(embed.ErrorRateExceeded, match=r"failed \(\d+\.\d%\), above max_error_rate 5.0%"):
        embed.run(config(str(root), store.url, run_id="strict", max_error_rate=0.05))
    layout = EmbeddingsLayout(store, model.fingerprint_id, "strict")
    assert not store.exists(layout.manifest)
    assert latest_run_id(store, model.fingerprint_id) is None
    errors = pa.concat_tables(pq.read_table(store.path(k)) for k in store.list(layout.key("errors")))
    assert errors.num_rows == sum(1 for e in expected.values() if e != "ok")


def test_table_input_carries_metadata_and_reports_missing_uris(spark, tmp_path, image_set):
    root, _ = image_set
    table = pa.table({
        "image_id": ["tm-1", "tm-2", "tm-3"],
        "uri": [str(root / "photos/coffee.jpg"), str(root / "photos/gone.jpg"), str(root / "unusual/rgba.png")],
        "nice_class": [30, 9, 25],
    })
    pq.write_table(table, tmp_path / "catalogue.parquet")
    manifest = embed.run(config(str(tmp_path / "catalogue.parquet"), str(tmp_path / "store"), run_id="t"))
    version = open_version(Store(str(tmp_path / "store")), manifest["fingerprint_id"])
    out = version.read_all(["image_id", "nice_class"])
    assert out.to_pydict() == {"image_id": ["tm-1", "tm-3"], "nice_class": [30, 25]}
    errors = version.read_errors()
    assert errors.select(["image_id", "stage", "error_kind", "nice_class"]).to_pylist() == [
        {"image_id": "tm-2", "stage": "read", "error_kind": "not_found", "nice_class": 9}]


def disc(colour: str) -> bytes:
    """A mark: a disc of one colour on white."""
    image = Image.new("RGB", (240, 200), "white")
    ImageDraw.Draw(image).ellipse([40, 20, 200, 180], fill=colour)
    return jpeg_bytes(image)


@pytest.mark.slow
def test_each_image_keeps_its_colours_and_a_carried_row_its_own(tmp_path):
    """The embed job stores each image's colour histogram (image/colour.py) beside its vector; the next run carries
    it with the row; rows carried from parts written before colours were kept have none. The index keeps them
    for colour-aware search, never as a metadata column of hits."""
    folder = tmp_path / "marks"
    folder.mkdir()
    for name, colour in (("red", "#ff0000"), ("red2", "#e01020"), ("blue", "#1030c0")):
        (folder / f"{name}.jpg").write_bytes(disc(colour))
    store = Store(str(tmp_path / "store"))
    first = embed.run(EmbedConfig(images=str(folder), store=store.url, master=IN_PROCESS, run_id="night1"))
    table = open_version(store, first["fingerprint_id"], "night1").read_all()
    colours = dict(zip(table["image_id"].to_pylist(), table[COLOUR_COLUMN].to_pylist(), strict=True))
    assert all(len(h) == SIZE for h in colours.values())
    # Two reds have most of their colours in common, a red and a blue almost none.
    near = similarity(colours["red.jpg"], as_matrix([colours["red2.jpg"], colours["blue.jpg"]])[0])
    assert near[0] > 0.6 and near[1] < 0.1

    # Parts as an earlier version wrote them (no colours): the next run carries those rows without colours.
    for part in open_version(store, first["fingerprint_id"], "night1").parts:
        store.write_parquet(part, store.read_parquet(part).drop_columns([COLOUR_COLUMN]))
    (folder / "green.jpg").write_bytes(disc("green"))
    second = embed.run(EmbedConfig(images=str(folder), store=store.url, master=IN_PROCESS, run_id="night2"))
    assert (second["counts"]["new"], second["counts"]["carried"]) == (1, 3)
    table = open_version(store, first["fingerprint_id"], "night2").read_all()
    colours = dict(zip(table["image_id"].to_pylist(), table[COLOUR_COLUMN].to_pylist(), strict=True))
    assert len(colours["green.jpg"]) == SIZE and colours["red.jpg"] is None

    index_build.run(BuildIndexConfig(store=store.url, name="marks", master=IN_PROCESS, publish=True, queries=2))
    served = ServedIndex(store, WorkerSettings("marks", str(tmp_path / "cache")))
    served.start(watch=False)
    assert COLOUR_COLUMN in served.current.ids.column_names
    hits = search_vectors(served.current, np.asarray(served.current.vectors[:1], np.float32), 4)[0]
    assert hits and all(COLOUR_COLUMN not in h.metadata for h in hits)
