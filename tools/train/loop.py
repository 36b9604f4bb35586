"""The optimisation loop both stages share: AdamW, warm-up + linear decay, clipping, logging, checkpoints, resume.

A stage hands over ``batch_at(step)`` (a pure function of the step: the data order is derived from the seed and
the epoch, so a resumed run sees exactly the batches an uninterrupted one would) and ``loss_of(model, batch)``
(the total loss and a dict of named parts to log). SIGINT / SIGTERM finish the current step, write a checkpoint
and raise :class:`Stopped`; ``resume=True`` continues from ``checkpoint.pt`` if the run's fingerprint (the
arguments that shape the model and the data) is unchanged.
"""

from __future__ import annotations

import math
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch

from edge.errors import BadInput
from tools.train import state

Batch = Any
LossFn = Callable[[torch.nn.Module, Batch], "tuple[torch.Tensor, dict[str, float]]"]


class Stopped(Exception):
    """The run was asked to stop (SIGINT / SIGTERM); a checkpoint was written at ``step``."""

    def __init__(self, step: int) -> None:
        super().__init__(f"stopped at step {step}; the checkpoint is saved: rerun with --resume to continue")
        self.step = step


@dataclass(frozen=True)
class LoopConfig:
    stage: str
    steps: int
    lr: float = 5e-5
    weight_decay: float = 0.01
    warmup_steps: int = 0
    grad_clip: float = 1.0
    checkpoint_every: int = 200
    log_every: int = 1
    dropout: bool = True


@dataclass(frozen=True)
class LoopResult:
    steps: int
    train_wall_s: float
    sec_per_step: float  # over the steps run in this process (not the resumed ones)
    last_losses: Mapping[str, float]


def epoch_permutation(n: int, seed: int, epoch: int) -> np.ndarray:
    return np.random.default_rng([seed, epoch]).permutation(n)


def batch_rows(n: int, batch_size: int, step: int, seed: int) -> np.ndarray:
    """The rows of ``step``'s batch: epoch ``step // (n // batch_size)`` of a seeded shuffle, last partial batch
    dropped (in-batch negatives need full batches). With fewer rows than a batch, each batch is all of them."""
    per_epoch = max(1, n // batch_size)
    epoch, index = divmod(step, per_epoch)
    order = epoch_permutation(n, seed, epoch)
    return order[index * batch_size : (index + 1) * batch_size]


def steps_for(n: int, batch_size: int, steps: int | None, epochs: float | None) -> int:
    if steps:
        return steps
    if epochs:
        return max(1, math.ceil(epochs * max(1, n // batch_size)))
    raise BadInput("give --steps N or --epochs E")


def linear_schedule(total: int, warmup: int) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if warmup and step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total - step) / max(1, total - warmup))

    return factor


class _StopFlag:
    """Turns SIGINT / SIGTERM into a flag checked between steps (only installable from the main thread)."""

    def __init__(self) -> None:
        self.raised = False
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> "_StopFlag":
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        self.raised = True

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def run_loop(
    model: torch.nn.Module,
    *,
    config: LoopConfig,
    batch_at: Callable[[int], Batch],
    loss_of: LossFn,
    run_dir: Path,
    fingerprint: Mapping[str, Any],
    resume: bool,
    on_checkpoint: Callable[[int], None] | None = None,
) -> LoopResult:
    checkpoint_path = run_dir / state.CHECKPOINT_FILE
    log = state.StepLog(run_dir / state.LOG_FILE)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, linear_schedule(config.steps, config.warmup_steps))

    start_step, wall_before = 0, 0.0
    if resume and checkpoint_path.exists():
        saved = state.load_checkpoint(checkpoint_path)
        if saved.get("fingerprint") != dict(fingerprint):
            changed = sorted(k for k in set(fingerprint) | set(saved.get("fingerprint", {}))
                             if saved.get("fingerprint", {}).get(k) != fingerprint.get(k))
            raise BadInput(f"--resume: {checkpoint_path} was written with other settings ({', '.join(changed)}); "
                           "use the same arguments or a new --out")
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        state.restore_rng(saved["rng"])
        start_step, wall_before = int(saved["step"]), float(saved["train_wall_s"])
        log.truncate_after(config.stage, start_step)
    elif checkpoint_path.exists():
        raise BadInput(f"{checkpoint_path} exists: pass --resume to continue that run, or choose a new --out")
    else:
        log.truncate_after(config.stage, 0)

    def checkpoint(step: int, wall: float) -> None:
        state.save_checkpoint(checkpoint_path, {
            "stage": config.stage, "step": step, "fingerprint": dict(fingerprint), "model": model.state_dict(),
            "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "rng": state.rng_state(),
            "train_wall_s": wall,
        })
        state.plot_loss_curve(log.path, run_dir / state.CURVE_FILE)
        if on_checkpoint is not None:
            on_checkpoint(step)

    model.train(config.dropout)
    began = time.perf_counter()
    last_log_time, last_log_step = began, start_step
    sums: dict[str, float] = {}
    count = 0
    last: dict[str, float] = {}
    step = start_step
    with _StopFlag() as stop:
        while step < config.steps:
            loss, parts = loss_of(model, batch_at(step))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if config.grad_clip:
                torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
            optimizer.step()
            scheduler.step()
            step += 1
            last = {"loss": float(loss.detach()), **parts}
            for key, value in last.items():
                sums[key] = sums.get(key, 0.0) + value
            count += 1
            if step % config.log_every == 0 or step == config.steps:
                now = time.perf_counter()
                log.append({"stage": config.stage, "step": step,
                            **{k: round(v / count, 6) for k, v in sums.items()},
                            "lr": scheduler.get_last_lr()[0],
                            "sec_per_step": round((now - last_log_time) / max(1, step - last_log_step), 4),
                            "wall_s": round(wall_before + now - began, 2)})
                sums, count = {}, 0
                last_log_time, last_log_step = now, step
            if stop.raised or step % config.checkpoint_every == 0 or step == config.steps:
                checkpoint(step, wall_before + time.perf_counter() - began)
            if stop.raised and step < config.steps:
                raise Stopped(step)
    model.eval()
    ran = step - start_step
    elapsed = time.perf_counter() - began
    return LoopResult(steps=step, train_wall_s=wall_before + elapsed, sec_per_step=elapsed / max(1, ran),
                      last_losses=last)
