"""Okapi BM25 (Lucene's idf) over a tokenisation that suits mixed Chinese / Latin-script medical text.

Tokens: NFKC + case-folded text; every run of Han characters becomes its overlapping character bigrams (a lone Han
character is its own token), every run of other letters/digits is one word. Chinese has no spaces, and bigrams are
the usual strong baseline for it; the same rule on English, Spanish or German text degrades to plain words, and an
ICD document that mixes both ("A00 | Cholera | 霍乱") gets both kinds of tokens.

Scoring (k1 = 1.2, b = 0.75 by default), summed over the query's tokens with repeats, as Lucene and bm25s do:

    idf(t) = ln(1 + (N - df + 0.5) / (df + 0.5))
    score(q, d) = sum_t idf(t) * tf(t, d) / (tf(t, d) + k1 * (1 - b + b * |d| / avgdl))
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from typing import Sequence

import numpy as np

K1 = 1.2
B = 0.75

# Han ideographs (CJK unified + extension A + compatibility + the supplementary planes' extensions).
_HAN = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f"
_TOKEN_RE = re.compile(rf"([{_HAN}]+)|((?:(?![{_HAN}])[^\W_])+)")


def tokenize(text: str) -> list[str]:
    """Character bigrams for Han runs, words for everything else (see the module docstring)."""
    normalized = unicodedata.normalize("NFKC", text).casefold()
    tokens: list[str] = []
    for han, word in _TOKEN_RE.findall(normalized):
        if word:
            tokens.append(word)
        elif len(han) == 1:
            tokens.append(han)
        else:
            tokens.extend(han[i : i + 2] for i in range(len(han) - 1))
    return tokens


class BM25Index:
    """An in-memory inverted index; :meth:`scores` gives every document's BM25 score for a query."""

    def __init__(self, documents: Sequence[str], *, k1: float = K1, b: float = B) -> None:
        if k1 < 0 or not 0 <= b <= 1:
            raise ValueError(f"BM25 needs k1 >= 0 and 0 <= b <= 1, got k1={k1}, b={b}")
        self.k1 = k1
        self.b = b
        self.n_docs = len(documents)
        counts = [Counter(tokenize(text)) for text in documents]
        lengths = np.array([sum(c.values()) for c in counts], dtype=np.float64)
        avgdl = float(lengths.mean()) if self.n_docs and lengths.sum() > 0 else 1.0
        # Term-at-a-time postings: for each term the documents holding it and their precomputed contribution.
        postings: dict[str, tuple[list[int], list[int]]] = {}
        for doc, counter in enumerate(counts):
            for term, tf in counter.items():
                docs, tfs = postings.setdefault(term, ([], []))
                docs.append(doc)
                tfs.append(tf)
        norm = k1 * (1.0 - b + b * lengths / avgdl)
        self._docs: dict[str, np.ndarray] = {}
        self._weights: dict[str, np.ndarray] = {}
        for term, (docs, tfs) in postings.items():
            doc_array = np.array(docs, dtype=np.int64)
            tf = np.array(tfs, dtype=np.float64)
            idf = np.log1p((self.n_docs - len(docs) + 0.5) / (len(docs) + 0.5))
            self._docs[term] = doc_array
            self._weights[term] = idf * tf / (tf + norm[doc_array])

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
