"""Train the query encoder (student) into the LLM document encoder's vector space: CARE's two stages.

    python -m tools.train stage1 --student E5_DIR --out runs/s1 [--dims 256] [--layers 12|6] [--steps N|--epochs E]
    python -m tools.train stage2 --student runs/s1 --out runs/s2 [--steps N|--epochs E]
    python -m tools.train export --student runs/s2 --out prebuilt_index/query_encoder [--aligned-to COLLECTION]
    python -m tools.train all --student E5_DIR --out runs/r1 [--dims 256] [--layers 6] \
        [--stage1-epochs 1] [--stage2-epochs 1]          # stage1 -> stage2 -> export, each skipped once complete
    python -m tools.train teacher stage1|stage2 [--shard i/N]   # only compute the teacher vectors a stage needs
    python -m tools.train bench --student E5_DIR [--layers 6] [--steps 6]   # seconds per stage-I step, no teacher
    python -m tools.train alignment --encoder-dir DIR [--tasks cmedir-retrieval,...]  # held-out cosine to the LLM

Stage I (alignment): unlabeled, mostly query-like texts (``tools.train_data.stage1_data``). Target = the LLM's
vector of the same text under its *query* prompt. Loss = ``mse_weight * |s - t|^2 + nce_weight * InfoNCE`` of the
student vectors against the batch's teacher vectors (temperature 0.05). The head (hidden -> dims) starts as a ridge
fit from the frozen mean-pooled student vectors to the teacher vectors on ``--ridge-sample`` texts (kept instead
when the student already has a head of the right dims).

Stage II (retrieval): (query, positive document) pairs (``tools.train_data.stage2_data``). Each query gets 7 hard
negatives mined once, before training, from the frozen *document* vectors with the stage-I student (ranks 4-40
minus known positives, ``tools.negatives``). Loss = InfoNCE at T=0.02 against the frozen document vectors of the
batch (every pair's positive + negatives; other queries' candidates that are positives of this query are masked)
+ ``kl_weight`` * KL(LLM query->candidate score distribution || student's) + ``align_weight`` * ``|s - t_q|^2``
to the LLM's query vector (keeps the student from drifting off the space the KL and MSE anchor). With
``--kl-co-teacher DIR`` the KL target is the fusion ``(1 - w) * cos_llm + w * cos_e5`` of the LLM's cosines and a
symmetric encoder's own (``tools.co_teacher``, ``w`` = ``--kl-co-weight``); the student still scores against the
LLM's document vectors.

Both stages: the student is ``tools.export.load_student``'s module (XLM-R backbone, optional first-N layers,
mean pool, head, L2 norm) with the word-embedding matrix frozen; AdamW (lr 5e-5, weight decay 0.01), linear
warm-up over 5% of the steps then linear decay, gradient clipping at 1.0, batch 64, 32 tokens in stage I and 64 in
stage II, the e5 ``"query: "`` prompt. Teacher vectors come from the vector cache shared with
``tools.build_index`` (``--cache-dir``); missing ones are computed (``--teacher-missing embed``) or refused
(``error``). Every training text goes through ``tools.splits.assert_not_eval``; splits come only from
``tools.splits``.

A run folder (``--out``) holds ``checkpoint.pt`` (written every ``--checkpoint-every`` steps, atomically: student,
optimizer, scheduler, step, RNG states), ``train_log.jsonl``, ``loss_curve.png``, ``run.json`` (arguments, data
counts, wall time per phase, status) and, once done, ``model/``: the student folder (model.safetensors,
config.json, tokenizer.json, projection.safetensors) that ``export`` (or ``tools.export``) turns into the
runtime's INT8 folder. ``--resume`` continues from the checkpoint (same arguments required); SIGINT / SIGTERM stop
after the current step with a checkpoint. ``--detach`` starts the same command in the background (new session,
output in ``OUT/train.out``, pid in ``OUT/train.pid``) and returns at once.

``--sources`` restricts a stage to some of its data sources, ``--max-per-source`` caps each (20,000 by default, so
ICD-10's 78k multilingual names do not swamp the rest); ``--source-caps cmedir=0,icd=8000`` overrides it per source
(0 = every item). ``--threads`` sets torch's and llama.cpp's threads; on a
machine whose cores other jobs already keep busy, ``--threads 1`` is much faster than oversubscribing them.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shlex
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Sequence

import edge._native  # noqa: F401  (onnxruntime must load before anything that pulls usearch)
import numpy as np
import torch

from edge.errors import BadInput
from tools import losses, negatives, student as st, train_data, train_state
from tools.splits import EvalLeakError, eval_texts, normalize_text
from tools.train_loop import LoopConfig, Stopped, batch_rows, run_loop, steps_for

REPO = Path(__file__).resolve().parents[1]
STUDENT_PROMPT = "query: "  # e5's query prompt (tools.models.E5_QUERY_PROMPT); the export writes it to config.json
EXPORT_MAX_TOKENS = 64
WARMUP_FRACTION = 0.05


# ------------------------------------------------------------------------------------------------ configuration


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
    # llm_labelled_corpus as a positive (tools.llm_labels); empty = none.
    llm_labelled: tuple[tuple[str, int | None], ...] = ()
    llm_labelled_corpus: str = "cmedir-titles"
    llm_labelled_min_score: float = 0.0
    # A symmetric encoder folder whose own cosines are fused into the KL target (tools.co_teacher); None = the
    # LLM's alone. kl_co_weight is its share of the fused cosine.
    kl_co_teacher: Path | None = None
    kl_co_weight: float = 0.7


@dataclass(frozen=True)
class StageResult:
    run_dir: Path
    model_dir: Path
    document_encoder: dict
    run: dict = field(default_factory=dict)


def _jsonable(config: CommonConfig) -> dict[str, Any]:
    return {k: (str(v) if isinstance(v, Path) else list(v) if isinstance(v, tuple) else v)
            for k, v in asdict(config).items()}


def _texts_digest(texts: Sequence[str]) -> str:
    digest = hashlib.sha1()
    for text in texts:
        digest.update(text.encode("utf-8") + b"\x00")
    return digest.hexdigest()[:16]


def _check_config(config: CommonConfig) -> None:
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


def _set_threads(threads: int | None) -> None:
    torch.set_num_threads(threads or os.cpu_count() or 1)


class _Phases:
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


def _already_complete(config: CommonConfig, stage: str) -> StageResult | None:
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
    current = json.loads(json.dumps(_jsonable(config)))
    defaults = json.loads(json.dumps(_jsonable(type(config)(student=Path("."), out=Path(".")))))
    return [key for key, value in current.items()
            if key not in _NOT_RECIPE and recorded.get(key, defaults.get(key)) != value]


def _start_run(config: CommonConfig, stage: str) -> Path:
    run_dir = Path(config.out)
    if (run_dir / train_state.CHECKPOINT_FILE).exists() and not config.resume:
        raise BadInput(f"{run_dir} holds a checkpoint: pass --resume to continue that run, or choose a new --out")
    run_dir.mkdir(parents=True, exist_ok=True)
    train_state.update_run(run_dir, stage=stage, status="running", config=_jsonable(config),
                           command=config.command or _command_line(sys.argv[1:]),
                           started_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    return run_dir


def _finish(model: torch.nn.Module, config: CommonConfig, run_dir: Path, phases: _Phases, stage: str,
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


def _open_teacher(config: CommonConfig):
    from tools.teacher import Teacher

    return Teacher(config.encoder, config.cache_dir, config.threads)


# ------------------------------------------------------------------------------------------------ stage I


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
    _check_config(config)
    done = _already_complete(config, "stage1")
    if done:
        return done
    source_dir = st.resolve_student_dir(config.student)  # bad paths and layer counts fail now, not after the teacher
    available = json.loads((source_dir / "config.json").read_text())["num_hidden_layers"]
    if config.layers is not None and not 1 <= config.layers <= available:
        raise BadInput(f"--layers {config.layers}: {source_dir} has {available} layers")
    _set_threads(config.threads)
    train_state.seed_everything(config.seed)
    run_dir = _start_run(config, "stage1")
    phases = _Phases(run_dir)

    data = stage1_texts(config)
    if len(data.texts) < 2:
        raise BadInput("stage I has fewer than 2 training texts")
    train_state.update_run(run_dir, data={"texts": len(data.texts), "by_source": data.counts()})
    phases.done("data")

    teacher = _open_teacher(config)
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
                   "nce_weight": config.nce_weight, "texts": _texts_digest(data.texts),
                   "teacher": document_encoder["sha256"]}
    result = run_loop(model, config=loop, fingerprint=fingerprint, resume=config.resume, run_dir=run_dir,
                      batch_at=stage1_batches(data.texts, torch.from_numpy(targets), config, tokenize),
                      loss_of=stage1_loss(config))
    phases.done("train")
    return _finish(model, config, run_dir, phases, "stage1", result, document_encoder)


# ------------------------------------------------------------------------------------------------ stage II


@dataclass(frozen=True)
class Stage2Tensors:
    """Everything a stage-II batch is cut from, as arrays indexed by pair / query / document row."""

    queries: list[str]
    pair_query: np.ndarray  # [n_pairs] row in `queries`
    pair_positive: np.ndarray  # [n_pairs] document row
    excluded: list[frozenset[int]]  # per query row: positives + the query's own text among the documents
    query_vectors: torch.Tensor  # teacher, query prompt [n_queries, dims]
    doc_vectors: torch.Tensor  # teacher, document prompt [n_docs, dims]
    negatives: np.ndarray  # [n_pairs, k]
    co_query_vectors: torch.Tensor | None = None  # co-teacher, its own space [n_queries, d'] (tools.co_teacher)
    co_doc_vectors: torch.Tensor | None = None  # [n_docs, d']


def stage2_batches(t: Stage2Tensors, config: Stage2Config, tokenize):
    def batch_at(step: int):
        rows = batch_rows(len(t.pair_query), config.batch_size, step, config.seed)
        query_rows = t.pair_query[rows]
        candidates = np.concatenate([t.pair_positive[rows], t.negatives[rows].reshape(-1)])
        mask = np.zeros((len(rows), len(candidates)), dtype=bool)
        candidate_list = candidates.tolist()
        for i, q in enumerate(query_rows):
            banned = t.excluded[q]
            mask[i] = [c in banned for c in candidate_list]
            mask[i, i] = False  # its own positive stays the target
        texts = [t.queries[q] for q in query_rows]
        query_index, candidate_index = torch.from_numpy(query_rows), torch.from_numpy(candidates)
        co = None
        if t.co_query_vectors is not None and t.co_doc_vectors is not None:
            co = (t.co_query_vectors[query_index], t.co_doc_vectors[candidate_index])
        return (tokenize(texts), t.query_vectors[query_index], t.doc_vectors[candidate_index],
                torch.from_numpy(mask), co)

    return batch_at


def stage2_loss(config: Stage2Config):
    def loss_of(model: torch.nn.Module, batch) -> tuple[torch.Tensor, dict[str, float]]:
        (ids, mask), teacher_queries, candidates, banned, co = batch
        student = model(ids, mask)
        target = torch.arange(len(student))
        nce = losses.info_nce(student, candidates, target, config.temperature, banned)
        teacher_scores = teacher_queries @ candidates.T
        if co is not None:
            co_queries, co_candidates = co
            teacher_scores = ((1 - config.kl_co_weight) * teacher_scores
                              + config.kl_co_weight * (co_queries @ co_candidates.T))
        kl = losses.score_kl(student, candidates, teacher_scores, config.kl_temperature, banned)
        align = losses.squared_distance(student, teacher_queries)
        total = nce + config.kl_weight * kl + config.align_weight * align
        with torch.no_grad():
            scores = (student @ candidates.T).masked_fill(banned, losses.MASKED_LOGIT)
            accuracy = float((scores.argmax(dim=1) == target).float().mean())
        return total, {"loss_nce": float(nce.detach()), "loss_kl": float(kl.detach()),
                       "loss_align": float(align.detach()), "top1": accuracy,
                       "cos": float(losses.mean_cosine(student.detach(), teacher_queries))}

    return loss_of


def _llm_labelled_pairs(config: Stage2Config, teacher, dims: int) -> tuple[list[train_data.Pair], dict[str, Any]]:
    """The LLM-labelled pairs of ``config.llm_labelled`` (none when it is empty) and, per source, what was kept."""
    if not config.llm_labelled:
        return [], {}
    from tools.corpora import load_corpus
    from tools.llm_labels import top_document_pairs

    # A title that is also an evaluation query (a KUAKE or CHIP test question) may not be a positive.
    held = eval_texts(config.data_dir)
    documents = list(dict.fromkeys(d.text for d in load_corpus(config.llm_labelled_corpus, config.data_dir)
                                   if normalize_text(d.text) not in held))
    doc_vectors = teacher.vectors(documents, "document", dims, config.teacher_missing, config.progress,
                                  what=f"{config.llm_labelled_corpus} documents")
    pairs: list[train_data.Pair] = []
    report: dict[str, Any] = {"corpus": config.llm_labelled_corpus, "min_score": config.llm_labelled_min_score}
    for source, queries in train_data.unlabeled_queries(config.data_dir, dict(config.llm_labelled),
                                                        config.seed).items():
        query_vectors = teacher.vectors(queries, "query", dims, config.teacher_missing, config.progress,
                                        what=f"unlabeled {source} queries")
        labelled = top_document_pairs(queries, query_vectors, documents, doc_vectors, source=source,
                                      min_score=config.llm_labelled_min_score)
        pairs += labelled.pairs
        report[source] = {"offered": labelled.offered, "kept": len(labelled.pairs),
                          "below_min_score": labelled.below_min_score,
                          "mean_top_score": round(labelled.mean_top_score, 4)}
    return pairs, report


def _mined_negatives(model: torch.nn.Module, tokenize, queries: Sequence[str], pair_query: np.ndarray,
                     excluded: Sequence[frozenset[int]], doc_vectors: np.ndarray, config: Stage2Config,
                     run_dir: Path, key: str) -> tuple[np.ndarray, dict[str, Any]]:
    """Mine once per run and keep the result in ``negatives.npz`` (keyed by data + settings) for --resume."""
    path = run_dir / "negatives.npz"
    if path.exists():
        with np.load(path) as saved:
            if str(saved["key"]) == key:
                return saved["rows"], {"reused": True}
    student_queries = st.encode(model, tokenize, queries)
    mined = negatives.mine(student_queries, doc_vectors, pair_query.tolist(), [excluded[q] for q in pair_query],
                           count=config.negatives, band=negatives.parse_rank_band(config.negative_ranks),
                           seed=config.seed)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.npz")
    np.savez(tmp, rows=mined.rows, key=np.array(key))
    os.replace(tmp, path)
    return mined.rows, {"reused": False, "topped_up_at_random": mined.topped_up}


def train_stage2(config: Stage2Config) -> StageResult:
    _check_config(config)
    try:
        band = negatives.parse_rank_band(config.negative_ranks)
    except ValueError as exc:
        raise BadInput(f"--negative-ranks: {exc}") from None
    if config.negatives < 1 or band[1] - band[0] + 1 < config.negatives:
        raise BadInput(f"--negatives {config.negatives} does not fit in --negative-ranks {config.negative_ranks}")
    if not 0.0 <= config.kl_co_weight <= 1.0:
        raise BadInput(f"--kl-co-weight {config.kl_co_weight}: expected a share between 0 and 1")
    done = _already_complete(config, "stage2")
    if done:
        return done
    _set_threads(config.threads)
    train_state.seed_everything(config.seed)
    source_dir = st.resolve_student_dir(config.student)
    model = st.load_student(source_dir, config.layers)
    if model.projection is None:
        raise BadInput(f"{source_dir} has no projection head: stage II starts from a stage-I student")
    dims = st.output_dims(model)
    if config.dims and config.dims != dims:
        raise BadInput(f"--dims {config.dims}: the stage-I student {source_dir} outputs {dims} dims")
    st.freeze_word_embeddings(model)
    run_dir = _start_run(config, "stage2")
    phases = _Phases(run_dir)

    teacher = _open_teacher(config)
    extra_pairs, labelling = _llm_labelled_pairs(config, teacher, dims)
    data = train_data.stage2_data(config.data_dir, max_per_source=config.max_per_source,
                                  negative_corpora=config.negative_corpora,
                                  max_negative_documents=config.max_negative_docs, seed=config.seed,
                                  sources=config.sources, source_caps=dict(config.source_caps),
                                  extra_pairs=extra_pairs)
    if len(data.pairs) < 2:
        raise BadInput("stage II has fewer than 2 training pairs")
    queries = data.queries
    if len(data.documents) - max((len(v) for v in data.positives_of.values()), default=0) <= config.negatives:
        raise BadInput(f"stage II has {len(data.documents)} documents: too few for {config.negatives} negatives")
    train_state.update_run(run_dir, data={"pairs": len(data.pairs), "queries": len(queries),
                                          "documents": len(data.documents), "by_source": data.counts(),
                                          **({"llm_labelled": labelling} if labelling else {})})
    phases.done("data")

    query_vectors = teacher.vectors(queries, "query", dims, config.teacher_missing, config.progress,
                                    what="stage-II queries")
    doc_vectors = teacher.vectors(data.documents, "document", dims, config.teacher_missing, config.progress,
                                  what="stage-II documents")
    document_encoder = teacher.document_encoder(dims)
    teacher.close()
    co = _co_teacher(config, queries, data.documents)
    phases.done("teacher")

    query_row = {q: i for i, q in enumerate(queries)}
    doc_row = {d: i for i, d in enumerate(data.documents)}
    excluded = [frozenset(data.positives_of[q] | ({doc_row[q]} if q in doc_row else set())) for q in queries]
    pair_query = np.array([query_row[p.query] for p in data.pairs], dtype=np.int64)
    tokenize = st.StudentTokenizer(source_dir / "tokenizer.json", config.max_tokens, STUDENT_PROMPT)
    key = json.dumps({"pairs": _texts_digest([f"{p.query}\x1f{p.document}" for p in data.pairs]),
                      "documents": _texts_digest(data.documents), "student": _student_digest(source_dir),
                      "negatives": config.negatives, "ranks": config.negative_ranks, "seed": config.seed,
                      "layers": st.layer_count(model), "dims": dims, "max_tokens": config.max_tokens,
                      "teacher": document_encoder["sha256"]}, sort_keys=True)
    negative_rows, mining = _mined_negatives(model, tokenize, queries, pair_query, excluded, doc_vectors, config,
                                             run_dir, key)
    train_state.update_run(run_dir, mining={"negatives": config.negatives, "ranks": config.negative_ranks, **mining})
    phases.done("mining")

    tensors = Stage2Tensors(queries=queries, pair_query=pair_query,
                            pair_positive=np.array(data.positive_rows, dtype=np.int64), excluded=excluded,
                            query_vectors=torch.from_numpy(query_vectors), doc_vectors=torch.from_numpy(doc_vectors),
                            negatives=negative_rows,
                            co_query_vectors=None if co is None else torch.from_numpy(co.queries),
                            co_doc_vectors=None if co is None else torch.from_numpy(co.documents))
    steps = steps_for(len(data.pairs), config.batch_size, config.steps, config.epochs)
    loop = LoopConfig(stage="stage2", steps=steps, lr=config.lr, warmup_steps=int(steps * WARMUP_FRACTION),
                      checkpoint_every=config.checkpoint_every, log_every=config.log_every, dropout=config.dropout)
    fingerprint = {"key": key, "batch_size": config.batch_size, "steps": steps, "lr": config.lr,
                   "temperature": config.temperature, "kl_weight": config.kl_weight,
                   "kl_temperature": config.kl_temperature, "align_weight": config.align_weight,
                   **({"kl_co_teacher": co.identity["sha256"], "kl_co_weight": config.kl_co_weight} if co else {})}
    result = run_loop(model, config=loop, fingerprint=fingerprint, resume=config.resume, run_dir=run_dir,
                      batch_at=stage2_batches(tensors, config, tokenize), loss_of=stage2_loss(config))
    phases.done("train")
    return _finish(model, config, run_dir, phases, "stage2", result, document_encoder)


def _co_teacher(config: Stage2Config, queries: Sequence[str], documents: Sequence[str]):
    """The co-teacher's vectors of the stage's queries and documents (None without ``--kl-co-teacher``)."""
    if config.kl_co_teacher is None:
        return None
    from tools.co_teacher import co_teacher_vectors
    from tools.models import ModelCache, cache_root

    co = co_teacher_vectors(config.kl_co_teacher, ModelCache(cache_root(config.cache_dir)), queries, documents,
                            threads=config.threads, progress=config.progress)
    train_state.update_run(Path(config.out), kl_co_teacher={**co.identity, "weight": config.kl_co_weight})
    return co


def _student_digest(model_dir: Path) -> str:
    """Identifies the starting student by its weight files' sizes and times (hashing 100+ MB on every start is not
    worth it: this only decides whether mined negatives can be reused)."""
    parts = []
    for name in ("model.safetensors", st.PROJECTION_FILE):
        path = model_dir / name
        if path.exists():
            info = path.stat()
            parts.append(f"{name}:{info.st_size}:{info.st_mtime_ns}")
    return hashlib.sha1("|".join(parts).encode()).hexdigest()[:16]


# ------------------------------------------------------------------------------------------------ export


def export_student(student_dir: Path, out_dir: Path, document_encoder: dict, *, name: str = "care-query-encoder",
                   max_tokens: int = EXPORT_MAX_TOKENS, command: str = "", dims: int | None = None) -> dict:
    """The runtime's INT8 query-encoder folder from a trained student, aligned to ``document_encoder``.
    ``dims`` below the student's output exports a Matryoshka truncation, aligned to the same document encoder
    truncated to those dims (a collection built with ``--dims`` the same)."""
    from tools.export import export_query_encoder

    model_dir = st.resolve_student_dir(student_dir)
    trained_dims = st.output_dims(st.load_student(model_dir))
    if document_encoder.get("dims") != trained_dims:
        raise BadInput(f"the student outputs {trained_dims} dims but the document encoder it is aligned to has "
                       f"{document_encoder.get('dims')}")
    if dims is not None and dims != trained_dims:
        if not 0 < dims < trained_dims:
            raise BadInput(f"--dims {dims}: a {trained_dims}-dims student can only be truncated to fewer dims")
        document_encoder = {**document_encoder, "dims": dims}
    Path(out_dir).parent.mkdir(parents=True, exist_ok=True)
    return export_query_encoder(model_dir=model_dir, out_dir=Path(out_dir), prompt=STUDENT_PROMPT,
                                max_tokens=max_tokens, alignment=document_encoder, name=name,
                                base_model="multilingual-e5-small", licenses=student_licenses(),
                                command=command or "python -m tools.train export", dims=dims)


def student_licenses() -> list[dict]:
    """A CARE student is derived from e5-small's weights and distilled from EmbeddingGemma's vectors (its training
    targets), so the Gemma Terms of Use travel with it as well as e5's MIT licence."""
    from tools.models import LICENSES

    return [LICENSES["e5-small"], {**LICENSES["embeddinggemma"], "use": "distillation targets of the training"}]


