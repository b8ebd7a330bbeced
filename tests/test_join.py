"""The similarity join on Spark local[2] with the store on the S3 server: against a published IVF-PQ index vs
the exact join, thresholds and metadata, near-duplicate clusters of real photos, kill and resume, bad input."""


import numpy as np
import pyarrow as pa
import pytest
from support.cli import run_cli_until_committed, store_option_args

from lookalike.batch import join
from lookalike.batch.join import JoinConfig
from lookalike.core.errors import ConfigError
from lookalike.core.layout import JoinLayout
from lookalike.core.spark import IN_PROCESS
from lookalike.core.store import Store
from lookalike.dev import imagefactory
from lookalike.dev.synthetic import clustered_vectors, write_embeddings_version
from lookalike.embed.config import EmbedConfig
from lookalike.embed.provenance import ModelMismatch
from lookalike.index import build as index_build
from lookalike.index.build import BuildIndexConfig
from lookalike.index.publish import VersionError

N, D, Q = 12_000, 64, 1_500
FP = f"synthetic-d{D}"


@pytest.fixture(scope="module")
def store(published_store):
    base = clustered_vectors(N, D, clusters=300, spread=0.6, seed=21)
    store = published_store(base, {"class": [str(i % 45 + 1) for i in range(N)]}, run_id="base")
    write_embeddings_version(store, near(base, Q, seed=22), run_id="queries", parts=3, id_prefix="query")
    return store


