"""Local-feature verification on real photos: rotated, cropped, rescaled, recoloured and mirrored copies are
verified against their original (RootSIFT and ORB), distinct photos are not, and fusion puts verified candidates
first."""

from contextlib import ExitStack

import httpx
import numpy as np
import pytest

from lookalike.batch.join import JoinConfig
from lookalike.batch.join import run as join_run
from lookalike.core.spark import IN_PROCESS
from lookalike.core.store import Store
from lookalike.dev.alterations import altered
from lookalike.dev.imagefactory import PHOTOS, jpeg_bytes, photo
from lookalike.embed import job as embed
from lookalike.embed.config import EmbedConfig
from lookalike.embed.versions import open_version
from lookalike.image.feature_spec import FeatureSettings
from lookalike.image.local_features import extract, mirrored
from lookalike.index import build as index_build
from lookalike.index.build import BuildIndexConfig
from lookalike.index.export import ExportConfig
from lookalike.index.export import run as export_run
from lookalike.retrieval.verify import VerifySettings, fuse, inlier_counts
from lookalike.serve.http_api import create_app, running
from lookalike.serve.router import RouterSettings, create_router
from lookalike.serve.worker import ServedIndex, WorkerSettings

SETTINGS = VerifySettings()


@pytest.fixture(scope="module")
def originals():
    return {name: photo(name, 320) for name in PHOTOS}


def views(image, settings: FeatureSettings):
    return [extract(image, settings), extract(mirrored(image), settings)]


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["rootsift", "orb"])
@pytest.mark.parametrize("alteration", ["rotate", "crop", "rescale", "mirror", "recolour", "jpeg-q40"])
def test_an_altered_copy_is_verified_against_its_original_and_no_other(originals, alteration, kind):
    settings = FeatureSettings(kind=kind)
    names = list(originals)
    catalogue = [extract(originals[n], settings) for n in names]
    for seed, name in enumerate(("coffee", "chelsea", "astronaut", "rocket")):
        counts = inlier_counts(views(altered(originals[name], alteration, seed), settings), catalogue, SETTINGS)
        own = counts[names.index(name)]
        others = np.delete(counts, names.index(name))
        assert own >= SETTINGS.min_inliers, (name, alteration, counts)
        assert others.max() < SETTINGS.min_inliers, (name, alteration, dict(zip(names, counts, strict=True)))


def test_features_are_capped_compact_and_empty_for_a_blank_image(originals):
    features = extract(originals["astronaut"], FeatureSettings(max_keypoints=100))
    assert len(features) == 100 and features.descriptors.dtype == np.float16
    assert np.allclose(np.linalg.norm(features.descriptors.astype(np.float32), axis=1), 1.0, atol=1e-2)
    assert features.xy.max() <= 320
    blank = extract(originals["coffee"].point(lambda _: 255))
    assert len(blank) == 0
    assert inlier_counts([blank], [features, None]).tolist() == [0, 0]


def test_fusion_lifts_verified_candidates_by_their_inliers():
    scores = np.array([[0.9, 0.8, 0.7, 0.6]])
    inliers = np.array([[2, 30, 0, 60]])   # the second and fourth are verified
    strict = VerifySettings(bonus=2.0, saturation=60)  # every verified one first, in inlier order
    assert np.argsort(-fuse(scores, inliers, strict), axis=1)[0].tolist() == [3, 1, 0, 2]
    # The default: 0.4 at 20 inliers or more; both saturate, so the verified keep their cosine order.
    assert np.argsort(-fuse(scores, inliers, SETTINGS), axis=1)[0].tolist() == [1, 3, 0, 2]
    assert fuse(scores, np.array([[5, 5, 5, 5]]), SETTINGS).tolist() == scores.tolist()  # 5 < 6: none verified
    with pytest.raises(ValueError, match="transform"):
        VerifySettings(transform="affine-ish")


