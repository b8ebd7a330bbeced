"""The query worker as users run it: `lookalike serve` in its own process over a store on the S3 server,
real images and the bundled model; queried over HTTP while new versions (good, damaged, of another model)
are published; the page driven in headless Chromium."""

import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from support.cli import store_option_args

from lookalike.cli.main import main
from lookalike.core.spark import IN_PROCESS
from lookalike.core.store import Store
from lookalike.dev import imagefactory
from lookalike.dev.net import free_port
from lookalike.embed import job as embed
from lookalike.embed.config import EmbedConfig
from lookalike.embed.provenance import ModelMismatch
from lookalike.index import build as index_build
from lookalike.index import publish
from lookalike.index.build import BuildIndexConfig
from lookalike.index.reader import version_dir
from lookalike.model.spec import ModelSpec
from lookalike.retrieval.embedder import QueryEmbedder
from lookalike.serve.worker import ServedIndex, WorkerSettings

TOKEN = "test-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
NAME = "marks"
V1_PHOTOS = ("coffee", "chelsea", "astronaut", "rocket", "coins", "colorwheel", "horse", "camera")
NEWCOMER = "logo"  # only in version 2


def write_catalogue(root: Path, photos: tuple[str, ...]) -> Path:
    """JPEG files plus an images table with a `class` metadata column (Nice classes, as strings)."""
    rows = ["image_id,uri,class"]
    for i, name in enumerate(photos):
        path = root / "images" / f"{name}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(imagefactory.jpeg_bytes(imagefactory.photo(name)))
        rows.append(f"{name},{path},{'25' if i % 2 else '9'}")
    table = root / f"catalogue-{len(photos)}.csv"
    table.write_text("\n".join(rows) + "\n")
    return table


def publish_version(store: Store, table: Path, model: ModelSpec | None = None) -> dict:
    m = embed.run(EmbedConfig(images=str(table), store=store.url, storage_options=store.options,
                              model=model or ModelSpec(),
                              master=IN_PROCESS, images_per_task=50))
    return index_build.run(BuildIndexConfig(store=store.url, storage_options=store.options, name=NAME,
                                            embeddings=f"{m['fingerprint_id']}/{m['run_id']}", master=IN_PROCESS,
                                            publish=True, queries=4))


@dataclass
class Worker:
    url: str
    proc: subprocess.Popen
    log: Path
    store: Store
    root: Path
    cache_dir: Path
    bucket_dir: Path  # the S3 server's folder behind the store's bucket

    def get(self, path: str, **kw) -> httpx.Response:
        return httpx.get(self.url + path, headers=kw.pop("headers", AUTH), timeout=30, **kw)

    def post(self, path: str, **kw) -> httpx.Response:
        return httpx.post(self.url + path, headers=kw.pop("headers", AUTH), timeout=30, **kw)

    def health(self) -> dict:
        return self.get("/healthz", headers={}).json()

    def wait_for(self, condition, what: str, timeout: float = 60.0) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            health = self.health()
            if condition(health):
                return health
            time.sleep(0.2)
        raise AssertionError(f"worker never {what}; last health {self.health()}\n{self.log.read_text()[-3000:]}")

    def image_search(self, name: str, k: int = 3, **data) -> httpx.Response:
        jpeg = (self.root / "images" / f"{name}.jpg").read_bytes()
        return self.post("/search/images", files={"images": (f"{name}.jpg", jpeg, "image/jpeg")},
                         data={"k": str(k), **data})


@pytest.fixture(scope="module")
def worker(s3_server, model, tmp_path_factory):
    root = tmp_path_factory.mktemp("serve")
    bucket = s3_server.new_bucket()
    store = Store(f"s3://{bucket}/store", s3_server.options)
    publish_version(store, write_catalogue(root, V1_PHOTOS))
    write_catalogue(root, V1_PHOTOS + (NEWCOMER,))
    port, log, cache_dir = free_port(), root / "worker.log", root / "cache"
    proc = subprocess.Popen(
        [sys.executable, "-m", "lookalike.cli.main", "serve", "--store", store.url, *store_option_args(store.options),
         "--index", NAME, "--port", str(port), "--cache-dir", str(cache_dir), "--poll-interval", "0.3",
         "--retry-after", "1", "--max-body-bytes", "1000000", "--allow-uri", str(root / "images")],
        env={**os.environ, "LOOKALIKE_API_TOKEN": TOKEN}, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    w = Worker(f"http://127.0.0.1:{port}", proc, log, store, root, cache_dir, s3_server.root / bucket)
    try:
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"worker exited with {proc.returncode}:\n{log.read_text()}")
            try:
                if w.health()["version"]:
                    break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
            time.sleep(0.3)
        yield w
    finally:
        proc.terminate()
        proc.wait(30)


