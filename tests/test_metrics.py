"""Metrics, BM25 and probes against hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edge.hybrid import tokenize
from tools.evaluate import metrics
from tools.evaluate.bm25 import BM25Index
from tools.evaluate.probes import fit_softmax_probe, kmeans

L2 = math.log2

# ------------------------------------------------------------------------------------------------ ranking


def test_top_k_breaks_ties_by_lower_index() -> None:
    scores = np.array([[0.5, 0.9, 0.5, 0.9, 0.1], [1.0, 1.0, 1.0, 1.0, 1.0]])
    assert metrics.top_k(scores, 3).tolist() == [[1, 3, 0], [0, 1, 2]]
    assert metrics.top_k(scores, 10).shape == (2, 5)


def test_ndcg_graded_with_unjudged_documents() -> None:
    judged = {"a": 3, "b": 2, "c": 0, "d": 1}
    # "x" is unjudged (gain 0); the ideal DCG takes the best three judged gains 3, 2, 1.
    got = metrics.ndcg_at_k(["x", "b", "a", "c"], judged, 3)
    expected = (0 / L2(2) + 2 / L2(3) + 3 / L2(4)) / (3 / L2(2) + 2 / L2(3) + 1 / L2(4))
    assert got == pytest.approx(expected)
    assert got == pytest.approx(0.579997, abs=1e-6)


def test_ndcg_ideal_uses_judged_documents_left_out_of_the_ranking() -> None:
    # Only "a" is retrieved; the judged "z" (gain 4) still counts in the ideal DCG.
    assert metrics.ndcg_at_k(["a"], {"a": 1, "z": 4}, 10) == pytest.approx(1 / (4 + 1 / L2(3)))


def test_ndcg_tied_labels_in_either_order_are_ideal() -> None:
    judged = {"a": 2, "b": 2, "c": 1}
    assert metrics.ndcg_at_k(["b", "a", "c"], judged, 10) == pytest.approx(1.0)
    assert metrics.ndcg_at_k(["a", "b", "c"], judged, 10) == pytest.approx(1.0)
    assert metrics.ndcg_at_k(["c", "a", "b"], judged, 10) < 1.0


def test_ndcg_cutoff_and_undefined_query() -> None:
    judged = {"a": 1}
    assert metrics.ndcg_at_k(["x", "a"], judged, 1) == 0.0
    assert metrics.ndcg_at_k(["x", "a"], judged, 2) == pytest.approx(1 / L2(3))
    assert metrics.ndcg_at_k(["a"], {"a": 0, "b": 0}, 10) is None


def test_reciprocal_rank() -> None:
    relevant = {"b", "c"}
    assert metrics.reciprocal_rank_at_k(["a", "b", "c"], relevant, 10) == 0.5
    assert metrics.reciprocal_rank_at_k(["a", "b", "c"], relevant, 1) == 0.0
    assert metrics.reciprocal_rank_at_k(["a"], set(), 10) is None


def test_recall_at_k() -> None:
    relevant = {"a", "c", "z"}
    ranking = ["a", "b", "c"]
    assert metrics.recall_at_k(ranking, relevant, 1) == pytest.approx(1 / 3)
    assert metrics.recall_at_k(ranking, relevant, 2) == pytest.approx(1 / 3)
    assert metrics.recall_at_k(ranking, relevant, 3) == pytest.approx(2 / 3)
    assert metrics.recall_at_k(ranking, set(), 3) is None


def test_average_precision_counts_unretrieved_relevant_as_zero() -> None:
    # Hits at ranks 1 and 3; "z" is never retrieved: (1/1 + 2/3) / 3.
    assert metrics.average_precision(["a", "b", "c", "d"], {"a", "c", "z"}) == pytest.approx((1 + 2 / 3) / 3)
    assert metrics.average_precision(["b", "a"], {"a"}) == pytest.approx(0.5)
    assert metrics.average_precision(["a"], set()) is None


def test_relevant_set_uses_the_threshold() -> None:
    assert metrics.relevant_set({"a": 3, "b": 2, "c": 1, "d": 0}, 2) == {"a", "b"}


def test_ranking_metrics_average_over_defined_queries() -> None:
    rankings = [["a", "b"], ["c", "d"], ["e"]]
    judgements = [{"b": 2}, {"c": 1}, {"e": 3, "f": 2}]  # query 2 has nothing >= 2: no MRR / recall / MAP
    means, counts = metrics.ranking_metrics(rankings, judgements, 2, ["mrr@10", "recall@1", "ndcg@10", "map"])
    assert counts == {"mrr@10": 2, "recall@1": 2, "ndcg@10": 3, "map": 2}
    assert means["mrr@10"] == pytest.approx((0.5 + 1.0) / 2)
    assert means["recall@1"] == pytest.approx((0.0 + 0.5) / 2)
    assert means["map"] == pytest.approx((0.5 + 0.5) / 2)
    ndcg_q3 = 3 / (3 + 2 / L2(3))
    assert means["ndcg@10"] == pytest.approx((2 / L2(3) / 2 + 1.0 + ndcg_q3) / 3)
    assert metrics.ranking_depth(["ndcg@10", "recall@100", "mrr@10"]) == 100
    assert metrics.ranking_depth(["ndcg@10", "map"]) is None
    with pytest.raises(ValueError):
        metrics.ranking_metrics(rankings, judgements, 2, ["precision@5"])


# ------------------------------------------------------------------------------------------------ correlation


def test_average_ranks_share_ties() -> None:
    assert metrics.average_ranks([10, 20, 20, 20, 5]).tolist() == [2.0, 4.0, 4.0, 4.0, 1.0]


def test_spearman_with_ties() -> None:
    # Ranks x = [1, 2.5, 2.5, 4], y = [1, 3, 2, 4]: covariance 4.5 / sqrt(4.5 * 5) = sqrt(0.9).
    assert metrics.spearman([1, 2, 2, 3], [1, 3, 2, 4]) == pytest.approx(math.sqrt(0.9))
    assert metrics.spearman([1, 2, 3], [30, 20, 10]) == pytest.approx(-1.0)
    assert metrics.spearman([1, 1, 1], [1, 2, 3]) == 0.0


def test_pearson() -> None:
    assert metrics.pearson([1, 2, 3], [2, 4, 7]) == pytest.approx(0.9933992677987828)
    with pytest.raises(ValueError):
        metrics.pearson([1], [1])


# ------------------------------------------------------------------------------------------------ pairs


def test_pair_average_precision_groups_tied_scores() -> None:
    labels = [1, 0, 1, 1]
    scores = [0.5, 0.5, 0.5, 0.1]
    # One threshold at 0.5 (tp 2, fp 1: P 2/3, R 2/3), one at 0.1 (tp 3, fp 1: P 3/4, R 1):
    # 2/3 * 2/3 + 1/3 * 3/4 = 25/36, not the 29/36 that ordering ties by position would give.
    assert metrics.pair_average_precision(labels, scores) == pytest.approx(25 / 36)
    assert metrics.pair_average_precision([1, 0, 1, 0], [0.9, 0.8, 0.7, 0.1]) == pytest.approx((1 + 2 / 3) / 2)


def test_max_f1_and_accuracy() -> None:
    labels = [1, 0, 1, 1]
    scores = [0.5, 0.5, 0.5, 0.1]
    assert metrics.max_f1(labels, scores) == pytest.approx(6 / 7)
    assert metrics.max_accuracy(labels, scores) == pytest.approx(3 / 4)
    # Predicting everything negative is a threshold too.
    assert metrics.max_accuracy([0, 0, 0, 1], [0.9, 0.8, 0.7, 0.1]) == pytest.approx(3 / 4)


def test_pair_metrics_reject_bad_input() -> None:
    with pytest.raises(ValueError):
        metrics.pair_average_precision([0, 0], [0.1, 0.2])
    with pytest.raises(ValueError):
        metrics.pair_average_precision([0, 2], [0.1, 0.2])


# ------------------------------------------------------------------------------------------ classification, clustering


def test_accuracy_and_macro_f1() -> None:
    true = ["a", "a", "b", "c"]
    predicted = ["a", "b", "b", "b"]
    assert metrics.accuracy(true, predicted) == 0.5
    # F1: a = 2/3 (tp 1, fn 1), b = 1/2 (tp 1, fp 2), c = 0.
    assert metrics.macro_f1(true, predicted) == pytest.approx((2 / 3 + 1 / 2 + 0) / 3)


def test_v_measure_hand_computed() -> None:
    assert metrics.v_measure([0, 0, 1, 1], [0, 0, 1, 1]) == pytest.approx(1.0)
    assert metrics.v_measure([0, 0, 1, 1], [5, 5, 3, 3]) == pytest.approx(1.0)  # names of clusters do not matter
    # Homogeneous (1) but class 1 is split: completeness 1 - (0.5 ln 2) / H(K) with H(K) = 1.5 ln 2 -> 2/3; V = 0.8.
    assert metrics.v_measure([0, 0, 1, 1], [0, 0, 1, 2]) == pytest.approx(0.8)
    assert metrics.v_measure([0, 0, 1, 1], [0, 0, 0, 0]) == pytest.approx(0.0)
    # Classes a, b over clusters {a,a}, {a,b}, {b,b}: h = 2/3, c = (2/3) ln 2 / ln 3.
    h, c = 2 / 3, (2 / 3) * math.log(2) / math.log(3)
    got = metrics.v_measure(list("aaabbb"), [1, 1, 2, 2, 3, 3])
    assert got == pytest.approx(2 * h * c / (h + c))


# ------------------------------------------------------------------------------------------------ BM25


def test_bm25_hand_computed() -> None:
    index = BM25Index(["fever cough", "fever"])
    # "cough": N 2, df 1 -> idf ln(1 + 1.5/1.5) = ln 2; doc 0: tf 1, |d| 2, avgdl 1.5 -> 1 / (1 + 1.2 * 1.25).
    assert index.scores("cough").tolist() == pytest.approx([math.log(2) * 0.4, 0.0])
    # "fever" is in every document: idf ln(1 + 0.5 / 2.5); repeated query tokens count twice.
    idf = math.log(1 + 0.5 / 2.5)
    one = idf * np.array([1 / (1 + 1.2 * 1.25), 1 / (1 + 1.2 * (0.25 + 0.75 / 1.5))])
    assert index.scores("fever").tolist() == pytest.approx(one.tolist())
    assert index.scores("fever fever").tolist() == pytest.approx((2 * one).tolist())
    assert index.scores("unknown").tolist() == [0.0, 0.0]


@pytest.mark.needs_tools  # bm25s is the tools extra's
def test_bm25_matches_bm25s_lucene() -> None:
    bm25s = pytest.importorskip("bm25s")
    docs = ["头痛发烧怎么办", "发烧 38度 fever", "咳嗽 咳嗽 头痛", "chest pain and fever fever", "糖尿病饮食", "头痛"]
    reference = bm25s.BM25(k1=1.2, b=0.75, method="lucene")
    reference.index([tokenize(d) for d in docs], show_progress=False)
    ours = BM25Index(docs)
    for query in ["头痛发烧", "fever fever", "咳嗽头痛 pain"]:
        expected = np.asarray(reference.get_scores(tokenize(query)), dtype=np.float64)
        assert ours.scores(query) == pytest.approx(expected, rel=1e-5)


# ------------------------------------------------------------------------------------------------ probes


def _blobs(seed: int = 0) -> tuple[np.ndarray, list[str]]:
    rng = np.random.default_rng(seed)
    centres = np.eye(3, 8) * 5.0
    x = np.concatenate([c + rng.standard_normal((30, 8)) * 0.3 for c in centres])
    return x, [label for label in "abc" for _ in range(30)]


def test_softmax_probe_separates_blobs_deterministically() -> None:
    x, labels = _blobs()
    probe = fit_softmax_probe(x, labels)
    assert probe.predict(x) == labels
    again = fit_softmax_probe(x, labels)
    assert np.array_equal(probe.weights, again.weights)
    with pytest.raises(ValueError):
        fit_softmax_probe(x, ["a"] * len(x))


def test_kmeans_recovers_blobs_and_is_seeded() -> None:
    x, labels = _blobs()
    result = kmeans(x, 3, seed=1)
    assert metrics.v_measure(labels, result.labels.tolist()) == pytest.approx(1.0)
    assert np.array_equal(result.labels, kmeans(x, 3, seed=1).labels)
    with pytest.raises(ValueError):
        kmeans(x, 0)