def _document_encoder_of(student_dir: Path) -> dict | None:
    """The document encoder a training run recorded (``run.json`` beside ``model/``), if any."""
    model_dir = st.resolve_student_dir(student_dir)
    for run_dir in (model_dir.parent, model_dir):
        run = train_state.read_run(run_dir)
        if run.get("document_encoder"):
            return run["document_encoder"]
    return None


# ------------------------------------------------------------------------------------------------ teacher, bench


def precompute_teacher(stage: str, config: CommonConfig, shard) -> dict[str, int]:
    """Compute (this shard's part of) the teacher vectors ``stage`` will need; returns counts per prompt."""
    teacher = _open_teacher(config)
    if stage == "stage1":
        needed = {"query": stage1_texts(config).texts}  # type: ignore[arg-type]
    else:
        data = train_data.stage2_data(config.data_dir, max_per_source=config.max_per_source,
                                      negative_corpora=config.negative_corpora,  # type: ignore[attr-defined]
                                      max_negative_documents=config.max_negative_docs,  # type: ignore[attr-defined]
                                      seed=config.seed, sources=config.sources,
                                      source_caps=dict(config.source_caps))
        needed = {"query": data.queries, "document": data.documents}
        labelled = dict(config.llm_labelled)  # type: ignore[attr-defined]
        if labelled:  # the labelled pairs' queries and documents are among these texts
            from tools.corpora import load_corpus

            for texts in train_data.unlabeled_queries(config.data_dir, labelled, config.seed).values():
                needed["query"] = needed["query"] + texts
            corpus = config.llm_labelled_corpus  # type: ignore[attr-defined]
            needed["document"] = needed["document"] + [d.text for d in load_corpus(corpus, config.data_dir)]
    report = {}
    for side, texts in needed.items():
        before = len(teacher.missing(texts, side))
        embedded = teacher.embed_missing(texts, side, shard=shard, progress=config.progress)
        report[side] = {"texts": len(set(texts)), "missing_before": before, "embedded_now": embedded}
    return report


