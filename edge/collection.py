"""A collection on disk: manifest + memory-mapped usearch index + read-only doc store (+ lexical postings)."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from edge import formats as fmt
from edge._native import Index, MetricKind
from edge.checks import positive_int
from edge.docstore import DocStore, Document
from edge.errors import ArtifactError, BadInput
from edge.hybrid import LexicalIndex, check_lexical_tables
from edge.integrity import verify_files
from edge.limits import checked_expansion_search
from edge.usearch_file import check_usearch_file

# Read only by `bench`, which checks it then: search works without it.
OPTIONAL_FILES = (fmt.BENCH_QUERIES_FILE,)


@dataclass(frozen=True)
class Hits:
    """One query's neighbours, best first: usearch/docs.sqlite ``keys`` (int64) and cosine ``scores`` (float32)."""

    keys: np.ndarray
    scores: np.ndarray


class Collection:
    """A collection directory, opened by the constructor; file sizes are checked on open, full hashes by
    :meth:`verify`."""

    def __init__(self, directory: str | Path, *, view: bool = True) -> None:
        self.directory = Path(directory)
        self.manifest: dict[str, Any] = fmt.read_manifest(self.directory, fmt.COLLECTION_FORMAT)
        verify_files(self.directory, self.manifest, [name for name in self.manifest["files"]
                                                     if name not in OPTIONAL_FILES],
                     structure={fmt.VECTORS_FILE: check_usearch_file})
        self.index = self._open_index(view)
        self.docs = DocStore(self.directory / fmt.DOCS_FILE)
        stored = self.docs.count()
        if stored != self.count:
            raise ArtifactError(
                f"{self.directory / fmt.DOCS_FILE} holds {stored} documents, manifest says {self.count}: "
                "rebuild the collection"
            )
        lexical = self.manifest.get("search", {}).get("lexical")
        self.lexical = lexical is not None
        self._lexical_index: LexicalIndex | None = None
        self._lexical_problem: str | None = None
        if lexical is not None:
            try:
                check_lexical_tables(self.docs.connection(), self.docs.path)
                self._lexical_index = LexicalIndex(lexical, self.count, source=self.docs.path)
            except ArtifactError as exc:  # dense search does not need the lexical tables: fail only hybrid
                self.lexical, self._lexical_problem = False, exc.message
        # The usearch Python binding reserves per-call search contexts and indexes them by a thread slot that
        # restarts at 0 on every call, so two concurrent searches on one Index would share scratch space.
        # Searches take well under a millisecond next to encoding, so serialising them costs little.
        self._search_lock = threading.Lock()

    def _open_index(self, view: bool) -> Index:
        path = self.directory / fmt.VECTORS_FILE
        try:
            index = Index.restore(str(path), view=view)
        except (ValueError, RuntimeError, OSError) as exc:
            raise ArtifactError(f"{path} is not a readable usearch index ({exc}): re-copy or rebuild the collection") from None
        if index is None:
            raise ArtifactError(f"{path} is not a readable usearch index: re-copy or rebuild the collection")
        expected = self.manifest["index"]
        problems = []
        if index.ndim != expected["ndim"]:
            problems.append(f"ndim {index.ndim} != manifest {expected['ndim']}")
        if len(index) != self.count:
            problems.append(f"{len(index)} vectors != manifest {self.count} documents")
        if index.metric_kind != MetricKind.Cos:
            problems.append(f"metric {index.metric_kind.name} is not cos")
        if "dtype" in expected and index.dtype.name.lower() != str(expected["dtype"]).lower():
            problems.append(f"dtype {index.dtype.name.lower()} != manifest {expected['dtype']}")
        if problems:
            raise ArtifactError(f"{path}: {'; '.join(problems)}: rebuild the collection")
        # The file does not keep the search expansion: restore() comes back with usearch's default, so the value
        # the build chose by measured recall is applied here.
        if "expansion_search" in expected:
            index.expansion_search = checked_expansion_search(expected["expansion_search"], self.directory)
        return index

    # ------------------------------------------------------------------------------------------ properties

    @property
    def name(self) -> str:
        return str(self.manifest["name"])

    @property
    def description(self) -> str:
        return str(self.manifest.get("description", ""))

    @property
    def count(self) -> int:
        return int(self.manifest["counts"]["documents"])

    @property
    def dims(self) -> int:
        return int(self.manifest["index"]["ndim"])

    @property
    def alignment_id(self) -> str:
        return str(self.manifest["alignment_id"])

    @property
    def document_encoder(self) -> dict[str, Any]:
        return dict(self.manifest["document_encoder"])

    @property
    def default_mode(self) -> str:
        """The search mode used when the caller names none: what the collection's build measured best."""
        return str(self.manifest.get("search", {}).get("default_mode", "dense"))

    @property
    def bench_queries_path(self) -> Path | None:
        """``bench_queries.txt`` when the collection ships one (and lists it in its manifest)."""
        if fmt.BENCH_QUERIES_FILE in self.manifest["files"]:
            return self.directory / fmt.BENCH_QUERIES_FILE
        return None

    def file_problems(self, full_hash: bool = True) -> list[str]:
        return fmt.file_problems(self.directory, self.manifest, full_hash)

    def verify(self) -> None:
        """Full sha256 of every file against the manifest; raises ArtifactError naming the first bad file."""
        fmt.check_files(self.directory, self.manifest, full_hash=True)

    # ------------------------------------------------------------------------------------------ search

    def search_vectors(self, queries: np.ndarray, k: int) -> list[Hits]:
        """Approximate (HNSW) top-``k`` of each query vector; ``queries`` is ``[dims]`` or ``[n, dims]``."""
        return self._search(queries, k, exact=False)

    def exact_search(self, queries: np.ndarray, k: int) -> list[Hits]:
        """Brute-force top-``k`` over the same stored (quantised) vectors: the reference for recall."""
        return self._search(queries, k, exact=True)

    def _search(self, queries: np.ndarray, k: int, *, exact: bool) -> list[Hits]:
        k = positive_int(k, "k")
        matrix = np.asarray(queries, dtype=np.float32)
        if matrix.ndim == 1:
            matrix = matrix[None, :]
        if matrix.ndim != 2 or matrix.shape[1] != self.dims:
            raise BadInput(f"query vectors must have {self.dims} dims, got shape {np.asarray(queries).shape}")
        if matrix.shape[0] == 0:
            return []
        wanted = min(int(k), self.count)
        with self._search_lock:
            matches = self.index.search(np.ascontiguousarray(matrix), wanted, exact=exact, threads=1)
        keys = np.atleast_2d(matches.keys)
        distances = np.atleast_2d(matches.distances)
        # One query comes back as Matches (already cut to what was found), several as BatchMatches with counts.
        counts = np.atleast_1d(getattr(matches, "counts", keys.shape[1]))
        hits = []
        for row in range(matrix.shape[0]):
            found = int(counts[row])
            # usearch 'cos' distance is 1 - cosine similarity.
            hits.append(
                Hits(
                    keys=keys[row, :found].astype(np.int64),
                    scores=(1.0 - distances[row, :found]).astype(np.float32),
                )
            )
        return hits

    def require_lexical(self) -> LexicalIndex:
        """The collection's lexical index; ArtifactError when it has none (hybrid search is then impossible)."""
        if self._lexical_problem is not None:
            raise ArtifactError(self._lexical_problem)
        if self._lexical_index is None:
            raise ArtifactError(
                f"collection '{self.name}' has no lexical table, so it cannot be searched in hybrid mode: use "
                "--mode dense, or rebuild it with `python -m tools.build.index build`"
            )
        return self._lexical_index

    def search_lexical(self, query: str, k: int) -> Hits:
        """BM25 top-``k`` of one query over the collection's lexical table (scores are BM25, not cosines)."""
        keys, scores = self.require_lexical().search(self.docs.connection(), query, k)
        return Hits(keys=keys, scores=scores)

    def fetch(self, keys: Sequence[int]) -> list[Document]:
        return self.docs.get(keys)

    def fetch_by_ids(self, ids: Sequence[str]) -> list[Document]:
        """Documents by their ``id`` (not their index key), in the given order; absent ids are skipped."""
        return self.docs.get_by_ids(ids)

    def fetch_by_id_prefix(self, prefix: str, limit: int) -> list[Document]:
        """Up to ``limit`` documents whose ``id`` starts with ``prefix``, in id order (e.g. an ICD code's children)."""
        return self.docs.get_by_id_prefix(prefix, limit)

    def close(self) -> None:
        self.docs.close()

    def __enter__(self) -> "Collection":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
