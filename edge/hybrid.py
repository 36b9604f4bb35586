"""Hybrid search: lexical (BM25) search over a collection's postings in ``docs.sqlite``, and its reciprocal-rank
fusion with the dense ranking. Everything hybrid search is made of lives here: the tokenizer, the postings format and
its writer, BM25 scoring, the postings reader, and the fusion with its constants.

Why lexical next to dense: medical queries often hinge on one exact term (a drug, a code, a rare disease name) that a
small query encoder blurs, while BM25 matches it literally; fusing the two rankings recovers both kinds of hit
(README, "Hybrid search").

Tokens: NFKC + case-folded text; every run of Han characters becomes its overlapping character bigrams (a lone Han
character is its own token), every run of other letters/digits is one word. Chinese has no spaces, and bigrams are
the usual strong baseline for it; on English, Spanish or German text the same rule degrades to plain words, and an
ICD document that mixes both ("A00 | Cholera | 霍乱") gets both kinds.

Scoring: Okapi BM25 with Lucene's idf, summed over the query's tokens with repeats (as Lucene and bm25s do):

    idf(t) = ln(1 + (N - df + 0.5) / (df + 0.5))
    score(q, d) = sum_t idf(t) * tf(t, d) / (tf(t, d) + k1 * (1 - b + b * |d| / avgdl)),  k1 = 1.2, b = 0.75

``tools.evaluate.bm25`` (the evaluation's BM25) builds its in-memory index with :func:`count_postings` and scores with
:func:`term_weights`, so what is measured is what ships, to the last float64 rounding.

Storage (why not SQLite FTS5: its bm25() is computed row by row over every matching document, which on the cmed-zh
bench queries cost many times what the match alone did). Two tables: ``lexical_terms(term, idf, keys, tfs)``, one
row per token holding its posting list (document keys as little-endian delta-encoded uint16, or uint32 for collections of more than
65,536 documents, and term frequencies as uint8, capped at 255); and ``lexical_docs`` holding the per-document length
normalisation ``k1 * (1 - b + b * |d| / avgdl)`` as float64. A query reads one row per distinct token.

Fusion: reciprocal rank fusion with k = 60 as in Cormack et al. (2009) over each side's top ``FUSION_DEPTH``
(:func:`fuse_hybrid`), each side's term scaled by its weight when the collection's manifest records a
``search.fusion`` block (:class:`Fusion`; plain RRF otherwise); ``tools.evaluate.systems`` evaluates hybrid search
through that same function. The measured figures of the shipped collections are in
``prebuilt_index/reports/eval-shipped.json``.

Lexical text: the postings index, per document, the strings the manifest's ``search.lexical.fields`` select
(:func:`lexical_text`): ``text`` (the document text, the default) and ``meta.<key>`` paths into the document's meta,
``*`` standing for every value. The ICD-10 collection indexes every language's name of a code, kept in meta,
which its document text (code, English, Chinese) leaves out.
"""

from __future__ import annotations

import os
import re
import sqlite3
import unicodedata
from collections import Counter
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from edge.docstore import SQLITE_MAX_PARAMS
from edge.errors import ArtifactError

TERMS_TABLE = "lexical_terms"
DOCS_NORMS_TABLE = "lexical_docs"
# Recorded in the manifest: a collection built with another tokenisation must not be queried with this one.
TOKENIZER_ID = "han-bigram+word/1"
K1 = 1.2
B = 0.75
TF_MAX = 255
LEXICAL_KIND = "bm25"
# key_encoding (manifest) -> dtype of the delta-encoded document keys of a posting list.
KEY_DTYPES = {"delta-u16": np.dtype("<u2"), "delta-u32": np.dtype("<u4")}
# Queries longer than this many tokens are cut before matching (a documented truncation): each distinct token is one
# more posting list to read, and a pasted page gains little from its 300th bigram. The longest Toyhom patient
# questions of the evaluation have about 200. The dense side truncates at its own max_tokens.
MAX_QUERY_TOKENS = 256
# Reciprocal rank fusion: k = 60 (Cormack et al., 2009); each side contributes its top FUSION_DEPTH (or top k when
# a caller asks for more). 30, not 100: measured through the runtime with k = 10, the shallower lists lose nothing on
# cMedIR and Toyhom and gain on every ICD-10 language, because a deep list lets documents ranked low on both sides
# outscore one ranked high on one side (prebuilt_index/reports/fusion-depth.json, docs/BENCHMARKS.md).
FUSION_K = 60
FUSION_DEPTH = 30
FUSION_KIND = "rrf"
SCORE_FUSION_KIND = "scores"
FUSION_KINDS = (FUSION_KIND, SCORE_FUSION_KIND)
# What the postings index by default: the document text. A collection may record more (``search.lexical.fields``,
# e.g. the names every language gives an ICD code, kept in meta), see :func:`lexical_text`.
LEXICAL_TEXT_FIELD = "text"
DEFAULT_LEXICAL_FIELDS = (LEXICAL_TEXT_FIELD,)
_FIELD_RE = re.compile(r"^(text|meta(\.(\*|[^.*]+))+)$")

