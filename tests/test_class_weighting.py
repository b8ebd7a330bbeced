"""Class-weighted search: "like this image, but weighted toward class C". A picture of a coffee mug beside a cat
finds the cat's photos first; weighted toward 'coffee mug' it finds the mug's, through the worker's HTTP API (image
and id queries), the router over exported shards, and the command line, on an index built by the real jobs."""

from contextlib import ExitStack
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
from PIL import Image
from support.serving import exported_router

from lookalike.cli.main import main
from lookalike.core.spark import IN_PROCESS
from lookalike.core.store import Store
from lookalike.dev import imagefactory
from lookalike.embed import job as embed
from lookalike.embed.config import EmbedConfig
from lookalike.index import build as index_build
from lookalike.index.build import BuildIndexConfig
from lookalike.model.class_weighting import ClassFocus, ClassWeightingError, position_weights, resolve_class
from lookalike.model.loading import cached_model
from lookalike.model.spec import ModelSpec
from lookalike.retrieval.class_focus import class_focus, weights_classes
from lookalike.retrieval.embedder import QueryEmbedder
from lookalike.retrieval.limits import QueryError
from lookalike.serve.http_api import create_app, running
from lookalike.serve.worker import ServedIndex, WorkerSettings

PHOTOS = ("coffee", "chelsea", "astronaut", "rocket", "coins", "horse", "camera", "brick")
MODEL = ModelSpec(name="efficientnet_lite0", image_size=224)  # weighting reads its ImageNet classifier
BOTH = "mug-and-cat.png"  # in the catalogue too, so that an id query can be weighted


def mug_and_cat() -> bytes:
    canvas = Image.new("RGB", (448, 224), "white")
    canvas.paste(imagefactory.photo("coffee", 224), (0, 0))
    canvas.paste(imagefactory.photo("chelsea", 224), (224, 0))
    return imagefactory.png_bytes(canvas)


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory) -> Path:
    images = tmp_path_factory.mktemp("class-weighting") / "images"
    images.mkdir()
    imagefactory.write_photo_crops(images, PHOTOS, per_photo=4)
    (images / BOTH).write_bytes(mug_and_cat())
    return images


@pytest.fixture(scope="module")
def store(s3_server, catalogue) -> Store:
    store = Store(f"s3://{s3_server.new_bucket()}/store", s3_server.options)
    m = embed.run(EmbedConfig(images=str(catalogue), store=store.url, storage_options=store.options, model=MODEL,
                              master=IN_PROCESS, local_features=None))
    index_build.run(BuildIndexConfig(store=store.url, storage_options=store.options, name="photos",
                                     embeddings=f"{m['fingerprint_id']}/{m['run_id']}", master=IN_PROCESS,
                                     publish=True, queries=4))
    return store


def photos_of(answer: dict, n: int) -> list[str]:
    """The photo each of the first n hits (the composite itself left out) was cropped from."""
    ids = [h["image_id"] for h in answer["hits"] if h["image_id"] != BOTH]
    return [i.split("-")[0] for i in ids[:n]]


@pytest.mark.slow
def test_classes_are_named_by_name_or_id_and_mistakes_say_what_they_could_mean():
    assert resolve_class("umbrella") == resolve_class("879") == resolve_class(879) == (879, "umbrella")
    assert resolve_class("Coffee Mug") == (504, "coffee mug")
    assert resolve_class("egyptian") == (285, "Egyptian cat")  # part of one name is enough
    assert resolve_class("crane") == (517, "crane")  # a whole name wins over a part of another ('crane bird')
    with pytest.raises(ClassWeightingError, match=r"names 2 ImageNet classes: 'running shoe' \(770\), 'shoe shop'"):
        resolve_class("shoe")
    with pytest.raises(ClassWeightingError, match="did you mean 'umbrella'"):
        resolve_class("umbrela")
    with pytest.raises(ClassWeightingError, match="numbered 0–999"):
        resolve_class("1000")
    with pytest.raises(ClassWeightingError, match="strength 1.5"):
        ClassFocus.of("umbrella", 1.5)
    features = torch.rand(2, 8, 5, 5, generator=torch.Generator().manual_seed(0))
    weights = position_weights(features, torch.linspace(-1, 1, 8), 0.75)
    assert weights.shape == (2, 1, 5, 5) and weights.min() >= 0.25 - 1e-6 and weights.min() < 0.9
    assert torch.allclose(weights.flatten(1).amax(dim=1), torch.ones(2))
    # Where the class is seen nowhere, the image stays as it is (not the zero vector strength 1 would make).
    assert torch.equal(position_weights(features, -torch.ones(8), 1.0), torch.ones(2, 1, 5, 5))

    visual = QueryEmbedder(cached_model(MODEL, "cpu"))
    data = [mug_and_cat()]
    np.testing.assert_allclose(visual.embed(data, class_focus(visual.model, "coffee mug", 0.0)), visual.embed(data),
                               atol=1e-5)
    assert weights_classes(visual.model)
    words = cached_model(ModelSpec(space="conse", image_size=224), "cpu")
    assert not weights_classes(words)
    with pytest.raises(QueryError, match="word space"):
        class_focus(words, "umbrella")
    with pytest.raises(QueryError, match="needs the class"):
        class_focus(visual.model, None, 0.5)


