"""A training run's files: the resumable checkpoint, the step log, the loss curve, the run summary.

A run folder holds ``checkpoint.pt`` (student + optimizer + scheduler + step + RNG states + wall time so far),
``train_log.jsonl`` (one line per logged step), ``loss_curve.png`` and ``run.json`` (arguments, data counts, wall
time per phase, status). Every file is replaced atomically, so a run killed at any moment resumes from its last
checkpoint; on resume the log is cut back to that checkpoint's step, so no step is logged twice.
"""

from __future__ import annotations

import json
import os
import random
import uuid
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np
import torch

from edge.files import atomic_write_json

CHECKPOINT_FILE = "checkpoint.pt"
LOG_FILE = "train_log.jsonl"
CURVE_FILE = "loss_curve.png"
RUN_FILE = "run.json"


def _temp_beside(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")


def save_checkpoint(path: Path, state: Mapping[str, Any]) -> None:
    tmp = _temp_beside(path)
    try:
        torch.save(dict(state), tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def load_checkpoint(path: Path) -> dict[str, Any]:
    # Our own file: it carries numpy and python RNG states, which the weights-only loader refuses.
    return torch.load(path, map_location="cpu", weights_only=False)


def rng_state() -> dict[str, Any]:
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}


def restore_rng(state: Mapping[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % (2**32))
    random.seed(seed)


# ------------------------------------------------------------------------------------------------ log


def read_log(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            try:
                rows.append(json.loads(line))
            except ValueError:  # a line cut by a kill mid-write
                continue
    return rows


def _write_lines(path: Path, rows: Iterable[Mapping[str, Any]]) -> None:
    tmp = _temp_beside(path)
    try:
        with open(tmp, "w", encoding="utf-8") as out:
            for row in rows:
                out.write(json.dumps(row, ensure_ascii=False) + "\n")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


class StepLog:
    """``train_log.jsonl``: appended one line per logged step (flushed each time, so a crash loses at most the line
    being written); :meth:`truncate_after` rewrites it atomically on resume."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def truncate_after(self, stage: str, step: int) -> None:
        rows = read_log(self.path)
        kept = [r for r in rows if not (r.get("stage") == stage and r.get("step", 0) > step)]
        if len(kept) != len(rows):
            _write_lines(self.path, kept)

    def append(self, row: Mapping[str, Any]) -> None:
        with open(self.path, "a", encoding="utf-8") as out:
            out.write(json.dumps(dict(row), ensure_ascii=False) + "\n")
            out.flush()


def smooth(values: list[float], window: int) -> np.ndarray:
    """Trailing moving average (the first points average what there is)."""
    if not values:
        return np.zeros(0)
    cumulative = np.cumsum(np.insert(np.asarray(values, dtype=np.float64), 0, 0.0))
    out = np.empty(len(values))
    for i in range(len(values)):
        lo = max(0, i + 1 - window)
        out[i] = (cumulative[i + 1] - cumulative[lo]) / (i + 1 - lo)
    return out


def plot_loss_curve(log_path: Path, png_path: Path, title: str = "") -> bool:
    """Plot every ``loss*`` field of the log against the step (one panel per stage). False if nothing to plot."""
    rows = read_log(log_path)
    if not rows:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stages = list(dict.fromkeys(r["stage"] for r in rows))
    fig, axes = plt.subplots(1, len(stages), figsize=(6.5 * len(stages), 4.2), squeeze=False)
    for ax, stage in zip(axes[0], stages):
        mine = [r for r in rows if r["stage"] == stage]
        steps = [r["step"] for r in mine]
        keys = [k for k in mine[0] if k.startswith("loss")]
        window = max(1, len(mine) // 25)
        for key in keys:
            values = [float(r[key]) for r in mine]
            ax.plot(steps, values, alpha=0.25, linewidth=0.8)
            ax.plot(steps, smooth(values, window), label=key, color=ax.lines[-1].get_color())
        ax.set_title(f"{title} {stage}".strip())
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    tmp = _temp_beside(png_path)
    try:
        fig.savefig(tmp, format="png", dpi=110)
        os.replace(tmp, png_path)
    finally:
        plt.close(fig)
        tmp.unlink(missing_ok=True)
    return True


# ------------------------------------------------------------------------------------------------ run summary


def read_run(run_dir: Path) -> dict[str, Any]:
    path = run_dir / RUN_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def update_run(run_dir: Path, **fields: Any) -> dict[str, Any]:
    """Merge ``fields`` into ``run.json`` (``timings`` is merged key by key) and rewrite it atomically."""
    run = read_run(run_dir)
    for key, value in fields.items():
        if key == "timings" and isinstance(value, Mapping):
            run.setdefault("timings", {}).update(value)
        else:
            run[key] = value
    atomic_write_json(run_dir / RUN_FILE, run)
    return run
