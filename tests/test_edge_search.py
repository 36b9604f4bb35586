"""edge.search / edge.collection / edge.docstore: ranking, scores, batching, threads, alignment, read-only use."""

from __future__ import annotations

import os
import stat
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from edge import formats
from edge.files import sha256_file
from edge.collection import Collection
from edge.docstore import DocStore
from edge.encoder import QueryEncoder
from edge.errors import ArtifactError, BadInput
from edge.search import TIMING_KEYS, Searcher


@pytest.fixture(scope="module")
def searcher(tiny) -> Searcher:
    return Searcher(Collection(tiny.collection), QueryEncoder(tiny.encoder))


def test_document_text_finds_its_own_document(searcher: Searcher, tiny) -> None:
    for row in (0, 17, 123, 199):
        response = searcher.search(tiny.texts[row], k=5)
        assert response.results[0].id == tiny.ids[row]
        assert response.results[0].text == tiny.texts[row]
        assert response.results[0].meta == {"source": "synthetic", "row": row}
        assert response.results[0].score > 0.97  # i8 quantisation keeps cosine within ~1e-2
        scores = [result.score for result in response.results]
        assert scores == sorted(scores, reverse=True)


def test_scores_are_cosine_similarities(searcher: Searcher, tiny) -> None:
    encoder = searcher.encoder
    query = "fever cough child"
    response = searcher.search(query, k=10)
    query_vector = encoder.encode([query]).vectors[0]
    document_vectors = encoder.encode([result.text for result in response.results]).vectors
    expected = document_vectors @ query_vector
    np.testing.assert_allclose([result.score for result in response.results], expected, atol=2e-2)


def test_response_shape_and_timings(searcher: Searcher) -> None:
    response = searcher.search("  fever\tand\x00 cough\n", k=3)
    assert response.query == "fever and cough"
    assert len(response.results) == 3
    assert tuple(response.timings_ms) == TIMING_KEYS
    assert all(value >= 0 for value in response.timings_ms.values())
    assert response.timings_ms["total"] >= response.timings_ms["encode"]
    assert response.truncated is False
    payload = response.to_json()
    assert set(payload) == {"query", "mode", "results", "timings_ms", "truncated"}
    assert set(payload["results"][0]) == {"id", "score", "text", "meta"}


def test_k_bounds_and_bad_queries(searcher: Searcher, tiny) -> None:
    for bad_k in (0, -1, 1001, 2.5, True):
        with pytest.raises(BadInput, match="-k must be an integer from 1 to 1000"):
            searcher.search("fever", k=bad_k)  # type: ignore[arg-type]
    assert len(searcher.search("fever", k=1000).results) == 200  # k beyond the collection size is clipped
    for empty in ("", "   ", "\x00\x01\t\n"):
        with pytest.raises(BadInput, match="query is empty"):
            searcher.search(empty)


def test_truncated_flag_reaches_the_response(searcher: Searcher) -> None:
    assert searcher.search(" ".join(["fever"] * 40)).truncated is True


def test_batch_equals_single(searcher: Searcher) -> None:
    queries = ["fever cough", "头痛 发烧", "insulin dose child", "rash allergy"]
    batch = searcher.search_batch(queries, k=10)
    for query, response in zip(queries, batch):
        single = searcher.search(query, k=10)
        assert [r.id for r in response.results] == [r.id for r in single.results]
        np.testing.assert_allclose([r.score for r in response.results], [r.score for r in single.results], atol=1e-5)


def test_eight_threads_give_the_same_results_as_one(searcher: Searcher, tiny) -> None:
    queries = tiny.bench_queries + tiny.texts[:30]
    sequential = [[(r.id, round(r.score, 5)) for r in searcher.search(q, k=10).results] for q in queries]
    with ThreadPoolExecutor(max_workers=8) as pool:
        for _ in range(3):
            concurrent = list(
                pool.map(lambda q: [(r.id, round(r.score, 5)) for r in searcher.search(q, k=10).results], queries)
            )
            assert concurrent == sequential


def test_ann_recall_against_exact_search(searcher: Searcher, tiny) -> None:
    collection = searcher.collection
    vectors = searcher.encoder.encode(tiny.bench_queries).vectors
    approximate = collection.search_vectors(vectors, 10)
    exact = collection.exact_search(vectors, 10)
    overlaps = [len(set(a.keys) & set(e.keys)) / 10 for a, e in zip(approximate, exact)]
    assert np.mean(overlaps) >= 0.9
    # Exact search really is exhaustive: its best score is the maximum over every stored vector.
    stored = np.asarray(collection.index.get(np.arange(collection.count), dtype=np.float32))
    stored /= np.linalg.norm(stored, axis=1, keepdims=True)
    best = (stored @ vectors[0]).max()
    assert exact[0].scores[0] == pytest.approx(best, abs=2e-3)


def test_alignment_mismatch_is_refused_with_both_sides_named(tmp_path: Path, tiny, build_encoder) -> None:
    other_alignment = {
        "name": "other-doc-encoder",
        "kind": "gguf",
        "sha256": "cd" * 32,
        "prompt": "title: none | text: ",
        "pooling": "mean",
        "dims": 32,
        "normalize": True,
    }
    other = QueryEncoder(build_encoder(tmp_path / "other", alignment=other_alignment, name="other-encoder"))
    collection = Collection(tiny.collection)
    with pytest.raises(ArtifactError) as caught:
        Searcher(collection, other)
    message = caught.value.message
    assert formats.alignment_id(other_alignment) in message and collection.alignment_id in message
    assert "other-encoder" in message and "'tiny'" in message and "--encoder DIR" in message
    assert caught.value.exit_code == 3


def test_docstore_get_keeps_order_and_rejects_unknown_keys(tiny) -> None:
    store = DocStore(tiny.collection / formats.DOCS_FILE)
    documents = store.get([5, 0, 5, 199])
    assert [d.id for d in documents] == [tiny.ids[5], tiny.ids[0], tiny.ids[5], tiny.ids[199]]
    assert store.get([]) == []
    with pytest.raises(ArtifactError, match="no document for index key 200"):
        store.get([1, 200])
    store.close()


def test_works_from_a_read_only_directory_and_changes_nothing(tiny_copy) -> None:
    directory = tiny_copy.collection
    before = {p.name: sha256_file(p) for p in directory.iterdir()}
    os.chmod(directory, stat.S_IRUSR | stat.S_IXUSR)
    for path in directory.iterdir():
        os.chmod(path, stat.S_IRUSR)
    try:
        searcher = Searcher(Collection(directory), QueryEncoder(tiny_copy.encoder))
        with ThreadPoolExecutor(max_workers=4) as pool:
            results = list(pool.map(lambda q: searcher.search(q, k=3), tiny_copy.texts[:12]))
        assert [r.results[0].id for r in results] == tiny_copy.ids[:12]
        searcher.collection.verify()
        searcher.collection.close()
    finally:
        os.chmod(directory, stat.S_IRWXU)
        for path in directory.iterdir():
            os.chmod(path, stat.S_IRUSR | stat.S_IWUSR)
    after = {p.name: sha256_file(p) for p in directory.iterdir()}
    assert after == before  # no journal, no WAL, no rewritten file


def test_collection_applies_the_manifest_search_expansion(tiny) -> None:
    from edge.collection import Collection

    collection = Collection(tiny.collection)
    assert collection.index.expansion_search == collection.manifest["index"]["expansion_search"]
