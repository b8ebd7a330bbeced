"""The Python API on real components: a folder indexed by `lookalike.reindex` in process, searched through
`lookalike.open_index` by path, bytes, PIL image, id and vector, the same answers over HTTP from `lookalike.Client`,
vectors from `lookalike.embed_images` equal to the embed job's, and the runnable examples."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import lookalike
from lookalike.core.store import Store
from lookalike.dev.imagefactory import PHOTOS, write_photo_crops
from lookalike.embed.versions import open_version
from lookalike.retrieval.ids import UnknownImageIds
from lookalike.serve.http_api import create_app, running
from lookalike.serve.worker import ServedIndex, WorkerSettings

EXAMPLES = Path(__file__).parent.parent / "examples"


@pytest.fixture(scope="module")
def published(tmp_path_factory) -> tuple[Path, str]:
    root = tmp_path_factory.mktemp("api")
    (root / "photos").mkdir()
    write_photo_crops(root / "photos", PHOTOS[:4], per_photo=3)
    report = lookalike.reindex(lookalike.ReindexConfig.of(str(root / "photos"), str(root / "store"), "photos",
                                                          master="in-process"))
    assert report["status"] == "published" and report["images"]["indexed"] == 12
    return root, str(root / "store")


@pytest.mark.slow
def test_an_index_opened_in_process_answers_every_kind_of_query(published):
    root, store = published
    index = lookalike.open_index(store, "photos")
    assert (index.name, index.size, index.verifies) == ("photos", 12, True) and "photos" in repr(index)
    path = root / "photos" / "coffee-1.jpg"
    by_path = index.search(path, k=3)
    assert [h.rank for h in by_path] == [1, 2, 3] and by_path[0].image_id == "coffee-1.jpg"
    assert by_path[0].cosine == pytest.approx(1.0, abs=1e-3) and by_path[0].inliers >= 6
    assert by_path[0].score > by_path[0].cosine  # verified: the score that ranks carries the inliers' bonus
    # The same image as a str path, bytes and a PIL image (saved losslessly: the same pixels); a list gives lists.
    as_bytes, as_pil = index.search([str(path), path.read_bytes()], k=3), index.search(Image.open(path), k=3)
    assert [h.image_id for h in as_bytes[0]] == [h.image_id for h in as_bytes[1]] == [h.image_id for h in by_path]
    assert as_pil[0].image_id == "coffee-1.jpg"

    by_id = index.search_ids("coffee-1.jpg", k=2)
    assert "coffee-1.jpg" not in [h.image_id for h in by_id]
    assert index.search_ids(["coffee-1.jpg"], k=1, include_self=True)[0][0].image_id == "coffee-1.jpg"
    # Any number of queries at once: the API searches them in batches each within the verification budget.
    ids = [h.image_id for h in index.search_vectors(np.ones(index.dim, np.float32), k=12)]
    assert len(index.search_ids(ids * 6, k=1, shortlist=1000)) == 72
    vector = index.vectors_of(["coffee-1.jpg"])[0]
    assert index.search_vectors(vector, k=1)[0].image_id == "coffee-1.jpg"
    assert index.search_vectors(np.stack([vector, vector]), k=1)[1][0].image_id == "coffee-1.jpg"
    assert index.search(path, k=2, filters={"image_id": ["rocket-0.jpg"]})[0].image_id == "rocket-0.jpg"
    with pytest.raises(UnknownImageIds, match="did you mean 'coffee-0.jpg'"):
        index.search_ids("coffee", k=1)


@pytest.mark.slow
def test_embed_images_gives_the_vectors_the_embed_job_wrote(published):
    root, store = published
    index = lookalike.open_index(store, "photos")
    version = open_version(Store(store), index.manifest["fingerprint_id"], index.manifest["source"]["run_id"])
    stored = version.read_all()
    first = stored["image_id"][0].as_py()
    vectors = lookalike.embed_images([root / "photos" / first, root / "photos" / "rocket-2.jpg"], device="cpu")
    assert vectors.shape == (2, index.dim) and vectors.dtype == np.float32
    np.testing.assert_allclose(vectors[0], stored["embedding"][0].values.to_numpy(), atol=1e-4)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_the_http_client_gives_the_in_process_answers(published, tmp_path):
    root, store = published
    index = lookalike.open_index(store, "photos")
    served = ServedIndex(Store(store), WorkerSettings("photos", str(tmp_path / "cache")))
    served.start(watch=False)
    path = root / "photos" / "rocket-1.jpg"
    with running(create_app(served)) as url, lookalike.Client(url) as client:
        assert client.health()["version"] == index.version and client.info()["ntotal"] == 12
        remote, local = client.search(path, k=4), index.search(path, k=4)
        assert [(h.image_id, h.rank, h.inliers) for h in remote] == [(h.image_id, h.rank, h.inliers) for h in local]
        np.testing.assert_allclose([h.score for h in remote], [h.score for h in local], atol=1e-5)
        assert [h.image_id for h in client.search_ids(["rocket-1.jpg"], k=2)[0]] == \
            [h.image_id for h in index.search_ids(["rocket-1.jpg"], k=2)[0]]
        vector = index.vectors_of(["rocket-1.jpg"])[0]
        assert client.search_vectors(vector, k=1)[0].image_id == "rocket-1.jpg"
        with pytest.raises(lookalike.SearchRefused) as refused:
            client.search_ids("rocket", k=1)
        assert refused.value.status == 404 and "did you mean" in str(refused.value)
        # Why a hit matched: the same explanation over HTTP as in process, by image and by catalogue id.
        remote_why, local_why = client.explain("rocket-2.jpg", query=path), index.explain("rocket-2.jpg", query=path)
        assert remote_why.cosine == pytest.approx(local_why.cosine, abs=1e-5)
        searched = {h.image_id: h for h in local}  # the cosine the search ranked it by
        assert local_why.cosine == pytest.approx(searched["rocket-2.jpg"].cosine, abs=1e-4)
        assert remote_why.percentile == local_why.percentile and remote_why.verified == local_why.verified
        by_id = client.explain("rocket-2.jpg", query_id="rocket-1.jpg")
        assert by_id.image_id == "rocket-2.jpg" and by_id.cosine == pytest.approx(float(
            index.vectors_of(["rocket-1.jpg"])[0] @ index.vectors_of(["rocket-2.jpg"])[0]), abs=1e-3)
        with pytest.raises(lookalike.LookalikeError, match="one query"):
            client.explain("rocket-2.jpg")
    with pytest.raises(lookalike.LookalikeError, match="ConnectError"):
        lookalike.Client(url, timeout=2).health()


@pytest.mark.slow
@pytest.mark.parametrize(("example", "expected"), [
    ("search_a_folder.py", ["indexed 24 images as marks/", "  1. circle-black.png  score", "by its vector"]),
    ("embed_to_numpy.py", ["6 images → vectors of shape (6, 1280), float32", "most alike:"]),
    ("http_client.py", ["serves marks/", "uploaded circle-red.png: circle-red.png", "refused with HTTP 404"]),
])
def test_the_examples_run_as_written(example, expected, tmp_path):
    done = subprocess.run([sys.executable, str(EXAMPLES / example)], capture_output=True, text=True, timeout=300,
                          cwd=tmp_path, env={**os.environ, "TMPDIR": str(tmp_path)})
    assert done.returncode == 0, done.stderr[-3000:]
    for text in expected:
        assert text in done.stdout, done.stdout
