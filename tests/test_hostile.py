"""The query worker, the router and the command line under attack and abuse: URIs written to escape the
allow-list, unbounded work, malformed bodies and numbers, damaged store objects. A real worker (uvicorn in this
process) over a real index of real images, embedded by the bundled model; real HTTP servers on 127.0.0.1."""

import http.server
import json
import os
import socket
import threading
import time

import httpx
import numpy as np
import pytest
import schemathesis
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import positive_data_acceptance, status_code_conformance
from support import contract

from lookalike.cli.main import main
from lookalike.core.errors import ConfigError
from lookalike.core.spark import IN_PROCESS
from lookalike.core.store import Store
from lookalike.dev import imagefactory
from lookalike.dev.synthetic import clustered_vectors, write_embeddings_version
from lookalike.embed import job as embed
from lookalike.embed.config import EmbedConfig
from lookalike.image.budget import PixelBudget
from lookalike.image.decode import ImageError
from lookalike.image.read import read_image_bytes
from lookalike.index import build as index_build
from lookalike.index import publish
from lookalike.index.build import BuildIndexConfig
from lookalike.serve.context import ApiSettings
from lookalike.serve.http_api import create_app, running
from lookalike.serve.router import RouterSettings, create_router
from lookalike.serve.uri_policy import UriAllowList, UriRefused, read_options
from lookalike.serve.worker import ServedIndex, WorkerSettings

TOKEN = "hostile-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
PHOTOS = ("coffee", "chelsea", "astronaut", "rocket", "coins", "camera")
SECRET = b"S3CRETTO and more secret bytes"


class Files(http.server.BaseHTTPRequestHandler):
    """/allowed/redirect → 302 to /outside/coffee.jpg; /allowed/coffee.jpg and /outside/coffee.jpg: a JPEG."""

    jpeg = b""
    requested: list[str] = []

    def do_GET(self):  # noqa: N802 (the stdlib's name)
        type(self).requested.append(self.path)
        if self.path.startswith("/allowed/redirect"):
            self.send_response(302)
            self.send_header("Location", "/outside/coffee.jpg")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif self.path.endswith("/coffee.jpg"):
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", str(len(self.jpeg)))
            self.end_headers()
            self.wfile.write(self.jpeg)
        else:
            self.send_error(404)

    do_HEAD = do_GET

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def files_server(tmp_path_factory):
    Files.jpeg = imagefactory.jpeg_bytes(imagefactory.photo("coffee"))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Files)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    """allowed/ holds the catalogue's photos and a symlink out; beside it a secret file and a sibling folder
    whose name starts with 'allowed'."""
    root = tmp_path_factory.mktemp("hostile")
    allowed = root / "allowed"
    allowed.mkdir()
    for name in PHOTOS:
        (allowed / f"{name}.jpg").write_bytes(imagefactory.jpeg_bytes(imagefactory.photo(name)))
    (root / "secret.txt").write_bytes(SECRET)
    (root / "allowed-secret").mkdir()
    (root / "allowed-secret" / "s.txt").write_bytes(SECRET)
    os.symlink(root / "secret.txt", allowed / "link.jpg")
    return root


@pytest.fixture(scope="module")
def worker(tree, model, files_server):
    store = Store(str(tree / "store"))
    # link.jpg (the symlink to a text file) lands in the errors table; the photos are the catalogue.
    m = embed.run(EmbedConfig(images=str(tree / "allowed"), store=store.url, master=IN_PROCESS, max_error_rate=0.5))
    index_build.run(BuildIndexConfig(store=store.url, name="marks", embeddings=m["fingerprint_id"],
                                     master=IN_PROCESS, publish=True, queries=4))
    served = ServedIndex(store, WorkerSettings("marks", str(tree / "cache"), max_pixels_in_flight=50_000_000))
    served.start(watch=False)
    settings = ApiSettings(token=TOKEN, max_body_bytes=2_000_000, allow_uri_prefixes=(
        str(tree / "allowed"), f"{files_server}/allowed"))
    with running(create_app(served, settings)) as url:
        yield url, served


def post(url: str, path: str, **kw) -> httpx.Response:
    return httpx.post(url + path, headers=kw.pop("headers", AUTH), timeout=30, **kw)


