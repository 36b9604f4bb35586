"""Export a transformers encoder (+ optional projection head) to the runtime's INT8 ONNX query-encoder folder.

    python -m tools.export --model DIR --out prebuilt_index/query_encoder --prompt "query: " \
        --aligned-to COLLECTION_DIR [--max-tokens 64] [--name NAME]
    python -m tools.export --student RUN_DIR --out DIR [--dims N] [--aligned-to COLLECTION_DIR] [--name NAME]

One graph, dynamic batch and sequence: `input_ids`, `attention_mask` -> mean pool -> projection (if the model folder
holds `projection.safetensors`) -> L2 normalise -> `embedding`. It is exported in fp32, checked against torch, fused
with onnxruntime's BERT fusions (Attention, SkipLayerNormalization, BiasGelu), quantised to INT8 (dynamic,
per-channel; the fused Attention becomes QAttention; the fewest feed-forward output MatMuls needed for a min cosine
of 0.99 to torch stay fp32, see ``quantize_to_parity``) and checked again; the parity figures and the fused operator
counts go into the manifest.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from edge import formats, writers
from edge.files import sha256_file, staged_dir
from tools.provenance import created_info

EXPORT_MAX_TOKENS = 64  # the runtime's query length, in tokens
PARITY_TARGET = 0.99  # min cosine of the INT8 graph to torch fp32 on PARITY_TEXTS (the training issue's bar)
MAX_FP32_MATMULS = 4  # each kept in fp32 costs ~1.7 MB and ~0.15 ms per query (e5-small, 1 thread)
PARITY_TEXTS = [
    "胸痛伴呼吸困难是什么原因",
    "糖尿病患者饮食注意什么",
    "小孩发烧39度怎么办",
    "高血压可以吃哪些药",
    "chest pain when breathing",
    "type 2 diabetes with kidney complications",
    "dolor torácico al respirar",
    "douleur thoracique en respirant",
    "dor no peito ao respirar",
    "Brustschmerzen beim Atmen",
    "What are the symptoms of glaucoma?",
    "肺炎支原体感染的治疗方法",
]


def tokenize(tokenizer_path: Path, texts: Sequence[str], prompt: str, max_tokens: int):
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tokenizer_path))
    tok.enable_truncation(max_tokens)
    tok.enable_padding(pad_id=1, pad_token="<pad>")
    enc = tok.encode_batch([prompt + t for t in texts])
    ids = np.array([e.ids for e in enc], dtype=np.int64)
    mask = np.array([e.attention_mask for e in enc], dtype=np.int64)
    return ids, mask


def use_eager_attention(model) -> None:
    """Trace attention as explicit MatMul / Softmax ops: onnxruntime's attention fusion matches that pattern, not
    what torch's scaled_dot_product_attention exports to (the numbers are the same in torch, cosine 1.0)."""
    backbone = model.backbone
    if hasattr(backbone, "set_attn_implementation"):
        backbone.set_attn_implementation("eager")
    else:  # transformers releases without the setter read the private config field
        backbone.config._attn_implementation = "eager"


def export_onnx(model, path: Path, sample_ids: np.ndarray, sample_mask: np.ndarray) -> None:
    import torch

    use_eager_attention(model)
    with torch.no_grad():
        torch.onnx.export(
            model,
            (torch.from_numpy(sample_ids), torch.from_numpy(sample_mask)),
            str(path),
            input_names=["input_ids", "attention_mask"],
            output_names=["embedding"],
            dynamic_axes={"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "seq"},
                          "embedding": {0: "batch"}},
            opset_version=17,
            dynamo=False,
        )


