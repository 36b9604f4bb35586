"""Query cleaning, queries files, error types, and --index / --encoder resolution."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from edge import paths
from edge.errors import ArtifactError, BadInput, CareEdgeError
from edge.queryfile import read_queries_file
from edge.text import MAX_QUERY_CHARS, cap_chars, clean_query, one_line


@pytest.mark.parametrize(
    ("raw", "cleaned"),
    [
        ("fever", "fever"),
        ("  fever \t and\ncough \r\n", "fever and cough"),
        ("fe\x00ver\x07", "fever"),
        ("\ufeff头痛\u3000发烧", "头痛 发烧"),  # BOM dropped, ideographic space collapsed
        ("a\x1b[31mred\x1b[0m", "a[31mred[0m"),  # ESC removed, the printable rest kept
        ("caf\u00e9 \u200dx", "caf\u00e9 x"),  # format characters such as ZWJ are invisible: dropped
    ],
)
def test_clean_query(raw: str, cleaned: str) -> None:
    assert clean_query(raw) == cleaned


def test_clean_query_rejects_empty_and_undecodable() -> None:
    for empty in ("", "   ", "\x00\x01", "\t\n\r"):
        with pytest.raises(BadInput, match="query is empty"):
            clean_query(empty)
    # How a non-UTF-8 argv byte reaches Python on POSIX: a lone surrogate.
    with pytest.raises(BadInput, match="not valid UTF-8"):
        clean_query(b"fever \xff".decode("utf-8", errors="surrogateescape"))
    with pytest.raises(BadInput, match="line 4 is empty"):
        clean_query(" ", what="line 4")


def test_cap_and_one_line() -> None:
    assert cap_chars("abc", 5) == ("abc", False)
    assert cap_chars("x" * (MAX_QUERY_CHARS + 1)) == ("x" * MAX_QUERY_CHARS, True)
    assert one_line("a\n b   c", 10) == "a b c"
    assert one_line("abcdefghijkl", 5) == "abcd…"


def test_error_exit_codes() -> None:
    assert BadInput("x").exit_code == 2 and ArtifactError("x").exit_code == 3 and CareEdgeError("x").exit_code == 1
    assert isinstance(BadInput("x"), ValueError)
    assert ArtifactError("two\nlines").message == "two lines"


def test_queries_file_formats(tmp_path: Path) -> None:
    path = tmp_path / "q.txt"
    path.write_bytes(
        b"\xef\xbb\xbfplain query\r\n"
        + json.dumps({"query": "json  query", "id": 7}).encode()
        + b"\n  {\"query\": \"\xe5\xa4\xb4\xe7\x97\x9b\"}\n"
        + b"[not json] text is plain\n"
        + b"last line without newline"
    )
    assert read_queries_file(path) == ["plain query", "json query", "头痛", "[not json] text is plain", "last line without newline"]


def test_queries_file_errors(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="cannot read"):
        read_queries_file(tmp_path / "missing.txt")
    path = tmp_path / "q.txt"
    path.write_bytes(b"ok\n\xc3\x28\n")
    with pytest.raises(BadInput, match=r"q.txt: line 2 is not valid UTF-8"):
        read_queries_file(path)
    path.write_bytes(b"ok\n{\"query\": 5}\n")
    with pytest.raises(BadInput, match='line 2 is a JSON object without a string "query"'):
        read_queries_file(path)
    path.write_bytes(b"{curly} looks like JSON, so it must be JSON\n")
    with pytest.raises(BadInput, match="line 1 starts with '{' but is not valid JSON"):
        read_queries_file(path)
    path.write_bytes(b"\n")
    with pytest.raises(BadInput, match="line 1 is empty"):
        read_queries_file(path)


def test_prebuilt_dir_resolution(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(paths.ENV_INDEX_DIR, raising=False)
    repo_root = Path(paths.__file__).resolve().parent.parent
    assert paths.prebuilt_index_dir() == repo_root / "prebuilt_index"
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setattr(sys, "_MEIPASS", str(tmp_path / "bundle"), raising=False)
    assert paths.prebuilt_index_dir() == tmp_path / "bundle" / "prebuilt_index"
    monkeypatch.setenv(paths.ENV_INDEX_DIR, str(tmp_path / "elsewhere"))
    assert paths.prebuilt_index_dir() == tmp_path / "elsewhere"


def test_index_and_encoder_resolution(monkeypatch: pytest.MonkeyPatch, tiny, tmp_path: Path) -> None:
    monkeypatch.setenv(paths.ENV_INDEX_DIR, str(tiny.prebuilt))
    assert paths.read_defaults() == paths.Defaults(collection="tiny", query_encoder="query_encoder")
    assert paths.resolve_collection_dir(None) == tiny.prebuilt / "tiny"
    assert paths.resolve_collection_dir("tiny") == tiny.prebuilt / "tiny"
    assert paths.resolve_collection_dir(str(tiny.collection)) == tiny.collection
    assert paths.resolve_encoder_dir(None) == tiny.prebuilt / "query_encoder"
    assert paths.resolve_encoder_dir(str(tiny.encoder)) == tiny.encoder
    with pytest.raises(ArtifactError, match="no collection at .*nope: run `make prebuilt` or pass --index DIR"):
        paths.resolve_collection_dir("nope")
    with pytest.raises(ArtifactError, match="no query encoder at .*nope"):
        paths.resolve_encoder_dir("nope")

    broken = tmp_path / "broken"
    broken.mkdir()
    monkeypatch.setenv(paths.ENV_INDEX_DIR, str(broken))
    with pytest.raises(ArtifactError, match="default.json is missing"):
        paths.resolve_collection_dir(None)
    (broken / "default.json").write_text('{"query_encoder": "x"}', encoding="utf-8")
    with pytest.raises(ArtifactError, match='"collection" name'):
        paths.resolve_collection_dir(None)
