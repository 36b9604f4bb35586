"""Every collection the page can search, opened once, with the one query encoder they share.

A collection is any directory holding a collection manifest, one level below a collection root: the index folder
(``prebuilt_index/`` or ``$CARE_EDGE_INDEX_DIR``) and, where the runtime defines one, the user's data folder that
``care-edge index`` writes to. A collection that fails to open (corrupt, or built for another query encoder) is
listed with its one-line error instead of stopping the server.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge import Collection, QueryEncoder, Searcher, paths
from edge.errors import ArtifactError, BadInput, CareEdgeError
from edge.formats import COLLECTION_FORMAT, MANIFEST_FILE

# A collection whose documents carry these meta keys gets the code view (code, names, chapter, hierarchy).
CODE_META_KEYS = ("code", "names")


@dataclass(frozen=True)
class CollectionRoot:
    origin: str  # "index" (the shipped index folder) or "user" (collections made with `care-edge index`)
    directory: Path


@dataclass
class CatalogEntry:
    """One collection as the page sees it. ``name`` is what the API's ``index`` parameter takes."""

    name: str
    directory: Path
    origin: str
    searcher: Searcher | None = None
    error: str | None = None
    kind: str = "documents"  # "codes" (ICD-like meta) | "files" (a user's files, with sources) | "documents"

    def describe(self, default: bool) -> dict[str, Any]:
        described: dict[str, Any] = {"name": self.name, "origin": self.origin, "default": default,
                                     "available": self.searcher is not None, "kind": self.kind}
        if self.searcher is None:
            described["error"] = self.error
            return described
        collection = self.searcher.collection
        described.update(
            title=collection.name,
            description=collection.description,
            documents=collection.count,
            default_mode=collection.default_mode,
            modes=["dense", "hybrid"] if collection.lexical else ["dense"],
        )
        return described


def collection_roots() -> list[CollectionRoot]:
    """The folders whose sub-directories are collections: the index folder, then the user's data folder."""
    return [CollectionRoot("index", paths.prebuilt_index_dir()),
            CollectionRoot("user", paths.user_collections_dir())]


def _is_collection_dir(directory: Path) -> bool:
    path = directory / MANIFEST_FILE
    if not path.is_file():  # a FIFO or device under that name would block or never end a read
        return False
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return isinstance(manifest, dict) and manifest.get("format") == COLLECTION_FORMAT


def discover_collections(roots: list[CollectionRoot] | None = None) -> list[tuple[str, str, Path]]:
    """``(name, origin, directory)`` of every collection directory under the roots, in a stable order. Names are
    directory names (what ``--index NAME`` takes); a user collection whose name is taken gets ``user:NAME``."""
    found: list[tuple[str, str, Path]] = []
    taken: set[str] = set()
    for root in roots if roots is not None else collection_roots():
        try:
            children = sorted(child for child in root.directory.iterdir() if child.is_dir())
        except OSError:
            continue  # a root that does not exist (no user collections yet) holds nothing
        for child in children:
            # Dot entries are work folders (`care-edge index` keeps its generations there), not collections.
            if child.name.startswith(".") or not _is_collection_dir(child):
                continue
            name = child.name if child.name not in taken else f"{root.origin}:{child.name}"
            taken.add(name)
            found.append((name, root.origin, child))
    return found


def source_path(meta: dict[str, Any]) -> str | None:
    """The file a passage came from, as `care-edge index` records it (``meta["file"]``, an absolute path). The
    shipped collections name their data set in ``meta["source"]``, which is never served."""
    source = meta.get("file")
    return source if isinstance(source, str) and os.path.isabs(source) else None


def _kind_of(collection: Collection, sample_size: int = 20) -> str:
    """What the page should render, judged from the first documents' meta."""
    metas = [document.meta for document in collection.fetch_by_id_prefix("", sample_size)]
    if metas and all(all(key in meta for key in CODE_META_KEYS) for meta in metas):
        return "codes"
    if any(source_path(meta) is not None for meta in metas):
        return "files"
    return "documents"


class Catalog:
    """The opened collections and the shared query encoder. Read-only after construction, so request threads share
    it without locks (Searcher, Collection and QueryEncoder are thread-safe themselves)."""

    def __init__(self, encoder: QueryEncoder, entries: list[CatalogEntry], default_name: str | None) -> None:
        self.encoder = encoder
        self.entries = {entry.name: entry for entry in entries}
        self.default_name = default_name

    @classmethod
    def load(cls, *, encoder_dir: str | None = None, threads: int = 1,
             roots: list[CollectionRoot] | None = None) -> "Catalog":
        """Open the query encoder and every discovered collection. Raises ArtifactError when there is no query
        encoder or no collection at all (nothing to serve)."""
        roots = roots if roots is not None else collection_roots()
        encoder = QueryEncoder(paths.resolve_encoder_dir(encoder_dir), threads=threads)
        entries = []
        for name, origin, directory in discover_collections(roots):
            entry = CatalogEntry(name=name, directory=directory, origin=origin)
            collection = None
            try:
                collection = Collection(directory)
                entry.searcher = Searcher(collection, encoder)
                entry.kind = _kind_of(collection)
            except CareEdgeError as exc:
                entry.searcher, entry.error = None, exc.message
                if collection is not None:
                    collection.close()
            entries.append(entry)
        if not entries:
            where = ", ".join(str(root.directory) for root in roots)
            raise ArtifactError(f"no collection under {where}: run `make prebuilt` or set {paths.ENV_INDEX_DIR}")
        # The page opens on default.json's collection, else on the first one that opened.
        usable = [entry.name for entry in entries if entry.searcher is not None]
        index_roots = [root.directory for root in roots if root.origin == "index"]
        defaults = paths.read_defaults(index_roots[0]) if index_roots else None
        default_name = defaults.collection if defaults and defaults.collection in usable else None
        return cls(encoder, entries, default_name or (usable[0] if usable else None))

    def describe(self) -> list[dict[str, Any]]:
        return [entry.describe(entry.name == self.default_name) for entry in self.entries.values()]

    def searcher(self, name: str | None) -> tuple[CatalogEntry, Searcher]:
        """The entry and searcher for the API's ``index`` parameter (None: the default collection)."""
        if name is None:
            if self.default_name is None:
                raise ArtifactError("no collection could be opened: see /api/collections for each one's error")
            name = self.default_name
        entry = self.entries.get(name)
        if entry is None:
            raise BadInput(f"unknown collection {name!r}: one of {', '.join(self.entries)}")
        if entry.searcher is None:
            raise ArtifactError(f"collection {name!r} cannot be searched: {entry.error}")
        return entry, entry.searcher

    def close(self) -> None:
        for entry in self.entries.values():
            if entry.searcher is not None:
                entry.searcher.collection.close()

