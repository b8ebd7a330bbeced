"""Search as a trademark examiner works it. Why a catalogue image matched: the fit behind a verified match (its
transform and keypoint pairs, a mirrored query's keypoints turned back into its own orientation), the score's parts
and the cosine's percentile in the catalogue, through the worker, the router, `lookalike explain` (with its
comparison view), the Python API and the page. A part of a mark: a crop of the query searched alone, on every
route that takes image bytes, the router, the command line, the Python API and the page. More like these, not
like those: several examples (images and ids) to find more of and fewer of, searched as one query."""

import io
import json
import math
from contextlib import ExitStack

import httpx
import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont, ImageOps
from support.serving import exported_router, served_index

import lookalike
from lookalike.cli.main import main
from lookalike.core.spark import IN_PROCESS
from lookalike.core.store import Store
from lookalike.dev.imagefactory import PHOTOS, jpeg_bytes, photo
from lookalike.embed import job as embed
from lookalike.embed.config import EmbedConfig
from lookalike.image.budget import DecodeLimits
from lookalike.image.crop import Crop, cropped
from lookalike.image.feature_spec import FeatureSettings
from lookalike.image.local_features import extract, mirrored
from lookalike.index import build as index_build
from lookalike.index.build import BuildIndexConfig
from lookalike.retrieval.calibration import ScoreCalibration
from lookalike.retrieval.comparison import GAP, PANEL
from lookalike.retrieval.verify import VerifySettings, best_fits, fuse, inlier_counts
from lookalike.serve.http_api import create_app, running
from lookalike.serve.settings import ApiSettings

SETTINGS = VerifySettings()


def png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def flipped_astronaut() -> bytes:
    """The astronaut photo mirrored: a copy of a catalogue image that fits through the query's mirror view."""
    return png(ImageOps.mirror(photo("astronaut", 256)))


