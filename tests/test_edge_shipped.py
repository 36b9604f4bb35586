"""The shipped default (prebuilt_index/default.json): it opens, verifies, and answers Chinese and English queries.

Skipped only while prebuilt_index/default.json does not exist yet.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from edge import formats
from edge.hybrid import FUSION_K

REPO_ROOT = Path(__file__).resolve().parent.parent
PREBUILT = REPO_ROOT / "prebuilt_index"
DEFAULTS = PREBUILT / "default.json"

pytestmark = pytest.mark.skipif(not DEFAULTS.is_file(), reason="no shipped default yet (prebuilt_index/default.json)")


def _default_collection() -> Path:
    return PREBUILT / json.loads(DEFAULTS.read_text(encoding="utf-8"))["collection"]


def test_shipped_default_verifies(run_cli) -> None:
    result = run_cli("info", "--verify", "--json", prebuilt=PREBUILT, timeout=300)
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["verify"] == {"ok": True, "problems": []}
    assert info["alignment"] == "ok"
    assert info["collection"]["documents"] > 0
    assert info["licenses"], "the shipped artifacts must state their licences"


def test_shipped_default_info_names_each_licence_once(run_cli) -> None:
    result = run_cli("info", prebuilt=PREBUILT, timeout=120)
    assert result.returncode == 0, result.stderr
    licence_lines = result.stdout.split("licences\n", 1)[1].splitlines()
    assert any("EmbeddingGemma" in line for line in licence_lines)
    # The collection and the query encoder both name EmbeddingGemma, for different uses.
    assert len(licence_lines) == len(set(licence_lines)), licence_lines


@pytest.mark.parametrize("query", ["头痛怎么办", "what causes high blood pressure"])
def test_shipped_default_answers(run_cli, query: str) -> None:
    result = run_cli("search", query, "--json", "-k", "10", prebuilt=PREBUILT, timeout=120)
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    results = payload["results"]
    assert len(results) == 10
    assert len({r["id"] for r in results}) == 10
    # The shipped default collection searches in hybrid mode, so scores are fused reciprocal ranks: a document
    # ranked first on both sides scores 2 / (FUSION_K + 1), and every returned one appeared on at least one side.
    assert payload["mode"] == "hybrid"
    scores = [r["score"] for r in results]
    assert scores == sorted(scores, reverse=True)
    assert all(0.0 < s <= round(2.0 / (FUSION_K + 1), 6) for s in scores), scores
    assert all(isinstance(r["text"], str) and r["text"] for r in results)
    assert payload["timings_ms"]["total"] > 0


def test_shipped_default_finds_headache_documents_when_it_has_them(run_cli) -> None:
    connection = sqlite3.connect(f"{(_default_collection() / formats.DOCS_FILE).resolve().as_uri()}?mode=ro", uri=True)
    try:
        has_headache = connection.execute("SELECT 1 FROM docs WHERE text LIKE '%头痛%' LIMIT 1").fetchone() is not None
    finally:
        connection.close()
    if not has_headache:
        pytest.skip("the default collection has no document about 头痛")
    result = run_cli("search", "头痛", "--json", "-k", "10", prebuilt=PREBUILT, timeout=120)
    assert result.returncode == 0, result.stderr
    assert any("头痛" in r["text"] for r in json.loads(result.stdout)["results"])


def test_shipped_default_bench_recall(run_cli) -> None:
    # recall_at_10: overlap of the HNSW top-10 with the exact top-10 over the collection's own bench queries, the
    # figure prebuilt_index/reports/bench-interleaved.json records (0.988 for cmed-zh); a broken index or a wrong
    # expansion_search falls well below 0.98.
    bench_queries = _default_collection() / formats.BENCH_QUERIES_FILE
    n_queries = len(bench_queries.read_text(encoding="utf-8").splitlines())
    result = run_cli("bench", "--threads", "2", "--json", prebuilt=PREBUILT, timeout=300)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["n_queries"] == n_queries >= 100
    assert report["recall_at_10"] >= 0.98


def test_shipped_encoder_loads_without_the_slow_skip_layer_norm_kernel(monkeypatch, tmp_path: Path) -> None:
    import onnx

    from edge import QueryEncoder
    from edge._native import ort
    from tools.experiments.kernel_bench import count_after_load

    model = str(PREBUILT / "query_encoder" / formats.MODEL_FILE)
    # onnxruntime's own defaults fold the graph's Add + LayerNormalization into SkipLayerNormalization; the
    # runtime's session must not (tools/kernel_bench.py: 36 against 7 us per node at 20 tokens).
    assert count_after_load(model, "SkipLayerNormalization", ()) > 0

    # The session QueryEncoder really builds: same arguments, plus a file onnxruntime writes its optimised graph to.
    real_session = ort.InferenceSession
    optimized = tmp_path / "optimized.onnx"
    calls: list[dict] = []

    def recording_session(path, sess_options=None, *args, **kwargs):
        calls.append(dict(kwargs))
        sess_options.optimized_model_filepath = str(optimized)
        return real_session(path, sess_options, *args, **kwargs)

    monkeypatch.setattr(ort, "InferenceSession", recording_session)
    encoder = QueryEncoder(PREBUILT / "query_encoder")
    assert len(calls) == 1 and "SkipLayerNormFusion" in calls[0]["disabled_optimizers"]
    graph = onnx.load(str(optimized), load_external_data=False).graph
    assert sum(node.op_type == "SkipLayerNormalization" for node in graph.node) == 0
    assert encoder.encode(["胸痛"]).vectors.shape == (1, encoder.dims)


def test_shipped_collections_default_modes_and_lexical_tables() -> None:
    modes = {}
    for name in ("cmed-zh", "icd10"):
        manifest = formats.read_manifest(PREBUILT / name, formats.COLLECTION_FORMAT)
        assert manifest["search"]["lexical"]["kind"] == "bm25"
        modes[name] = manifest["search"]["default_mode"]
    assert modes == {"cmed-zh": "hybrid", "icd10": "hybrid"}  # chosen by measurement (docs/BENCHMARKS.md)
    icd10 = formats.read_manifest(PREBUILT / "icd10", formats.COLLECTION_FORMAT)["search"]
    # Every language's name of a code is indexed, and the fusion is the measured score fusion (docs/experiments.md).
    assert icd10["lexical"]["fields"] == ["text", "meta.names.*"]
    assert icd10["fusion"] == {"kind": "scores", "dense_weight": 0.6, "lexical_weight": 0.4}
