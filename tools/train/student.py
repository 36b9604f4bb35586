"""The student (query encoder) as the trainer handles it: load, cut to N layers, give it a projection head, save.

The module itself is :class:`PooledEncoder`: XLM-R backbone -> mask-weighted mean pool -> optional
``Linear`` head (``projection.safetensors``: ``weight`` [dims, hidden], ``bias`` [dims]) -> L2 normalise. A student
folder is a plain transformers folder (``model.safetensors``, ``config.json``) plus ``tokenizer.json`` and the
head, which is exactly what ``tools.export`` traces and turns into the runtime's INT8 folder.

The head starts as a ridge regression from the frozen backbone's mean-pooled vectors to the teacher's vectors on a
sample of texts, so training starts from an already-aligned space instead of a random rotation of it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from edge.errors import BadInput

# Files of a student folder beside the weights that the export or later stages read.
SIDE_FILES = ("tokenizer.json", "vocab_pruning.json", "prompts.json")
PROJECTION_FILE = "projection.safetensors"
MODEL_SUBDIR = "model"


def resolve_student_dir(path: Path) -> Path:
    """A student folder, given either the folder itself or a training run folder holding it as ``model/``."""
    path = Path(path)
    for candidate in (path, path / MODEL_SUBDIR):
        if (candidate / "config.json").is_file() and (candidate / "model.safetensors").is_file():
            if not (candidate / "tokenizer.json").is_file():
                raise BadInput(f"student folder {candidate} has no tokenizer.json")
            return candidate
    raise BadInput(f"{path} is not a student folder (no config.json + model.safetensors, nor a model/ with them)")


class StudentTokenizer:
    """``"query: " + text`` -> padded ``input_ids`` / ``attention_mask`` tensors, cut to ``max_tokens``: the same
    tokenisation ``tools.export.query_encoder`` checks parity with and the runtime applies."""

    def __init__(self, tokenizer_json: Path, max_tokens: int, prompt: str) -> None:
        from tokenizers import Tokenizer

        self.prompt = prompt
        self.max_tokens = max_tokens
        self._tok = Tokenizer.from_file(str(tokenizer_json))
        self._tok.enable_truncation(max_tokens)
        pad_id = self._tok.token_to_id("<pad>")
        self._tok.enable_padding(pad_id=1 if pad_id is None else pad_id, pad_token="<pad>")

    def __call__(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        encoded = self._tok.encode_batch([self.prompt + t for t in texts])
        ids = torch.tensor([e.ids for e in encoded], dtype=torch.long)
        mask = torch.tensor([e.attention_mask for e in encoded], dtype=torch.long)
        return ids, mask


class PooledEncoder(torch.nn.Module):
    """The query encoder as torch sees it: backbone -> mask-weighted mean pool -> optional head -> L2 normalise. The
    ONNX export traces this very module, so training and the runtime compute the same function."""

    def __init__(self, backbone: torch.nn.Module, projection: torch.nn.Linear | None) -> None:
        super().__init__()
        self.backbone = backbone
        self.projection = projection

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        if self.projection is not None:
            pooled = self.projection(pooled)
        return torch.nn.functional.normalize(pooled, dim=-1)


def load_pooled_encoder(model_dir: Path) -> PooledEncoder:
    """A student folder's module as saved: backbone + the head of ``projection.safetensors`` if there is one."""
    from transformers import AutoModel

    backbone = AutoModel.from_pretrained(str(model_dir), add_pooling_layer=False)
    projection = None
    head = Path(model_dir) / PROJECTION_FILE
    if head.exists():
        from safetensors.torch import load_file

        weights = load_file(str(head))
        projection = torch.nn.Linear(weights["weight"].shape[1], weights["weight"].shape[0])
        projection.load_state_dict(weights)
    return PooledEncoder(backbone, projection).eval()


def load_student(model_dir: Path, layers: int | None = None) -> PooledEncoder:
    """The student module of ``model_dir`` (a student folder or a run folder holding one), keeping only its first
    ``layers`` transformer layers when given."""
    model = load_pooled_encoder(resolve_student_dir(model_dir))
    if layers is not None:
        keep_layers(model, layers)
    return model


def keep_layers(model: torch.nn.Module, layers: int) -> None:
    """Drop every transformer layer after the first ``layers`` (the config follows, so a saved folder reloads)."""
    encoder_layers = model.backbone.encoder.layer
    if not 1 <= layers <= len(encoder_layers):
        raise BadInput(f"--layers {layers}: the student has {len(encoder_layers)} layers")
    model.backbone.encoder.layer = encoder_layers[:layers]
    model.backbone.config.num_hidden_layers = layers


def layer_count(model: torch.nn.Module) -> int:
    return len(model.backbone.encoder.layer)


def hidden_size(model: torch.nn.Module) -> int:
    return int(model.backbone.config.hidden_size)


def output_dims(model: torch.nn.Module) -> int:
    return hidden_size(model) if model.projection is None else int(model.projection.out_features)


def freeze_word_embeddings(model: torch.nn.Module) -> None:
    """The word-embedding matrix stays as pre-trained: most rows are seen rarely in training, and moving only the
    frequent ones would pull them away from the rare ones they share a space with."""
    model.backbone.embeddings.word_embeddings.weight.requires_grad_(False)


