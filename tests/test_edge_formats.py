"""edge.formats and edge.writers: the v1 formats, their writers, and the load-time checks of Collection / QueryEncoder."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from edge import formats, writers
from edge.files import file_entry, sha256_file
from edge.collection import Collection
from edge.encoder import QueryEncoder
from edge.errors import ArtifactError, BadInput


def _edit_manifest(directory: Path, **changes: object) -> None:
    path = directory / formats.MANIFEST_FILE
    manifest = json.loads(path.read_text(encoding="utf-8"))
    manifest.update(changes)
    path.write_text(json.dumps(manifest), encoding="utf-8")


def _refresh_manifest(directory: Path) -> None:
    """Re-record sizes and hashes, as if a broken file had been shipped with a matching manifest."""
    manifest = json.loads((directory / formats.MANIFEST_FILE).read_text(encoding="utf-8"))
    writers.write_manifest(directory, manifest)


def test_alignment_id_is_sha256_prefix_of_canonical_json_of_the_six_keys() -> None:
    encoder = {
        "name": "ignored-name",
        "kind": "gguf",
        "sha256": "ab" * 32,
        "prompt": "title: none | text: ",
        "pooling": "mean",
        "dims": 256,
        "full_dims": 768,  # not part of the id
        "normalize": True,
    }
    canonical = (
        '{"dims":256,"kind":"gguf","normalize":true,"pooling":"mean","prompt":"title: none | text: ",'
        f'"sha256":"{"ab" * 32}"}}'
    )
    expected = hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]
    assert formats.alignment_id(encoder) == expected
    assert formats.alignment_id({**encoder, "name": "other", "full_dims": 1}) == expected
    assert formats.alignment_id({**encoder, "dims": 128}) != expected
    assert formats.alignment_id({**encoder, "prompt": "query: "}) != expected
    with pytest.raises(ArtifactError, match="lacks"):
        formats.alignment_id({"kind": "gguf"})


def test_written_collection_round_trips(tiny) -> None:
    manifest = formats.read_manifest(tiny.collection, formats.COLLECTION_FORMAT)
    assert manifest["format"] == formats.COLLECTION_FORMAT and manifest["format_version"] == 1
    assert manifest["counts"] == {"documents": 200, "truncated": 0}
    assert manifest["index"]["metric"] == "cos" and manifest["index"]["ndim"] == 32
    assert manifest["alignment_id"] == formats.alignment_id(manifest["document_encoder"])
    assert "alignment_id" not in manifest["document_encoder"]
    assert set(manifest["files"]) == {formats.VECTORS_FILE, formats.DOCS_FILE, formats.BENCH_QUERIES_FILE}
    for name, entry in manifest["files"].items():
        assert entry == file_entry(tiny.collection / name)
    assert formats.file_problems(tiny.collection, manifest, full_hash=True) == []

    connection = sqlite3.connect(tiny.collection / formats.DOCS_FILE)
    rows = connection.execute("SELECT key, id, text, meta FROM docs ORDER BY key").fetchall()
    connection.close()
    assert [row[0] for row in rows] == list(range(200))
    assert [row[1] for row in rows] == tiny.ids
    assert [row[2] for row in rows] == tiny.texts
    assert json.loads(rows[5][3]) == {"row": 5, "source": "synthetic"}
    assert (tiny.collection / formats.BENCH_QUERIES_FILE).read_text(encoding="utf-8").splitlines() == tiny.bench_queries
    assert not [p.name for p in tiny.collection.iterdir() if p.name.endswith(".tmp")]


def test_query_encoder_manifest_and_config(tiny) -> None:
    manifest = formats.read_manifest(tiny.encoder, formats.QUERY_ENCODER_FORMAT)
    assert manifest["alignment"]["alignment_id"] == formats.alignment_id(manifest["alignment"])
    assert set(manifest["files"]) == set(formats.QUERY_ENCODER_REQUIRED_FILES)
    config = formats.read_encoder_config(tiny.encoder)
    assert config == formats.EncoderConfig(
        prompt="query: ", max_tokens=16, pooling="in-graph", dims=32, normalize=True, output="embedding"
    )


def test_collection_writer_rejects_bad_inputs(tmp_path: Path, tiny) -> None:
    encoder = QueryEncoder(tiny.encoder)
    document_encoder = {k: v for k, v in encoder.alignment.items() if k != "alignment_id"}
    vectors = encoder.encode(["fever", "cough", "asthma"]).vectors
    good = dict(
        name="x",
        description="",
        document_encoder=document_encoder,
        vectors=vectors,
        ids=["a", "b", "c"],
        texts=["fever", "cough", "asthma"],
        metas=[{}, None, {"k": 1}],
        index_params=None,
        licenses=[],
        created={},
    )
    written = writers.write_collection(tmp_path / "ok", **good)
    assert written["index"]["dtype"] == writers.DEFAULT_INDEX_PARAMS["dtype"]
    assert Collection(tmp_path / "ok").count == 3

    bad_cases = {
        "duplicate document id": dict(ids=["a", "a", "c"]),
        "L2-normalised": dict(vectors=vectors * 2),
        "float32": dict(vectors=vectors.astype(np.float64)),
        "dims": dict(vectors=np.ascontiguousarray(vectors[:, :16])),
        "differ in length": dict(texts=["fever"]),
        "unknown index_params": dict(index_params={"M": 4}),
        "lacks": dict(document_encoder={"name": "x", "dims": 32}),
        "alignment_id 0000000000000000 != computed": dict(document_encoder={**document_encoder, "alignment_id": "0" * 16}),
        "dtype": dict(index_params={"dtype": "u8"}),
    }
    for fragment, change in bad_cases.items():
        with pytest.raises(BadInput, match=fragment):
            writers.write_collection(tmp_path / "bad", **{**good, **change})


def test_query_encoder_manifest_writer_checks_alignment(tmp_path: Path, tiny) -> None:
    import shutil

    directory = tmp_path / "enc"
    shutil.copytree(tiny.encoder, directory)
    alignment = dict(formats.read_manifest(directory, formats.QUERY_ENCODER_FORMAT)["alignment"])
    with pytest.raises(BadInput, match="computes to"):
        writers.write_query_encoder_manifest(
            directory, name="x", base_model="y", alignment={**alignment, "alignment_id": "0" * 16}, licenses=[], created={}
        )
    with pytest.raises(BadInput, match="dims"):
        wrong_dims = {k: v for k, v in alignment.items() if k != "alignment_id"} | {"dims": 64}
        writers.write_query_encoder_manifest(directory, name="x", base_model="y", alignment=wrong_dims, licenses=[], created={})


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"format": "care-edge/something-else"}, "format is 'care-edge/something-else'"),
        ({"format_version": 2}, "format_version 2 is not supported"),
        ({"alignment_id": "0123456789abcdef"}, "does not match its document_encoder"),
        ({"files": {"../../etc/passwd": {"size": 1, "sha256": "0" * 64}}}, "invalid file"),
        ({"counts": {}}, "counts.documents"),
    ],
)
def test_collection_manifest_problems_are_artifact_errors(tiny_copy, change, fragment) -> None:
    _edit_manifest(tiny_copy.collection, **change)
    with pytest.raises(ArtifactError, match=fragment.replace("(", r"\(")):
        Collection(tiny_copy.collection)


def test_missing_or_unparsable_manifest(tiny_copy, tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="does not exist"):
        Collection(tmp_path / "nowhere")
    (tiny_copy.collection / formats.MANIFEST_FILE).write_text("{not json", encoding="utf-8")
    with pytest.raises(ArtifactError, match="not valid JSON"):
        Collection(tiny_copy.collection)
    (tiny_copy.collection / formats.MANIFEST_FILE).unlink()
    with pytest.raises(ArtifactError, match="manifest.json is missing"):
        Collection(tiny_copy.collection)


def test_encoder_manifest_format_checks(tiny_copy) -> None:
    _edit_manifest(tiny_copy.encoder, format_version=7)
    with pytest.raises(ArtifactError, match="format_version 7"):
        QueryEncoder(tiny_copy.encoder)
    # A collection directory is not a query encoder.
    with pytest.raises(ArtifactError, match="expected 'care-edge/query-encoder'"):
        QueryEncoder(tiny_copy.collection)


def test_size_mismatch_is_caught_on_open(tiny_copy) -> None:
    with open(tiny_copy.collection / formats.DOCS_FILE, "ab") as handle:
        handle.write(b"\0" * 10)
    with pytest.raises(ArtifactError, match="docs.sqlite: size"):
        Collection(tiny_copy.collection)


def test_missing_file_is_caught_on_open(tiny_copy) -> None:
    (tiny_copy.encoder / formats.TOKENIZER_FILE).unlink()
    with pytest.raises(ArtifactError, match="tokenizer.json: missing"):
        QueryEncoder(tiny_copy.encoder)


def test_hash_mismatch_is_caught_at_open(tiny_copy) -> None:
    path = tiny_copy.collection / formats.VECTORS_FILE
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))  # same size, different bytes
    with pytest.raises(ArtifactError, match="vectors.usearch: sha256 differs"):
        Collection(tiny_copy.collection)
    assert formats.file_problems(tiny_copy.collection, formats.read_manifest(tiny_copy.collection, formats.COLLECTION_FORMAT),
                             full_hash=True) == ["vectors.usearch: sha256 differs from the manifest (corrupted or replaced)"]

    encoder_model = tiny_copy.encoder / formats.CONFIG_FILE
    config = encoder_model.read_bytes()
    encoder_model.write_bytes(config.replace(b"query: ", b"query! "))
    with pytest.raises(ArtifactError, match="config.json: sha256 differs"):
        QueryEncoder(tiny_copy.encoder)


def test_optional_bench_queries_is_checked_only_by_verify(tiny_copy) -> None:
    path = tiny_copy.collection / formats.BENCH_QUERIES_FILE
    data = bytearray(path.read_bytes())
    data[0] = ord("X") if data[0] != ord("X") else ord("Y")
    path.write_bytes(bytes(data))  # search never reads it; `bench` and `info --verify` check it
    collection = Collection(tiny_copy.collection)
    with pytest.raises(ArtifactError, match="bench_queries.txt: sha256 differs"):
        collection.verify()
    path.unlink()
    Collection(tiny_copy.collection).close()


def test_truncated_index_with_matching_manifest_is_an_artifact_error(tiny_copy) -> None:
    path = tiny_copy.collection / formats.VECTORS_FILE
    for size in (path.stat().st_size // 2, 40, 0):
        data = path.read_bytes()
        path.write_bytes(data[:size])
        _refresh_manifest(tiny_copy.collection)
        # The graph check (edge/usearch_file.py) refuses it before usearch sees it.
        with pytest.raises(ArtifactError, match="vectors.usearch is not a well-formed usearch index"):
            Collection(tiny_copy.collection)


def test_truncated_index_without_manifest_update_fails_the_size_check(tiny_copy) -> None:
    path = tiny_copy.collection / formats.VECTORS_FILE
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(ArtifactError, match="vectors.usearch: size"):
        Collection(tiny_copy.collection)


def test_garbage_docs_sqlite_is_an_artifact_error(tiny_copy) -> None:
    path = tiny_copy.collection / formats.DOCS_FILE
    path.write_bytes(os.urandom(path.stat().st_size))
    _refresh_manifest(tiny_copy.collection)
    with pytest.raises(ArtifactError, match="docs.sqlite is not a readable SQLite database"):
        Collection(tiny_copy.collection)


def test_docs_sqlite_with_wrong_schema_or_count(tiny_copy) -> None:
    path = tiny_copy.collection / formats.DOCS_FILE
    connection = sqlite3.connect(path)
    connection.execute("DELETE FROM docs WHERE key = 199")
    connection.commit()
    connection.close()
    _refresh_manifest(tiny_copy.collection)
    with pytest.raises(ArtifactError, match="holds 199 documents, manifest says 200"):
        Collection(tiny_copy.collection)

    path.unlink()
    connection = sqlite3.connect(path)
    connection.execute("CREATE TABLE docs (key INTEGER PRIMARY KEY, body TEXT)")
    connection.commit()
    connection.close()
    _refresh_manifest(tiny_copy.collection)
    with pytest.raises(ArtifactError, match="expected \\['key', 'id', 'text', 'meta'\\]"):
        Collection(tiny_copy.collection)


def test_index_that_disagrees_with_the_manifest(tiny_copy) -> None:
    manifest = json.loads((tiny_copy.collection / formats.MANIFEST_FILE).read_text(encoding="utf-8"))
    manifest["index"]["ndim"] = 16
    (tiny_copy.collection / formats.MANIFEST_FILE).write_text(json.dumps(manifest), encoding="utf-8")
    with pytest.raises(ArtifactError, match="ndim 32 != manifest 16"):
        Collection(tiny_copy.collection)


def test_write_manifest_is_atomic_and_names_missing_files(tmp_path: Path) -> None:
    (tmp_path / "a.bin").write_bytes(b"abc")
    written = writers.write_manifest(tmp_path, {"format": "x", "files": {"a.bin": {}}})
    assert written["files"]["a.bin"] == {"size": 3, "sha256": hashlib.sha256(b"abc").hexdigest()}
    assert json.loads((tmp_path / formats.MANIFEST_FILE).read_text(encoding="utf-8")) == written
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin", formats.MANIFEST_FILE]
    with pytest.raises(BadInput, match="does not exist"):
        writers.write_manifest(tmp_path, {"files": {"b.bin": {}}})


def test_licenses_of_merges_without_duplicates() -> None:
    a = {"licenses": [{"name": "x", "license": "MIT"}, {"name": "y", "license": "Apache-2.0"}]}
    b = {"licenses": [{"name": "y", "license": "Apache-2.0"}, {"name": "z", "license": "CC-BY-4.0"}]}
    assert [item["name"] for item in formats.licenses_of([a, b])] == ["x", "y", "z"]


def test_collection_build_is_reproducible(tmp_path: Path, tiny, build_collection) -> None:
    first = build_collection(tmp_path / "a", tiny.encoder, count=120)
    second = build_collection(tmp_path / "b", tiny.encoder, count=120)
    for name in (formats.VECTORS_FILE, formats.DOCS_FILE):
        assert sha256_file(first / name) == sha256_file(second / name), name
