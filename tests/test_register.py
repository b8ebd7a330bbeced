"""The register's own fields in a search: a catalogue table with list (Vienna codes, Nice classes), date (filing)
and text (owner, status) columns, filtered by any-of, all-of, prefix, ranges and negation through the worker, the
router, the command line, the Python API and the page; the columns a worker shows (--show-columns); the hits
exported as CSV and JSON; and a link that opens a search by id."""

import csv
import datetime
import io
import json
from contextlib import ExitStack

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import schemathesis
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import status_code_conformance
from support.contract import fuzz
from support.serving import exported_router, served_index

import lookalike
from lookalike.cli.main import main
from lookalike.core.spark import IN_PROCESS
from lookalike.core.store import Store
from lookalike.dev.imagefactory import PHOTOS, jpeg_bytes, photo
from lookalike.embed import job as embed
from lookalike.embed.config import EmbedConfig
from lookalike.index import build as index_build
from lookalike.index.build import BuildIndexConfig
from lookalike.serve.http_api import create_app, running
from lookalike.serve.worker import ServeError

# One row per photo: who owns the mark, its Vienna codes and Nice classes (lists), when it was filed, its status.
REGISTER = {
    "coffee": ("Acme", ["03.01.01", "26.04.02"], [25, 9], datetime.date(2018, 3, 1), "registered"),
    "chelsea": ("Globex", ["03.01.16"], [35], datetime.date(2019, 6, 1), "registered"),
    "astronaut": ("Acme", ["02.01.01"], [9, 42], datetime.date(2020, 1, 15), "expired"),
    "rocket": ("Initech", ["18.05.01", "26.04.02"], [12], datetime.date(2020, 7, 1), "registered"),
    "hubble_deep_field": ("Globex", ["01.01.01"], [9], datetime.date(2021, 2, 1), "pending"),
    "immunohistochemistry": ("Umbrella", ["26.04.02"], [5, 10], datetime.date(2021, 9, 1), "registered"),
    "coins": ("Acme", ["03.01.01", "01.01.01"], [36], datetime.date(2022, 1, 1), "expired"),
    "colorwheel": ("Initech", ["29.01.13"], [2], datetime.date(2022, 5, 1), "registered"),
}
COLUMNS = ("owner", "vienna", "nice", "filed", "status")


def matching(condition) -> set[str]:
    """The ids of the register's rows for which `condition(row)` holds (row: column → value)."""
    return {f"{name}.jpg" for name, values in REGISTER.items() if condition(dict(zip(COLUMNS, values, strict=True)))}


@pytest.fixture(scope="module")
def register(tmp_path_factory):
    """A published index of the photos embedded from a catalogue table with the register's columns."""
    tmp = tmp_path_factory.mktemp("register")
    (tmp / "images").mkdir()
    rows = {"image_id": [], "uri": [], **{c: [] for c in COLUMNS}}
    for name in PHOTOS:
        path = tmp / "images" / f"{name}.jpg"
        path.write_bytes(jpeg_bytes(photo(name, 256)))
        rows["image_id"].append(f"{name}.jpg")
        rows["uri"].append(str(path))
        for column, value in zip(COLUMNS, REGISTER[name], strict=True):
            rows[column].append(value)
    pq.write_table(pa.table(rows), tmp / "register.parquet")
    store = Store(str(tmp / "store"))
    embed.run(EmbedConfig(images=str(tmp / "register.parquet"), store=store.url, master=IN_PROCESS,
                          images_per_task=4))
    index_build.run(BuildIndexConfig(store=store.url, name="marks", master=IN_PROCESS, publish=True, queries=4))
    return store


# Each filter as the command line and the page write it, the object the API takes, and the rows it keeps.
FILTERS = [
    (["vienna^=03.01"], {"vienna": {"prefix": "03.01"}}, matching(lambda r: any(v.startswith("03.01")
                                                                                for v in r["vienna"]))),
    (["vienna&=03.01.01,26.04.02"], {"vienna": {"all": ["03.01.01", "26.04.02"]}},
     matching(lambda r: {"03.01.01", "26.04.02"} <= set(r["vienna"]))),
    (["nice=9,12"], {"nice": [9, 12]}, matching(lambda r: bool({9, 12} & set(r["nice"])))),
    (["filed>=2020-01-01", "filed<2021-06-01"], {"filed": {"gte": "2020-01-01", "lt": "2021-06-01"}},
     matching(lambda r: datetime.date(2020, 1, 1) <= r["filed"] < datetime.date(2021, 6, 1))),
    (["status!=expired,pending", "owner=Acme,Globex"], {"status": {"not": ["expired", "pending"]},
                                                        "owner": ["Acme", "Globex"]},
     matching(lambda r: r["status"] not in ("expired", "pending") and r["owner"] in ("Acme", "Globex"))),
]


