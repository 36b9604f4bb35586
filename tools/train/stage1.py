"""Stage I (alignment): the student learns the LLM's query-prompt vectors of unlabeled, mostly query-like texts.

Loss = ``mse_weight * |s - t|^2 + nce_weight * InfoNCE`` of the student vectors against the batch's teacher vectors
(temperature 0.05). The head (hidden -> dims) starts as a ridge fit from the frozen mean-pooled student vectors to
the teacher vectors on ``--ridge-sample`` texts (kept instead when the student already has a head of the right dims)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from edge.errors import BadInput
from tools.train import data as train_data, losses, state as train_state, student as st
from tools.train.config import (
    STUDENT_PROMPT,
    WARMUP_FRACTION,
    Stage1Config,
    StageResult,
    check_config,
    set_threads,
    texts_digest,
)
from tools.train.loop import LoopConfig, batch_rows, run_loop, steps_for
from tools.train.runs import Phases, already_complete, finish_run, open_teacher, start_run


def stage1_texts(config: Stage1Config) -> train_data.Stage1Data:
    extra: list[str] = []
    if config.extra_texts:
        try:
            lines = Path(config.extra_texts).read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise BadInput(f"cannot read --extra-texts {config.extra_texts}: {exc}") from None
        extra = [line.strip() for line in lines if line.strip()]
    return train_data.stage1_data(config.data_dir, max_per_source=config.max_per_source, documents=config.documents,
                                  document_chars=config.document_chars, seed=config.seed, extra_texts=extra,
                                  sources=config.sources, source_caps=dict(config.source_caps),
                                  titles=config.titles)


def stage1_batches(texts: Sequence[str], targets: torch.Tensor, config: Stage1Config, tokenize):
    def batch_at(step: int):
        rows = batch_rows(len(texts), config.batch_size, step, config.seed)
        return tokenize([texts[i] for i in rows]), targets[torch.from_numpy(rows)]

    return batch_at


def stage1_loss(config: Stage1Config):
    def loss_of(model: torch.nn.Module, batch) -> tuple[torch.Tensor, dict[str, float]]:
        (ids, mask), teacher = batch
        student = model(ids, mask)
        mse = losses.squared_distance(student, teacher)
        nce = losses.info_nce(student, teacher, torch.arange(len(student)), config.temperature)
        total = config.mse_weight * mse + config.nce_weight * nce
        return total, {"loss_mse": float(mse.detach()), "loss_nce": float(nce.detach()),
                       "cos": float(losses.mean_cosine(student.detach(), teacher))}

    return loss_of


def init_projection(model: torch.nn.Module, tokenize, texts: Sequence[str], targets: np.ndarray,
                    sample: int, alpha: float, seed: int) -> dict[str, Any]:
    """Ridge-fit the head on up to ``sample`` texts; returns what the fit achieved (for run.json)."""
    rows = np.random.default_rng([seed, 7]).permutation(len(texts))[: max(2, sample)]
    pooled = st.pooled_vectors(model, tokenize, [texts[i] for i in rows])
    weight, bias = st.ridge_projection(pooled, targets[rows], alpha)
    st.set_projection(model, weight, bias)
    fitted = pooled @ weight.T + bias
    fitted /= np.maximum(np.linalg.norm(fitted, axis=1, keepdims=True), 1e-12)
    return {"samples": int(len(rows)), "alpha": alpha,
            "fit_mean_cosine": round(float(np.mean(np.sum(fitted * targets[rows], axis=1))), 4)}


def train_stage1(config: Stage1Config) -> StageResult:
    check_config(config)
    done = already_complete(config, "stage1")
    if done:
        return done
    source_dir = st.resolve_student_dir(config.student)  # bad paths and layer counts fail now, not after the teacher
    available = json.loads((source_dir / "config.json").read_text())["num_hidden_layers"]
    if config.layers is not None and not 1 <= config.layers <= available:
        raise BadInput(f"--layers {config.layers}: {source_dir} has {available} layers")
    set_threads(config.threads)
    train_state.seed_everything(config.seed)
    run_dir = start_run(config, "stage1")
    phases = Phases(run_dir)

    data = stage1_texts(config)
    if len(data.texts) < 2:
        raise BadInput("stage I has fewer than 2 training texts")
    train_state.update_run(run_dir, data={"texts": len(data.texts), "by_source": data.counts()})
    phases.done("data")

    teacher = open_teacher(config)
    dims = config.dims or teacher.full_dims
    targets = teacher.vectors(data.texts, "query", dims, config.teacher_missing, config.progress,
                              what="stage-I texts")
    document_encoder = teacher.document_encoder(dims)
    teacher.close()
    phases.done("teacher")

    model = st.load_student(source_dir, config.layers)
    st.freeze_word_embeddings(model)
    tokenize = st.StudentTokenizer(source_dir / "tokenizer.json", config.max_tokens, STUDENT_PROMPT)
    resuming = config.resume and (run_dir / train_state.CHECKPOINT_FILE).exists()
    if resuming:
        st.empty_projection(model, dims)  # the checkpoint carries the head
    elif model.projection is not None and st.output_dims(model) == dims:
        train_state.update_run(run_dir, projection={"init": "kept from the student"})
    else:
        fit = init_projection(model, tokenize, data.texts, targets, config.ridge_sample, config.ridge_alpha,
                              config.seed)
        train_state.update_run(run_dir, projection={"init": "ridge", **fit})
    phases.done("init")

    steps = steps_for(len(data.texts), config.batch_size, config.steps, config.epochs)
    loop = LoopConfig(stage="stage1", steps=steps, lr=config.lr, warmup_steps=int(steps * WARMUP_FRACTION),
                      checkpoint_every=config.checkpoint_every, log_every=config.log_every, dropout=config.dropout)
    fingerprint = {"dims": dims, "layers": st.layer_count(model), "batch_size": config.batch_size, "steps": steps,
                   "lr": config.lr, "seed": config.seed, "max_tokens": config.max_tokens,
                   "temperature": config.temperature, "mse_weight": config.mse_weight,
                   "nce_weight": config.nce_weight, "texts": texts_digest(data.texts),
                   "teacher": document_encoder["sha256"]}
    result = run_loop(model, config=loop, fingerprint=fingerprint, resume=config.resume, run_dir=run_dir,
                      batch_at=stage1_batches(data.texts, torch.from_numpy(targets), config, tokenize),
                      loss_of=stage1_loss(config))
    phases.done("train")
    return finish_run(model, config, run_dir, phases, "stage1", result, document_encoder)
