"""Run tasks for systems: the task runners (retrieval, rerank, pairs, classification, clustering), the latency
sample and its timing, and the summary (the ICD average, the quality score). ``python -m tools.evaluate`` (``cli``)
builds the systems and writes the report.

Metrics: retrieval nDCG@10 (graded, unjudged = 0, ideal DCG from all judged labels), MRR@10, R@10, R@100 (relevant =
gain >= the task's relevant gain), plus R@1/3/5 for ICD coding and their average over languages; rerank MAP, MRR@10,
nDCG@10; STS Spearman (and Pearson) of cosine; pair classification AP (and best F1 / accuracy); classification
accuracy and macro-F1 of a softmax-regression probe on frozen vectors; clustering V-measure of k-means with k = the
number of labels. Scoring is brute force, so nothing depends on ANN parameters.

Latency: each system encodes a fixed sample of queries (``--latency-queries``) one call at a time on one thread;
p50 is the latency column and the plot's x axis. ``--quick`` subsamples queries, pairs and texts with a fixed seed
(corpora stay whole). Metrics are deterministic: two runs over the same vector cache give identical numbers.
"""

from __future__ import annotations

import hashlib
import statistics
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from edge.errors import BadInput
from tools.data.records import Document
from tools.data.tasks import Task
from tools.evaluate import metrics, probes
from tools.evaluate.systems import (
    Corpus,
    System,
)

PRIMARY_METRIC = {
    "retrieval": "ndcg@10",
    "rerank": "map",
    "sts": "spearman",
    "pairclass": "ap",
    "classification": "accuracy",
    "clustering": "v_measure",
}
ICD_PREFIX = "icd-coding-"
ICD_AVERAGE = "icd-coding-avg"
ICD_METRICS = ("recall@1", "recall@3", "recall@5", "mrr@10")
ICD_PRIMARY = "mrr@10"


@dataclass(frozen=True)
class Settings:
    quick: bool = False
    seed: int = 0
    latency_queries: int = 100
    # --quick sizes: per task, drawn with a seed derived from the task name.
    quick_queries: int = 200
    quick_pairs: int = 500
    quick_train: int = 2000
    quick_test: int = 400
    quick_cluster: int = 500
    # (system, task) pairs not run, because their cost is out of reach (the GGUF over millions of characters):
    # reported as "not measured", never silently dropped.
    skip: frozenset[tuple[str, str]] = frozenset()

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"quick": self.quick, "seed": self.seed, "latency_queries": self.latency_queries}
        if self.skip:
            out["skipped"] = sorted(f"{system}:{task}" for system, task in self.skip)
        if self.quick:
            out.update(quick_queries=self.quick_queries, quick_pairs=self.quick_pairs, quick_train=self.quick_train,
                       quick_test=self.quick_test, quick_cluster=self.quick_cluster)
        return out


def subsample(items: Sequence[Any], n: int, key: str, seed: int) -> list[Any]:
    """At most ``n`` of ``items`` in their original order, drawn by a generator seeded from ``key`` and ``seed``:
    the same task gets the same sample whatever else the run contains."""
    if len(items) <= n:
        return list(items)
    digest = hashlib.sha256(f"{seed}\x1f{key}".encode("utf-8")).digest()
    rng = np.random.default_rng(int.from_bytes(digest[:8], "big"))
    keep = np.sort(rng.choice(len(items), size=n, replace=False))
    return [items[i] for i in keep]


def task_metric_names(task: Task) -> tuple[str, ...]:
    if task.name.startswith(ICD_PREFIX):
        return tuple(dict.fromkeys((*task.metrics, *ICD_METRICS)))
    return tuple(task.metrics)


def primary_metric(task_name: str, kind: str) -> str:
    return ICD_PRIMARY if task_name.startswith(ICD_PREFIX) or task_name == ICD_AVERAGE else PRIMARY_METRIC[kind]


# ------------------------------------------------------------------------------------------------ task runners


@dataclass
class TaskOutcome:
    task: Task
    size: dict[str, int]
    metrics: dict[str, dict[str, float | None] | None] = field(default_factory=dict)
    scored: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.task.kind,
            "language": self.task.language,
            "description": self.task.description,
            "primary_metric": primary_metric(self.task.name, self.task.kind),
            "size": self.size,
            "scored_queries": self.scored,
            "metrics": self.metrics,
            "seconds": {name: round(s, 2) for name, s in self.seconds.items()},
        }


CorpusLoader = Callable[[str], Sequence[Document]]


