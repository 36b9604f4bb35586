"""A second teacher for stage II's KL term: a symmetric ONNX encoder (multilingual-e5-small INT8) in its own space.

The student still scores queries against the LLM's document vectors; only the KL *target* changes, to
``(1 - weight) * cos_llm(q, d) + weight * cos_e5(q, d)`` over the same candidates. ``tools.experiments.fusion_probe`` measured
that fusion as a better ranker than either encoder alone on cMedIR (nDCG@10 0.850 at e5 weight 0.7, against 0.825
for the LLM), so it is a better distribution to distil than the LLM's by itself.

The e5 vectors come from the vector cache ``tools.evaluate`` fills (``tools.build.vectors``) (document prompt, per text) and from the
encoder's query side (queries, computed each run: a few thousand short queries take under a minute).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from edge.errors import BadInput
from tools.build.vectors import symmetric_encoder
from tools.models.cache import ModelCache


@dataclass(frozen=True)
class CoTeacherVectors:
    """The co-teacher's unit vectors of stage II's queries and documents, row-aligned with the trainer's."""

    queries: np.ndarray  # [n_queries, d]
    documents: np.ndarray  # [n_documents, d]
    identity: dict[str, Any]  # name and model sha256, for run.json and the run's fingerprint


def co_teacher_vectors(encoder_dir: Path, models: ModelCache, queries: Sequence[str], documents: Sequence[str],
                       *, threads: int | None, progress: bool) -> CoTeacherVectors:
    if not (Path(encoder_dir) / "manifest.json").is_file():
        raise BadInput(f"--kl-co-teacher {encoder_dir}: no manifest.json there; pass a symmetric encoder folder "
                       "(make e5-symmetric writes one)")
    query_side, doc_side = symmetric_encoder(Path(encoder_dir), models, threads=threads or 1, progress=progress,
                                             flag="--kl-co-teacher")
    query_vectors = np.ascontiguousarray(query_side.vectors(list(queries)), dtype=np.float32)
    document_vectors = np.ascontiguousarray(doc_side.vectors(list(documents)), dtype=np.float32)
    info = query_side.info()
    return CoTeacherVectors(queries=query_vectors, documents=document_vectors,
                            identity={"name": info["name"], "sha256": info["sha256"]})
