"""Exporting a published version as shard bundles (host folders and an S3 prefix), verifying them on arrival,
serving them with query workers, and the fan-out router: merged answers equal the unsharded index's, a dead
or hung shard is reported rather than waited for."""

import socket
import time
from contextlib import ExitStack

import httpx
import numpy as np
import pytest

from lookalike.cli.main import main
from lookalike.core.spark import IN_PROCESS
from lookalike.core.store import Store
from lookalike.dev.synthetic import clustered_vectors
from lookalike.index.export import ExportConfig, run, verify_url
from lookalike.index.publish import VersionError
from lookalike.serve.http_api import create_app, running
from lookalike.serve.router import RouterSettings, create_router
from lookalike.serve.worker import ServedIndex, WorkerSettings

N, D = 12_000, 64


@pytest.fixture(scope="module")
def vectors():
    return clustered_vectors(N, D, clusters=300, spread=0.6, seed=31)


@pytest.fixture(scope="module")
def source(published_store, vectors):
    return published_store(vectors, {"class": [str(i % 7) for i in range(N)]},
                           indexes={"marks": "IVF64,PQ16", "flat": "Flat"})


@pytest.fixture(scope="module")
def destinations(s3_server, tmp_path_factory):
    root = tmp_path_factory.mktemp("hosts")
    return [str(root / "host-0"), str(root / "host-1"), f"s3://{s3_server.new_bucket()}/host-2"]


def export(source, name, destinations, master=IN_PROCESS):
    return run(ExportConfig(store=source.url, name=name, destinations=tuple(destinations), master=master,
                            storage_options=source.options))


def worker(stack: ExitStack, store: Store, name: str, tmp) -> str:
    served = ServedIndex(store, WorkerSettings(name, str(tmp / f"cache-{abs(hash(store.url))}")))
    served.start(watch=False)
    return stack.enter_context(running(create_app(served)))


def assert_same_hits(got: dict, want: dict) -> None:
    for g, w in zip(got["results"], want["results"], strict=True):
        assert [h["image_id"] for h in g["hits"]] == [h["image_id"] for h in w["hits"]]
        np.testing.assert_allclose([h["score"] for h in g["hits"]], [h["score"] for h in w["hits"]], atol=1e-5)


@pytest.mark.slow
def test_export_verify_serve_and_merge_equal_the_unsharded_index(source, destinations, vectors, tmp_path, s3_server):
    summary = export(source, "marks", destinations, master="local[2]")
    shards = summary["shards"]
    assert [s["shard"] for s in shards] == [0, 1, 2] and summary["split"] == "inverted lists"
    assert sum(s["ntotal"] for s in shards) == N and all(s["ntotal"] > N / 6 for s in shards)
    assert [s["range"][0] for s in shards] == [0, shards[0]["range"][1], shards[1]["range"][1]]
    for dest in destinations:
        m = verify_url(dest, s3_server.options if dest.startswith("s3://") else None)
        assert m["version"] == summary["version"] and m["shard"]["shards"] == 3
    assert all(s["skipped"] for s in export(source, "marks", destinations)["shards"])  # idempotent

    queries = vectors[::601] + 0.02
    with ExitStack() as stack:
        unsharded = worker(stack, source, "marks", tmp_path)
        shard_urls = [worker(stack, Store(d, s3_server.options if d.startswith("s3://") else None), "marks",
                             tmp_path) for d in destinations]
        router = stack.enter_context(running(create_router(RouterSettings(tuple(shard_urls)))))
        # With αQE the router expands with the global top hits (shards asked without expansion), as the
        # unsharded worker does with its own.
        for params in ({"nprobe": 16, "rescore": 0}, {"nprobe": 8, "rescore": 100},
                       {"nprobe": 8, "rescore": 100, "expand": 3, "expand_alpha": 2.0}):
            body = {"vectors": queries.tolist(), "k": 10, **params}
            want = httpx.post(f"{unsharded}/search/vectors", json=body).json()
            got = httpx.post(f"{router}/search/vectors", json=body).json()
            assert got["partial"] is False and got["version"] == want["version"]
            assert_same_hits(got, want)
        body = {"image_ids": ["img-00000042", "img-00007001"], "k": 5, "nprobe": 16, "rescore": 0,
                "filters": {"class": ["3"]}}
        want = httpx.post(f"{unsharded}/search/ids", json=body).json()
        got = httpx.post(f"{router}/search/ids", json=body).json()
        assert_same_hits(got, want)
        assert all(h["metadata"]["class"] == "3" for r in got["results"] for h in r["hits"])
        assert "img-00000042" not in [h["image_id"] for h in got["results"][0]["hits"]]
        r = httpx.post(f"{router}/search/ids", json={"image_ids": ["nope"]})
        assert r.status_code == 404 and "nope" in r.json()["detail"]
        r = httpx.post(f"{router}/search/vectors", json={"vectors": [[1.0, 2.0]]})
        assert r.status_code == 400 and "length 64" in r.json()["detail"]  # the shards' own message


