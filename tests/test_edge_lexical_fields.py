"""What the lexical side indexes (``search.lexical.fields``), the weighted fusion a collection records
(``search.fusion``), and rebuilding only the lexical side of a collection (``edge.writers.rewrite_lexical``)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from edge import formats, writers
from edge.collection import Collection
from edge.encoder import QueryEncoder
from edge.errors import ArtifactError, BadInput
from edge.files import sha256_file
from edge.hybrid import (
    FUSION_DEPTH,
    Fusion,
    check_lexical_fields,
    fuse_hybrid,
    fusion_from_manifest,
    lexical_text,
    lexical_texts,
    score_fusion,
    weighted_rrf,
)
from edge.search import Searcher
from tests.conftest import TINY_LICENSES, make_documents
from tools.provenance import created_info


def test_lexical_text_selects_fields_and_writes_each_string_once() -> None:
    meta = {"code": "A00", "names": {"en": "Cholera", "es": "Cólera", "zh": "霍乱"},
            "aliases": {"es": ["Cólera clásico", "Cólera"]}, "level": 3}
    assert lexical_text("A00 | Cholera | 霍乱", meta) == "A00 | Cholera | 霍乱"
    assert lexical_text("A00 | Cholera | 霍乱", meta, ("text", "meta.names.*")).split("\n") == [
        "A00 | Cholera | 霍乱", "Cholera", "Cólera", "霍乱"]
    assert lexical_text("t", meta, ("meta.code", "meta.names.*", "meta.aliases.*")).split("\n") == [
        "A00", "Cholera", "Cólera", "霍乱", "Cólera clásico"]
    assert lexical_text("t", meta, ("meta.names.es",)) == "Cólera"
    # A path the document lacks, or one that ends on a number, adds nothing.
    assert lexical_text("t", meta, ("text", "meta.missing.*", "meta.level")) == "t"
    assert lexical_text("t", None, ("text", "meta.names.*")) == "t"
    with pytest.raises(ValueError, match="texts but"):
        lexical_texts(["a", "b"], [{}], ("text",))


@pytest.mark.parametrize("fields", [[], "text", ["title"], ["meta."], ["meta.names.*", "meta.names.*"], [3],
                                    ["meta.*x"]])
def test_bad_lexical_fields_are_refused(fields) -> None:
    with pytest.raises(ValueError, match="lexical field"):
        check_lexical_fields(fields)


def test_weighted_rrf_by_hand() -> None:
    keys, scores = weighted_rrf([np.array([5, 1]), np.array([1, 7])], [1.0, 0.5], k=60)
    # 1: 1/62 + 0.5/61; 5: 1/61; 7: 0.5/62.
    assert keys.tolist() == [1, 5, 7]
    np.testing.assert_allclose(scores, [1 / 62 + 0.5 / 61, 1 / 61, 0.5 / 62], rtol=1e-6)
    with pytest.raises(ValueError):
        weighted_rrf([np.array([1])], [1.0, 2.0], k=60)


def test_fuse_hybrid_weighs_each_side() -> None:
    dense, lexical = np.array([1, 2, 3]), np.array([4, 3])
    # Plain RRF: 3 is on both lists; 1 and 4 (both first) tie and the lower key wins.
    assert fuse_hybrid(dense, lexical, 4)[0].tolist() == [3, 1, 4, 2]
    # A lexical side worth a quarter: lexical-only 4 falls behind every dense hit.
    assert fuse_hybrid(dense, lexical, 4, Fusion(lexical_weight=0.25))[0].tolist() == [3, 1, 2, 4]
    assert fusion_from_manifest(None) == Fusion()
    assert fusion_from_manifest({"kind": "rrf", "k": 20, "lexical_weight": 0.5}) == Fusion(k=20, lexical_weight=0.5)
    assert fusion_from_manifest(Fusion(k=60, lexical_weight=0.75).describe()) == Fusion(k=60, lexical_weight=0.75)
    scores = Fusion("scores", dense_weight=0.7, lexical_weight=0.3)
    assert scores.describe() == {"kind": "scores", "dense_weight": 0.7, "lexical_weight": 0.3}
    assert fusion_from_manifest(scores.describe()) == scores


def test_score_fusion_by_hand() -> None:
    # Dense cosines 0.9, 0.8, 0.5 -> 1, 0.75, 0; BM25 10, 5 -> 1, 0.5.
    dense_keys, dense_scores = np.array([1, 2, 3]), np.array([0.9, 0.8, 0.5], dtype=np.float32)
    lexical_keys, lexical_scores = np.array([4, 3]), np.array([10.0, 5.0], dtype=np.float32)
    keys, fused = fuse_hybrid(dense_keys, lexical_keys, 4, Fusion("scores", dense_weight=0.7, lexical_weight=0.3),
                              dense_scores, lexical_scores)
    # 1: 0.7; 2: 0.525; 3: 0 + 0.15; 4: 0.3.
    assert keys.tolist() == [1, 2, 4, 3]
    np.testing.assert_allclose(fused, [0.7, 0.525, 0.3, 0.15], rtol=1e-6)
    lone = score_fusion(np.array([7]), np.array([0.4]), np.array([], dtype=np.int64), np.array([]), 1.0, 1.0)
    assert lone[0].tolist() == [7]
    with pytest.raises(ValueError, match="needs the scores"):
        fuse_hybrid(dense_keys, lexical_keys, 4, Fusion("scores"))


@pytest.mark.parametrize(
    "block, fragment",
    [({"kind": "linear"}, "with kind 'rrf' or 'scores'"), ({"kind": "rrf", "k": 0}, "search.fusion.k"),
     ({"kind": "rrf", "lexical_weight": -1}, "lexical_weight"), ({"kind": "rrf", "dense_weight": True}, "dense_weight"),
     ({"kind": "rrf", "depth": 5}, "unknown keys"), ({"kind": "scores", "k": 60}, "unknown keys"),
     ("rrf", "with kind 'rrf' or 'scores'")],
)
def test_bad_fusion_blocks_are_refused(block, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        fusion_from_manifest(block)


# ---------------------------------------------------------------------------------------------- collections

NAMES = ("Fiebre", "Fièvre", "Lungenentzündung", "Polmonite")


def _named_collection(directory: Path, encoder_dir: Path) -> Path:
    """A tiny collection whose meta carries, per document, a name in another language that its text lacks."""
    encoder = QueryEncoder(encoder_dir)
    ids, texts, metas = make_documents(60, seed=7)
    metas = [{**meta, "names": {"xx": f"{NAMES[row % 4]}{row}"}} for row, meta in enumerate(metas)]
    writers.write_collection(
        directory, name="named", description="tiny collection with names in meta",
        document_encoder=encoder.alignment, vectors=encoder.encode(texts).vectors, ids=ids, texts=texts,
        metas=metas, index_params={"connectivity": 8, "expansion_add": 64, "expansion_search": 32},
        licenses=TINY_LICENSES, created=created_info("tests"))
    return directory


def _docs_rows(directory: Path) -> list[tuple]:
    connection = sqlite3.connect(directory / formats.DOCS_FILE)
    try:
        return connection.execute("SELECT key, id, text, meta FROM docs ORDER BY key").fetchall()
    finally:
        connection.close()


def test_rewrite_lexical_indexes_meta_names_and_keeps_documents_and_vectors(tmp_path: Path, tiny) -> None:
    directory = _named_collection(tmp_path / "named", tiny.encoder)
    before_rows = _docs_rows(directory)
    vectors_sha = sha256_file(directory / formats.VECTORS_FILE)
    assert Collection(directory).search_lexical("Polmonite3", 5).keys.size == 0  # only in meta: not indexed

    manifest = writers.rewrite_lexical(directory, fields=["text", "meta.names.*"], default_mode="hybrid",
                                       fusion=Fusion(lexical_weight=0.5), created=created_info("tests"))
    assert manifest["search"]["lexical"]["fields"] == ["text", "meta.names.*"]
    assert manifest["search"]["lexical"]["created"]["tool"] == "tests"
    assert manifest["search"]["default_mode"] == "hybrid"
    assert manifest["search"]["fusion"] == {"kind": "rrf", "k": 60, "dense_weight": 1.0, "lexical_weight": 0.5}
    assert _docs_rows(directory) == before_rows
    assert sha256_file(directory / formats.VECTORS_FILE) == vectors_sha
    collection = Collection(directory)
    collection.verify()  # the manifest's hashes are those of the rewritten files
    assert collection.search_lexical("Polmonite3", 5).keys.tolist() == [3]

    # The searcher fuses with the recorded weights.
    searcher = Searcher(collection, QueryEncoder(tiny.encoder))
    query = "Polmonite3 fever"
    dense = collection.search_vectors(searcher.encoder.encode([query]).vectors, FUSION_DEPTH)[0]
    lexical = collection.search_lexical(query, FUSION_DEPTH)
    expected = weighted_rrf([dense.keys, lexical.keys], [1.0, 0.5], 60)[0][:10].tolist()
    response = searcher.search(query, k=10)
    assert response.mode == "hybrid" and [r.key for r in response.results] == expected

    # Score fusion, recorded the same way, is what the searcher then returns.
    writers.rewrite_lexical(directory, fields=["text", "meta.names.*"],
                            fusion=Fusion("scores", dense_weight=0.7, lexical_weight=0.3), created=created_info("t"))
    searcher = Searcher(Collection(directory), QueryEncoder(tiny.encoder))
    expected = score_fusion(dense.keys, dense.scores, lexical.keys, lexical.scores, 0.7, 0.3)[0][:10].tolist()
    assert [r.key for r in searcher.search(query, k=10).results] == expected
    writers.rewrite_lexical(directory, fields=["text", "meta.names.*"], fusion=Fusion(lexical_weight=0.5),
                            created=created_info("tests"))

    # Rewriting again with the default fields gives back the original postings, and keeps mode and fusion.
    again = writers.rewrite_lexical(directory, fields=["text"], created=created_info("tests"))
    assert again["search"]["default_mode"] == "hybrid" and again["search"]["fusion"]["lexical_weight"] == 0.5
    assert Collection(directory).search_lexical("Polmonite3", 5).keys.size == 0


def test_write_collection_records_the_lexical_fields(tmp_path: Path, tiny) -> None:
    encoder = QueryEncoder(tiny.encoder)
    common = dict(name="x", description="", document_encoder=encoder.alignment,
                  vectors=encoder.encode(["fever cough", "chest pain"]).vectors, ids=["a", "b"],
                  texts=["fever cough", "chest pain"], metas=[{"names": {"es": "fiebre"}}, None], index_params=None,
                  licenses=TINY_LICENSES, created=created_info("tests"))
    manifest = writers.write_collection(tmp_path / "c", lexical_fields=["text", "meta.names.*"], **common)
    assert manifest["search"]["lexical"]["fields"] == ["text", "meta.names.*"] and "fusion" not in manifest["search"]
    assert Collection(tmp_path / "c").search_lexical("fiebre", 2).keys.tolist() == [0]
    with pytest.raises(BadInput, match="lexical field"):
        writers.write_collection(tmp_path / "d", lexical_fields=["names"], **common)


@pytest.mark.parametrize(
    "change, fragment",
    [(lambda s: s["lexical"].update(fields=["title"]), "lexical field 'title'"),
     (lambda s: s.update(fusion={"kind": "rrf", "lexical_weight": 0}), "lexical_weight")],
)
def test_collection_refuses_a_malformed_fields_or_fusion_block(tiny_copy, change, fragment: str) -> None:
    path = tiny_copy.collection / formats.MANIFEST_FILE
    manifest = json.loads(path.read_text())
    change(manifest["search"])
    path.write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match=fragment):
        Collection(tiny_copy.collection)


def test_rewrite_lexical_refuses_bad_fields_and_leaves_the_collection_alone(tiny_copy) -> None:
    before = (tiny_copy.collection / formats.MANIFEST_FILE).read_bytes()
    with pytest.raises(BadInput, match="lexical field"):
        writers.rewrite_lexical(tiny_copy.collection, fields=["body"], created=created_info("tests"))
    assert (tiny_copy.collection / formats.MANIFEST_FILE).read_bytes() == before
    Collection(tiny_copy.collection).verify()
