"""The evaluation's ``shipped`` systems: the runtime itself (``edge.Searcher``) over built collections, in one search
mode each, so that the report measures what a user of ``care-edge search`` gets, ANN, BM25 postings and fusion included,
and not a brute-force re-implementation of it.

A retrieval task is ranked over the collection that holds every document of its corpus (matched by document id);
that collection's documents outside the corpus are dropped from each ranking, so a task over the cMedIR titles runs
against ``cmed-zh``, which also holds the Toyhom answers. The searcher is asked for enough results that at least
``depth`` corpus documents remain in the usual case. Tasks whose corpus no collection holds, and the rerank, pair,
classification and clustering tasks, sit out (the ``e5``/``care`` systems already measure the shipped encoder's
vectors there). The latency column is the whole single-query search call, not only encoding.
"""

from __future__ import annotations

import math
import sqlite3
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from edge import formats
from edge.collection import Collection
from edge.encoder import QueryEncoder
from edge.search import K_MAX, Searcher, check_mode
from tools.evaluate.systems import Corpus, System

SEARCH_BATCH = 32
# Over-fetch beyond depth / (corpus share of the collection), for the ANN's and the fusion's uneven mixing.
OVERFETCH = 1.5


def collection_ids(directory: Path) -> list[str]:
    """Document ids of a collection in key order (key k is row k)."""
    uri = (directory / formats.DOCS_FILE).resolve().as_uri() + "?mode=ro&immutable=1"
    connection = sqlite3.connect(uri, uri=True)
    try:
        return [row[0] for row in connection.execute("SELECT id FROM docs ORDER BY key")]
    finally:
        connection.close()


def open_searchers(collections: Sequence[Path], encoder_dir: Path, *, threads: int = 1
                   ) -> list[tuple[Searcher, list[str]]]:
    """One searcher per collection, all sharing one query encoder, each with its document ids in key order: opened
    once and shared by the ``shipped:<mode>`` systems."""
    encoder = QueryEncoder(encoder_dir, threads=threads)
    return [(Searcher(Collection(directory), encoder), collection_ids(Path(directory))) for directory in collections]


class ShippedSystem(System):
    def __init__(self, name: str, searchers: Sequence[tuple[Searcher, list[str]]], mode: str):
        self.name = name
        self.mode = check_mode(mode)
        self.searchers = list(searchers)
        if self.mode == "hybrid":  # fail before hours of other systems' scoring, not at this system's first task
            for searcher, _ in self.searchers:
                searcher.collection.require_lexical()
        self.encoder = self.searchers[0][0].encoder
        self._latency_searcher = self.searchers[0][0]

    def info(self) -> dict[str, Any]:
        return {"kind": "shipped", "mode": self.mode, "latency_measures": "the whole care-edge search call",
                "query_encoder": {"name": self.encoder.name, "kind": "onnx", "path": str(self.encoder.directory),
                                  "sha256": self.encoder.manifest["files"][formats.MODEL_FILE]["sha256"]},
                "collections": [{"name": s.collection.name, "path": str(s.collection.directory),
                                 "documents": s.collection.count} for s, _ in self.searchers]}

    def _searcher_for(self, corpus: Corpus) -> tuple[Searcher, dict[int, int]] | None:
        wanted = {doc_id: index for index, doc_id in enumerate(corpus.ids)}
        for searcher, ids in self.searchers:
            held = {key: wanted[doc_id] for key, doc_id in enumerate(ids) if doc_id in wanted}
            if len(held) == len(wanted):
                return searcher, held
        return None

    def rank(self, queries: Sequence[str], corpus: Corpus, depth: int) -> list[np.ndarray] | None:
        found = self._searcher_for(corpus)
        if found is None:
            return None
        searcher, corpus_index = found
        share = len(corpus_index) / searcher.collection.count
        k = min(K_MAX, searcher.collection.count, math.ceil(depth / share * OVERFETCH))
        rankings = []
        for start in range(0, len(queries), SEARCH_BATCH):
            for response in searcher.search_batch(list(queries[start : start + SEARCH_BATCH]), k, self.mode):
                ranked = [corpus_index[r.key] for r in response.results if r.key in corpus_index]
                rankings.append(np.array(ranked[:depth], dtype=np.int64))
        return rankings

    def order(self, queries: Sequence[str], corpus: Corpus, candidates: Sequence[np.ndarray]) -> None:
        return None

    def encode_one(self, text: str) -> None:
        self._latency_searcher.search(text, 10, self.mode)
