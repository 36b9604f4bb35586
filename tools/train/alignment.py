"""Held-out alignment of an exported query encoder to the LLM (``python -m tools.train alignment``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np


def alignment_cosine(encoder_dir: Path, tasks: Sequence[str], data_dir: Path | None, cache_dir: Path | None,
                     encoder_spec: str = "embeddinggemma") -> dict[str, Any]:
    """Held-out alignment: cosine of an exported query encoder's INT8 vectors (one query per call, as a device
    encodes) to the LLM's query-prompt vectors of the same evaluation queries, per task."""
    from edge.encoder import QueryEncoder
    from tools.data.tasks import load_task
    from tools.train.teacher import Teacher

    teacher = Teacher(encoder_spec, cache_dir, None)
    encoder = QueryEncoder(encoder_dir)
    report: dict[str, Any] = {"encoder": str(encoder_dir), "dims": encoder.dims}
    for name in tasks:
        queries = list(dict.fromkeys(load_task(name, data_dir).queries.values()))
        target = teacher.vectors(queries, "query", encoder.dims, "error", False, what=f"{name} queries")
        student = np.concatenate([encoder.encode([q]).vectors for q in queries])
        cosine = np.sum(student * target, axis=1)
        report[name] = {"queries": len(queries), "mean_cosine": round(float(cosine.mean()), 4),
                        "p10_cosine": round(float(np.percentile(cosine, 10)), 4)}
    teacher.close()
    return report
