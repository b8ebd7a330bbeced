"""Retrieval metrics: hand-computed cases (ties, junk, truncated lists, lone queries) and agreement with
pytorch-metric-learning's AccuracyCalculator to 1e-6 on random labelled embeddings."""

import math

import faiss
import numpy as np
import pytest

from lookalike.batch.metrics import (
    judge_leave_one_out,
    judge_queries,
    mean_average_precision,
    ndcg_at,
    precision_at,
    r_precision,
    recall_at,
    summary,
)


def test_hand_computed_query_protocol_with_junk():
    # Query 0: relevant {a, b, c}; ranking a x b j y c with j junk → judged a x b y c = 1 0 1 0 1.
    # Query 1: relevant {d}; ranking z d.   Query 2: nothing relevant → skipped.
    j = judge_queries([["a", "x", "b", "j", "y", "c"], ["z", "d"], ["q"]], [{"a", "b", "c"}, {"d"}, set()],
                      [{"j"}, set(), set()])
    assert j.skipped == 1 and j.relevant.tolist() == [[1, 0, 1, 0, 1], [0, 1, 0, 0, 0]]
    assert precision_at(j, 1) == pytest.approx((1 + 0) / 2)
    assert precision_at(j, 5) == pytest.approx((3 / 5 + 1 / 5) / 2)
    assert recall_at(j, 2) == pytest.approx((1 / 3 + 1) / 2)
    assert r_precision(j) == pytest.approx((2 / 3 + 0) / 2)
    ap0 = (1 / 1 + 2 / 3 + 3 / 5) / 3
    assert mean_average_precision(j) == pytest.approx((ap0 + 1 / 2) / 2)
    assert mean_average_precision(j, at_r=True) == pytest.approx(((1 + 2 / 3) / 3 + 0) / 2)
    dcg0 = 1 + 1 / math.log2(4) + 1 / math.log2(6)
    idcg0 = 1 + 1 / math.log2(3) + 1 / math.log2(4)
    assert ndcg_at(j, 10) == pytest.approx((dcg0 / idcg0 + (1 / math.log2(3)) / 1) / 2)


def test_relevant_items_never_retrieved_count_as_misses():
    j = judge_queries([["a", "x"]], [{"a", "b", "c", "d"}])  # a list truncated at depth 2
    assert mean_average_precision(j) == pytest.approx(1 / 4)
    assert r_precision(j) == pytest.approx(1 / 4) and recall_at(j, 10) == pytest.approx(1 / 4)


def test_ties_are_judged_in_the_order_given():
    """Two items with equal scores: the ranking (stable by database order) decides, so swapping which of the
    tied pair is relevant changes precision@1 — the metric never re-sorts."""
    scores = np.array([0.9, 0.9, 0.1])
    order = np.argsort(-scores, kind="stable")
    first = judge_queries([list(order)], [{0}])
    second = judge_queries([list(order)], [{1}])
    assert precision_at(first, 1) == 1.0 and precision_at(second, 1) == 0.0
    assert mean_average_precision(second) == pytest.approx(1 / 2)


def test_leave_one_out_removes_the_query_and_skips_lone_labels():
    labels = ["x", "x", "y", "z"]            # "z" has no partner: skipped
    neighbours = np.array([[0, 2, 1, 3],     # the query itself ranked first: removed, ranks close up
                           [0, 1, 2, 3],
                           [2, 0, 1, 3],
                           [3, 0, 1, 2]])
    j = judge_leave_one_out(neighbours, labels)
    assert j.skipped == 2  # "y" and "z" are alone with their label
    assert j.relevant[:, :3].tolist() == [[0, 1, 0], [1, 0, 0]]
    assert precision_at(j, 1) == 0.5 and mean_average_precision(j) == pytest.approx((1 / 2 + 1) / 2)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_agrees_with_pytorch_metric_learning(seed):
    import torch
    from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(12, 24))
    labels = rng.integers(0, 12, 400)
    x = centres[labels] + rng.normal(scale=1.3, size=(400, 24))
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    labels[:3] = [100, 101, 102]  # lone labels: both sides skip them
    reference = AccuracyCalculator(include=("precision_at_1", "r_precision", "mean_average_precision_at_r"),
                                   k="max_bin_count", device=torch.device("cpu")).get_accuracy(
        torch.from_numpy(x), torch.from_numpy(labels), torch.from_numpy(x), torch.from_numpy(labels),
        ref_includes_query=True)
    flat = faiss.IndexFlatL2(24)
    flat.add(x)
    _, neighbours = flat.search(x, len(x))
    ours = summary(judge_leave_one_out(neighbours, labels))
    assert ours["skipped"] == 3
    assert ours["precision@1"] == pytest.approx(reference["precision_at_1"], abs=1e-6)
    assert ours["r_precision"] == pytest.approx(reference["r_precision"], abs=1e-6)
    assert ours["map@r"] == pytest.approx(reference["mean_average_precision_at_r"], abs=1e-6)
