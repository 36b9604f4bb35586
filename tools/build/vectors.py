"""Readers of the vector cache for whole corpora, shared by training (the co-teacher) and evaluation.

- :class:`GgufVectors`: a GGUF embedder's vectors through the cache, loading the model only for missing texts;
- :class:`OnnxDocVectors`: a symmetric ONNX encoder on the document side (its passage prompt), through the cache;
- :class:`OnnxQuerySide`: an ONNX query encoder folder, one text per call, as a device encodes a query;
- :func:`embed_needed`: embeds the cache's missing texts in the batches ``tools.build.index`` plans over the whole
  corpus, so a vector is the same whether the evaluator, the trainer or the index builder computed it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from edge import formats
from edge.encoder import QueryEncoder
from edge.errors import ArtifactError, BadInput
from tools.build.doc_encoder import EncodedBatch, VectorCache
from tools.models.cache import ModelCache

GGUF_MAX_TOKENS = 512  # tools.build.doc_encoder.GGUFEncoder's limit (its vector-cache identity carries it)
CHECKPOINT_EVERY = 256


def _plan_batches(encoder: Any, texts: Sequence[str], prompt: str) -> list[list[int]]:
    from tools.build.index import plan_batches as plan  # tools.build.index imports tqdm and the models registry

    return plan(encoder, texts, prompt)


def embed_needed(
    encoder: Any,
    cache: VectorCache,
    plan_texts: Sequence[str],
    needed: Sequence[str],
    prompt: str,
    *,
    progress: bool = True,
    desc: str = "embed",
) -> int:
    """Embed the cache's missing ``needed`` texts in the batches ``tools.build.index`` plans over ``plan_texts``
    (which must contain them): a batch is embedded whole when it holds a missing needed text, exactly as
    ``tools.build.index embed`` would embed it, and no other batch is. Returns how many texts were embedded."""
    missing = set(cache.missing(dict.fromkeys(needed)))
    if not missing:
        return 0
    unique = sorted(set(plan_texts) | missing)
    batches = [b for b in _plan_batches(encoder, unique, prompt) if any(unique[i] in missing for i in b)]
    from tqdm import tqdm

    embedded = 0
    pending_texts: list[str] = []
    pending: list[EncodedBatch] = []

    def flush() -> None:
        if pending_texts:
            vectors = np.concatenate([p.vectors for p in pending])
            truncated = [t for p in pending for t in p.truncated]
            # The tag of an unsharded `tools.build.index embed`: the same batch gives the same shard file.
            cache.add(pending_texts, EncodedBatch(vectors, truncated), tag="s0of1-")
            pending_texts.clear()
            pending.clear()

    with tqdm(total=sum(len(b) for b in batches), unit="text", desc=desc, disable=not progress) as bar:
        for batch in batches:
            texts = [unique[i] for i in batch]
            pending.append(encoder.embed(texts, prompt))
            pending_texts.extend(texts)
            embedded += len(texts)
            bar.update(len(texts))
            if len(pending_texts) >= CHECKPOINT_EVERY:
                flush()
        flush()
    return embedded


def gguf_identity(spec: str, models: ModelCache) -> dict[str, Any] | None:
    """The vector-cache identity ``tools.build.index.open_encoder(spec)`` will have, read from the models manifest
    without loading the model; None for a ``gguf:PATH`` spec (only the loaded model knows it)."""
    if spec not in ("embeddinggemma", "gemma3-270m"):
        return None
    entry = models.read_manifest()["models"].get(spec)
    if not entry or not entry.get("sha256"):
        raise ArtifactError(
            f"{spec} is not in the models cache {models.root}: run `python -m tools.models fetch --only {spec}`"
        )
    return {
        "name": entry.get("name", models.path_of(spec).stem),
        "kind": "gguf",
        "sha256": entry["sha256"],
        "pooling": "mean",
        "full_dims": entry.get("dims"),
        "max_tokens": GGUF_MAX_TOKENS,
        "normalize": True,
    }


class GgufVectors:
    """Vectors of one GGUF embedder through the vector cache. The model is loaded only when a text is missing from
    the cache (bulk, all threads) or when a single query is timed (one thread)."""

    def __init__(self, spec: str, models: ModelCache, *, threads: int | None = None, progress: bool = True) -> None:
        self.spec = spec
        self.models = models
        self.threads = threads
        self.progress = progress
        self._bulk: Any = None
        self._single: Any = None
        self._caches: dict[str, VectorCache] = {}
        known = gguf_identity(spec, models)
        self.identity: dict[str, Any] = known if known is not None else self._open(threads).identity

    def _open(self, threads: int | None) -> Any:
        from tools.build.index import open_encoder

        try:
            encoder = open_encoder(self.spec, self.models, threads)
        except SystemExit as exc:  # open_encoder's one-line "error: ..." for a model that is not fetched
            raise ArtifactError(str(exc.code).removeprefix("error: ")) from None
        if hasattr(self, "identity"):
            for key in ("name", "sha256", "max_tokens"):
                if encoder.identity.get(key) != self.identity.get(key):
                    raise ArtifactError(
                        f"{self.spec}: the loaded GGUF's {key} {encoder.identity.get(key)!r} differs from the models "
                        f"manifest's {self.identity.get(key)!r}: run `python -m tools.models verify`"
                    )
        return encoder

    def _cache(self, prompt: str) -> VectorCache:
        if prompt not in self._caches:
            self._caches[prompt] = VectorCache(self.models.root, self.identity, prompt)
        return self._caches[prompt]

    def vectors(self, texts: Sequence[str], prompt: str, plan_texts: Sequence[str] = ()) -> np.ndarray:
        """Full-dimension vectors of ``texts`` (embedding whatever the cache lacks)."""
        cache = self._cache(prompt)
        if cache.missing(texts):
            if self._bulk is None:
                self._bulk = self._open(self.threads)
            embed_needed(self._bulk, cache, plan_texts or texts, texts, prompt, progress=self.progress,
                         desc=f"{self.identity['name']} {prompt!r}")
        return cache.get(list(texts))[0]

    def embed_one(self, text: str, prompt: str) -> None:
        if self._single is None:
            self._single = self._open(1)
        self._single.embed([text], prompt)


class OnnxDocVectors:
    """A symmetric ONNX encoder (multilingual-e5-small INT8) on the document side: its own graph under the passage
    prompt its manifest declares, 512 tokens, through the vector cache (``tools.build.doc_encoder.OnnxEncoder``)."""

    def __init__(self, encoder_dir: Path, models: ModelCache, *, threads: int | None = None,
                 progress: bool = True) -> None:
        from tools.build.doc_encoder import OnnxEncoder

        try:
            self._encoder = OnnxEncoder(encoder_dir, threads=threads)
        except SystemExit as exc:
            raise ArtifactError(str(exc.code).removeprefix("error: ")) from None
        self.identity = dict(self._encoder.identity)
        self.prompt = self._encoder.prompt
        self.progress = progress
        self._cache = VectorCache(models.root, self.identity, self.prompt)

    def vectors(self, texts: Sequence[str], plan_texts: Sequence[str] = ()) -> np.ndarray:
        if self._cache.missing(texts):
            embed_needed(self._encoder, self._cache, plan_texts or texts, texts, self.prompt,
                         progress=self.progress, desc=f"{self.identity['name']} {self.prompt!r}")
        return self._cache.get(list(texts))[0]


def model_sha256(manifest: dict[str, Any]) -> str:
    """The sha256 of model.onnx that the encoder's manifest pins."""
    return str(manifest["files"][formats.MODEL_FILE]["sha256"])