LEXICAL_TABLES_SQL = (
    f"CREATE TABLE {TERMS_TABLE} (term TEXT PRIMARY KEY, idf REAL NOT NULL, keys BLOB NOT NULL, tfs BLOB NOT NULL)"
    " WITHOUT ROWID",
    f"CREATE TABLE {DOCS_NORMS_TABLE} (name TEXT PRIMARY KEY, value BLOB NOT NULL)",
)

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


# ---------------------------------------------------------------------------------------------- scoring


def count_postings(texts: Sequence[str], *, k1: float = K1, b: float = B
                   ) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], np.ndarray]:
    """Term -> (document indices ascending, int64; term frequencies, int64), and each document's length
    normalisation ``k1 * (1 - b + b * |d| / avgdl)`` (float64)."""
    if k1 < 0 or not 0 <= b <= 1:
        raise ValueError(f"BM25 needs k1 >= 0 and 0 <= b <= 1, got k1={k1}, b={b}")
    counts = [Counter(tokenize(text)) for text in texts]
    lengths = np.array([sum(c.values()) for c in counts], dtype=np.float64)
    avgdl = float(lengths.mean()) if len(texts) and lengths.sum() > 0 else 1.0
    lists: dict[str, tuple[list[int], list[int]]] = {}
    for doc, counter in enumerate(counts):
        for term, tf in counter.items():
            docs, tfs = lists.setdefault(term, ([], []))
            docs.append(doc)
            tfs.append(tf)
    postings = {term: (np.array(docs, dtype=np.int64), np.array(tfs, dtype=np.int64))
                for term, (docs, tfs) in lists.items()}
    return postings, k1 * (1.0 - b + b * lengths / avgdl)


def lucene_idf(df: int, n_docs: int) -> float:
    return float(np.log1p((n_docs - df + 0.5) / (df + 0.5)))


def term_weights(idf: float, tfs: np.ndarray, norms: np.ndarray) -> np.ndarray:
    """Each posting's BM25 contribution: ``idf * tf / (tf + norm)`` (float64); ``norms`` of the postings' documents."""
    tf = tfs.astype(np.float64)
    return idf * tf / (tf + norms)


