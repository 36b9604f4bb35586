"""``care-edge bench``: latency (by stage, by query length, over repeated rounds), throughput, memory and ANN
recall of one collection + query encoder, with the machine and software it ran on; and the recall / latency curve
of the index's search expansion (``--ef-curve``).

The JSON keys are documented in one place, docs/BENCHMARKS.md ("Bench JSON keys"); existing keys keep their name and
meaning, new ones are added. ``care-edge bench compare`` (:mod:`edge.bench_compare`) reads these reports.
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from typing import Any, Sequence

import numpy as np

from edge.checks import positive_int
from edge.errors import BadInput
from edge.files import canonical_json
from edge.hybrid import fuse_hybrid, fusion_depth
from edge.limits import MAX_EXPANSION_SEARCH, bench_threads_limit, check_threads
from edge.machine import SOFTWARE_PACKAGES, machine_info, software_info
from edge.search import Searcher, check_mode
from edge.text import clean_query

RECALL_K = 10
RECALL_BATCH = 8
WARMUP_QUERIES = 5
MIN_CALLS_PER_THREAD = 8
DEFAULT_ROUNDS = 3
# The recall@10 (ANN against exact) an index's expansion_search is chosen to reach.
TARGET_RECALL = 0.98
STAGES = ("tokenize", "encode", "search", "lexical", "fetch")
# Encoder input lengths (tokens, prompt and special tokens included) that by_query_tokens groups queries into:
# encoding time grows with length, so two machines are compared on the same mix only bucket by bucket.
TOKEN_BUCKETS: tuple[tuple[int, int | None], ...] = ((1, 8), (9, 16), (17, 32), (33, 64), (65, 128), (129, None))


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


def bucket_label(tokens: int) -> str:
    """The :data:`TOKEN_BUCKETS` label of an encoder input of ``tokens`` tokens, e.g. ``"9-16"`` or ``"129+"``."""
    for low, high in TOKEN_BUCKETS:
        if high is None or tokens <= high:
            return f"{low}+" if high is None else f"{low}-{high}"
    raise AssertionError("the last bucket is open-ended")


def artifact_digest(manifest: dict[str, Any]) -> str:
    """sha256 of an artifact's manifest ``files`` table (every file's size and sha256): one value that changes
    exactly when any of its files does. The per-file hashes are the manifest's, checked by ``info --verify``."""
    return hashlib.sha256(canonical_json(manifest["files"]).encode("utf-8")).hexdigest()


def describe_artifacts(searcher: Searcher) -> tuple[dict[str, Any], dict[str, Any]]:
    """The report's ``index`` and ``encoder`` objects: name and path, plus what identifies the artifact."""
    collection, encoder = searcher.collection, searcher.encoder
    index = {
        "name": collection.name,
        "path": str(collection.directory),
        "sha256": artifact_digest(collection.manifest),
        "files_sha256": {name: entry["sha256"] for name, entry in collection.manifest["files"].items()},
        "documents": collection.count,
        "dtype": collection.manifest["index"].get("dtype"),
        "expansion_search": int(collection.index.expansion_search),
    }
    encoder_info = {
        "name": encoder.name,
        "path": str(encoder.directory),
        "sha256": artifact_digest(encoder.manifest),
        "files_sha256": {name: entry["sha256"] for name, entry in encoder.manifest["files"].items()},
        "max_tokens": encoder.max_tokens,
    }
    return index, encoder_info


