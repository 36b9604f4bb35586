"""Evaluation metrics, in plain numpy: ranking (nDCG, MRR, recall, AP), correlation, pair classification,
classification and clustering.

Conventions, chosen once here:
- A ranking is a sequence of document ids, best first. Gains are graded labels (linear gain = label); documents
  absent from a query's judgements have gain 0. nDCG's ideal DCG comes from *all* the query's judged gains, so a
  system cannot score well by leaving judged documents out of the top k.
- A document is relevant (MRR, recall, AP) when its gain is >= the task's ``relevant_gain``.
- A per-query metric is undefined (``None``) when the query cannot be scored: nDCG with no positive gain, the
  others with no relevant document. Averages skip undefined queries and say how many they used.
- Rankings are built by :func:`top_k`: higher score first, ties broken by the lower document index, so a ranking
  never depends on sort internals.
"""

from __future__ import annotations

import math
from typing import Hashable, Iterable, Mapping, Sequence

import numpy as np

# ------------------------------------------------------------------------------------------------ ranking


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` best columns of each row of ``scores`` ([n, m] -> [n, min(k, m)]), best first, ties
    to the lower index."""
    scores = np.asarray(scores)
    if scores.ndim != 2:
        raise ValueError(f"top_k wants a 2-d score matrix, got shape {scores.shape}")
    k = min(k, scores.shape[1])
    # A stable sort of the negated scores keeps tied columns in index order.
    return np.argsort(-scores, axis=1, kind="stable")[:, :k]


def dcg(gains: Sequence[float], k: int) -> float:
    """Discounted cumulative gain of the first ``k`` gains: sum gain_i / log2(i + 2), i from 0."""
    return float(sum(g / math.log2(i + 2) for i, g in enumerate(list(gains)[:k]) if g))


def ndcg_at_k(ranking: Sequence[str], judged: Mapping[str, float], k: int) -> float | None:
    """Graded nDCG@k; unjudged documents are gain 0; IDCG from every judged gain of the query. None when the query
    has no positive gain."""
    ideal = dcg(sorted((g for g in judged.values() if g > 0), reverse=True), k)
    if ideal == 0:
        return None
    return dcg([judged.get(doc, 0) for doc in ranking[:k]], k) / ideal


def relevant_set(judged: Mapping[str, float], relevant_gain: float) -> set[str]:
    return {doc for doc, gain in judged.items() if gain >= relevant_gain}


def reciprocal_rank_at_k(ranking: Sequence[str], relevant: set[str], k: int) -> float | None:
    """1 / rank of the first relevant document within the top k (0 if none there); None without relevant docs."""
    if not relevant:
        return None
    for position, doc in enumerate(ranking[:k]):
        if doc in relevant:
            return 1.0 / (position + 1)
    return 0.0


def recall_at_k(ranking: Sequence[str], relevant: set[str], k: int) -> float | None:
    """Share of the relevant documents found in the top k; None without relevant docs."""
    if not relevant:
        return None
    return len(relevant.intersection(ranking[:k])) / len(relevant)


def average_precision(ranking: Sequence[str], relevant: set[str]) -> float | None:
    """Mean over the relevant documents of the precision at their rank; a relevant document missing from the
    ranking contributes 0. None without relevant docs."""
    if not relevant:
        return None
    hits = 0
    total = 0.0
    for position, doc in enumerate(ranking):
        if doc in relevant:
            hits += 1
            total += hits / (position + 1)
    return total / len(relevant)


def mean_defined(values: Iterable[float | None]) -> tuple[float | None, int]:
    """Mean of the defined values and how many there were (None, 0 when none is defined)."""
    defined = [v for v in values if v is not None]
    if not defined:
        return None, 0
    return float(np.mean(defined)), len(defined)


def _parse_ranking_metric(name: str) -> tuple[str, int | None]:
    if name == "map":
        return "map", None
    base, _, k = name.partition("@")
    if base not in ("ndcg", "mrr", "recall") or not k.isdigit() or int(k) < 1:
        raise ValueError(f"unknown ranking metric {name!r}: expected ndcg@k, mrr@k, recall@k or map")
    return base, int(k)


def ranking_depth(names: Iterable[str]) -> int | None:
    """How deep a ranking must reach for these metrics (None: the whole ranking, for MAP)."""
    depths = [_parse_ranking_metric(n)[1] for n in names]
    return None if None in depths else max(d for d in depths if d is not None)


def ranking_metrics(
    rankings: Sequence[Sequence[str]],
    judgements: Sequence[Mapping[str, float]],
    relevant_gain: float,
    names: Sequence[str],
) -> tuple[dict[str, float | None], dict[str, int]]:
    """Mean of each named metric (``ndcg@k``, ``mrr@k``, ``recall@k``, ``map``) over the queries where it is
    defined, and how many queries that was."""
    if len(rankings) != len(judgements):
        raise ValueError("one ranking per judged query")
    means: dict[str, float | None] = {}
    counts: dict[str, int] = {}
    for name in names:
        base, k = _parse_ranking_metric(name)
        values: list[float | None] = []
        for ranking, judged in zip(rankings, judgements):
            if base == "ndcg":
                values.append(ndcg_at_k(ranking, judged, k))  # type: ignore[arg-type]
                continue
            relevant = relevant_set(judged, relevant_gain)
            if base == "mrr":
                values.append(reciprocal_rank_at_k(ranking, relevant, k))  # type: ignore[arg-type]
            elif base == "recall":
                values.append(recall_at_k(ranking, relevant, k))  # type: ignore[arg-type]
            else:
                values.append(average_precision(ranking, relevant))
        means[name], counts[name] = mean_defined(values)
    return means, counts


# ------------------------------------------------------------------------------------------------ correlation


def average_ranks(values: Sequence[float]) -> np.ndarray:
    """Ranks 1..n, tied values sharing the mean of the ranks they span (the ranks Spearman's rho uses)."""
    x = np.asarray(values, dtype=np.float64)
    order = np.argsort(x, kind="stable")
    sorted_x = x[order]
    ranks = np.empty(len(x), dtype=np.float64)
    start = 0
    while start < len(x):
        end = start
        while end + 1 < len(x) and sorted_x[end + 1] == sorted_x[start]:
            end += 1
        ranks[order[start : end + 1]] = (start + end) / 2.0 + 1.0
        start = end + 1
    return ranks


def pearson(x: Sequence[float], y: Sequence[float]) -> float:
    a = np.asarray(x, dtype=np.float64)
    b = np.asarray(y, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1 or len(a) < 2:
        raise ValueError("pearson needs two 1-d sequences of the same length >= 2")
    a = a - a.mean()
    b = b - b.mean()
    denominator = math.sqrt(float(a @ a) * float(b @ b))
    if denominator == 0:
        return 0.0  # a constant side carries no ordering information
    return float(a @ b) / denominator


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rho with ties: Pearson correlation of the average ranks."""
    return pearson(average_ranks(x), average_ranks(y))


# ------------------------------------------------------------------------------------------------ pair classification


def _threshold_counts(labels: Sequence[int], scores: Sequence[float]) -> tuple[np.ndarray, np.ndarray, int]:
    """True and false positives when predicting positive at score >= each distinct score (descending)."""
    y = np.asarray(labels, dtype=np.int64)
    s = np.asarray(scores, dtype=np.float64)
    if y.shape != s.shape or y.ndim != 1 or not len(y):
        raise ValueError("labels and scores must be 1-d sequences of the same non-zero length")
    if not np.isin(y, (0, 1)).all():
        raise ValueError("pair labels must be 0 or 1")
    order = np.argsort(-s, kind="stable")
    y, s = y[order], s[order]
    # Tied scores share one threshold: only the last position of each run of equal scores is a cut point.
    last_of_run = np.r_[s[1:] != s[:-1], True]
    tp = np.cumsum(y)[last_of_run]
    fp = np.cumsum(1 - y)[last_of_run]
    return tp, fp, int(y.sum())


def pair_average_precision(labels: Sequence[int], scores: Sequence[float]) -> float:
    """Average precision of ranking positives (1) above negatives (0) by score, tied scores forming one threshold:
    sum over thresholds of (recall_i - recall_{i-1}) * precision_i (scikit-learn's definition)."""
    tp, fp, positives = _threshold_counts(labels, scores)
    if positives == 0:
        raise ValueError("average precision needs at least one positive pair")
    precision = tp / (tp + fp)
    recall = tp / positives
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def max_f1(labels: Sequence[int], scores: Sequence[float]) -> float:
    """Best F1 of the positive class over every score threshold."""
    tp, fp, positives = _threshold_counts(labels, scores)
    f1 = 2 * tp / (tp + fp + positives)
    return float(f1.max())


def max_accuracy(labels: Sequence[int], scores: Sequence[float]) -> float:
    """Best accuracy over every score threshold, including predicting everything negative."""
    tp, fp, positives = _threshold_counts(labels, scores)
    n = len(labels)
    negatives = n - positives
    correct = tp + (negatives - fp)
    return float(max(correct.max(), negatives) / n)


# ------------------------------------------------------------------------------------------------ classification


def accuracy(true: Sequence[Hashable], predicted: Sequence[Hashable]) -> float:
    if len(true) != len(predicted) or not len(true):
        raise ValueError("accuracy needs two non-empty label sequences of the same length")
    return sum(1 for t, p in zip(true, predicted) if t == p) / len(true)


def macro_f1(true: Sequence[Hashable], predicted: Sequence[Hashable]) -> float:
    """Unweighted mean of per-class F1 over every class that occurs in either sequence (F1 = 0 for a class that
    is never predicted correctly)."""
    if len(true) != len(predicted) or not len(true):
        raise ValueError("macro_f1 needs two non-empty label sequences of the same length")
    classes = set(true) | set(predicted)
    scores = []
    for c in classes:
        tp = sum(1 for t, p in zip(true, predicted) if t == c and p == c)
        fp = sum(1 for t, p in zip(true, predicted) if t != c and p == c)
        fn = sum(1 for t, p in zip(true, predicted) if t == c and p != c)
        scores.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
    return float(np.mean(scores))


# ------------------------------------------------------------------------------------------------ clustering


def _entropy(counts: np.ndarray) -> float:
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


def v_measure(true: Sequence[Hashable], predicted: Sequence[Hashable]) -> float:
    """Harmonic mean of homogeneity (each cluster holds one class) and completeness (each class in one cluster),
    from the class/cluster contingency table. A single class counts as perfectly homogeneous, a single cluster as
    perfectly complete."""
    if len(true) != len(predicted) or not len(true):
        raise ValueError("v_measure needs two non-empty label sequences of the same length")
    classes = {c: i for i, c in enumerate(dict.fromkeys(true))}
    clusters = {c: i for i, c in enumerate(dict.fromkeys(predicted))}
    table = np.zeros((len(classes), len(clusters)), dtype=np.float64)
    for t, p in zip(true, predicted):
        table[classes[t], clusters[p]] += 1
    n = table.sum()
    h_class = _entropy(table.sum(axis=1))
    h_cluster = _entropy(table.sum(axis=0))
    rows, cols = np.nonzero(table)
    joint = table[rows, cols]
    # Conditional entropies H(C|K) and H(K|C) over the non-empty cells of the contingency table.
    h_class_given_cluster = float(-(joint / n * np.log(joint / table.sum(axis=0)[cols])).sum())
    h_cluster_given_class = float(-(joint / n * np.log(joint / table.sum(axis=1)[rows])).sum())
    homogeneity = 1.0 if h_class == 0 else 1.0 - h_class_given_cluster / h_class
    completeness = 1.0 if h_cluster == 0 else 1.0 - h_cluster_given_class / h_cluster
    if homogeneity + completeness == 0:
        return 0.0
    return float(2 * homogeneity * completeness / (homogeneity + completeness))
