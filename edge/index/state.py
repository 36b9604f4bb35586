"""The work state of one indexed collection: a SQLite file that makes indexing incremental and resumable.

Tables:
- ``files``: every file seen under the indexed folders: path, size, mtime_ns, content sha256, and either
  ``indexed`` or ``skipped`` with its reason. (size, mtime_ns) unchanged means the file is not read again.
- ``contents``: one row per distinct file content (sha256), so duplicate files are chunked and embedded once.
- ``passages``: the passages of each content, with their meta and, once embedded, their vector (float32 blob).
- ``settings``: the document encoder identity and chunk settings the passages were made with, and what the
  collection on disk was last written from.

Every change is a transaction: a file's passages land with its ``files`` row, and each embedded batch is committed
on its own, so a killed run loses at most the batch in flight.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

STATE_FILE = "state.sqlite"
STATE_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS files (
  path TEXT PRIMARY KEY, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, sha256 TEXT,
  status TEXT NOT NULL, reason TEXT
);
CREATE TABLE IF NOT EXISTS contents (sha256 TEXT PRIMARY KEY, passages INTEGER NOT NULL, info TEXT);
CREATE TABLE IF NOT EXISTS passages (
  sha256 TEXT NOT NULL, ordinal INTEGER NOT NULL, text TEXT NOT NULL, meta TEXT NOT NULL,
  vector BLOB, truncated INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (sha256, ordinal)
);
CREATE INDEX IF NOT EXISTS files_by_sha ON files (sha256);
CREATE INDEX IF NOT EXISTS passages_pending ON passages (sha256) WHERE vector IS NULL;
"""


@dataclass(frozen=True)
class FileRecord:
    path: str
    size: int
    mtime_ns: int
    sha256: str | None
    status: str  # "indexed" | "skipped"
    reason: str | None


@dataclass(frozen=True)
class PendingPassage:
    sha256: str
    ordinal: int
    text: str


