"""The systems the evaluator compares: BM25, dense encoders (ONNX or GGUF on either side) and BM25 + dense fusion.

Every system answers the same four calls, so the evaluator never asks what it is:

- ``rank(queries, corpus, depth)``: each query's best documents (indices into ``corpus``), best first;
- ``order(queries, corpus, candidates)``: each query's candidates (indices), best first (reranking);
- ``embed(texts)``: query-side vectors for pair, classification and clustering tasks (``None`` for a system
  without vectors: BM25 and the fusion);
- ``encode_one(text)``: the query-time work for one query, which the evaluator times for the latency column.

Scores are exact: brute-force cosine over all documents, BM25 over all documents; ties go to the lower index.

Vectors: document vectors and GGUF vectors go through ``tools.build.doc_encoder.VectorCache`` (the cache that
``tools.build.index embed`` fills), embedded in the batches ``tools.build.index.plan_batches`` plans over the whole
corpus, so a vector is the same whether the evaluator or the index builder computed it and nothing is embedded
twice. ONNX query-side vectors are computed one text per call, as a device encodes a query: the INT8 graphs
quantise activations per call, so a batched vector differs slightly from the one a device would compute.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from edge.errors import ArtifactError, BadInput
from edge.hybrid import FUSION_DEPTH, FUSION_K, fuse_hybrid, fusion_depth, reciprocal_rank_fusion as fuse_rankings
from edge.search import DEFAULT_K
from tools.build.doc_encoder import truncate_dims
from tools.build.vectors import GgufVectors, OnnxQuerySide, symmetric_encoder
from tools.evaluate.bm25 import BM25Index, tokenize
from tools.evaluate.metrics import top_k
from tools.models.cache import EMBEDDINGGEMMA_DOC_PROMPT, EMBEDDINGGEMMA_QUERY_PROMPT, ModelCache

QUERY_CHUNK = 256  # queries scored per matrix product: bounds the [queries, documents] score matrix
MEMO_CORPORA = 2  # corpora whose index / vectors a system keeps in memory (tasks sharing a corpus run together)


@dataclass(frozen=True)
class Corpus:
    """Documents a system searches. ``key`` names the document set (for memoising an index over tasks);
    ``plan_texts`` is the whole corpus the texts come from: embedding batches are planned over it, so a document
    gets the same vector whichever subset of its corpus a task searches."""

    key: str
    ids: tuple[str, ...]
    texts: tuple[str, ...]
    plan_texts: tuple[str, ...] = ()


class System:
    name: str = ""

    def info(self) -> dict[str, Any]:
        raise NotImplementedError

    # rank / order / embed may return None: the system sits that task out (reported as "–").
    def rank(self, queries: Sequence[str], corpus: Corpus, depth: int) -> list[np.ndarray] | None:
        raise NotImplementedError

    def order(self, queries: Sequence[str], corpus: Corpus,
              candidates: Sequence[np.ndarray]) -> list[np.ndarray] | None:
        raise NotImplementedError

    def embed(self, texts: Sequence[str]) -> np.ndarray | None:
        return None

    def encode_one(self, text: str) -> None:
        raise NotImplementedError


def _order_by_score(candidates: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Candidates best first; equal scores keep ascending document index."""
    ascending = np.sort(np.asarray(candidates, dtype=np.int64))
    return ascending[np.argsort(-scores[ascending], kind="stable")]


class _Memo:
    """A tiny LRU of per-corpus state (an index, a vector matrix)."""

    def __init__(self, size: int = MEMO_CORPORA) -> None:
        self._items: OrderedDict[str, Any] = OrderedDict()
        self._size = size

    def get(self, key: str, build: Callable[[], Any]) -> Any:
        if key in self._items:
            self._items.move_to_end(key)
            return self._items[key]
        value = build()
        self._items[key] = value
        while len(self._items) > self._size:
            self._items.popitem(last=False)
        return value


# ------------------------------------------------------------------------------------------------ BM25


class BM25System(System):
    def __init__(self, name: str = "bm25", *, k1: float = 1.2, b: float = 0.75) -> None:
        self.name = name
        self.k1 = k1
        self.b = b
        self._indexes = _Memo()

    def info(self) -> dict[str, Any]:
        return {"kind": "bm25", "k1": self.k1, "b": self.b,
                "tokens": "character bigrams for Han runs, words otherwise (NFKC, case-folded)"}

    def _index(self, corpus: Corpus) -> BM25Index:
        return self._indexes.get(corpus.key, lambda: BM25Index(corpus.texts, k1=self.k1, b=self.b))

    def rank(self, queries: Sequence[str], corpus: Corpus, depth: int) -> list[np.ndarray]:
        """Only documents sharing a token with the query are ranked: a zero score is no evidence at all."""
        index = self._index(corpus)
        out = []
        for query in queries:
            scores = index.scores(query)
            best = top_k(scores[None, :], depth)[0]
            out.append(best[scores[best] > 0])
        return out

    def order(
        self, queries: Sequence[str], corpus: Corpus, candidates: Sequence[np.ndarray], *, matched_only: bool = False
    ) -> list[np.ndarray]:
        """``matched_only`` drops candidates without a shared token (what the fusion wants)."""
        index = self._index(corpus)
        out = []
        for query, cands in zip(queries, candidates):
            scores = index.scores(query)
            ordered = _order_by_score(cands, scores)
            out.append(ordered[scores[ordered] > 0] if matched_only else ordered)
        return out

    def encode_one(self, text: str) -> None:
        tokenize(text)