@pytest.mark.slow
def test_features_flow_from_the_embed_job_through_the_index_to_verified_worker_answers(tmp_path, model):
    """The embed job extracts features beside the vectors (and carries them over with them), the index version
    lays them out by faiss id, and the worker verifies image and id queries' shortlists with them."""

    root = tmp_path / "images"
    root.mkdir()
    for name in PHOTOS:
        (root / f"{name}.jpg").write_bytes(jpeg_bytes(photo(name, 256)))
    (root / "blank.jpg").write_bytes(jpeg_bytes(photo("coffee", 256).point(lambda _: 255)))  # no keypoint at all
    store = Store(str(tmp_path / "store"))
    config = EmbedConfig(images=str(root), store=store.url, master=IN_PROCESS, images_per_task=3)
    first = embed.run(config)
    assert first["local_features"]["kind"] == "rootsift" and len(first["files"]["features"]) == 3
    (root / "coffee.jpg").write_bytes(jpeg_bytes(photo("coffee", 256).rotate(90)))
    second = embed.run(config)
    assert second["counts"]["carried"] == len(PHOTOS) and second["counts"]["new"] == 1
    feature_rows = {}
    for m in (first, second):
        version = open_version(store, m["fingerprint_id"], m["run_id"])
        tables = [store.read_parquet(k) for k in version.feature_parts]
        feature_rows[m["run_id"]] = {i: xy for t in tables
                                     for i, xy in zip(t["image_id"].to_pylist(), t["xy"].to_pylist(), strict=True)}
    before, after = feature_rows[first["run_id"]], feature_rows[second["run_id"]]
    assert [i for i in before if before[i] != after[i]] == ["coffee.jpg"]   # carried exactly, re-extracted once

    manifest = index_build.run(BuildIndexConfig(store=store.url, name="photos", master=IN_PROCESS, publish=True,
                                                queries=4))
    assert {f["key"].rsplit("/", 1)[-1] for f in manifest["files"]} >= {
        "features.offsets.npy", "features.xy.npy", "features.descriptors.npy"}
    served = ServedIndex(store, WorkerSettings("photos", str(tmp_path / "cache")))
    served.start(watch=False)
    copy = jpeg_bytes(altered(photo("astronaut", 256), "rotate", 3))
    with running(create_app(served)) as url:
        verified = httpx.post(f"{url}/search/images", files={"images": ("q.jpg", copy, "image/jpeg")},
                              data={"k": "3"}, timeout=60).json()["results"][0]["hits"]
        plain = httpx.post(f"{url}/search/images", files={"images": ("q.jpg", copy, "image/jpeg")},
                           data={"k": "3", "verify": "false"}, timeout=60).json()["results"][0]["hits"]
        by_id = httpx.post(f"{url}/search/ids", json={"image_ids": ["chelsea.jpg"], "k": 3, "include_self": True},
                           timeout=60).json()["results"][0]["hits"]
    assert verified[0]["image_id"] == "astronaut.jpg" and verified[0]["inliers"] >= SETTINGS.min_inliers
    assert all(h["inliers"] < SETTINGS.min_inliers for h in verified[1:])
    assert all("inliers" not in h and h["score"] == h["cosine"] for h in plain)
    # The score shown is the one that ranks: the cosine plus the verification bonus, non-increasing with rank.
    assert [h["score"] for h in verified] == sorted((h["score"] for h in verified), reverse=True)
    for h in verified:
        assert h["score"] == pytest.approx(fuse(np.array([h["cosine"]]), np.array([h["inliers"]]))[0], abs=1e-5)
    assert by_id[0]["image_id"] == "chelsea.jpg" and by_id[0]["inliers"] >= 50   # itself: every keypoint fits

    # Exported shards carry their features; the router has every shard verify its own shortlist and merges.
    hosts = [str(tmp_path / "host-0"), str(tmp_path / "host-1")]
    export_run(ExportConfig(store=store.url, name="photos", destinations=tuple(hosts), master=IN_PROCESS))
    with ExitStack() as stack:
        shard_urls = []
        for i, host in enumerate(hosts):
            shard = ServedIndex(Store(host), WorkerSettings("photos", str(tmp_path / f"cache-{i}")))
            shard.start(watch=False)
            assert shard.current.features is not None and shard.current.manifest["ntotal"] < 9
            shard_urls.append(stack.enter_context(running(create_app(shard))))
        router = stack.enter_context(running(create_router(RouterSettings(tuple(shard_urls)))))
        routed = httpx.post(f"{router}/search/images", files={"images": ("q.jpg", copy, "image/jpeg")},
                            data={"k": "3"}, timeout=60).json()["results"][0]["hits"]
    assert [h["image_id"] for h in routed] == [h["image_id"] for h in verified]
    assert routed[0]["inliers"] == verified[0]["inliers"]
    assert [(h["score"], h["cosine"]) for h in routed] == [(h["score"], h["cosine"]) for h in verified]

    # A join of image queries against the index verifies too, when asked (--verify).
    queries = tmp_path / "queries"
    queries.mkdir()
    (queries / "copy.jpg").write_bytes(copy)
    joined = join_run(JoinConfig(store=store.url, index="photos", query_images=str(queries), k=3, verify=True,
                                 master=IN_PROCESS))
    pairs = store.read_parquet(joined["files"]["pairs"][0]["key"])
    assert pairs["neighbor_id"].to_pylist()[0] == "astronaut.jpg" and pairs["rank"].to_pylist()[0] == 1
    # As in every search, the pair's score is the one that ranked it, its cosine and inliers beside it.
    assert pairs.column_names[-2:] == ["cosine", "inliers"] and pairs["inliers"][0].as_py() >= SETTINGS.min_inliers
    assert pairs["score"].to_pylist() == sorted(pairs["score"].to_pylist(), reverse=True)
    assert pairs["score"][0].as_py() > pairs["cosine"][0].as_py()
