"""``care-edge bench``: latency, throughput, memory and ANN recall of one collection + query encoder.

JSON output (``care-edge bench --json``), keys stable across versions:

- ``index``: ``{"name": collection name, "path": collection directory}``
- ``encoder``: ``{"name": query encoder name, "path": query encoder directory}``
- ``n_queries``: number of benchmark queries (from ``--queries`` or the collection's ``bench_queries.txt``)
- ``threads``: concurrent threads used for ``qps_n_threads`` (``--threads``, default ``os.cpu_count()``)
- ``intra_op_threads``: onnxruntime intra-op threads of the query encoder in every pass (``--intra-op-threads``,
  default 1)
- ``k``: results per query (10)
- ``mode``: the search mode of every timed call, ``"dense"`` or ``"hybrid"`` (``--mode``, default the collection's
  ``default_mode``)
- ``open_ms``: wall time to open the collection (manifest, size checks, memory-mapped index, doc store)
- ``encoder_load_ms``: wall time to load the query encoder (manifest, tokenizer, onnxruntime session)
- ``end_to_end_ms``: ``{"p50", "p95", "p99"}`` in milliseconds of the whole single-query call (cleaning, tokenize,
  encode, ANN search, document fetch), over calls made one after another from one thread (the encoder using
  ``intra_op_threads``)
- ``stages_ms``: ``{"tokenize", "encode", "search", "lexical", "fetch"}``, each ``{"p50", "p95", "p99"}`` in milliseconds, over
  the same calls (``lexical``, BM25 + fusion in hybrid mode, is 0 in dense mode)
- ``qps_1_thread``: queries per second of that sequential pass
- ``qps_n_threads``: queries per second with ``threads`` threads each issuing single-query calls concurrently
  (every query at least once, cycled until there are at least 8 calls per thread)
- ``recall_at_10``: mean over the queries of |ANN top-10 ∩ exact top-10| / |exact top-10|, exact = brute force over
  the same stored vectors, so it measures only the HNSW approximation (of the dense side, in either mode)
- ``peak_rss_mb``: peak resident memory of the process so far (``resource.getrusage``), MiB
- ``truncated_queries``: how many queries exceeded the encoder's ``max_tokens``
- ``warmup_queries``: untimed calls made first (per pass)
"""

from __future__ import annotations

import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Sequence

import numpy as np

from edge.errors import BadInput
from edge.limits import bench_threads_limit, check_threads
from edge.search import Searcher, check_mode
from edge.text import clean_query

RECALL_K = 10
RECALL_BATCH = 8
WARMUP_QUERIES = 5
MIN_CALLS_PER_THREAD = 8
STAGES = ("tokenize", "encode", "search", "lexical", "fetch")


def percentiles(values: Sequence[float]) -> dict[str, float]:
    """p50 / p95 / p99 (linear interpolation) rounded to microseconds."""
    p50, p95, p99 = np.percentile(np.asarray(values, dtype=np.float64), [50, 95, 99])
    return {"p50": round(float(p50), 3), "p95": round(float(p95), 3), "p99": round(float(p99), 3)}


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MiB; 0.0 where the resource module is missing (Windows)."""
    try:
        import resource
    except ImportError:
        return 0.0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes.
    divisor = 1024 * 1024 if sys.platform == "darwin" else 1024
    return round(peak / divisor, 1)


def default_threads() -> int:
    return os.cpu_count() or 1


def run_bench(
    searcher: Searcher,
    queries: Sequence[str],
    *,
    threads: int,
    open_ms: float,
    encoder_load_ms: float = 0.0,
    k: int = RECALL_K,
    intra_op_threads: int = 1,
    mode: str | None = None,
) -> dict[str, Any]:
    """Run the three passes (sequential latency, concurrent throughput, recall) and return the JSON report.
    ``mode``: "dense" or "hybrid"; None means the collection's default_mode."""
    if not queries:
        raise BadInput("bench needs at least one query")
    check_threads(threads, "--threads", bench_threads_limit())
    mode = check_mode(searcher.collection.default_mode if mode is None else mode)
    warmup = list(queries[:WARMUP_QUERIES])
    for query in warmup:
        searcher.search(query, k, mode)

    stage_ms: dict[str, list[float]] = {stage: [] for stage in STAGES}
    end_to_end_ms: list[float] = []
    truncated = 0
    sequential_started = time.perf_counter()
    for query in queries:
        started = time.perf_counter()
        response = searcher.search(query, k, mode)
        end_to_end_ms.append((time.perf_counter() - started) * 1e3)
        for stage in STAGES:
            stage_ms[stage].append(response.timings_ms[stage])
        truncated += response.truncated
    sequential_s = time.perf_counter() - sequential_started

    qps_n = _concurrent_qps(searcher, queries, threads, k, mode)

    stages = {stage: percentiles(stage_ms[stage]) for stage in STAGES}
    collection = searcher.collection
    encoder = searcher.encoder
    return {
        "index": {"name": collection.name, "path": str(collection.directory)},
        "encoder": {"name": encoder.name, "path": str(encoder.directory)},
        "n_queries": len(queries),
        "threads": threads,
        "intra_op_threads": intra_op_threads,
        "k": k,
        "mode": mode,
        "open_ms": round(open_ms, 3),
        "encoder_load_ms": round(encoder_load_ms, 3),
        "end_to_end_ms": percentiles(end_to_end_ms),
        "stages_ms": stages,
        "qps_1_thread": round(len(queries) / sequential_s, 2),
        "qps_n_threads": round(qps_n, 2),
        "recall_at_10": round(recall_at_10(searcher, queries), 4),
        "peak_rss_mb": peak_rss_mb(),
        "truncated_queries": int(truncated),
        "warmup_queries": len(warmup),
    }


