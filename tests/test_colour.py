"""Shape, colour, or both: a search weighs the colours of its query against each shortlisted image's (the
histograms the embed job keeps), from 0 (the shape ranking, as before) to 1 (colour decides among the
shortlist), by image, catalogue id, examples and vector, through the worker, the router, the command line, the
Python API and the page; a version embedded before colours were kept says so."""

import io
import json
from contextlib import ExitStack

import httpx
import numpy as np
import pytest
from PIL import Image, ImageDraw
from support.serving import exported_router, served_index

import lookalike
from lookalike.cli.main import main
from lookalike.core.spark import IN_PROCESS
from lookalike.core.store import Store
from lookalike.dev.imagefactory import photo
from lookalike.dev.synthetic import clustered_vectors, write_embeddings_version
from lookalike.embed import job as embed
from lookalike.embed.config import EmbedConfig
from lookalike.index import build as index_build
from lookalike.index.build import BuildIndexConfig
from lookalike.serve.http_api import create_app, running

COLOURS = {"red": "#d01020", "crimson": "#c0182c", "blue": "#1838c0", "green": "#20a040", "orange": "#f08018"}


def mark(colour: str, size: int = 240) -> bytes:
    """The same mark in any colour: a ring around a disc, on white."""
    image = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(image)
    draw.ellipse([size * 0.1, size * 0.1, size * 0.9, size * 0.9], outline=colour, width=max(2, size // 16))
    draw.ellipse([size * 0.32, size * 0.32, size * 0.68, size * 0.68], fill=colour)
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


@pytest.fixture(scope="module")
def marks(tmp_path_factory):
    """A published index of the one mark in five colours, and two photos."""
    tmp = tmp_path_factory.mktemp("colour")
    (tmp / "images").mkdir()
    for name, colour in COLOURS.items():
        (tmp / "images" / f"{name}.png").write_bytes(mark(colour))
    for name in ("coffee", "chelsea"):
        out = io.BytesIO()
        photo(name, 240).save(out, "JPEG")
        (tmp / "images" / f"{name}.jpg").write_bytes(out.getvalue())
    store = Store(str(tmp / "store"))
    embed.run(EmbedConfig(images=str(tmp / "images"), store=store.url, master=IN_PROCESS))
    index_build.run(BuildIndexConfig(store=store.url, name="marks", master=IN_PROCESS, publish=True, queries=2))
    return store


def ranked(answer: dict) -> list[str]:
    return [h["image_id"] for h in answer["results"][0]["hits"]]


@pytest.mark.slow
def test_colour_weighs_from_nothing_to_everything_on_every_route(marks, tmp_path, capsys):
    served = served_index(marks, "marks", tmp_path)
    query = mark(COLOURS["red"], 180)
    upload = ("images", ("red.png", query, "image/png"))

    with running(create_app(served)) as url:
        def by_image(**form) -> dict:
            return httpx.post(f"{url}/search/images", files=[upload], data={"k": "7", "verify": "false", **form},
                              timeout=60).json()
        plain, nothing, half, everything = by_image(), by_image(colour_weight="0"), by_image(colour_weight="0.5"), \
            by_image(colour_weight="1")
        embedded = httpx.post(f"{url}/embed", files=[upload], timeout=60).json()
        by_vector = httpx.post(f"{url}/search/vectors", json={"vectors": embedded["vectors"], "k": 7,
                                                              "colour": embedded["colours"][0], "colour_weight": 1},
                               timeout=60).json()
        by_id = httpx.post(f"{url}/search/ids", json={"image_ids": ["red.png"], "k": 6, "colour_weight": 1},
                           timeout=60).json()
        examples = httpx.post(f"{url}/search/examples", data={"image_ids": ["red.png", "crimson.png"], "k": "5",
                                                              "colour_weight": "1"}, timeout=60).json()
        wrong = httpx.post(f"{url}/search/vectors", json={"vectors": embedded["vectors"], "colour": "x" * 88,
                                                          "colour_weight": 1}, timeout=60)

    # 0 is the shape ranking as it was, and says nothing of colour.
    assert ranked(nothing) == ranked(plain) and not any("colour" in h for h in nothing["results"][0]["hits"])
    # 1: the colours decide among the shortlist: the reds first, most alike first, the photos and other hues after.
    hits = everything["results"][0]["hits"]
    assert ranked(everything)[:2] == ["red.png", "crimson.png"]
    assert [h["colour"] for h in hits] == sorted((h["colour"] for h in hits), reverse=True)
    assert hits[0]["colour"] > 0.6 > 0.1 > next(h["colour"] for h in hits if h["image_id"] == "blue.png")
    # Between: each score is the blend of its shape and its colours; the cosine is the shape's alone.
    for hit in half["results"][0]["hits"]:
        assert hit["score"] == pytest.approx(0.5 * hit["cosine"] + 0.5 * hit["colour"], abs=1e-4)
    # The same through a vector with its colours (as /embed gives them), by catalogue id and by examples.
    assert ranked(by_vector) == ranked(everything)
    assert ranked(by_id)[0] == "crimson.png"
    # Examples: the reds' colours together rank the rest (the reds themselves are examples, never hits).
    colours_of_rest = [h["colour"] for h in examples["results"][0]["hits"]]
    assert not {"red.png", "crimson.png"} & set(ranked(examples)) and colours_of_rest == sorted(colours_of_rest,
                                                                                                 reverse=True)
    assert wrong.status_code == 422

    # The router: uploads go to every shard, which weighs its own shortlist; ids and examples carry their colours.
    with ExitStack() as stack:
        router = exported_router(stack, marks, "marks", tmp_path)
        routed = httpx.post(f"{router}/search/images", files=[upload],
                            data={"k": "7", "verify": "false", "colour_weight": "1"}, timeout=60).json()
        routed_id = httpx.post(f"{router}/search/ids", json={"image_ids": ["red.png", "blue.png"], "k": 3,
                                                             "colour_weight": 1}, timeout=60).json()
        routed_examples = httpx.post(f"{router}/search/examples", data={
            "image_ids": ["red.png", "crimson.png"], "k": "5", "colour_weight": "1"}, timeout=60).json()
    assert ranked(routed)[:2] == ["red.png", "crimson.png"]
    # Two ids in one request: each searched with its own colours (the red finds the crimson, the blue not a red).
    assert routed_id["results"][0]["hits"][0]["image_id"] == "crimson.png"
    assert routed_id["results"][1]["hits"][0]["image_id"] not in ("red.png", "crimson.png")
    assert routed_id["results"][0]["hits"][0]["colour"] > 0.6 and ranked(routed_examples) == ranked(examples)

    # The Python API, the client and the command line.
    index = lookalike.open_index(marks.url, "marks", cache_dir=str(tmp_path / "cache-api"))
    assert [h.image_id for h in index.search(query, k=7, verify=False, colour_weight=1)] == ranked(everything)
    assert index.search_ids("red.png", k=1, colour_weight=1)[0].image_id == "crimson.png"
    with running(create_app(served)) as url, lookalike.Client(url) as client:
        assert client.search(query, k=7, verify=False, colour_weight=1)[0].colour == pytest.approx(
            hits[0]["colour"], abs=1e-4)
    (tmp_path / "red.png").write_bytes(query)
    assert main(["search", "--store", marks.url, "--index", "marks", "--k", "2", "--no-verify", "--colour-weight",
                 "1", "--json", str(tmp_path / "red.png")]) == 0
    assert [h["image_id"] for h in json.loads(capsys.readouterr().out)["results"][0]["hits"]] == \
        ["red.png", "crimson.png"]
    assert main(["search", "--store", marks.url, "--index", "marks", "--colour-weight", "2", "--id", "red.png"]) == 2
    assert "between 0 and 1" in capsys.readouterr().err


@pytest.mark.slow
def test_a_version_without_colours_says_so_and_does_not_offer_them(tmp_path):
    store = Store(str(tmp_path / "store"))
    write_embeddings_version(store, clustered_vectors(200, 16, seed=3), parts=1)
    index_build.run(BuildIndexConfig(store=store.url, name="plain", master=IN_PROCESS, publish=True, queries=10))
    served = served_index(store, "plain", tmp_path)
    with running(create_app(served)) as url:
        schema = httpx.get(f"{url}/openapi.json", timeout=60).json()["components"]["schemas"]
        refused = httpx.post(f"{url}/search/vectors", json={"vectors": [np.ones(16).tolist()], "colour_weight": 1},
                             timeout=60)
        info = httpx.get(f"{url}/api/info", timeout=60).json()
    assert "colour_weight" not in schema["VectorQuery"]["properties"] and info["colour_search"] is False
    assert refused.status_code == 400 and "no colour histograms" in refused.json()["detail"]


@pytest.mark.slow
def test_the_page_weighs_colour_with_a_slider(marks, chromium, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    served = served_index(marks, "marks", tmp_path)
    with running(create_app(served)) as worker:
        chromium.get(worker + "/")
        WebDriverWait(chromium, 20).until(lambda d: d.find_element(By.ID, "colour-row").is_displayed())
        chromium.execute_script("showColourWeight(1);")
        chromium.find_element(By.ID, "image-id").send_keys("red.png")
        chromium.find_element(By.ID, "search-id").click()
        WebDriverWait(chromium, 60).until(lambda d: "results from" in d.find_element(By.ID, "status").text)
        cards = chromium.find_elements(By.CSS_SELECTOR, "#results .hit")
        assert cards[0].get_attribute("data-image-id") == "crimson.png"
        assert "colour 0." in cards[0].find_element(By.CSS_SELECTOR, ".parts").text
        assert "colour=1" in chromium.current_url and chromium.find_element(By.ID, "colour-value").text == "1.00"
        chromium.save_screenshot(str(tmp_path / "colour-page.png"))
