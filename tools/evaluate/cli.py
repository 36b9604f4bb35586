"""Evaluate several systems on every task in one run and write JSON, Markdown and a quality-vs-latency plot.

    python -m tools.evaluate --tasks all --systems bm25,e5,llm,care [--quick] [--json] [--out prebuilt_index/reports]
        [--e5-encoder DIR] [--care-encoder DIR[,DIR]] [--llm-encoder embeddinggemma] [--dims 768]

Systems (see ``tools.evaluate.systems``): ``bm25`` (character bigrams for Chinese, words otherwise); ``e5`` (a symmetric
ONNX encoder, query prompt / passage prompt); ``llm`` (the GGUF on both sides, ``--dims`` Matryoshka dims); ``care``
(each ``--care-encoder`` folder against the GGUF's document vectors); ``hybrid`` (BM25 + each CARE encoder by
reciprocal-rank fusion, k = 60); ``shipped`` (the runtime itself, ``edge.Searcher`` over ``--shipped-index``
collections, one system per ``--shipped-modes`` mode: ANN + BM25 postings, see ``tools.evaluate.shipped``; retrieval tasks only). All systems see the same tasks, splits and (sub)samples. Pair, classification and
clustering tasks embed both texts with a system's query side, as a device would; BM25 and the fusion have no vectors
and sit those tasks out.

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

import argparse
import json
import shlex
import sys
from pathlib import Path
from typing import Callable, Sequence

import edge.encoder  # noqa: F401  (onnxruntime before usearch: see edge/_native.py)
from edge.errors import BadInput, CareEdgeError
from edge.bench import default_threads
from edge.formats import SEARCH_MODES
from tools.build.vectors import GgufVectors
from tools.data.records import DEFAULT_DATA_DIR
from tools.data.registry import load_corpus
from tools.data.tasks import ALL_TASKS, load_task
from tools.evaluate.runner import Settings, evaluate
from tools.evaluate.shipped import ShippedSystem, open_searchers
from tools.evaluate.systems import (
    BM25System,
    DenseSystem,
    HybridSystem,
    System,
    care_system,
    e5_system,
    llm_system,
)
from tools.models.cache import ModelCache, cache_root
from tools.provenance import created_info

REPO = Path(__file__).resolve().parents[2]
DEFAULT_OUT = REPO / "prebuilt_index" / "reports"
DEFAULT_QUERY_ENCODER = REPO / "prebuilt_index" / "query_encoder"
SYSTEM_NAMES = ("bm25", "e5", "llm", "care", "hybrid", "shipped")
DEFAULT_SHIPPED_INDEX = ",".join(str(REPO / "prebuilt_index" / name) for name in ("cmed-zh", "icd10"))
REPORT_FORMAT = "care-edge/eval-report"


# ------------------------------------------------------------------------------------------------ CLI


def _parse_list(value: str, what: str, known: Sequence[str] | None = None) -> list[str]:
    items = [part.strip() for part in value.split(",") if part.strip()]
    if not items:
        raise BadInput(f"--{what} is empty")
    if known is not None:
        unknown = [item for item in items if item not in known]
        if unknown:
            raise BadInput(f"--{what}: unknown {', '.join(unknown)} (expected {', '.join(known)})")
    if len(set(items)) != len(items):
        raise BadInput(f"--{what} names something twice: {value}")
    return items


def _parse_skip(value: str, system_names: Sequence[str], task_names: Sequence[str]) -> frozenset[tuple[str, str]]:
    pairs = set()
    for item in (part.strip() for part in value.split(",")):
        if not item:
            continue
        system, _, task = item.partition(":")
        # shipped expands to shipped:<mode> systems; "--skip shipped:TASK" would be ambiguous, so names are literal.
        if not task or task not in task_names or not any(system == n or system.startswith(f"{n}:") for n in system_names):
            raise BadInput(f"--skip: {item!r} is not SYSTEM:TASK with a system and a task of this run")
        pairs.add((system, task))
    return frozenset(pairs)


def build_systems(args: argparse.Namespace, names: Sequence[str]) -> list[System]:
    models = ModelCache(cache_root(args.cache_dir))
    progress = not args.quiet
    threads = args.threads
    systems: list[System] = []
    bm25 = BM25System()
    gguf: GgufVectors | None = None

    def shared_gguf() -> GgufVectors:
        nonlocal gguf
        if gguf is None:
            gguf = GgufVectors(args.llm_encoder, models, threads=threads, progress=progress)
        return gguf

    care: list[DenseSystem] = []
    if "care" in names or "hybrid" in names:
        dirs = [Path(p) for p in _parse_list(args.care_encoder, "care-encoder")]
        for directory in dirs:
            name = "care" if len(dirs) == 1 else f"care:{directory.name}"
            care.append(care_system(directory, shared_gguf(), threads=threads, name=name))
    for name in names:
        if name == "bm25":
            systems.append(bm25)
        elif name == "e5":
            systems.append(e5_system(Path(args.e5_encoder), models, threads=threads, progress=progress))
        elif name == "llm":
            systems.append(llm_system(shared_gguf(), dims=args.dims))
        elif name == "care":
            systems.extend(care)
        elif name == "hybrid":
            for part in care:
                label = "hybrid" if part.name == "care" else part.name.replace("care", "hybrid", 1)
                systems.append(HybridSystem(label, bm25, part))
        elif name == "shipped":
            collections = [Path(p) for p in _parse_list(args.shipped_index, "shipped-index")]
            searchers = open_searchers(collections, Path(args.shipped_encoder))
            for mode in _parse_list(args.shipped_modes, "shipped-modes", SEARCH_MODES):
                systems.append(ShippedSystem(f"shipped:{mode}", searchers, mode))
    return systems


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tools.evaluate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", default="all", help=f"'all' or a comma-separated subset of: {', '.join(ALL_TASKS)}")
    parser.add_argument("--systems", default="bm25,e5,llm,care", help=f"comma-separated: {', '.join(SYSTEM_NAMES)}")
    parser.add_argument("--quick", action="store_true", help="subsample queries/pairs/texts (fixed seed), for CI")
    parser.add_argument("--json", action="store_true", help="print the JSON report on stdout")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"report folder (default {DEFAULT_OUT})")
    parser.add_argument("--name", help="report file stem (default eval, or eval-quick with --quick)")
    parser.add_argument("--data-dir", type=Path, help="data folder (default ../shared/data)")
    parser.add_argument("--cache-dir", type=Path, help="models + vector cache (default $CARE_EDGE_CACHE or "
                        "~/.cache/care-edge)")
    parser.add_argument("--e5-encoder", default=str(DEFAULT_QUERY_ENCODER), help="symmetric ONNX encoder folder")
    parser.add_argument("--care-encoder", default=str(DEFAULT_QUERY_ENCODER), help="CARE query encoder folder(s)")
    parser.add_argument("--shipped-index", default=DEFAULT_SHIPPED_INDEX,
                        help="shipped: collection folders the runtime searches (default the shipped cmed-zh, icd10)")
    parser.add_argument("--shipped-encoder", default=str(DEFAULT_QUERY_ENCODER),
                        help="shipped: the query encoder folder (default the shipped one)")
    parser.add_argument("--shipped-modes", default="dense,hybrid",
                        help="shipped: search modes, one system each (shipped:dense, shipped:hybrid)")
    parser.add_argument("--llm-encoder", default="embeddinggemma", help="GGUF: embeddinggemma | gguf:PATH")
    parser.add_argument("--dims", type=int, default=768, help="llm: Matryoshka dims of both sides (default 768)")
    parser.add_argument("--threads", type=int, default=default_threads(), help="threads for bulk encoding")
    parser.add_argument("--latency-queries", type=int, default=100, help="queries timed per system (0: none)")
    parser.add_argument("--seed", type=int, default=0, help="seed of --quick samples, latency sample and k-means")
    parser.add_argument("--skip", default="", metavar="SYSTEM:TASK[,...]",
                        help="system/task pairs not to run (reported as not measured), e.g. llm:liveqa-rerank")
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    log: Callable[[str], None] = (lambda line: None) if args.quiet else (lambda line: print(line, file=sys.stderr))
    try:
        if args.threads < 1 or args.latency_queries < 0 or args.dims < 1:
            raise BadInput("--threads and --dims must be >= 1 and --latency-queries >= 0")
        task_names = list(ALL_TASKS) if args.tasks.strip() == "all" else _parse_list(args.tasks, "tasks", ALL_TASKS)
        system_names = _parse_list(args.systems, "systems", SYSTEM_NAMES)
        tasks = [load_task(name, args.data_dir) for name in task_names]
        systems = build_systems(args, system_names)
        skip = _parse_skip(args.skip, system_names, task_names)
        settings = Settings(quick=args.quick, seed=args.seed, latency_queries=args.latency_queries, skip=skip)
        body = evaluate(tasks, systems, corpus_loader=lambda name: load_corpus(name, args.data_dir),
                        settings=settings, log=log)
        command = "python -m tools.evaluate " + shlex.join(argv)
        report = {"format": REPORT_FORMAT, "format_version": 1,
                  "created": created_info("tools.evaluate", command),
                  "data_dir": str((args.data_dir or DEFAULT_DATA_DIR).resolve()), **body}
        from tools.evaluate.report import write_reports  # matplotlib loads only once there is something to plot

        stem = args.name or ("eval-quick" if args.quick else "eval")
        written = write_reports(report, args.out, stem)
    except CareEdgeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:
        print(f"error: {exc.filename or ''}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(report, indent=2, ensure_ascii=False))
    else:
        print(written["markdown"].read_text(encoding="utf-8"))
    log("wrote " + ", ".join(str(p) for p in written.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