def run_context() -> dict[str, Any]:
    """``created_at``, ``argv``, ``machine`` and ``software``: where and how a report was made."""
    return {
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "argv": list(sys.argv),
        "machine": machine_info(),
        "software": software_info(),
    }


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
    rounds: int = DEFAULT_ROUNDS,
) -> dict[str, Any]:
    """Run the passes (``rounds`` sequential latency passes, concurrent throughput, recall) and return the JSON
    report. ``mode``: "dense" or "hybrid"; None means the collection's default_mode."""
    if not queries:
        raise BadInput("bench needs at least one query")
    check_threads(threads, "--threads", bench_threads_limit())
    positive_int(rounds, "--rounds")
    mode = check_mode(searcher.collection.default_mode if mode is None else mode)
    context = run_context()
    token_counts = searcher.encoder.token_counts([clean_query(query) for query in queries])
    warmup = list(queries[:WARMUP_QUERIES])
    for query in warmup:
        searcher.search(query, k, mode)

    # Rounds run back to back over the same queries; each round's p50 is kept so that a reader (and `bench compare`)
    # can tell a difference between two reports from this machine's own round-to-round drift.
    stage_ms: dict[str, list[float]] = {stage: [] for stage in STAGES}
    end_to_end_ms: list[float] = []
    round_p50: dict[str, list[float]] = {stage: [] for stage in ("end_to_end", *STAGES)}
    truncated = 0
    sequential_s = 0.0
    for _ in range(rounds):
        round_stages: dict[str, list[float]] = {stage: [] for stage in STAGES}
        round_end_to_end: list[float] = []
        round_started = time.perf_counter()
        for query in queries:
            started = time.perf_counter()
            response = searcher.search(query, k, mode)
            round_end_to_end.append((time.perf_counter() - started) * 1e3)
            for stage in STAGES:
                round_stages[stage].append(response.timings_ms[stage])
            truncated += response.truncated
        sequential_s += time.perf_counter() - round_started
        end_to_end_ms += round_end_to_end
        round_p50["end_to_end"].append(percentiles(round_end_to_end)["p50"])
        for stage in STAGES:
            stage_ms[stage] += round_stages[stage]
            round_p50[stage].append(percentiles(round_stages[stage])["p50"])

    qps_n = _concurrent_qps(searcher, queries, threads, k, mode)

    stages = {stage: percentiles(stage_ms[stage]) for stage in STAGES}
    index, encoder = describe_artifacts(searcher)
    return {
        "index": index,
        "encoder": encoder,
        "n_queries": len(queries),
        "threads": threads,
        "intra_op_threads": intra_op_threads,
        "k": k,
        "mode": mode,
        "open_ms": round(open_ms, 3),
        "encoder_load_ms": round(encoder_load_ms, 3),
        "end_to_end_ms": percentiles(end_to_end_ms),
        "stages_ms": stages,
        "qps_1_thread": round(len(queries) * rounds / sequential_s, 2),
        "qps_n_threads": round(qps_n, 2),
        "recall_at_10": round(recall_at_10(searcher, queries), 4),
        "peak_rss_mb": peak_rss_mb(),
        "truncated_queries": int(truncated) // rounds,
        "warmup_queries": len(warmup),
        "rounds": rounds,
        "round_p50_ms": round_p50,
        "round_spread_pct": {stage: spread_pct(values) for stage, values in round_p50.items()},
        "by_query_tokens": by_query_tokens(token_counts, end_to_end_ms, stage_ms["encode"], rounds),
        **context,
    }


def spread_pct(values: Sequence[float]) -> float:
    """(max - min) / median of a stage's per-round p50s, in percent (0 for one round or an all-zero stage)."""
    middle = float(np.median(values))
    return round((max(values) - min(values)) / middle * 100, 1) if middle > 0 else 0.0


def by_query_tokens(token_counts: Sequence[int], end_to_end_ms: Sequence[float], encode_ms: Sequence[float],
                    rounds: int) -> dict[str, dict[str, Any]]:
    """Latency per :data:`TOKEN_BUCKETS` bucket (non-empty buckets only, shortest first); the timing lists hold
    ``rounds`` passes over the queries in order."""
    labels = [bucket_label(count) for count in token_counts] * rounds
    buckets: dict[str, dict[str, Any]] = {}
    for low, high in TOKEN_BUCKETS:
        label = bucket_label(low)
        chosen = [i for i, name in enumerate(labels) if name == label]
        if not chosen:
            continue
        buckets[label] = {
            "n_queries": len(chosen) // rounds,
            "end_to_end_ms": percentiles([end_to_end_ms[i] for i in chosen]),
            "encode_ms": percentiles([encode_ms[i] for i in chosen]),
        }
    return buckets


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
    vectors = encode_queries(searcher, queries)
    collection = searcher.collection
    approximate = [hits.keys for hits in collection.search_vectors(vectors, RECALL_K)]
    exact = [hits.keys for hits in collection.exact_search(vectors, RECALL_K)]
    return _overlap(approximate, exact)


