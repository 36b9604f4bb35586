"""Choose usearch parameters by measurement: recall@10 against exact search, file size and search time for each
dtype and connectivity, over a corpus's cached document vectors and real held-out queries.

    python -m tools.experiments.index_report --corpus cmed-zh --encoder embeddinggemma --dims 768,256 \
        --queries-file Q.txt --query-prompt query --out prebuilt_index/reports/index_params_cmed-zh
    python -m tools.experiments.index_report --corpus icd10 --encoder onnx:prebuilt_index/query_encoder --query-encoder \
        prebuilt_index/query_encoder --out prebuilt_index/reports/index_params_icd10_e5

Document vectors must already be in the vector cache (`tools.build.index embed`). Query vectors come from the
cache too (the LLM with its query prompt) or from a query-encoder folder (`--query-encoder`).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import edge._native  # noqa: F401  (onnxruntime before usearch: see edge/_native.py)
from edge.files import atomic_write_bytes, atomic_write_json
from tools.build.doc_encoder import VectorCache, truncate_dims
from tools.build.index import open_encoder, prompt_for
from tools.data.icd10 import DEFAULT_ICD_LANGS
from tools.data.records import DEFAULT_DATA_DIR
from tools.data.registry import load_corpus
from tools.models.cache import ModelCache, cache_root
from tools.provenance import created_info

K = 10


def exact_top_k(docs: np.ndarray, queries: np.ndarray, k: int = K) -> np.ndarray:
    scores = queries @ docs.T
    top = np.argpartition(-scores, k, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1)
    return np.take_along_axis(top, order, axis=1)


def measure(docs: np.ndarray, queries: np.ndarray, exact: np.ndarray, dtype: str, connectivity: int,
            expansions: list[int]) -> list[dict]:
    """One index per (dtype, connectivity); the search expansion only changes the search, so it is swept on it."""
    from usearch.index import Index

    index = Index(ndim=docs.shape[1], metric="cos", dtype=dtype, connectivity=connectivity, expansion_add=128)
    start = time.perf_counter()
    index.add(np.arange(len(docs), dtype=np.uint64), docs, threads=1)
    build_s = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "v.usearch"
        index.save(str(path))
        size = path.stat().st_size
    rows = []
    for expansion in expansions:
        index.expansion_search = expansion
        latencies = []
        found = []
        for q in queries:
            t = time.perf_counter()
            hits = index.search(q, K)
            latencies.append((time.perf_counter() - t) * 1e3)
            found.append(set(int(x) for x in hits.keys))
        recall = float(np.mean([len(f & set(e.tolist())) / K for f, e in zip(found, exact)]))
        rows.append({"dtype": dtype, "connectivity": connectivity, "expansion_search": expansion,
                     "ndim": int(docs.shape[1]), "recall_at_10": round(recall, 4), "size_mb": round(size / 2**20, 2),
                     "search_p50_ms": round(float(np.median(latencies)), 3), "build_s": round(build_s, 1)})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.experiments.index_report", description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", required=True)
    parser.add_argument("--icd-langs")
    parser.add_argument("--limit", type=int, help="only the first N documents (e.g. 19241 = cmed-zh's cMedIR titles)")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--encoder", default="embeddinggemma")
    parser.add_argument("--dims", default="768", help="comma-separated Matryoshka dims to try")
    parser.add_argument("--dtypes", default="f32,f16,i8")
    parser.add_argument("--connectivity", default="16")
    parser.add_argument("--expansion-search", default="64,128,256")
    parser.add_argument("--queries-file", type=Path, help="queries, one per line (default: the corpus's bench set)")
    parser.add_argument("--query-prompt", choices=["query", "none"], default="query")
    parser.add_argument("--query-encoder", type=Path, help="encode queries with this query-encoder folder")
    parser.add_argument("--out", type=Path, required=True, help="output path without extension (.json and .md)")
    args = parser.parse_args(argv)

    from tools.build.index import default_bench_queries

    models = ModelCache(cache_root())
    langs = tuple(args.icd_langs.split(",")) if args.icd_langs else DEFAULT_ICD_LANGS
    docs = load_corpus(args.corpus, args.data_dir, langs=langs)[: args.limit]
    encoder = open_encoder(args.encoder, models, threads=1)
    doc_cache = VectorCache(models.root, encoder.identity, prompt_for("document", encoder))
    missing = doc_cache.missing([d.text for d in docs])
    if missing:
        print(f"error: {len(missing)} documents of {args.corpus} are not embedded yet: run "
              f"`python -m tools.build.index embed --corpus {args.corpus} --encoder {args.encoder}`", file=sys.stderr)
        return 3
    full, _ = doc_cache.get([d.text for d in docs])
    if args.queries_file:
        queries = [q.strip() for q in args.queries_file.read_text(encoding="utf-8").splitlines() if q.strip()]
    else:
        queries = default_bench_queries(args.corpus, args.data_dir, n=400) or []
    if args.query_encoder:
        from edge.encoder import QueryEncoder

        q_full = QueryEncoder(args.query_encoder).encode(queries).vectors
    else:
        q_cache = VectorCache(models.root, encoder.identity, prompt_for(args.query_prompt))
        missing_q = q_cache.missing(queries)
        if missing_q:
            print(f"error: {len(missing_q)} queries are not embedded yet: run `python -m tools.build.index embed "
                  f"--prompt {args.query_prompt} --texts-file {args.queries_file}`", file=sys.stderr)
            return 3
        q_full, _ = q_cache.get(queries)

    rows = []
    for dims in [int(d) for d in args.dims.split(",")]:
        doc_vecs = truncate_dims(full, dims) if dims != full.shape[1] else full
        q_vecs = truncate_dims(q_full, dims) if dims != q_full.shape[1] else q_full
        exact = exact_top_k(doc_vecs, q_vecs)
        for dtype in args.dtypes.split(","):
            for connectivity in [int(c) for c in args.connectivity.split(",")]:
                for row in measure(doc_vecs, q_vecs, exact, dtype, connectivity,
                                   [int(e) for e in args.expansion_search.split(",")]):
                    print(json.dumps(row), flush=True)
                    rows.append(row)
    report = {
        "corpus": args.corpus, "documents": len(docs), "queries": len(queries),
        "document_encoder": encoder.identity, "query_side": str(args.query_encoder or f"LLM {args.query_prompt}"),
        "command": "python -m tools.experiments.index_report " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:])),
        "created": created_info("tools.experiments.index_report"), "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out.with_suffix(".json"), report)
    lines = [f"# usearch parameters: {args.corpus} ({len(docs)} documents, {len(queries)} held-out queries)", "",
             f"Document encoder `{encoder.identity['name']}`; queries: {report['query_side']}. "
             "Recall@10 is against exact (brute-force) search over the same vectors.", "",
             f"Command: `{report['command']}`", "",
             "| dims | dtype | connectivity | expansion_search | recall@10 | size (MiB) | search p50 (ms) |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['ndim']} | {r['dtype']} | {r['connectivity']} | {r['expansion_search']} | {r['recall_at_10']:.4f} "
              f"| {r['size_mb']} | {r['search_p50_ms']} |" for r in rows]
    atomic_write_bytes(args.out.with_suffix(".md"), ("\n".join(lines) + "\n").encode("utf-8"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