def alignment_cosine(encoder_dir: Path, tasks: Sequence[str], data_dir: Path | None, cache_dir: Path | None,
                     encoder_spec: str = "embeddinggemma") -> dict[str, Any]:
    """Held-out alignment: cosine of an exported query encoder's INT8 vectors (one query per call, as a device
    encodes) to the LLM's query-prompt vectors of the same evaluation queries, per task."""
    from edge.encoder import QueryEncoder
    from tools.tasks import load_task
    from tools.teacher import Teacher

    teacher = Teacher(encoder_spec, cache_dir, None)
    encoder = QueryEncoder(encoder_dir)
    report: dict[str, Any] = {"encoder": str(encoder_dir), "dims": encoder.dims}
    for name in tasks:
        queries = list(dict.fromkeys(load_task(name, data_dir).queries.values()))
        target = teacher.vectors(queries, "query", encoder.dims, "error", False, what=f"{name} queries")
        student = np.concatenate([encoder.encode([q]).vectors for q in queries])
        cosine = np.sum(student * target, axis=1)
        report[name] = {"queries": len(queries), "mean_cosine": round(float(cosine.mean()), 4),
                        "p10_cosine": round(float(np.percentile(cosine, 10)), 4)}
    teacher.close()
    return report


def bench_steps(student_dir: Path, *, layers: int | None, steps: int, batch_size: int, max_tokens: int, dims: int,
                texts: Sequence[str], threads: int | None, seed: int = 0) -> dict[str, Any]:
    """Seconds per stage-I training step (forward + backward + AdamW) on real texts with random unit targets: the
    cost of a step does not depend on the targets' values, so no teacher is needed. The first step is a warm-up."""
    _set_threads(threads)
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