class IndexState:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._db = sqlite3.connect(path, isolation_level=None)  # explicit BEGIN/COMMIT below
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: a commit survives a killed process
        self._db.executescript(_SCHEMA)
        version = self.setting("state_version")
        if version is None:
            self.set_settings({"state_version": STATE_VERSION})
        elif version != STATE_VERSION:
            raise RuntimeError(f"{path}: state version {version}, this care-edge writes {STATE_VERSION}")

    def close(self) -> None:
        self._db.close()

    # ------------------------------------------------------------------------------------------ settings

    def setting(self, key: str) -> Any:
        row = self._db.execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def set_settings(self, values: dict[str, Any]) -> None:
        with self._transaction():
            self._db.executemany(
                "INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                [(key, json.dumps(value, sort_keys=True)) for key, value in values.items()],
            )

    def reset(self) -> None:
        """Forget every file and passage (another encoder or chunking: nothing can be reused)."""
        with self._transaction():
            for table in ("files", "contents", "passages"):
                self._db.execute(f"DELETE FROM {table}")
            self._db.execute("DELETE FROM settings WHERE key NOT IN ('state_version', 'gguf_hashes')")

    # ------------------------------------------------------------------------------------------ files

    def files(self) -> dict[str, FileRecord]:
        rows = self._db.execute("SELECT path, size, mtime_ns, sha256, status, reason FROM files")
        return {row[0]: FileRecord(*row) for row in rows}

    def has_content(self, sha256: str) -> bool:
        return self._db.execute("SELECT 1 FROM contents WHERE sha256 = ?", (sha256,)).fetchone() is not None

    def record_skipped(self, path: str, size: int, mtime_ns: int, reason: str, sha256: str | None = None) -> None:
        with self._transaction():
            self._upsert_file(FileRecord(path, size, mtime_ns, sha256, "skipped", reason))

    def record_indexed(self, record: FileRecord, passages: Sequence[tuple[str, dict]] | None,
                       info: dict | None = None) -> None:
        """The file's row, and its content's passages unless the content is already known (``passages`` None)."""
        with self._transaction():
            if passages is not None and not self.has_content(str(record.sha256)):
                self._db.execute("INSERT INTO contents (sha256, passages, info) VALUES (?, ?, ?)",
                                 (record.sha256, len(passages), json.dumps(info or {})))
                self._db.executemany(
                    "INSERT INTO passages (sha256, ordinal, text, meta) VALUES (?, ?, ?, ?)",
                    [(record.sha256, i, text, json.dumps(meta, ensure_ascii=False, sort_keys=True))
                     for i, (text, meta) in enumerate(passages)],
                )
            self._upsert_file(record)

    def _upsert_file(self, record: FileRecord) -> None:
        self._db.execute(
            "INSERT INTO files (path, size, mtime_ns, sha256, status, reason) VALUES (?, ?, ?, ?, ?, ?) "
            "ON CONFLICT(path) DO UPDATE SET size = excluded.size, mtime_ns = excluded.mtime_ns, "
            "sha256 = excluded.sha256, status = excluded.status, reason = excluded.reason",
            (record.path, record.size, record.mtime_ns, record.sha256, record.status, record.reason),
        )

    def forget_files(self, paths: Sequence[str]) -> None:
        """Drop files (deleted from disk, or outside the folders now indexed)."""
        with self._transaction():
            self._db.executemany("DELETE FROM files WHERE path = ?", [(p,) for p in paths])

    def drop_orphans(self) -> int:
        """Delete the passages of contents no indexed file has; returns how many."""
        with self._transaction():
            return self._drop_orphans()

    def _drop_orphans(self) -> int:
        orphan = "sha256 NOT IN (SELECT sha256 FROM files WHERE sha256 IS NOT NULL AND status = 'indexed')"
        removed = self._db.execute(f"DELETE FROM passages WHERE {orphan}").rowcount
        self._db.execute(f"DELETE FROM contents WHERE {orphan}")
        return int(removed)

    def content_info(self, sha256: str) -> dict:
        row = self._db.execute("SELECT info FROM contents WHERE sha256 = ?", (sha256,)).fetchone()
        return json.loads(row[0]) if row and row[0] else {}

    # ------------------------------------------------------------------------------------------ vectors

    def pending(self) -> list[PendingPassage]:
        rows = self._db.execute(
            "SELECT sha256, ordinal, text FROM passages WHERE vector IS NULL ORDER BY sha256, ordinal")
        return [PendingPassage(*row) for row in rows]

    def store_vectors(self, passages: Sequence[PendingPassage], vectors: np.ndarray, truncated: Sequence[bool]) -> None:
        with self._transaction():
            self._db.executemany(
                "UPDATE passages SET vector = ?, truncated = ? WHERE sha256 = ? AND ordinal = ?",
                [(np.asarray(v, dtype=np.float32).tobytes(), int(t), p.sha256, p.ordinal)
                 for p, v, t in zip(passages, vectors, truncated)],
            )

    def has_pending(self) -> bool:
        return self._db.execute("SELECT 1 FROM passages WHERE vector IS NULL LIMIT 1").fetchone() is not None

    def indexed_files(self) -> list[tuple[str, str]]:
        """(path, content sha256) of every indexed file, in path order."""
        return [tuple(row) for row in self._db.execute(
            "SELECT path, sha256 FROM files WHERE status = 'indexed' ORDER BY path")]

    def indexed_rows(self) -> Iterator[tuple[str, list[str], int, str, dict, bytes, int]]:
        """(first path, duplicate paths, ordinal, text, meta, vector, truncated) of every embedded passage of every
        indexed file, in path order; a content shared by several files comes once, under its first path."""
        paths_by_sha: dict[str, list[str]] = {}
        for path, sha in self._db.execute(
                "SELECT path, sha256 FROM files WHERE status = 'indexed' ORDER BY path"):
            paths_by_sha.setdefault(sha, []).append(path)
        for sha, paths in sorted(paths_by_sha.items(), key=lambda item: item[1][0]):
            rows = self._db.execute(
                "SELECT ordinal, text, meta, vector, truncated FROM passages WHERE sha256 = ? ORDER BY ordinal", (sha,))
            for ordinal, text, meta, vector, truncated in rows:
                if vector is None:
                    continue
                yield paths[0], paths[1:], ordinal, text, json.loads(meta), vector, truncated

    # ------------------------------------------------------------------------------------------ plumbing

    def _transaction(self) -> "_Transaction":
        return _Transaction(self._db)


class _Transaction:
    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db
        self._depth_owner = False

    def __enter__(self) -> sqlite3.Connection:
        if not self._db.in_transaction:
            self._db.execute("BEGIN IMMEDIATE")
            self._depth_owner = True
        return self._db

    def __exit__(self, exc_type, exc, tb) -> None:
        if not self._depth_owner:
            return
        if exc_type is None:
            self._db.execute("COMMIT")
        else:
            self._db.execute("ROLLBACK")