class CorpusCache:
    """Each corpus loaded once per run; a task's view of it (optionally only some sources) as a :class:`Corpus`."""

    def __init__(self, loader: CorpusLoader) -> None:
        self._loader = loader
        self._loaded: dict[str, Sequence[Document]] = {}

    def view(self, task: Task) -> Corpus:
        name = str(task.corpus)
        if name not in self._loaded:
            self._loaded[name] = self._loader(name)
        docs = self._loaded[name]
        plan = tuple(d.text for d in docs)
        if task.corpus_sources:
            docs = [d for d in docs if d.meta.get("source") in task.corpus_sources]
            key = f"{name}[{','.join(task.corpus_sources)}]"
        elif task.corpus_ids is not None:
            docs = [d for d in docs if d.id in task.corpus_ids]
            # A pool of a few documents is embedded in its own batches, not in those planned over the whole corpus.
            plan = tuple(d.text for d in docs)
            digest = hashlib.sha256("\n".join(sorted(task.corpus_ids)).encode()).hexdigest()[:12]
            key = f"{name}[{len(docs)} ids {digest}]"
        else:
            key = name
        return Corpus(key=key, ids=tuple(d.id for d in docs), texts=tuple(d.text for d in docs), plan_texts=plan)


def _ranked_queries(task: Task, settings: Settings) -> list[str]:
    qids = sorted(task.queries)
    return subsample(qids, settings.quick_queries, task.name, settings.seed) if settings.quick else qids


def run_retrieval(task: Task, systems: Sequence[System], corpora: CorpusCache, settings: Settings) -> TaskOutcome:
    corpus = corpora.view(task)
    qids = _ranked_queries(task, settings)
    names = task_metric_names(task)
    depth = metrics.ranking_depth(names) or len(corpus.ids)
    outcome = TaskOutcome(task, {"queries": len(qids), "documents": len(corpus.ids)})
    queries = [task.queries[q] for q in qids]
    judgements = [task.qrels[q] for q in qids]
    for system in systems:
        start = time.perf_counter()
        rankings = system.rank(queries, corpus, depth)
        if rankings is None:  # the system cannot search this corpus (see tools.evaluate.shipped)
            outcome.metrics[system.name] = None
            continue
        ranked_ids = [[corpus.ids[i] for i in ranking] for ranking in rankings]
        values, outcome.scored = metrics.ranking_metrics(ranked_ids, judgements, task.relevant_gain, names)
        outcome.metrics[system.name] = values
        outcome.seconds[system.name] = time.perf_counter() - start
    return outcome


def run_rerank(task: Task, systems: Sequence[System], settings: Settings) -> TaskOutcome:
    doc_ids = tuple(sorted(task.documents))
    corpus = Corpus(key=f"task:{task.name}", ids=doc_ids, texts=tuple(task.documents[d] for d in doc_ids))
    position = {doc: i for i, doc in enumerate(doc_ids)}
    qids = _ranked_queries(task, settings)
    queries = [task.queries[q] for q in qids]
    candidates = [np.array(sorted(position[d] for d in task.candidates[q]), dtype=np.int64) for q in qids]
    judgements = [task.qrels[q] for q in qids]
    outcome = TaskOutcome(task, {"queries": len(qids), "documents": len(doc_ids),
                                 "candidates": int(sum(len(c) for c in candidates))})
    for system in systems:
        start = time.perf_counter()
        orders = system.order(queries, corpus, candidates)
        if orders is None:
            outcome.metrics[system.name] = None
            continue
        ranked_ids = [[doc_ids[i] for i in order] for order in orders]
        values, outcome.scored = metrics.ranking_metrics(ranked_ids, judgements, task.relevant_gain, task.metrics)
        outcome.metrics[system.name] = values
        outcome.seconds[system.name] = time.perf_counter() - start
    return outcome


def _embed_unique(system: System, texts: Sequence[str]) -> dict[str, np.ndarray] | None:
    unique = list(dict.fromkeys(texts))
    vectors = system.embed(unique)
    if vectors is None:
        return None
    return dict(zip(unique, vectors))


def _cosines(vectors: Mapping[str, np.ndarray], left: Sequence[str], right: Sequence[str]) -> np.ndarray:
    a = np.array([vectors[t] for t in left], dtype=np.float64)
    b = np.array([vectors[t] for t in right], dtype=np.float64)
    norms = np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12)
    return (a * b).sum(axis=1) / norms


