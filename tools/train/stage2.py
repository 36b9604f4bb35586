"""Stage II (retrieval): (query, positive document) pairs, hard negatives mined once with the stage-I student, InfoNCE
against the frozen LLM document vectors + a KL term to the LLM's score distribution (or a fused LLM + e5 one with
``--kl-co-teacher``) + an MSE anchor to the LLM's query vector."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from edge.errors import BadInput
from tools.data.splits import eval_texts, normalize_text
from tools.train import data as train_data, losses, negatives, state as train_state, student as st
from tools.train.config import (
    STUDENT_PROMPT,
    WARMUP_FRACTION,
    Stage2Config,
    StageResult,
    check_config,
    set_threads,
    texts_digest,
)
from tools.train.loop import LoopConfig, batch_rows, run_loop, steps_for
from tools.train.runs import Phases, already_complete, finish_run, open_teacher, start_run


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
    co_query_vectors: torch.Tensor | None = None  # co-teacher, its own space [n_queries, d'] (tools.train.co_teacher)
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
    from tools.data.registry import load_corpus
    from tools.train.llm_labels import top_document_pairs

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
    check_config(config)
    try:
        band = negatives.parse_rank_band(config.negative_ranks)
    except ValueError as exc:
        raise BadInput(f"--negative-ranks: {exc}") from None
    if config.negatives < 1 or band[1] - band[0] + 1 < config.negatives:
        raise BadInput(f"--negatives {config.negatives} does not fit in --negative-ranks {config.negative_ranks}")
    if not 0.0 <= config.kl_co_weight <= 1.0:
        raise BadInput(f"--kl-co-weight {config.kl_co_weight}: expected a share between 0 and 1")
    done = already_complete(config, "stage2")
    if done:
        return done
    set_threads(config.threads)
    train_state.seed_everything(config.seed)
    source_dir = st.resolve_student_dir(config.student)
    model = st.load_student(source_dir, config.layers)
    if model.projection is None:
        raise BadInput(f"{source_dir} has no projection head: stage II starts from a stage-I student")
    dims = st.output_dims(model)
    if config.dims and config.dims != dims:
        raise BadInput(f"--dims {config.dims}: the stage-I student {source_dir} outputs {dims} dims")
    st.freeze_word_embeddings(model)
    run_dir = start_run(config, "stage2")
    phases = Phases(run_dir)

    teacher = open_teacher(config)
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
    key = json.dumps({"pairs": texts_digest([f"{p.query}\x1f{p.document}" for p in data.pairs]),
                      "documents": texts_digest(data.documents), "student": _student_digest(source_dir),
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
    return finish_run(model, config, run_dir, phases, "stage2", result, document_encoder)


def _co_teacher(config: Stage2Config, queries: Sequence[str], documents: Sequence[str]):
    """The co-teacher's vectors of the stage's queries and documents (None without ``--kl-co-teacher``)."""
    if config.kl_co_teacher is None:
        return None
    from tools.models.cache import ModelCache, cache_root
    from tools.train.co_teacher import co_teacher_vectors

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
