"""Binary hash codes (ITQ bits in inverted lists, Hamming shortlists re-scored exactly): chosen, built on Spark,
published, served, exported to shard hosts and updated in place like IVF-PQ."""

from contextlib import ExitStack

import faiss
import httpx
import numpy as np
import pytest

from lookalike.core.errors import ConfigError
from lookalike.core.spark import IN_PROCESS
from lookalike.core.store import Store
from lookalike.dev.synthetic import clustered_vectors, write_embeddings_version
from lookalike.index import build as index_build
from lookalike.index.build import BuildIndexConfig
from lookalike.index.choice import IndexChoiceError, choose_index, describe_factory
from lookalike.index.export import ExportConfig
from lookalike.index.export import run as export
from lookalike.index.reader import load_index_version
from lookalike.index.search import SearchParams, ranks_by_hamming, search
from lookalike.serve.http_api import create_app, running
from lookalike.serve.router import RouterSettings, create_router
from lookalike.serve.worker import ServedIndex, WorkerSettings

N, D = 12_000, 64


@pytest.fixture(scope="module")
def vectors():
    return clustered_vectors(N, D, clusters=300, spread=0.6, seed=17)


@pytest.fixture(scope="module")
def store(s3_server, vectors):
    store = Store(f"s3://{s3_server.new_bucket()}/store", s3_server.options)
    write_embeddings_version(store, vectors, parts=3)
    return store


def build(store, **kw) -> dict:
    return index_build.run(BuildIndexConfig(store=store.url, storage_options=store.options, name="marks",
                                            queries=200, **{"master": "local[2]", **kw}))


def test_the_builder_sizes_binary_codes_to_the_budget_and_refuses_what_cannot_work():
    big = choose_index(1_000_000, 256, 48 << 20, codes="binary")
    assert big.factory == "IVF4096_HNSW32,ITQ256,SH" and big.code_bits == 256 and big.is_binary
    assert big.bytes_per_vector == 256 / 8 + 8 and "Hamming" in big.reason
    # 19 bytes a vector are left once the 8 MiB quantizer and the ids are paid: the longest code that fits is 128 bits.
    assert choose_index(1_000_000, 256, 34 << 20, codes="binary").code_bits == 128
    assert choose_index(1_000_000, 256, 48 << 20).factory.startswith("OPQ32_")  # auto: IVF-PQ
    assert choose_index(10_000, 256, 1 << 30, codes="binary").factory == "Flat"  # exact below the threshold
    with pytest.raises(IndexChoiceError, match="at least 64 dimensions"):
        choose_index(100_000, 32, 1 << 30, codes="binary")
    with pytest.raises(IndexChoiceError, match="raise --memory-budget"):
        choose_index(10_000_000, 256, 64 << 20, codes="binary")
    assert describe_factory("IVF64,ITQ64,SH", N, D).code_bits == 64
    with pytest.raises(IndexChoiceError, match="at most d = 64 bits"):
        describe_factory("IVF64,ITQ128,SH", N, D)
    with pytest.raises(IndexChoiceError, match="inverted lists"):
        describe_factory("ITQ64,LSH", N, D)
    with pytest.raises(ConfigError, match="give one"):
        BuildIndexConfig(store="/tmp/x", name="marks", factory="IVF64,PQ16", codes="binary")
    with pytest.raises(ConfigError, match="codes 'bits'"):
        BuildIndexConfig(store="/tmp/x", name="marks", codes="bits")


