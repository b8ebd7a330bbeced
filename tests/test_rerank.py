"""Re-ranking in the descriptor space on hand-checked small cases: αQE's arithmetic, DBA over neighbour lists,
k-reciprocal re-ranking preferring the candidate whose neighbourhood holds the query, and the DBA version built
on Spark against a single-process computation."""

import numpy as np
import pytest

from lookalike.core.errors import ConfigError
from lookalike.core.spark import IN_PROCESS
from lookalike.core.store import Store
from lookalike.dev.synthetic import clustered_vectors, write_embeddings_version
from lookalike.embed.versions import open_version
from lookalike.index import augment
from lookalike.index import build as index_build
from lookalike.index.build import BuildIndexConfig
from lookalike.index.reader import load_index_version
from lookalike.index.rerank import Expansion, KReciprocal, NeighbourLists, expand, k_reciprocal_rerank
from lookalike.retrieval.query import search_vectors


def unit(*rows):
    a = np.asarray(rows, dtype=np.float32)
    return a / np.linalg.norm(a, axis=1, keepdims=True)


def test_alpha_query_expansion_by_hand():
    q = unit([1, 0])
    neighbours = unit([0.6, 0.8], [0, 1])[None]          # cosines 0.6 and 0.0 to the query
    scores = np.array([[0.6, 0.0]])
    # α = 1: q + 0.6·(0.6, 0.8) + 0·(0, 1) = (1.36, 0.48), normalised
    assert np.allclose(expand(q, neighbours, scores, Expansion(2, 1.0)), unit([1.36, 0.48]), atol=1e-6)
    # α = 3 weighs the neighbour 0.216: (1.1296, 0.1728)
    assert np.allclose(expand(q, neighbours, scores, Expansion(2, 3.0)), unit([1.1296, 0.1728]), atol=1e-6)
    # n = 0 is off; padding (-inf) and negative cosines weigh nothing
    assert expand(q, neighbours, scores, Expansion(0)) is q
    padded = np.array([[-np.inf, -0.5]])
    assert np.allclose(expand(q, neighbours, padded, Expansion(2, 1.0)), q)
    with pytest.raises(ValueError, match="n >= 0"):
        Expansion(-1)


def test_database_side_augmentation_pulls_each_vector_toward_its_neighbours():
    x = unit([1, 0, 0], [0.9, 0.1, 0], [0, 0, 1])
    ids = np.array([[1, 2], [0, 2], [0, 1]])
    scores = np.einsum("nd,nkd->nk", x, x[ids])
    augmented = expand(x, x[ids], scores, Expansion(1, 1.0))
    # The two close vectors move toward each other; the lone one's neighbour is orthogonal: weight 0, unchanged.
    assert augmented[0] @ augmented[1] > x[0] @ x[1]
    assert np.allclose(augmented[2], x[2])
    assert np.allclose(np.linalg.norm(augmented, axis=1), 1.0)


def test_k_reciprocal_prefers_the_candidate_whose_neighbours_hold_the_query():
    """Database: a tight group A of four around e0, and a hub nearer the query than A's members but whose own
    nearest neighbours are the four members of group B (and not the query). The query belongs with A."""
    rng = np.random.default_rng(3)

    def group(centre):
        return unit(*(np.asarray(centre, dtype=np.float64) + 0.03 * rng.standard_normal(3) for _ in range(4)))
    group_a, group_b = group(unit([1, 0, 0])[0]), group(unit([0.4, 0.6, 0.8])[0])
    hub = unit([0.6, 0.3, 0.8])
    x = np.vstack([group_a, group_b, hub]).astype(np.float32)
    query = unit([1, 0, 0.7])
    hub_id = len(x) - 1
    sims = query @ x.T
    q_ids = np.argsort(-sims, axis=1)
    q_scores = np.take_along_axis(sims, q_ids, axis=1)
    assert q_ids[0, 0] == hub_id  # the first search puts the hub first
    self_sims = x @ x.T
    d_ids = np.argsort(-self_sims, axis=1)
    d_scores = np.take_along_axis(self_sims, d_ids, axis=1)
    database = NeighbourLists.of_arrays(d_ids, d_scores, 8)
    ids, scores = k_reciprocal_rerank(q_ids, q_scores, database, KReciprocal(k1=4, k2=1, lambda_=0.3))
    assert ids[0, 0] in range(4) and hub_id in ids[0]   # a member of A first; nothing lost from the shortlist
    assert sorted(ids[0].tolist()) == sorted(q_ids[0].tolist())
    assert np.all(np.diff(scores[0]) <= 1e-9)          # reported in the new order, larger = better
    # λ = 1 is the original distance alone: the order of the first search.
    ids, _ = k_reciprocal_rerank(q_ids, q_scores, database, KReciprocal(k1=4, k2=1, lambda_=1.0))
    assert ids[0].tolist() == q_ids[0].tolist()


def dba_by_hand(x: np.ndarray, n: int, alpha: float) -> np.ndarray:
    sims = x @ x.T
    np.fill_diagonal(sims, -np.inf)
    out = []
    for i in range(len(x)):
        top = np.argsort(-sims[i])[:n]
        v = x[i].astype(np.float64) + sum(max(sims[i, j], 0.0) ** alpha * x[j] for j in top)
        out.append(v / np.linalg.norm(v))
    return np.asarray(out)


def test_dba_version_built_on_spark_equals_a_single_process_computation(tmp_path):
    store = Store(str(tmp_path / "store"))
    x = clustered_vectors(600, 16, clusters=30, spread=0.5, seed=5)
    source = write_embeddings_version(store, x, parts=3, metadata={"brand": [f"b{i % 9}" for i in range(600)]})
    fingerprint = source["fingerprint_id"]
    m = augment.run(augment.AugmentConfig(store=store.url, expansion=Expansion(2, 3.0), master="local[2]"))
    assert m["run_id"] == "synthetic.dba2-a3" and m["augmented"] == {
        "method": "dba", "neighbours": 2, "alpha": 3.0, "source_run": "synthetic"}
    version = open_version(store, fingerprint, m["run_id"])
    table = version.read_all()
    got = np.stack(table["embedding"].to_numpy(zero_copy_only=False))
    np.testing.assert_allclose(got, dba_by_hand(x, 2, 3.0), atol=1e-5)
    assert table["brand"].to_pylist() == [f"b{i % 9}" for i in range(600)]  # every other column as it was
    assert open_version(store, fingerprint).layout.run_id == "synthetic"    # LATEST is still the model's own
    again = augment.run(augment.AugmentConfig(store=store.url, embeddings=fingerprint, expansion=Expansion(2, 3.0),
                                              master=IN_PROCESS))
    assert again["created_at"] == m["created_at"]                           # the same version, not redone
    with pytest.raises(ConfigError, match="already augmented"):
        augment.run(augment.AugmentConfig(store=store.url, embeddings=f"{fingerprint}/{m['run_id']}",
                                          master=IN_PROCESS))
    # An index over it answers queries embedded by the model (not augmented).
    index_build.run(BuildIndexConfig(store=store.url, name="dba", embeddings=f"{fingerprint}/{m['run_id']}",
                                     master=IN_PROCESS, publish=True, queries=20))
    [hits] = search_vectors(load_index_version(store, "dba"), x[[7]], 3)
    assert hits[0].image_id == table["image_id"][7].as_py()