@pytest.mark.slow
def test_weighting_toward_a_class_moves_the_hits_to_that_part_over_http_and_the_router(store, tmp_path):
    with ExitStack() as stack:
        served = ServedIndex(store, WorkerSettings("photos", str(tmp_path / "cache")))
        served.start(watch=False)
        worker = stack.enter_context(running(create_app(served)))
        assert httpx.get(f"{worker}/api/info").json()["class_weighting"] is True  # the page shows its class box
        upload = [("images", (BOTH, mug_and_cat(), "image/png"))]

        def by_image(url: str, **form: str) -> dict:
            r = httpx.post(f"{url}/search/images", files=upload, data={"k": "9", "verify": "false", **form},
                           timeout=60)
            assert r.status_code == 200, r.text
            return r.json()["results"][0]

        plain = by_image(worker)
        assert photos_of(plain, 4) == ["chelsea"] * 4  # the cat dominates the picture as it is
        toward_mug = by_image(worker, weight_class="coffee mug")
        assert photos_of(toward_mug, 4) == ["coffee"] * 4
        assert set(photos_of(toward_mug, 8)) == {"coffee", "chelsea"}  # still the query's two parts, nothing else
        toward_cat = by_image(worker, weight_class="281")  # tabby, by id
        assert photos_of(toward_cat, 4) == ["chelsea"] * 4
        cat_score = next(h["cosine"] for h in plain["hits"] if h["image_id"] != BOTH)
        assert next(h["cosine"] for h in toward_cat["hits"] if h["image_id"] != BOTH) > cat_score

        # A catalogue id: its image is read from where the catalogue keeps it and re-pooled toward the class.
        body = {"image_ids": [BOTH], "k": 4, "weight_class": "coffee mug"}
        r = httpx.post(f"{worker}/search/ids", json=body, timeout=60)
        assert r.status_code == 200, r.text
        assert photos_of(r.json()["results"][0], 4) == ["coffee"] * 4
        direct_ids = [h["image_id"] for h in r.json()["results"][0]["hits"]]

        # Vector queries have no features to weight (their schema has no class); a wrong class says what it
        # could mean; the served schema lists the classes.
        r = httpx.post(f"{worker}/search/vectors", json={"vectors": [[1.0] * served.current.dim],
                                                         "weight_class": "umbrella"}, timeout=60)
        assert r.status_code == 422 and "weight_class" in r.text
        schema = httpx.get(f"{worker}/openapi.json").json()["components"]["schemas"]
        assert {"umbrella", "504"} <= set(schema["IdQuery"]["properties"]["weight_class"]["anyOf"][0]["enum"])
        r = httpx.post(f"{worker}/search/images", files=upload, data={"weight_class": "umbrela"}, timeout=60)
        assert r.status_code == 400 and "did you mean 'umbrella'" in r.json()["detail"]

        router = exported_router(stack, store, "photos", tmp_path)
        assert photos_of(by_image(router, weight_class="coffee mug"), 4) == ["coffee"] * 4
        verified = by_image(router, weight_class="coffee mug", verify="true")  # the shards embed it themselves
        assert photos_of(verified, 4) == ["coffee"] * 4
        r = httpx.post(f"{router}/search/ids", json=body, timeout=60)
        assert r.status_code == 200, r.text
        assert [h["image_id"] for h in r.json()["results"][0]["hits"]] == direct_ids
        r = httpx.post(f"{router}/search/vectors", json={"vectors": [[1.0] * served.current.dim],
                                                         "weight_class": "umbrella"}, timeout=60)
        assert r.status_code == 422


@pytest.mark.slow
def test_the_page_offers_the_class_box_and_sends_its_class_with_an_id_query(store, chromium, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    served = ServedIndex(store, WorkerSettings("photos", str(tmp_path / "cache")))
    served.start(watch=False)
    with running(create_app(served)) as worker:
        chromium.get(worker + "/")
        WebDriverWait(chromium, 20).until(lambda d: "photos" in d.find_element(By.ID, "index-info").text)
        assert chromium.find_element(By.ID, "class-row").is_displayed()  # a model with its ImageNet classifier

        def search_id(weight_class: str) -> None:
            chromium.find_element(By.ID, "weight-class").clear()
            chromium.find_element(By.ID, "weight-class").send_keys(weight_class)
            chromium.find_element(By.ID, "image-id").clear()
            chromium.find_element(By.ID, "image-id").send_keys(BOTH)
            chromium.find_element(By.ID, "search-id").click()

        search_id("umbrela")
        WebDriverWait(chromium, 30).until(lambda d: "did you mean 'umbrella'" in d.find_element(By.ID, "status").text)
        search_id("coffee mug")
        WebDriverWait(chromium, 60).until(lambda d: "results from" in d.find_element(By.ID, "status").text)
        hits = [{"image_id": e.text} for e in chromium.find_elements(By.CSS_SELECTOR, "#results .hit .image-id")]
        assert photos_of({"hits": hits}, 4) == ["coffee"] * 4, hits


def test_class_weighted_search_from_the_command_line(store, catalogue, capsys, tmp_path):
    from support.cli import store_option_args
    args = ["--store", store.url, *store_option_args(store.options), "--index", "photos",
            "--cache-dir", str(tmp_path / "cache"), "--k", "5"]
    assert main(["search", *args, str(catalogue / BOTH), "--weight-class", "coffee mug"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "weighted toward 'coffee mug' (504) at 1" in out[0]
    # Each hit's line: rank, score, id (then its score's parts).
    assert [line.split()[2].split("-")[0] for line in out[2:] if BOTH not in line][:4] == ["coffee"] * 4
    assert main(["search", *args, "--id", BOTH, "--weight-class", "tabby", "--json"]) == 0
    assert '"class": "tabby"' in capsys.readouterr().out
    assert main(["search", *args, str(catalogue / BOTH), "--weight-class", "umbrela"]) == 2
    assert "did you mean 'umbrella'" in capsys.readouterr().err
