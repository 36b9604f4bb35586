"""Okapi BM25 (Lucene's idf) in memory, for the evaluation: the runtime's own scoring (:mod:`edge.hybrid`: same
tokenisation, same postings, same weights), without a collection on disk, over whichever corpus a task searches.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from edge.hybrid import B, K1, count_postings, lucene_idf, term_weights, tokenize


class BM25Index:
    """An in-memory inverted index; :meth:`scores` gives every document's BM25 score for a query."""

    def __init__(self, documents: Sequence[str], *, k1: float = K1, b: float = B) -> None:
        self.k1 = k1
        self.b = b
        self.n_docs = len(documents)
        postings, norms = count_postings(documents, k1=k1, b=b)
        # Term-at-a-time postings: for each term the documents holding it and their precomputed contribution.
        self._docs: dict[str, np.ndarray] = {}
        self._weights: dict[str, np.ndarray] = {}
        for term, (docs, tfs) in postings.items():
            self._docs[term] = docs
            self._weights[term] = term_weights(lucene_idf(len(docs), self.n_docs), tfs, norms[docs])

    @property
    def vocabulary_size(self) -> int:
        return len(self._docs)

    def scores(self, query: str) -> np.ndarray:
        """float64 [n_docs]: 0 for documents sharing no token with the query."""
        out = np.zeros(self.n_docs, dtype=np.float64)
        for term in tokenize(query):
            docs = self._docs.get(term)
            if docs is not None:
                out[docs] += self._weights[term]  # a term's postings hold each document once
        return out
