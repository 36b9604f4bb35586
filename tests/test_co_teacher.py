"""tools.train.co_teacher: a symmetric encoder's own vectors of stage II's queries and documents, for the fused KL target."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import build_encoder_dir, make_documents, tiny_document_encoder

from edge.encoder import QueryEncoder
from edge.errors import BadInput
from tools.models.cache import ModelCache
from tools.train.co_teacher import co_teacher_vectors


def test_co_teacher_vectors_are_the_encoders_own_row_aligned_and_cached(tmp_path: Path) -> None:
    encoder_dir = build_encoder_dir(tmp_path / "e5", name="tiny-e5")  # aligned to its own graph: symmetric
    _, texts, _ = make_documents(12)
    queries, documents = texts[:4], texts[4:]
    models = ModelCache(tmp_path / "cache")
    co = co_teacher_vectors(encoder_dir, models, queries, documents, threads=1, progress=False)
    assert co.queries.shape == (4, 32) and co.documents.shape == (8, 32)
    assert np.allclose(np.linalg.norm(co.documents, axis=1), 1.0, atol=1e-5)
    own = QueryEncoder(encoder_dir)
    assert np.allclose(co.queries, np.concatenate([own.encode([q]).vectors for q in queries]), atol=1e-5)
    assert co.identity["name"] == "tiny-e5" and len(co.identity["sha256"]) == 64
    # The document vectors went to the vector cache: a second call embeds nothing and gives the same rows.
    again = co_teacher_vectors(encoder_dir, models, queries, documents[::-1], threads=1, progress=False)
    assert np.allclose(again.documents, co.documents[::-1], atol=1e-6)


def test_an_encoder_aligned_to_another_model_is_refused(tmp_path: Path) -> None:
    care = build_encoder_dir(tmp_path / "care", alignment=tiny_document_encoder("0" * 64), name="tiny-care")
    with pytest.raises(BadInput, match="--kl-co-teacher .* is not a symmetric encoder"):
        co_teacher_vectors(care, ModelCache(tmp_path / "cache"), ["q"], ["d"], threads=1, progress=False)
    with pytest.raises(BadInput, match="no manifest.json"):
        co_teacher_vectors(tmp_path / "nowhere", ModelCache(tmp_path / "cache"), ["q"], ["d"], threads=1,
                           progress=False)
