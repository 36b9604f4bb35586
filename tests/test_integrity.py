"""edge.integrity: the sha256 check before use, its verified-stamp cache, and bounded reads of small files."""

from __future__ import annotations

import json
import os
import stat
import threading
import time
from pathlib import Path

import pytest

from edge import integrity
from edge import formats as fmt
from edge.files import file_entry
from edge.collection import Collection
from edge.errors import ArtifactError
from edge.integrity import read_regular_file, verify_files


@pytest.fixture()
def hashed(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Every path edge.integrity hashes in full, in order."""
    calls: list[Path] = []
    real = integrity.sha256_file

    def spy(path: Path) -> str:
        calls.append(Path(path))
        return real(path)

    monkeypatch.setattr(integrity, "sha256_file", spy)
    return calls


@pytest.fixture()
def no_racy_window(monkeypatch: pytest.MonkeyPatch) -> None:
    """Stamp files however recently they changed (the files of a test are seconds old)."""
    monkeypatch.setattr(integrity, "RACY_WINDOW_NS", 0)


def _manifest(directory: Path) -> dict:
    return json.loads((directory / fmt.MANIFEST_FILE).read_text(encoding="utf-8"))


def _flip_keeping_mtime(path: Path, offset: int) -> None:
    """`touch -r`: a same-size edit with the old mtime put back."""
    before = path.stat()
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert path.stat().st_mtime_ns == before.st_mtime_ns and path.stat().st_size == before.st_size


def test_second_open_hashes_nothing(tiny_copy, tmp_path, monkeypatch, hashed, no_racy_window) -> None:
    monkeypatch.setenv("CARE_EDGE_CACHE_DIR", str(tmp_path / "cache"))
    Collection(tiny_copy.collection).close()
    assert sorted(path.name for path in hashed) == [fmt.DOCS_FILE, fmt.VECTORS_FILE]  # not bench_queries.txt
    hashed.clear()
    Collection(tiny_copy.collection).close()
    assert hashed == []
    stamps = json.loads((tmp_path / "cache" / integrity.STAMPS_FILE).read_text())
    assert stamps["format"] == integrity.STAMPS_FORMAT and len(stamps["files"]) == 2


def test_edit_with_mtime_put_back_is_caught(tiny_copy, tmp_path, monkeypatch, no_racy_window) -> None:
    monkeypatch.setenv("CARE_EDGE_CACHE_DIR", str(tmp_path / "cache"))
    Collection(tiny_copy.collection).close()  # stamped
    time.sleep(0.05)  # past the kernel's coarse clock tick, so the edit gets a new ctime
    _flip_keeping_mtime(tiny_copy.collection / fmt.VECTORS_FILE, 100)
    with pytest.raises(ArtifactError, match="vectors.usearch: sha256 differs"):
        Collection(tiny_copy.collection)


def test_recently_changed_files_are_not_stamped(tiny_copy, tmp_path, monkeypatch, hashed) -> None:
    monkeypatch.setenv("CARE_EDGE_CACHE_DIR", str(tmp_path / "cache"))
    os.utime(tiny_copy.collection / fmt.DOCS_FILE)  # ctime now: within the racy window
    manifest = _manifest(tiny_copy.collection)
    verify_files(tiny_copy.collection, manifest, [fmt.DOCS_FILE])
    verify_files(tiny_copy.collection, manifest, [fmt.DOCS_FILE])
    assert [path.name for path in hashed] == [fmt.DOCS_FILE, fmt.DOCS_FILE]


def test_stamp_for_another_sha256_is_not_trusted(tiny_copy, tmp_path, monkeypatch, no_racy_window) -> None:
    monkeypatch.setenv("CARE_EDGE_CACHE_DIR", str(tmp_path / "cache"))
    manifest = _manifest(tiny_copy.collection)
    verify_files(tiny_copy.collection, manifest, [fmt.DOCS_FILE])
    manifest["files"][fmt.DOCS_FILE]["sha256"] = "0" * 64  # a manifest that now expects other bytes
    with pytest.raises(ArtifactError, match="docs.sqlite: sha256 differs"):
        verify_files(tiny_copy.collection, manifest, [fmt.DOCS_FILE])


@pytest.mark.parametrize("cache_state", ["unwritable", "corrupt", "a directory", "unset"])
def test_any_cache_state_still_verifies(tiny_copy, tmp_path, monkeypatch, hashed, no_racy_window,
                                        cache_state: str) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    if cache_state == "unwritable":
        cache.chmod(stat.S_IRUSR | stat.S_IXUSR)
        if os.access(cache, os.W_OK):  # root writes anywhere, except in /proc
            cache = Path("/proc/self/care-edge-cache")
    elif cache_state == "corrupt":
        (cache / integrity.STAMPS_FILE).write_bytes(b"\x00{not json")
    elif cache_state == "a directory":
        (cache / integrity.STAMPS_FILE).mkdir()
    monkeypatch.setenv("CARE_EDGE_CACHE_DIR", str(cache))
    if cache_state == "unset":
        for name in ("CARE_EDGE_CACHE_DIR", "XDG_CACHE_HOME", "HOME"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setattr(os.path, "expanduser", lambda path: path)
        assert integrity.cache_dir() is None
    for _ in range(2):
        Collection(tiny_copy.collection).close()
    assert len(hashed) >= 2
    path = tiny_copy.collection / fmt.DOCS_FILE
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="docs.sqlite: sha256 differs"):
        Collection(tiny_copy.collection)


def test_stamps_are_capped(tmp_path, monkeypatch, no_racy_window) -> None:
    monkeypatch.setenv("CARE_EDGE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(integrity, "MAX_STAMPS", 3)
    for number in range(5):
        (tmp_path / f"f{number}").write_bytes(b"x" * number)
        entry = file_entry(tmp_path / f"f{number}")
        verify_files(tmp_path, {"files": {f"f{number}": entry}}, [f"f{number}"])
    stamps = json.loads((tmp_path / "cache" / integrity.STAMPS_FILE).read_text())["files"]
    assert sorted(Path(key).name for key in stamps) == ["f2", "f3", "f4"]


def test_concurrent_opens_agree(tiny_copy, tmp_path, monkeypatch, no_racy_window) -> None:
    monkeypatch.setenv("CARE_EDGE_CACHE_DIR", str(tmp_path / "cache"))
    errors: list[BaseException] = []

    def open_close() -> None:
        try:
            Collection(tiny_copy.collection).close()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=open_close) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    json.loads((tmp_path / "cache" / integrity.STAMPS_FILE).read_text())


def test_missing_and_non_regular_artifact_files(tiny_copy) -> None:
    path = tiny_copy.collection / fmt.VECTORS_FILE
    path.unlink()
    with pytest.raises(ArtifactError, match="vectors.usearch: missing"):
        Collection(tiny_copy.collection)
    path.symlink_to("/dev/zero")
    with pytest.raises(ArtifactError, match="vectors.usearch: not a regular file"):
        Collection(tiny_copy.collection)


def test_read_regular_file_refuses_devices_fifos_and_oversize(tmp_path: Path) -> None:
    with pytest.raises(OSError, match="not a regular file"):
        read_regular_file("/dev/zero", 100)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    started = time.monotonic()
    with pytest.raises(OSError, match="not a regular file"):
        read_regular_file(fifo, 100)  # no writer: a plain open() would block forever
    assert time.monotonic() - started < 5
    with pytest.raises(OSError, match="not a regular file"):
        read_regular_file(tmp_path, 100)
    big = tmp_path / "big"
    big.write_bytes(b"x" * 101)
    with pytest.raises(OSError, match="larger than 100 bytes"):
        read_regular_file(big, 100)
    assert read_regular_file(big, 101) == b"x" * 101
