"""A stage's run folder: starting it, refusing to start over a checkpoint or a finished run with other settings,
reusing a finished one (``--resume``), timing its phases and recording how it finished (``run.json``)."""

from __future__ import annotations

import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import torch

from edge.errors import BadInput
from tools.train import state as train_state, student as st
from tools.train.config import CommonConfig, StageResult, jsonable


class Phases:
    """Wall time per phase of a stage, written to run.json as each phase ends."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self._start = time.perf_counter()

    def done(self, name: str) -> float:
        now = time.perf_counter()
        seconds = round(now - self._start, 2)
        train_state.update_run(self.run_dir, timings={f"{name}_s": seconds})
        self._start = now
        return seconds


def already_complete(config: CommonConfig, stage: str) -> StageResult | None:
    run = train_state.read_run(Path(config.out))
    model_dir = Path(config.out) / st.MODEL_SUBDIR
    if run.get("stage") == stage and run.get("status") == "complete" and model_dir.is_dir():
        if not config.resume:
            raise BadInput(f"{config.out} already holds a complete {stage} run: pass --resume to reuse it, "
                           "or choose a new --out")
        changed = _changed_settings(run.get("config", {}), config)
        if changed:
            raise BadInput(f"{config.out} holds a complete {stage} run made with other settings ({', '.join(changed)}):"
                           " choose a new --out for this recipe")
        return StageResult(Path(config.out), model_dir, run["document_encoder"], run)
    return None


# How a run is watched or scheduled, not what it trains: these may differ when a finished run is reused.
_NOT_RECIPE = frozenset({"out", "threads", "checkpoint_every", "log_every", "resume", "teacher_missing", "progress",
                         "command", "cache_dir", "data_dir"})


def _changed_settings(recorded: dict[str, Any], config: CommonConfig) -> list[str]:
    """The settings of ``config`` that differ from a finished run's recorded ones (a key the run predates counts
    as its default)."""
    current = json.loads(json.dumps(jsonable(config)))
    defaults = json.loads(json.dumps(jsonable(type(config)(student=Path("."), out=Path(".")))))
    return [key for key, value in current.items()
            if key not in _NOT_RECIPE and recorded.get(key, defaults.get(key)) != value]


def start_run(config: CommonConfig, stage: str) -> Path:
    run_dir = Path(config.out)
    if (run_dir / train_state.CHECKPOINT_FILE).exists() and not config.resume:
        raise BadInput(f"{run_dir} holds a checkpoint: pass --resume to continue that run, or choose a new --out")
    run_dir.mkdir(parents=True, exist_ok=True)
    train_state.update_run(run_dir, stage=stage, status="running", config=jsonable(config),
                           command=config.command or command_line(sys.argv[1:]),
                           started_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    return run_dir


def finish_run(model: torch.nn.Module, config: CommonConfig, run_dir: Path, phases: Phases, stage: str,
            result: Any, document_encoder: dict) -> StageResult:
    model_dir = st.save_student(model, config.student, run_dir / st.MODEL_SUBDIR)
    phases.done("save")
    train_state.plot_loss_curve(run_dir / train_state.LOG_FILE, run_dir / train_state.CURVE_FILE, title=stage)
    run = train_state.update_run(
        run_dir, status="complete", steps=result.steps, train_wall_s=round(result.train_wall_s, 2),
        sec_per_step=round(result.sec_per_step, 4), last_losses=result.last_losses,
        document_encoder=document_encoder, finished_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    )
    return StageResult(run_dir, model_dir, document_encoder, run)


def open_teacher(config: CommonConfig):
    from tools.train.teacher import Teacher

    return Teacher(config.encoder, config.cache_dir, config.threads)


def command_line(argv: Sequence[str]) -> str:
    return "python -m tools.train " + " ".join(shlex.quote(str(a)) for a in argv)