@pytest.mark.slow
def test_uris_that_escape_the_allow_list_are_refused_without_reading_them(worker, tree, files_server):
    url, _ = worker
    escapes = [f"{tree}/allowed/../secret.txt",              # dot segments
               f"{tree}/allowed/link.jpg",                   # a symlink out of the folder
               f"{tree}/allowed-secret/s.txt",               # a sibling folder under the same string prefix
               f"file://{tree}/allowed/../secret.txt",
               f"{files_server}/allowed/..%2fsecret",        # encoded dot segments
               f"{files_server}/allowed/%2e%2e/outside/coffee.jpg",
               f"http://127.0.0.1:{files_server.rsplit(':', 1)[1]}@example.org/allowed/coffee.jpg",  # userinfo
               f"{files_server}-other/allowed/coffee.jpg",   # another port behind the same string prefix
               "relative/coffee.jpg",
               f"{tree}/allowed/link.jpg::x",                # fsspec chains on '::': through the symlink out
               f"{tree}/allowed/link.jpg::",
               f"file://{tree}/allowed/coffee.jpg::",
               f"simplecache::file://{tree}/secret.txt",
               f"{tree}/allowed/coffee\x00.jpg",              # NUL
               "http://[::1/img/a.png", "http://[zz]/img/a.png"]  # malformed hosts
    for uri in escapes:
        r = post(url, "/search/uris", json={"uris": [uri], "k": 1})
        assert r.status_code == 403, (uri, r.text)
        assert "S3CRET" not in r.text and "bytes" not in r.text, r.text
    # What the allow-list admits is searched: a local file, and an HTTP URL under the allowed prefix.
    for uri in (f"{tree}/allowed/coffee.jpg", f"{files_server}/allowed/coffee.jpg"):
        r = post(url, "/search/uris", json={"uris": [uri], "k": 1})
        assert r.status_code == 200, r.text
        assert r.json()["results"][0]["hits"][0]["image_id"] == "coffee.jpg"


def test_a_redirect_out_of_the_allow_list_is_not_followed(worker, files_server):
    url, _ = worker
    Files.requested.clear()
    r = post(url, "/search/uris", json={"uris": [f"{files_server}/allowed/redirect"], "k": 1})
    assert r.status_code == 400, r.text
    assert not any(p.startswith("/outside") for p in Files.requested), Files.requested


def test_allow_list_compares_structure():
    allow = UriAllowList(["/srv/allowed", "http://host:5/imgs", "s3://bucket/catalogue"])
    assert allow.check("/srv/allowed/a/b.png") == "/srv/allowed/a/b.png"
    assert allow.check("http://HOST:5/imgs/x.png") == "http://HOST:5/imgs/x.png"
    assert allow.check("s3://bucket/catalogue/x.png")
    for uri in ("/srv/allowed/../etc/shadow", "/srv/allowed-secret/x", "http://host:5@other/imgs/x",
                "http://host:6/imgs/x", "http://host:5/imgs/..%2F..%2Fetc", "http://host:5/imgsecret/x",
                "s3://bucket/catalogue-private/x", "s3://other/catalogue/x", "https://host:5/imgs/x"):
        with pytest.raises(UriRefused):
            allow.check(uri)
    with pytest.raises(UriRefused, match="--allow-uri"):
        UriAllowList([]).check("/srv/allowed/a.png")
    # fsspec chains filesystems on '::' (an IPv6 literal host is read that way too): never in an allowed entry.
    for prefix in ("/srv/allowed::x", "http://[::1]:5/imgs", "http://[::1/imgs"):
        with pytest.raises(ConfigError, match="'::'"):
            UriAllowList([prefix])


@pytest.mark.slow
def test_a_read_from_a_server_that_never_answers_times_out():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)  # accepts connections, never answers
    uri = f"http://127.0.0.1:{listener.getsockname()[1]}/allowed/x.jpg"
    started = time.monotonic()
    with pytest.raises(ImageError):
        read_image_bytes(uri, read_options(uri, {}, 1.0), 1 << 20)
    assert time.monotonic() - started < 10
    listener.close()


