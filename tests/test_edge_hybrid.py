"""edge.hybrid + hybrid search: tokenisation, the stored postings against a hand-computed BM25, fusion, modes, manifests."""

from __future__ import annotations

import json
import math
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from edge import formats, writers
from edge.collection import Collection
from edge.files import file_entry
from edge.encoder import QueryEncoder
from edge.errors import ArtifactError, BadInput
from edge.hybrid import (
    DOCS_NORMS_TABLE,
    FUSION_DEPTH,
    FUSION_K,
    MAX_QUERY_TOKENS,
    TERMS_TABLE,
    LexicalIndex,
    lexical_description,
    fuse_hybrid,
    fusion_depth,
    reciprocal_rank_fusion,
    tokenize,
    write_lexical_tables,
)
from edge.search import Searcher


def _store(texts: list[str]) -> tuple[sqlite3.Connection, LexicalIndex]:
    connection = sqlite3.connect(":memory:")
    write_lexical_tables(connection, texts)
    return connection, LexicalIndex(lexical_description(len(texts)), len(texts))


def _lucene_bm25(query: str, texts: list[str], k1: float = 1.2, b: float = 0.75) -> np.ndarray:
    """By hand: Lucene idf ln(1 + (N - df + 0.5) / (df + 0.5)), tf / (tf + k1 (1 - b + b |d| / avgdl)), repeats count."""
    docs = [tokenize(text) for text in texts]
    n = len(docs)
    avgdl = sum(len(d) for d in docs) / n
    scores = np.zeros(n)
    for term in tokenize(query):
        df = sum(term in d for d in docs)
        if df == 0:
            continue
        idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
        for i, d in enumerate(docs):
            tf = d.count(term)
            scores[i] += idf * tf / (tf + k1 * (1 - b + b * len(d) / avgdl))
    return scores


def test_tokenize_bigrams_for_han_words_otherwise() -> None:
    assert tokenize("头痛发烧 Fever, A00.0 咳") == ["头痛", "痛发", "发烧", "fever", "a00", "0", "咳"]
    assert tokenize("Ｃｏｖｉｄ-19 疫苗") == ["covid", "19", "疫苗"]  # NFKC folds full-width letters
    assert tokenize("ÉPILEPSIE Infección") == ["épilepsie", "infección"]  # case-folded, accents kept
    assert tokenize("!!! ... ---") == []


def test_stored_bm25_matches_a_hand_computed_ranking() -> None:
    texts = ["胸痛 呼吸困难", "胸痛 胸痛 发热", "头痛 发热 咳嗽 咳嗽", "chest pain when breathing", "pain in the chest",
             "高血压 头痛", "糖尿病 饮食", "chest x-ray"]
    connection, index = _store(texts)
    for query in ("胸痛发热", "chest pain", "头痛 咳嗽", "chest pain chest"):
        keys, scores = index.search(connection, query, 10)
        expected = _lucene_bm25(query, texts)
        matched = np.flatnonzero(expected > 0)
        assert sorted(keys.tolist()) == sorted(matched.tolist())
        np.testing.assert_allclose(scores, expected[keys], rtol=1e-6)
        assert np.all(np.diff(scores) <= 0)  # best first
    # k cuts; "chest x-ray" is shortest (3 tokens); 3 and 4 tie at 4 tokens and the lower key wins.
    assert index.search(connection, "chest", 2)[0].tolist() == [7, 3]


def test_runtime_scores_equal_the_evaluation_bm25_exactly() -> None:
    from tools.evaluate.bm25 import BM25Index

    rng = np.random.default_rng(3)
    vocab = ["发热", "咳嗽", "胸痛", "头痛", "fever", "cough", "chest", "pain", "A00", "霍乱"]
    texts = [" ".join(rng.choice(vocab, size=int(rng.integers(1, 12)))) for _ in range(300)]
    connection, index = _store(texts)
    reference = BM25Index(texts)
    for query in ("发热咳嗽", "chest pain pain", "a00 霍乱 fever", "nothing"):
        np.testing.assert_array_equal(index.scores(connection, query), reference.scores(query))


def test_delta_keys_use_16_bits_up_to_65536_documents() -> None:
    assert lexical_description(65_536)["key_encoding"] == "delta-u16"
    assert lexical_description(65_537)["key_encoding"] == "delta-u32"
    connection, index = _store(["x"] * 3 + ["y z"] * 2)
    keys, tfs = connection.execute(f"SELECT keys, tfs FROM {TERMS_TABLE} WHERE term = 'y'").fetchone()
    assert np.frombuffer(keys, dtype="<u2").tolist() == [3, 1] and np.frombuffer(tfs, dtype=np.uint8).tolist() == [1, 1]
    (norms,) = connection.execute(f"SELECT value FROM {DOCS_NORMS_TABLE}").fetchone()
    assert len(norms) == 5 * 8


