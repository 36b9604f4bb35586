"""The settings of a training stage (``Stage1Config``, ``Stage2Config``), checked before any work starts, and what a
finished stage returns (``StageResult``)."""

from __future__ import annotations

import hashlib
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch

from edge.errors import BadInput
from tools.train import data as train_data

STUDENT_PROMPT = "query: "  # e5's query prompt (tools.models.cache.E5_QUERY_PROMPT); the export writes it to config.json
WARMUP_FRACTION = 0.05


@dataclass(frozen=True)
class CommonConfig:
    student: Path
    out: Path
    data_dir: Path | None = None
    cache_dir: Path | None = None
    encoder: str = "embeddinggemma"
    threads: int | None = None
    dims: int | None = None
    layers: int | None = None
    steps: int | None = None
    epochs: float | None = None
    batch_size: int = 64
    lr: float = 5e-5
    max_tokens: int = 32
    max_per_source: int | None = 20000
    source_caps: tuple[tuple[str, int | None], ...] = ()  # per-source overrides of max_per_source
    seed: int = 0
    checkpoint_every: int = 200
    log_every: int = 10
    dropout: bool = True
    resume: bool = False
    teacher_missing: str = "embed"
    progress: bool = True
    command: str = ""  # the command line, for run.json


@dataclass(frozen=True)
class Stage1Config(CommonConfig):
    dims: int | None = 256
    temperature: float = 0.05
    mse_weight: float = 1.0
    nce_weight: float = 1.0
    documents: int = 5000
    document_chars: int = 96
    titles: int = 0
    ridge_sample: int = 2048
    ridge_alpha: float = 0.1
    extra_texts: Path | None = None
    sources: tuple[str, ...] = train_data.STAGE1_SOURCES


@dataclass(frozen=True)
class Stage2Config(CommonConfig):
    max_tokens: int = 64
    temperature: float = 0.02
    kl_weight: float = 1.0
    kl_temperature: float = 0.02
    align_weight: float = 0.1
    negatives: int = 7
    negative_ranks: str = "4:40"
    negative_corpora: tuple[str, ...] = train_data.NEGATIVE_CORPORA
    max_negative_docs: int | None = None
    sources: tuple[str, ...] = train_data.STAGE2_SOURCES
    # Unlabeled stage-I query sources -> cap (None = all) whose queries get the LLM's first choice in
    # llm_labelled_corpus as a positive (tools.train.llm_labels); empty = none.
    llm_labelled: tuple[tuple[str, int | None], ...] = ()
    llm_labelled_corpus: str = "cmedir-titles"
    llm_labelled_min_score: float = 0.0
    # A symmetric encoder folder whose own cosines are fused into the KL target (tools.train.co_teacher); None = the
    # LLM's alone. kl_co_weight is its share of the fused cosine.
    kl_co_teacher: Path | None = None
    kl_co_weight: float = 0.7


@dataclass(frozen=True)
class StageResult:
    run_dir: Path
    model_dir: Path
    document_encoder: dict
    run: dict = field(default_factory=dict)


def jsonable(config: CommonConfig) -> dict[str, Any]:
    return {k: (str(v) if isinstance(v, Path) else list(v) if isinstance(v, tuple) else v)
            for k, v in asdict(config).items()}


def texts_digest(texts: Sequence[str]) -> str:
    digest = hashlib.sha1()
    for text in texts:
        digest.update(text.encode("utf-8") + b"\x00")
    return digest.hexdigest()[:16]


def check_config(config: CommonConfig) -> None:
    if config.batch_size < 2:
        raise BadInput("--batch-size must be at least 2 (in-batch negatives)")
    if config.max_tokens < 4:
        raise BadInput("--max-tokens must be at least 4")
    if config.teacher_missing not in ("embed", "error"):
        raise BadInput("--teacher-missing takes embed or error")
    if Path(config.out).resolve() == Path(config.student).resolve():
        raise BadInput("--out must differ from --student")
    if not config.steps and not config.epochs:
        raise BadInput("give --steps N or --epochs E")


def set_threads(threads: int | None) -> None:
    torch.set_num_threads(threads or os.cpu_count() or 1)
