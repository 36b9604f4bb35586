"""The document encoder: an embedding GGUF run with llama-cpp-python, plus the text-keyed vector cache.

Layers, bottom up: llama-cpp-python's `Llama(embedding=True)` does tokenisation and multi-sequence batches;
`GGUFEncoder` adds the prompt, the truncation policy, length bucketing and L2 normalisation; `VectorCache` makes
every vector computed once per (encoder, prompt, text), so builds resume and re-runs re-embed nothing.

Truncation policy: the prompt is always kept; the text is cut at a character boundary so that prompt + text fit in
`max_tokens` tokens (512 = n_ctx = n_batch = n_ubatch). Truncated texts are counted and reported.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from edge.files import atomic_write_bytes


@dataclass(frozen=True)
class EncodedBatch:
    vectors: np.ndarray  # float32 [n, full_dims], L2-normalised
    truncated: list[bool]


def l2_normalize(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float32)


def truncate_dims(vectors: np.ndarray, dims: int) -> np.ndarray:
    """Matryoshka truncation: keep the leading `dims` components and re-normalise."""
    if dims > vectors.shape[1]:
        raise ValueError(f"cannot truncate {vectors.shape[1]}-dim vectors to {dims} dims")
    return l2_normalize(np.ascontiguousarray(vectors[:, :dims]))


class GGUFEncoder:
    """An embedding GGUF (EmbeddingGemma Q8_0 in production) in llama-cpp-python's embedding mode."""

    def __init__(
        self,
        gguf_path: Path,
        *,
        name: str | None = None,
        max_tokens: int = 512,
        n_threads: int | None = None,
        sha256: str | None = None,
    ) -> None:
        from llama_cpp import LLAMA_POOLING_TYPE_MEAN, Llama  # tools-only dependency

        self.path = Path(gguf_path)
        self.max_tokens = max_tokens
        self._llm = Llama(
            model_path=str(self.path),
            embedding=True,
            n_ctx=max_tokens,
            n_batch=max_tokens,
            n_ubatch=max_tokens,
            n_threads=n_threads or os.cpu_count(),
            n_threads_batch=n_threads or os.cpu_count(),
            # Explicit, so that a GGUF without a pooling entry (a plain LM such as Gemma 3 270M in the tests) still
            # gives one vector per text, the mean pooling the identity below declares.
            pooling_type=LLAMA_POOLING_TYPE_MEAN,
            flash_attn=True,  # measured ~15% more tokens/s on CPU; vectors agree to float rounding
            verbose=False,
        )
        self.full_dims = int(self._llm.n_embd())
        self.identity = {
            "name": name or self.path.stem,
            "kind": "gguf",
            "sha256": sha256 or sha256_of(self.path),
            "pooling": "mean",
            "full_dims": self.full_dims,
            "max_tokens": max_tokens,
            "normalize": True,
        }

    def count_tokens(self, text: str) -> int:
        return len(self._llm.tokenize(text.encode("utf-8"), add_bos=True, special=False))

    def fit(self, prompt: str, text: str) -> tuple[str, bool]:
        """prompt + text, cut at a character boundary to fit max_tokens (the documented truncation policy)."""
        full = prompt + text
        if self.count_tokens(full) <= self.max_tokens:
            return full, False
        lo, hi = 0, len(text)  # largest prefix length that fits
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if self.count_tokens(prompt + text[:mid]) <= self.max_tokens:
                lo = mid
            else:
                hi = mid - 1
        return prompt + text[:lo], True

    def embed(self, texts: Sequence[str], prompt: str) -> EncodedBatch:
        fitted = [self.fit(prompt, t) for t in texts]
        if not fitted:
            return EncodedBatch(np.zeros((0, self.full_dims), np.float32), [])
        raw = self._llm.embed([f for f, _ in fitted], normalize=False, truncate=False)
        return EncodedBatch(l2_normalize(np.asarray(raw, dtype=np.float32)), [t for _, t in fitted])


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(8 << 20):
            digest.update(block)
    return digest.hexdigest()


def text_key(text: str) -> bytes:
    return hashlib.sha1(text.encode("utf-8")).digest()


def length_batches(lengths: Sequence[int], max_tokens_per_batch: int, max_items: int = 64) -> list[list[int]]:
    """Deterministic length-bucketed batches of indices. The same input always gives the same batches, so a resumed
    or sharded build computes every vector in exactly the batch an uninterrupted build would."""
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


