"""The teacher side of training: the frozen LLM document encoder's vectors, read from (and added to) the vector cache.

Two prompts, two caches: the query prompt gives the vectors the student must reproduce (stage I targets, stage II
KL and alignment terms); the document prompt gives the frozen document vectors the student's queries are scored
against in stage II, the very vectors ``tools.build.index`` puts in a collection. Vectors are Matryoshka-truncated
to the trained dims and re-normalised, as the collection's are.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Sequence

import numpy as np

from edge.errors import BadInput
from tools.build.doc_encoder import VectorCache, truncate_dims
from tools.build.index import Shard, embed_texts, open_encoder, prompt_for
from tools.models.cache import ModelCache, cache_root

Side = Literal["query", "document"]
MissingPolicy = Literal["embed", "error"]


class MissingTeacherVectors(BadInput):
    """Some texts have no cached teacher vector and the run was told not to compute them."""


class Teacher:
    """The LLM encoder named by ``spec`` (``embeddinggemma`` | ``gemma3-270m`` | ``gguf:PATH``) and its vector caches
    under ``cache_dir`` (default ``$CARE_EDGE_CACHE`` or ``~/.cache/care-edge``, shared with ``tools.build.index``)."""

    def __init__(self, spec: str, cache_dir: Path | None = None, threads: int | None = None) -> None:
        self.spec = spec
        self.models = ModelCache(cache_root(cache_dir))
        try:
            self.encoder = open_encoder(spec, self.models, threads)
        except SystemExit as exc:  # open_encoder's one-line errors
            raise BadInput(str(exc.code).removeprefix("error: ")) from None
        _force_mean_pooling(self.encoder)
        self.full_dims = int(self.encoder.full_dims)
        self._caches: dict[Side, VectorCache] = {}

    def prompt(self, side: Side) -> str:
        return prompt_for(side)

    def cache(self, side: Side) -> VectorCache:
        if side not in self._caches:
            self._caches[side] = VectorCache(self.models.root, self.encoder.identity, self.prompt(side))
        return self._caches[side]

    def check_dims(self, dims: int) -> None:
        if not 1 <= dims <= self.full_dims:
            raise BadInput(f"--dims {dims}: the teacher {self.spec} has {self.full_dims} dims")

    def missing(self, texts: Sequence[str], side: Side) -> list[str]:
        cache = self.cache(side)
        cache.refresh()  # another process (a build_index embed) may have added shards
        return cache.missing(dict.fromkeys(texts))

    def embed_missing(self, texts: Sequence[str], side: Side, shard: Shard = Shard(0, 1),
                      progress: bool = True) -> int:
        """Compute the vectors the cache lacks (this shard's part of them). Returns how many were computed."""
        todo = self.missing(texts, side)
        if not todo:
            return 0
        return embed_texts(self.encoder, self.cache(side), todo, self.prompt(side), shard=shard, progress=progress)

    def vectors(self, texts: Sequence[str], side: Side, dims: int, missing: MissingPolicy = "embed",
                progress: bool = True, what: str = "texts") -> np.ndarray:
        """float32 [len(texts), dims] unit vectors in the order of ``texts``."""
        self.check_dims(dims)
        lacking = self.missing(texts, side)
        if lacking:
            if missing == "error":
                raise MissingTeacherVectors(
                    f"{len(lacking)} of {len(set(texts))} {what} have no {side}-prompt vector in "
                    f"{self.cache(side).dir}: compute them with `python -m tools.train teacher ...` "
                    "or run with --teacher-missing embed"
                )
            self.embed_missing(lacking, side, progress=progress)
        vectors, _ = self.cache(side).get(list(texts))
        if len(texts) == 0:
            return np.zeros((0, dims), np.float32)
        return truncate_dims(vectors, dims)

    def document_encoder(self, dims: int) -> dict:
        """The collection-side description (as ``tools.build.index`` writes it) the student is aligned to."""
        identity = self.encoder.identity
        return {
            "name": identity["name"],
            "kind": identity["kind"],
            "sha256": identity["sha256"],
            "prompt": self.prompt("document"),
            "pooling": identity["pooling"],
            "dims": dims,
            "full_dims": identity["full_dims"],
            "max_tokens": identity["max_tokens"],
            "normalize": True,
        }

    def close(self) -> None:
        """Free the LLM (its weights and context) once every vector a stage needs is in memory."""
        llm = getattr(self.encoder, "_llm", None)
        if llm is not None and hasattr(llm, "close"):
            llm.close()
        self.encoder = _Closed(self.encoder.identity, self.full_dims)


def _force_mean_pooling(encoder) -> None:
    """``GGUFEncoder`` declares mean pooling but leaves the pooling type to the GGUF's metadata. A plain language
    model (Gemma 3 270M, the small test teacher) has none, so llama.cpp would return one vector per token: reopen it
    with mean pooling, as declared. EmbeddingGemma's GGUF already says mean, so it is left as it is.
    (Belongs in ``tools.build.doc_encoder.GGUFEncoder``: pass ``pooling_type=LLAMA_POOLING_TYPE_MEAN`` there.)"""
    import llama_cpp

    llm = getattr(encoder, "_llm", None)
    if llm is None or llm.pooling_type() != llama_cpp.LLAMA_POOLING_TYPE_NONE:
        return
    threads = getattr(llm, "n_threads", None)
    threads_batch = getattr(llm, "n_threads_batch", None)
    llm.close()
    encoder._llm = llama_cpp.Llama(
        model_path=str(encoder.path),
        embedding=True,
        n_ctx=encoder.max_tokens,
        n_batch=encoder.max_tokens,
        n_ubatch=encoder.max_tokens,
        n_threads=threads,
        n_threads_batch=threads_batch,
        pooling_type=llama_cpp.LLAMA_POOLING_TYPE_MEAN,
        verbose=False,
    )


class _Closed:
    """What is left of the encoder after :meth:`Teacher.close`: its identity, no weights."""

    def __init__(self, identity: dict, full_dims: int) -> None:
        self.identity = identity
        self.full_dims = full_dims

    def __getattr__(self, name: str):
        raise RuntimeError(f"the teacher encoder was closed; cannot use {name}")
