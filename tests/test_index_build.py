"""build_index on Spark local[2] with the store on the S3 server: choice, distributed == single-process,
atomic publish under a polling reader, kill mid-build, rollback and retention, the recall gate, bad input."""

import json
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from lookalike.core.errors import ConfigError
from lookalike.core.layout import IndexLayout
from lookalike.core.store import Store
from lookalike.dev.synthetic import clustered_vectors, write_embeddings_version
from lookalike.index import build as index_build
from lookalike.index import publish
from lookalike.index.build import BuildIndexConfig, IndexInputError
from lookalike.index.choice import IndexChoiceError, choose_index
from lookalike.index.publish import VersionError
from lookalike.index.reader import load_index_version
from lookalike.index.recall import RecallTooLow
from lookalike.index.search import SearchParams, deserialize, search_parameters, search_with

N, D = 12_000, 64
IVF = "IVF64,PQ16"


@pytest.fixture(scope="module")
def vectors():
    # Loose clusters: on tight ones even a 1-byte code plus exact re-scoring finds every neighbour.
    return clustered_vectors(N, D, clusters=1000, spread=0.8, seed=3)


@pytest.fixture
def store(s3_store, vectors):
    store = Store(s3_store.url, s3_store.options)
    write_embeddings_version(store, vectors, parts=4)
    return store


def build(store, **kw) -> dict:
    kw.setdefault("name", "logos")
    kw.setdefault("master", "local[2]")
    kw.setdefault("queries", 200)
    return index_build.run(BuildIndexConfig(store=store.url, storage_options=store.options, **kw))


def test_choice_follows_size_and_budget():
    assert choose_index(10_000, 256, 1 << 30).factory == "Flat"
    big = choose_index(1_000_000, 256, 48 << 20)
    assert big.factory == "OPQ32_128,IVF4096_HNSW32,PQ32" and big.nlist == 4096
    assert "48 MiB budget" in big.reason
    assert choose_index(200_000, 256, 1 << 30).factory.startswith("OPQ128_")  # room for the largest code
    with pytest.raises(IndexChoiceError, match="raise --memory-budget"):
        choose_index(10_000_000, 256, 32 << 20)


@pytest.mark.slow
def test_distributed_build_equals_single_process_build(store, vectors):
    """Parts added by Spark tasks and merged == every vector added in one process to the same trained index."""
    built = build(store, factory=IVF, publish=True)
    version = load_index_version(store, "logos", built["version"])
    layout = IndexLayout(store, "logos", built["version"])
    single = deserialize(store.read_bytes(layout.key("trained.faiss")))
    single.add_with_ids(vectors, np.arange(N, dtype=np.int64))
    assert version.index.ntotal == single.ntotal == N
    queries = vectors[::97]
    for nprobe in (1, 4, 16):
        params = SearchParams(nprobe=nprobe)
        da, ia = search_with(version.index, queries, 10, search_parameters(version.index, params))
        db, ib = search_with(single, queries, 10, search_parameters(single, params))
        np.testing.assert_array_equal(ia, ib)
        np.testing.assert_array_equal(da, db)
    # Training is seeded on a seeded sample: building again in one process gives the same recall table.
    again = build(store, factory=IVF, master="in-process")
    def recalls(m):
        return [(r["nprobe"], r["rescore"], r["recall_at_1"], r["recall_at_10"]) for r in m["recall_table"]]
    assert recalls(again) == recalls(built)
    # ids.parquet maps faiss ids back to the embeddings' image ids, in order.
    assert version.ids["image_id"].to_pylist()[:3] == ["img-00000000", "img-00000001", "img-00000002"]
    assert version.ids["faiss_id"].to_pylist() == list(range(N))