@pytest.mark.slow
def test_filters_on_list_date_and_text_columns_on_every_route(register, tmp_path, capsys):
    served = served_index(register, "marks", tmp_path)
    query = jpeg_bytes(photo("coffee", 200))
    index = lookalike.open_index(register.url, "marks", cache_dir=str(tmp_path / "cache-api"))

    def ids(answer: dict) -> set[str]:
        return {h["image_id"] for h in answer["results"][0]["hits"]}

    with running(create_app(served)) as url, ExitStack() as stack:
        router = exported_router(stack, register, "marks", tmp_path)
        for texts, filters, expected in FILTERS:
            assert expected and len(expected) < len(REGISTER), texts  # each filter keeps some, not all
            body = {"vectors": index.embed(query).tolist(), "k": 8, "filters": filters}
            for base in (url, router):
                assert ids(httpx.post(f"{base}/search/vectors", json=body, timeout=60).json()) == expected, texts
            upload = httpx.post(f"{url}/search/images", files={"images": ("q.jpg", query, "image/jpeg")},
                                data={"k": "8", "filters": json.dumps(filters)}, timeout=60).json()
            assert ids(upload) == expected, texts
            assert {h.image_id for h in index.search(query, k=8, filters=filters)} == expected, texts
            assert main(["search", "--store", register.url, "--index", "marks", "--k", "8", "--json",
                         "--id", "coffee.jpg", *(f"--filter={t}" for t in texts)]) == 0
            [result] = json.loads(capsys.readouterr().out)["results"]
            assert {h["image_id"] for h in result["hits"]} == expected - {"coffee.jpg"}, texts
        # The schema says what each column takes: a list column's operators, a date's format.
        schema = httpx.get(f"{url}/openapi.json", timeout=60).json()["components"]["schemas"]
        columns = schema["VectorQuery"]["properties"]["filters"]["anyOf"][0]["properties"]
        vienna = columns["vienna"]["anyOf"][2]["properties"]
        assert {"any", "all", "not", "prefix", "gte"} <= set(vienna) and "all" not in columns["owner"]["anyOf"][2][
            "properties"]
        assert columns["filed"]["anyOf"][0] == {"type": "string", "format": "date"}
        assert "prefix" not in columns["nice"]["anyOf"][2]["properties"]
        refused = [httpx.post(f"{url}/search/ids", json={"image_ids": ["coffee.jpg"], "filters": f}, timeout=60)
                   for f in ({"filed": {"gte": "2020-13-01"}}, {"nice": {"prefix": "2"}}, {"vienna": {"near": "x"}},
                             {"vienna": {}}, {"nowhere": ["x"]})]
        assert [r.status_code for r in refused] == [400, 400, 422, 422, 400]
        assert "date32" in refused[0].json()["detail"] and "text column" in refused[1].json()["detail"]
    assert main(["search", "--store", register.url, "--index", "marks", "--id", "coffee.jpg",
                 "--filter", "filed~2020"]) == 2
    assert "COLUMN OP VALUE" in capsys.readouterr().err


@pytest.mark.slow
def test_a_worker_shows_the_columns_it_is_told_and_exports_hits_as_csv(register, tmp_path):
    shown = ("owner", "vienna", "filed")
    served = served_index(register, "marks", tmp_path, show_columns=shown)
    with running(create_app(served)) as url, ExitStack() as stack:
        body = {"image_ids": ["coffee.jpg"], "k": 3}
        answer = httpx.post(f"{url}/search/ids", json=body, timeout=60).json()
        explained = httpx.post(f"{url}/explain/ids", json={"query_id": "coffee.jpg", "image_id": "rocket.jpg"},
                               timeout=60).json()
        exported = httpx.post(f"{url}/search/ids", params={"format": "csv"}, json=body, timeout=60)
        router = exported_router(stack, register, "marks", tmp_path)
        routed = httpx.post(f"{router}/search/ids", params={"format": "csv"}, json=body, timeout=60)
        bad_format = httpx.post(f"{url}/search/ids", params={"format": "xml"}, json=body, timeout=60)
        by_hidden = httpx.post(f"{url}/search/ids", json={**body, "k": 8, "filters": {"status": ["expired"]}},
                               timeout=60).json()
    hits = answer["results"][0]["hits"]
    assert all(list(h["metadata"]) == list(shown) for h in hits) and list(explained["metadata"]) == list(shown)
    # Filters still see every column, shown or not.
    assert {h["image_id"] for h in by_hidden["results"][0]["hits"]} == matching(lambda r: r["status"] == "expired")
    # The CSV: one row per hit, its scores, then the shown columns; a list's values joined by |.
    assert exported.status_code == 200 and exported.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert [r["image_id"] for r in rows] == [h["image_id"] for h in hits]
    assert list(rows[0]) == ["query", "rank", "image_id", "uri", "score", "cosine", "inliers", "percentile", "colour",
                             *shown]
    by_id = {r["image_id"]: r for r in rows}
    for hit in hits:
        name = hit["image_id"].removesuffix(".jpg")
        assert by_id[hit["image_id"]]["vienna"] == "|".join(REGISTER[name][1])
        assert by_id[hit["image_id"]]["filed"] == REGISTER[name][3].isoformat()
        assert float(by_id[hit["image_id"]]["score"]) == pytest.approx(hit["score"], abs=1e-6)
    # Through the router (its shards show every column): the same hits, as CSV.
    assert [r["image_id"] for r in csv.DictReader(io.StringIO(routed.text))] == [h["image_id"] for h in hits]
    assert bad_format.status_code == 422
    with pytest.raises(ServeError, match="--show-columns names \\['trademark_class'\\]"):
        served_index(register, "marks", tmp_path / "other", show_columns=("owner", "trademark_class"))


