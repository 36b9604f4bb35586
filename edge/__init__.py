"""care-edge runtime: offline semantic search with a small ONNX query encoder over a usearch index.

The public API, three objects, each opened by its constructor::

    from edge import Collection, QueryEncoder, Searcher
    searcher = Searcher(Collection("prebuilt_index/cmed-zh"), QueryEncoder("prebuilt_index/query_encoder"))
    response = searcher.search("胸痛", k=3)  # response.results[i].id / .score / .text / .meta

``import edge`` loads nothing heavy: the names above are imported on first use, so the offline tools can import
``edge.formats`` or ``edge.writers`` without loading onnxruntime, and onnxruntime always loads before usearch
(``edge._native``). The formats live in ``edge.formats`` (reading, checking) and ``edge.writers`` (writing); the
command line is ``edge.cli.main``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# Public name -> the module that defines it.
_EXPORTS = {
    "Collection": "edge.collection",
    "QueryEncoder": "edge.encoder",
    "Searcher": "edge.search",
    "SearchResponse": "edge.search",
    "SearchResult": "edge.search",
}

__all__ = ["Collection", "QueryEncoder", "SearchResponse", "SearchResult", "Searcher"]

if TYPE_CHECKING:
    from edge.collection import Collection
    from edge.encoder import QueryEncoder
    from edge.search import SearchResponse, SearchResult, Searcher


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'edge' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
