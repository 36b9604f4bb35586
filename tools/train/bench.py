"""Seconds per stage-I training step on real texts (``python -m tools.train bench``)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from tools.train import state as train_state, student as st
from tools.train.config import STUDENT_PROMPT, Stage1Config, set_threads
from tools.train.stage1 import stage1_batches, stage1_loss


def bench_steps(student_dir: Path, *, layers: int | None, steps: int, batch_size: int, max_tokens: int, dims: int,
                texts: Sequence[str], threads: int | None, seed: int = 0) -> dict[str, Any]:
    """Seconds per stage-I training step (forward + backward + AdamW) on real texts with random unit targets: the
    cost of a step does not depend on the targets' values, so no teacher is needed. The first step is a warm-up."""
    set_threads(threads)
    train_state.seed_everything(seed)
    source_dir = st.resolve_student_dir(student_dir)
    model = st.load_student(source_dir, layers)
    st.freeze_word_embeddings(model)
    st.empty_projection(model, dims)
    tokenize = st.StudentTokenizer(source_dir / "tokenizer.json", max_tokens, STUDENT_PROMPT)
    targets = torch.nn.functional.normalize(torch.randn(len(texts), dims), dim=-1)
    config = Stage1Config(student=source_dir, out=Path("."), batch_size=batch_size, max_tokens=max_tokens, steps=1)
    batch_at, loss_of = stage1_batches(texts, targets, config, tokenize), stage1_loss(config)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=5e-5)
    model.train()
    times, cpu_times = [], []
    for step in range(steps + 1):
        began, cpu_began = time.perf_counter(), time.process_time()
        loss, _ = loss_of(model, batch_at(step))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - began)
        cpu_times.append(time.process_time() - cpu_began)
    measured = times[1:]
    return {"layers": st.layer_count(model), "batch_size": batch_size, "max_tokens": max_tokens, "dims": dims,
            "threads": torch.get_num_threads(), "steps": len(measured),
            "sec_per_step_mean": round(float(np.mean(measured)), 3),
            "sec_per_step_min": round(float(np.min(measured)), 3),
            # CPU seconds are what a busy machine cannot distort: wall time on idle cores ~ cpu / threads used
            "cpu_sec_per_step_mean": round(float(np.mean(cpu_times[1:])), 3),
            "trainable_params": sum(p.numel() for p in params)}
