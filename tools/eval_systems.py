"""The systems the evaluator compares: BM25, dense encoders (ONNX or GGUF on either side) and BM25 + dense fusion.

Every system answers the same four calls, so the evaluator never asks what it is:

- ``rank(queries, corpus, depth)``: each query's best documents (indices into ``corpus``), best first;
- ``order(queries, corpus, candidates)``: each query's candidates (indices), best first (reranking);
- ``embed(texts)``: query-side vectors for pair, classification and clustering tasks (``None`` for a system
  without vectors: BM25 and the fusion);
- ``encode_one(text)``: the query-time work for one query, which the evaluator times for the latency column.

Scores are exact: brute-force cosine over all documents, BM25 over all documents; ties go to the lower index.

Vectors: document vectors and GGUF vectors go through ``tools.doc_encoder.VectorCache`` (the cache that
``tools.build_index embed`` fills), embedded in the batches ``tools.build_index.plan_batches`` plans over the whole
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

from edge import formats
from edge.encoder import QueryEncoder
from edge.errors import ArtifactError, BadInput
from edge.hybrid import FUSION_DEPTH, FUSION_K, fuse_hybrid, fusion_depth
from edge.hybrid import reciprocal_rank_fusion as fuse_rankings
from tools.bm25 import BM25Index, tokenize
from tools.doc_encoder import EncodedBatch, VectorCache, truncate_dims
from tools.metrics import top_k
from tools.models import EMBEDDINGGEMMA_DOC_PROMPT, EMBEDDINGGEMMA_QUERY_PROMPT, ModelCache

QUERY_CHUNK = 256  # queries scored per matrix product: bounds the [queries, documents] score matrix
GGUF_MAX_TOKENS = 512  # tools.doc_encoder.GGUFEncoder's limit (its vector-cache identity carries it)
CHECKPOINT_EVERY = 256
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


# ------------------------------------------------------------------------------------------------ vector sources


def _plan_batches(encoder: Any, texts: Sequence[str], prompt: str) -> list[list[int]]:
    from tools.build_index import plan_batches  # tools.build_index imports tqdm and the models registry

    return plan_batches(encoder, texts, prompt)


def embed_needed(
    encoder: Any,
    cache: VectorCache,
    plan_texts: Sequence[str],
    needed: Sequence[str],
    prompt: str,
    *,
    progress: bool = True,
    desc: str = "embed",
) -> int:
    """Embed the cache's missing ``needed`` texts in the batches ``tools.build_index`` plans over ``plan_texts``
    (which must contain them): a batch is embedded whole when it holds a missing needed text, exactly as
    ``tools.build_index embed`` would embed it, and no other batch is. Returns how many texts were embedded."""
    missing = set(cache.missing(dict.fromkeys(needed)))
    if not missing:
        return 0
    unique = sorted(set(plan_texts) | missing)
    batches = [b for b in _plan_batches(encoder, unique, prompt) if any(unique[i] in missing for i in b)]
    from tqdm import tqdm

    embedded = 0
    pending_texts: list[str] = []
    pending: list[EncodedBatch] = []

    def flush() -> None:
        if pending_texts:
            vectors = np.concatenate([p.vectors for p in pending])
            truncated = [t for p in pending for t in p.truncated]
            # The tag of an unsharded `tools.build_index embed`: the same batch gives the same shard file.
            cache.add(pending_texts, EncodedBatch(vectors, truncated), tag="s0of1-")
            pending_texts.clear()
            pending.clear()

    with tqdm(total=sum(len(b) for b in batches), unit="text", desc=desc, disable=not progress) as bar:
        for batch in batches:
            texts = [unique[i] for i in batch]
            pending.append(encoder.embed(texts, prompt))
            pending_texts.extend(texts)
            embedded += len(texts)
            bar.update(len(texts))
            if len(pending_texts) >= CHECKPOINT_EVERY:
                flush()
        flush()
    return embedded


def gguf_identity(spec: str, models: ModelCache) -> dict[str, Any] | None:
    """The vector-cache identity ``tools.build_index.open_encoder(spec)`` will have, read from the models manifest
    without loading the model; None for a ``gguf:PATH`` spec (only the loaded model knows it)."""
    if spec not in ("embeddinggemma", "gemma3-270m"):
        return None
    entry = models.read_manifest()["models"].get(spec)
    if not entry or not entry.get("sha256"):
        raise ArtifactError(
            f"{spec} is not in the models cache {models.root}: run `python -m tools.models fetch --only {spec}`"
        )
    return {
        "name": entry.get("name", models.path_of(spec).stem),
        "kind": "gguf",
        "sha256": entry["sha256"],
        "pooling": "mean",
        "full_dims": entry.get("dims"),
        "max_tokens": GGUF_MAX_TOKENS,
        "normalize": True,
    }


class GgufVectors:
    """Vectors of one GGUF embedder through the vector cache. The model is loaded only when a text is missing from
    the cache (bulk, all threads) or when a single query is timed (one thread)."""

    def __init__(self, spec: str, models: ModelCache, *, threads: int | None = None, progress: bool = True) -> None:
        self.spec = spec
        self.models = models
        self.threads = threads
        self.progress = progress
        self._bulk: Any = None
        self._single: Any = None
        self._caches: dict[str, VectorCache] = {}
        known = gguf_identity(spec, models)
        self.identity: dict[str, Any] = known if known is not None else self._open(threads).identity

    def _open(self, threads: int | None) -> Any:
        from tools.build_index import open_encoder

        try:
            encoder = open_encoder(self.spec, self.models, threads)
        except SystemExit as exc:  # open_encoder's one-line "error: ..." for a model that is not fetched
            raise ArtifactError(str(exc.code).removeprefix("error: ")) from None
        if hasattr(self, "identity"):
            for key in ("name", "sha256", "max_tokens"):
                if encoder.identity.get(key) != self.identity.get(key):
                    raise ArtifactError(
                        f"{self.spec}: the loaded GGUF's {key} {encoder.identity.get(key)!r} differs from the models "
                        f"manifest's {self.identity.get(key)!r}: run `python -m tools.models verify`"
                    )
        return encoder

    def _cache(self, prompt: str) -> VectorCache:
        if prompt not in self._caches:
            self._caches[prompt] = VectorCache(self.models.root, self.identity, prompt)
        return self._caches[prompt]

    def vectors(self, texts: Sequence[str], prompt: str, plan_texts: Sequence[str] = ()) -> np.ndarray:
        """Full-dimension vectors of ``texts`` (embedding whatever the cache lacks)."""
        cache = self._cache(prompt)
        if cache.missing(texts):
            if self._bulk is None:
                self._bulk = self._open(self.threads)
            embed_needed(self._bulk, cache, plan_texts or texts, texts, prompt, progress=self.progress,
                         desc=f"{self.identity['name']} {prompt!r}")
        return cache.get(list(texts))[0]

    def embed_one(self, text: str, prompt: str) -> None:
        if self._single is None:
            self._single = self._open(1)
        self._single.embed([text], prompt)


class OnnxDocVectors:
    """A symmetric ONNX encoder (multilingual-e5-small INT8) on the document side: its own graph under the passage
    prompt its manifest declares, 512 tokens, through the vector cache (``tools.doc_encoder.OnnxEncoder``)."""

    def __init__(self, encoder_dir: Path, models: ModelCache, *, threads: int | None = None,
                 progress: bool = True) -> None:
        from tools.doc_encoder import OnnxEncoder

        try:
            self._encoder = OnnxEncoder(encoder_dir, threads=threads)
        except SystemExit as exc:
            raise ArtifactError(str(exc.code).removeprefix("error: ")) from None
        self.identity = dict(self._encoder.identity)
        self.prompt = self._encoder.prompt
        self.progress = progress
        self._cache = VectorCache(models.root, self.identity, self.prompt)

    def vectors(self, texts: Sequence[str], plan_texts: Sequence[str] = ()) -> np.ndarray:
        if self._cache.missing(texts):
            embed_needed(self._encoder, self._cache, plan_texts or texts, texts, self.prompt,
                         progress=self.progress, desc=f"{self.identity['name']} {self.prompt!r}")
        return self._cache.get(list(texts))[0]


# ------------------------------------------------------------------------------------------------ dense systems


def _model_sha256(manifest: dict[str, Any]) -> str:
    """The sha256 of model.onnx that the encoder's manifest pins."""
    return str(manifest["files"][formats.MODEL_FILE]["sha256"])