def _concurrent_qps(searcher: Searcher, queries: Sequence[str], threads: int, k: int, mode: str) -> float:
    calls = max(len(queries), MIN_CALLS_PER_THREAD * threads)
    workload = [queries[i % len(queries)] for i in range(calls)]
    with ThreadPoolExecutor(max_workers=threads) as pool:
        # Each worker opens its own SQLite connection on first use; keep that out of the timed run.
        list(pool.map(lambda query: searcher.search(query, k, mode), workload[:threads]))
        started = time.perf_counter()
        list(pool.map(lambda query: searcher.search(query, k, mode), workload))
        elapsed = time.perf_counter() - started
    return calls / elapsed


def recall_at_10(searcher: Searcher, queries: Sequence[str]) -> float:
    """Mean overlap of the ANN and the exact top-10 for these queries."""
    # Small batches: one batch of every query would grow onnxruntime's arena to hold the activations of all of them
    # at once, and that arena is never returned, so peak_rss_mb would measure this pass, not search.
    cleaned = [clean_query(query) for query in queries]
    vectors = np.concatenate([searcher.encoder.encode(cleaned[i:i + RECALL_BATCH]).vectors
                              for i in range(0, len(cleaned), RECALL_BATCH)])
    collection = searcher.collection
    approximate = collection.search_vectors(vectors, RECALL_K)
    exact = collection.exact_search(vectors, RECALL_K)
    overlaps = []
    for ann_hits, exact_hits in zip(approximate, exact):
        reference = set(exact_hits.keys.tolist())
        overlaps.append(len(reference & set(ann_hits.keys.tolist())) / max(1, len(reference)))
    return float(np.mean(overlaps))


def format_report(report: dict[str, Any]) -> str:
    """The human-readable form of :func:`run_bench`'s report."""
    lines = [
        f"index    {report['index']['name']}  ({report['index']['path']})",
        f"encoder  {report['encoder']['name']}  ({report['encoder']['path']})",
        f"queries  {report['n_queries']}  (+{report['warmup_queries']} warm-up), k={report['k']}, "
        f"{report['truncated_queries']} truncated, mode {report['mode']}",
        f"open     {report['open_ms']:.1f} ms (collection), {report['encoder_load_ms']:.1f} ms (query encoder)",
        f"latency (ms, 1 caller, {report['intra_op_threads']} intra-op) p50      p95      p99",
    ]
    for stage, values in [*report["stages_ms"].items(), ("end_to_end", report["end_to_end_ms"])]:
        lines.append(f"  {stage:<22}{values['p50']:>7.2f}  {values['p95']:>7.2f}  {values['p99']:>7.2f}")
    lines += [
        f"qps      {report['qps_1_thread']:.1f} on 1 thread, {report['qps_n_threads']:.1f} on {report['threads']} threads",
        f"recall@10 (ANN vs exact)  {report['recall_at_10']:.4f}",
        f"peak RSS {report['peak_rss_mb']:.1f} MiB",
    ]
    return "\n".join(lines)