# ------------------------------------------------------------------------------------------------ CLI


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def _cap(text: str) -> int | None:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected 0 (no cap) or a positive integer, got {text}")
    return value or None


def _source_caps(text: str) -> tuple[tuple[str, int | None], ...]:
    caps = []
    for item in _name_list(text):
        name, sep, value = item.partition("=")
        if not sep or not value.strip().isdigit():
            raise argparse.ArgumentTypeError(f"expected SOURCE=N items (N >= 0), got {item!r}")
        caps.append((name.strip(), int(value) or None))
    return tuple(caps)


def _name_list(text: str) -> tuple[str, ...]:
    return () if text.strip() in ("", "none") else tuple(p.strip() for p in text.split(",") if p.strip())


def _add_common(p: argparse.ArgumentParser, *, stage: str | None, paths: bool = True) -> None:
    if paths:
        p.add_argument("--student", type=Path, required=True,
                       help="stage1/all: an HF folder (e.g. the pruned e5-small); stage2: a stage-I run folder")
        p.add_argument("--out", type=Path, required=True, help="the run folder")
    p.add_argument("--data-dir", type=Path, default=REPO.parent / "shared" / "data")
    p.add_argument("--cache-dir", type=Path, help="models + vector cache (default: $CARE_EDGE_CACHE or "
                   "~/.cache/care-edge)")
    p.add_argument("--encoder", default="embeddinggemma", help="teacher: embeddinggemma | gemma3-270m | gguf:PATH")
    p.add_argument("--threads", type=_positive_int, help="torch + llama.cpp threads (default: all cores)")
    p.add_argument("--batch-size", type=_positive_int, default=64)
    p.add_argument("--lr", type=float, default=5e-5)
    p.add_argument("--max-per-source", type=_cap, default=20000, help="cap per data source (0 = none)")
    p.add_argument("--source-caps", type=_source_caps, default=(),
                   help="per-source caps overriding --max-per-source, e.g. cmedir=0,icd=8000 (0 = none)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--checkpoint-every", type=_positive_int, default=200, help="steps between checkpoints")
    p.add_argument("--log-every", type=_positive_int, default=10, help="steps per train_log.jsonl line")
    p.add_argument("--no-dropout", dest="dropout", action="store_false", help="train with dropout off")
    p.add_argument("--resume", action="store_true", help="continue from OUT's checkpoint (same arguments)")
    p.add_argument("--teacher-missing", choices=["embed", "error"], default="embed",
                   help="texts without a cached teacher vector: compute them, or stop with an error")
    p.add_argument("--no-progress", dest="progress", action="store_false")
    if paths:
        p.add_argument("--detach", action="store_true", help="run in the background (log in OUT/train.out)")
    if stage in ("stage1", "stage2"):
        how_long = p.add_mutually_exclusive_group(required=True)
        how_long.add_argument("--steps", type=_positive_int)
        how_long.add_argument("--epochs", type=float)
        p.add_argument("--layers", type=_positive_int, help="keep the first N transformer layers (12 or 6)")
    if stage == "stage1":
        p.add_argument("--dims", type=_positive_int, default=256, help="output dims: 768 | 512 | 256 (Matryoshka)")
        p.add_argument("--max-tokens", type=_positive_int, default=32)
        p.add_argument("--temperature", type=float, default=0.05)
        p.add_argument("--mse-weight", type=float, default=1.0)
        p.add_argument("--nce-weight", type=float, default=1.0)
        p.add_argument("--documents", type=int, default=5000, help="documents (cut to query length) among the texts")
        p.add_argument("--document-chars", type=_positive_int, default=96)
        p.add_argument("--titles", type=int, default=0, help="cMedIR titles (cut to --document-chars) among the texts")
        p.add_argument("--ridge-sample", type=_positive_int, default=2048)
        p.add_argument("--ridge-alpha", type=float, default=0.1)
        p.add_argument("--extra-texts", type=Path, help="more unlabeled query texts, one per line")
        p.add_argument("--sources", type=_name_list, default=train_data.STAGE1_SOURCES,
                       help=f"comma list of {','.join(train_data.STAGE1_SOURCES)} (default: all)")
    if stage == "stage2":
        p.add_argument("--dims", type=_positive_int, help="must equal the stage-I student's dims (the default)")
        p.add_argument("--max-tokens", type=_positive_int, default=64)
        p.add_argument("--temperature", type=float, default=0.02)
        p.add_argument("--kl-weight", type=float, default=1.0)
        p.add_argument("--kl-temperature", type=float, default=0.02)
        p.add_argument("--align-weight", type=float, default=0.1)
        p.add_argument("--kl-co-teacher", type=Path, help="a symmetric encoder folder (make e5-symmetric's) whose "
                       "own cosines are fused into the KL target (tools.co_teacher)")
        p.add_argument("--kl-co-weight", type=float, default=0.7, help="the co-teacher's share of that target")
        p.add_argument("--negatives", type=_positive_int, default=7)
        p.add_argument("--negative-ranks", default="4:40", help="FIRST:LAST ranks (1-based) negatives come from")
        p.add_argument("--negative-corpora", type=_name_list, default=train_data.NEGATIVE_CORPORA,
                       help="corpora whose documents join the negative pool (comma list, or none)")
        p.add_argument("--max-negative-docs", type=_cap, default=None, help="cap on those documents (0 = none)")
        p.add_argument("--sources", type=_name_list, default=train_data.STAGE2_SOURCES,
                       help=f"comma list of {','.join(train_data.STAGE2_SOURCES)} (default: all)")
        _add_llm_labelled(p)