class OnnxQuerySide:
    """An ONNX query encoder folder, one text per call (bulk: ``threads`` threads; timing: one thread)."""

    def __init__(self, directory: Path, *, threads: int = 1) -> None:
        self.directory = Path(directory)
        self.bulk = QueryEncoder(self.directory, threads=threads)
        self.single = QueryEncoder(self.directory, threads=1) if threads != 1 else self.bulk

    def info(self) -> dict[str, Any]:
        return {
            "kind": "onnx",
            "path": str(self.directory),
            "name": self.bulk.name,
            "sha256": _model_sha256(self.bulk.manifest),
            "prompt": self.bulk.prompt,
            "max_tokens": self.bulk.max_tokens,
            "dims": self.bulk.dims,
            "alignment_id": self.bulk.alignment_id,
        }

    def vectors(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.bulk.dims), dtype=np.float32)
        return np.concatenate([self.bulk.encode([t]).vectors for t in texts])

    def encode_one(self, text: str) -> None:
        self.single.encode([text])


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
    query_side = OnnxQuerySide(encoder_dir, threads=threads)
    alignment = query_side.bulk.alignment
    own_sha = _model_sha256(query_side.bulk.manifest)
    if alignment.get("kind") != "onnx" or alignment.get("sha256") != own_sha:
        raise BadInput(
            f"--e5-encoder {encoder_dir} is not a symmetric encoder (it is aligned to {alignment.get('name')!r}): "
            "pass the multilingual-e5-small INT8 folder"
        )
    doc_side = OnnxDocVectors(Path(encoder_dir), models, threads=threads, progress=progress)
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
    """BM25 + a dense system (or a score fusion of two, ``tools.fusion_probe``), fused exactly as the runtime's hybrid
    search fuses them (:func:`edge.hybrid.fuse_hybrid`: reciprocal rank, k = ``FUSION_K``, each side's top
    ``fusion_depth(depth)``)."""

    def __init__(self, name: str, lexical: BM25System, dense: System) -> None:
        self.name = name
        self.lexical = lexical
        self.dense = dense

    def info(self) -> dict[str, Any]:
        return {"kind": "hybrid",
                "fusion": f"reciprocal rank fusion, k={FUSION_K}, each side's top max(depth, {FUSION_DEPTH})",
                "parts": [self.lexical.name, self.dense.name]}

    def rank(self, queries: Sequence[str], corpus: Corpus, depth: int) -> list[np.ndarray]:
        deep = fusion_depth(depth)
        lexical = self.lexical.rank(queries, corpus, deep)
        dense = self.dense.rank(queries, corpus, deep)
        return [fuse_hybrid(d, l, depth)[0] for l, d in zip(lexical, dense)]

    def order(self, queries: Sequence[str], corpus: Corpus, candidates: Sequence[np.ndarray]) -> list[np.ndarray]:
        lexical = self.lexical.order(queries, corpus, candidates, matched_only=True)
        dense = self.dense.order(queries, corpus, candidates)
        return [reciprocal_rank_fusion([a, b]) for a, b in zip(lexical, dense)]

    def encode_one(self, text: str) -> None:
        self.lexical.encode_one(text)
        self.dense.encode_one(text)