# ------------------------------------------------------------------------------------------------ dense systems


class DenseSystem(System):
    """Query vectors against document vectors by exact cosine (both sides are L2-normalised)."""

    def __init__(
        self,
        name: str,
        *,
        query_vectors: Callable[[Sequence[str]], np.ndarray],
        document_vectors: Callable[[Corpus], np.ndarray],
        encode_one: Callable[[str], None],
        info: dict[str, Any],
    ) -> None:
        self.name = name
        self._query_vectors = query_vectors
        self._document_vectors = document_vectors
        self._encode_one = encode_one
        self._info = info
        self._documents = _Memo()
        self._last_queries: tuple[tuple[str, ...], np.ndarray] | None = None

    def info(self) -> dict[str, Any]:
        return dict(self._info)

    def with_query_side(self, name: str, query_vectors: Callable[[Sequence[str]], np.ndarray]) -> DenseSystem:
        """Another query side against these very document vectors (loaded once for both systems)."""
        other = DenseSystem(name, query_vectors=query_vectors, document_vectors=self._document_vectors,
                            encode_one=lambda text: None, info={**self._info, "query_encoder": {"name": name}})
        other._documents = self._documents
        return other

    def _docs(self, corpus: Corpus) -> np.ndarray:
        return self._documents.get(corpus.key, lambda: np.ascontiguousarray(self._document_vectors(corpus),
                                                                             dtype=np.float32))

    def document_vectors(self, corpus: Corpus) -> np.ndarray:
        """The corpus's document vectors, loaded once per corpus (shared with :meth:`with_query_side` systems)."""
        return self._docs(corpus)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        # The fusion asks for the same queries right after this system did: encode them once.
        key = tuple(texts)
        if self._last_queries is None or self._last_queries[0] != key:
            self._last_queries = (key, np.asarray(self._query_vectors(texts), dtype=np.float32))
        return self._last_queries[1]

    def rank(self, queries: Sequence[str], corpus: Corpus, depth: int) -> list[np.ndarray]:
        docs = self._docs(corpus)
        q = self.embed(queries)
        _check_dims(self.name, q, docs)
        out: list[np.ndarray] = []
        for start in range(0, len(q), QUERY_CHUNK):
            out.extend(top_k(q[start : start + QUERY_CHUNK] @ docs.T, depth))
        return out

    def order(self, queries: Sequence[str], corpus: Corpus, candidates: Sequence[np.ndarray]) -> list[np.ndarray]:
        docs = self._docs(corpus)
        q = self.embed(queries)
        _check_dims(self.name, q, docs)
        out = []
        for vector, cands in zip(q, candidates):
            scores = np.zeros(len(docs), dtype=np.float32)
            scores[cands] = docs[cands] @ vector
            out.append(_order_by_score(cands, scores))
        return out

    def encode_one(self, text: str) -> None:
        self._encode_one(text)


def _check_dims(name: str, queries: np.ndarray, docs: np.ndarray) -> None:
    if len(queries) and queries.shape[1] != docs.shape[1]:
        raise ArtifactError(f"{name}: query vectors have {queries.shape[1]} dims, documents {docs.shape[1]}")


def e5_system(
    encoder_dir: Path, models: ModelCache, *, threads: int, name: str = "e5", progress: bool = True
) -> DenseSystem:
    """A symmetric ONNX encoder on both sides: its query prompt for queries, its passage prompt for documents."""
    query_side, doc_side = symmetric_encoder(encoder_dir, models, threads=threads, progress=progress)
    return DenseSystem(
        name,
        query_vectors=query_side.vectors,
        document_vectors=lambda corpus: doc_side.vectors(corpus.texts, corpus.plan_texts),
        encode_one=query_side.encode_one,
        info={"kind": "dense", "query_encoder": query_side.info(),
              "document_encoder": {**doc_side.identity, "prompt": doc_side.prompt}},
    )