def top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` best documents with a positive score: indices (int64) and scores, best first, ties to the lower index."""
    candidates = np.flatnonzero(scores > 0)
    if candidates.size > k:
        # argpartition narrows to at least k (ties at the cut kept) before the exact, deterministic sort.
        cut = np.partition(scores[candidates], candidates.size - k)[candidates.size - k]
        candidates = candidates[scores[candidates] >= cut]
    order = np.lexsort((candidates, -scores[candidates]))[:k]
    chosen = candidates[order]
    return chosen.astype(np.int64), scores[chosen]


# ---------------------------------------------------------------------------------------------- storage


def lexical_description(n_docs: int, fields: Sequence[str] = DEFAULT_LEXICAL_FIELDS) -> dict[str, Any]:
    """The manifest's ``search.lexical`` block for a collection of ``n_docs`` documents whose postings index
    ``fields`` (see :func:`lexical_texts`)."""
    return {"kind": LEXICAL_KIND, "tokenizer": TOKENIZER_ID, "k1": K1, "b": B, "idf": "lucene",
            "key_encoding": _key_encoding(n_docs), "tables": [TERMS_TABLE, DOCS_NORMS_TABLE],
            "fields": list(check_lexical_fields(fields))}


def check_lexical_fields(fields: object) -> tuple[str, ...]:
    """``fields`` as a tuple, or ValueError: a non-empty list of distinct ``text`` / ``meta.<key>[.<key>|.*]...``."""
    if isinstance(fields, str) or not isinstance(fields, (list, tuple)) or not fields:
        raise ValueError(f"lexical fields must be a non-empty list, got {fields!r}")
    for field in fields:
        if not isinstance(field, str) or not _FIELD_RE.match(field):
            raise ValueError(f"lexical field {field!r} is not 'text' or 'meta.<key>[.<key>|.*]...'")
    if len(set(fields)) != len(fields):
        raise ValueError(f"lexical fields repeat: {list(fields)}")
    return tuple(fields)


def _field_strings(node: Any, path: Sequence[str]) -> list[str]:
    """Every string under ``node`` along ``path`` ("*" = every value of a mapping or item of a list); the strings
    of whatever the path ends on, lists and mappings included, in order."""
    if path:
        head, rest = path[0], path[1:]
        if head == "*":
            children = list(node.values()) if isinstance(node, Mapping) else node if isinstance(node, list) else []
            return [text for child in children for text in _field_strings(child, rest)]
        return _field_strings(node[head], rest) if isinstance(node, Mapping) and head in node else []
    if isinstance(node, str):
        return [node]
    if isinstance(node, Mapping):
        return [text for child in node.values() for text in _field_strings(child, ())]
    if isinstance(node, list):
        return [text for child in node for text in _field_strings(child, ())]
    return []


def lexical_text(text: str, meta: Mapping[str, Any] | None, fields: Sequence[str] = DEFAULT_LEXICAL_FIELDS) -> str:
    """The text the postings index for one document: the strings ``fields`` select, each distinct string once, one
    per line. ``text`` is the document text; ``meta.names.*`` every value of ``meta["names"]``."""
    strings: list[str] = []
    for field in fields:
        if field == LEXICAL_TEXT_FIELD:
            strings.append(text)
        else:
            strings.extend(_field_strings(meta or {}, field.split(".")[1:]))
    return "\n".join(dict.fromkeys(s for s in strings if s.strip()))


def lexical_texts(texts: Sequence[str], metas: Sequence[Mapping[str, Any] | None],
                  fields: Sequence[str] = DEFAULT_LEXICAL_FIELDS) -> list[str]:
    """:func:`lexical_text` of every document (``texts`` and ``metas`` row by row)."""
    check_lexical_fields(fields)
    if len(texts) != len(metas):
        raise ValueError(f"{len(texts)} texts but {len(metas)} metas")
    return [lexical_text(text, meta, fields) for text, meta in zip(texts, metas)]


def _key_encoding(n_docs: int) -> str:
    # Keys run 0..n_docs-1, so with at most 65,536 documents every delta fits in 16 bits.
    return "delta-u16" if n_docs <= 1 << 16 else "delta-u32"


def write_lexical_tables(connection: sqlite3.Connection, texts: Sequence[str]) -> None:
    """Create and fill the postings tables for documents ``texts`` (row k = key k) in the caller's transaction."""
    postings, norms = count_postings(texts)
    key_dtype = KEY_DTYPES[_key_encoding(len(texts))]
    for statement in LEXICAL_TABLES_SQL:
        connection.execute(statement)
    connection.executemany(
        f"INSERT INTO {TERMS_TABLE} (term, idf, keys, tfs) VALUES (?, ?, ?, ?)",
        (
            (term, lucene_idf(len(docs), len(texts)),
             np.diff(docs, prepend=0).astype(key_dtype).tobytes(),
             np.minimum(tfs, TF_MAX).astype(np.uint8).tobytes())
            for term, (docs, tfs) in sorted(postings.items())
        ),
    )
    connection.execute(f"INSERT INTO {DOCS_NORMS_TABLE} (name, value) VALUES ('norms', ?)",
                       (np.asarray(norms, dtype="<f8").tobytes(),))


def check_lexical_tables(connection: sqlite3.Connection, path: str | os.PathLike[str]) -> None:
    """Raise ArtifactError unless the store at ``path`` holds the postings tables that hybrid search reads."""
    try:
        names = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.DatabaseError as exc:
        raise ArtifactError(f"{path} is corrupt ({exc}): re-copy or rebuild the collection") from None
    missing = [name for name in (TERMS_TABLE, DOCS_NORMS_TABLE) if name not in names]
    if missing:
        raise ArtifactError(f"{path} has no {missing[0]} table although the manifest lists one: rebuild the collection")


class LexicalIndex:
    """BM25 over the postings tables of one ``docs.sqlite``. Holds the document norms (8 bytes per document, read on
    first use); the connection is the caller's, so that each thread can pass its own. ``source`` names the store in
    error messages."""

    def __init__(self, description: Mapping[str, Any], n_docs: int, source: str | os.PathLike[str] = "docs.sqlite"
                 ) -> None:
        self.n_docs = n_docs
        self.source = source
        self._key_dtype = KEY_DTYPES[description["key_encoding"]]  # checked by edge.formats on load
        self._norms: np.ndarray | None = None

    def norms(self, connection: sqlite3.Connection) -> np.ndarray:
        if self._norms is None:
            row = connection.execute(f"SELECT value FROM {DOCS_NORMS_TABLE} WHERE name = 'norms'").fetchone()
            norms = np.frombuffer(row[0], dtype="<f8") if row else np.zeros(0)
            if norms.size != self.n_docs:
                raise ValueError(f"{DOCS_NORMS_TABLE} holds {norms.size} norms for {self.n_docs} documents")
            self._norms = norms  # a benign race: every thread would store the same array
        return self._norms

    def scores(self, connection: sqlite3.Connection, query: str) -> np.ndarray:
        """float64 [n_docs]: every document's BM25 score for ``query`` (0 where it shares no token)."""
        tokens = tokenize(query)[:MAX_QUERY_TOKENS]
        out = np.zeros(self.n_docs, dtype=np.float64)
        if not tokens:
            return out
        norms = self.norms(connection)
        distinct = list(dict.fromkeys(tokens))
        lists: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for start in range(0, len(distinct), SQLITE_MAX_PARAMS):
            part = distinct[start : start + SQLITE_MAX_PARAMS]
            placeholders = ",".join("?" * len(part))
            for term, idf, keys, tfs in connection.execute(
                f"SELECT term, idf, keys, tfs FROM {TERMS_TABLE} WHERE term IN ({placeholders})", part
            ):
                docs = np.cumsum(np.frombuffer(keys, dtype=self._key_dtype), dtype=np.int64)
                if docs.size and (docs[-1] >= self.n_docs or docs.size != len(tfs)):
                    raise ValueError(f"posting list of {term!r} does not fit the collection")
                lists[term] = (docs, term_weights(float(idf), np.frombuffer(tfs, dtype=np.uint8), norms[docs]))
        for term in tokens:  # in query order, repeats included: the same float64 sums as tools.evaluate.bm25
            found = lists.get(term)
            if found is not None:
                out[found[0]] += found[1]
        return out

    def search(self, connection: sqlite3.Connection, query: str, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` best documents for ``query``: keys (int64) and BM25 scores (float32), best first, ties to the
        lower key. A query with no token, or whose tokens occur nowhere, returns empty arrays. Unreadable postings
        raise ArtifactError."""
        try:
            keys, scores = top_k(self.scores(connection, query), int(k))
        except (sqlite3.DatabaseError, ValueError, TypeError) as exc:
            raise ArtifactError(f"{self.source}: lexical tables are corrupt ({exc}): rebuild the collection") from None
        return keys, scores.astype(np.float32)


# ---------------------------------------------------------------------------------------------- fusion


def reciprocal_rank_fusion(rankings: Sequence[np.ndarray], k: int) -> tuple[np.ndarray, np.ndarray]:
    """Keys of several best-first rankings ordered by sum 1 / (k + rank), rank from 1; ties to the lower key.
    Returns the fused keys and their fused scores."""
    return weighted_rrf(rankings, [1.0] * len(rankings), k)


def weighted_rrf(rankings: Sequence[np.ndarray], weights: Sequence[float], k: int) -> tuple[np.ndarray, np.ndarray]:
    """Reciprocal rank fusion where ranking ``i`` adds ``weights[i] / (k + rank)``; ties to the lower key."""
    fused: dict[int, float] = {}
    for ranking, weight in zip(rankings, weights, strict=True):
        for position, key in enumerate(np.asarray(ranking).tolist()):
            fused[key] = fused.get(key, 0.0) + weight / (k + position + 1)
    order = sorted(fused, key=lambda key: (-fused[key], key))
    return (np.array(order, dtype=np.int64), np.array([fused[key] for key in order], dtype=np.float32))


@dataclass(frozen=True)
class Fusion:
    """How a hybrid search fuses its two rankings (each side's top ``fusion_depth(k)``). A collection records its own
    in the manifest's ``search.fusion`` (:func:`fusion_from_manifest`); without one, plain RRF.

    - ``rrf``: weighted reciprocal rank fusion, ``dense_weight / (k + dense rank) + lexical_weight / (k + lexical
      rank)``; the default (both weights 1) is Cormack et al.'s.
    - ``scores``: a weighted sum of the two sides' scores, each scaled to its own list: the dense cosine min-max
      over the dense list (its best 1, its last 0), BM25 divided by the list's best. Rank fusion ignores how far
      apart two ranks are; on ICD-10, where a query's words often match many codes equally, the scores keep the
      dense side's margin (``docs/experiments.md``). A document missing from one list scores 0 on that side.
    """

    kind: str = FUSION_KIND
    k: int = FUSION_K
    dense_weight: float = 1.0
    lexical_weight: float = 1.0

    def describe(self) -> dict[str, Any]:
        """The manifest's ``search.fusion`` block."""
        block: dict[str, Any] = {"kind": self.kind}
        if self.kind == FUSION_KIND:
            block["k"] = self.k
        return {**block, "dense_weight": self.dense_weight, "lexical_weight": self.lexical_weight}


DEFAULT_FUSION = Fusion()


def fusion_from_manifest(block: object) -> Fusion:
    """The :class:`Fusion` a manifest's ``search.fusion`` block describes (None: :data:`DEFAULT_FUSION`);
    ValueError naming what is wrong otherwise."""
    if block is None:
        return DEFAULT_FUSION
    if not isinstance(block, Mapping) or block.get("kind") not in FUSION_KINDS:
        raise ValueError(f"'search.fusion' must be an object with kind {' or '.join(map(repr, FUSION_KINDS))}, "
                         f"got {block!r}")
    kind = str(block["kind"])
    allowed = {"kind", "dense_weight", "lexical_weight"} | ({"k"} if kind == FUSION_KIND else set())
    unknown = set(block) - allowed
    if unknown:
        raise ValueError(f"'search.fusion' of kind {kind!r} has unknown keys {sorted(unknown)}")
    k = block.get("k", FUSION_K)
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"'search.fusion.k' must be a positive integer, got {k!r}")
    weights = []
    for name in ("dense_weight", "lexical_weight"):
        weight = block.get(name, 1.0)
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not 0 < weight < float("inf"):
            raise ValueError(f"'search.fusion.{name}' must be a positive number, got {weight!r}")
        weights.append(float(weight))
    return Fusion(kind=kind, k=k, dense_weight=weights[0], lexical_weight=weights[1])