class OnnxQuerySide:
    """An ONNX query encoder folder, one text per call (bulk: ``threads`` threads; timing: one thread)."""

    def __init__(self, directory: Path, *, threads: int = 1) -> None:
        self.directory = Path(directory)
        self.bulk = QueryEncoder(self.directory, threads=threads)
        self.single = QueryEncoder(self.directory, threads=1) if threads != 1 else self.bulk

    def info(self) -> dict[str, Any]:
        return {
            "kind": "onnx",
            "path": str(self.directory),
            "name": self.bulk.name,
            "sha256": model_sha256(self.bulk.manifest),
            "prompt": self.bulk.prompt,
            "max_tokens": self.bulk.max_tokens,
            "dims": self.bulk.dims,
            "alignment_id": self.bulk.alignment_id,
        }

    def vectors(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.bulk.dims), dtype=np.float32)
        return np.concatenate([self.bulk.encode([t]).vectors for t in texts])

    def encode_one(self, text: str) -> None:
        self.single.encode([text])


def symmetric_encoder(encoder_dir: Path, models: ModelCache, *, threads: int, progress: bool = True,
                      flag: str = "--e5-encoder") -> tuple[OnnxQuerySide, OnnxDocVectors]:
    """A symmetric ONNX encoder's two sides (its query prompt for queries, its passage prompt for documents); refuses
    a query encoder aligned to another model. ``flag`` names the option the folder came from, for the message."""
    query_side = OnnxQuerySide(encoder_dir, threads=threads)
    alignment = query_side.bulk.alignment
    own_sha = model_sha256(query_side.bulk.manifest)
    if alignment.get("kind") != "onnx" or alignment.get("sha256") != own_sha:
        raise BadInput(
            f"{flag} {encoder_dir} is not a symmetric encoder (it is aligned to {alignment.get('name')!r}): "
            "pass the multilingual-e5-small INT8 folder"
        )
    return query_side, OnnxDocVectors(Path(encoder_dir), models, threads=threads, progress=progress)