def fuse_transformer(src: Path, dst: Path, *, num_heads: int, hidden_size: int) -> dict[str, int]:
    """Fuse each layer's attention (and its LayerNorm and GELU subgraphs) into onnxruntime ops on the fp32 graph, so
    that quantisation sees an Attention op (QKV as one weight -> one QAttention INT8 GEMM) and the INT8 file has a
    few hundred nodes instead of 1,572 (e5-small, measured with `care-edge bench`: encode p50 12-15% lower on 1
    thread, encoder load about halved, recall@10 unchanged). opt_level=0 applies only these pattern fusions and
    bakes no onnxruntime-level or CPU-specific rewrites into the file; the runtime session still applies its own at
    load. Returns the fused operator counts (an empty Attention count means the pattern was not recognised: the
    graph stays correct, just slower)."""
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    options = FusionOptions("bert")
    # Residual + LayerNorm and bias + GELU stay separate ops: onnxruntime's CPU SkipLayerNormalization and BiasGelu
    # kernels are slower than what they fuse on query-sized inputs (SkipLayerNormalization 38 us against 7 us for
    # Add + LayerNormalization at [1, 20, 384]; BiasGelu 26 us against 21 us for Add + Gelu at [1, 20, 1536]), and
    # the runtime keeps SkipLayerNormFusion off at load (edge.encoder.DISABLED_OPTIMIZERS).
    options.enable_skip_layer_norm = False
    options.enable_bias_gelu = False
    optimized = optimize_model(str(src), model_type="bert", num_heads=num_heads, hidden_size=hidden_size,
                               opt_level=0, optimization_options=options)
    optimized.save_model_to_file(str(dst))
    return {op: int(count) for op, count in optimized.get_fused_operator_statistics().items() if count}


def quantize_int8(src: Path, dst: Path, keep_fp32: Sequence[str] = ()) -> None:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # Per-tensor weights cost 0.01 of cosine (0.986 vs 0.996 against torch); per-channel costs no measurable speed.
    # The fused contrib ops have no ONNX shape inference, so the MatMuls fed by them need a default element type.
    quantize_dynamic(str(src), str(dst), per_channel=True, weight_type=QuantType.QInt8,
                     nodes_to_exclude=list(keep_fp32), extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})