@pytest.mark.slow
def test_a_dead_or_hung_shard_is_reported_not_waited_for(source, destinations, vectors, tmp_path, s3_server):
    export(source, "marks", destinations)
    hung = socket.socket()  # accepts connections (the kernel's backlog) and never answers
    hung.bind(("127.0.0.1", 0))
    hung.listen(8)
    hung_url = f"http://127.0.0.1:{hung.getsockname()[1]}"
    body = {"vectors": vectors[:3].tolist(), "k": 5}
    with ExitStack() as stack:
        live = [worker(stack, Store(d, s3_server.options if d.startswith("s3://") else None), "marks", tmp_path)
                for d in destinations[:2]]
        with ExitStack() as doomed:
            dead = worker(doomed, Store(destinations[2], s3_server.options), "marks", tmp_path)
        shards = (*live, dead, hung_url)
        partial = stack.enter_context(running(create_router(RouterSettings(shards, shard_timeout_s=1.0))))
        strict = stack.enter_context(running(create_router(RouterSettings(shards, "error", shard_timeout_s=1.0))))
        started = time.monotonic()
        answer = httpx.post(f"{partial}/search/vectors", json=body, timeout=30).json()
        assert time.monotonic() - started < 5
        assert answer["partial"] is True and answer["missing_shards"] == [dead, hung_url]
        assert all(len(r["hits"]) == 5 for r in answer["results"])
        r = httpx.post(f"{strict}/search/vectors", json=body, timeout=30)
        assert r.status_code == 502 and "2 of 4 shards did not answer" in r.json()["detail"]
        health = httpx.get(f"{partial}/healthz", timeout=30).json()
        assert health["status"] == "degraded" and [s["ok"] for s in health["shards"]] == [True, True, False, False]
    hung.close()


@pytest.mark.slow
def test_damaged_bundle_fails_verification_and_a_re_export_repairs_it(source, destinations, capsys):
    summary = export(source, "marks", destinations)
    target = f"{destinations[0]}/indexes/marks/{summary['version']}/vectors.f16.npy"
    with open(target, "r+b") as f:
        f.seek(300)
        f.write(b"\x00" * 32)
    assert main(["verify", f"{destinations[0]}/indexes/marks/{summary['version']}"]) == 2
    assert "vectors.f16.npy is damaged" in capsys.readouterr().err
    again = export(source, "marks", destinations)
    assert [s["skipped"] for s in again["shards"]] == [False, True, True]
    assert main(["verify", destinations[0]]) == 0
    assert "ok: marks/" in capsys.readouterr().out


def test_flat_version_is_split_by_id_and_merges_exactly(source, vectors, tmp_path):
    dests = [str(tmp_path / "a"), str(tmp_path / "b")]
    summary = export(source, "flat", dests)
    assert summary["split"] == "faiss id modulo shards" and [s["ntotal"] for s in summary["shards"]] == [N // 2] * 2
    with ExitStack() as stack:
        router = stack.enter_context(running(create_router(RouterSettings(tuple(
            worker(stack, Store(d), "flat", tmp_path) for d in dests)))))
        got = httpx.post(f"{router}/search/vectors", json={"vectors": vectors[:4].tolist(), "k": 3}).json()
    truth = np.argsort(-(vectors[:4] @ vectors.T), axis=1)[:, :3]
    assert [[h["image_id"] for h in r["hits"]] for r in got["results"]] == [[f"img-{i:08d}" for i in row]
                                                                             for row in truth]


def test_missing_version_fails_before_any_work(source, tmp_path):
    with pytest.raises(VersionError, match="no complete version 'nope'"):
        run(ExportConfig(store=source.url, name="marks", destinations=(str(tmp_path / "x"),), version="nope",
                         storage_options=source.options))
    assert not (tmp_path / "x").exists()
