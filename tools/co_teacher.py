"""A second teacher for stage II's KL term: a symmetric ONNX encoder (multilingual-e5-small INT8) in its own space.

The student still scores queries against the LLM's document vectors; only the KL *target* changes, to
``(1 - weight) * cos_llm(q, d) + weight * cos_e5(q, d)`` over the same candidates. ``tools.fusion_probe`` measured
that fusion as a better ranker than either encoder alone on cMedIR (nDCG@10 0.850 at e5 weight 0.7, against 0.825
for the LLM), so it is a better distribution to distil than the LLM's by itself.

The e5 vectors come from the vector cache ``tools.evaluate`` fills (document prompt, per text) and from the
encoder's query side (queries, computed each run: a few thousand short queries take under a minute).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from edge.errors import BadInput
from tools.eval_systems import Corpus, e5_system
from tools.models import ModelCache


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
    try:
        system = e5_system(Path(encoder_dir), models, threads=threads or 1, name="co-teacher", progress=progress)
    except BadInput as exc:  # its message names the evaluation's flag
        raise BadInput(str(exc).replace("--e5-encoder", "--kl-co-teacher")) from None
    query_vectors = np.ascontiguousarray(system.embed(list(queries)), dtype=np.float32)
    corpus = Corpus(key="stage2-documents", ids=tuple(str(i) for i in range(len(documents))),
                    texts=tuple(documents))
    document_vectors = np.ascontiguousarray(system.document_vectors(corpus), dtype=np.float32)
    info = system.info()["query_encoder"]
    return CoTeacherVectors(queries=query_vectors, documents=document_vectors,
                            identity={"name": info["name"], "sha256": info["sha256"]})
