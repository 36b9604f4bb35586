"""LLM-labelled stage-II pairs: unlabeled training queries paired with the document the GGUF itself ranks first.

Only 2,557 labelled cMedIR query -> title pairs lie outside the test split, and they bound the dense student (README,
"Open work"). The training splits hold many more unlabeled Chinese queries of the same kind (KUAKE-QQR and CHIP
questions, Toyhom questions) whose teacher vectors stage I has already cached. Ranking a corpus with those vectors
gives each query the LLM's own first choice as a positive; stage II's KL term then teaches the student the LLM's
whole score distribution over that positive and the mined negatives. A query whose best score is below
``min_score``, or whose best document is its own text, gets no pair: its label would be noise.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from tools.train.data import Pair
from tools.train.negatives import top_ranked


@dataclass(frozen=True)
class LabelledPairs:
    pairs: list[Pair]
    offered: int  # queries that were ranked
    below_min_score: int  # queries dropped by min_score
    mean_top_score: float  # over the kept pairs


def top_document_pairs(
    queries: Sequence[str],
    query_vectors: np.ndarray,
    documents: Sequence[str],
    doc_vectors: np.ndarray,
    *,
    source: str,
    min_score: float = 0.0,
) -> LabelledPairs:
    """One pair per query: (query, the document its teacher vector scores highest), labelled ``llm-<source>``."""
    if len(queries) != len(query_vectors) or len(documents) != len(doc_vectors):
        raise ValueError("each query and document needs exactly one vector")
    if not queries or not documents:
        return LabelledPairs([], len(queries), 0, 0.0)
    best = top_ranked(query_vectors, doc_vectors, 2)
    pairs: list[Pair] = []
    scores: list[float] = []
    low = 0
    for i, query in enumerate(queries):
        # A KUAKE / CHIP question may also sit in the corpus; its own text is no label, so take the runner-up.
        row = next((int(r) for r in best[i] if documents[int(r)] != query), None)
        if row is None:
            continue
        score = float(query_vectors[i] @ doc_vectors[row])
        if score < min_score:
            low += 1
            continue
        pairs.append(Pair(query, documents[row], f"llm-{source}"))
        scores.append(score)
    return LabelledPairs(pairs, len(queries), low, float(np.mean(scores)) if scores else 0.0)
