"""Renamed options keep their old names for a release: `rerank` (the shortlist re-scored exactly) is `rescore`
now, as a command-line flag, an HTTP field and in the manifests of versions published before the rename."""

import json

import httpx
import pytest

from lookalike.cli.main import main
from lookalike.core.spark import IN_PROCESS
from lookalike.core.store import Store
from lookalike.dev.synthetic import clustered_vectors, write_embeddings_version
from lookalike.index import build as index_build
from lookalike.index import publish
from lookalike.index.build import BuildIndexConfig
from lookalike.index.reader import load_index_version
from lookalike.serve.http_api import create_app, running
from lookalike.serve.worker import ServedIndex, WorkerSettings


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Store:
    store = Store(str(tmp_path_factory.mktemp("names") / "store"))
    write_embeddings_version(store, clustered_vectors(2000, 16, seed=5), parts=2)
    index_build.run(BuildIndexConfig(store=store.url, name="t", master=IN_PROCESS, publish=True, queries=20,
                                     factory="IVF16,PQ4"))
    return store


def search(store: Store, *flags: str, capsys) -> tuple[dict, str]:
    assert main(["search", "--store", store.url, "--index", "t", "--id", "img-00000007", "--k", "5", "--json",
                 *flags]) == 0
    out = capsys.readouterr()
    return json.loads(out.out), out.err


def test_the_rerank_flag_is_rescore_with_a_warning(store, capsys):
    today, said = search(store, "--rescore", "60", capsys=capsys)
    assert today["params"]["rescore"] == 60 and "rerank" not in today["params"] and "deprecated" not in said
    old, said = search(store, "--rerank", "60", capsys=capsys)
    assert old == today and "--rerank is deprecated: use --rescore" in said
    with pytest.raises(SystemExit):
        main(["search", "--help"])
    assert "--rerank" not in capsys.readouterr().out  # a deprecated name is accepted, never advertised


def test_old_spellings_of_index_and_version_work_with_a_warning(store, capsys):
    today, _ = search(store, capsys=capsys)
    assert main(["search", "--store", store.url, "--name", "t", "--index-version", today["version"], "--id",
                 "img-00000007", "--k", "5", "--json"]) == 0
    out = capsys.readouterr()
    assert json.loads(out.out) == today
    assert "--name is deprecated: use --index" in out.err and "--index-version is deprecated: use --version" in out.err


def test_the_rerank_field_is_rescore_over_http(store, tmp_path):
    served = ServedIndex(store, WorkerSettings("t", str(tmp_path / "cache")))
    served.start(watch=False)
    vectors = [clustered_vectors(2000, 16, seed=5)[7].tolist()]
    with running(create_app(served)) as url:
        def ask(**options):
            return httpx.post(f"{url}/search/vectors", json={"vectors": vectors, "k": 5, **options}, timeout=30)
        today, old = ask(rescore=60), ask(rerank=60)
        assert today.status_code == old.status_code == 200
        assert old.json()["results"] == today.json()["results"]
        too_many = ask(rerank=10 ** 9)  # the old name is bounded as the new one is, and the answer says which
        assert too_many.status_code == 422 and "rescore" in too_many.text
        both = ask(rescore=60, rerank=60)
        assert both.status_code == 422 and "give rescore alone" in both.text
        schema = httpx.get(f"{url}/openapi.json").json()
        listed_old = properties_named("rerank", schema)  # the upload form's field, and only there
        assert properties_named("rescore", schema) and listed_old and all(f.get("deprecated") for f in listed_old)


def properties_named(name: str, node) -> list[dict]:
    """Every schema property called `name` in an OpenAPI document."""
    found = []
    if isinstance(node, dict):
        if isinstance(node.get("properties"), dict) and name in node["properties"]:
            found.append(node["properties"][name])
        for value in node.values():
            found += properties_named(name, value)
    elif isinstance(node, list):
        for value in node:
            found += properties_named(name, value)
    return found


def test_a_version_published_before_the_rename_reads_under_todays_names(store, capsys):
    version = publish.latest_version(store, "t")
    key = f"indexes/t/{version}/manifest.json"
    manifest = store.read_json(key)
    point = manifest["default_search"]["rescore"]
    legacy = json.loads(json.dumps(manifest).replace('"rescore"', '"rerank"'))
    assert legacy["default_search"]["rerank"] == point and "rescore" not in json.dumps(legacy)
    store.write_json(key, legacy)
    try:
        reader = load_index_version(store, "t")
        assert reader.default_params.rescore == point
        assert all("rescore" in row for row in reader.manifest["recall_table"])
        assert search(store, capsys=capsys)[0]["params"]["rescore"] == point
    finally:
        store.write_json(key, manifest)


def test_dba_takes_the_expansion_names_of_query_expansion(store, capsys):
    """DBA and αQE set the same Expansion(n, alpha): `augment` takes --expand/--expand-alpha, and its old
    --neighbours/--alpha for a release (the same version: a rerun with either is the run already done)."""
    flags = ["augment", "--store", store.url, "--master", "in-process"]
    assert main([*flags, "--expand", "2", "--expand-alpha", "2", "--json"]) == 0
    today = json.loads(capsys.readouterr().out)
    assert today["run_id"] == "synthetic.dba2-a2"
    assert main([*flags, "--neighbours", "2", "--alpha", "2", "--json"]) == 0
    out = capsys.readouterr()
    assert json.loads(out.out)["created_at"] == today["created_at"] and "--neighbours is deprecated" in out.err


def test_the_python_api_takes_rerank_as_rescore_with_a_deprecation_warning(store, tmp_path):
    from lookalike import open_index
    index = open_index(store.url, "t", cache_dir=str(tmp_path / "cache"))
    query = clustered_vectors(2000, 16, seed=5)[7]
    today = index.search_vectors(query, 5, rescore=60)
    with pytest.warns(DeprecationWarning, match="rerank= is deprecated, use rescore="):
        old = index.search_vectors(query, 5, rerank=60)
    assert [(h.image_id, h.score) for h in old] == [(h.image_id, h.score) for h in today]
    with pytest.warns(DeprecationWarning):
        assert index.search_params(rerank=60).rescore == 60
    with pytest.raises(TypeError, match="give rescore alone"):
        index.search_vectors(query, 5, rescore=60, rerank=60)