def test_work_per_request_is_bounded(worker):
    url, _ = worker
    vector = [[1.0] + [0.0] * 1279]
    for body, status, word in (({"vectors": vector, "k": 1, "rescore": 100_000_000}, 422, "rescore"),
                               ({"vectors": vector, "k": 1, "rescore": 10 ** 13}, 422, "rescore"),
                               ({"vectors": vector, "k": 1, "nprobe": 10 ** 9}, 422, "nprobe"),
                               ({"vectors": vector * 64, "k": 1000, "rescore": 10_000}, 400, "candidates")):
        r = post(url, "/search/vectors", json=body)
        assert r.status_code == status and word in r.text, r.text
    r = post(url, "/search/vectors", json={"vectors": vector, "k": 1, "rescore": 10_000})
    assert r.status_code == 200, r.text
    # Verification has a budget of its own: a batch of ids at the largest shortlist would verify 64,000.
    r = post(url, "/search/ids", json={"image_ids": ["coffee.jpg"] * 64, "k": 1, "shortlist": 1000})
    assert r.status_code == 400 and "candidates verified" in r.text, r.text
    assert post(url, "/search/ids", json={"image_ids": ["coffee.jpg"], "k": 1, "shortlist": 1000}).status_code == 200


def test_malformed_bodies_are_refused_with_4xx(worker, tree):
    url, _ = worker
    jpeg = (tree / "allowed" / "coffee.jpg").read_bytes()
    for filters in ('{"title": {"a": 1}}', '{"": ["x"]}', "[1, 2]", "{nope"):
        r = post(url, "/search/images", files={"images": ("q.jpg", jpeg, "image/jpeg")},
                 data={"k": "1", "filters": filters})
        assert r.status_code == 400, (filters, r.text)
    for body in ({"vectors": [[]]}, {"vectors": [[float("nan")] * 1280]}, {"image_ids": [""]},
                 {"vectors": [[1.0] * 1280], "unknown": 1}):
        r = httpx.post(url + ("/search/ids" if "image_ids" in body else "/search/vectors"), headers={
            **AUTH, "content-type": "application/json"}, content=json.dumps(body), timeout=30)
        assert r.status_code == 422, (body, r.text)
    # Huge components: normalised in float64, not turned into a zero query with meaningless hits.
    stored = post(url, "/vectors", json={"image_ids": ["coffee.jpg"]}).json()["vectors"][0]
    r = post(url, "/search/vectors", json={"vectors": [[c * 1e20 for c in stored]], "k": 1})
    assert r.status_code == 200 and r.json()["results"][0]["hits"][0]["image_id"] == "coffee.jpg", r.text


def test_the_schema_and_metrics_need_the_token_and_there_are_no_cdn_pages(worker):
    url, _ = worker
    assert httpx.get(url + "/openapi.json").status_code == 401
    schema = httpx.get(url + "/openapi.json", headers=AUTH).json()
    assert "/search/vectors" in schema["paths"]
    responses = schema["paths"]["/search/uris"]["post"]["responses"]
    assert {"200", "400", "401", "403", "409", "413", "422", "503", "504"} <= set(responses)
    assert httpx.get(url + "/docs").status_code == 404 and httpx.get(url + "/redoc").status_code == 404
    assert httpx.get(url + "/metrics").status_code == 401
    metrics = httpx.get(url + "/metrics", headers=AUTH).text
    assert "lookalike_decode_pixels_in_flight 0.0" in metrics and "lookalike_decode_pixels_budget" in metrics


def test_the_pixel_budget_lets_decodes_wait_instead_of_piling_up():
    budget = PixelBudget(100)
    order, inside = [], threading.Event()

    def big():
        with budget.hold(80):
            inside.set()
            time.sleep(0.3)
            order.append("big done")

    t = threading.Thread(target=big)
    t.start()
    inside.wait()
    with budget.hold(50):  # 80 + 50 > 100: waits for the first to finish
        order.append("second in")
    t.join()
    assert order == ["big done", "second in"] and budget.waits == 1 and budget.in_use == 0
    with budget.hold(10_000):  # larger than the whole budget: runs alone, never forever
        assert budget.in_use == 100


class Shard(http.server.BaseHTTPRequestHandler):
    """A shard that answers by the first component of the query vector: 0.5 → 500; 0.25 → 200 with a body that is
    not JSON; 0.125 → 200 with JSON of another shape; 0.0625 → a hit scored Infinity; else a good answer."""

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        first = body["vectors"][0][0]
        score = "Infinity" if first == 0.0625 else "0.9"  # written by hand: json.dumps would not write Infinity
        hit = f'{{"rank": 1, "image_id": "a", "uri": "mem://a", "score": {score}, "cosine": 0.9, "metadata": {{}}}}'
        results = ", ".join(f'{{"query": {i}, "hits": [{hit}]}}' for i in range(len(body["vectors"])))
        answer = (f'{{"name": "marks", "version": "v1", "k": {body["k"]}, "took_ms": 1.0, "results": [{results}]}}'
                  ).encode()
        status, answer = {0.5: (500, b"Internal Server Error"), 0.25: (200, b"<html>not json"),
                          0.125: (200, b'{"results": "x"}')}.get(first, (200, answer))
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args):
        pass


