"""Queries against a published IVF-PQ version on the S3 server: filters (exact subset and enlarged shortlist)
against brute force, search by id, hits with metadata, and every way a query can be wrong."""

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from lookalike.dev.synthetic import clustered_vectors
from lookalike.index.reader import fetch_version, load_index_version, version_dir
from lookalike.index.search import SearchParams
from lookalike.retrieval.ids import UnknownImageIds, vectors_of_ids
from lookalike.retrieval.limits import QueryError
from lookalike.retrieval.query import as_queries, search_vectors

N, D = 12_000, 64


@pytest.fixture(scope="module")
def vectors():
    return clustered_vectors(N, D, clusters=300, spread=0.6, seed=11)


@pytest.fixture(scope="module")
def store(published_store, vectors):
    return published_store(vectors, {"group": [f"g{i % 10}" for i in range(N)], "year": list(range(1990, 1990 + N))})


@pytest.fixture(scope="module")
def version(store):
    return load_index_version(store, "marks")


def brute_force(vectors, queries, allowed, k):
    scores = queries @ vectors[allowed].T
    return allowed[np.argsort(-scores, axis=1)[:, :k]]


@pytest.mark.slow
def test_hits_carry_ids_uris_scores_ranks_and_metadata(version, vectors):
    [hits] = search_vectors(version, vectors[[42]], 5, SearchParams(nprobe=16, rescore=100))
    assert [h.rank for h in hits] == [1, 2, 3, 4, 5]
    assert hits[0].image_id == "img-00000042" and hits[0].uri == "mem://img-00000042"
    assert hits[0].score == pytest.approx(1.0, abs=1e-3)
    assert all(a.score >= b.score for a, b in zip(hits, hits[1:], strict=False))
    assert hits[0].metadata["group"] == "g2" and hits[0].metadata["year"] == 1990 + 42
    assert set(hits[0].metadata) >= {"content_sha256", "width", "height", "group", "year"}


@pytest.mark.parametrize("exact_filter_limit", [0, 1_000_000], ids=["enlarged-shortlist", "exact-subset"])
def test_filtered_hits_all_pass_and_match_brute_force(version, vectors, exact_filter_limit):
    queries = vectors[::997]
    allowed = np.arange(N)[np.arange(N) % 10 == 3]
    truth = brute_force(vectors, queries, allowed, 10)
    results = search_vectors(version, queries, 10, SearchParams(nprobe=16, rescore=100), {"group": ["g3"]},
                             exact_filter_limit=exact_filter_limit)
    assert all(len(hits) == 10 and all(h.metadata["group"] == "g3" for h in hits) for hits in results)
    found = [[int(h.image_id.split("-")[1]) for h in hits] for hits in results]
    recall = np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found, truth, strict=True)])
    # The exact subset is exact up to the fp16 storage; the shortlist loses little at nprobe 16 of 64.
    assert recall >= (0.99 if exact_filter_limit else 0.9), recall


def test_filters_on_several_columns_and_values_combine(version, vectors):
    [hits] = search_vectors(version, vectors[[7]], 50, filters={"group": ["g1", "g2"], "year": [1990 + i for i in
                                                                                                  range(0, N, 3)]})
    assert hits and all(h.metadata["group"] in ("g1", "g2") and (h.metadata["year"] - 1990) % 3 == 0 for h in hits)
    [none] = search_vectors(version, vectors[[7]], 5, filters={"group": "no-such-group"})
    assert none == []


def test_search_by_id_leaves_the_image_itself_out(version, vectors):
    queries, faiss_ids = vectors_of_ids(version, ["img-00000042", "img-00000043"])
    np.testing.assert_allclose(queries[0], vectors[42], atol=2e-3)  # the stored fp16 vector
    results = search_vectors(version, queries, 5, SearchParams(nprobe=16, rescore=100), exclude=faiss_ids)
    assert all(len(hits) == 5 for hits in results)
    assert "img-00000042" not in [h.image_id for h in results[0]]
    with pytest.raises(UnknownImageIds, match="1 image id.*'nope'") as e:
        vectors_of_ids(version, ["img-00000042", "nope"])
    assert e.value.missing == ["nope"]


def test_bad_queries_say_what_is_wrong(version):
    with pytest.raises(QueryError, match="length 64"):
        as_queries(version, [[1.0, 2.0]])
    with pytest.raises(QueryError, match="all zeros"):
        as_queries(version, np.zeros((1, D)))
    with pytest.raises(QueryError, match="NaN"):
        as_queries(version, np.full((1, D), np.nan))
    np.testing.assert_allclose(np.linalg.norm(as_queries(version, np.ones(D) * 3), axis=1), 1.0, rtol=1e-6)
    with pytest.raises(QueryError, match="cannot filter on 'colour'.*'group'"):
        search_vectors(version, np.ones((1, D), np.float32) / 8, 5, filters={"colour": ["red"]})
    with pytest.raises(QueryError, match="not values of type int64"):
        search_vectors(version, np.ones((1, D), np.float32) / 8, 5, filters={"year": ["last year"]})
    with pytest.raises(QueryError, match="k must be between 1 and 1000"):
        search_vectors(version, np.ones((1, D), np.float32) / 8, 0)