def score_fusion(dense_keys: np.ndarray, dense_scores: np.ndarray, lexical_keys: np.ndarray,
                 lexical_scores: np.ndarray, dense_weight: float, lexical_weight: float
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Keys of a dense and a lexical best-first list ordered by ``dense_weight * min-max(cosine) + lexical_weight *
    bm25 / best bm25`` (see :class:`Fusion`); ties to the lower key. Returns the keys and their fused scores."""
    fused: dict[int, float] = {}
    dense = np.asarray(dense_scores, dtype=np.float64)
    if dense.size:
        low, span = float(dense.min()), float(dense.max() - dense.min())
        scaled = (dense - low) / span if span > 0 else np.ones_like(dense)
        for key, value in zip(np.asarray(dense_keys).tolist(), scaled.tolist()):
            fused[key] = dense_weight * value
    lexical = np.asarray(lexical_scores, dtype=np.float64)
    if lexical.size and lexical.max() > 0:
        for key, value in zip(np.asarray(lexical_keys).tolist(), (lexical / lexical.max()).tolist()):
            fused[key] = fused.get(key, 0.0) + lexical_weight * value
    order = sorted(fused, key=lambda key: (-fused[key], key))
    return (np.array(order, dtype=np.int64), np.array([fused[key] for key in order], dtype=np.float32))


def fusion_depth(k: int) -> int:
    """How many documents each side of a hybrid search contributes to the fusion when ``k`` results are wanted."""
    return max(int(k), FUSION_DEPTH)


def fuse_hybrid(dense_keys: np.ndarray, lexical_keys: np.ndarray, k: int, fusion: Fusion = DEFAULT_FUSION,
                dense_scores: np.ndarray | None = None, lexical_scores: np.ndarray | None = None
                ) -> tuple[np.ndarray, np.ndarray]:
    """The hybrid ranking the runtime returns: ``fusion`` of the top ``fusion_depth(k)`` of a dense and a lexical
    best-first ranking, cut to ``k``. Score fusion needs both lists' scores. Returns keys and fused scores."""
    depth = fusion_depth(k)
    dense, lexical = np.asarray(dense_keys)[:depth], np.asarray(lexical_keys)[:depth]
    if fusion.kind == FUSION_KIND:
        keys, scores = weighted_rrf([dense, lexical], [fusion.dense_weight, fusion.lexical_weight], fusion.k)
    else:
        if dense_scores is None or lexical_scores is None:
            raise ValueError(f"fusion kind {fusion.kind!r} needs the scores of both lists")
        keys, scores = score_fusion(dense, np.asarray(dense_scores)[:depth], lexical,
                                    np.asarray(lexical_scores)[:depth], fusion.dense_weight, fusion.lexical_weight)
    return keys[:k], scores[:k]
