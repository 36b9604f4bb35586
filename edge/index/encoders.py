"""The two document encoders ``care-edge index`` can use, behind one small interface.

- ``gguf`` (default): EmbeddingGemma Q8_0 through llama-cpp-python (:mod:`edge.index.gguf`), the shipped
  collections' document encoder; the collection gets their ``alignment_id``.
- ``query``: the shipped INT8 query encoder embeds the passages too (symmetric search). No llama_cpp, far faster,
  somewhat less accurate (docs/index.md has the measurement). Its collection's document encoder is the query
  encoder's own graph (kind ``onnx``), so it carries another ``alignment_id`` and can never be mixed with vectors of
  the GGUF path.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Protocol, Sequence

import numpy as np

from edge.errors import BadInput
from edge.index.gguf import EncodedBatch, GGUFEncoder, l2_normalize

ENCODER_CHOICES = ("gguf", "query")
# The fast path lets passages run past the query encoder's 64-token query limit: e5-small's position table holds
# 512, and the chunker keeps passages well under that.
QUERY_ENCODER_PASSAGE_TOKENS = 512


class DocumentEncoder(Protocol):
    identity: dict[str, Any]
    max_tokens: int

    def count_tokens(self, text: str) -> int: ...

    def embed(self, texts: Sequence[str]) -> EncodedBatch: ...


class QueryEncoderDocuments:
    """The shipped query encoder's ONNX graph applied to passages, under its own prompt (symmetric)."""

    def __init__(self, encoder_dir: Path, *, threads: int | None = None) -> None:
        from edge.encoder import QueryEncoder

        self._encoder = QueryEncoder(encoder_dir, threads=threads or os.cpu_count() or 1,
                                     max_tokens=QUERY_ENCODER_PASSAGE_TOKENS)
        self._tokenizer = self._encoder._tokenizer
        self.max_tokens = QUERY_ENCODER_PASSAGE_TOKENS
        self.prompt = self._encoder.prompt
        manifest = self._encoder.manifest
        self.identity = symmetric_identity(manifest, self._encoder.prompt, self._encoder.dims, self.max_tokens)

    def count_tokens(self, text: str) -> int:
        return len(self._tokenizer.encode(self.prompt + text).ids)

    def embed(self, texts: Sequence[str]) -> EncodedBatch:
        if not texts:
            return EncodedBatch(np.zeros((0, self._encoder.dims), np.float32), [])
        result = self._encoder.encode(list(texts))
        return EncodedBatch(l2_normalize(result.vectors), list(result.truncated))


def symmetric_identity(encoder_manifest: dict[str, Any], prompt: str, dims: int, max_tokens: int) -> dict[str, Any]:
    """The document_encoder of a collection embedded by a query encoder's own graph. ``edge.search`` accepts the
    pair when the collection is marked symmetric and names this graph (kind onnx, the sha256 of its model.onnx)."""
    return {
        "name": str(encoder_manifest["name"]),
        "kind": "onnx",
        "sha256": str(encoder_manifest["files"]["model.onnx"]["sha256"]),
        "prompt": prompt,
        "pooling": "in-graph",
        "dims": dims,
        "full_dims": dims,
        "max_tokens": max_tokens,
        "normalize": True,
        "symmetric": True,  # not an alignment key: it tells edge.search that this graph's queries fit these vectors
    }


def open_document_encoder(kind: str, *, gguf_path: Path | None = None, gguf_sha256: str | None = None,
                          encoder_dir: Path | None = None, threads: int | None = None) -> DocumentEncoder:
    if kind == "gguf":
        if gguf_path is None:
            raise BadInput("the gguf document encoder needs a GGUF path")
        return GGUFEncoder(gguf_path, sha256=gguf_sha256, n_threads=threads)
    if kind == "query":
        if encoder_dir is None:
            raise BadInput("the query document encoder needs a query encoder directory")
        return QueryEncoderDocuments(encoder_dir, threads=threads)
    raise BadInput(f"--encoder must be one of {', '.join(ENCODER_CHOICES)}, got {kind!r}")