def test_lexical_search_edge_cases() -> None:
    connection, index = _store(["alpha beta", "gamma delta", "alpha alpha"])
    keys, scores = index.search(connection, "!!!", 5)  # no token at all
    assert keys.size == 0 and scores.size == 0
    assert index.search(connection, "zeta", 5)[0].size == 0  # tokens that occur nowhere
    assert index.search(connection, "'; DROP TABLE lexical_terms; --", 5)[0].size == 0  # parameters, not SQL
    keys, _ = index.search(connection, " ".join(["gamma"] * (MAX_QUERY_TOKENS + 50)), 1)
    assert keys.tolist() == [1]
    assert index.search(connection, "alpha", 1)[0].tolist() == [2]  # tf 2 beats tf 1


def test_reciprocal_rank_fusion_by_hand() -> None:
    keys, scores = reciprocal_rank_fusion([np.array([5, 1, 2]), np.array([2, 7])], k=60)
    # 2: 1/63 + 1/61; 5: 1/61; 7: 1/62; 1: 1/62 -> ties (1, 7) go to the lower key.
    assert keys.tolist() == [2, 5, 1, 7]
    np.testing.assert_allclose(scores, [1 / 63 + 1 / 61, 1 / 61, 1 / 62, 1 / 62], rtol=1e-6)
    assert reciprocal_rank_fusion([np.array([], dtype=np.int64)], k=60)[0].size == 0


def test_fuse_hybrid_cuts_each_side_at_the_fusion_depth() -> None:
    dense = np.arange(FUSION_DEPTH + 50, dtype=np.int64)  # key FUSION_DEPTH + 10 sits past the dense cut
    lexical = np.array([FUSION_DEPTH + 10, 3], dtype=np.int64)
    keys, scores = fuse_hybrid(dense, lexical, k=5)
    assert fusion_depth(5) == FUSION_DEPTH and fusion_depth(FUSION_DEPTH + 20) == FUSION_DEPTH + 20
    # Key 3: dense rank 4 + lexical rank 2. Key 0: dense rank 1 only. The late key: lexical rank 1 only (its dense
    # rank 111 is cut), so it ties with key 0 and loses the tie to the lower key.
    assert keys.tolist() == [3, 0, FUSION_DEPTH + 10, 1, 2]
    assert scores[0] == np.float32(1 / (FUSION_K + 4) + 1 / (FUSION_K + 2))
    assert scores[1] == scores[2] == np.float32(1 / (FUSION_K + 1))
    # Asked for more than the fusion depth, each side reaches as deep as k: the late key's dense rank now counts.
    deep_keys, _ = fuse_hybrid(dense, lexical, k=FUSION_DEPTH + 20)
    assert deep_keys[:3].tolist() == [3, FUSION_DEPTH + 10, 0]


@pytest.fixture(scope="module")
def searcher(tiny) -> Searcher:
    return Searcher(Collection(tiny.collection), QueryEncoder(tiny.encoder))


def test_collections_carry_a_lexical_table_and_default_to_dense(searcher: Searcher) -> None:
    collection = searcher.collection
    assert collection.lexical
    assert collection.default_mode == "dense"
    assert collection.manifest["search"]["lexical"]["tables"] == [TERMS_TABLE, DOCS_NORMS_TABLE]
    assert searcher.search("fever cough", k=3).mode == "dense"


def test_hybrid_is_the_fusion_of_dense_and_lexical(searcher: Searcher, tiny) -> None:
    query = " ".join(tiny.texts[42].split()[:3])
    response = searcher.search(query, k=10, mode="hybrid")
    assert response.mode == "hybrid"
    assert response.to_json()["mode"] == "hybrid"
    dense = searcher.collection.search_vectors(searcher.encoder.encode([query]).vectors, FUSION_DEPTH)[0]
    lexical = searcher.collection.search_lexical(query, FUSION_DEPTH)
    keys, scores = reciprocal_rank_fusion([dense.keys, lexical.keys], FUSION_K)
    assert [r.key for r in response.results] == keys[:10].tolist()
    np.testing.assert_allclose([r.score for r in response.results], scores[:10], rtol=1e-6)
    assert [r.id for r in response.results] == [tiny.ids[key] for key in keys[:10]]
    assert response.timings_ms["lexical"] > 0