def encode_queries(searcher: Searcher, queries: Sequence[str]) -> np.ndarray:
    """The query vectors, encoded in small batches (see :func:`recall_at_10`)."""
    cleaned = [clean_query(query) for query in queries]
    return np.concatenate([searcher.encoder.encode(cleaned[i:i + RECALL_BATCH]).vectors
                           for i in range(0, len(cleaned), RECALL_BATCH)])


def _overlap(found: Sequence[np.ndarray], reference: Sequence[np.ndarray]) -> float:
    """Mean |found ∩ reference| / |reference| over queries."""
    return float(np.mean([len(set(ref.tolist()) & set(got.tolist())) / max(1, len(ref))
                          for got, ref in zip(found, reference)]))


def parse_expansions(text: str) -> list[int]:
    """``"16,32,64"`` -> [16, 32, 64] (1..MAX_EXPANSION_SEARCH, ascending, no repeats)."""
    try:
        values = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise BadInput(f"--ef-curve takes comma-separated positive integers, got {text!r}") from None
    if not values or values[0] < 1 or values[-1] > MAX_EXPANSION_SEARCH:
        raise BadInput(f"--ef-curve takes comma-separated integers from 1 to {MAX_EXPANSION_SEARCH}, got {text!r}")
    return values


def ef_curve(searcher: Searcher, queries: Sequence[str], expansions: Sequence[int], *, mode: str | None = None,
             rounds: int = DEFAULT_ROUNDS) -> dict[str, Any]:
    """Recall against exact search and single-query search time for each ``expansion_search`` (HNSW ``ef``).

    The dense side of a search asks the index for ``depth`` neighbours: k (10) in dense mode, the fusion depth in
    hybrid mode, so search time is measured at that depth. In hybrid mode the curve also gives the recall of the
    dense top-``depth`` and of the fused top-10 (ANN dense + BM25 against exact dense + BM25), the ranking a user
    actually gets. Timing rounds are interleaved over the ``ef`` values so that drift in the machine's load spreads
    over all of them alike. The collection's own ``expansion_search`` is restored afterwards."""
    if not queries:
        raise BadInput("--ef-curve needs at least one query")
    positive_int(rounds, "--rounds")
    mode = check_mode(searcher.collection.default_mode if mode is None else mode)
    collection = searcher.collection
    hybrid = mode == "hybrid"
    lexical_index = collection.require_lexical() if hybrid else None
    depth = fusion_depth(RECALL_K) if hybrid else RECALL_K
    context = run_context()
    vectors = encode_queries(searcher, queries)
    exact = [hits.keys for hits in collection.exact_search(vectors, depth)]
    exact_top = [keys[:RECALL_K] for keys in exact]
    lexical: list[np.ndarray] = []
    exact_fused: list[np.ndarray] = []
    if lexical_index is not None:
        lexical = [collection.search_lexical(clean_query(query), depth).keys for query in queries]
        exact_fused = [fuse_hybrid(dense, words, RECALL_K)[0] for dense, words in zip(exact, lexical)]

    shipped = int(collection.index.expansion_search)
    rows: list[dict[str, Any]] = []
    times: dict[int, list[list[float]]] = {ef: [] for ef in expansions}
    try:
        for ef in expansions:
            collection.index.expansion_search = int(ef)
            row: dict[str, Any] = {"expansion_search": int(ef)}
            top = [hits.keys for hits in collection.search_vectors(vectors, RECALL_K)]
            row["recall_at_10"] = round(_overlap(top, exact_top), 4)
            if hybrid:
                deep = [hits.keys for hits in collection.search_vectors(vectors, depth)]
                row["recall_at_depth"] = round(_overlap(deep, exact), 4)
                fused = [fuse_hybrid(dense, words, RECALL_K)[0] for dense, words in zip(deep, lexical)]
                row["hybrid_recall_at_10"] = round(_overlap(fused, exact_fused), 4)
            rows.append(row)
        for _ in range(rounds):
            for ef in expansions:
                collection.index.expansion_search = int(ef)
                round_ms = []
                for vector in vectors:
                    started = time.perf_counter()
                    collection.search_vectors(vector, depth)
                    round_ms.append((time.perf_counter() - started) * 1e3)
                times[ef].append(round_ms)
    finally:
        collection.index.expansion_search = shipped
    for row in rows:
        per_round = times[row["expansion_search"]]
        row["search_ms"] = percentiles([value for round_ms in per_round for value in round_ms])
        row["round_p50_ms"] = [percentiles(round_ms)["p50"] for round_ms in per_round]

    recall_key = "hybrid_recall_at_10" if hybrid else "recall_at_10"
    meeting = [row["expansion_search"] for row in rows
               if row["recall_at_10"] >= TARGET_RECALL and row[recall_key] >= TARGET_RECALL]
    index, encoder = describe_artifacts(searcher)
    return {
        "index": index,
        "encoder": encoder,
        "n_queries": len(queries),
        "mode": mode,
        "k": RECALL_K,
        "depth": depth,
        "rounds": rounds,
        "collection_expansion_search": shipped,
        "target_recall": TARGET_RECALL,
        "lowest_expansion_at_target": meeting[0] if meeting else None,
        "ef_curve": rows,
        **context,
    }