def residuals(transform: np.ndarray, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    return np.linalg.norm(src @ transform[:, :2].T + transform[:, 2] - dst, axis=1)


def test_the_fit_behind_a_verified_match_is_the_copys_geometry():
    settings = FeatureSettings()
    original = photo("astronaut", 320)
    candidate = extract(original, settings)
    # A quarter turn: the fitted similarity turns by 90° at the same scale, and carries every inlier onto its match.
    turned = original.rotate(90, expand=True)
    views = [extract(turned, settings), extract(mirrored(turned), settings)]
    fit = best_fits(views, [candidate], SETTINGS)[0]
    assert fit is not None and fit.view == 0 and fit.inliers >= 50
    angle = math.degrees(math.atan2(fit.transform[1, 0], fit.transform[0, 0]))
    assert abs(abs(angle) - 90) < 2 and np.sqrt(abs(np.linalg.det(fit.transform[:, :2]))) == pytest.approx(1, abs=0.05)
    assert np.median(residuals(fit.transform, fit.query_xy, fit.candidate_xy)) < SETTINGS.reprojection
    # The count a search ranks by is this fit's (RANSAC draws its samples: within a few keypoints).
    assert abs(int(inlier_counts(views, [candidate], SETTINGS)[0]) - fit.inliers) <= max(3, fit.inliers // 10)
    # A mirrored copy fits through the query's mirror view; an unrelated photo does not fit at all.
    flipped = ImageOps.mirror(original)
    assert best_fits([extract(flipped, settings), extract(mirrored(flipped), settings)], [candidate])[0].view == 1
    unrelated = best_fits([extract(photo("coffee", 320), settings)], [candidate])[0]
    assert unrelated is None or unrelated.inliers < SETTINGS.min_inliers
    assert best_fits(views, [None, candidate])[0] is None


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """A published index of the skimage photos, with local features."""
    tmp = tmp_path_factory.mktemp("explain")
    root = tmp / "images"
    root.mkdir()
    for name in PHOTOS:
        (root / f"{name}.jpg").write_bytes(jpeg_bytes(photo(name, 256)))
    store = Store(str(tmp / "store"))
    embed.run(EmbedConfig(images=str(root), store=store.url, master=IN_PROCESS, images_per_task=4))
    index_build.run(BuildIndexConfig(store=store.url, name="photos", master=IN_PROCESS, publish=True, queries=4))
    return store, tmp


@pytest.mark.slow
def test_the_worker_the_router_and_the_cli_explain_why_a_mark_matched(photos, tmp_path, capsys):
    store, _ = photos
    served = served_index(store, "photos", tmp_path)
    flipped = flipped_astronaut()
    with running(create_app(served)) as url:
        def explain_upload(image_id: str) -> httpx.Response:
            return httpx.post(f"{url}/explain/images", files={"image": ("flipped.png", flipped, "image/png")},
                              data={"image_id": image_id}, timeout=60)
        copy, unrelated = explain_upload("astronaut.jpg").json(), explain_upload("coffee.jpg").json()
        hit = httpx.post(f"{url}/search/images", files={"images": ("flipped.png", flipped, "image/png")},
                         data={"k": "1"}, timeout=60).json()["results"][0]["hits"][0]
        itself = httpx.post(f"{url}/explain/ids", json={"query_id": "chelsea.jpg", "image_id": "chelsea.jpg"},
                            timeout=60).json()
        unknown = httpx.post(f"{url}/explain/ids", json={"query_id": "chelsea.jpg", "image_id": "chelsea"},
                             timeout=60)
        not_an_image = httpx.post(f"{url}/explain/images", files={"image": ("x.png", b"not an image", "image/png")},
                                  data={"image_id": "coffee.jpg"}, timeout=60)

    # The score's parts: the score the search ranked the copy by is its cosine plus the bonus of its inliers.
    assert copy["verified"] and copy["inliers"] >= SETTINGS.saturation and copy["query"] == "flipped.png"
    assert copy["score"] == pytest.approx(fuse(np.array([copy["cosine"]]), np.array([copy["inliers"]]))[0])
    assert hit["image_id"] == "astronaut.jpg" and copy["score"] == pytest.approx(hit["score"], abs=1e-5)
    assert hit["percentile"] == copy["percentile"]  # every hit of an image search is placed in the catalogue
    assert copy["cosine"] == pytest.approx(hit["cosine"], abs=1e-5)
    # The keypoint pairs, the query's in its own orientation: the mirror of the candidate at the same size, each
    # pair is a point and its reflection.
    match = copy["match"]
    assert match["mirrored"] and len(match["query_xy"]) == copy["inliers"] == len(match["candidate_xy"])
    q, c = np.array(match["query_xy"]), np.array(match["candidate_xy"])
    width = match["feature_size"]  # the photo is square: its width is the features' longest side
    assert np.median(np.abs(width - 1 - q[:, 0] - c[:, 0])) < 2 and np.median(np.abs(q[:, 1] - c[:, 1])) < 2
    # The cosine placed in the catalogue: the copy above the unrelated photo, each with its sentence.
    assert not unrelated["verified"] and unrelated["match"] is None and unrelated["score"] == unrelated["cosine"]
    assert copy["percentile"] > unrelated["percentile"] and "nearest-neighbour cosine" in copy["reading"]
    assert itself["cosine"] == pytest.approx(1, abs=1e-3) and itself["percentile"] == 100
    assert itself["inliers"] >= 50 and not itself["match"]["mirrored"]
    assert unknown.status_code == 404 and "did you mean 'chelsea.jpg'" in unknown.json()["detail"]
    assert not_an_image.status_code == 400

    # Through the router: the shard holding the candidate explains it; a pair split across shards says what to do.
    with ExitStack() as stack:
        router = exported_router(stack, store, "photos", tmp_path)
        shards = [served_index(Store(str(tmp_path / f"host-{i}")), "photos", tmp_path).current.ids["image_id"]
                  .to_pylist() for i in range(2)]
        routed = httpx.post(f"{router}/explain/images", files={"image": ("flipped.png", flipped, "image/png")},
                            data={"image_id": "astronaut.jpg"}, timeout=60).json()
        apart = httpx.post(f"{router}/explain/ids", json={"query_id": shards[0][0], "image_id": shards[1][0]},
                           timeout=60)
        together = httpx.post(f"{router}/explain/ids", json={"query_id": shards[1][0], "image_id": shards[1][-1]},
                              timeout=60)
    assert routed["cosine"] == pytest.approx(copy["cosine"], abs=1e-5) and routed["verified"]
    assert apart.status_code == 404 and "explain with the query's image" in apart.json()["detail"]
    assert together.status_code == 200 and together.json()["image_id"] == shards[1][-1]

    # `lookalike explain`: the parts in words, and the comparison view with the pairs joined across the gap.
    (tmp_path / "flipped.png").write_bytes(flipped)
    base = ["explain", "--store", store.url, "--index", "photos", str(tmp_path / "flipped.png")]
    assert main([*base, "--hit", "astronaut.jpg", "--draw", str(tmp_path / "copy.png")]) == 0
    said = capsys.readouterr().out
    assert "astronaut.jpg: score" in said and "inliers)" in said
    assert "keypoint pairs fit one transform of the query's mirror image" in said
    assert main([*base, "--hit", "coffee.jpg", "--draw", str(tmp_path / "unrelated.png"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["match"] is None
    for name, lines in (("copy.png", True), ("unrelated.png", False)):
        view = np.asarray(Image.open(tmp_path / name).convert("RGB"))
        assert view.shape[1] > 2 * PANEL * 0.9  # both photos, side by side
        left = PANEL  # the query's panel: the square photo, PANEL wide
        gap = view[:PANEL, left + 2:left + GAP - 2]
        assert (gap.min(axis=2) < 200).any() == lines, name  # lines cross the gap only where pairs were drawn
    assert main(["explain", "--store", store.url, "--index", "photos", "--hit", "coffee.jpg"]) == 2
    assert "give the query" in capsys.readouterr().err


def test_a_score_is_read_against_the_catalogues_nearest_neighbour_scores():
    calibration = ScoreCalibration(np.array([0.2, 0.4, 0.5, 0.6, 0.9], dtype=np.float32))
    assert [calibration.percentile(s) for s in (0.1, 0.45, 0.6, 0.95)] == [0.0, 40.0, 60.0, 100.0]
    assert calibration.describe(0.95).startswith("cosine 0.950 is above the nearest-neighbour cosine of 100 %")


@pytest.mark.slow
def test_the_page_compares_the_query_with_a_hit_and_draws_the_keypoint_pairs(photos, chromium, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    store, _ = photos
    served, query = served_index(store, "photos", tmp_path), tmp_path / "flipped.png"
    query.write_bytes(flipped_astronaut())
    # Non-white pixels of the canvas's gap between the two images: the lines joining keypoint pairs cross it.
    lines_across_the_gap = (
        "const c = document.getElementById('compare-canvas');"
        "const d = c.getContext('2d').getImageData(arguments[0] + 2, 0, arguments[1] - 4, c.height).data;"
        "let n = 0; for (let i = 0; i < d.length; i += 4) if (Math.min(d[i], d[i + 1], d[i + 2]) < 200) n++;"
        "return n;")

    def why(image_id: str) -> None:
        card = chromium.find_element(By.CSS_SELECTOR, f'#results .hit[data-image-id="{image_id}"]')
        card.find_element(By.CSS_SELECTOR, "button.why").click()
        WebDriverWait(chromium, 60).until(
            lambda d: image_id in d.find_element(By.ID, "compare-title").text
            and "compared with" in d.find_element(By.ID, "status").text)

    with running(create_app(served)) as worker:
        chromium.get(worker + "/")
        WebDriverWait(chromium, 20).until(lambda d: "photos" in d.find_element(By.ID, "index-info").text)
        chromium.find_element(By.ID, "image-file").send_keys(str(query))
        WebDriverWait(chromium, 60).until(lambda d: "results from" in d.find_element(By.ID, "status").text)
        assert not chromium.find_element(By.ID, "compare").is_displayed()
        why("astronaut.jpg")
        parts = chromium.find_element(By.ID, "compare-parts").text
        assert "inliers" in parts and "of the query's mirror image" in parts and "(60 drawn)" in parts
        assert "nearest-neighbour cosine" in chromium.find_element(By.ID, "compare-reading").text
        panel, gap = chromium.execute_script("return [PANEL, GAP];")
        assert chromium.execute_script(lines_across_the_gap, panel, gap) > 100
        chromium.find_element(By.ID, "compare").screenshot(str(tmp_path / "compare-page.png"))
        why("coffee.jpg")  # no fit: the two images, no line between them
        assert "too few to verify" in chromium.find_element(By.ID, "compare-parts").text
        assert chromium.execute_script(lines_across_the_gap, panel, gap) == 0
        # After a search by catalogue id, "why?" compares two catalogue images.
        chromium.find_element(By.ID, "image-id").send_keys("chelsea.jpg")
        chromium.find_element(By.ID, "search-id").click()
        WebDriverWait(chromium, 60).until(lambda d: "results from" in d.find_element(By.ID, "status").text)
        first = chromium.find_element(By.CSS_SELECTOR, "#results .hit").get_attribute("data-image-id")
        why(first)
        assert chromium.find_element(By.ID, "compare-title").text == f"chelsea.jpg ↔ {first}"
        chromium.find_element(By.ID, "compare-close").click()
        assert not chromium.find_element(By.ID, "compare").is_displayed()


def composite(margin: int = 20) -> Image.Image:
    """Two photos side by side on white, as a composite mark's two devices: the astronaut on the left, the coffee
    right, each in its half."""
    left, right = photo("astronaut", 256), photo("coffee", 256)
    out = Image.new("RGB", (2 * (left.width + 2 * margin), max(left.height, right.height) + 2 * margin), "white")
    out.paste(left, (margin, margin))
    out.paste(right, (left.width + 3 * margin, margin))
    return out


def test_a_crop_is_a_box_of_fractions_that_keeps_that_part_of_the_image():
    image = composite(margin=0)
    assert Crop.of("0.5,0,1,1") == Crop(0.5, 0, 1, 1) and str(Crop.of([0.5, 0, 1, 1])) == "0.5,0,1,1"
    assert Crop(0.5, 0, 1, 1).box(*image.size) == (256, 0, 512, image.height)
    right = Image.open(io.BytesIO(cropped(png(image), Crop(0.5, 0, 1, 1), DecodeLimits())))
    assert np.array_equal(np.asarray(right), np.asarray(image.crop((256, 0, 512, image.height))))
    assert Crop(0.98, 0.5, 1, 0.52).box(7, 3) == (6, 1, 7, 2)  # at least one whole pixel
    for wrong, message in (("0.5,0,0.4,1", "x0 < x1"), ("0,0,1", "four numbers"), ("a,b,c,d", "fractions"),
                           ("0,0,1,1.5", "<= 1"), ("0,0,0.01,1", "at least 0.02"), ("nan,0,1,1", "four numbers")):
        with pytest.raises(ValueError, match=message):
            Crop.of(wrong)


@pytest.mark.slow
def test_a_part_of_a_composite_mark_is_searched_alone_on_every_route(photos, tmp_path, capsys):
    store, _ = photos
    served = served_index(store, "photos", tmp_path)
    marks = tmp_path / "marks"
    marks.mkdir()
    (marks / "composite.png").write_bytes(png(composite()))
    data = (marks / "composite.png").read_bytes()
    upload = {"images": ("composite.png", data, "image/png")}
    left, right = [0, 0, 0.5, 1], [0.5, 0, 1, 1]

    def top(answer: dict) -> str:
        return answer["results"][0]["hits"][0]["image_id"]

    with running(create_app(served, ApiSettings(allow_uri_prefixes=(str(marks),)))) as url:
        def search(**form) -> httpx.Response:
            return httpx.post(f"{url}/search/images", files=upload, data={"k": "3", **form}, timeout=60)
        assert top(search(crop="0.5,0,1,1").json()) == "coffee.jpg"
        assert top(search(crop="0,0,0.5,1").json()) == "astronaut.jpg"
        by_uri = httpx.post(f"{url}/search/uris", json={"uris": [str(marks / "composite.png")], "crop": right},
                            timeout=60).json()
        assert top(by_uri) == "coffee.jpg" and by_uri["results"][0]["hits"][0]["inliers"] >= SETTINGS.min_inliers
        # The part is what is embedded: /embed of the crop is the vector of the part cut out beforehand.
        part = png(composite().crop(Crop(*right).box(*composite().size)))
        cut = httpx.post(f"{url}/embed", files=[("images", ("c.png", data))], data={"crop": "0.5,0,1,1"},
                         timeout=60).json()["vectors"][0]
        whole = httpx.post(f"{url}/embed", files=[("images", ("p.png", part))], timeout=60).json()["vectors"][0]
        np.testing.assert_allclose(cut, whole, atol=1e-6)
        explained = httpx.post(f"{url}/explain/images", files={"image": ("composite.png", data, "image/png")},
                               data={"image_id": "coffee.jpg", "crop": "0.5,0,1,1"}, timeout=60).json()
        beforehand = httpx.post(f"{url}/explain/images", files={"image": ("part.png", part, "image/png")},
                                data={"image_id": "coffee.jpg"}, timeout=60).json()
        assert explained["verified"] and explained["cosine"] == pytest.approx(beforehand["cosine"], abs=1e-6)
        refused = [search(crop="0.5,0,0.4,1"), search(crop="left half"),
                   httpx.post(f"{url}/search/uris", json={"uris": [str(marks / "composite.png")],
                                                           "crop": [0, 0, 2, 1]}, timeout=60),
                   httpx.post(f"{url}/search/ids", json={"image_ids": ["coffee.jpg"], "crop": right}, timeout=60)]
        assert [r.status_code for r in refused] == [400, 400, 422, 422]
        assert "x0 < x1" in refused[0].json()["detail"] and "four numbers" in refused[1].json()["detail"]

        # The Python API and the client: the same part, the same answer.
        with lookalike.Client(url) as client:
            assert client.search(data, k=1, crop=left)[0].image_id == "astronaut.jpg"
            assert client.explain("coffee.jpg", query=data, crop="0.5,0,1,1").verified
        index = lookalike.open_index(store.url, "photos", cache_dir=str(tmp_path / "cache-api"))
        assert index.search(data, k=1, crop=right)[0].image_id == "coffee.jpg"

    # Through the router: the shards verify the part (the form passed on) or embed it (/embed, unverified).
    with ExitStack() as stack:
        router = exported_router(stack, store, "photos", tmp_path)
        for verify in ("true", "false"):
            routed = httpx.post(f"{router}/search/images", files=upload,
                                data={"k": "3", "crop": "0,0,0.5,1", "verify": verify}, timeout=60).json()
            assert top(routed) == "astronaut.jpg", verify
        assert httpx.post(f"{router}/explain/images", files={"image": ("c.png", data, "image/png")},
                          data={"image_id": "coffee.jpg", "crop": "1,0,0.5,1"}, timeout=60).status_code == 400

    # The command line.
    base = ["search", "--store", store.url, "--index", "photos", "--k", "1", str(marks / "composite.png")]
    assert main([*base, "--crop", "0.5,0,1,1"]) == 0
    assert "coffee.jpg" in capsys.readouterr().out.splitlines()[2]
    assert main([*base, "--crop", "1,0,0.5,1"]) == 2 and "x0 < x1" in capsys.readouterr().err
    assert main(["search", "--store", store.url, "--index", "photos", "--id", "coffee.jpg", "--crop",
                 "0,0,0.5,1"]) == 2
    assert "give IMAGE paths" in capsys.readouterr().err


@pytest.mark.slow
def test_the_page_searches_the_part_of_the_query_in_a_box_dragged_on_it(photos, chromium, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    store, _ = photos
    served = served_index(store, "photos", tmp_path)
    query = tmp_path / "composite.png"
    query.write_bytes(png(composite()))

    def status() -> str:
        return chromium.find_element(By.ID, "status").text

    def hits() -> list[str]:
        return [e.get_attribute("data-image-id") for e in chromium.find_elements(By.CSS_SELECTOR, "#results .hit")]

    with running(create_app(served)) as worker:
        chromium.get(worker + "/")
        WebDriverWait(chromium, 20).until(lambda d: "photos" in d.find_element(By.ID, "index-info").text)
        chromium.find_element(By.ID, "image-file").send_keys(str(query))
        WebDriverWait(chromium, 60).until(lambda d: "results from" in status())
        assert not chromium.find_element(By.ID, "crop-row").is_displayed()
        whole = hits()[0]
        # A box over the right half of the preview (offsets from the preview's centre): the coffee alone.
        preview = chromium.find_element(By.ID, "query-preview")
        w, h = preview.size["width"], preview.size["height"]
        ActionChains(chromium).move_to_element_with_offset(preview, int(w * 0.04), int(-h * 0.45)).click_and_hold() \
            .move_by_offset(int(w * 0.44), int(h * 0.9)).release().perform()
        WebDriverWait(chromium, 60).until(lambda d: "for the part of the image in the box" in status())
        assert hits()[0] == "coffee.jpg" != whole and chromium.find_element(By.ID, "crop-box").is_displayed()
        x0, y0, x1, y1 = map(float, chromium.find_element(By.ID, "crop-text").text.split(", "))
        assert 0.5 < x0 < 0.6 and y0 < 0.1 and x1 > 0.9 and y1 > 0.9
        # "why?" compares the part that was searched: a verified match of the coffee.
        chromium.find_element(By.CSS_SELECTOR, '#results .hit[data-image-id="coffee.jpg"] button.why').click()
        WebDriverWait(chromium, 60).until(lambda d: "compared with coffee.jpg" in status())
        assert "inliers" in chromium.find_element(By.ID, "compare-parts").text
        assert "too few" not in chromium.find_element(By.ID, "compare-parts").text
        chromium.find_element(By.ID, "crop-clear").click()  # the whole image again
        WebDriverWait(chromium, 60).until(lambda d: "results from" in status() and "part" not in status())
        assert hits()[0] == whole
        assert not chromium.find_element(By.ID, "crop-row").is_displayed()
        assert not chromium.find_element(By.ID, "crop-box").is_displayed()


def rocchio(positives: list, negatives: list, weight: float = 0.75) -> np.ndarray:
    """The query of examples, written out: the positives' mean direction minus weight × the negatives'."""
    def mean_direction(rows: list) -> np.ndarray:
        rows = np.asarray(rows, dtype=np.float64)
        return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).mean(axis=0)
    query = mean_direction(positives) - (weight * mean_direction(negatives) if negatives else 0)
    return query / np.linalg.norm(query)


@pytest.mark.slow
def test_more_like_these_not_like_those_is_one_query_on_every_route(photos, tmp_path, capsys):
    store, _ = photos
    served = served_index(store, "photos", tmp_path)
    index = lookalike.open_index(store.url, "photos", cache_dir=str(tmp_path / "cache-api"))
    flipped = flipped_astronaut()
    upload = ("images", ("flipped.png", flipped, "image/png"))
    mixed = {"image_ids": ["coffee.jpg"], "negative_ids": ["chelsea.jpg"], "verify": "false", "k": "10"}

    def ranked(answer: dict) -> list[tuple[str, float]]:
        [result] = answer["results"]
        return [(h["image_id"], h["score"]) for h in result["hits"]]

    def same(a: list[tuple[str, float]], b: list[tuple[str, float]], atol: float) -> bool:
        return [i for i, _ in a] == [i for i, _ in b] and np.allclose([s for _, s in a], [s for _, s in b], atol=atol)

    with running(create_app(served)) as url:
        def examples(files: list, **form) -> httpx.Response:
            return httpx.post(f"{url}/search/examples", files=files or None, data=form, timeout=60)
        answer = examples([upload], **mixed).json()
        embedded = httpx.post(f"{url}/embed", files=[upload], timeout=60).json()["vectors"][0]
        by_id = httpx.post(f"{url}/search/ids", json={"image_ids": ["astronaut.jpg"], "k": 5}, timeout=60).json()
        one_example = examples([], image_ids=["astronaut.jpg"], k="5").json()
        verified = examples([upload], negative_ids=["chelsea.jpg"], k="3").json()
        refused = [examples([], negative_ids=["chelsea.jpg"]), examples([], image_ids=["chelsea"]),
                   examples([], image_ids=["coffee.jpg"], negative_weight="2"),
                   examples([], image_ids=["coffee.jpg"], negative_ids=["coffee.jpg"], negative_weight="1")]

    # The one query: the upload and the catalogue example averaged, the negative taken away; every other catalogue
    # image ranked by its cosine to that query, the examples themselves never among the hits.
    assert answer["results"][0]["query"] == "examples"
    query = rocchio([embedded, index.vectors_of(["coffee.jpg"])[0]], [index.vectors_of(["chelsea.jpg"])[0]])
    everyone = [f"{name}.jpg" for name in PHOTOS if name not in ("coffee", "chelsea")]
    expected = sorted(((i, float(index.vectors_of([i])[0] @ query)) for i in everyone), key=lambda p: -p[1])
    assert same(ranked(answer), expected, atol=2e-3)
    # One catalogue example is a search by that id; an uploaded one is verified against as usual.
    assert same(ranked(one_example), ranked(by_id), atol=1e-5)
    top = verified["results"][0]["hits"][0]
    assert top["image_id"] == "astronaut.jpg" and top["inliers"] >= SETTINGS.min_inliers
    assert [r.status_code for r in refused] == [400, 404, 422, 400]
    assert "at least one image to find more of" in refused[0].json()["detail"]
    assert "cancel out" in refused[3].json()["detail"]

    # The router combines the examples' vectors from the shards, the Python API and the client as the worker.
    with ExitStack() as stack:
        router = exported_router(stack, store, "photos", tmp_path)
        routed = httpx.post(f"{router}/search/examples", files=[upload], data=mixed, timeout=60).json()
        missing = httpx.post(f"{router}/search/examples", data={"image_ids": ["nowhere.jpg"]}, timeout=60)
    assert same(ranked(routed), ranked(answer), atol=1e-4) and missing.status_code == 404
    # Each shard places its hits among its own catalogue's nearest-neighbour cosines.
    assert all(0 <= h["percentile"] <= 100 for h in routed["results"][0]["hits"])
    api = index.search_examples([flipped], ["coffee.jpg"], negative_ids=["chelsea.jpg"], verify=False, k=10)
    assert same([(h.image_id, h.score) for h in api], ranked(answer), atol=1e-4)
    assert [h.percentile for h in api] == [h["percentile"] for h in answer["results"][0]["hits"]]
    with running(create_app(served)) as url, lookalike.Client(url) as client:
        hits = client.search_examples([flipped], ["coffee.jpg"], negative_ids=["chelsea.jpg"], verify=False, k=10)
    assert same([(h.image_id, h.score) for h in hits], ranked(answer), atol=1e-5)

    # The command line: IMAGE and --id as examples, --negative-id against.
    (tmp_path / "flipped.png").write_bytes(flipped)
    assert main(["search", "--store", store.url, "--index", "photos", "--k", "10", "--examples", "--id", "coffee.jpg",
                 str(tmp_path / "flipped.png"), "--negative-id", "chelsea.jpg", "--no-verify", "--json"]) == 0
    [result] = json.loads(capsys.readouterr().out)["results"]
    assert result["query"] == "examples" and [h["image_id"] for h in result["hits"]] == [i for i, _ in expected]
    assert main(["search", "--store", store.url, "--index", "photos", "--examples", "--text", "cat"]) == 2


@pytest.mark.slow
def test_the_page_refines_a_search_with_more_like_this_and_less_like_this(photos, chromium, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    store, _ = photos
    served, query = served_index(store, "photos", tmp_path), tmp_path / "flipped.png"
    query.write_bytes(flipped_astronaut())

    def shown() -> list[str]:
        return [c.get_attribute("data-image-id") for c in chromium.find_elements(By.CSS_SELECTOR, "#results .hit")]

    def click(image_id: str, action: str, expect: str) -> None:
        card = chromium.find_element(By.CSS_SELECTOR, f'#results .hit[data-image-id="{image_id}"]')
        card.find_element(By.CSS_SELECTOR, f"button.{action}").click()
        WebDriverWait(chromium, 60).until(lambda d: expect in d.find_element(By.ID, "status").text)

    with running(create_app(served)) as worker:
        chromium.get(worker + "/")
        WebDriverWait(chromium, 20).until(lambda d: "photos" in d.find_element(By.ID, "index-info").text)
        chromium.find_element(By.ID, "image-file").send_keys(str(query))
        WebDriverWait(chromium, 60).until(lambda d: "results from" in d.find_element(By.ID, "status").text)
        plain = shown()
        assert not chromium.find_element(By.ID, "examples").is_displayed()
        assert "percentile 100" in chromium.find_element(By.CSS_SELECTOR, "#results .hit .parts").text
        unwanted, wanted = plain[1], plain[2]
        click(unwanted, "less", "unlike 1")
        assert unwanted not in shown()
        click(wanted, "more", "and 1 more example(s), unlike 1")
        chips = chromium.find_elements(By.CSS_SELECTOR, "#example-list .example")
        assert [c.text.rstrip("×").strip() for c in chips] == [f"more like {wanted}", f"less like {unwanted}"]
        chromium.save_screenshot(str(tmp_path / "examples-page.png"))
        # What the page shows is the worker's answer to the query, the example and the counter-example together.
        answer = httpx.post(f"{worker}/search/examples", files={"images": ("flipped.png", query.read_bytes())},
                            data={"image_ids": [wanted], "negative_ids": [unwanted], "k": "12"}, timeout=60).json()
        assert shown() == [h["image_id"] for h in answer["results"][0]["hits"]]
        assert wanted not in shown() and unwanted not in shown()
        # An example taken back (its ×), then all of them (Start over): the query alone again.
        chips[1].find_element(By.CSS_SELECTOR, "button").click()
        WebDriverWait(chromium, 60).until(
            lambda d: "and 1 more example(s), unlike 0" in d.find_element(By.ID, "status").text)
        chromium.find_element(By.ID, "examples-clear").click()
        WebDriverWait(chromium, 60).until(lambda d: "results from" in d.find_element(By.ID, "status").text
                                          and "more" not in d.find_element(By.ID, "status").text)
        assert shown() == plain and not chromium.find_element(By.ID, "examples").is_displayed()


def mark_with_words(mode: str = "RGB") -> tuple[Image.Image, tuple, tuple]:
    """A composite mark: a red star beside the word ACME (and a speck, which is no part), on white or on
    transparency; with the star's and the word's boxes in pixels."""
    image = Image.new(mode, (600, 240), (255, 255, 255, 0) if mode == "RGBA" else "white")
    draw = ImageDraw.Draw(image)
    points = [(110 + (90 if i % 2 == 0 else 40) * math.cos(math.pi / 2 + i * math.pi / 5),
               120 - (90 if i % 2 == 0 else 40) * math.sin(math.pi / 2 + i * math.pi / 5)) for i in range(10)]
    draw.polygon(points, fill=(200, 30, 40, 255))
    font = ImageFont.load_default(size=64)
    draw.text((240, 85), "ACME", font=font, fill=(20, 20, 20, 255))
    draw.ellipse([560, 20, 563, 23], fill=(20, 20, 20, 255))
    star = (min(x for x, _ in points), min(y for _, y in points), max(x for x, _ in points), max(y for _, y in points))
    return image, star, draw.textbbox((240, 85), "ACME", font=font)


def test_a_composite_marks_parts_are_its_device_and_its_lettering():
    def inside(box: tuple, part: lookalike.Part, size: tuple) -> bool:
        x0, y0, x1, y1 = part.crop
        return x0 * size[0] <= box[0] and y0 * size[1] <= box[1] and x1 * size[0] >= box[2] and y1 * size[1] >= box[3]

    for mode in ("RGB", "RGBA"):
        image, star, word = mark_with_words(mode)
        parts = lookalike.propose_parts(image)
        assert [p.kind for p in parts] == ["figure", "text"], mode  # largest first; the speck is none
        assert inside(star, parts[0], image.size) and inside(word, parts[1], image.size), (mode, parts)
        assert all(Crop.of(p.crop) for p in parts)  # each is a crop a search takes
    # One part is nothing to split; nothing on the background neither.
    star_alone = Image.new("RGB", (300, 240), "white")
    ImageDraw.Draw(star_alone).regular_polygon((150, 120, 90), 5, fill="red")
    assert lookalike.propose_parts(star_alone) == [] and lookalike.propose_parts(Image.new("RGB", (64, 64))) == []
    with pytest.raises(lookalike.InputError):
        lookalike.propose_parts(b"not an image")


@pytest.mark.slow
def test_the_parts_of_a_mark_are_proposed_and_searched_on_every_route(photos, tmp_path, capsys):
    store, _ = photos
    served = served_index(store, "photos", tmp_path)
    data = png(composite())
    (tmp_path / "composite.png").write_bytes(data)
    expected = [p.as_dict() for p in lookalike.propose_parts(data)]
    assert [p["kind"] for p in expected] == ["figure", "figure"]

    def proposed(url: str, image: bytes = data) -> httpx.Response:
        return httpx.post(f"{url}/parts", files={"image": ("composite.png", image, "image/png")}, timeout=60)

    with running(create_app(served)) as url:
        answer = proposed(url).json()
        tops = [httpx.post(f"{url}/search/images", files={"images": ("composite.png", data, "image/png")},
                           data={"k": "1", "crop": ",".join(map(str, p["crop"]))}, timeout=60).json()
                for p in answer["parts"]]
        refused = proposed(url, b"not an image")
        with lookalike.Client(url) as client:
            assert [p.as_dict() for p in client.parts(data)] == expected
    assert answer == {"image": "composite.png", "parts": expected}
    # Each part searched alone finds its own photo: the devices of the mark, apart.
    found = {t["results"][0]["hits"][0]["image_id"]: p for t, p in zip(tops, answer["parts"], strict=True)}
    assert set(found) == {"astronaut.jpg", "coffee.jpg"}
    assert found["astronaut.jpg"]["crop"][2] <= 0.5 <= found["coffee.jpg"]["crop"][0]
    assert refused.status_code == 400
    with ExitStack() as stack:
        router = exported_router(stack, store, "photos", tmp_path)
        assert proposed(router).json() == answer
    assert main(["parts", str(tmp_path / "composite.png")]) == 0
    said = capsys.readouterr().out
    assert said.count("figure") == 2 and f"--crop {','.join(f'{v:g}' for v in expected[0]['crop'])}" in said


@pytest.mark.slow
def test_the_page_offers_the_parts_of_the_query_and_searches_one_in_a_click(photos, chromium, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    store, _ = photos
    served, query = served_index(store, "photos", tmp_path), tmp_path / "composite.png"
    query.write_bytes(png(composite()))
    with running(create_app(served)) as worker:
        chromium.get(worker + "/")
        WebDriverWait(chromium, 20).until(lambda d: "photos" in d.find_element(By.ID, "index-info").text)
        chromium.find_element(By.ID, "image-file").send_keys(str(query))
        WebDriverWait(chromium, 60).until(lambda d: d.find_element(By.ID, "parts-row").is_displayed())
        buttons = chromium.find_elements(By.CSS_SELECTOR, "#part-list button")
        assert [b.text.split(" (")[0] for b in buttons] == ["figure 1", "figure 2"]
        for button in buttons:
            button.click()
            WebDriverWait(chromium, 60).until(
                lambda d: "for the part of the image in the box" in d.find_element(By.ID, "status").text)
            assert chromium.find_element(By.ID, "crop-text").text.replace(" ", "") == ",".join(
                f"{float(v):.2f}" for v in button.get_attribute("data-crop").split(","))
            assert chromium.find_element(By.ID, "crop-box").is_displayed()
        # The last part clicked is the coffee's (the right one): its search ranks the coffee first.
        first = chromium.find_element(By.CSS_SELECTOR, "#results .hit").get_attribute("data-image-id")
        assert first == ("coffee.jpg" if float(buttons[-1].get_attribute("data-crop").split(",")[0]) >= 0.5
                         else "astronaut.jpg")
        chromium.save_screenshot(str(tmp_path / "parts-page.png"))
