"""The document encoder of the shipped collections: EmbeddingGemma-300M Q8_0 as a GGUF, run by llama-cpp-python.

This is the one place in ``edge`` that touches llama_cpp, and it imports it only when a :class:`GGUFEncoder` is
created, so searching never loads it. The identity written into a collection's manifest is the one the shipped
collections carry (same GGUF sha256, document prompt, mean pooling, 768 dims, L2 normalisation), so a folder
indexed here gets the shipped ``alignment_id`` and the shipped query encoder searches it.

Truncation policy: the prompt is always kept; the text is cut at a character boundary so that prompt + text fit in
``max_tokens`` tokens (512 = n_ctx = n_batch = n_ubatch). Truncated texts are counted.
"""

from __future__ import annotations

import hashlib
import os
import sys
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from edge.errors import BadInput

# The shipped document encoder (prebuilt_index/*/manifest.json "document_encoder").
EMBEDDINGGEMMA_NAME = "embeddinggemma-300m-q8_0"
EMBEDDINGGEMMA_FILE = "embeddinggemma-300m-q8_0.gguf"
EMBEDDINGGEMMA_Q8_0_SHA256 = "dbd4043fa8447dbb8b3039f101626a963cf18944edbcb82ecbd17bf66aad3cdb"
EMBEDDINGGEMMA_DOC_PROMPT = "title: none | text: "
EMBEDDINGGEMMA_DIMS = 768
MAX_TOKENS = 512

ENV_GGUF = "CARE_EDGE_GGUF"
ENV_MODEL_CACHE = "CARE_EDGE_CACHE"
INSTALL_HINT = (
    "get it with `python -m tools.models fetch --only embeddinggemma` (a checkout with the tools extra), or "
    f"pass --gguf PATH to a copy of {EMBEDDINGGEMMA_FILE}; or use --encoder query (no GGUF)"
)


@dataclass(frozen=True)
class EncodedBatch:
    vectors: np.ndarray  # float32 [n, full_dims], L2-normalised
    truncated: list[bool]


def l2_normalize(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float32)


def truncate_dims(vectors: np.ndarray, dims: int) -> np.ndarray:
    """Matryoshka truncation: keep the leading ``dims`` components and re-normalise."""
    if dims > vectors.shape[1]:
        raise ValueError(f"cannot truncate {vectors.shape[1]}-dim vectors to {dims} dims")
    return l2_normalize(np.ascontiguousarray(vectors[:, :dims]))


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(8 << 20):
            digest.update(block)
    return digest.hexdigest()


def model_cache_root() -> Path:
    """The model cache that ``python -m tools.models fetch`` fills: ``$CARE_EDGE_CACHE``, else ~/.cache/care-edge."""
    env = os.environ.get(ENV_MODEL_CACHE)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "care-edge"


def gguf_candidates(explicit: str | os.PathLike[str] | None) -> list[Path]:
    """Where the document encoder GGUF is looked for, in order: ``--gguf``, ``$CARE_EDGE_GGUF``, the model cache."""
    if explicit:
        return [Path(explicit).expanduser()]
    found = []
    env = os.environ.get(ENV_GGUF)
    if env:
        found.append(Path(env).expanduser())
    found.append(model_cache_root() / "models" / EMBEDDINGGEMMA_FILE)
    return found