def ffn_output_matmuls(path: Path) -> list[str]:
    """The second feed-forward MatMul of every layer (``.../layer.N/output/dense/MatMul``), in layer order."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    return [n.name for n in graph.node
            if n.op_type == "MatMul" and n.name.endswith("/output/dense/MatMul") and "/attention/" not in n.name]


def quantize_to_parity(src: Path, dst: Path, ids: np.ndarray, mask: np.ndarray, reference: np.ndarray, *,
                       target: float = PARITY_TARGET, max_fp32: int = MAX_FP32_MATMULS) -> list[str]:
    """Quantise ``src`` to INT8, keeping in fp32 the fewest feed-forward output MatMuls that lift the minimum cosine
    to torch on the parity texts to ``target``. Returns the MatMuls kept in fp32.

    Why these: after fine-tuning, a layer or two feeds its second FFN MatMul activations with outlier channels, and
    dynamic INT8 (one activation scale per tensor) flattens everything else. Measured on the stage-II CARE encoder:
    all INT8 min cosine 0.981; all 12 FFN2 kept fp32 0.994 but encode p50 +42% and +20 MB; one layer (4) alone 0.989,
    layers 4 + 5 0.992 for about +3% encode time. So: try each FFN2 MatMul alone, then add them greedily, best first.
    """
    scores: dict[tuple[str, ...], float] = {}
    written: list[tuple[str, ...]] = []  # which choice dst holds now

    def min_cosine(keep: Sequence[str]) -> float:
        key = tuple(keep)
        if key not in scores:
            quantize_int8(src, dst, key)
            written[:] = [key]
            scores[key] = float(np.min(np.sum(onnx_vectors(dst, ids, mask) * reference, axis=1)))
        return scores[key]

    if min_cosine(()) >= target:
        return []
    alone = sorted(ffn_output_matmuls(src), key=lambda name: -min_cosine([name]))
    best: tuple[float, list[str]] = (-1.0, [])
    for count in range(1, min(max_fp32, len(alone)) + 1):
        cosine = min_cosine(alone[:count])
        if cosine > best[0]:
            best = (cosine, alone[:count])
        if cosine >= target:
            break
    if written != [tuple(best[1])]:
        quantize_int8(src, dst, best[1])
    return best[1]


def onnx_vectors(path: Path, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(["embedding"], {"input_ids": ids, "attention_mask": mask})[0]


def export_query_encoder(
    *,
    model_dir: Path,
    out_dir: Path,
    prompt: str,
    max_tokens: int,
    alignment: dict | Callable[[Path], dict],
    name: str,
    base_model: str,
    licenses: Sequence[dict],
    command: str,
    parity_texts: Sequence[str] = PARITY_TEXTS,
    parity_target: float = PARITY_TARGET,
    dims: int | None = None,
) -> dict:
    """``dims``: export only the head's first ``dims`` outputs (Matryoshka truncation; the full head when None)."""
    import torch

    from tools.train.student import load_pooled_encoder, truncate_projection  # torch: imported only to export

    model = load_pooled_encoder(model_dir)
    if dims is not None:
        truncate_projection(model, dims)
    ids, mask = tokenize(model_dir / "tokenizer.json", parity_texts, prompt, max_tokens)
    with torch.no_grad():
        reference = model(torch.from_numpy(ids), torch.from_numpy(mask)).numpy()
    dims = int(reference.shape[1])
    out_dir.parent.mkdir(parents=True, exist_ok=True)  # a fresh cache has no runs/ folder yet
    with staged_dir(out_dir) as staging:
        fp32 = staging / "model.fp32.onnx"
        export_onnx(model, fp32, ids, mask)
        cos_fp32 = float(np.min(np.sum(onnx_vectors(fp32, ids, mask) * reference, axis=1)))
        fused = staging / "model.fused.onnx"
        backbone_config = model.backbone.config
        fusions = fuse_transformer(fp32, fused, num_heads=int(backbone_config.num_attention_heads),
                                   hidden_size=int(backbone_config.hidden_size))
        fp32.unlink()
        kept_fp32 = quantize_to_parity(fused, staging / "model.onnx", ids, mask, reference,
                                       target=parity_target)
        fused.unlink()
        cos_int8_all = np.sum(onnx_vectors(staging / "model.onnx", ids, mask) * reference, axis=1)
        shutil.copy(model_dir / "tokenizer.json", staging / "tokenizer.json")
        writers.write_encoder_config(
            staging,
            formats.EncoderConfig(prompt=prompt, max_tokens=max_tokens, pooling="in-graph", dims=dims, normalize=True,
                              output="embedding"),
        )
        created = created_info("tools.export", command)
        created["parity"] = {"texts": len(parity_texts), "min_cosine_onnx_fp32_vs_torch": round(cos_fp32, 5),
                             "min_cosine_onnx_int8_vs_torch": round(float(cos_int8_all.min()), 5),
                             "mean_cosine_onnx_int8_vs_torch": round(float(cos_int8_all.mean()), 5)}
        created["fused_operators"] = fusions
        created["int8"] = {"mode": "dynamic, per-channel weights", "parity_target": parity_target,
                           "kept_fp32": kept_fp32}
        pruning = model_dir / "vocab_pruning.json"
        if pruning.exists():
            created["vocab_pruning"] = json.loads(pruning.read_text())
        if callable(alignment):  # symmetric: the exported graph is its own document encoder
            alignment = alignment(staging / "model.onnx")
        manifest = writers.write_query_encoder_manifest(
            staging, name=name, base_model=base_model, alignment=alignment, licenses=list(licenses), created=created
        )
    return manifest


def symmetric_alignment(passage_prompt: str, max_tokens: int) -> Callable[[Path], dict]:
    """For a symmetric encoder (e5 on both sides): documents are embedded by this very INT8 graph."""

    def describe(model_onnx: Path) -> dict:
        return {"name": "multilingual-e5-small-int8", "kind": "onnx", "sha256": sha256_file(model_onnx),
                "prompt": passage_prompt, "pooling": "mean", "dims": 384, "full_dims": 384,
                "max_tokens": max_tokens, "normalize": True}

    return describe


def alignment_of_collection(collection_dir: Path) -> dict:
    """The document encoder a collection was built with: what a query encoder for it must be aligned to."""
    manifest = formats.read_manifest(collection_dir, formats.COLLECTION_FORMAT)
    return dict(manifest["document_encoder"])