def run_pairs(task: Task, systems: Sequence[System], settings: Settings) -> TaskOutcome:
    pairs = subsample(task.pairs, settings.quick_pairs, task.name, settings.seed) if settings.quick else task.pairs
    outcome = TaskOutcome(task, {"pairs": len(pairs)})
    left, right = [p.text1 for p in pairs], [p.text2 for p in pairs]
    gold = [p.score for p in pairs]
    for system in systems:
        start = time.perf_counter()
        vectors = _embed_unique(system, left + right)
        if vectors is None:
            outcome.metrics[system.name] = None
            continue
        cos = _cosines(vectors, left, right)
        if task.kind == "sts":
            values = {"spearman": metrics.spearman(gold, cos), "pearson": metrics.pearson(gold, cos)}
        else:
            labels = [int(g) for g in gold]
            values = {"ap": metrics.pair_average_precision(labels, cos), "max_f1": metrics.max_f1(labels, cos),
                      "max_accuracy": metrics.max_accuracy(labels, cos)}
        outcome.metrics[system.name] = {name: values[name] for name in task.metrics}
        outcome.seconds[system.name] = time.perf_counter() - start
    return outcome


def run_classification(task: Task, systems: Sequence[System], settings: Settings) -> TaskOutcome:
    train, test = list(task.train), list(task.test)
    if settings.quick:
        train = subsample(train, settings.quick_train, task.name + "/train", settings.seed)
        test = subsample(test, settings.quick_test, task.name + "/test", settings.seed)
    outcome = TaskOutcome(task, {"train": len(train), "test": len(test),
                                 "classes": len({t.label for t in train})})
    for system in systems:
        start = time.perf_counter()
        vectors = _embed_unique(system, [t.text for t in train] + [t.text for t in test])
        if vectors is None:
            outcome.metrics[system.name] = None
            continue
        probe = probes.fit_softmax_probe(np.array([vectors[t.text] for t in train]), [t.label for t in train])
        predicted = probe.predict(np.array([vectors[t.text] for t in test]))
        gold = [t.label for t in test]
        outcome.metrics[system.name] = {"accuracy": metrics.accuracy(gold, predicted),
                                        "macro_f1": metrics.macro_f1(gold, predicted)}
        outcome.seconds[system.name] = time.perf_counter() - start
    return outcome


def run_clustering(task: Task, systems: Sequence[System], settings: Settings) -> TaskOutcome:
    items = subsample(task.test, settings.quick_cluster, task.name, settings.seed) if settings.quick else task.test
    k = len({t.label for t in items})
    outcome = TaskOutcome(task, {"texts": len(items), "clusters": k})
    for system in systems:
        start = time.perf_counter()
        vectors = _embed_unique(system, [t.text for t in items])
        if vectors is None:
            outcome.metrics[system.name] = None
            continue
        clusters = probes.kmeans(np.array([vectors[t.text] for t in items]), k, seed=settings.seed)
        outcome.metrics[system.name] = {"v_measure": metrics.v_measure([t.label for t in items],
                                                                       clusters.labels.tolist())}
        outcome.seconds[system.name] = time.perf_counter() - start
    return outcome


def run_task(task: Task, systems: Sequence[System], corpora: CorpusCache, settings: Settings) -> TaskOutcome:
    if task.kind == "retrieval":
        return run_retrieval(task, systems, corpora, settings)
    if task.kind == "rerank":
        return run_rerank(task, systems, settings)
    if task.kind in ("sts", "pairclass"):
        return run_pairs(task, systems, settings)
    if task.kind == "classification":
        return run_classification(task, systems, settings)
    return run_clustering(task, systems, settings)


# ------------------------------------------------------------------------------------------------ latency


def latency_sample(tasks: Sequence[Task], n: int, seed: int) -> list[str]:
    """``n`` query texts drawn (fixed seed) from the search queries of the run's tasks, or from their pair and
    test texts when the run has no search task."""
    texts: list[str] = []
    for task in sorted(tasks, key=lambda t: t.name):
        texts.extend(task.queries[q] for q in sorted(task.queries))
    if not texts:
        for task in sorted(tasks, key=lambda t: t.name):
            texts.extend(p.text1 for p in task.pairs)
            texts.extend(t.text for t in task.test)
    return subsample(list(dict.fromkeys(texts)), n, "latency", seed)


def measure_latency(system: System, sample: Sequence[str], warmup: int = 3) -> dict[str, Any]:
    """Milliseconds per single-query encode call (one thread), over the sample, after a few warm-up calls."""
    for text in sample[:warmup]:
        system.encode_one(text)
    times = []
    for text in sample:
        start = time.perf_counter()
        system.encode_one(text)
        times.append((time.perf_counter() - start) * 1e3)
    ordered = sorted(times)
    return {
        "p50_ms": round(statistics.median(ordered), 3),
        "p90_ms": round(ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))], 3),
        "mean_ms": round(statistics.fmean(ordered), 3),
        "queries": len(ordered),
        "threads": 1,
    }