def set_projection(model: torch.nn.Module, weight: np.ndarray, bias: np.ndarray) -> None:
    """Install a ``Linear(hidden -> dims)`` head with the given ``weight`` [dims, hidden] and ``bias`` [dims]."""
    head = torch.nn.Linear(weight.shape[1], weight.shape[0])
    with torch.no_grad():
        head.weight.copy_(torch.from_numpy(np.asarray(weight, dtype=np.float32)))
        head.bias.copy_(torch.from_numpy(np.asarray(bias, dtype=np.float32)))
    model.projection = head


def truncate_projection(model: torch.nn.Module, dims: int) -> None:
    """Keep the head's first ``dims`` outputs: the student is trained against the teacher's full vector, whose
    Matryoshka prefix is itself a document vector at ``dims``, so the prefix of the student's output (re-normalised
    by the graph) is the query vector for a collection truncated to the same dims."""
    if model.projection is None:
        raise ValueError("the student has no projection head to truncate")
    full = int(model.projection.out_features)
    if not 0 < dims <= full:
        raise ValueError(f"cannot truncate a {full}-dims head to {dims} dims")
    if dims == full:
        return
    weight = model.projection.weight.detach()[:dims].cpu().numpy()
    bias = model.projection.bias.detach()[:dims].cpu().numpy()
    set_projection(model, weight, bias)


def empty_projection(model: torch.nn.Module, dims: int) -> None:
    """A head of the right shape whose values a checkpoint is about to overwrite."""
    model.projection = torch.nn.Linear(hidden_size(model), dims)


@torch.no_grad()
def pooled_vectors(
    model: torch.nn.Module,
    tokenize: Callable[[Sequence[str]], tuple[torch.Tensor, torch.Tensor]],
    texts: Sequence[str],
    batch_size: int = 64,
) -> np.ndarray:
    """Mean-pooled backbone vectors (before the head, not normalised) of ``texts``, in eval mode."""
    was_training = model.training
    model.eval()
    out = []
    for start in range(0, len(texts), batch_size):
        ids, mask = tokenize(texts[start : start + batch_size])
        hidden = model.backbone(input_ids=ids, attention_mask=mask).last_hidden_state
        weights = mask.unsqueeze(-1).to(hidden.dtype)
        out.append(((hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)).numpy())
    model.train(was_training)
    return np.concatenate(out) if out else np.zeros((0, hidden_size(model)), np.float32)


@torch.no_grad()
def encode(
    model: torch.nn.Module,
    tokenize: Callable[[Sequence[str]], tuple[torch.Tensor, torch.Tensor]],
    texts: Sequence[str],
    batch_size: int = 128,
) -> np.ndarray:
    """The student's normalised output vectors of ``texts``, in eval mode."""
    was_training = model.training
    model.eval()
    out = [model(*tokenize(texts[start : start + batch_size])).numpy() for start in range(0, len(texts), batch_size)]
    model.train(was_training)
    return np.concatenate(out) if out else np.zeros((0, output_dims(model)), np.float32)


def ridge_projection(inputs: np.ndarray, targets: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """``(weight [dims, hidden], bias [dims])`` minimising ``|X W^T + b - Y|^2 + lam |W|^2`` on centred data, with
    ``lam = alpha * trace(Xc^T Xc) / hidden`` so ``alpha`` does not depend on the scale of the pooled vectors."""
    x = np.asarray(inputs, dtype=np.float64)
    y = np.asarray(targets, dtype=np.float64)
    if x.shape[0] != y.shape[0] or x.shape[0] < 2:
        raise ValueError(f"ridge needs matching samples, got {x.shape[0]} inputs and {y.shape[0]} targets")
    x_mean, y_mean = x.mean(0), y.mean(0)
    xc, yc = x - x_mean, y - y_mean
    gram = xc.T @ xc
    lam = alpha * np.trace(gram) / gram.shape[0]
    weight = np.linalg.solve(gram + lam * np.eye(gram.shape[0]), xc.T @ yc).T  # [dims, hidden]
    bias = y_mean - weight @ x_mean
    return weight.astype(np.float32), bias.astype(np.float32)


def save_student(model: torch.nn.Module, source_dir: Path, out_dir: Path) -> Path:
    """Write ``model`` as a student folder at ``out_dir`` (replaced atomically as a whole); tokenizer and the other
    side files come from ``source_dir``."""
    from safetensors.torch import save_file

    source_dir = resolve_student_dir(source_dir)
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.tmp"))
    try:
        model.backbone.save_pretrained(str(staging), safe_serialization=True)
        if model.projection is not None:
            head = {k: v.detach().contiguous().cpu() for k, v in model.projection.state_dict().items()}
            save_file(head, str(staging / PROJECTION_FILE))
        for name in SIDE_FILES:
            if (source_dir / name).is_file():
                shutil.copy(source_dir / name, staging / name)
        os.chmod(staging, 0o755)  # mkdtemp's 0700 would survive the rename
        retired = out_dir.with_name(f".{out_dir.name}.old")
        shutil.rmtree(retired, ignore_errors=True)
        if out_dir.exists():  # a folder cannot be renamed over a non-empty one: move the old one aside first
            os.replace(out_dir, retired)
        os.replace(staging, out_dir)
        shutil.rmtree(retired, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out_dir
