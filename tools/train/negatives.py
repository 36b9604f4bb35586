"""Hard negatives for stage II, mined from the frozen document vectors with the stage-I student's query vectors.

For each (query, positive) pair: rank every document by the student's score, keep the band of ranks
``first_rank..last_rank`` (1-based, inclusive), drop the query's known positives and the query's own text (a
question of a KUAKE / CHIP pair is also the document of the reversed pair), and draw ``count`` of what is left at
random. The top ranks are skipped because that is where unlabeled positives sit; a band too thin after the drops is
topped up from random documents outside the excluded set, and the number of such top-ups is reported.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

QUERY_CHUNK = 256


@dataclass(frozen=True)
class MinedNegatives:
    rows: np.ndarray  # int64 [n_pairs, count]: document rows
    topped_up: int  # negatives drawn at random because the band ran short


def parse_rank_band(text: str) -> tuple[int, int]:
    """``"4:40"`` -> (4, 40)."""
    try:
        first, last = (int(x) for x in text.split(":"))
    except ValueError:
        raise ValueError(f"expected FIRST:LAST ranks such as 4:40, got {text!r}") from None
    if not 1 <= first <= last:
        raise ValueError(f"rank band {text!r}: need 1 <= FIRST <= LAST")
    return first, last


def top_ranked(query_vectors: np.ndarray, doc_vectors: np.ndarray, depth: int) -> np.ndarray:
    """int64 [n_queries, depth]: each query's ``depth`` best documents by dot product, best first."""
    depth = min(depth, doc_vectors.shape[0])
    out = np.empty((query_vectors.shape[0], depth), dtype=np.int64)
    for start in range(0, query_vectors.shape[0], QUERY_CHUNK):
        scores = query_vectors[start : start + QUERY_CHUNK] @ doc_vectors.T
        if depth < scores.shape[1]:
            part = np.argpartition(-scores, depth - 1, axis=1)[:, :depth]
        else:
            part = np.tile(np.arange(scores.shape[1]), (scores.shape[0], 1))
        order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1, kind="stable")
        out[start : start + scores.shape[0]] = np.take_along_axis(part, order, axis=1)
    return out


def mine(
    query_vectors: np.ndarray,
    doc_vectors: np.ndarray,
    pair_queries: Sequence[int],
    excluded: Sequence[frozenset[int]],
    *,
    count: int,
    band: tuple[int, int],
    seed: int,
) -> MinedNegatives:
    """``count`` negatives per pair. ``pair_queries[i]``: the row in ``query_vectors`` of pair i's query;
    ``excluded[i]``: document rows pair i must never get (its query's positives, the query's own text)."""
    first, last = band
    ranked = top_ranked(query_vectors, doc_vectors, last)
    rng = np.random.default_rng(seed)
    n_docs = doc_vectors.shape[0]
    rows = np.empty((len(pair_queries), count), dtype=np.int64)
    topped_up = 0
    for i, (query_row, banned) in enumerate(zip(pair_queries, excluded)):
        pool = [int(d) for d in ranked[query_row, first - 1 : last] if int(d) not in banned]
        if len(pool) >= count:
            rows[i] = rng.choice(pool, size=count, replace=False)
            continue
        chosen = list(pool)
        if n_docs - len(banned) < count:
            raise ValueError(f"only {n_docs} documents, {len(banned)} of them excluded: cannot draw {count} negatives")
        while len(chosen) < count:
            candidate = int(rng.integers(n_docs))
            if candidate not in banned and candidate not in chosen:
                chosen.append(candidate)
                topped_up += 1
        rows[i] = chosen
    return MinedNegatives(rows=rows, topped_up=topped_up)
