"""The shipped default (prebuilt_index/default.json): it opens, verifies, and answers Chinese and English queries.

Skipped only while prebuilt_index/default.json does not exist yet.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from edge import manifest as fmt

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
    scores = [r["score"] for r in results]
    assert scores == sorted(scores, reverse=True) and all(-1.0 <= s <= 1.0001 for s in scores)
    assert all(isinstance(r["text"], str) and r["text"] for r in results)
    assert payload["timings_ms"]["total"] > 0


def test_shipped_default_finds_headache_documents_when_it_has_them(run_cli) -> None:
    connection = sqlite3.connect(f"{(_default_collection() / fmt.DOCS_FILE).resolve().as_uri()}?mode=ro", uri=True)
    try:
        has_headache = connection.execute("SELECT 1 FROM docs WHERE text LIKE '%头痛%' LIMIT 1").fetchone() is not None
    finally:
        connection.close()
    if not has_headache:
        pytest.skip("the default collection has no document about 头痛")
    result = run_cli("search", "头痛", "--json", "-k", "10", prebuilt=PREBUILT, timeout=120)
    assert result.returncode == 0, result.stderr
    assert any("头痛" in r["text"] for r in json.loads(result.stdout)["results"])


def test_shipped_default_bench_runs(run_cli, tmp_path: Path) -> None:
    queries = tmp_path / "q.txt"
    queries.write_text("头痛\nfever in children\n高血压 吃什么药\n", encoding="utf-8")
    result = run_cli("bench", "--queries", queries, "--threads", "2", "--json", prebuilt=PREBUILT, timeout=300)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["n_queries"] == 3 and report["recall_at_10"] > 0.5


def test_shipped_encoder_loads_without_the_slow_skip_layer_norm_kernel() -> None:
    from edge.encoder import DISABLED_OPTIMIZERS
    from tools.experiments.kernel_bench import count_after_load

    model = str(PREBUILT / "query_encoder" / fmt.MODEL_FILE)
    # onnxruntime's own defaults fold the graph's Add + LayerNormalization into SkipLayerNormalization; the
    # runtime's session must not (tools/kernel_bench.py: 36 against 7 us per node at 20 tokens).
    assert count_after_load(model, "SkipLayerNormalization", ()) > 0
    assert count_after_load(model, "SkipLayerNormalization", DISABLED_OPTIMIZERS) == 0


def test_shipped_collections_default_modes_and_lexical_tables() -> None:
    modes = {}
    for name in ("cmed-zh", "icd10"):
        manifest = fmt.read_manifest(PREBUILT / name, fmt.COLLECTION_FORMAT)
        assert manifest["search"]["lexical"]["kind"] == "bm25"
        modes[name] = manifest["search"]["default_mode"]
    assert modes == {"cmed-zh": "hybrid", "icd10": "dense"}  # chosen by `make shipped-eval` (README)
