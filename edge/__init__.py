"""care-edge runtime: offline semantic search with a small ONNX query encoder over a usearch index.

Deliberately imports nothing heavy: the offline tools import ``edge.manifest`` without needing onnxruntime loaded.
Main entry points: ``edge.collection.Collection``, ``edge.encoder.QueryEncoder``, ``edge.search.Searcher``,
``edge.manifest`` (the v1 formats) and ``edge.cli.main``.
"""

__version__ = "0.1.0"