def test_hybrid_finds_an_exact_rare_word_that_dense_search_ranks_low(searcher: Searcher, tiny) -> None:
    # The tiny encoder is random: its neighbours are noise, while BM25 finds the one document with the word.
    rows_of: dict[str, set[int]] = {}
    for row, text in enumerate(tiny.texts):
        for token in tokenize(text):
            rows_of.setdefault(token, set()).add(row)
    rare = sorted(token for token, rows in rows_of.items() if len(rows) == 1)
    assert len(rare) >= 5, "fixture has too few tokens that occur once"
    words = {token: sorted(rows_of[token]) for token in rare}
    hits = 0
    for word in rare[:20]:
        target = tiny.ids[words[word][0]]
        hybrid = [r.id for r in searcher.search(word, k=5, mode="hybrid").results]
        hits += target in hybrid
    assert hits == min(20, len(rare))


def test_hybrid_threads_agree_with_one_thread(searcher: Searcher, tiny) -> None:
    queries = [" ".join(text.split()[:2]) for text in tiny.texts[:32]]
    expected = [[r.id for r in searcher.search(q, k=5, mode="hybrid").results] for q in queries]
    with ThreadPoolExecutor(max_workers=8) as pool:
        got = list(pool.map(lambda q: [r.id for r in searcher.search(q, k=5, mode="hybrid").results], queries * 4))
    assert got == expected * 4


def test_unknown_mode_is_bad_input(searcher: Searcher) -> None:
    with pytest.raises(BadInput, match="--mode must be one of dense, hybrid"):
        searcher.search("fever", mode="sparse")


def _rewrite_manifest(directory: Path, change) -> None:
    path = directory / formats.MANIFEST_FILE
    manifest = json.loads(path.read_text())
    change(manifest)
    path.write_text(json.dumps(manifest))


def test_collection_without_lexical_table_is_dense_only(tmp_path: Path, tiny, build_collection) -> None:
    directory = build_collection(tmp_path / "dense-only", tiny.encoder)
    _rewrite_manifest(directory, lambda m: m.pop("search"))  # as written before hybrid search existed
    searcher = Searcher(Collection(directory), QueryEncoder(tiny.encoder))
    assert not searcher.collection.lexical and searcher.collection.default_mode == "dense"
    assert searcher.search("fever", k=3).results
    with pytest.raises(ArtifactError, match="has no lexical table.*--mode dense"):
        searcher.search("fever", k=3, mode="hybrid")


@pytest.mark.parametrize(
    "change, fragment",
    [
        (lambda m: m["search"].update(default_mode="sparse"), "search.default_mode"),
        (lambda m: m["search"]["lexical"].update(tokenizer="jieba/9"), "tokenizer 'jieba/9'"),
        (lambda m: m["search"]["lexical"].update(key_encoding="varint"), "key_encoding' 'varint'"),
        (lambda m: m["search"].update(lexical="yes"), "search.lexical"),
        (lambda m: (m["search"].pop("lexical"), m["search"].update(default_mode="hybrid")), "no 'search.lexical'"),
    ],
)
def test_malformed_search_block_is_refused(tiny_copy, change, fragment: str) -> None:
    _rewrite_manifest(tiny_copy.collection, change)
    with pytest.raises(ArtifactError, match=fragment):
        Collection(tiny_copy.collection)


def test_manifest_lists_a_table_the_store_lacks(tiny_copy) -> None:
    path = tiny_copy.collection / formats.DOCS_FILE
    connection = sqlite3.connect(path)
    connection.execute(f"DROP TABLE {TERMS_TABLE}")
    connection.commit()
    connection.close()
    _rewrite_manifest(tiny_copy.collection, lambda m: m["files"][formats.DOCS_FILE].update(file_entry(path)))
    # Dense search does not read the lexical tables, so only hybrid search fails.
    searcher = Searcher(Collection(tiny_copy.collection), QueryEncoder(tiny_copy.encoder))
    assert searcher.search("fever", k=3, mode="dense").results
    with pytest.raises(ArtifactError, match="no lexical_terms table"):
        searcher.search("fever", k=3, mode="hybrid")


def test_writer_refuses_hybrid_default_without_lexical(tmp_path: Path, tiny) -> None:
    encoder = QueryEncoder(tiny.encoder)
    texts = ["fever cough", "chest pain"]
    common = dict(name="x", description="", document_encoder=encoder.alignment, vectors=encoder.encode(texts).vectors,
                  ids=["a", "b"], texts=texts, metas=[None, None], index_params=None, licenses=[], created={})
    with pytest.raises(BadInput, match="needs the lexical table"):
        writers.write_collection(tmp_path / "x", lexical=False, default_mode="hybrid", **common)
    with pytest.raises(BadInput, match="default_mode"):
        writers.write_collection(tmp_path / "y", default_mode="sparse", **common)
    manifest = writers.write_collection(tmp_path / "z", default_mode="hybrid", **common)
    assert Collection(tmp_path / "z").default_mode == "hybrid" == manifest["search"]["default_mode"]