def llm_system(gguf: GgufVectors, *, dims: int, name: str = "llm") -> DenseSystem:
    """The GGUF embedder on both sides (its document and query prompts), Matryoshka-truncated to ``dims``."""
    full = gguf.identity.get("full_dims")
    if full is not None and dims > full:
        raise BadInput(f"--dims {dims} exceeds the GGUF's {full} dims")

    def query_vectors(texts: Sequence[str]) -> np.ndarray:
        return truncate_dims(gguf.vectors(texts, EMBEDDINGGEMMA_QUERY_PROMPT), dims)

    def document_vectors(corpus: Corpus) -> np.ndarray:
        return truncate_dims(gguf.vectors(corpus.texts, EMBEDDINGGEMMA_DOC_PROMPT, corpus.plan_texts), dims)

    return DenseSystem(
        name,
        query_vectors=query_vectors,
        document_vectors=document_vectors,
        encode_one=lambda text: gguf.embed_one(text, EMBEDDINGGEMMA_QUERY_PROMPT),
        info={"kind": "dense", "dims": dims,
              "query_encoder": {**gguf.identity, "prompt": EMBEDDINGGEMMA_QUERY_PROMPT, "threads_timed": 1},
              "document_encoder": {**gguf.identity, "prompt": EMBEDDINGGEMMA_DOC_PROMPT}},
    )


def care_system(encoder_dir: Path, gguf: GgufVectors, *, threads: int, name: str = "care") -> DenseSystem:
    """An ONNX query encoder aligned to the GGUF against the GGUF's cached document vectors at the encoder's dims."""
    query_side = OnnxQuerySide(encoder_dir, threads=threads)
    alignment = query_side.bulk.alignment
    if alignment.get("kind") != "gguf" or alignment.get("sha256") != gguf.identity["sha256"]:
        raise ArtifactError(
            f"--care-encoder {encoder_dir} is aligned to {alignment.get('name')!r} (sha256 "
            f"{str(alignment.get('sha256'))[:12]}), not to the GGUF {gguf.identity['name']!r} (sha256 "
            f"{gguf.identity['sha256'][:12]}): pass a CARE encoder trained against it"
        )
    prompt = str(alignment.get("prompt", EMBEDDINGGEMMA_DOC_PROMPT))
    dims = query_side.bulk.dims
    return DenseSystem(
        name,
        query_vectors=query_side.vectors,
        document_vectors=lambda corpus: truncate_dims(gguf.vectors(corpus.texts, prompt, corpus.plan_texts), dims),
        encode_one=query_side.encode_one,
        info={"kind": "dense", "dims": dims, "query_encoder": query_side.info(),
              "document_encoder": {**gguf.identity, "prompt": prompt}},
    )


# ------------------------------------------------------------------------------------------------ fusion


def reciprocal_rank_fusion(rankings: Sequence[np.ndarray], k: int = FUSION_K) -> np.ndarray:
    """Documents of several rankings ordered by sum 1 / (k + rank), rank from 1; ties to the lower index: the
    runtime's own fusion (:func:`edge.hybrid.reciprocal_rank_fusion`)."""
    return fuse_rankings(rankings, k)[0]


class HybridSystem(System):
    """BM25 + a dense system (or a score fusion of two, ``tools.experiments.fusion_probe``), fused exactly as the runtime's hybrid
    search fuses them (:func:`edge.hybrid.fuse_hybrid`; the head as ``care-edge search`` returns it: :func:`as_searched`)."""

    def __init__(self, name: str, lexical: BM25System, dense: System) -> None:
        self.name = name
        self.lexical = lexical
        self.dense = dense

    def info(self) -> dict[str, Any]:
        return {"kind": "hybrid",
                "fusion": f"reciprocal rank fusion, k={FUSION_K}; top {DEFAULT_K} as searched (each side's top "
                          f"{fusion_depth(DEFAULT_K)}), then each side's top max(depth, {FUSION_DEPTH})",
                "parts": [self.lexical.name, self.dense.name]}

    def rank(self, queries: Sequence[str], corpus: Corpus, depth: int) -> list[np.ndarray]:
        deep = fusion_depth(depth)
        lexical = self.lexical.rank(queries, corpus, deep)
        dense = self.dense.rank(queries, corpus, deep)
        return [as_searched(d, l, depth) for l, d in zip(lexical, dense)]

    def order(self, queries: Sequence[str], corpus: Corpus, candidates: Sequence[np.ndarray]) -> list[np.ndarray]:
        lexical = self.lexical.order(queries, corpus, candidates, matched_only=True)
        dense = self.dense.order(queries, corpus, candidates)
        return [reciprocal_rank_fusion([a, b]) for a, b in zip(lexical, dense)]

    def encode_one(self, text: str) -> None:
        self.lexical.encode_one(text)
        self.dense.encode_one(text)


def as_searched(dense: np.ndarray, lexical: np.ndarray, depth: int) -> np.ndarray:
    """A hybrid ranking of ``depth`` documents whose top ``DEFAULT_K`` are exactly what ``care-edge search`` returns
    at its default k, then the rest of the depth-``depth`` fusion. The runtime fuses each side's top
    ``fusion_depth(k)``, so a deeper request ranks its head differently; @10 metrics must see what a user sees."""
    head = fuse_hybrid(dense, lexical, min(DEFAULT_K, depth))[0]
    full = fuse_hybrid(dense, lexical, depth)[0]
    return np.concatenate([head, full[~np.isin(full, head)]])[:depth]