def test_the_router_names_failing_shards_refuses_bad_input_and_is_not_poisoned():
    shard = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Shard)
    threading.Thread(target=shard.serve_forever, daemon=True).start()
    router = create_router(RouterSettings(shards=(f"http://127.0.0.1:{shard.server_address[1]}",),
                                          max_body_bytes=100_000))
    try:
        with running(router) as url:
            for _ in range(3):
                r = httpx.post(url + "/search/vectors", json={"vectors": [[0.5, 1.0]], "k": 1}, timeout=10)
                assert r.status_code == 502 and "answered 500" in r.text, r.text
                good = httpx.post(url + "/search/vectors", json={"vectors": [[1.0, 0.0]], "k": 1}, timeout=10)
                assert good.status_code == 200, good.text
            # A shard's 200 that is not JSON, JSON of another shape, or a non-standard number is that shard's
            # failure, named in the answer: never a 500 of the router, never an Infinity passed on.
            for first in (0.25, 0.125, 0.0625):
                r = httpx.post(url + "/search/vectors", json={"vectors": [[first, 1.0]], "k": 1}, timeout=10)
                assert r.status_code == 502 and "not what /search/vectors returns" in r.text, r.text
            nan = httpx.post(url + "/search/vectors", headers={"content-type": "application/json"},
                             content='{"vectors": [[NaN, 1.0]], "k": 1}', timeout=10)
            assert nan.status_code == 422
            huge = httpx.post(url + "/search/vectors", json={"vectors": [[1.0] * 50_000], "k": 1}, timeout=10)
            assert huge.status_code == 413
            assert httpx.post(url + "/search/vectors", json={"vectors": [[1.0, 0.0]], "k": 1},
                              timeout=10).status_code == 200
    finally:
        shard.shutdown()


def test_damaged_latest_and_manifests_fail_in_one_line_and_spare_the_rest(tmp_path, capsys):
    store = Store(str(tmp_path / "store"))
    write_embeddings_version(store, clustered_vectors(300, 16, seed=3), parts=1)
    built = [index_build.run(BuildIndexConfig(store=store.url, name="t", master=IN_PROCESS, publish=True,
                                              queries=10))["version"] for _ in range(2)]
    store.write_text("indexes/t/LATEST", "[1, 2, 3]")
    assert main(["search", "--store", store.url, "--index", "t", "--id", "img-00000001"]) == 2
    assert "LATEST is damaged" in capsys.readouterr().err
    store.write_text(f"indexes/t/{built[0]}/manifest.json", '"just a string"')
    assert main(["indexes", "list", "--store", store.url, "--index", "t"]) == 0
    listing = capsys.readouterr().out
    assert "damaged" in listing and built[1] in listing
    assert main(["publish", "--store", store.url, "--index", "t", "--rollback", built[1]]) == 0
    assert publish.latest_version(store, "t") == built[1]
    assert main(["publish", "--store", store.url, "--index", "t", "--rollback", built[0]]) == 2
    assert "manifest.json is damaged" in capsys.readouterr().err


