"""How good a teacher would two dense systems make together: score fusion of their cosines on one retrieval task.

    python -m tools.experiments.fusion_probe [--task cmedir-retrieval] [--weights 0,0.3,0.5,0.7,1] [--care-encoder DIR] [--bm25]
        [--out REPORT.json]

For each weight w it ranks the task's corpus by ``w * cos_llm + (1 - w) * cos_e5`` (and, with ``--care-encoder``,
``w * cos_care + (1 - w) * cos_e5``) and prints the task's primary metric, one JSON line per weight. With
``--bm25`` each fused ranking is also fused with BM25 by reciprocal rank, as the hybrid system is. It reads
the GGUF's vectors from the cache as ``tools.evaluate`` does, so on a warm cache it takes a minute. It answers two
questions: whether a fused LLM + e5 score distribution would be a better distillation target than the LLM's
alone, and how far any mix of the available systems reaches (the ceiling a query encoder aligned to the LLM
cannot pass without more than the LLM's document vectors).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

from edge.files import atomic_write_json
from tools.provenance import created_info
from edge.errors import CareEdgeError
from tools.build.vectors import GgufVectors
from tools.data.registry import load_corpus
from tools.data.tasks import load_task
from tools.evaluate.runner import CorpusCache, Settings, primary_metric, run_retrieval
from tools.evaluate.systems import (
    QUERY_CHUNK,
    BM25System,
    Corpus,
    DenseSystem,
    HybridSystem,
    System,
    care_system,
    e5_system,
    llm_system,
    top_k,
)
from tools.models.cache import ModelCache, cache_root


def fused_rankings(left: tuple[np.ndarray, np.ndarray], right: tuple[np.ndarray, np.ndarray], weight: float,
                   depth: int) -> list[np.ndarray]:
    """Top ``depth`` document rows per query by ``weight * left cosine + (1 - weight) * right cosine``; each side
    is (query vectors, document vectors) of one system, L2-normalised."""
    (lq, ld), (rq, rd) = left, right
    out: list[np.ndarray] = []
    for start in range(0, len(lq), QUERY_CHUNK):
        end = start + QUERY_CHUNK
        out.extend(top_k(weight * (lq[start:end] @ ld.T) + (1 - weight) * (rq[start:end] @ rd.T), depth))
    return out


class ScoreFusionSystem(System):
    """Two dense systems' cosines, weighted, as one retrieval system for ``tools.evaluate.run_retrieval``."""

    def __init__(self, name: str, left: DenseSystem, right: DenseSystem, weight: float) -> None:
        self.name, self.left, self.right, self.weight = name, left, right, weight

    def rank(self, queries: Sequence[str], corpus: Corpus, depth: int) -> list[np.ndarray]:
        return fused_rankings((self.left.embed(queries), self.left.document_vectors(corpus)),
                              (self.right.embed(queries), self.right.document_vectors(corpus)), self.weight, depth)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.experiments.fusion_probe", description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", default="cmedir-retrieval", help="a retrieval task of tools.data.tasks")
    parser.add_argument("--weights", default="0,0.3,0.5,0.7,1", help="comma list of the first system's weight")
    parser.add_argument("--e5-encoder", type=Path, help="the symmetric e5 export (default: make e5-symmetric's, "
                        "$CARE_EDGE_CACHE/runs/care/e5-symmetric)")
    parser.add_argument("--care-encoder", help="also fuse this CARE encoder with e5")
    parser.add_argument("--bm25", action="store_true",
                        help="also fuse each weighted ranking with BM25 by reciprocal rank (the hybrid system's fusion)")
    parser.add_argument("--data-dir", type=Path)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, help="also write the lines, with the command that printed them, as one "
                        "JSON report (e.g. prebuilt_index/reports/probe-fusion-ceiling.json)")
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    try:
        weights = [float(w) for w in args.weights.split(",") if w.strip()]
    except ValueError:
        print(f"error: --weights {args.weights!r}: expected numbers, e.g. 0,0.3,1", file=sys.stderr)
        return 2
    try:
        models = ModelCache(cache_root(None))
        task = load_task(args.task, args.data_dir)
        if task.kind != "retrieval":
            print(f"error: --task {args.task} is a {task.kind} task: pass a retrieval task", file=sys.stderr)
            return 2
        gguf = GgufVectors("embeddinggemma", models, threads=args.threads, progress=False)
        e5_dir = args.e5_encoder or models.root / "runs" / "care" / "e5-symmetric"
        e5 = e5_system(e5_dir, models, threads=args.threads, progress=False)
        pairs: list[tuple[str, DenseSystem]] = [("llm", llm_system(gguf, dims=768))]
        if args.care_encoder:
            pairs.append(("care", care_system(Path(args.care_encoder), gguf, threads=args.threads)))
        bm25 = BM25System()
        corpora = CorpusCache(lambda name: load_corpus(name, args.data_dir))
        metric = primary_metric(task.name, task.kind)
        rows: list[dict] = []
        for name, system in pairs:
            fused = [ScoreFusionSystem(f"{name}+e5@{w}", system, e5, w) for w in weights]
            hybrids = [HybridSystem(f"bm25+{one.name}", bm25, one) for one in fused] if args.bm25 else []
            outcome = run_retrieval(task, [*fused, *hybrids], corpora, Settings(latency_queries=0))
            for label, systems in ((f"{name}+e5", fused), (f"bm25+{name}+e5", hybrids)):
                for weight, one in zip(weights, systems):
                    rows.append({"task": task.name, "fused": label, f"{name}_weight": weight,
                                 metric: round(outcome.metrics[one.name][metric], 4)})
                    print(json.dumps(rows[-1]), flush=True)
        if args.out:
            command = "python -m tools.experiments.fusion_probe " + shlex.join(argv)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_json(args.out, {"created": created_info("tools.experiments.fusion_probe", command),
                                             "results": rows})
    except CareEdgeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
