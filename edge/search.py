"""Query text -> ranked documents: clean, encode, search the index (and, in hybrid mode, the lexical table, fused by
reciprocal rank: :mod:`edge.hybrid`), fetch the documents."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from edge.collection import Collection, Hits
from edge.encoder import QueryEncoder
from edge.errors import ArtifactError, BadInput
from edge.formats import SEARCH_MODES
from edge.hybrid import Fusion, fuse_hybrid, fusion_depth, fusion_from_manifest
from edge.text import clean_query

K_MIN = 1
K_MAX = 1000
# Results per query when the caller names no k (`care-edge search`, the page).
DEFAULT_K = 10
TIMING_KEYS = ("tokenize", "encode", "search", "lexical", "fetch", "total")


@dataclass(frozen=True)
class SearchResult:
    key: int
    id: str
    score: float
    text: str
    meta: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "score": round(float(self.score), 6), "text": self.text, "meta": self.meta}


@dataclass(frozen=True)
class SearchResponse:
    """``query``: the cleaned query that was searched. ``timings_ms``: keys TIMING_KEYS; in a batch, every response
    carries the batch's stage times divided by the batch size. ``truncated``: the query exceeded max_tokens.
    ``mode``: "dense" (scores are cosines) or "hybrid" (scores are the fused scores of the collection's
    ``search.fusion``: reciprocal-rank by default)."""

    query: str
    results: list[SearchResult]
    timings_ms: dict[str, float]
    truncated: bool
    mode: str = "dense"

    def to_json(self) -> dict[str, Any]:
        return {
            "query": self.query,
            "mode": self.mode,
            "results": [result.to_json() for result in self.results],
            "timings_ms": {key: round(value, 3) for key, value in self.timings_ms.items()},
            "truncated": self.truncated,
        }


def check_k(k: object) -> int:
    if isinstance(k, bool) or not isinstance(k, int) or not K_MIN <= k <= K_MAX:
        raise BadInput(f"-k must be an integer from {K_MIN} to {K_MAX}, got {k!r}")
    return k


def check_mode(mode: object) -> str:
    if mode not in SEARCH_MODES:
        raise BadInput(f"--mode must be one of {', '.join(SEARCH_MODES)}, got {mode!r}")
    return str(mode)


def alignment_problem(collection_manifest: Mapping[str, Any], encoder_manifest: Mapping[str, Any]) -> str | None:
    """A one-line explanation when the query encoder was not aligned to the collection's document encoder."""
    collection_id = collection_manifest["alignment_id"]
    encoder_id = encoder_manifest["alignment"]["alignment_id"]
    if collection_id == encoder_id or embedded_by_encoder(collection_manifest, encoder_manifest):
        return None
    collection_doc_encoder = collection_manifest["document_encoder"].get("name", "?")
    encoder_doc_encoder = encoder_manifest["alignment"].get("name", "?")
    return (
        f"query encoder '{encoder_manifest['name']}' (alignment_id {encoder_id}, aligned to {encoder_doc_encoder}) "
        f"does not match collection '{collection_manifest['name']}' (alignment_id {collection_id}, built with "
        f"{collection_doc_encoder}): pass --encoder DIR with the query encoder built for this collection, "
        "or rebuild the collection with this encoder's document encoder"
    )


def embedded_by_encoder(collection_manifest: Mapping[str, Any], encoder_manifest: Mapping[str, Any]) -> bool:
    """The collection declares its passages were embedded by this query encoder's own graph (``care-edge index
    --encoder query`` marks its document encoder ``symmetric``): queries and passages then share that graph's space,
    whatever the graph was aligned to."""
    document_encoder = collection_manifest["document_encoder"]
    graph = encoder_manifest.get("files", {}).get("model.onnx", {})
    return (document_encoder.get("symmetric") is True and document_encoder.get("kind") == "onnx"
            and document_encoder.get("sha256") == graph.get("sha256"))


class Searcher:
    """Binds a collection to a query encoder aligned to it. Safe to share between threads."""

    def __init__(self, collection: Collection, encoder: QueryEncoder) -> None:
        problem = alignment_problem(collection.manifest, encoder.manifest)
        if problem:
            raise ArtifactError(problem)
        if collection.dims != encoder.dims:
            raise ArtifactError(
                f"collection '{collection.name}' has {collection.dims} dims but query encoder '{encoder.name}' "
                f"produces {encoder.dims}: rebuild one of them"
            )
        self.collection = collection
        self.encoder = encoder

    def search(self, query: str, k: int = 10, mode: str | None = None) -> SearchResponse:
        return self.search_batch([query], k, mode)[0]

    def search_batch(self, queries: Sequence[str], k: int = 10, mode: str | None = None) -> list[SearchResponse]:
        """Search several queries with one encoder call and one index call; results keep the input order.
        ``mode``: "dense" or "hybrid"; None means the collection's default_mode."""
        check_k(k)
        mode = check_mode(self.collection.default_mode if mode is None else mode)
        if mode == "hybrid":
            self.collection.require_lexical()
        cleaned = [clean_query(query) for query in queries]
        if not cleaned:
            return []
        started = time.perf_counter()
        encoded = self.encoder.encode(cleaned)
        searched_at = time.perf_counter()
        depth = fusion_depth(k) if mode == "hybrid" else k
        hits = self.collection.search_vectors(encoded.vectors, depth)
        lexical_at = fetched_at = time.perf_counter()
        if mode == "hybrid":
            fusion = fusion_from_manifest(self.collection.manifest.get("search", {}).get("fusion"))
            hits = [self._fuse(dense, self.collection.search_lexical(query, depth), k, fusion)
                    for query, dense in zip(cleaned, hits)]
            fetched_at = time.perf_counter()
        # One store round trip for the whole batch: keys repeat across queries, and SQLite lookups dominate fetch.
        all_keys = [int(key) for query_hits in hits for key in query_hits.keys]
        documents = iter(self.collection.fetch(all_keys))
        finished = time.perf_counter()

        share = 1.0 / len(cleaned)
        timings = {
            "tokenize": encoded.tokenize_ms * share,
            "encode": encoded.encode_ms * share,
            "search": (lexical_at - searched_at) * 1e3 * share,
            "lexical": (fetched_at - lexical_at) * 1e3 * share,
            "fetch": (finished - fetched_at) * 1e3 * share,
            "total": (finished - started) * 1e3 * share,
        }
        responses = []
        for query, query_hits, truncated in zip(cleaned, hits, encoded.truncated):
            results = []
            for key, score in zip(query_hits.keys, query_hits.scores):
                document = next(documents)
                results.append(
                    SearchResult(key=int(key), id=document.id, score=float(score), text=document.text, meta=document.meta)
                )
            responses.append(SearchResponse(query=query, results=results, timings_ms=dict(timings),
                                            truncated=truncated, mode=mode))
        return responses

    @staticmethod
    def _fuse(dense: Hits, lexical: Hits, k: int, fusion: Fusion) -> Hits:
        keys, scores = fuse_hybrid(dense.keys, lexical.keys, k, fusion, dense.scores, lexical.scores)
        return Hits(keys=keys, scores=scores)