def test_command_line_values_and_environment_errors_are_one_line(tmp_path, capsys):
    store = Store(str(tmp_path / "store"))
    write_embeddings_version(store, clustered_vectors(1000, 16, seed=4), parts=2)
    with pytest.raises(SystemExit) as exit_:
        main(["build-index", "--store", store.url, "--index", "t", "--memory-budget", "inf"])
    assert exit_.value.code == 2 and "a size such as" in capsys.readouterr().err
    # The held-out queries leave the training sample enough rows for the lists the factory asks for.
    assert main(["build-index", "--store", store.url, "--index", "t", "--factory", "IVF32,Flat", "--publish",
                 "--master", "in-process"]) == 0
    assert "IVF32,Flat over 1,000 vectors" in capsys.readouterr().out
    assert main(["build-index", "--store", store.url, "--index", "u", "--factory", "IVF4096,Flat",
                 "--master", "in-process"]) == 2
    assert "needs at least 4,096 training vectors" in capsys.readouterr().err
    assert main(["search", "--store", store.url, "--index", "t", "--id", "img-00000001", "--rescore",
                 "10000000000000"]) == 2
    assert "rescore must be between 0 and 10000" in capsys.readouterr().err
    # Factory strings faiss cannot make, or the build cannot add to in parallel and merge: refused before any work.
    for factory, word in (("IVF16,PQ7", "multiple of the number of subquantizers"), ("PQ4x16", "IndexPQ"),
                          ("HNSW32", "IndexHNSWFlat"), ("LSH", "IndexLSH"), ("IVF0,Flat", "at least one list"),
                          ("IVF16,PQ4x16", "8 bits")):
        assert main(["build-index", "--store", store.url, "--index", "f", "--factory", factory,
                     "--master", "in-process"]) == 2, factory
        assert word in capsys.readouterr().err, factory
    (tmp_path / "token").write_bytes(b"\xff\xfe token")
    for argv, word in ((["--allow-uri", "http://[::1/x"], "'::'"),
                       (["--token-file", str(tmp_path / "token")], "UTF-8")):
        assert main(["serve", "--store", store.url, "--index", "t", *argv]) == 2, argv
        assert word in capsys.readouterr().err, argv
    # A manifest that lists no files: one line, not faiss's traceback.
    version = publish.latest_version(store, "t")
    manifest = store.read_json(f"indexes/t/{version}/manifest.json")
    store.write_json(f"indexes/t/{version}/manifest.json", {**manifest, "files": []})
    assert main(["search", "--store", store.url, "--index", "t", "--id", "img-00000001", "--cache-dir",
                 str(tmp_path / "fresh-cache")]) == 2
    assert "lists no ids.parquet, index.faiss, vectors.f16.npy" in capsys.readouterr().err
    store.write_json(f"indexes/t/{version}/manifest.json", manifest)
    (tmp_path / "file").write_text("x")
    for argv in (["export", "--store", store.url, "--index", "t", "--dest", str(tmp_path / "file" / "d"),
                  "--master", "in-process"],
                 ["embed", "--images", str(tmp_path / "file" / "nope"), "--store", store.url,
                  "--master", "in-process"],
                 ["search", "--store", store.url, "--index", "t", str(tmp_path / "nope.jpg")]):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert "Traceback" not in err and err.strip().splitlines()[-1].startswith("lookalike "), err


def test_an_unexpected_exception_shows_its_traceback_and_exits_1(tmp_path, monkeypatch):
    import dataclasses

    import lookalike.cli.main as cli
    monkeypatch.setattr(cli, "COMMANDS", tuple(dataclasses.replace(c, run=lambda args: 1 / 0) if c.name == "indexes"
                                               else c for c in cli.COMMANDS))
    with pytest.raises(ZeroDivisionError):
        cli.main(["indexes", "list", "--store", str(tmp_path), "--index", "t"])



@pytest.fixture(scope="module")
def api_schema(worker, tree, files_server):
    _, served = worker
    app = create_app(served, ApiSettings(token=TOKEN, allow_uri_prefixes=(str(tree / "allowed"),)))
    return schemathesis.openapi.from_asgi("/openapi.json", app, headers=AUTH)


MAX_FUZZ_GROWTH = 300 * 2 ** 20  # the README's bound: what the fuzz may leave resident in the worker


def resident_bytes() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))


def fuzz(operation, mode: GenerationMode, checks=None, excluded=()) -> None:
    contract.fuzz(operation, mode, checks, excluded, headers=AUTH)


@pytest.mark.slow
def test_every_route_keeps_its_documented_contract(api_schema):
    """A bounded, seeded fuzz of every operation. Requests that follow the schema are answered as documented
    (every check: status codes, content types, response schemas, schema-valid data accepted); requests that
    break it get a documented 4xx, and nothing is a server error. Uploads and URIs are the exception to
    "schema-valid is accepted": no schema can say which bytes decode to an image (nor, for a search by examples,
    whether any was given to find more of)."""
    undecidable = {"/search/images", "/embed", "/search/uris", "/tag", "/explain/images", "/search/examples",
                   "/parts"}
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 9
    before = resident_bytes()
    for operation in operations:
        fuzz(operation, GenerationMode.POSITIVE,
             excluded=[positive_data_acceptance] if operation.path in undecidable else [])
        if len(operation.body) or len(operation.query) or len(operation.path_parameters):  # inputs to break
            fuzz(operation, GenerationMode.NEGATIVE, checks=[not_a_server_error, status_code_conformance])
    grown = resident_bytes() - before
    assert grown < MAX_FUZZ_GROWTH, f"the worker grew by {grown / 2**20:.0f} MiB under the fuzz"