@pytest.mark.slow
def test_a_binary_index_is_built_published_searched_exactly_and_updated_in_place(store, vectors):
    m = build(store, codes="binary", memory_budget=1 << 20, flat_threshold=1000, publish=True)
    assert m["factory"] == "IVF256,ITQ64,SH" and m["choice"]["code_bits"] == 64
    # 8 bytes of code and an 8-byte id each, plus the quantizer and ITQ's matrices (8.4 bytes a vector at 12k).
    assert m["bytes_per_vector"] < 8 + 8 + 9
    assert all(r["rescore"] > 0 for r in m["recall_table"])  # Hamming shortlists are always re-scored
    point = m["operating_point"]
    assert point["target_met"] and point["recall_at_10"] >= 0.95 and point["rescore"] >= 50

    version = load_index_version(store, "marks")
    assert ranks_by_hamming(version.index) and isinstance(faiss.downcast_index(version.index),
                                                          faiss.IndexIVFSpectralHash)
    queries = vectors[::120] + 0.01
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    exact = faiss.IndexFlatIP(D)
    exact.add(vectors)
    _, want_ids = exact.search(queries, 10)
    scores, ids = version.search(queries, 10)
    assert np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ids, want_ids, strict=True)]) >= 0.9
    # Even asked for no re-scoring, the Hamming shortlist (k long, then) is re-scored: scores are cosines.
    for params in (SearchParams(nprobe=16, rescore=0), version.default_params):
        scores, ids = version.search(queries, 10, params)
        cosines = np.einsum("qd,qkd->qk", queries, vectors[ids])
        np.testing.assert_allclose(scores, cosines, atol=2e-3)  # the vectors are stored as float16
        assert np.all(np.diff(scores, axis=1) <= 1e-6)
    with pytest.raises(ValueError, match="stored vectors"):
        search(version.index, queries, 10, SearchParams(nprobe=4))

    # The nightly path: LATEST's binary index updated in place, its ids kept, new vectors found.
    fresh = clustered_vectors(400, D, clusters=300, spread=0.6, seed=17, part=5)  # the same centres
    ids = [f"img-{i:08d}" for i in range(300, N)] + [f"new-{i:04d}" for i in range(400)]
    hashes = [f"{i:064x}" for i in range(300, N)] + [f"{i:064x}-new" for i in range(400)]
    write_embeddings_version(store, np.concatenate([vectors[300:], fresh]), run_id="night2", parts=3, image_ids=ids,
                             content_hashes=hashes)
    second = build(store, incremental=True, codes="binary", publish=True)
    assert second["build_mode"]["incremental"] is True, second["build_mode"]
    assert second["factory"] == m["factory"] and "train_s" not in second["timings"]
    after = load_index_version(store, "marks")
    assert after.faiss_id_of("img-00005000") == version.faiss_id_of("img-00005000")
    assert after.faiss_id_of("img-00000001") is None
    scores, hits = after.search(fresh[:5], 1)
    assert [after.ids["image_id"][int(after.row_of_faiss[h])].as_py() for h in hits[:, 0]] == \
        [f"new-{i:04d}" for i in range(5)]
    assert np.all(scores[:, 0] > 0.99)
    # Asking for the other codes retrains instead of editing LATEST.
    third = build(store, incremental=True, codes="pq", master=IN_PROCESS, publish=False)
    assert third["build_mode"]["incremental"] is False and "--codes pq" in third["build_mode"]["reason"]


@pytest.mark.slow
def test_binary_shards_exported_served_and_merged_equal_the_unsharded_index(store, vectors, tmp_path, s3_server):
    m = build(store, codes="binary", memory_budget=1 << 20, flat_threshold=1000, master=IN_PROCESS, publish=True)
    hosts = [str(tmp_path / "host-0"), str(tmp_path / "host-1")]
    summary = export(ExportConfig(store=store.url, name="marks", destinations=tuple(hosts), master=IN_PROCESS,
                                  storage_options=store.options))
    assert summary["split"] == "inverted lists" and sum(s["ntotal"] for s in summary["shards"]) == m["ntotal"]
    queries = vectors[::503] + 0.02
    with ExitStack() as stack:
        def worker(source: Store) -> str:
            served = ServedIndex(source, WorkerSettings("marks", str(tmp_path / f"cache-{abs(hash(source.url))}")))
            served.start(watch=False)
            return stack.enter_context(running(create_app(served)))

        unsharded = worker(store)
        router = stack.enter_context(running(create_router(RouterSettings(tuple(worker(Store(h)) for h in hosts)))))
        body = {"vectors": queries.tolist(), "k": 10, "nprobe": 32, "rescore": 200}
        want = httpx.post(f"{unsharded}/search/vectors", json=body).json()
        got = httpx.post(f"{router}/search/vectors", json=body).json()
        assert got["partial"] is False and got["version"] == want["version"]
        for g, w in zip(got["results"], want["results"], strict=True):
            # Each shard re-scores its own Hamming shortlist, so the merged list can only hold more true
            # neighbours than the unsharded one; where both rank the same images, their scores agree.
            common = {h["image_id"]: h["score"] for h in w["hits"]}
            shared = [(h["score"], common[h["image_id"]]) for h in g["hits"] if h["image_id"] in common]
            assert len(shared) >= 8
            np.testing.assert_allclose(*zip(*shared, strict=True), atol=1e-5)
            assert g["hits"][0]["score"] >= w["hits"][0]["score"] - 1e-6


@pytest.mark.slow
def test_a_binary_index_larger_than_the_budget_is_merged_on_disk_and_searches_the_same(vectors, tmp_path):
    local = Store(str(tmp_path / "store"))
    write_embeddings_version(local, vectors, parts=3)
    kw = {"factory": "IVF64,ITQ64,SH", "master": IN_PROCESS, "queries": 100, "name": "marks"}
    in_memory = index_build.run(BuildIndexConfig(store=local.url, publish=True, **kw))
    on_disk = index_build.run(BuildIndexConfig(store=local.url, memory_budget=100_000, **kw))
    assert on_disk["on_disk"] is True and in_memory["on_disk"] is False
    a = load_index_version(local, "marks", in_memory["version"], cache_dir=str(tmp_path / "cache"))
    b = load_index_version(local, "marks", on_disk["version"], cache_dir=str(tmp_path / "cache"))
    params = SearchParams(nprobe=8, rescore=50)
    (sa, ia), (sb, ib) = a.search(vectors[::500], 10, params), b.search(vectors[::500], 10, params)
    np.testing.assert_array_equal(ia, ib)
    np.testing.assert_allclose(sa, sb)