@pytest.mark.slow
def test_the_page_filters_a_list_column_exports_the_hits_and_links_a_search(register, chromium, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    served = served_index(register, "marks", tmp_path)

    def shown() -> set[str]:
        return {c.get_attribute("data-image-id") for c in chromium.find_elements(By.CSS_SELECTOR, "#results .hit")}

    def status() -> str:
        return chromium.find_element(By.ID, "status").text

    with running(create_app(served)) as worker:
        chromium.get(worker + "/")
        WebDriverWait(chromium, 20).until(lambda d: "marks" in d.find_element(By.ID, "index-info").text)
        chromium.find_element(By.ID, "filter").send_keys("vienna^=03.01; filed<2022-01-01")
        chromium.find_element(By.ID, "image-id").send_keys("chelsea.jpg")
        chromium.find_element(By.ID, "search-id").click()
        WebDriverWait(chromium, 60).until(lambda d: "results from" in status())
        expected = matching(lambda r: any(v.startswith("03.01") for v in r["vienna"])
                            and r["filed"] < datetime.date(2022, 1, 1)) - {"chelsea.jpg"}
        assert shown() == expected
        # The search has a link of its own: opened afresh, the page runs it again.
        link = chromium.current_url
        assert "id=chelsea.jpg" in link and "filter=" in link
        # Export: the same hits as CSV (asked of the worker) and as JSON (as answered).
        chromium.find_element(By.ID, "export-csv").click()
        WebDriverWait(chromium, 20).until(lambda d: d.find_element(By.ID, "download").get_attribute("download")
                                          == "hits.csv")
        read_download = ("const done = arguments[0];"
                         "fetch(document.getElementById('download').href).then((r) => r.text()).then(done);")
        rows = list(csv.DictReader(io.StringIO(chromium.execute_async_script(read_download))))
        assert {r["image_id"] for r in rows} == expected and {"vienna", "filed", "owner"} <= set(rows[0])
        chromium.find_element(By.ID, "export-json").click()
        WebDriverWait(chromium, 20).until(lambda d: d.find_element(By.ID, "download").get_attribute("download")
                                          == "hits.json")
        exported = json.loads(chromium.execute_async_script(read_download))
        assert {h["image_id"] for h in exported["results"][0]["hits"]} == expected
        chromium.get(link)
        WebDriverWait(chromium, 60).until(lambda d: "results from" in status())
        assert shown() == expected and chromium.find_element(By.ID, "filter").get_attribute("value") == \
            "vienna^=03.01; filed<2022-01-01"
        chromium.save_screenshot(str(tmp_path / "register-page.png"))
        # A filter that cannot be read says so, and searches nothing.
        chromium.find_element(By.ID, "filter").clear()
        chromium.find_element(By.ID, "filter").send_keys("filed~2020")
        chromium.find_element(By.ID, "search-id").click()
        WebDriverWait(chromium, 20).until(lambda d: "COLUMN OP VALUE" in status())


@pytest.mark.slow
def test_what_the_schema_says_of_list_and_date_filters_the_worker_keeps(register, tmp_path):
    """The served schema states each column's operators and value type (a list column's all, a date's format):
    requests that follow it are answered, requests that break it get a documented 4xx."""
    schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(served_index(register, "marks", tmp_path)))
    operations = {o.path: o for o in (r.ok() for r in schema.get_all_operations())}
    for path in ("/search/ids", "/search/vectors"):
        fuzz(operations[path], GenerationMode.POSITIVE)
        fuzz(operations[path], GenerationMode.NEGATIVE, checks=[not_a_server_error, status_code_conformance])