@pytest.fixture(scope="module")
def sharded(tmp_path_factory):
    """600 synthetic vectors as one index served whole and as two exported shards behind a router, all behind
    the token: (the whole index's worker, the router, the router's app)."""
    from contextlib import ExitStack

    from lookalike.index.export import ExportConfig
    from lookalike.index.export import run as export
    root = tmp_path_factory.mktemp("sharded")
    store = Store(str(root / "store"))
    write_embeddings_version(store, clustered_vectors(600, 32, clusters=20, seed=9), parts=2)
    index_build.run(BuildIndexConfig(store=store.url, name="v", master=IN_PROCESS, publish=True, queries=20))
    hosts = [root / "host-0", root / "host-1"]
    export(ExportConfig(store=store.url, name="v", destinations=tuple(map(str, hosts)), master=IN_PROCESS))
    with ExitStack() as stack:
        def worker(where: Store, cache: str) -> str:
            served = ServedIndex(where, WorkerSettings("v", str(root / cache)))
            served.start(watch=False)
            return stack.enter_context(running(create_app(served, ApiSettings(token=TOKEN))))
        whole = worker(store, "cache-whole")
        shards = tuple(worker(Store(str(host)), f"cache-{host.name}") for host in hosts)
        app = create_router(RouterSettings(shards, token=TOKEN))
        yield whole, stack.enter_context(running(app)), app


def test_the_router_answers_what_a_worker_answers_and_guards_its_schema(sharded):
    whole, router, _ = sharded
    assert httpx.get(router + "/docs").status_code == 404 and httpx.get(router + "/redoc").status_code == 404
    assert httpx.get(router + "/openapi.json").status_code == 401
    schema = httpx.get(router + "/openapi.json", headers=AUTH).json()
    vectors = schema["components"]["schemas"]["VectorQuery"]["properties"]["vectors"]["items"]
    assert vectors["minItems"] == vectors["maxItems"] == 32  # the shards' dimension, as they state it
    responses = schema["paths"]["/search/vectors"]["post"]["responses"]
    assert {"400", "401", "404", "409", "413", "422", "502"} <= set(responses)
    rng = np.random.default_rng(3)
    for body in ({"vectors": rng.normal(size=(1, 32)).tolist(), "k": 5, "expand": 65},
                 {"vectors": rng.normal(size=(2, 32)).tolist(), "k": 5, "expand": 40},
                 {"vectors": [[1e308] * 32], "k": 5, "expand": 2}):
        answers = [post(url, "/search/vectors", json=body) for url in (whole, router)]
        assert [a.status_code for a in answers] == [200, 200], [a.text for a in answers]
        got, want = (a.json()["results"] for a in answers)
        assert [[h["image_id"] for h in r["hits"]] for r in got] == [[h["image_id"] for h in r["hits"]] for r in want]
        np.testing.assert_allclose([h["score"] for r in got for h in r["hits"]],
                                   [h["score"] for r in want for h in r["hits"]], atol=1e-4)
    # The upload form is the worker's: the same fields, refused the same way before any shard is asked.
    for url in (whole, router):
        r = post(url, "/search/images", files={"images": ("q.png", b"x", "image/png")},
                 data={"verify": "false", "filters": '{"width": NaN}'})
        assert r.status_code == 400 and "filters" in r.text, (url, r.text)


@pytest.mark.slow
def test_every_route_of_the_router_keeps_its_documented_contract(sharded):
    """Over HTTP, as clients meet it: its shards answer its requests, so its schema is theirs, and each thing it
    passes on or adds is documented."""
    _, router, _ = sharded
    schema = schemathesis.openapi.from_url(router + "/openapi.json", headers=AUTH)
    for operation in (result.ok() for result in schema.get_all_operations()):
        fuzz(operation, GenerationMode.POSITIVE,
             excluded=[positive_data_acceptance]
             if operation.path in ("/search/images", "/explain/images", "/search/examples", "/parts") else [])
        if len(operation.body) or len(operation.query) or len(operation.path_parameters):  # inputs to break
            fuzz(operation, GenerationMode.NEGATIVE, checks=[not_a_server_error, status_code_conformance])