@pytest.mark.slow
def test_manifest_records_choice_recall_table_and_files(store):
    m = build(store, memory_budget=400_000, flat_threshold=1000, publish=True)
    assert m["factory"] == "OPQ16_64,IVF256,PQ16" and "400000" not in m["factory_reason"]
    point = m["operating_point"]
    assert point["target_met"] and point["recall_at_10"] >= 0.95
    assert m["default_search"] == point["params"]
    fastest_reaching = max((r for r in m["recall_table"] if r["recall_at_10"] >= 0.95), key=lambda r: r["qps"])
    assert (point["nprobe"], point["rescore"]) == (fastest_reaching["nprobe"], fastest_reaching["rescore"])
    assert {f["key"].rsplit("/", 1)[-1] for f in m["files"]} == {
        "index.faiss", "vectors.f16.npy", "trained.faiss", "ids.parquet"}
    assert all(len(f["sha256"]) == 64 and f["bytes"] > 0 for f in m["files"])
    assert m["fingerprint"]["dim"] == D and m["ntotal"] == N and m["metric"] == "L2"
    assert publish.latest_version(store, "logos") == m["version"]
    assert not store.list(f"indexes/logos/_build/{m['version']}")  # scratch cleaned up


@pytest.mark.slow
def test_exact_below_threshold_has_perfect_recall(store):
    m = build(store, memory_budget=1 << 30)
    assert m["factory"] == "Flat"
    assert m["operating_point"]["recall_at_10"] == 1.0


@pytest.mark.slow
def test_recall_gate_refuses_a_bad_index_and_force_overrides(store):
    good = build(store, factory=IVF, publish=True)
    with pytest.raises(RecallTooLow, match=r"best 10-R@10 reached is 0\.[0-8]\d* < --min-recall 0.9"):
        build(store, factory="IVF64,PQ4", min_recall=0.9, publish=True)
    assert publish.latest_version(store, "logos") == good["version"]
    forced = build(store, factory="IVF64,PQ4", min_recall=0.9, force=True, publish=True)
    assert publish.latest_version(store, "logos") == forced["version"]
    assert forced["operating_point"]["recall_at_10"] < 0.9


@pytest.mark.slow
def test_polling_reader_never_sees_an_incomplete_version(store):
    seen, errors, stop = [], [], threading.Event()

    def reader():
        reading = Store(store.url, store.options)
        while not stop.is_set():
            try:
                if publish.latest_version(reading, "logos") is None:
                    continue
                version = load_index_version(reading, "logos")  # verifies every file's sha256
                seen.append(version.manifest["version"])
            except Exception as e:  # any failure to load what LATEST names is a broken publish
                errors.append(repr(e))
            time.sleep(0.02)

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        published = [build(store, factory=IVF, publish=True, queries=50)["version"] for _ in range(3)]
        deadline = time.monotonic() + 30
        while published[-1] not in seen and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()
        thread.join()
    assert errors == []
    assert set(seen) <= set(published) and published[-1] in seen


