"""Evaluation tasks, built on ``tools.data.splits`` (the evaluator imports these; nothing here scores anything).

A :class:`Task` carries what one benchmark needs, by kind:

- ``retrieval``: ``queries`` (id -> text) searched in corpus ``corpus`` (a ``tools.data.registry`` corpus name, optionally only the
  documents whose ``meta["source"]`` is in ``corpus_sources``, or only the ``corpus_ids``); ``qrels`` query id ->
  {doc id: graded gain}.
  Unjudged documents count as gain 0; a document is relevant for MRR/recall/MAP when its gain >= ``relevant_gain``.
- ``rerank``: the same queries/qrels, but each query ranks only its ``candidates`` (doc ids, texts in ``documents``).
- ``sts``: ``pairs`` with a graded ``score``; ``pairclass``: ``pairs`` with score 1 (same) or 0 (different).
- ``classification``: ``train`` and ``test`` labelled texts; ``clustering``: labelled ``test`` texts.

Every query, pair sentence, classification test text and clustering text below is in ``tools.data.splits.eval_texts``;
so are the queries of the ICD wording-shift tasks of ``tools.data.icd_wording``, but for ``icd-children-*``, whose
queries are category names (training texts, as its description says).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Callable, Mapping

from tools.data.cmedir import cmedir_doc_id
from tools.data.icd10 import icd_entries
from tools.data.liveqa import liveqa_answers, liveqa_judgements
from tools.data.records import DataError, resolve_data_dir, stable_id
from tools.data.icd_wording import WORDING_BUILDERS
from tools.data.splits import (
    CMEDIR_RELEVANT_LABEL,
    chip_split,
    cmedir_split,
    icd_split,
    kuake_split,
    liveqa_eval_questions,
    medquad_split,
    normalize_text,
    toyhom_split,
)

TASK_KINDS = ("retrieval", "rerank", "sts", "pairclass", "classification", "clustering")

RETRIEVAL_METRICS = ("ndcg@10", "mrr@10", "recall@10", "recall@100")
RERANK_METRICS = ("ndcg@10", "map", "mrr@10")
STS_METRICS = ("spearman", "pearson")
PAIRCLASS_METRICS = ("ap", "max_f1", "max_accuracy")
CLASSIFICATION_METRICS = ("accuracy", "macro_f1")
CLUSTERING_METRICS = ("v_measure",)

# cMedIR rerank needs candidates worth ordering: at least this many judged titles, some relevant and some not.
CMEDIR_RERANK_MIN_CANDIDATES = 4
ICD_CODING_LANGS = ("es", "fr", "pt", "de", "zh")
LIVEQA_DOC_PREFIX = "liveqa"


@dataclass(frozen=True)
class LabeledText:
    text: str
    label: str


@dataclass(frozen=True)
class ScoredPair:
    text1: str
    text2: str
    score: float


@dataclass(frozen=True)
class Task:
    name: str
    language: str
    kind: str
    description: str
    metrics: tuple[str, ...]
    queries: Mapping[str, str] = field(default_factory=dict)
    qrels: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    relevant_gain: int = 1
    corpus: str | None = None
    corpus_sources: tuple[str, ...] | None = None
    corpus_ids: frozenset[str] | None = None
    candidates: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    documents: Mapping[str, str] = field(default_factory=dict)
    pairs: tuple[ScoredPair, ...] = ()
    train: tuple[LabeledText, ...] = ()
    test: tuple[LabeledText, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in TASK_KINDS:
            raise ValueError(f"task {self.name}: unknown kind {self.kind!r}")
        if self.kind in ("retrieval", "rerank"):
            if not self.queries or set(self.queries) != set(self.qrels):
                raise ValueError(f"task {self.name}: every query needs qrels and every qrels entry a query")
        if self.kind == "retrieval" and not self.corpus:
            raise ValueError(f"task {self.name}: a retrieval task names its corpus")
        if self.corpus_ids is not None and any(set(judged) - self.corpus_ids for judged in self.qrels.values()):
            raise ValueError(f"task {self.name}: a judged document is outside the task's corpus_ids")
        if self.kind == "rerank":
            for qid, judged in self.qrels.items():
                missing = set(judged) - set(self.candidates.get(qid, ()))
                if missing or any(doc not in self.documents for doc in self.candidates.get(qid, ())):
                    raise ValueError(f"task {self.name}: query {qid} has judged or candidate docs without text")
        if self.kind in ("sts", "pairclass") and not self.pairs:
            raise ValueError(f"task {self.name}: no pairs")
        if self.kind == "classification" and not (self.train and self.test):
            raise ValueError(f"task {self.name}: classification needs train and test texts")
        if self.kind == "clustering" and not self.test:
            raise ValueError(f"task {self.name}: no texts to cluster")


def _merge_queries(items: list[tuple[str, dict[str, int]]], prefix: str) -> tuple[dict[str, str], dict[str, dict]]:
    """Queries whose normalised text repeats become one query with the union of their qrels (max gain)."""
    texts: dict[str, str] = {}
    qrels: dict[str, dict[str, int]] = defaultdict(dict)
    for text, judged in items:
        qid = stable_id(prefix, normalize_text(text))
        texts.setdefault(qid, text)
        for doc, gain in judged.items():
            qrels[qid][doc] = max(gain, qrels[qid].get(doc, gain))
    return texts, dict(qrels)


# ------------------------------------------------------------------------------------------------ tasks


def _cmedir_retrieval(data_dir: Path) -> Task:
    items = [
        (query, {cmedir_doc_id(title): label for title, label in titles.items()})
        for query, titles in cmedir_split(data_dir).eval.items()
    ]
    queries, qrels = _merge_queries(items, "cmedir-q")
    return Task(
        name="cmedir-retrieval",
        language="zh",
        kind="retrieval",
        description="cMedIR test queries absent from dev with a label >= 2, over the distinct cMedIR titles; "
        "gain = label 0..4, relevant = label >= 2",
        metrics=RETRIEVAL_METRICS,
        queries=queries,
        qrels=qrels,
        relevant_gain=CMEDIR_RELEVANT_LABEL,
        corpus="cmed-zh",
        corpus_sources=("cmedir",),
    )


def _cmedir_rerank(data_dir: Path) -> Task:
    items = []
    documents: dict[str, str] = {}
    for query, titles in cmedir_split(data_dir).eval.items():
        labels = list(titles.values())
        if len(titles) < CMEDIR_RERANK_MIN_CANDIDATES:
            continue
        if max(labels) < CMEDIR_RELEVANT_LABEL or min(labels) >= CMEDIR_RELEVANT_LABEL:
            continue
        judged = {cmedir_doc_id(title): label for title, label in titles.items()}
        documents.update({cmedir_doc_id(title): title for title in titles})
        items.append((query, judged))
    queries, qrels = _merge_queries(items, "cmedir-q")
    return Task(
        name="cmedir-rerank",
        language="zh",
        kind="rerank",
        description=f"cMedIR eval queries with >= {CMEDIR_RERANK_MIN_CANDIDATES} judged titles, some relevant "
        "(label >= 2) and some not: rank the judged titles; gain = label",
        metrics=RERANK_METRICS,
        queries=queries,
        qrels=qrels,
        relevant_gain=CMEDIR_RELEVANT_LABEL,
        candidates={qid: tuple(sorted(judged)) for qid, judged in qrels.items()},
        documents=documents,
    )


def _toyhom_qa(data_dir: Path) -> Task:
    items = [(row.question, {row.answer_id: 1}) for row in toyhom_split(data_dir).eval]
    queries, qrels = _merge_queries(items, "toyhom-q")
    return Task(
        name="toyhom-qa",
        language="zh",
        kind="retrieval",
        description="held-out Toyhom patient questions (title + description) -> their doctor's answer, searched in "
        "all of cmed-zh",
        metrics=RETRIEVAL_METRICS,
        queries=queries,
        qrels=qrels,
        corpus="cmed-zh",
    )


def _liveqa_rerank(data_dir: Path) -> Task:
    judged = liveqa_judgements(data_dir)
    answers = liveqa_answers(data_dir)
    queries: dict[str, str] = {}
    qrels: dict[str, dict[str, int]] = {}
    documents: dict[str, str] = {}
    for question in liveqa_eval_questions(data_dir):
        queries[question.qid] = question.text
        # Grades 1 (incorrect) .. 4 (excellent) -> gains 0..3: an incorrect answer earns nothing.
        qrels[question.qid] = {f"{LIVEQA_DOC_PREFIX}:{a}": grade - 1 for a, grade in judged[question.qid].items()}
        documents.update({f"{LIVEQA_DOC_PREFIX}:{a}": answers[a] for a in judged[question.qid]})
    no_correct = sum(1 for gains in qrels.values() if max(gains.values()) < 2)
    return Task(
        name="liveqa-rerank",
        language="en",
        kind="rerank",
        description="TREC 2017 LiveQA-Med: each consumer question (original subject + message) ranks its judged "
        f"MedQuAD answers; gain = grade - 1, relevant = 'Incomplete' or 'Excellent'; {no_correct} questions have "
        "no relevant candidate",
        metrics=RERANK_METRICS,
        queries=queries,
        qrels=qrels,
        relevant_gain=2,
        candidates={qid: tuple(sorted(gains)) for qid, gains in qrels.items()},
        documents=documents,
    )


def _kuake_qqr_sts(data_dir: Path) -> Task:
    pairs = tuple(ScoredPair(p.text1, p.text2, float(p.label)) for p in kuake_split(data_dir).eval)
    return Task(
        name="kuake-qqr-sts",
        language="zh",
        kind="sts",
        description="KUAKE-QQR dev query pairs, relevance 0/1/2 (the 'NA' row dropped)",
        metrics=STS_METRICS,
        pairs=pairs,
    )


def _chip_pairs(data_dir: Path) -> tuple[ScoredPair, ...]:
    return tuple(ScoredPair(p.text1, p.text2, float(p.label)) for p in chip_split(data_dir).eval)


def _chip_sts(data_dir: Path) -> Task:
    return Task(
        name="chip-sts",
        language="zh",
        kind="sts",
        description="CHIP-2019 held-out question pairs, same intent 1 / different 0, scored by rank correlation",
        metrics=STS_METRICS,
        pairs=_chip_pairs(data_dir),
    )


def _chip_pairclass(data_dir: Path) -> Task:
    return Task(
        name="chip-pairclass",
        language="zh",
        kind="pairclass",
        description="CHIP-2019 held-out question pairs: same intent (1) or not (0) from the pair's similarity",
        metrics=PAIRCLASS_METRICS,
        pairs=_chip_pairs(data_dir),
    )


def _icd_coding(lang: str) -> Callable[[Path], Task]:
    def build(data_dir: Path) -> Task:
        codes_by_name: dict[str, set[str]] = defaultdict(set)
        for entry in icd_entries(data_dir):
            if lang in entry.names:
                codes_by_name[normalize_text(entry.names[lang])].add(entry.code)
        queries: dict[str, str] = {}
        qrels: dict[str, dict[str, int]] = {}
        ambiguous = 0
        for entry in icd_split(data_dir).eval:
            name = entry.names.get(lang)
            if not name:
                continue
            # A name several codes share ("其他指定地方", a place-of-occurrence fragment) cannot single one out.
            if len(codes_by_name[normalize_text(name)]) > 1:
                ambiguous += 1
                continue
            queries[entry.code] = name
            qrels[entry.code] = {entry.code: 1}
        return Task(
            name=f"icd-coding-{lang}",
            language=lang,
            kind="retrieval",
            description=f"held-out four-character ICD-10 codes: their {lang} name -> the code's document in icd10 "
            f"({ambiguous} names shared with another code left out)",
            metrics=RETRIEVAL_METRICS,
            queries=queries,
            qrels=qrels,
            corpus="icd10",
        )

    return build


def _medquad_qa(data_dir: Path) -> Task:
    items = [(row.question, {row.answer_id: 1}) for row in medquad_split(data_dir).eval]
    queries, qrels = _merge_queries(items, "medquad-q")
    # The answer pool is the held-out questions' own answers (as MTEB's MedicalQARetrieval does), not all 15,811:
    # the whole pool costs about 3 hours of GGUF document vectors on 2 cores (1.5 answers/s), this one 17 minutes.
    return Task(
        name="medquad-qa",
        language="en",
        kind="retrieval",
        description="held-out MedQuAD questions -> every MedQuAD answer given to that question, among the answers "
        "of all held-out questions",
        metrics=RETRIEVAL_METRICS,
        queries=queries,
        qrels=qrels,
        corpus="medquad-en",
        corpus_ids=frozenset(doc for judged in qrels.values() for doc in judged),
    )


def _labeled(rows: list[tuple[str, str]]) -> tuple[LabeledText, ...]:
    """Labelled texts with repeats (by normalised text) dropped; the first occurrence's label is kept."""
    seen: dict[str, LabeledText] = {}
    for text, label in rows:
        seen.setdefault(normalize_text(text), LabeledText(text, label))
    return tuple(seen.values())


