"""The docs table of a collection's ``docs.sqlite`` (``docs(key, id, text, meta)``): its schema and read-only access.

Opened with ``mode=ro&immutable=1``: SQLite then takes no locks and writes no journal, so the store works from a
read-only directory (an installed binary, a mounted image) and never changes the file. One connection per thread,
because a sqlite3 connection must not be used by two threads at once.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from edge.errors import ArtifactError

DOCS_TABLE = "docs"
DOCS_COLUMNS = ("key", "id", "text", "meta")
DOCS_TABLE_SQL = (
    "CREATE TABLE docs (key INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, text TEXT NOT NULL, meta TEXT NOT NULL)"
)
# SQLite's default limit on host parameters is 999 on old builds: every IN (...) list is sent in slices below it.
SQLITE_MAX_PARAMS = 900


@dataclass(frozen=True)
class Document:
    key: int
    id: str
    text: str
    meta: dict[str, Any] = field(default_factory=dict)


class DocStore:
    """``get(keys)`` returns the documents in the order of ``keys``."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise ArtifactError(f"{self.path} is missing: re-copy or rebuild the collection")
        self._uri = self.path.resolve().as_uri() + "?mode=ro&immutable=1"
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._connections_lock = threading.Lock()
        self._check_schema()

    def connection(self) -> sqlite3.Connection:
        """This thread's read-only connection to the store (opened on first use)."""
        connection = getattr(self._local, "connection", None)
        if connection is None:
            try:
                # check_same_thread=False only so close() may close every thread's connection; each is used by one.
                connection = sqlite3.connect(self._uri, uri=True, check_same_thread=False)
            except sqlite3.Error as exc:
                raise ArtifactError(f"{self.path} cannot be opened ({exc}): re-copy or rebuild the collection") from None
            self._local.connection = connection
            with self._connections_lock:
                self._connections.append(connection)
        return connection

    def _check_schema(self) -> None:
        try:
            rows = self.connection().execute(f"PRAGMA table_info({DOCS_TABLE})").fetchall()
        except sqlite3.DatabaseError as exc:
            raise ArtifactError(f"{self.path} is not a readable SQLite database ({exc}): re-copy or rebuild the collection") from None
        columns = tuple(row[1] for row in rows)
        if columns != DOCS_COLUMNS:
            raise ArtifactError(
                f"{self.path}: table 'docs' has columns {list(columns)}, expected {list(DOCS_COLUMNS)}: "
                "rebuild the collection"
            )

    def count(self) -> int:
        try:
            (count,) = self.connection().execute("SELECT COUNT(*) FROM docs").fetchone()
        except sqlite3.DatabaseError as exc:
            raise ArtifactError(f"{self.path} is corrupt ({exc}): re-copy or rebuild the collection") from None
        return int(count)

    def get(self, keys: Sequence[int]) -> list[Document]:
        """The documents with these keys, in the same order; a key that is absent means the index and the store
        disagree, which is an ArtifactError."""
        wanted = [int(key) for key in keys]
        unique = list(dict.fromkeys(wanted))
        found = {document.key: document for document in self._select_in("key", unique)}
        missing = [key for key in unique if key not in found]
        if missing:
            raise ArtifactError(
                f"{self.path} has no document for index key {missing[0]}: the index and the doc store do not match; "
                "rebuild the collection"
            )
        return [found[key] for key in wanted]

    def get_by_ids(self, ids: Sequence[str]) -> list[Document]:
        """The documents whose ``id`` is in ``ids``, in the order of ``ids``; ids that are absent are skipped."""
        wanted = list(dict.fromkeys(str(doc_id) for doc_id in ids))
        found = {document.id: document for document in self._select_in("id", wanted)}
        return [found[doc_id] for doc_id in wanted if doc_id in found]

    def _select_in(self, column: str, values: Sequence[int | str]) -> list[Document]:
        """The documents whose ``column`` ("key" or "id") is one of ``values``, in SQLite's order, queried in chunks
        under SQLite's parameter cap."""
        documents: list[Document] = []
        connection = self.connection()
        try:
            for start in range(0, len(values), SQLITE_MAX_PARAMS):
                part = list(values[start : start + SQLITE_MAX_PARAMS])
                placeholders = ",".join("?" * len(part))
                for key, doc_id, text, meta in connection.execute(
                    f"SELECT key, id, text, meta FROM docs WHERE {column} IN ({placeholders})", part
                ):
                    documents.append(Document(key=key, id=doc_id, text=text, meta=_parse_meta(meta, self.path, key)))
        except sqlite3.DatabaseError as exc:
            raise ArtifactError(f"{self.path} is corrupt ({exc}): re-copy or rebuild the collection") from None
        return documents

    def get_by_id_prefix(self, prefix: str, limit: int) -> list[Document]:
        """Up to ``limit`` documents whose ``id`` starts with ``prefix``, in id order (a range scan over the unique
        index on ``id``, so it stays cheap on large stores)."""
        # Ids compare as UTF-8 bytes; U+10FFFF sorts after every character that can follow the prefix.
        upper = prefix + "\U0010ffff"
        try:
            rows = self.connection().execute(
                "SELECT key, id, text, meta FROM docs WHERE id >= ? AND id < ? ORDER BY id LIMIT ?",
                (prefix, upper, int(limit)),
            ).fetchall()
        except sqlite3.DatabaseError as exc:
            raise ArtifactError(f"{self.path} is corrupt ({exc}): re-copy or rebuild the collection") from None
        return [Document(key=key, id=doc_id, text=text, meta=_parse_meta(meta, self.path, key))
                for key, doc_id, text, meta in rows]

    def close(self) -> None:
        with self._connections_lock:
            for connection in self._connections:
                connection.close()
            self._connections.clear()
        self._local = threading.local()


def _parse_meta(raw: str, path: Path, key: int) -> dict[str, Any]:
    try:
        meta = json.loads(raw)
    except (TypeError, json.JSONDecodeError):
        raise ArtifactError(f"{path}: meta of key {key} is not JSON: rebuild the collection") from None
    if not isinstance(meta, dict):
        raise ArtifactError(f"{path}: meta of key {key} is not a JSON object: rebuild the collection")
    return meta