@pytest.mark.slow
def test_build_killed_mid_way_leaves_latest_untouched_and_rerun_completes(store, s3_store):
    first = build(store, factory=IVF, publish=True, queries=50)
    o = s3_store.options
    cmd = [sys.executable, "-m", "lookalike.cli.main", "build-index", "--store", store.url, "--index", "logos",
           f"--store-option=key={o['key']}", f"--store-option=secret={o['secret']}",
           f"--store-option=client_kwargs.endpoint_url={o['client_kwargs']['endpoint_url']}",
           "--store-option=client_kwargs.region_name=us-east-1", "--factory", IVF, "--master", "in-process",
           "--publish"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    killed_in = None
    while time.monotonic() < deadline and proc.poll() is None:
        scratch = [k for k in store.list("indexes/logos/_build") if first["version"] not in k]
        if scratch and any("partial-" in f for f in store.list(scratch[0])):
            proc.send_signal(signal.SIGKILL)
            killed_in = scratch[0]
            break
        time.sleep(0.02)
    proc.wait()
    assert killed_in, "the build should be killed while adding"
    assert publish.latest_version(store, "logos") == first["version"]
    incomplete = [r for r in publish.list_versions(store, "logos") if not r["complete"]]
    assert all(not r["latest"] for r in incomplete)
    rerun = build(store, factory=IVF, publish=True, queries=50)
    assert publish.latest_version(store, "logos") == rerun["version"] != first["version"]


@pytest.mark.slow
def test_rollback_and_retention(store):
    versions = [build(store, factory=IVF, publish=True, queries=50)["version"] for _ in range(4)]
    publish.set_latest(store, "logos", versions[1])  # roll back
    assert publish.latest_version(store, "logos") == versions[1]
    assert publish.read_latest(store, "logos")["previous"] == versions[3]
    deleted = publish.retain(store, "logos", keep=1)
    # Kept: the newest (versions[3], also LATEST's predecessor) and LATEST itself (versions[1]).
    assert sorted(deleted) == sorted([versions[0], versions[2]])
    left = {r["version"] for r in publish.list_versions(store, "logos")}
    assert left == {versions[1], versions[3]}
    with pytest.raises(VersionError, match="no complete version"):
        publish.set_latest(store, "logos", versions[0])
    assert load_index_version(store, "logos").manifest["version"] == versions[1]


@pytest.mark.slow
def test_corrupt_file_is_caught_on_load(store, s3_store):
    m = build(store, factory=IVF, publish=True, queries=50)
    key = IndexLayout(store, "logos", m["version"]).key("index.faiss")
    data = bytearray(store.read_bytes(key))
    data[len(data) // 2] ^= 0xFF
    store.write_bytes(key, bytes(data))
    with pytest.raises(VersionError, match="index.faiss is damaged in the store"):
        load_index_version(store, "logos")


def test_bad_embeddings_fail_before_any_work(s3_store, vectors):
    store = Store(s3_store.url, s3_store.options)
    with pytest.raises(ConfigError, match="embeddings of 0 models"):
        build(store)
    broken = vectors[:2000].copy()
    broken[5] = np.nan
    broken[7] = 0.0
    write_embeddings_version(store, broken, parts=2, fingerprint_id="broken-d64")
    with pytest.raises(IndexInputError, match="1 vectors with NaN/inf and 1 all-zero vectors"):
        build(store, embeddings="broken-d64")
    write_embeddings_version(store, vectors[:2000] * 3, parts=2, fingerprint_id="unnormalised-d64")
    with pytest.raises(IndexInputError, match="not L2-normalised"):
        build(store, embeddings="unnormalised-d64")
    with pytest.raises(ConfigError, match="choose one with --embeddings"):
        build(store)
    with pytest.raises(Exception, match="no completed embeddings|not complete"):
        build(store, embeddings="broken-d64/no-such-run")
    with pytest.raises(VersionError, match="has no published version"):
        load_index_version(store, "never-built")
    write_embeddings_version(store, vectors[:2000], parts=2, fingerprint_id="fine-d64")
    with pytest.raises(IndexChoiceError, match="raise --memory-budget"):
        build(store, embeddings="fine-d64", memory_budget=20_000, flat_threshold=10)


@pytest.mark.slow
def test_incremental_update_keeps_ids_drops_removed_adds_new_and_retrains_on_drift(store, vectors):
    first = build(store, factory=IVF, publish=True)
    ids = [f"img-{i:08d}" for i in range(N)]
    hashes = [f"{i:064x}" for i in range(N)]
    fresh = clustered_vectors(700, D, clusters=1000, spread=0.8, seed=3)[::-1].copy()  # same distribution
    keep = list(range(500, N))                       # images 0..499 are removed
    changed = list(range(500, 800))                  # their content changed
    next_vectors = np.concatenate([vectors[keep], fresh])
    next_vectors[: len(changed)] = clustered_vectors(300, D, clusters=1000, spread=0.8, seed=11)
    next_ids = [ids[i] for i in keep] + [f"new-{i:04d}" for i in range(700)]
    next_hashes = [f"{i:064x}-changed" if i in set(changed) else hashes[i] for i in keep] + \
        [f"{i:064x}-new" for i in range(700)]
    write_embeddings_version(store, next_vectors, run_id="night2", parts=3, image_ids=next_ids,
                             content_hashes=next_hashes)
    second = build(store, incremental=True, publish=True)
    mode = second["build_mode"]
    assert mode["incremental"] is True, mode
    assert (mode["checks"]["added"], mode["checks"]["removed"]) == (300 + 700, 500 + 300)
    assert second["ntotal"] == len(next_ids) and "train_s" not in second["timings"]
    assert second["operating_point"]["recall_at_10"] >= 0.95

    before = load_index_version(store, "logos", first["version"]).ids.to_pydict()
    after = load_index_version(store, "logos")
    old_id = dict(zip(before["image_id"], before["faiss_id"], strict=True))
    new_id = dict(zip(after.ids["image_id"].to_pylist(), after.ids["faiss_id"].to_pylist(), strict=True))
    assert "img-00000000" not in new_id                             # removed
    assert new_id["img-00005000"] == old_id["img-00005000"]         # unchanged: same faiss id
    assert new_id["img-00000600"] > max(old_id.values())            # changed: a fresh id
    scores, hits = after.search(fresh[:5], 1)                        # added vectors find themselves
    assert [after.ids["image_id"][int(np.flatnonzero(after.ids["faiss_id"].to_numpy() == h)[0])].as_py()
            for h in hits[:, 0]] == [f"new-{i:04d}" for i in range(5)]
    assert np.all(scores[:, 0] > 0.99)

    # A catalogue that moved far from the training data is retrained, and the manifest says why.
    drifted = clustered_vectors(N, D, clusters=50, spread=0.3, seed=99)
    write_embeddings_version(store, drifted, run_id="night3", parts=3, id_prefix="other")
    third = build(store, incremental=True, publish=True)
    assert third["build_mode"]["incremental"] is False
    assert "retrained" in third["build_mode"]["reason"] and "train_s" in third["timings"]


@pytest.fixture(params=["s3", "local"])
def any_store(request, vectors, tmp_path):
    """The S3 store, or a local folder (whose version folders do not exist until something is written)."""
    if request.param == "s3":
        return request.getfixturevalue("store")
    local = Store(str(tmp_path / "local-store"))
    write_embeddings_version(local, vectors, parts=4)
    return local


@pytest.mark.slow
def test_index_larger_than_the_budget_is_merged_on_disk_and_searches_the_same(any_store, vectors, tmp_path):
    store = any_store
    in_memory = build(store, factory=IVF, queries=100)
    on_disk = build(store, factory=IVF, queries=100, memory_budget=100_000)  # 12k × 24 B > 100 kB
    assert (in_memory["on_disk"], on_disk["on_disk"]) == (False, True)
    assert "index.ivfdata" in {f["key"].rsplit("/", 1)[-1] for f in on_disk["files"]}
    a = load_index_version(store, "logos", in_memory["version"])
    b = load_index_version(store, "logos", on_disk["version"], cache_dir=str(tmp_path / "cache"))
    params = SearchParams(nprobe=8, rescore=50)
    _, ia = a.search(vectors[::211], 10, params)
    _, ib = b.search(vectors[::211], 10, params)
    np.testing.assert_array_equal(ia, ib)


@pytest.mark.slow
def test_cli_lists_rolls_back_and_refuses_unknown_versions(store, s3_store, capsys):
    from lookalike.cli.main import main
    o = s3_store.options
    opts = ["--store", store.url, f"--store-option=key={o['key']}", f"--store-option=secret={o['secret']}",
            f"--store-option=client_kwargs.endpoint_url={o['client_kwargs']['endpoint_url']}",
            "--store-option=client_kwargs.region_name=us-east-1"]
    assert main(["build-index", *opts, "--index", "logos", "--factory", IVF, "--publish", "--queries", "50",
                 "--master", "in-process"]) == 0
    first = capsys.readouterr().out
    assert first.startswith("index logos/") and "10-R@10" in first and "target met" in first
    assert main(["build-index", *opts, "--index", "logos", "--factory", IVF, "--publish", "--queries", "50",
                 "--master", "in-process", "--json"]) == 0
    second = json.loads(capsys.readouterr().out)["version"]
    v1 = first.split()[1].split("/")[1].rstrip(":")
    assert main(["indexes", "list", *opts, "--index", "logos"]) == 0
    listing = capsys.readouterr().out.splitlines()
    assert listing[1].startswith(second) and "LATEST" in listing[1] and listing[2].startswith(v1)
    assert main(["publish", *opts, "--index", "logos", "--rollback", v1]) == 0
    assert publish.latest_version(store, "logos") == v1
    assert main(["publish", *opts, "--index", "logos", "--rollback", "20990101T000000Z-000000"]) == 2
    assert "no complete version" in capsys.readouterr().err


def test_the_streamed_exact_scorer_is_the_file_faiss_writes_and_maps(tmp_path):
    """write_exact_scorer builds the re-scoring index a chunk at a time on disk; it must be byte for byte what
    faiss serialises (so a faiss that changes its layout fails here, not in a search) and score the same."""
    import faiss

    from lookalike.index.search import exact_scorer, write_exact_scorer
    vectors = clustered_vectors(3001, 24, clusters=30, seed=5).astype(np.float16)
    mapped = write_exact_scorer(vectors, str(tmp_path / "exact.faiss"), chunk_rows=1000)
    assert (tmp_path / "exact.faiss").read_bytes() == faiss.serialize_index(exact_scorer(vectors)).tobytes()
    queries = vectors[:7].astype(np.float32)
    assert np.array_equal(mapped.search(queries, 5)[1], exact_scorer(vectors).search(queries, 5)[1])


def test_string_keys_are_the_same_for_the_same_string_in_any_array_and_differ_for_other_strings():
    import hashlib

    import pyarrow as pa

    from lookalike.core.row_keys import string_keys
    hashes = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(6)]
    odd = ["", "ab", "ab\x00", "b", "é" * 40, "x" * 70_000, None]  # padding, multi-byte, longer than a gather
    whole = string_keys(pa.array(hashes + odd))
    assert len(set(whole.tolist())) == 12 and whole[-1] == whole[6]  # null is keyed as the empty string
    assert string_keys(pa.chunked_array([pa.array(odd[:2] + hashes[3:]), pa.array(hashes[:3])])).tolist() == \
        whole[[6, 7, 3, 4, 5, 0, 1, 2]].tolist()
    assert string_keys(pa.array(hashes).slice(4)).tolist() == whole[4:6].tolist()
    assert string_keys(pa.array(hashes + odd, pa.large_string())).tolist() == whole.tolist()


def test_rows_are_matched_on_id_keys_and_a_repeated_id_is_refused():
    import pyarrow as pa
    import pytest

    from lookalike.core.row_keys import KeyCollision, RowKeys, match_rows

    def keys(ids):
        return RowKeys.of([pa.record_batch({"image_id": ids, "content_sha256": ["h"] * len(ids)})])
    old = keys([f"img-{i}" for i in range(1000)])
    new = keys(["new-1", "img-999", "img-0", "img-500"])
    assert match_rows(old, new).tolist() == [-1, 999, 0, 500]
    assert match_rows(keys([]), new).tolist() == [-1] * 4
    with pytest.raises(KeyCollision, match="the new version has 1"):
        match_rows(old, keys(["img-1", "img-2", "img-1"]))


def test_rows_of_a_version_are_read_batch_by_batch_across_parts(tmp_path):
    """read_rows streams each part's batches (65,536 rows) and stops after the last row wanted."""
    from lookalike.embed.versions import open_ref
    vectors = clustered_vectors(150_000, 4, clusters=10, seed=2)
    write_embeddings_version(Store(str(tmp_path)), vectors, parts=2, fingerprint_id="rows-d4")
    version = open_ref(Store(str(tmp_path)), "rows-d4/synthetic")
    rows = np.array([149_999, 0, 65_535, 65_536, 74_999, 75_000, 140_000, 3, 3])
    assert np.allclose(version.read_rows(rows), vectors[rows], atol=1e-3)
    assert version.read_rows(np.zeros(0, np.int64)).shape == (0, 4)
