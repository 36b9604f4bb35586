"""Which text the lexical side of a collection indexes, and how its ranking is fused with the dense one, measured
through the runtime's own parts on the ICD-10 wording-shift tasks, the ICD coding tasks and cMedIR.

    python -m tools.experiments.lexical_fusion_probe [--tasks T,...] [--out prebuilt_index/reports] [--name probe-lexical-fusion]

For each query, the shipped query encoder (one query per call, as ``care-edge search`` encodes) and the collection's
HNSW index give the dense top ``FUSION_DEPTH``; BM25 (``edge.hybrid``'s tokenizer and weights, via ``tools.evaluate.bm25``)
over each candidate lexical text of the collection's documents (``edge.hybrid.lexical_texts``) gives the lexical
top ``FUSION_DEPTH``. Every fusion rule of ``FUSIONS`` then ranks the union, the ranking is cut to the task's corpus
(as ``tools.evaluate.shipped`` does) and scored. Nothing here is shipped: it chooses what the collection's manifest
records (``search.lexical.fields``, ``search.fusion``, ``search.default_mode``).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sqlite3
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import edge._native  # noqa: F401  (onnxruntime before usearch)
import numpy as np

from edge import formats
from edge.collection import Collection
from edge.encoder import QueryEncoder
from edge.hybrid import FUSION_DEPTH, FUSION_K, lexical_texts, score_fusion, weighted_rrf
from edge.text import clean_query
from tools.data.registry import load_corpus
from tools.data.tasks import load_task
from tools.evaluate import metrics
from tools.evaluate.bm25 import BM25Index
from tools.provenance import created_info

REPO = Path(__file__).resolve().parents[2]
DEFAULT_TASKS = (
    "icd-parent-en,icd-parent-es,icd-parent-fr,icd-parent-pt,icd-parent-de,icd-parent-zh,icd-parent-it,"
    "icd-edition-zh,icd-edition-es,icd-zeroshot-it,icd-children-en,icd-children-es,icd-children-fr,icd-children-pt,"
    "icd-children-de,icd-children-zh,icd-coding-es,icd-coding-fr,icd-coding-pt,icd-coding-de,icd-coding-zh,"
    "cmedir-retrieval"
)
COLLECTION_OF_CORPUS = {"icd10": "icd10", "cmed-zh": "cmed-zh"}
# Lexical texts tried per collection: the document text alone (what ships before this probe), and with the names
# every language gives the code (ICD only: cmed-zh's meta holds no other wording).
FIELD_SETS: dict[str, dict[str, tuple[str, ...]]] = {
    "icd10": {"text": ("text",), "text+names": ("text", "meta.names.*"),
              "code+names": ("meta.code", "meta.names.*"),
              "code+names+aliases": ("meta.code", "meta.names.*", "meta.aliases.*")},
    "cmed-zh": {"text": ("text",)},
}
METRICS = ("recall@1", "recall@5", "mrr@10", "ndcg@10")


@dataclass
class Lists:
    dense_keys: list[np.ndarray]
    dense_scores: list[np.ndarray]
    lexical: dict[str, list[tuple[np.ndarray, np.ndarray]]]  # field set -> per query (keys, scores)


def _rrf(dense_weight: float, lexical_weight: float, k: int = FUSION_K) -> Callable[..., np.ndarray]:
    def fuse(dk, ds, lk, ls) -> np.ndarray:
        return weighted_rrf([dk, lk], [dense_weight, lexical_weight], k)[0]
    return fuse


def _dense_only(dk, ds, lk, ls) -> np.ndarray:
    return dk


def _lexical_only(dk, ds, lk, ls) -> np.ndarray:
    return lk


def _scores_convex(alpha: float) -> Callable[..., np.ndarray]:
    """alpha * dense cosine (min-max over its list) + (1 - alpha) * BM25 / its best score: the runtime's
    ``scores`` fusion (``edge.hybrid.score_fusion``)."""
    def fuse(dk, ds, lk, ls) -> np.ndarray:
        return score_fusion(dk, ds, lk, ls, alpha, 1 - alpha)[0]
    return fuse


def _margin_rule(threshold: float, low: float) -> Callable[..., np.ndarray]:
    """RRF whose lexical weight is 1 when BM25's best beats its second by ``threshold`` (relative), else ``low``:
    a lexical list without a clear winner only matched common words."""
    def fuse(dk, ds, lk, ls) -> np.ndarray:
        sure = len(ls) == 1 or (len(ls) > 1 and (ls[0] - ls[1]) / max(float(ls[0]), 1e-9) >= threshold)
        return weighted_rrf([dk, lk], [1.0, 1.0 if sure else low], FUSION_K)[0]
    return fuse


FUSIONS: dict[str, Callable[..., np.ndarray]] = {
    "dense": _dense_only,
    "bm25": _lexical_only,
    "rrf": _rrf(1.0, 1.0),
    **{f"rrf-lex{w}": _rrf(1.0, w) for w in (0.25, 0.5, 0.75, 1.5)},
    "rrf-k20": _rrf(1.0, 1.0, 20),
    **{f"rrf-k20-lex{w}": _rrf(1.0, w, 20) for w in (0.5,)},
    **{f"rrf-lex{w}": _rrf(1.0, w) for w in (0.3, 0.4)},
    **{f"convex-{a}": _scores_convex(a) for a in (0.5, 0.6, 0.65, 0.7, 0.75, 0.8)},
    **{f"margin-{t}-{low}": _margin_rule(t, low) for t in (0.1, 0.25) for low in (0.25, 0.5)},
}


def _collection_docs(directory: Path) -> tuple[list[str], list[str], list[dict]]:
    uri = (directory / formats.DOCS_FILE).resolve().as_uri() + "?mode=ro&immutable=1"
    connection = sqlite3.connect(uri, uri=True)
    try:
        rows = connection.execute("SELECT id, text, meta FROM docs ORDER BY key").fetchall()
    finally:
        connection.close()
    return [r[0] for r in rows], [r[1] for r in rows], [json.loads(r[2]) for r in rows]


def gather(collection: Collection, encoder: QueryEncoder, queries: Sequence[str],
           indexes: Mapping[str, BM25Index]) -> Lists:
    lists = Lists([], [], {name: [] for name in indexes})
    for query in queries:
        cleaned = clean_query(query)
        hits = collection.search_vectors(encoder.encode([cleaned]).vectors, FUSION_DEPTH)[0]
        lists.dense_keys.append(hits.keys)
        lists.dense_scores.append(hits.scores)
        for name, index in indexes.items():
            scores = index.scores(cleaned)
            best = np.lexsort((np.arange(scores.size), -scores))[:FUSION_DEPTH]
            best = best[scores[best] > 0]
            lists.lexical[name].append((best.astype(np.int64), scores[best]))
    return lists


def score_task(task, ids: Sequence[str], lists: Lists, qids: Sequence[str]) -> dict[str, dict[str, Any]]:
    allowed = None if task.corpus_ids is None else task.corpus_ids
    if task.corpus_sources:
        allowed = {d.id for d in load_corpus(str(task.corpus)) if d.meta.get("source") in task.corpus_sources}
    judgements = [task.qrels[q] for q in qids]
    out: dict[str, dict[str, Any]] = {}
    for fields, lexical in lists.lexical.items():
        for fusion_name, fuse in FUSIONS.items():
            if fusion_name == "dense" and fields != next(iter(lists.lexical)):
                continue
            rankings = []
            for i in range(len(qids)):
                keys = fuse(lists.dense_keys[i], lists.dense_scores[i], *lexical[i])
                ranked = [ids[k] for k in keys.tolist() if allowed is None or ids[k] in allowed]
                rankings.append(ranked[:10])
            values, _ = metrics.ranking_metrics(rankings, judgements, task.relevant_gain, METRICS)
            label = "dense" if fusion_name == "dense" else f"{fields}/{fusion_name}"
            out[label] = {name: round(value, 4) for name, value in values.items() if value is not None}
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.experiments.lexical_fusion_probe",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", default=DEFAULT_TASKS)
    parser.add_argument("--index-root", type=Path, default=REPO / "prebuilt_index")
    parser.add_argument("--encoder", type=Path, default=REPO / "prebuilt_index" / "query_encoder")
    parser.add_argument("--out", type=Path, default=REPO / "prebuilt_index" / "reports")
    parser.add_argument("--name", default="probe-lexical-fusion")
    parser.add_argument("--field-sets", help="only these field sets (comma-separated labels of FIELD_SETS)")
    args = parser.parse_args(argv)
    encoder = QueryEncoder(args.encoder, threads=1)
    results: dict[str, Any] = {}
    prepared: dict[str, tuple[Collection, list[str], dict[str, BM25Index]]] = {}
    for name in args.tasks.split(","):
        task = load_task(name)
        collection_name = COLLECTION_OF_CORPUS[str(task.corpus)]
        if collection_name not in prepared:
            directory = args.index_root / collection_name
            ids, texts, metas = _collection_docs(directory)
            wanted = args.field_sets.split(",") if args.field_sets else list(FIELD_SETS[collection_name])
            indexes = {label: BM25Index(lexical_texts(texts, metas, fields))
                       for label, fields in FIELD_SETS[collection_name].items() if label in wanted or label == "text"}
            prepared[collection_name] = (Collection(directory), ids, indexes)
        collection, ids, indexes = prepared[collection_name]
        qids = sorted(task.queries)
        start = time.perf_counter()
        lists = gather(collection, encoder, [task.queries[q] for q in qids], indexes)
        results[name] = {"queries": len(qids), "language": task.language, "metrics": score_task(task, ids, lists, qids)}
        best = max(results[name]["metrics"].items(), key=lambda kv: kv[1].get("recall@5", 0.0))
        print(f"{name}: dense R@5 {results[name]['metrics']['dense'].get('recall@5')}, best {best[0]} "
              f"{best[1].get('recall@5')} [{time.perf_counter() - start:.0f} s]", file=sys.stderr, flush=True)
    report = {"format": "care-edge/probe", "created": created_info(
        "tools.experiments.lexical_fusion_probe",
        "python -m tools.experiments.lexical_fusion_probe " + shlex.join(list(argv or sys.argv[1:]))),
        "query_encoder": encoder.name, "fusion_depth": FUSION_DEPTH, "field_sets": FIELD_SETS,
        "fusions": list(FUSIONS), "tasks": results}
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"{args.name}.json"
    path.write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
