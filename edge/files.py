"""File helpers shared by every artifact writer and checker: sha256 of a file, the manifest's ``files`` entry, the
canonical JSON that alignment ids hash, and atomic writes (temp file next to the target, fsync, rename)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

_HASH_CHUNK = 1 << 20


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def file_entry(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The manifest ``files`` entry of one file: ``{"size": bytes, "sha256": hex}``."""
    return {"size": os.path.getsize(path), "sha256": sha256_file(path)}


def canonical_json(value: Any) -> str:
    """Sorted keys, no spaces, UTF-8 kept as is (not \\u-escaped): the form hashed for alignment ids."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def temp_path(final: Path) -> Path:
    """The temp name a file is written under before it is renamed to ``final``."""
    # Same directory as the target so os.replace is a rename on one filesystem; the pid keeps concurrent writers apart.
    return final.with_name(f".{final.name}.{os.getpid()}.tmp")


@contextlib.contextmanager
def atomic_replace(path: Path) -> Iterator[Path]:
    """A temp name next to ``path`` for the caller to build the file under (a stale one is removed first); when the
    block ends normally the file is fsynced and renamed over ``path``, and on an error it is removed."""
    temp = temp_path(path)
    if temp.exists():
        temp.unlink()
    try:
        yield temp
        with open(temp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(temp, path)
    finally:
        if temp.exists():
            temp.unlink()


@contextlib.contextmanager
def staged_dir(out_dir: Path) -> Iterator[Path]:
    """A fresh folder next to ``out_dir`` for the caller to build it in; when the block ends normally the folder
    replaces ``out_dir`` (an old one is removed first), and on an error it is removed."""
    staging = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=out_dir.name + ".tmp"))
    try:
        yield staging
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(staging, out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to a temp file next to ``path``, fsync it, then rename it over ``path``."""
    with atomic_replace(Path(path)) as temp:
        temp.write_bytes(data)


def atomic_write_json(path: str | os.PathLike[str], value: Any) -> None:
    """Pretty JSON (UTF-8, 2-space indent, trailing newline), written atomically."""
    atomic_write_bytes(path, (json.dumps(value, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))