def _add_llm_labelled(p: argparse.ArgumentParser) -> None:
    p.add_argument("--llm-labelled", type=_source_caps, default=(),
                   help="stage II: unlabeled stage-I query sources with caps, e.g. kuake=4000,chip=4000,toyhom=0 "
                   "(0 = no cap); each query gets the LLM's top document of --llm-labelled-corpus as a positive")
    p.add_argument("--llm-labelled-corpus", default="cmedir-titles")
    p.add_argument("--llm-labelled-min-score", type=float, default=0.0,
                   help="drop LLM-labelled queries whose top teacher cosine is below this")


def _command_line(argv: Sequence[str]) -> str:
    return "python -m tools.train " + " ".join(shlex.quote(str(a)) for a in argv)


def _config_from(args: argparse.Namespace, cls: type, **overrides: Any):
    values = {f.name: getattr(args, f.name) for f in fields(cls) if hasattr(args, f.name)}
    values["command"] = _command_line(args.argv)
    values.update(overrides)
    return cls(**values)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tools.train", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    _add_common(sub.add_parser("stage1", help="alignment to the LLM's query vectors"), stage="stage1")
    _add_common(sub.add_parser("stage2", help="retrieval fine-tuning with mined hard negatives"), stage="stage2")

    p = sub.add_parser("all", help="stage1 -> stage2 -> export into OUT/stage1, OUT/stage2, OUT/query_encoder")
    _add_common(p, stage=None)
    p.add_argument("--dims", type=_positive_int, default=256)
    p.add_argument("--layers", type=_positive_int)
    for stage in ("stage1", "stage2"):
        p.add_argument(f"--{stage}-steps", type=_positive_int)
        p.add_argument(f"--{stage}-epochs", type=float, help="(default: 1 epoch when no steps are given)")
    p.add_argument("--stage1-sources", type=_name_list, default=train_data.STAGE1_SOURCES)
    p.add_argument("--stage2-sources", type=_name_list, default=train_data.STAGE2_SOURCES)
    p.add_argument("--documents", type=int, default=5000, help="stage I: documents among the texts")
    p.add_argument("--negative-corpora", type=_name_list, default=train_data.NEGATIVE_CORPORA)
    p.add_argument("--max-negative-docs", type=_cap, default=None)
    p.add_argument("--name", default="care-query-encoder")

    p = sub.add_parser("export", help="a trained student -> the runtime's INT8 query-encoder folder")
    p.add_argument("--student", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--aligned-to", type=Path, help="a collection: align to its document encoder (default: the "
                   "document encoder recorded by the training run)")
    p.add_argument("--max-tokens", type=_positive_int, default=EXPORT_MAX_TOKENS)
    p.add_argument("--dims", type=_positive_int, help="export the head's first N outputs (Matryoshka: 512, 256)")
    p.add_argument("--name", default="care-query-encoder")

    p = sub.add_parser("teacher", help="compute the teacher vectors a stage needs (sharded like build_index)")
    p.add_argument("stage", choices=["stage1", "stage2"])
    _add_common(p, stage=None, paths=False)
    p.set_defaults(student=Path("."), out=Path("."), detach=False)
    p.add_argument("--shard", default="0/1", help="i/N: this process's share (see tools.build_index)")
    p.add_argument("--documents", type=int, default=5000)
    p.add_argument("--document-chars", type=_positive_int, default=96)
    p.add_argument("--titles", type=int, default=0)
    p.add_argument("--extra-texts", type=Path)
    p.add_argument("--negative-corpora", type=_name_list, default=train_data.NEGATIVE_CORPORA)
    p.add_argument("--max-negative-docs", type=_cap, default=None)
    p.add_argument("--sources", type=_name_list, help="the stage's sources (default: all of them)")
    _add_llm_labelled(p)

    p = sub.add_parser("alignment", help="held-out cosine of an exported encoder to the LLM's query vectors")
    p.add_argument("--encoder-dir", type=Path, required=True, help="an exported query-encoder folder")
    p.add_argument("--tasks", type=_name_list, default=("cmedir-retrieval", "icd-coding-de", "icd-coding-zh"))
    p.add_argument("--data-dir", type=Path, default=REPO.parent / "shared" / "data")
    p.add_argument("--cache-dir", type=Path)
    p.add_argument("--encoder", default="embeddinggemma")

    p = sub.add_parser("bench", help="seconds per stage-I step (random targets, no teacher)")
    p.add_argument("--student", type=Path, required=True)
    p.add_argument("--data-dir", type=Path, default=REPO.parent / "shared" / "data")
    p.add_argument("--layers", type=_positive_int)
    p.add_argument("--steps", type=_positive_int, default=6)
    p.add_argument("--batch-size", type=_positive_int, default=64)
    p.add_argument("--max-tokens", type=_positive_int, default=32)
    p.add_argument("--dims", type=_positive_int, default=256)
    p.add_argument("--threads", type=_positive_int)
    return parser


def _detach(argv: Sequence[str], out: Path) -> int:
    out.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "tools.train", *[a for a in argv if a != "--detach"]]
    with open(out / "train.out", "ab") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   cwd=REPO, start_new_session=True)
    (out / "train.pid").write_text(f"{process.pid}\n")
    print(f"started pid {process.pid}; output in {out / 'train.out'}, progress in {out / train_state.LOG_FILE}")
    return 0