def format_ef_curve(report: dict[str, Any]) -> str:
    """The human-readable form of :func:`ef_curve`'s report."""
    hybrid = report["mode"] == "hybrid"
    lines = [
        f"index    {report['index']['name']}  (expansion_search {report['collection_expansion_search']} in its manifest)",
        f"queries  {report['n_queries']}, mode {report['mode']}, search at depth {report['depth']}, "
        f"{report['rounds']} rounds",
        "ef      recall@10" + ("  recall@depth  hybrid recall@10" if hybrid else "") + "  search p50 ms  (per round)",
    ]
    for row in report["ef_curve"]:
        extra = f"  {row['recall_at_depth']:>12.4f}  {row['hybrid_recall_at_10']:>16.4f}" if hybrid else ""
        rounds = ", ".join(f"{value:.3f}" for value in row["round_p50_ms"])
        lines.append(f"{row['expansion_search']:<6}  {row['recall_at_10']:>9.4f}{extra}  {row['search_ms']['p50']:>13.3f}"
                     f"  ({rounds})")
    lowest = report["lowest_expansion_at_target"]
    lines.append(f"lowest expansion_search with recall >= {report['target_recall']}: "
                 + (str(lowest) if lowest is not None else "none of these"))
    return "\n".join(lines)


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
    round_p50 = report.get("round_p50_ms", {})
    lines[-1] += "   p50 per round"
    for stage, values in [*report["stages_ms"].items(), ("end_to_end", report["end_to_end_ms"])]:
        rounds = ", ".join(f"{value:.2f}" for value in round_p50.get(stage, []))
        lines.append(f"  {stage:<22}{values['p50']:>7.2f}  {values['p95']:>7.2f}  {values['p99']:>7.2f}   {rounds}")
    lines.append("by query length (encoder tokens)    n   end-to-end p50  encode p50")
    for label, bucket in report.get("by_query_tokens", {}).items():
        lines.append(f"  {label:<28}{bucket['n_queries']:>5}  {bucket['end_to_end_ms']['p50']:>15.2f}"
                     f"  {bucket['encode_ms']['p50']:>10.2f}")
    lines += [
        f"qps      {report['qps_1_thread']:.1f} on 1 thread, {report['qps_n_threads']:.1f} on {report['threads']} threads",
        f"recall@10 (ANN vs exact)  {report['recall_at_10']:.4f}",
        f"peak RSS {report['peak_rss_mb']:.1f} MiB",
    ]
    machine, software = report.get("machine"), report.get("software")
    if machine and software:
        isa = [name for name, present in machine["isa"].items() if present]
        lines += [
            f"machine  {machine['cpu_model'] or '?'}, {machine['logical_cpus']} logical CPUs, "
            f"{machine['memory_total_mb'] or '?'} MiB; {' '.join(isa) or 'no listed ISA extensions'}",
            f"software care-edge {software['care_edge']} ({software['runner']}), python {software['python']}, "
            + ", ".join(f"{name} {software[name]}" for name in SOFTWARE_PACKAGES),
        ]
    return "\n".join(lines)