@pytest.mark.slow
def test_search_by_image_id_vector_and_uri(worker, model):
    answer = worker.image_search("coffee", k=3).json()
    hits = answer["results"][0]["hits"]
    assert answer["version"] == worker.health()["version"] and answer["results"][0]["query"] == "coffee.jpg"
    assert [h["rank"] for h in hits] == [1, 2, 3] and hits[0]["image_id"] == "coffee"
    assert hits[0]["cosine"] == pytest.approx(1.0, abs=1e-3) and hits[0]["score"] > hits[1]["score"]
    assert hits[0]["uri"].endswith("images/coffee.jpg") and hits[0]["metadata"]["class"] == "9"

    by_id = worker.post("/search/ids", json={"image_ids": ["coffee", "horse"], "k": 7}).json()["results"]
    assert [r["query"] for r in by_id] == ["coffee", "horse"]
    assert len(by_id[0]["hits"]) == 7 and "coffee" not in [h["image_id"] for h in by_id[0]["hits"]]
    with_self = worker.post("/search/ids", json={"image_ids": ["coffee"], "k": 2, "include_self": True}).json()
    assert with_self["results"][0]["hits"][0]["image_id"] == "coffee"

    filtered = worker.post("/search/ids", json={"image_ids": ["coffee"], "k": 8, "filters": {"class": "25"}}).json()
    assert {h["metadata"]["class"] for h in filtered["results"][0]["hits"]} == {"25"}
    assert len(filtered["results"][0]["hits"]) == 4  # the four class-25 photos

    # The query image embedded here and sent by value: the worker's own answer for the upload.
    vector = QueryEmbedder(model).embed([(worker.root / "images" / "coffee.jpg").read_bytes()])
    by_vector = worker.post("/search/vectors", json={"vectors": vector.tolist(), "k": 3}).json()
    assert [(h["image_id"], pytest.approx(h["cosine"], abs=1e-5)) for h in by_vector["results"][0]["hits"]] == \
        [(h["image_id"], h["cosine"]) for h in hits]
    uri = str(worker.root / "images" / "rocket.jpg")
    by_uri = worker.post("/search/uris", json={"uris": [uri], "k": 1}).json()
    assert by_uri["results"][0]["hits"][0]["image_id"] == "rocket"


@pytest.mark.slow
def test_cli_search_gives_the_worker_s_answer(worker, capsys):
    over_http = worker.image_search("astronaut", k=4).json()
    image = str(worker.root / "images" / "astronaut.jpg")
    assert main(["search", "--store", worker.store.url, *store_option_args(worker.store.options), "--index", NAME,
                 "--cache-dir", str(worker.root / "cli-cache"), image, "--k", "4", "--json"]) == 0
    local = json.loads(capsys.readouterr().out)
    assert local["version"] == over_http["version"]
    pairs = zip(local["results"][0]["hits"], over_http["results"][0]["hits"], strict=True)
    assert all(a["image_id"] == b["image_id"] and a["score"] == pytest.approx(b["score"], abs=1e-5) for a, b in pairs)


def test_health_metrics_and_openapi(worker):
    health = worker.health()
    assert health["status"] == "ok" and health["name"] == NAME and health["ntotal"] == len(V1_PHOTOS)
    worker.image_search("coins")
    metrics = worker.get("/metrics").text
    assert f'lookalike_index_info{{fingerprint_id="{health["fingerprint_id"]}",name="{NAME}",' in metrics
    assert 'lookalike_requests_total{endpoint="/search/images",status="200"}' in metrics
    assert "lookalike_request_duration_seconds_bucket" in metrics and 'lookalike_queries_total{kind="image"}' in metrics
    paths = worker.get("/openapi.json").json()["paths"]
    assert {"/search/images", "/search/ids", "/search/vectors", "/search/uris", "/healthz"} <= set(paths)