def _run_all(args: argparse.Namespace) -> dict:
    out = Path(args.out)
    s1 = _config_from(args, Stage1Config, out=out / "stage1", steps=args.stage1_steps,
                      epochs=args.stage1_epochs or (None if args.stage1_steps else 1.0), sources=args.stage1_sources)
    first = train_stage1(s1)
    s2 = _config_from(args, Stage2Config, student=first.run_dir, out=out / "stage2", layers=None, dims=None,
                      steps=args.stage2_steps, epochs=args.stage2_epochs or (None if args.stage2_steps else 1.0),
                      sources=args.stage2_sources)
    second = train_stage2(s2)
    manifest = export_student(second.model_dir, out / "query_encoder", second.document_encoder, name=args.name,
                              command=_command_line(args.argv))
    return {"stage1": str(first.model_dir), "stage2": str(second.model_dir),
            "query_encoder": str(out / "query_encoder"), "parity": manifest["created"]["parity"]}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    try:
        if getattr(args, "detach", False):
            return _detach(argv, args.out)
        if args.command == "stage1":
            result = train_stage1(_config_from(args, Stage1Config))
            print(json.dumps({"model": str(result.model_dir), "timings": result.run.get("timings")}))
        elif args.command == "stage2":
            result = train_stage2(_config_from(args, Stage2Config))
            print(json.dumps({"model": str(result.model_dir), "timings": result.run.get("timings")}))
        elif args.command == "all":
            print(json.dumps(_run_all(args)))
        elif args.command == "export":
            if args.aligned_to:
                from tools.export import alignment_of_collection

                document_encoder = alignment_of_collection(args.aligned_to)
            else:
                document_encoder = _document_encoder_of(args.student)
                if document_encoder is None:
                    raise BadInput(f"{args.student} records no document encoder (no run.json): pass --aligned-to")
            manifest = export_student(args.student, args.out, document_encoder, name=args.name,
                                      max_tokens=args.max_tokens, dims=args.dims,
                                      command=_command_line(argv))
            print(json.dumps(manifest["created"]["parity"]))
        elif args.command == "teacher":
            from tools.build_index import Shard

            try:
                shard = Shard.parse(args.shard)
            except argparse.ArgumentTypeError as exc:
                raise BadInput(str(exc)) from None
            cls = Stage2Config if args.stage == "stage2" else Stage1Config
            config = _config_from(args, cls, steps=1, sources=args.sources or cls.sources)
            print(json.dumps(precompute_teacher(args.stage, config, shard)))
        elif args.command == "alignment":
            print(json.dumps(alignment_cosine(args.encoder_dir, args.tasks, args.data_dir, args.cache_dir,
                                              args.encoder)))
        elif args.command == "bench":
            texts = train_data.stage1_data(args.data_dir, max_per_source=max(args.batch_size, 200),
                                           documents=50).texts
            print(json.dumps(bench_steps(args.student, layers=args.layers, steps=args.steps,
                                         batch_size=args.batch_size, max_tokens=args.max_tokens, dims=args.dims,
                                         texts=texts, threads=args.threads)))
    except Stopped as exc:
        print(str(exc), file=sys.stderr)
        return 130
    except (BadInput, EvalLeakError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return getattr(exc, "exit_code", 2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