class VectorCache:
    """Vectors keyed by sha1(text), for one (encoder, prompt). Append-only shard files written atomically."""

    def __init__(self, root: Path, identity: dict, prompt: str) -> None:
        tag = hashlib.sha256(json.dumps({"sha256": identity["sha256"], "prompt": prompt,
                                         "max_tokens": identity.get("max_tokens")}, sort_keys=True).encode())
        short = tag.hexdigest()[:12]
        vectors = Path(root) / "vectors"
        # The folder is found by the identity hash; the name part is for people and may change.
        existing = sorted(vectors.glob(f"*-{short}")) if vectors.exists() else []
        self.dir = existing[0] if existing else vectors / f"{identity['name']}-{short}"
        self.dir.mkdir(parents=True, exist_ok=True)
        info = self.dir / "cache.json"
        if not info.exists():
            atomic_write_bytes(info, json.dumps({"encoder": identity, "prompt": prompt}, indent=2).encode())
        self._index: dict[bytes, tuple[Path, int]] = {}
        self._truncated: set[bytes] = set()
        self._loaded: set[str] = set()
        self.refresh()

    def refresh(self) -> None:
        for shard in sorted(self.dir.glob("shard-*.npz")):
            if shard.name in self._loaded:
                continue
            with np.load(shard) as data:
                keys = data["keys"]
                truncated = data["truncated"]
            for row, (key, trunc) in enumerate(zip(_key_bytes(keys), truncated)):
                self._index.setdefault(key, (shard, row))
                if trunc:
                    self._truncated.add(key)
            self._loaded.add(shard.name)

    def __contains__(self, text: str) -> bool:
        return text_key(text) in self._index

    def __len__(self) -> int:
        return len(self._index)

    def missing(self, texts: Iterable[str]) -> list[str]:
        return [t for t in texts if text_key(t) not in self._index]

    def add(self, texts: Sequence[str], batch: EncodedBatch, tag: str = "") -> Path:
        keys = np.frombuffer(b"".join(text_key(t) for t in texts), dtype=np.uint8).reshape(len(texts), 20)
        name = f"shard-{tag}{hashlib.sha1(keys.tobytes()).hexdigest()[:16]}.npz"
        path = self.dir / name
        fd, tmp = tempfile.mkstemp(dir=self.dir, suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            np.savez(f, keys=keys, vectors=batch.vectors.astype(np.float32),
                     truncated=np.array(batch.truncated, dtype=bool))
        os.replace(tmp, path)
        self._loaded.discard(name)
        self.refresh()
        return path

    def get(self, texts: Sequence[str]) -> tuple[np.ndarray, int]:
        """Vectors in the order of `texts`, and how many of them were truncated. Every text must be cached."""
        locations = []
        for t in texts:
            loc = self._index.get(text_key(t))
            if loc is None:
                raise KeyError(f"text not in the vector cache {self.dir}: {t[:60]!r}")
            locations.append(loc)
        by_shard: dict[Path, list[tuple[int, int]]] = {}
        for out_row, (shard, row) in enumerate(locations):
            by_shard.setdefault(shard, []).append((out_row, row))
        out: np.ndarray | None = None
        for shard, pairs in by_shard.items():
            with np.load(shard) as data:
                vectors = data["vectors"]
            if out is None:
                out = np.zeros((len(texts), vectors.shape[1]), dtype=np.float32)
            rows_out, rows_in = zip(*pairs)
            out[list(rows_out)] = vectors[list(rows_in)]
        if out is None:
            out = np.zeros((0, 0), dtype=np.float32)
        n_truncated = sum(1 for t in texts if text_key(t) in self._truncated)
        return out, n_truncated


def _key_bytes(keys: np.ndarray) -> list[bytes]:
    """Shard keys as 20-byte digests. Shards store them as uint8 [n, 20]; early shards used numpy's "S20", which
    drops trailing NUL bytes on read, so those are padded back."""
    if keys.dtype == np.uint8:
        return [row.tobytes() for row in keys]
    return [bytes(key).ljust(20, b"\0") for key in keys]


class OnnxEncoder:
    """A symmetric ONNX encoder (e5-small INT8) on the document side: the query-encoder graph under its passage
    prompt and a 512-token limit. Its identity is the alignment its query-encoder manifest declares, so the
    collection and the query encoder carry the same alignment id."""

    def __init__(self, encoder_dir: Path, *, max_tokens: int = 512, threads: int | None = None) -> None:
        from edge.encoder import QueryEncoder

        probe = QueryEncoder(encoder_dir, threads=1)
        alignment = probe.alignment
        if alignment.get("kind") != "onnx" or alignment.get("sha256") != _sha256_file_cached(
            Path(encoder_dir) / "model.onnx"
        ):
            raise SystemExit(f"error: {encoder_dir} is not a symmetric encoder (its alignment is another model)")
        self.prompt = alignment["prompt"]
        self.max_tokens = max_tokens
        self._encoder = QueryEncoder(encoder_dir, threads=threads or os.cpu_count() or 1, prompt="",
                                     max_tokens=max_tokens)
        self.full_dims = probe.dims
        self.identity = {k: v for k, v in alignment.items() if k != "alignment_id"}
        self.identity.update(full_dims=probe.dims, max_tokens=max_tokens)

    def count_tokens(self, text: str) -> int:
        return min(len(self._encoder._tokenizer.encode(text).ids), self.max_tokens)

    def embed(self, texts: Sequence[str], prompt: str) -> EncodedBatch:
        result = self._encoder.encode([prompt + t for t in texts])
        return EncodedBatch(l2_normalize(result.vectors), list(result.truncated))


def _sha256_file_cached(path: Path) -> str:
    return sha256_of(path)