def _toyhom_dept(data_dir: Path) -> Task:
    split = toyhom_split(data_dir)
    return Task(
        name="toyhom-dept",
        language="zh",
        kind="classification",
        description="internal-medicine department (11 classes) from the patient question; train/test = the Toyhom "
        "train/eval split",
        metrics=CLASSIFICATION_METRICS,
        train=_labeled([(row.question, row.department) for row in split.train]),
        test=_labeled([(row.question, row.department) for row in split.eval]),
    )


def _icd_chapter_cluster(data_dir: Path) -> Task:
    items = [(entry.names["en"], entry.chapter_roman) for entry in icd_split(data_dir).eval if "en" in entry.names]
    return Task(
        name="icd-chapter-cluster",
        language="en",
        kind="clustering",
        description="English names of the held-out ICD-10 codes, clustered; labels = WHO chapter (I..XXII)",
        metrics=CLUSTERING_METRICS,
        test=_labeled(items),
    )


def _task_from_spec(build: Callable[[Path], dict]) -> Callable[[Path], Task]:
    """A builder of :mod:`tools.data.icd_wording` (the keyword arguments of a Task) as a Task builder."""
    return lambda data_dir: Task(**build(data_dir))


_BUILDERS: dict[str, Callable[[Path], Task]] = {
    "cmedir-retrieval": _cmedir_retrieval,
    "toyhom-qa": _toyhom_qa,
    "cmedir-rerank": _cmedir_rerank,
    "liveqa-rerank": _liveqa_rerank,
    "kuake-qqr-sts": _kuake_qqr_sts,
    "chip-sts": _chip_sts,
    **{f"icd-coding-{lang}": _icd_coding(lang) for lang in ICD_CODING_LANGS},
    "medquad-qa": _medquad_qa,
    "chip-pairclass": _chip_pairclass,
    "toyhom-dept": _toyhom_dept,
    "icd-chapter-cluster": _icd_chapter_cluster,
    **{name: _task_from_spec(build) for name, build in WORDING_BUILDERS.items()},
}

ALL_TASKS: tuple[str, ...] = tuple(_BUILDERS)


@lru_cache(maxsize=32)
def _load_task(name: str, data_dir: Path) -> Task:
    return _BUILDERS[name](data_dir)


def load_task(name: str, data_dir: Path | str | None = None) -> Task:
    """The task ``name`` (one of :data:`ALL_TASKS`) built from the data directory. Cached: do not mutate."""
    if name not in _BUILDERS:
        raise DataError(f"unknown task {name!r}: expected one of {', '.join(ALL_TASKS)}")
    return _load_task(name, resolve_data_dir(data_dir))