# ------------------------------------------------------------------------------------------------ summary


def icd_average(outcomes: Sequence[TaskOutcome], system_names: Sequence[str]) -> dict[str, Any] | None:
    """Per system, each ICD-coding metric averaged over the languages run."""
    icd = [o for o in outcomes if o.task.name.startswith(ICD_PREFIX)]
    if not icd:
        return None
    names = task_metric_names(icd[0].task)
    averaged: dict[str, dict[str, float | None] | None] = {}
    for system in system_names:
        per_lang = [o.metrics.get(system) for o in icd]
        if any(m is None for m in per_lang):
            averaged[system] = None
            continue
        averaged[system] = {
            name: (None if any(m[name] is None for m in per_lang) else float(np.mean([m[name] for m in per_lang])))
            for name in names
        }
    return {"languages": [o.task.language for o in icd], "primary_metric": ICD_PRIMARY, "metrics": averaged}


def quality_scores(outcomes: Sequence[TaskOutcome], icd: dict[str, Any] | None,
                   system_names: Sequence[str]) -> tuple[dict[str, float | None], list[str]]:
    """Per system, the mean primary metric over the search tasks (retrieval and rerank; ICD coding counted once,
    as its average over languages): the y axis of the plot."""
    columns: list[tuple[str, Mapping[str, Any]]] = []
    for o in outcomes:
        if o.task.kind in ("retrieval", "rerank") and not o.task.name.startswith(ICD_PREFIX):
            columns.append((o.task.name, {s: (o.metrics.get(s) or {}).get(primary_metric(o.task.name, o.task.kind))
                                          for s in system_names}))
    if icd is not None:
        columns.append((ICD_AVERAGE, {s: (icd["metrics"].get(s) or {}).get(ICD_PRIMARY) for s in system_names}))
    scores: dict[str, float | None] = {}
    for system in system_names:
        values = [col[system] for _, col in columns]
        scores[system] = float(np.mean(values)) if values and all(v is not None for v in values) else None
    return scores, [name for name, _ in columns]


# ------------------------------------------------------------------------------------------------ the run


def evaluate(
    tasks: Sequence[Task],
    systems: Sequence[System],
    *,
    corpus_loader: CorpusLoader,
    settings: Settings = Settings(),
    log: Callable[[str], None] = lambda line: None,
) -> dict[str, Any]:
    """Run every task for every system; returns the report body (everything but the provenance)."""
    names = [s.name for s in systems]
    if len(set(names)) != len(names):
        raise BadInput(f"system names must be unique, got {', '.join(names)}")
    # Latency first: a system that cannot encode a query fails the run before hours of scoring, and the timings
    # are taken before this process has loaded corpora and bulk encoders.
    latency: dict[str, Any] = {}
    if settings.latency_queries > 0:
        sample = latency_sample(tasks, settings.latency_queries, settings.seed)
        for system in systems:
            latency[system.name] = measure_latency(system, sample)
            log(f"latency {system.name}: p50 {latency[system.name]['p50_ms']} ms")
    corpora = CorpusCache(corpus_loader)
    outcomes = []
    for task in tasks:
        start = time.perf_counter()
        running = [s for s in systems if (s.name, task.name) not in settings.skip]
        outcome = run_task(task, running, corpora, settings)
        for system in systems:
            outcome.metrics.setdefault(system.name, None)
        outcome.metrics = {system.name: outcome.metrics[system.name] for system in systems}
        outcomes.append(outcome)
        primary = primary_metric(task.name, task.kind)
        shown = ", ".join(f"{s}={_fmt((outcome.metrics.get(s) or {}).get(primary))}" for s in names)
        log(f"{task.name} ({primary}): {shown} [{time.perf_counter() - start:.0f} s]")
    icd = icd_average(outcomes, names)
    quality, quality_tasks = quality_scores(outcomes, icd, names)
    return {
        "settings": settings.as_dict(),
        "systems": {s.name: {**s.info(), "latency": latency.get(s.name)} for s in systems},
        "tasks": {o.task.name: o.as_dict() for o in outcomes},
        "summary": {
            ICD_AVERAGE: icd,
            "quality": {"definition": "mean primary metric over the search tasks (ICD coding counted once)",
                        "tasks": quality_tasks, "scores": quality},
        },
    }


def metrics_only(report: Mapping[str, Any]) -> dict[str, Any]:
    """The deterministic part of a report: every metric of every task and the summary (no timings)."""
    return {
        "tasks": {name: {"size": t["size"], "metrics": t["metrics"]} for name, t in report["tasks"].items()},
        "summary": report["summary"],
    }


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"