def locate_gguf(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The first existing candidate, else BadInput (exit 2) naming every place looked at and how to get the file."""
    candidates = gguf_candidates(explicit)
    for path in candidates:
        if path.is_file():
            return path
    looked = ", ".join(str(p) for p in candidates)
    raise BadInput(f"no document encoder GGUF found (looked at {looked}): {INSTALL_HINT}")


def gguf_identity(path: Path, sha256: str, full_dims: int, *, max_tokens: int = MAX_TOKENS) -> dict[str, Any]:
    """The document_encoder description of a GGUF. The shipped EmbeddingGemma keeps its shipped name, so a user's
    collection says exactly what the shipped ones say."""
    name = EMBEDDINGGEMMA_NAME if sha256 == EMBEDDINGGEMMA_Q8_0_SHA256 else path.stem
    return {
        "name": name,
        "kind": "gguf",
        "sha256": sha256,
        "prompt": EMBEDDINGGEMMA_DOC_PROMPT,
        "pooling": "mean",
        "dims": full_dims,
        "full_dims": full_dims,
        "max_tokens": max_tokens,
        "normalize": True,
    }


def length_batches(lengths: Sequence[int], max_tokens_per_batch: int, max_items: int = 64) -> list[list[int]]:
    """Deterministic length-bucketed batches of indices: similar lengths share a llama_decode call."""
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    batches: list[list[int]] = []
    current: list[int] = []
    budget = 0
    for i in order:
        n = max(1, lengths[i])
        if current and (budget + n > max_tokens_per_batch or len(current) >= max_items):
            batches.append(current)
            current, budget = [], 0
        current.append(i)
        budget += n
    if current:
        batches.append(current)
    return batches


# Tokens per llama_decode call: on 2 EPYC cores 128-token batches embedded cMedIR titles at ~426 tok/s against
# ~294 tok/s for 512-token ones (non-causal attention over the whole batch costs more than batching saves).
BATCH_TOKENS = 128


def _provide_cpu_count() -> None:
    """llama_cpp imports multiprocessing only for cpu_count(); the single binary leaves multiprocessing out (no
    worker processes anywhere), so it gets a module with just that."""
    try:
        import multiprocessing  # noqa: F401
    except ImportError:
        shim = types.ModuleType("multiprocessing", "care-edge: cpu_count only (see edge.index.gguf)")
        shim.cpu_count = lambda: os.cpu_count() or 1  # type: ignore[attr-defined]
        sys.modules["multiprocessing"] = shim


class GGUFEncoder:
    """An embedding GGUF in llama-cpp-python's embedding mode, with the document prompt, truncation and L2
    normalisation of the shipped collections."""

    def __init__(self, gguf_path: Path, *, sha256: str | None = None, n_threads: int | None = None,
                 max_tokens: int = MAX_TOKENS, prompt: str = EMBEDDINGGEMMA_DOC_PROMPT) -> None:
        _provide_cpu_count()
        try:
            from llama_cpp import LLAMA_POOLING_TYPE_MEAN, Llama  # lazily: only indexing needs llama_cpp
        except ImportError:
            raise BadInput(
                "the GGUF document encoder needs llama-cpp-python: pip install 'care-edge[index]' "
                "(or index with --encoder query)"
            ) from None
        self.path = Path(gguf_path)
        self.max_tokens = max_tokens
        self.prompt = prompt
        threads = n_threads or os.cpu_count() or 1
        try:
            self._llm = Llama(
                model_path=str(self.path),
                embedding=True,
                n_ctx=max_tokens,
                n_batch=max_tokens,
                n_ubatch=max_tokens,
                n_threads=threads,
                n_threads_batch=threads,
                # Explicit, so that a GGUF without a pooling entry (a plain LM such as Gemma 3 270M in the tests)
                # still gives one vector per text, the mean pooling the identity declares.
                pooling_type=LLAMA_POOLING_TYPE_MEAN,
                flash_attn=True,  # ~15% more tokens/s on CPU; vectors agree to float rounding
                verbose=False,
            )
        except (ValueError, RuntimeError) as exc:
            raise BadInput(f"{self.path} cannot be loaded as a GGUF ({exc})") from None
        self.full_dims = int(self._llm.n_embd())
        self.identity = gguf_identity(self.path, sha256 or sha256_of(self.path), self.full_dims,
                                      max_tokens=max_tokens)
        self.identity["prompt"] = prompt

    def count_tokens(self, text: str) -> int:
        return len(self._llm.tokenize(text.encode("utf-8"), add_bos=True, special=False))

    def fit(self, text: str) -> tuple[str, bool]:
        """prompt + text, cut at a character boundary to fit max_tokens (the truncation policy above)."""
        full = self.prompt + text
        if self.count_tokens(full) <= self.max_tokens:
            return full, False
        lo, hi = 0, len(text)  # the longest prefix that fits
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if self.count_tokens(self.prompt + text[:mid]) <= self.max_tokens:
                lo = mid
            else:
                hi = mid - 1
        return self.prompt + text[:lo], True

    def embed_batch(self, texts: Sequence[str]) -> EncodedBatch:
        """One llama_decode call's worth of texts (callers plan batches with :meth:`embed`)."""
        fitted = [self.fit(t) for t in texts]
        if not fitted:
            return EncodedBatch(np.zeros((0, self.full_dims), np.float32), [])
        raw = self._llm.embed([f for f, _ in fitted], normalize=False, truncate=False)
        return EncodedBatch(l2_normalize(np.asarray(raw, dtype=np.float32)), [t for _, t in fitted])

    def embed(self, texts: Sequence[str]) -> EncodedBatch:
        """Vectors of ``texts`` in their order, computed in length-bucketed batches of about BATCH_TOKENS tokens."""
        if not texts:
            return EncodedBatch(np.zeros((0, self.full_dims), np.float32), [])
        lengths = [min(self.count_tokens(self.prompt + t), self.max_tokens) for t in texts]
        vectors = np.zeros((len(texts), self.full_dims), np.float32)
        truncated = [False] * len(texts)
        for batch in length_batches(lengths, BATCH_TOKENS):
            encoded = self.embed_batch([texts[i] for i in batch])
            vectors[batch] = encoded.vectors
            for i, flag in zip(batch, encoded.truncated):
                truncated[i] = flag
        return EncodedBatch(vectors, truncated)