def test_damaged_cached_file_is_downloaded_again(store, version, tmp_path, caplog):
    fetch_version(store, version.manifest, str(tmp_path))
    path = f"{version_dir(str(tmp_path), version.manifest)}/ids.parquet"
    with open(path, "r+b") as f:
        f.seek(100)
        f.write(b"\0" * 16)
    again = load_index_version(store, "marks", version.version, cache_dir=str(tmp_path))
    assert "ids.parquet is damaged" in caplog.text and "downloading it again" in caplog.text
    assert again.ids.equals(version.ids)



def test_worker_without_a_model_answers_vectors_and_times_out_slow_searches(store, vectors, tmp_path):
    """A version made outside lookalike names no model: vector and id search work, image search says why not;
    a search slower than the request timeout is a 504, not a hung client."""
    import httpx

    from lookalike.serve.context import ApiSettings
    from lookalike.serve.http_api import create_app, running
    from lookalike.serve.worker import ServedIndex, WorkerSettings
    served = ServedIndex(store, WorkerSettings("marks", str(tmp_path)))
    served.start(watch=False)
    assert served.embedder is None and served.status()["image_search"] is False
    with running(create_app(served)) as url:
        r = httpx.post(f"{url}/search/vectors", json={"vectors": [vectors[5].tolist()], "k": 3})
        assert r.status_code == 200 and r.json()["results"][0]["hits"][0]["image_id"] == "img-00000005"
        r = httpx.post(f"{url}/search/images", files={"images": ("a.png", b"\x89PNG")})
        assert r.status_code == 409 and "--model" in r.json()["detail"]
    with running(create_app(served, ApiSettings(request_timeout_s=1e-6))) as url:
        r = httpx.post(f"{url}/search/vectors", json={"vectors": [vectors[5].tolist()], "k": 3})
        assert r.status_code == 504 and "took longer than" in r.json()["detail"]


def test_worker_takes_the_index_s_model_unless_any_model_option_is_given():
    import argparse

    from lookalike.cli.query import search_parser, worker_settings
    parser = argparse.ArgumentParser()
    search_parser(parser)
    base = ["--store", "/tmp/s", "--index", "marks"]
    assert worker_settings(parser.parse_args(base), {}).model is None
    chosen = worker_settings(parser.parse_args([*base, "--pooling", "avg"]), {}).model
    assert chosen is not None and chosen.pooling == "avg"


def test_concurrent_searches_with_different_parameters_get_their_serial_answers(version, vectors):
    """Query workers search one shared index from a thread pool: each request's nprobe and re-scoring travel
    with its call, so concurrent requests get exactly the answers each gets alone."""
    queries = vectors[::1009][:8]
    settings = [SearchParams(nprobe=1, rescore=0), SearchParams(nprobe=64, rescore=0),
                SearchParams(nprobe=2, rescore=200), SearchParams(nprobe=32, rescore=50)]

    def answer(params):
        return [[h.as_dict() for h in hits] for hits in search_vectors(version, queries, 10, params)]

    serial = {params: answer(params) for params in settings}
    assert len({str(a) for a in serial.values()}) == len(settings)  # the settings find different hits
    with ThreadPoolExecutor(8) as pool:
        concurrent = list(pool.map(lambda p: (p, answer(p)), [settings[i % len(settings)] for i in range(400)]))
    wrong = [p for p, got in concurrent if got != serial[p]]
    assert not wrong, f"{len(wrong)} of {len(concurrent)} concurrent searches got another request's parameters"


def expanded_by_hand(vectors, queries, hits, n, alpha):
    """αQE written out: the query plus its top n hits' vectors weighted cos^alpha, normalised."""
    out = []
    for q, row in zip(queries, hits, strict=True):
        top = row[:n]
        v = q + sum(max(h.score, 0.0) ** alpha * vectors[int(h.image_id[4:])] for h in top)
        out.append(v / np.linalg.norm(v))
    return np.asarray(out, dtype=np.float32)


@pytest.mark.parametrize("filters", [None, {"group": ["g3"]}], ids=["unfiltered", "filtered"])
def test_query_expansion_searches_again_with_the_expanded_queries(version, vectors, filters):
    queries = as_queries(version, vectors[::1499] + 0.05)
    params = SearchParams(nprobe=16, rescore=100)
    first = search_vectors(version, queries, 10, params, filters)
    manual = search_vectors(version, expanded_by_hand(vectors, queries, first, 3, 2.0), 10, params, filters)
    expanded = search_vectors(version, queries, 10, SearchParams(nprobe=16, rescore=100, expand=3, expand_alpha=2.0),
                              filters)
    for got, want in zip(expanded, manual, strict=True):
        assert [h.image_id for h in got] == [h.image_id for h in want]
        np.testing.assert_allclose([h.score for h in got], [h.score for h in want], atol=2e-3)  # fp16 vectors
    if filters:
        assert all(h.metadata["group"] == "g3" for row in expanded for h in row)
    # It changes answers (else this test would prove nothing): at least one query's list moved.
    assert any([h.image_id for h in a] != [h.image_id for h in b] for a, b in zip(expanded, first, strict=True))
    with pytest.raises(QueryError, match="expand must be between 0 and 100"):
        search_vectors(version, queries, 10, SearchParams(expand=101))