def test_what_the_schema_accepts_the_worker_answers_and_what_it_refuses_is_a_short_4xx(worker, tree):
    url, _ = worker
    schema = httpx.get(url + "/openapi.json", headers=AUTH).json()
    body = schema["paths"]["/search/images"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    upload = schema["components"]["schemas"][body["$ref"].rsplit("/", 1)[-1]]
    assert upload["properties"]["images"]["minItems"] == 1
    assert post(url, "/search/images", data={"k": "1"}).status_code == 422
    # Texts whose only characters are blank or zero-width hold no phrase: the schema's pattern says so too.
    for text in ("\u0085", "\u200b\u2060", " ,\u00a0, "):
        assert post(url, "/search/text", json={"texts": [text]}).status_code == 422, repr(text)
    vector = post(url, "/vectors", json={"image_ids": ["coffee.jpg"]}).json()["vectors"]
    for filters in ({"image_id": [True]}, {"image_id": 5}, {"width": [True]}, {"width": 99999999999999999999},
                    {"width": 2 ** 64}, {"width": ["x"] * 50_000}):
        r = post(url, "/search/vectors", json={"vectors": vector, "k": 1, "filters": filters})
        assert r.status_code in (400, 422) and len(r.content) < 2000, (filters, r.status_code, r.text[:300])
    for body in ({"image_ids": ["coffee.jpg"], "weight_strength": False}, {"image_ids": ["coffee.jpg"], "k": True}):
        assert post(url, "/search/ids", json=body).status_code == 422, body
    jpeg = (tree / "allowed" / "coffee.jpg").read_bytes()
    for data in ({"weight_class": ""}, {"filters": "[" * 100_000}):
        r = post(url, "/search/images", files={"images": ("q.jpg", jpeg, "image/jpeg")}, data={"k": "1", **data})
        assert r.status_code == 400, (data, r.text[:300])
    r = httpx.post(url + "/search/vectors", headers={**AUTH, "content-type": "application/json"},
                   content='{"vectors": ' + "[" * 100_000, timeout=30)
    assert r.status_code == 400 and "parsing the body" in r.text, r.text[:300]


def test_versions_and_names_from_users_or_files_stay_inside_their_index(tmp_path, capsys):
    store = Store(str(tmp_path / "store"))
    write_embeddings_version(store, clustered_vectors(300, 16, seed=5), parts=1)
    for name in ("t", "u"):
        index_build.run(BuildIndexConfig(store=store.url, name=name, master=IN_PROCESS, publish=True, queries=10))
    other = publish.latest_version(store, "u")
    before = publish.latest_version(store, "t")
    for argv in (["publish", "--store", store.url, "--index", "t", "--rollback", f"../u/{other}"],
                 ["search", "--store", store.url, "--index", "t", "--version", f"../u/{other}", "--id", "img-00000001"],
                 ["search", "--store", store.url, "--index", "../t", "--id", "img-00000001"]):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert "Traceback" not in err and "use letters, digits" in err, err
    assert publish.latest_version(store, "t") == before
    store.write_json("indexes/t/LATEST", {"version": f"../u/{other}"})  # a pointer written by someone else
    assert main(["search", "--store", store.url, "--index", "t", "--id", "img-00000001"]) == 2
    assert "use letters, digits" in capsys.readouterr().err


def test_query_sets_that_cannot_be_judged_say_why_in_one_line(worker, tree, tmp_path, capsys):
    import pyarrow as pa
    import pyarrow.parquet as pq
    allowed = tree / "allowed"
    cases = {  # relevant ids given as integers (ids are text); the one readable query names no relevant id
        "ints.parquet": ({"image_id": ["q"], "uri": [str(allowed / "coffee.jpg")],
                          "relevant": pa.array([7], pa.int64())}, "is an image_id"),
        "none.parquet": ({"image_id": ["q1", "q2"], "uri": [str(allowed / "coffee.jpg"), str(tmp_path / "gone.jpg")],
                          "relevant": [[], ["coffee.jpg"]]}, "names a relevant id"),
    }
    for name, (columns, word) in cases.items():
        pq.write_table(pa.table(columns), tmp_path / name)
        assert main(["evaluate", "--store", str(tree / "store"), "--index", "marks", "--queries", str(tmp_path / name),
                     "--report", str(tmp_path / "report")]) == 2, name
        err = capsys.readouterr().err
        assert "Traceback" not in err and word in err, (name, err)
