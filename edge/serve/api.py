"""The JSON API: query parameters in, ``(HTTP status, JSON body)`` out. No HTTP here, so it is tested directly.

``GET /api/search?q=&index=&mode=&k=`` answers exactly what ``care-edge search --json`` prints for the same query
(the same Searcher call and ``SearchResponse.to_json``). Bad parameters are HTTP 400 with the CLI's one-line
message; a broken collection is 503; nothing answers with a traceback.
"""

from __future__ import annotations

import mimetypes
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence
from urllib.parse import quote

from edge import __version__
from edge.docstore import Document
from edge.errors import ArtifactError, BadInput, CareEdgeError
from edge.search import DEFAULT_K, check_mode
from edge.serve import hierarchy
from edge.serve.catalog import Catalog, CatalogEntry, source_path
from edge.text import clean_query

# Limits of a server others may reach on a shared workstation. The query encoder reads at most a few dozen tokens,
# so 1,000 characters lose nothing; k up to 100 covers any page of results.
MAX_QUERY_CHARS = 1000
MAX_K = 100
MAX_ID_CHARS = 200
# Files of a user's collection are served by their recorded source path only, with a type that cannot run script in
# this origin: HTML and other markup come back as plain text.
INLINE_TYPES = {".pdf": "application/pdf", ".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}
TEXT_SUFFIXES = {".txt", ".md", ".rst", ".csv", ".tsv", ".json", ".html", ".htm", ".xml", ".log"}


class NotFound(CareEdgeError):
    """A well-formed request for something that is not there (an unknown document id, a source file gone)."""

    exit_code = 2


@dataclass(frozen=True)
class Reply:
    status: int
    body: Any = None
    # A user's source file to stream instead of a JSON body, with its content type.
    file: Path | None = None
    content_type: str = "application/json; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)


Params = Mapping[str, Sequence[str]]


def _one(params: Params, name: str, *, required: bool = False) -> str | None:
    values = params.get(name)
    if not values:
        if required:
            raise BadInput(f"missing parameter {name!r}")
        return None
    if len(values) > 1:
        raise BadInput(f"parameter {name!r} given {len(values)} times")
    return values[0]


def _check_known(params: Params, known: tuple[str, ...]) -> None:
    unknown = sorted(set(params) - set(known))
    if unknown:
        raise BadInput(f"unknown parameter {unknown[0]!r}: this endpoint takes {', '.join(known)}")


def parse_k(text: str | None) -> int:
    if text is None or text == "":
        return DEFAULT_K
    try:
        value = int(text)
    except ValueError:
        raise BadInput(f"-k must be an integer from 1 to {MAX_K}, got {text[:20]!r}") from None
    if not 1 <= value <= MAX_K:
        raise BadInput(f"-k must be an integer from 1 to {MAX_K}, got {value}")
    return value


def parse_query(text: str | None) -> str:
    if text is None:
        raise BadInput("missing parameter 'q'")
    if len(text) > MAX_QUERY_CHARS:
        raise BadInput(f"query longer than {MAX_QUERY_CHARS} characters ({len(text)})")
    return clean_query(text)


def _document_json(document: Document) -> dict[str, Any]:
    return {"id": document.id, "text": document.text, "meta": document.meta}


# --------------------------------------------------------------------------------------------------- endpoints


def search(catalog: Catalog, params: Params) -> Reply:
    _check_known(params, ("q", "index", "mode", "k"))
    query = parse_query(_one(params, "q"))
    k = parse_k(_one(params, "k"))
    mode_text = _one(params, "mode")
    entry, searcher = catalog.searcher(_one(params, "index"))
    mode = check_mode(mode_text) if mode_text else searcher.collection.default_mode
    if mode == "hybrid" and not searcher.collection.lexical:
        # The CLI reports this as a broken artifact; asked for over the API it is a request the collection can't serve.
        raise BadInput(f"collection {entry.name!r} has no lexical table, so it cannot be searched in hybrid mode: "
                       "use mode=dense")
    return Reply(200, searcher.search(query, k, mode).to_json())


def collections(catalog: Catalog, params: Params) -> Reply:
    _check_known(params, ())
    return Reply(200, {"collections": catalog.describe(), "default": catalog.default_name})


def health(catalog: Catalog, params: Params) -> Reply:
    _check_known(params, ())
    available = sum(entry.searcher is not None for entry in catalog.entries.values())
    return Reply(200, {
        "status": "ok",
        "version": __version__,
        "query_encoder": catalog.encoder.name,
        "collections": {"available": available, "unavailable": len(catalog.entries) - available},
    })


def _document(catalog: Catalog, params: Params) -> tuple[CatalogEntry, Document]:
    _check_known(params, ("index", "id"))
    doc_id = _one(params, "id", required=True) or ""
    if not doc_id or len(doc_id) > MAX_ID_CHARS:
        raise BadInput(f"id must be 1 to {MAX_ID_CHARS} characters")
    entry, searcher = catalog.searcher(_one(params, "index"))
    found = searcher.collection.fetch_by_ids([doc_id])
    if not found:
        raise NotFound(f"no document {doc_id!r} in collection {entry.name!r}")
    return entry, found[0]


def document(catalog: Catalog, params: Params) -> Reply:
    """A document by id; in a code collection also its parent and children, so the page can walk the hierarchy."""
    entry, found = _document(catalog, params)
    body: dict[str, Any] = {"index": entry.name, "document": _document_json(found), "parent": None, "children": []}
    if entry.kind == "codes" and entry.searcher is not None:
        collection = entry.searcher.collection
        parent = hierarchy.parent(collection, found.id)
        body["parent"] = _document_json(parent) if parent is not None else None
        body["children"] = [_document_json(child) for child in hierarchy.children(collection, found.id)]
    return Reply(200, body)


def source_file(catalog: Catalog, params: Params) -> Reply:
    """The file a user-collection document came from. Only a path recorded in the collection's own doc store can be
    served, so no request can name an arbitrary file."""
    entry, found = _document(catalog, params)
    path = recorded_source_path(entry, found)
    suffix = path.suffix.lower()
    if suffix in INLINE_TYPES:
        return Reply(200, file=path, content_type=INLINE_TYPES[suffix])
    if suffix in TEXT_SUFFIXES:
        return Reply(200, file=path, content_type="text/plain; charset=utf-8")
    guessed = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return Reply(200, file=path, content_type="application/octet-stream",
                 headers={"Content-Disposition": f"attachment; filename*=UTF-8''{quote(path.name, safe='')}",
                          "X-Original-Content-Type": guessed})


def recorded_source_path(entry: CatalogEntry, found: Document) -> Path:
    raw = source_path(found.meta)
    if raw is None:
        raise NotFound(f"document {found.id!r} of collection {entry.name!r} records no source file")
    path = Path(raw)
    if not path.is_file():
        raise NotFound(f"source file of {found.id!r} is no longer at {path}")
    return path


ROUTES: dict[str, Callable[[Catalog, Params], Reply]] = {
    "/api/search": search,
    "/api/collections": collections,
    "/api/health": health,
    "/api/doc": document,
    "/api/file": source_file,
}


def error_reply(exc: BaseException) -> Reply:
    """One line of JSON for any failure: 400 bad input, 404 not found, 503 broken artifact, 500 anything else."""
    if isinstance(exc, NotFound):
        return Reply(404, {"error": exc.message})
    if isinstance(exc, BadInput):
        return Reply(400, {"error": exc.message})
    if isinstance(exc, ArtifactError):
        return Reply(503, {"error": exc.message})
    if isinstance(exc, CareEdgeError):
        return Reply(500, {"error": exc.message})
    message = " ".join(str(exc).split()) or "no details"
    return Reply(500, {"error": f"internal error: {type(exc).__name__}: {message}"})


def handle(catalog: Catalog, route: str, params: Params) -> Reply:
    endpoint = ROUTES.get(route)
    if endpoint is None:
        return Reply(404, {"error": f"no endpoint {route[:100]!r}: one of {', '.join(ROUTES)}"})
    try:
        return endpoint(catalog, params)
    except Exception as exc:  # every failure becomes one JSON line; the server logs nothing more than that
        return error_reply(exc)
