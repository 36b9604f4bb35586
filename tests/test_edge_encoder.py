"""edge.encoder.QueryEncoder: batching, truncation, pooling modes, threads, and graph/config checks."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from edge import formats, writers
from edge.encoder import QueryEncoder
from edge.errors import ArtifactError, BadInput

QUERIES = ["fever and cough", "头痛 发烧", "what is the dose of insulin for a child", "rash", "asthma inhaler night"]


def test_batch_equals_single(tiny) -> None:
    encoder = QueryEncoder(tiny.encoder)
    batch = encoder.encode(QUERIES)
    assert batch.vectors.dtype == np.float32 and batch.vectors.shape == (len(QUERIES), 32)
    assert batch.truncated == [False] * len(QUERIES)
    singles = np.vstack([encoder.encode([query]).vectors for query in QUERIES])
    np.testing.assert_allclose(batch.vectors, singles, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(batch.vectors, axis=1), 1.0, atol=1e-5)
    assert batch.tokenize_ms >= 0 and batch.encode_ms > 0
    # Different texts give different vectors: the model is not constant.
    assert np.abs(batch.vectors[0] - batch.vectors[1]).max() > 1e-2


def test_prompt_is_prepended(tiny, tmp_path: Path, build_encoder) -> None:
    with_prompt = QueryEncoder(tiny.encoder)
    assert with_prompt.prompt == "query: "
    # The same random graph (same seed) with no prompt: only the prompt differs.
    no_prompt = QueryEncoder(build_encoder(tmp_path / "bare", prompt=""))
    assert (tmp_path / "bare" / formats.MODEL_FILE).read_bytes() == (tiny.encoder / formats.MODEL_FILE).read_bytes()
    bare_vector = no_prompt.encode(["fever"]).vectors[0]
    assert not np.allclose(with_prompt.encode(["fever"]).vectors[0], bare_vector, atol=1e-4)
    np.testing.assert_allclose(no_prompt.encode(["query: fever"]).vectors[0], with_prompt.encode(["fever"]).vectors[0], atol=1e-6)


def test_long_query_is_truncated_and_flagged(tiny) -> None:
    encoder = QueryEncoder(tiny.encoder)
    assert encoder.max_tokens == 16
    long_query = " ".join(["fever cough headache"] * 20)
    exact_fit = " ".join(["fever"] * (16 - 4))  # [CLS] query : ... [SEP] = 16 tokens exactly
    result = encoder.encode([long_query, "fever", exact_fit])
    assert result.truncated == [True, False, False]
    # Truncation keeps the first max_tokens tokens: the tail no longer matters.
    tail_changed = encoder.encode([long_query + " asthma asthma asthma"]).vectors[0]
    np.testing.assert_allclose(result.vectors[0], tail_changed, atol=1e-6)


def test_character_cap_flags_truncation(tiny) -> None:
    encoder = QueryEncoder(tiny.encoder)
    result = encoder.encode(["x" * 20_000])  # one giant unknown word: one token, but cut by characters
    assert result.truncated == [True]


def test_threads_setting_reaches_onnxruntime(tiny) -> None:
    default = QueryEncoder(tiny.encoder)
    assert default.threads == 1
    assert default._session.get_session_options().intra_op_num_threads == 1
    assert default._session.get_session_options().inter_op_num_threads == 1
    four = QueryEncoder(tiny.encoder, threads=2)
    assert four._session.get_session_options().intra_op_num_threads == 2
    np.testing.assert_allclose(four.encode(QUERIES).vectors, default.encode(QUERIES).vectors, atol=1e-5)
    for bad in (0, -1, 1.5, True):
        with pytest.raises(BadInput, match="threads"):
            QueryEncoder(tiny.encoder, threads=bad)


def test_concurrent_encoding_matches_sequential(tiny) -> None:
    encoder = QueryEncoder(tiny.encoder)
    expected = [encoder.encode([query]).vectors[0] for query in QUERIES]
    work = QUERIES * 20
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda query: encoder.encode([query]).vectors[0], work))
    for index, vector in enumerate(results):
        np.testing.assert_allclose(vector, expected[index % len(QUERIES)], atol=1e-6)


@pytest.mark.parametrize("pooling", ["mean", "cls"])
def test_last_hidden_state_pooling(tmp_path: Path, build_encoder, pooling: str) -> None:
    directory = build_encoder(tmp_path / pooling, output="last_hidden_state", pooling=pooling, dims=16)
    encoder = QueryEncoder(directory)
    batch = encoder.encode(QUERIES)
    assert batch.vectors.shape == (len(QUERIES), 16)
    np.testing.assert_allclose(np.linalg.norm(batch.vectors, axis=1), 1.0, atol=1e-5)
    singles = np.vstack([encoder.encode([query]).vectors for query in QUERIES])
    np.testing.assert_allclose(batch.vectors, singles, atol=1e-5)
    if pooling == "cls":
        # [CLS] sees nothing of the rest of the sequence in this graph: all queries share the first token's vector.
        np.testing.assert_allclose(batch.vectors, np.broadcast_to(batch.vectors[0], batch.vectors.shape), atol=1e-6)
    else:
        assert np.abs(batch.vectors[0] - batch.vectors[1]).max() > 1e-2


def test_config_that_does_not_fit_the_graph(tmp_path: Path, build_encoder) -> None:
    directory = build_encoder(tmp_path / "enc")
    config = json.loads((directory / formats.CONFIG_FILE).read_text(encoding="utf-8"))

    def rewrite(**changes: object) -> None:
        (directory / formats.CONFIG_FILE).write_text(json.dumps({**config, **changes}), encoding="utf-8")
        manifest = json.loads((directory / formats.MANIFEST_FILE).read_text(encoding="utf-8"))
        writers.write_manifest(directory, manifest)

    rewrite(output="pooler_output")
    with pytest.raises(ArtifactError, match="'pooler_output' is not a graph output"):
        QueryEncoder(directory)
    rewrite(pooling="mean")  # output "embedding" has rank 2, mean pooling needs rank 3
    with pytest.raises(ArtifactError, match="rank"):
        QueryEncoder(directory)
    rewrite(pooling="max")
    with pytest.raises(ArtifactError, match="pooling 'max'"):
        QueryEncoder(directory)
    rewrite(dims=16)
    with pytest.raises(ArtifactError, match="dims 16 != manifest alignment dims 32"):
        QueryEncoder(directory)


def test_unreadable_model_or_tokenizer(tmp_path: Path, build_encoder) -> None:
    directory = build_encoder(tmp_path / "enc")
    manifest = json.loads((directory / formats.MANIFEST_FILE).read_text(encoding="utf-8"))
    (directory / formats.TOKENIZER_FILE).write_text("{}", encoding="utf-8")
    writers.write_manifest(directory, manifest)
    with pytest.raises(ArtifactError, match="tokenizer.json cannot be loaded"):
        QueryEncoder(directory)

    directory = build_encoder(tmp_path / "enc2")
    (directory / formats.MODEL_FILE).write_bytes(b"\x08\x07garbage" * 100)
    writers.write_manifest(directory, manifest)
    with pytest.raises(ArtifactError, match="model.onnx cannot be loaded by onnxruntime"):
        QueryEncoder(directory)


def test_encode_rejects_a_bare_string(tiny) -> None:
    with pytest.raises(TypeError):
        QueryEncoder(tiny.encoder).encode("fever")  # type: ignore[arg-type]
    assert QueryEncoder(tiny.encoder).encode([]).vectors.shape == (0, 32)