def test_bad_requests_get_4xx_with_a_reason(worker):
    assert worker.post("/search/ids", json={"image_ids": ["coffee"]}, headers={}).status_code == 401
    wrong = worker.post("/search/ids", json={"image_ids": ["coffee"]}, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and wrong.headers["www-authenticate"] == "Bearer"

    def upload(data: bytes, **form):
        return worker.post("/search/images", files={"images": ("q.bin", data, "application/octet-stream")},
                           data=form)
    r = upload(b"%PDF-1.4 not an image at all")
    assert r.status_code == 400 and r.json()["error_kind"] == "not_an_image"
    r = upload(imagefactory.png_header_only(30_000, 30_000))
    assert r.status_code == 413 and r.json()["error_kind"] == "too_many_pixels"
    r = upload(os.urandom(1_200_000))
    assert r.status_code == 413 and "limit of 1,000,000 bytes" in r.json()["detail"]
    r = upload((worker.root / "images" / "coffee.jpg").read_bytes(), filters="{not json")
    assert r.status_code == 400 and "JSON object" in r.json()["detail"]

    r = worker.post("/search/ids", json={"image_ids": ["coffee", "no-such-image"]})
    assert r.status_code == 404 and "'no-such-image'" in r.json()["detail"]
    r = worker.post("/search/vectors", json={"vectors": [[0.1, 0.2, 0.3]]})
    assert r.status_code == 400 and "length 1280" in r.json()["detail"]
    r = worker.post("/search/vectors", json={"vectors": [[1.0] * 1280] * 65})
    assert r.status_code == 400 and "limit is 64" in r.json()["detail"]
    r = worker.post("/search/ids", json={"image_ids": ["coffee"], "filters": {"colour": "red"}})
    assert r.status_code == 400 and "cannot filter on 'colour'" in r.json()["detail"]
    assert worker.post("/search/ids", json={"image_ids": ["coffee"], "k": 0}).status_code == 422
    r = worker.post("/search/uris", json={"uris": ["/etc/passwd"]})
    assert r.status_code == 403 and "--allow-uri" in r.json()["detail"]
    assert worker.get("/images/no-such-image/thumbnail").status_code == 404
    assert worker.health()["status"] == "ok"  # none of it hurt the worker


@pytest.mark.slow
def test_page_in_headless_chromium(worker, chromium, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver = chromium
    driver.get(worker.url + "/")
    driver.execute_script("localStorage.setItem('lookalike-token', arguments[0])", TOKEN)
    driver.get(worker.url + "/")
    WebDriverWait(driver, 20).until(lambda d: NAME in d.find_element(By.ID, "index-info").text)
    k = driver.find_element(By.ID, "k")
    k.clear()
    k.send_keys("5")
    driver.find_element(By.ID, "image-file").send_keys(str(worker.root / "images" / "chelsea.jpg"))
    WebDriverWait(driver, 30).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#results .hit")) == 5)
    ids = [e.text for e in driver.find_elements(By.CSS_SELECTOR, "#results .hit .image-id")]
    assert ids[0] == "chelsea" and len(set(ids)) == 5
    # Every thumbnail arrives through the authorised fetch and decodes.
    WebDriverWait(driver, 30).until(lambda d: all(
        img.get_property("naturalWidth") > 0 for img in d.find_elements(By.CSS_SELECTOR, "#results .hit img")))
    assert "5 results from" in driver.find_element(By.ID, "status").text
    # The default model has no ImageNet classifier to weight by, nor words: neither box is offered (the
    # page with a class box: tests/test_class_weighting.py). A catalogue id searches like its image.
    assert not driver.find_element(By.ID, "class-row").is_displayed()
    assert not driver.find_element(By.ID, "text-row").is_displayed()
    driver.find_element(By.ID, "image-id").send_keys("coffee")
    driver.find_element(By.ID, "search-id").click()
    shown = "return [...document.querySelectorAll('#results .hit .image-id')].map(e => e.textContent)"
    WebDriverWait(driver, 30).until(lambda d: d.execute_script(shown)[:1] not in ([], ids[:1]))  # read at once
    hits = driver.execute_script(shown)
    assert len(set(hits)) == 5 and "coffee" not in hits  # like the catalogue's coffee photo, itself left out
    shot = Path(os.environ.get("LOOKALIKE_ARTIFACTS", tmp_path)) / "search-page.png"
    shot.parent.mkdir(parents=True, exist_ok=True)
    assert driver.save_screenshot(str(shot)) and shot.stat().st_size > 10_000


@pytest.mark.slow
def test_new_version_is_swapped_in_under_load_without_a_failed_request(worker):
    before = worker.health()["version"]
    answers: list[tuple[int, str | None, str | None]] = []
    stop = threading.Event()

    def client():
        while not stop.is_set():
            r = worker.image_search(NEWCOMER, k=1)
            body = r.json() if r.status_code == 200 else {}
            top = body["results"][0]["hits"][0]["image_id"] if body else None
            answers.append((r.status_code, body.get("version"), top))

    clients = [threading.Thread(target=client) for _ in range(2)]
    for c in clients:
        c.start()
    try:
        v2 = publish_version(worker.store, worker.root / f"catalogue-{len(V1_PHOTOS) + 1}.csv")["version"]
        worker.wait_for(lambda h: h["version"] == v2, f"swapped to {v2}")
        time.sleep(1.0)
    finally:
        stop.set()
        for c in clients:
            c.join(30)
    assert {status for status, _, _ in answers} == {200}, answers
    versions = [v for _, v, _ in answers]
    assert versions[0] == before and versions[-1] == v2 and set(versions) == {before, v2}
    assert all(top == NEWCOMER for _, v, top in answers if v == v2)
    assert all(top != NEWCOMER for _, v, top in answers if v == before)
    assert worker.health()["swaps"] >= 1


def test_damaged_version_is_refused_while_the_served_one_stays(worker):
    served = worker.health()["version"]
    damaged = index_build.run(BuildIndexConfig(store=worker.store.url, storage_options=worker.store.options,
                                               name=NAME, embeddings=worker.health()["fingerprint_id"],
                                               master=IN_PROCESS, queries=4))["version"]
    # Damage the object behind the S3 server, then point LATEST at it.
    target = worker.bucket_dir / "store" / "indexes" / NAME / damaged / "ids.parquet"
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0xFF
    target.write_bytes(bytes(data))
    publish.set_latest(worker.store, NAME, damaged)
    try:
        health = worker.wait_for(lambda h: (h["last_error"] or {}).get("version") == damaged, "refused it")
        assert health["version"] == served and "ids.parquet is damaged" in health["last_error"]["error"]
        assert worker.image_search("coffee").json()["version"] == served
    finally:
        publish.set_latest(worker.store, NAME, served)


@pytest.mark.slow
def test_rollback_reuses_the_cache_and_replaces_a_damaged_cached_file(worker):
    if worker.health()["swaps"] == 0:  # run without the swap test: a successor makes the first version a predecessor
        newer = publish_version(worker.store, worker.root / f"catalogue-{len(V1_PHOTOS) + 1}.csv")["version"]
        worker.wait_for(lambda h: h["version"] == newer, f"swapped to {newer}")
    served = worker.health()["version"]
    oldest = min(v["version"] for v in publish.list_versions(worker.store, NAME) if v["complete"])
    cached = Path(version_dir(str(worker.cache_dir), {"name": NAME, "version": oldest}))
    if oldest == served or not cached.exists():
        pytest.fail(f"expected the worker to keep its predecessor {oldest} cached beside {served}")
    with open(cached / "vectors.f16.npy", "r+b") as f:
        f.seek(200)
        f.write(b"\xff" * 64)
    publish.set_latest(worker.store, NAME, oldest)
    try:
        worker.wait_for(lambda h: h["version"] == oldest, f"rolled back to {oldest}")
        log = worker.log.read_text()
        assert "vectors.f16.npy is damaged" in log and "downloading it again" in log
        assert worker.image_search("coffee").json()["results"][0]["hits"][0]["cosine"] == pytest.approx(1.0, abs=1e-3)
    finally:
        publish.set_latest(worker.store, NAME, served)
        worker.wait_for(lambda h: h["version"] == served, f"served {served} again")


def test_a_version_of_another_model_is_refused(worker, tmp_path):
    served = worker.health()["version"]
    with pytest.raises(ModelMismatch, match="the query model of this worker makes efficientnet_lite0_marks-"):
        ServedIndex(worker.store, WorkerSettings(NAME, str(tmp_path), model=ModelSpec(pooling="avg"))).start(False)
    other = publish_version(worker.store, worker.root / f"catalogue-{len(V1_PHOTOS)}.csv", ModelSpec(pooling="avg"))
    try:
        health = worker.wait_for(lambda h: (h["last_error"] or {}).get("version") == other["version"], "refused it")
        assert health["version"] == served and "holds vectors of model" in health["last_error"]["error"]
    finally:
        publish.set_latest(worker.store, NAME, served)
