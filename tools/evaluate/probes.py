"""Probes on frozen vectors, in plain numpy and fully deterministic: a softmax-regression classifier and k-means.

Both exist so that the classification and clustering tasks need no scikit-learn. Determinism: no randomness in
the probe (zero initialisation, full-batch gradient steps), and k-means takes an explicit seed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Hashable, Sequence

import numpy as np

PROBE_STEPS = 300
KMEANS_INITS = 5
KMEANS_MAX_ITER = 300


@dataclass(frozen=True)
class SoftmaxProbe:
    """A fitted multinomial logistic regression on standardised features."""

    classes: tuple[Hashable, ...]
    mean: np.ndarray
    scale: np.ndarray
    weights: np.ndarray  # [dims + 1, n_classes]; the last row is the (unregularised) bias

    def predict(self, vectors: np.ndarray) -> list[Hashable]:
        logits = _with_bias(self._standardise(vectors)) @ self.weights
        return [self.classes[i] for i in np.argmax(logits, axis=1)]

    def _standardise(self, vectors: np.ndarray) -> np.ndarray:
        return (np.asarray(vectors, dtype=np.float64) - self.mean) / self.scale


def _with_bias(x: np.ndarray) -> np.ndarray:
    return np.hstack([x, np.ones((x.shape[0], 1))])


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def fit_softmax_probe(
    vectors: np.ndarray, labels: Sequence[Hashable], *, l2: float | None = None, steps: int = PROBE_STEPS
) -> SoftmaxProbe:
    """Minimise mean cross-entropy + l2/2 * |W|^2 (bias not penalised) by Nesterov-accelerated gradient descent
    with step 1/L, L an upper bound of the loss's curvature. ``l2`` defaults to 1/n, the penalty of scikit-learn's
    LogisticRegression(C=1) once its summed loss is divided by n."""
    x = np.asarray(vectors, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] != len(labels) or not len(labels):
        raise ValueError("the probe needs a non-empty [n, dims] matrix and one label per row")
    classes = tuple(sorted(set(labels), key=str))
    if len(classes) < 2:
        raise ValueError("the probe needs at least two classes")
    index = {c: i for i, c in enumerate(classes)}
    targets = np.zeros((len(labels), len(classes)))
    targets[np.arange(len(labels)), [index[c] for c in labels]] = 1.0
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale == 0] = 1.0  # a constant feature stays 0 after centring
    features = _with_bias((x - mean) / scale)
    n = features.shape[0]
    l2 = 1.0 / n if l2 is None else l2
    penalty = np.ones((features.shape[1], 1))
    penalty[-1] = 0.0
    # The softmax cross-entropy's Hessian is bounded by |X|_2^2 / n (its per-sample curvature is at most 1).
    lipschitz = np.linalg.norm(features, ord=2) ** 2 / n + l2
    step = 1.0 / lipschitz
    weights = np.zeros((features.shape[1], len(classes)))
    previous = weights
    for t in range(1, steps + 1):
        look_ahead = weights + (t - 1) / (t + 2) * (weights - previous)
        gradient = features.T @ (_softmax(features @ look_ahead) - targets) / n + l2 * penalty * look_ahead
        previous, weights = weights, look_ahead - step * gradient
    return SoftmaxProbe(classes=classes, mean=mean, scale=scale, weights=weights)


@dataclass(frozen=True)
class KMeansResult:
    labels: np.ndarray  # [n] cluster index per row
    centroids: np.ndarray  # [k, dims]
    inertia: float  # sum of squared distances to the assigned centroid


def _sq_distances(x: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    return (
        (x * x).sum(axis=1, keepdims=True) - 2.0 * x @ centroids.T + (centroids * centroids).sum(axis=1)[None, :]
    ).clip(min=0.0)


def _kmeans_plus_plus(x: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    centroids = [x[rng.integers(len(x))]]
    closest = _sq_distances(x, centroids[0][None, :])[:, 0]
    for _ in range(1, k):
        total = closest.sum()
        if total == 0:  # fewer distinct points than k: duplicate a point rather than divide by zero
            pick = int(rng.integers(len(x)))
        else:
            pick = int(np.searchsorted(np.cumsum(closest), rng.random() * total, side="right"))
            pick = min(pick, len(x) - 1)
        centroids.append(x[pick])
        closest = np.minimum(closest, _sq_distances(x, x[pick][None, :])[:, 0])
    return np.array(centroids)


def kmeans(
    vectors: np.ndarray, k: int, *, seed: int = 0, n_init: int = KMEANS_INITS, max_iter: int = KMEANS_MAX_ITER
) -> KMeansResult:
    """Lloyd's k-means from k-means++ seeds, ``n_init`` restarts drawn from one seeded generator; the restart with
    the lowest inertia wins (the first on a tie). An emptied cluster keeps its previous centroid."""
    x = np.asarray(vectors, dtype=np.float64)
    if x.ndim != 2 or not 1 <= k <= len(x):
        raise ValueError(f"k-means needs an [n, dims] matrix with 1 <= k <= n, got shape {x.shape} and k={k}")
    rng = np.random.default_rng(seed)
    best: KMeansResult | None = None
    for _ in range(n_init):
        centroids = _kmeans_plus_plus(x, k, rng)
        labels = np.full(len(x), -1)
        for _ in range(max_iter):
            new_labels = np.argmin(_sq_distances(x, centroids), axis=1)  # ties -> lowest cluster index
            if np.array_equal(new_labels, labels):
                break
            labels = new_labels
            for c in range(k):
                members = x[labels == c]
                if len(members):
                    centroids[c] = members.mean(axis=0)
        inertia = float(_sq_distances(x, centroids)[np.arange(len(x)), labels].sum())
        if best is None or inertia < best.inertia:
            best = KMeansResult(labels=labels, centroids=centroids.copy(), inertia=inertia)
    assert best is not None
    return best
