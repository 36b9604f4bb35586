"""The document encoder through llama-cpp-python: real EmbeddingGemma behaviour (slow, needs the fetched model)
and the pure-Python pieces (batching, truncation of dims, the vector cache)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tools.build.doc_encoder import EncodedBatch, VectorCache, length_batches, truncate_dims
from tools.models.cache import EMBEDDINGGEMMA_Q8_0_SHA256, EMBEDDINGGEMMA_QUERY_PROMPT, ModelCache, cache_root

FIXTURE = Path(__file__).parent / "fixtures" / "embeddinggemma_reference.npz"
CACHE = ModelCache(cache_root())


def test_length_batches_are_deterministic_and_bounded():
    lengths = [5, 300, 40, 40, 600, 7, 120, 512, 1]
    a = length_batches(lengths, 512, max_items=3)
    assert a == length_batches(list(lengths), 512, max_items=3)
    assert sorted(i for b in a for i in b) == list(range(len(lengths)))
    for batch in a:
        assert len(batch) <= 3
        assert len(batch) == 1 or sum(lengths[i] for i in batch) <= 512
    flat = [lengths[i] for b in a for i in b]
    assert flat == sorted(flat)  # bucketed by length


def test_truncate_dims_renormalises():
    rng = np.random.default_rng(1)
    v = rng.normal(size=(4, 768)).astype(np.float32)
    t = truncate_dims(v / np.linalg.norm(v, axis=1, keepdims=True), 256)
    assert t.shape == (4, 256)
    np.testing.assert_allclose(np.linalg.norm(t, axis=1), 1.0, atol=1e-5)
    with pytest.raises(ValueError):
        truncate_dims(v, 1024)


def test_vector_cache_roundtrip_and_resume(tmp_path):
    identity = {"name": "x", "sha256": "ab" * 32, "max_tokens": 512}
    cache = VectorCache(tmp_path, identity, "p: ")
    vecs = np.eye(3, 8, dtype=np.float32)
    cache.add(["a", "b", "c"], EncodedBatch(vecs, [False, True, False]))
    again = VectorCache(tmp_path, identity, "p: ")  # a new process sees the checkpoint
    assert len(again) == 3 and again.missing(["a", "d"]) == ["d"]
    got, n_truncated = again.get(["c", "a"])
    np.testing.assert_array_equal(got, vecs[[2, 0]])
    assert n_truncated == 0 and again.get(["b"])[1] == 1
    other = VectorCache(tmp_path, identity, "q: ")  # another prompt is another cache
    assert len(other) == 0
    with pytest.raises(KeyError):
        other.get(["a"])


needs_gguf = pytest.mark.skipif(
    not CACHE.embeddinggemma_gguf.exists(), reason="run `python -m tools.models fetch --only embeddinggemma` first"
)


@pytest.fixture(scope="module")
def encoder():
    from tools.build.doc_encoder import GGUFEncoder

    return GGUFEncoder(CACHE.embeddinggemma_gguf, name="embeddinggemma-300m-q8_0")


@pytest.mark.slow
@needs_gguf
def test_gguf_is_the_pinned_file(encoder):
    assert encoder.identity["sha256"] == EMBEDDINGGEMMA_Q8_0_SHA256
    assert encoder.full_dims == 768


@pytest.mark.slow
@needs_gguf
def test_translation_scores_above_unrelated(encoder):
    texts = ["胸痛伴呼吸困难是什么原因", "What causes chest pain with shortness of breath", "糖尿病患者的饮食注意事项"]
    v = encoder.embed(texts, EMBEDDINGGEMMA_QUERY_PROMPT).vectors
    assert v[0] @ v[1] > v[0] @ v[2] + 0.2
    assert v[1] @ v[0] > v[1] @ v[2] + 0.2


@pytest.mark.slow
@needs_gguf
def test_q8_0_matches_f32_reference(encoder):
    ref = np.load(FIXTURE)
    vectors = encoder.embed([str(t) for t in ref["texts"]], EMBEDDINGGEMMA_QUERY_PROMPT).vectors
    cosines = np.sum(vectors * ref["vectors"], axis=1)
    assert cosines.min() >= 0.99, cosines


@pytest.mark.slow
@needs_gguf
def test_truncation_keeps_prompt_and_fits(encoder):
    long_text = "胸痛" * 2000
    fitted, truncated = encoder.fit(EMBEDDINGGEMMA_QUERY_PROMPT, long_text)
    assert truncated and fitted.startswith(EMBEDDINGGEMMA_QUERY_PROMPT)
    assert encoder.count_tokens(fitted) <= encoder.max_tokens
    batch = encoder.embed([long_text, "胸痛"], EMBEDDINGGEMMA_QUERY_PROMPT)
    assert batch.truncated == [True, False] and batch.vectors.shape == (2, 768)


def test_vector_cache_keys_ending_in_nul_bytes(tmp_path):
    # sha1 digests end in 0x00 one time in 256: the stored key must keep those bytes
    from tools.build.doc_encoder import text_key

    texts = [f"text {i}" for i in range(3000)]
    assert any(text_key(t).endswith(b"\0") for t in texts)
    cache = VectorCache(tmp_path, {"name": "x", "sha256": "cd" * 32}, "")
    vecs = np.random.default_rng(0).normal(size=(len(texts), 4)).astype(np.float32)
    cache.add(texts, EncodedBatch(vecs, [False] * len(texts)))
    got, _ = VectorCache(tmp_path, {"name": "x", "sha256": "cd" * 32}, "").get(texts)
    np.testing.assert_array_equal(got, vecs)