def near(base: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Queries from the catalogue's distribution: catalogue vectors moved a little, renormalised."""
    rng = np.random.default_rng(seed)
    q = base[rng.choice(len(base), n)] + rng.normal(0, 0.05, (n, base.shape[1])).astype(np.float32)
    return (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)


def run_join(store, **kw) -> dict:
    kw.setdefault("master", IN_PROCESS)
    return join.run(JoinConfig(store=store.url, storage_options=store.options, **kw))


def pairs_of(store, manifest) -> pa.Table:
    return pa.concat_tables([store.read_parquet(p["key"]) for p in manifest["files"]["pairs"]])


def neighbours(table: pa.Table) -> dict[str, list[str]]:
    out: dict[str, list[tuple[int, str]]] = {}
    for q, r, n in zip(*(table[c].to_pylist() for c in ("query_id", "rank", "neighbor_id")), strict=True):
        out.setdefault(q, []).append((r, n))
    return {q: [n for _, n in sorted(v)] for q, v in out.items()}


@pytest.mark.slow
def test_join_on_spark_agrees_with_the_exact_join(store):
    ann = run_join(store, index="marks", query_embeddings=f"{FP}/queries", k=10, master="local[2]")
    exact = run_join(store, base_embeddings=f"{FP}/base", query_embeddings=f"{FP}/queries", k=10)
    assert ann["counts"] == {"queries": Q, "pairs": Q * 10, "tasks": 3} == exact["counts"]
    got, want = neighbours(pairs_of(store, ann)), neighbours(pairs_of(store, exact))
    assert got.keys() == want.keys() and all(len(v) == 10 for v in got.values())
    recall = np.mean([len(set(got[q]) & set(want[q])) / 10 for q in want])
    assert recall >= 0.9, recall  # the index's default operating point targets 10-R@10 0.95
    table = pairs_of(store, ann)
    scores = np.array(table["score"].to_pylist()).reshape(Q, 10)
    assert (np.diff(scores, axis=1) <= 1e-6).all() and table["rank"].to_pylist()[:10] == list(range(1, 11))
    assert ann["base"]["index"] == "marks" and ann["timings"]["queries_per_s"] > 0


@pytest.mark.slow
def test_threshold_and_metadata_of_both_sides(store):
    m = run_join(store, index="marks", query_embeddings=f"{FP}/queries", k=20, threshold=0.8, with_metadata=True)
    table = pairs_of(store, m)
    assert 0 < table.num_rows < Q * 20 and min(table["score"].to_pylist()) >= 0.8
    assert {"query_uri", "query_content_sha256", "neighbor_uri", "neighbor_class"} <= set(table.column_names)
    row = table.slice(0, 1).to_pylist()[0]
    assert row["query_uri"] == f"mem://{row['query_id']}" and row["neighbor_uri"] == f"mem://{row['neighbor_id']}"
    assert row["neighbor_class"] == str(int(row["neighbor_id"].split("-")[1]) % 45 + 1)


@pytest.mark.slow
def test_self_join_groups_planted_near_duplicates_into_clusters(s3_store, model, tmp_path):
    """Each photo beside a resized, a recompressed and a cropped copy: one cluster per photo, nothing else."""
    photos = ("coffee", "chelsea", "astronaut", "rocket", "coins", "horse", "camera", "brick", "clock")
    lonely = ("colorwheel", "text")  # no copies: in no cluster
    root = tmp_path / "catalogue"
    root.mkdir()
    for name in photos + lonely:
        img = imagefactory.photo(name, 256)
        (root / f"{name}.jpg").write_bytes(imagefactory.jpeg_bytes(img))
        if name in photos:
            w, h = img.size
            (root / f"{name}-small.jpg").write_bytes(imagefactory.jpeg_bytes(img.resize((w // 2, h // 2))))
            (root / f"{name}-q25.jpg").write_bytes(imagefactory.jpeg_bytes(img, quality=25))
            crop = img.crop((int(w * .08), int(h * .08), int(w * .92), int(h * .92)))
            (root / f"{name}-crop.png").write_bytes(imagefactory.png_bytes(crop))
    store = Store(s3_store.url, s3_store.options)
    from lookalike.embed import job as embed
    embedded = embed.run(EmbedConfig(images=str(root), store=store.url, storage_options=store.options,
                                     master=IN_PROCESS))
    index_build.run(BuildIndexConfig(store=store.url, storage_options=store.options, name="photos",
                                     master=IN_PROCESS, publish=True, queries=5))
    m = run_join(store, index="photos", self_join=True, k=10, threshold=0.7)
    assert m["counts"]["clusters"] == len(photos) and m["counts"]["largest_cluster"] == 4
    clusters = store.read_parquet(m["files"]["clusters"]["key"]).to_pylist()
    groups: dict[int, set[str]] = {}
    for row in clusters:
        groups.setdefault(row["cluster_id"], set()).add(row["image_id"])
    want = {frozenset({f"{p}.jpg", f"{p}-small.jpg", f"{p}-q25.jpg", f"{p}-crop.png"}) for p in photos}
    assert {frozenset(g) for g in groups.values()} == want
    pairs = pairs_of(store, m)
    assert all(q != n for q, n in zip(pairs["query_id"].to_pylist(), pairs["neighbor_id"].to_pylist(), strict=True))
    # The same sweep exactly, over the embeddings version itself, finds the same clusters.
    exact = run_join(store, base_embeddings=f"{embedded['fingerprint_id']}/{embedded['run_id']}", self_join=True,
                     k=10, threshold=0.7)
    assert store.read_parquet(exact["files"]["clusters"]["key"]).to_pylist() == clusters


@pytest.mark.slow
def test_killed_join_resumes_with_only_unfinished_tasks(store, tmp_path):
    base = clustered_vectors(N, D, clusters=300, spread=0.6, seed=21)
    write_embeddings_version(store, near(base, 40 * 400, seed=23), run_id="many", parts=40, id_prefix="many")
    layout = JoinLayout(store, "crashy")
    committed = run_cli_until_committed(
        ["join", "--store", store.url, *store_option_args(store.options), "--base-embeddings", f"{FP}/base",
         "--query-embeddings", f"{FP}/many", "--k", "50", "--master", "in-process", "--run-id", "crashy"],
        store, f"{layout.prefix}/_tasks", 3)
    assert 3 <= len(committed) < 40, "the kill should land mid-run"
    assert not store.exists(layout.manifest)
    before = {k: store.read_bytes(k) for k in committed}

    resumed = run_join(store, base_embeddings=f"{FP}/base", query_embeddings=f"{FP}/many", k=50, run_id="crashy")
    assert {k: store.read_bytes(k) for k in committed} == before  # finished tasks were not redone
    clean = run_join(store, base_embeddings=f"{FP}/base", query_embeddings=f"{FP}/many", k=50, run_id="clean")
    assert resumed["counts"] == clean["counts"] == {"queries": 16_000, "pairs": 800_000, "tasks": 40}
    assert pairs_of(store, resumed).equals(pairs_of(store, clean))
    again = run_join(store, base_embeddings=f"{FP}/base", query_embeddings=f"{FP}/many", k=50, run_id="crashy")
    assert again == resumed  # a finished run id returns its manifest


def test_bad_input_fails_before_any_work(store):
    other = clustered_vectors(100, 32, seed=1)
    write_embeddings_version(store, other, run_id="other", parts=1, fingerprint_id="synthetic-d32")
    with pytest.raises(ModelMismatch, match="embedded by synthetic-d32 .dim 32. but index marks/.* holds vectors "
                                            f"of {FP} .dim {D}."):
        run_join(store, index="marks", query_embeddings="synthetic-d32/other")
    with pytest.raises(VersionError, match="no complete version 'nope'"):
        run_join(store, index="marks", index_version="nope", query_embeddings=f"{FP}/queries")
    with pytest.raises(VersionError, match="no published version"):
        run_join(store, index="never-built", query_embeddings=f"{FP}/queries")
    with pytest.raises(ConfigError, match="no completed embeddings"):
        run_join(store, index="marks", query_embeddings="synthetic-d999")
    with pytest.raises(ConfigError, match="exactly one base"):
        run_join(store, query_embeddings=f"{FP}/queries")
    with pytest.raises(ConfigError, match="needs --threshold"):
        run_join(store, index="marks", self_join=True)
    with pytest.raises(ConfigError, match="give the queries"):
        run_join(store, index="marks")
    assert not [k for k in store.list("joins") if "manifest" in k.lower()]


def test_cli_prints_a_summary(store, capsys):
    from lookalike.cli.main import main
    assert main(["join", "--store", store.url, *store_option_args(store.options), "--index", "marks",
                 "--query-embeddings", f"{FP}/queries", "--k", "3", "--master", "in-process"]) == 0
    assert f"{Q:,} queries → {Q * 3:,} pairs" in capsys.readouterr().out
