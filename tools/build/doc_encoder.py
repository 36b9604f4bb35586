"""The text-keyed vector cache of the document encoders, and the symmetric ONNX encoder on the document side.

Layers, bottom up: llama-cpp-python's `Llama(embedding=True)` does tokenisation and multi-sequence batches;
`edge.index.gguf.GGUFEncoder` (the one GGUF encoder, shared with `care-edge index`) adds the prompt, the truncation
policy, length bucketing and L2 normalisation; `VectorCache` makes every vector computed once per (encoder, prompt,
text), so builds resume and re-runs re-embed nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from edge.files import atomic_write_bytes
from edge.index.gguf import EncodedBatch, l2_normalize, sha256_of


def text_key(text: str) -> bytes:
    return hashlib.sha1(text.encode("utf-8")).digest()


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


def embed_batches(encoder: Any, cache: VectorCache, texts: Sequence[str], batches: Sequence[Sequence[int]],
                  prompt: str, *, tag: str, checkpoint_every: int = 256, progress: Any = None,
                  stop_after_batches: int | None = None) -> int:
    """Embed each batch of ``texts`` (indices into it, as planned by ``edge.index.gguf.plan_batches``) whole, one
    ``encoder.embed_batch`` call each, and add the vectors to ``cache`` every ``checkpoint_every`` texts, in shard
    files named with ``tag``. ``progress`` (a tqdm bar) is advanced per batch. Returns how many texts were embedded."""
    embedded = 0
    pending_texts: list[str] = []
    pending: list[EncodedBatch] = []

    def flush() -> None:
        if pending_texts:
            vectors = np.concatenate([p.vectors for p in pending])
            truncated = [t for p in pending for t in p.truncated]
            cache.add(pending_texts, EncodedBatch(vectors, truncated), tag=tag)
            pending_texts.clear()
            pending.clear()

    for n_batches, batch in enumerate(batches):
        if stop_after_batches is not None and n_batches >= stop_after_batches:
            break
        batch_texts = [texts[i] for i in batch]
        pending.append(encoder.embed_batch(batch_texts, prompt))
        pending_texts.extend(batch_texts)
        embedded += len(batch_texts)
        if progress is not None:
            progress.update(len(batch_texts))
        if len(pending_texts) >= checkpoint_every:
            flush()
    flush()
    return embedded


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
        if alignment.get("kind") != "onnx" or alignment.get("sha256") != sha256_of(Path(encoder_dir) / "model.onnx"):
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

    def embed_batch(self, texts: Sequence[str], prompt: str) -> EncodedBatch:
        """One batch of the texts the vector cache plans (the same call shape as the GGUF encoder's)."""
        result = self._encoder.encode([prompt + t for t in texts])
        return EncodedBatch(l2_normalize(result.vectors), list(result.truncated))
