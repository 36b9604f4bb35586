"""What INT8 costs in retrieval: the same student as torch fp32 and as its exported INT8 graph, on one task.

    python -m tools.experiments.int8_check --student RUN_DIR --encoder-dir QE_DIR [--tasks cmedir-retrieval,icd-coding-de]

Both query sides rank the same cached GGUF document vectors with the evaluator's own retrieval code
(``tools.evaluate.run_retrieval``), so the only difference between the two rows is the query graph. Prints JSON:
per task, each side's metrics and the INT8 - fp32 difference of the primary metric (the training issue asks for
cMedIR nDCG@10 within 0.5 points).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Sequence

import edge.encoder  # noqa: F401  (onnxruntime before usearch: see edge/_native.py)
import numpy as np

from edge import formats
from edge.errors import CareEdgeError
from tools.data.registry import load_corpus
from tools.build.vectors import GgufVectors
from tools.evaluate.systems import care_system
from tools.evaluate.runner import CorpusCache, Settings, primary_metric, run_retrieval
from tools.models.cache import ModelCache, cache_root
from tools.data.tasks import load_task

TORCH_BATCH = 64


def torch_query_vectors(student_dir: Path, prompt: str, max_tokens: int):
    """A function: texts -> the fp32 torch student's L2-normalised vectors, tokenised as the export tokenises."""
    import torch

    from tools.export.query_encoder import tokenize
    from tools.train.student import load_pooled_encoder

    model = load_pooled_encoder(student_dir)

    def vectors(texts: Sequence[str]) -> np.ndarray:
        out = []
        for start in range(0, len(texts), TORCH_BATCH):
            ids, mask = tokenize(student_dir / "tokenizer.json", texts[start:start + TORCH_BATCH], prompt, max_tokens)
            with torch.no_grad():
                out.append(model(torch.from_numpy(ids), torch.from_numpy(mask)).numpy())
        return np.concatenate(out) if out else np.zeros((0, 1), dtype=np.float32)

    return vectors


def compare(student_dir: Path, encoder_dir: Path, tasks: Sequence[str], *, cache_dir: Path | None = None,
            threads: int = 2) -> dict[str, Any]:
    """fp32 vs INT8 metrics of one student on each retrieval task."""
    import torch

    torch.set_num_threads(threads)
    models = ModelCache(cache_root(cache_dir))
    gguf = GgufVectors("embeddinggemma", models, threads=threads, progress=False)
    int8 = care_system(encoder_dir, gguf, threads=threads, name="int8")
    config = formats.read_encoder_config(encoder_dir)
    fp32 = int8.with_query_side("fp32", torch_query_vectors(student_dir, config.prompt, config.max_tokens))
    corpora = CorpusCache(load_corpus)
    report: dict[str, Any] = {"student": str(student_dir), "encoder": str(encoder_dir)}
    for name in tasks:
        task = load_task(name)
        outcome = run_retrieval(task, [fp32, int8], corpora, Settings())
        metric = primary_metric(task.name, task.kind)
        report[name] = {
            "metric": metric,
            "fp32": outcome.metrics["fp32"],
            "int8": outcome.metrics["int8"],
            "int8_minus_fp32_points": round(100 * (outcome.metrics["int8"][metric] - outcome.metrics["fp32"][metric]), 2),
        }
    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.experiments.int8_check", description=__doc__.split("\n\n")[0])
    parser.add_argument("--student", type=Path, required=True, help="a training run folder (or its model/ folder)")
    parser.add_argument("--encoder-dir", type=Path, required=True, help="that student's exported INT8 folder")
    parser.add_argument("--tasks", default="cmedir-retrieval", help="comma-separated retrieval tasks")
    parser.add_argument("--cache-dir", type=Path)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    student = args.student / "model" if (args.student / "model").is_dir() else args.student
    try:
        report = compare(student, args.encoder_dir, [t for t in args.tasks.split(",") if t],
                         cache_dir=args.cache_dir, threads=args.threads)
    except CareEdgeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(report, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
