"""The evaluator end to end on tiny synthetic tasks with tiny encoders: every task kind, every system, the report
files, determinism, the vector cache (nothing re-embedded on a re-run) and the one-line errors.

No GGUF runs here: the `llm` and `care` systems read document (and `llm` query) vectors that the test puts in the
vector cache under the identity the models manifest gives the GGUF, exactly where `tools.build.index embed` puts them.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from conftest import CJK_CHARS, build_encoder_dir, make_documents

from edge.encoder import QueryEncoder
from tools.build.doc_encoder import EncodedBatch, VectorCache
from tools.build.vectors import gguf_identity
from tools.data.records import Document
from tools.data.tasks import LabeledText, ScoredPair, Task
from tools.evaluate import cli as evaluate, report as eval_report, runner
from tools.evaluate.systems import reciprocal_rank_fusion
from tools.models.cache import EMBEDDINGGEMMA_DOC_PROMPT, EMBEDDINGGEMMA_QUERY_PROMPT, ModelCache, cache_root

FAKE_GGUF_SHA = "f" * 64
N_DOCS = 80


def _tiny_tasks(docs: list[Document]) -> dict[str, Task]:
    texts = [d.text for d in docs]
    ids = [d.id for d in docs]
    search_queries = {f"q{i}": " ".join(texts[i].split()[:3]) for i in range(25)}
    search_qrels = {f"q{i}": {ids[i]: 2, ids[i + 30]: 0, ids[i + 31]: 1} for i in range(25)}
    rerank_docs = {ids[i]: texts[i] for i in range(40)}
    rerank_candidates = {f"r{i}": tuple(sorted({ids[i], ids[i + 10], ids[i + 20], ids[i + 5]})) for i in range(10)}
    rerank_qrels = {f"r{i}": {ids[i]: 2, ids[i + 10]: 1, ids[i + 20]: 0, ids[i + 5]: 0} for i in range(10)}
    pairs = []
    for i in range(15):
        words = texts[i].split()
        pairs.append(ScoredPair(texts[i], " ".join(words[: max(2, len(words) // 2)]), 1.0))
        pairs.append(ScoredPair(texts[i], texts[i + 40], 0.0))

    def label(text: str) -> str:
        return "zh" if any(ch in CJK_CHARS for ch in text) else "en"

    def icd(lang: str, offset: int) -> Task:
        queries = {f"{lang}{i}": " ".join(texts[i + offset].split()[-3:]) for i in range(20)}
        return Task(name=f"icd-coding-{lang}", language=lang, kind="retrieval", description="tiny coding",
                    metrics=("ndcg@10", "mrr@10", "recall@10", "recall@100"), queries=queries,
                    qrels={f"{lang}{i}": {ids[i + offset]: 1} for i in range(20)}, corpus="tiny")

    tasks = [
        Task(name="tiny-search", language="en", kind="retrieval", description="tiny search",
             metrics=("ndcg@10", "mrr@10", "recall@10", "recall@100"), queries=search_queries, qrels=search_qrels,
             relevant_gain=2, corpus="tiny", corpus_sources=("synthetic",)),
        icd("xx", 0),
        icd("yy", 40),
        Task(name="tiny-rerank", language="en", kind="rerank", description="tiny rerank",
             metrics=("ndcg@10", "map", "mrr@10"), queries={f"r{i}": texts[i][:20] for i in range(10)},
             qrels=rerank_qrels, relevant_gain=2, candidates=rerank_candidates, documents=rerank_docs),
        Task(name="tiny-sts", language="en", kind="sts", description="tiny sts", metrics=("spearman", "pearson"),
             pairs=tuple(pairs)),
        Task(name="tiny-pairs", language="en", kind="pairclass", description="tiny pairs",
             metrics=("ap", "max_f1", "max_accuracy"), pairs=tuple(pairs)),
        Task(name="tiny-class", language="en", kind="classification", description="tiny classification",
             metrics=("accuracy", "macro_f1"), train=tuple(LabeledText(t, label(t)) for t in texts[:50]),
             test=tuple(LabeledText(t, label(t)) for t in texts[50:])),
        Task(name="tiny-cluster", language="en", kind="clustering", description="tiny clustering",
             metrics=("v_measure",), test=tuple(LabeledText(t, label(t)) for t in texts[:40])),
    ]
    return {task.name: task for task in tasks}


def _query_side_texts(tasks: dict[str, Task]) -> list[str]:
    texts: list[str] = []
    for task in tasks.values():
        texts += list(task.queries.values())
        texts += [t for p in task.pairs for t in (p.text1, p.text2)]
        texts += [t.text for t in (*task.train, *task.test)]
    return list(dict.fromkeys(texts))


@dataclass(frozen=True)
class Env:
    tasks: dict[str, Task]
    docs: list[Document]
    cache: Path
    e5: Path
    care: Path
    care_b: Path


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Env:
    root = tmp_path_factory.mktemp("evaluate")
    ids, texts, _ = make_documents(N_DOCS, seed=3)
    docs = [Document(i, t, {"source": "synthetic"}) for i, t in zip(ids, texts)]
    # Documents of another source: the corpus holds them, the source-filtered search task must not rank them.
    docs += [Document(f"other-{i}", f"{t} dose", {"source": "other"}) for i, t in enumerate(texts[:10])]
    tasks = _tiny_tasks(docs[:N_DOCS])

    cache = root / "cache"
    models = ModelCache(cache)
    models.record("embeddinggemma", {"name": "fake-gguf", "kind": "gguf", "sha256": FAKE_GGUF_SHA, "dims": 32})
    gguf_alignment = {"name": "fake-gguf", "kind": "gguf", "sha256": FAKE_GGUF_SHA,
                      "prompt": EMBEDDINGGEMMA_DOC_PROMPT, "pooling": "mean", "dims": 32, "full_dims": 32,
                      "max_tokens": 512, "normalize": True}
    e5 = build_encoder_dir(root / "e5", name="tiny-e5")  # symmetric: aligned to its own graph
    care = build_encoder_dir(root / "care_a", alignment=gguf_alignment, name="tiny-care-a")
    care_b = build_encoder_dir(root / "care_b", alignment=gguf_alignment, name="tiny-care-b", seed=7)

    # The "GGUF" vectors are the tiny e5 graph's own, so `llm` must reproduce `e5` on the search tasks.
    identity = gguf_identity("embeddinggemma", models)
    assert identity is not None
    doc_encoder = QueryEncoder(e5, max_tokens=512)
    doc_texts = list(dict.fromkeys([d.text for d in docs] + list(tasks["tiny-rerank"].documents.values())))
    doc_vectors = np.concatenate([doc_encoder.encode([t]).vectors for t in doc_texts])
    VectorCache(cache, identity, EMBEDDINGGEMMA_DOC_PROMPT).add(doc_texts, EncodedBatch(doc_vectors,
                                                                                        [False] * len(doc_texts)))
    query_encoder = QueryEncoder(e5)
    query_texts = _query_side_texts(tasks)
    query_vectors = np.concatenate([query_encoder.encode([t]).vectors for t in query_texts])
    VectorCache(cache, identity, EMBEDDINGGEMMA_QUERY_PROMPT).add(
        query_texts, EncodedBatch(query_vectors, [False] * len(query_texts))
    )
    return Env(tasks=tasks, docs=docs, cache=cache, e5=e5, care=care, care_b=care_b)


def _run(env: Env, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, out: Path,
         *args: str) -> tuple[int, str, str]:
    monkeypatch.setattr(evaluate, "ALL_TASKS", tuple(env.tasks))
    monkeypatch.setattr(evaluate, "load_task", lambda name, data_dir=None: env.tasks[name])
    monkeypatch.setattr(evaluate, "load_corpus", lambda name, data_dir=None: list(env.docs))
    code = evaluate.main(["--out", str(out), "--cache-dir", str(env.cache), "--e5-encoder", str(env.e5),
                          "--care-encoder", str(env.care), "--threads", "1", "--quiet", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _shards(cache: Path) -> set[Path]:
    return set(cache.glob("vectors/*/shard-*.npz"))


def test_run_writes_reports_deterministically(env: Env, tmp_path: Path, monkeypatch, capsys) -> None:
    args = ("--tasks", "all", "--systems", "bm25,e5,care,hybrid", "--latency-queries", "5")
    code, out, err = _run(env, monkeypatch, capsys, tmp_path / "one", *args, "--json")
    assert code == 0, err
    shards_after_first = _shards(env.cache)
    code2, _, err2 = _run(env, monkeypatch, capsys, tmp_path / "two", *args)
    assert code2 == 0, err2
    assert _shards(env.cache) == shards_after_first  # the re-run embedded nothing

    first = json.loads((tmp_path / "one" / "eval.json").read_text(encoding="utf-8"))
    second = json.loads((tmp_path / "two" / "eval.json").read_text(encoding="utf-8"))
    assert json.loads(out) == first  # --json prints the report it writes
    assert runner.metrics_only(first) == runner.metrics_only(second)
    for suffix in ("md", "png"):
        assert (tmp_path / "one" / f"eval.{suffix}").stat().st_size > 0
    assert (tmp_path / "one" / "eval.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # The views re-render from the record alone: the same Markdown, a PNG, and no other file touched.
    markdown = (tmp_path / "one" / "eval.md").read_bytes()
    (tmp_path / "one" / "eval.md").write_text("stale", encoding="utf-8")
    (tmp_path / "one" / "eval.png").unlink()
    assert eval_report.main([str(tmp_path / "one" / "eval.json")]) == 0
    assert (tmp_path / "one" / "eval.md").read_bytes() == markdown
    assert (tmp_path / "one" / "eval.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in (tmp_path / "one").iterdir()) == ["eval.json", "eval.md", "eval.png"]


    assert first["format"] == "care-edge/eval-report" and first["data_dir"]
    assert first["created"]["command"].startswith("python -m tools.evaluate --out ")
    assert "--systems bm25,e5,care,hybrid" in first["created"]["command"]
    assert first["created"]["git_revision"]
    assert {"onnxruntime", "tokenizers", "numpy"} <= set(first["created"]["versions"])  # what shapes the numbers
    e5_manifest = json.loads((env.e5 / "manifest.json").read_text())
    assert first["systems"]["e5"]["query_encoder"]["sha256"] == e5_manifest["files"]["model.onnx"]["sha256"]
    assert first["systems"]["care"]["document_encoder"]["sha256"] == FAKE_GGUF_SHA
    assert set(first["systems"]) == {"bm25", "e5", "care", "hybrid"}
    for name, info in first["systems"].items():
        assert info["latency"]["queries"] == 5 and info["latency"]["p50_ms"] > 0, name

    tasks = first["tasks"]
    assert set(tasks) == set(env.tasks)
    assert tasks["tiny-search"]["size"] == {"queries": 25, "documents": N_DOCS}  # source filter applied
    assert tasks["icd-coding-xx"]["size"]["documents"] == N_DOCS + 10
    for system in ("bm25", "e5", "care", "hybrid"):
        search = tasks["tiny-search"]["metrics"][system]
        assert set(search) == {"ndcg@10", "mrr@10", "recall@10", "recall@100"}
        assert all(0.0 <= v <= 1.0 for v in search.values())
        assert set(tasks["icd-coding-xx"]["metrics"][system]) >= {"recall@1", "recall@3", "recall@5", "mrr@10"}
    # Queries are three words of their document: BM25 finds nearly all of them.
    assert tasks["tiny-search"]["metrics"]["bm25"]["recall@10"] > 0.9
    for kind_task in ("tiny-sts", "tiny-pairs", "tiny-class", "tiny-cluster"):
        assert tasks[kind_task]["metrics"]["bm25"] is None and tasks[kind_task]["metrics"]["hybrid"] is None
        assert tasks[kind_task]["metrics"]["e5"] is not None
    assert tasks["tiny-class"]["metrics"]["e5"]["accuracy"] > 0.5

    icd = first["summary"]["icd-coding-avg"]
    assert icd["languages"] == ["xx", "yy"]
    for system in ("bm25", "e5"):
        expected = np.mean([tasks[f"icd-coding-{lang}"]["metrics"][system]["recall@1"] for lang in ("xx", "yy")])
        assert icd["metrics"][system]["recall@1"] == pytest.approx(expected)
    quality = first["summary"]["quality"]
    assert quality["tasks"] == ["tiny-search", "tiny-rerank", "icd-coding-avg"]
    expected_quality = np.mean([tasks["tiny-search"]["metrics"]["e5"]["ndcg@10"],
                                tasks["tiny-rerank"]["metrics"]["e5"]["map"], icd["metrics"]["e5"]["mrr@10"]])
    assert quality["scores"]["e5"] == pytest.approx(expected_quality)

    markdown = (tmp_path / "one" / "eval.md").read_text(encoding="utf-8")
    assert "| tiny-search | ndcg@10 |" in markdown and "| icd-coding-avg | mrr@10 | xx, yy |" in markdown
    assert first["created"]["command"] in markdown
    assert f"onnxruntime {first['created']['versions']['onnxruntime']}" in markdown
    assert "prompt `title: none \\| text: `" in markdown  # the prompt's '|' must not split the table cell
    # care's query graph and its cached document vectors are the tiny e5's own: the same ranking metrics.
    for task in ("tiny-search", "tiny-rerank", "icd-coding-xx"):
        assert tasks[task]["metrics"]["care"] == pytest.approx(tasks[task]["metrics"]["e5"], abs=1e-6)


def test_llm_reads_cached_vectors_and_matches_the_same_vectors_from_onnx(env, tmp_path, monkeypatch, capsys) -> None:
    code, _, err = _run(env, monkeypatch, capsys, tmp_path, "--tasks", "tiny-search,tiny-rerank,tiny-sts",
                        "--systems", "e5,llm", "--dims", "32", "--latency-queries", "0")
    assert code == 0, err
    report = json.loads((tmp_path / "eval.json").read_text(encoding="utf-8"))
    for task in ("tiny-search", "tiny-rerank", "tiny-sts"):
        e5, llm = report["tasks"][task]["metrics"]["e5"], report["tasks"][task]["metrics"]["llm"]
        assert llm == pytest.approx(e5, abs=1e-6), task
    assert report["systems"]["llm"]["latency"] is None

    code, _, err = _run(env, monkeypatch, capsys, tmp_path / "dims16", "--tasks", "tiny-search", "--systems", "llm",
                        "--dims", "16", "--latency-queries", "0")
    assert code == 0, err
    truncated = json.loads((tmp_path / "dims16" / "eval.json").read_text(encoding="utf-8"))
    assert truncated["systems"]["llm"]["dims"] == 16
    assert truncated["tasks"]["tiny-search"]["metrics"]["llm"] != report["tasks"]["tiny-search"]["metrics"]["llm"]


def test_several_care_encoders_each_get_a_system_and_a_fusion(env, tmp_path, monkeypatch, capsys) -> None:
    code, _, err = _run(env, monkeypatch, capsys, tmp_path, "--tasks", "tiny-search", "--systems", "care,hybrid",
                        "--care-encoder", f"{env.care},{env.care_b}", "--latency-queries", "0", "--quick")
    assert code == 0, err
    report = json.loads((tmp_path / "eval-quick.json").read_text(encoding="utf-8"))
    assert list(report["systems"]) == ["care:care_a", "care:care_b", "hybrid:care_a", "hybrid:care_b"]
    assert report["settings"]["quick"] is True


@pytest.mark.parametrize(
    ("args", "exit_code", "fragment"),
    [
        (("--systems", "bm25,colbert"), 2, "unknown colbert"),
        (("--tasks", "nope"), 2, "unknown nope"),
        (("--systems", "bm25,bm25"), 2, "twice"),
        (("--systems", "care", "--care-encoder", "E5"), 3, "aligned to"),
        (("--systems", "e5", "--e5-encoder", "CARE"), 2, "not a symmetric encoder"),
        (("--systems", "care", "--care-encoder", "MISSING"), 3, "does not exist"),
        (("--threads", "0"), 2, "--threads"),
        # Timing llm needs the GGUF itself, which this cache lacks: the run stops before scoring anything.
        (("--systems", "bm25,llm", "--dims", "32", "--latency-queries", "2"), 3, "embeddinggemma is not in"),
    ],
)
def test_errors_are_one_line(env, tmp_path, monkeypatch, capsys, args: tuple[str, ...], exit_code: int,
                             fragment: str) -> None:
    paths = {"E5": str(env.e5), "CARE": str(env.care), "MISSING": str(tmp_path / "missing")}
    args = tuple(paths.get(a, a) for a in args)
    code, out, err = _run(env, monkeypatch, capsys, tmp_path, "--tasks", "tiny-search", *args)
    assert code == exit_code, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], err
    assert not (tmp_path / "eval.json").exists()


def test_subsample_is_seeded_per_key_and_keeps_order() -> None:
    items = list(range(1000))
    sample = runner.subsample(items, 10, "task-a", 0)
    assert sample == sorted(sample) and len(set(sample)) == 10
    assert sample == runner.subsample(items, 10, "task-a", 0)
    assert sample != runner.subsample(items, 10, "task-b", 0)
    assert sample != runner.subsample(items, 10, "task-a", 1)
    assert runner.subsample(items[:5], 10, "task-a", 0) == items[:5]


def test_reciprocal_rank_fusion() -> None:
    fused = reciprocal_rank_fusion([np.array([0, 1, 2]), np.array([2, 0])], k=60)
    # 0: 1/61 + 1/62; 2: 1/63 + 1/61; 1: 1/62.
    assert fused.tolist() == [0, 2, 1]
    assert reciprocal_rank_fusion([np.array([5]), np.array([3])]).tolist() == [3, 5]  # a tie: lower index first
    assert reciprocal_rank_fusion([np.array([], dtype=np.int64)]).tolist() == []


@pytest.mark.slow
def test_llm_with_a_real_gguf_embeds_once_and_times_one_thread(env, tmp_path, monkeypatch, capsys) -> None:
    """The `llm` system through llama-cpp-python: missing vectors are embedded into the cache on the first run,
    none on the second, and single queries are timed."""
    real = ModelCache(cache_root())
    entry = real.read_manifest()["models"].get("gemma3-270m")
    if entry is None or not real.path_of("gemma3-270m").exists():
        pytest.skip("gemma3-270m is not fetched: python -m tools.models fetch --only gemma3-270m")
    models = ModelCache(tmp_path / "cache")
    models.path_of("gemma3-270m").parent.mkdir(parents=True)
    models.path_of("gemma3-270m").symlink_to(real.path_of("gemma3-270m"))
    models.record("gemma3-270m", entry)
    fresh = dataclasses.replace(env, cache=models.root)
    args = ("--tasks", "tiny-search,tiny-sts", "--systems", "bm25,llm", "--llm-encoder", "gemma3-270m",
            "--dims", "128", "--latency-queries", "3")
    code, _, err = _run(fresh, monkeypatch, capsys, tmp_path / "one", *args)
    assert code == 0, err
    shards = _shards(models.root)
    assert shards
    code, _, err = _run(fresh, monkeypatch, capsys, tmp_path / "two", *args)
    assert code == 0, err
    assert _shards(models.root) == shards
    first = json.loads((tmp_path / "one" / "eval.json").read_text(encoding="utf-8"))
    second = json.loads((tmp_path / "two" / "eval.json").read_text(encoding="utf-8"))
    assert runner.metrics_only(first) == runner.metrics_only(second)
    assert first["systems"]["llm"]["latency"]["p50_ms"] > 0
    assert first["systems"]["llm"]["document_encoder"]["sha256"] == entry["sha256"]


def _shipped_collection(env: Env, directory: Path, docs: list[Document]) -> Path:
    from edge import writers

    encoder = QueryEncoder(env.e5)
    texts = [d.text for d in docs]
    writers.write_collection(directory, name=directory.name, description="tiny shipped", document_encoder=encoder.alignment,
                         vectors=encoder.encode(texts).vectors, ids=[d.id for d in docs], texts=texts,
                         metas=[d.meta for d in docs], index_params={"dtype": "f32", "expansion_search": 256},
                         licenses=[], created={})
    return directory


def test_shipped_systems_search_through_the_runtime(env, tmp_path, monkeypatch, capsys) -> None:
    # The collection holds every corpus document (the "other" source too, which the search task must not see);
    # a second one holds only part of the corpus and must not be chosen.
    full = _shipped_collection(env, tmp_path / "full", list(reversed(env.docs)))
    part = _shipped_collection(env, tmp_path / "part", env.docs[:30])
    code, out, err = _run(env, monkeypatch, capsys, tmp_path / "out", "--tasks", "tiny-search,icd-coding-xx,tiny-sts",
                          "--systems", "e5,shipped", "--shipped-index", f"{part},{full}",
                          "--shipped-encoder", str(env.e5), "--latency-queries", "3", "--json")
    assert code == 0, err
    report = json.loads(out)
    tasks = report["tasks"]
    assert set(report["systems"]) == {"e5", "shipped:dense", "shipped:hybrid"}
    assert report["systems"]["shipped:hybrid"]["mode"] == "hybrid"
    assert [c["name"] for c in report["systems"]["shipped:dense"]["collections"]] == ["part", "full"]
    for task in ("tiny-search", "icd-coding-xx"):
        # Same encoder and vectors, 90 documents searched exhaustively by the HNSW: the brute-force e5 ranking.
        assert tasks[task]["metrics"]["shipped:dense"] == pytest.approx(tasks[task]["metrics"]["e5"], abs=1e-9)
        hybrid = tasks[task]["metrics"]["shipped:hybrid"]
        assert all(0.0 <= value <= 1.0 for value in hybrid.values())
    # Queries are three words of their document: fusing in BM25 finds more of them than the random tiny encoder.
    assert tasks["tiny-search"]["metrics"]["shipped:hybrid"]["recall@10"] > tasks["tiny-search"]["metrics"]["e5"]["recall@10"]
    assert tasks["tiny-sts"]["metrics"]["shipped:dense"] is None  # retrieval only

    code, out, err = _run(env, monkeypatch, capsys, tmp_path / "out2", "--tasks", "tiny-search", "--systems", "shipped",
                          "--shipped-index", str(part), "--shipped-encoder", str(env.e5), "--latency-queries", "0",
                          "--json")
    assert code == 0, err
    assert json.loads(out)["tasks"]["tiny-search"]["metrics"]["shipped:dense"] is None  # no collection holds it


def test_skip_leaves_a_system_task_pair_unmeasured_and_says_so(env, tmp_path, monkeypatch, capsys) -> None:
    code, out, err = _run(env, monkeypatch, capsys, tmp_path / "skip", "--tasks", "tiny-search,tiny-sts",
                          "--systems", "bm25,e5", "--skip", "e5:tiny-search", "--latency-queries", "0", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["tasks"]["tiny-search"]["metrics"]["e5"] is None
    assert report["tasks"]["tiny-search"]["metrics"]["bm25"] is not None
    assert report["tasks"]["tiny-sts"]["metrics"]["e5"] is not None
    assert report["settings"]["skipped"] == ["e5:tiny-search"]
    markdown = (tmp_path / "skip" / "eval.md").read_text(encoding="utf-8")
    assert "not run (cost): e5:tiny-search" in markdown
    for bad in ("e5", "llm:tiny-search", "e5:nope"):
        code, _, err = _run(env, monkeypatch, capsys, tmp_path / "bad", "--tasks", "tiny-search", "--systems", "e5",
                            "--skip", bad, "--latency-queries", "0")
        assert code == 2 and "--skip" in err and len(err.strip().splitlines()) == 1


def test_a_task_with_corpus_ids_ranks_only_those_documents_planned_on_their_own() -> None:
    docs = [Document(f"d{i}", f"text {i}", {"source": "synthetic"}) for i in range(10)]
    pool = frozenset({"d2", "d5", "d7"})
    task = Task(name="pooled", language="en", kind="retrieval", description="a pooled search",
                metrics=("ndcg@10",), queries={"q": "text 5"}, qrels={"q": {"d5": 1}}, corpus="tiny",
                corpus_ids=pool)
    view = runner.CorpusCache(lambda name: docs).view(task)
    assert view.ids == ("d2", "d5", "d7") and view.plan_texts == ("text 2", "text 5", "text 7")
    assert view.key.startswith("tiny[3 ids ")
    with pytest.raises(ValueError, match="corpus_ids"):
        dataclasses.replace(task, corpus_ids=frozenset({"d2"}))


def test_rerendering_a_file_that_is_not_a_report_is_one_line(tmp_path: Path, capsys) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text('{"systems": 3', encoding="utf-8")
    assert eval_report.main([str(broken)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a readable tools.evaluate report" in err
    assert not (tmp_path / "broken.png").exists()


def test_score_fusion_weights_each_systems_cosines() -> None:
    from tools.experiments.fusion_probe import fused_rankings

    axes = np.eye(3, dtype=np.float32)
    # System A puts the query on document 0, system B on document 1; document 2 is second for both.
    a = (np.array([[0.8, 0.0, 0.6]], dtype=np.float32), axes)
    b = (np.array([[0.0, 0.8, 0.6]], dtype=np.float32), axes)
    assert fused_rankings(a, b, 1.0, 3)[0].tolist() == [0, 2, 1]
    assert fused_rankings(a, b, 0.0, 3)[0].tolist() == [1, 2, 0]
    assert fused_rankings(a, b, 0.5, 1)[0].tolist() == [2]  # 0.6 beats 0.4 for either system's favourite


def test_bm25_fuses_with_a_score_fusion_of_two_dense_systems() -> None:
    from tools.evaluate.systems import BM25System, Corpus, DenseSystem, HybridSystem
    from tools.experiments.fusion_probe import ScoreFusionSystem

    corpus = Corpus(key="t", ids=("a", "b", "c"), texts=("fever cough", "knee pain", "chest pain breathing"))
    axes = np.eye(3, dtype=np.float32)

    def dense(name: str, query: list[float]) -> DenseSystem:
        return DenseSystem(name, query_vectors=lambda texts: np.array([query] * len(texts), dtype=np.float32),
                           document_vectors=lambda c: axes, encode_one=lambda text: None, info={})

    # Both dense systems favour "a"; only BM25 sees the words of "c", so reciprocal rank lifts "c" above "b".
    fused = ScoreFusionSystem("f", dense("x", [0.9, 0.3, 0.1]), dense("y", [0.8, 0.5, 0.2]), 0.5)
    assert [r.tolist() for r in fused.rank(["chest breathing"], corpus, 3)] == [[0, 1, 2]]
    hybrid = HybridSystem("h", BM25System(), fused)
    assert hybrid.rank(["chest breathing"], corpus, 3)[0].tolist()[:2] == [2, 0]


def test_fusion_probe_refuses_bad_weights(capsys: pytest.CaptureFixture[str]) -> None:
    from tools.experiments import fusion_probe

    assert fusion_probe.main(["--weights", "0,x"]) == 2
    assert "--weights" in capsys.readouterr().err


def test_evaluated_hybrid_is_the_runtime_hybrid(tiny) -> None:
    """HybridSystem ranks as Searcher does, given the same two rankings: its top DEFAULT_K are `search`'s default
    results, and the rest follows the runtime's fusion at the requested depth."""
    from edge import Collection, QueryEncoder, Searcher
    from edge.hybrid import FUSION_K
    from edge.search import DEFAULT_K
    from edge.text import clean_query
    from tools.evaluate.systems import HybridSystem, System

    searcher = Searcher(Collection(tiny.collection), QueryEncoder(tiny.encoder))
    collection = searcher.collection

    class Ranked(System):
        def __init__(self, name: str, ranking) -> None:
            self.name = name
            self.ranking = ranking

        def rank(self, queries, corpus, depth):
            return [self.ranking(clean_query(query), depth) for query in queries]

    # Exact dense search on both sides of the comparison: an ANN top-30 need not be the prefix of an ANN top-100,
    # while the evaluation's systems are exact, so their head is the prefix of any deeper ranking.
    collection.search_vectors = collection.exact_search
    dense = Ranked("dense", lambda q, depth: collection.search_vectors(searcher.encoder.encode([q]).vectors, depth)[0].keys)
    lexical = Ranked("bm25", lambda q, depth: collection.search_lexical(q, depth).keys)
    hybrid = HybridSystem("hybrid", lexical, dense)
    queries = [" ".join(text.split()[:3]) for text in tiny.texts[:30]]
    deeper_differs = False
    for k in (10, 100):
        evaluated = hybrid.rank(queries, None, k)
        for query, ranking in zip(queries, evaluated):
            shipped = [result.key for result in searcher.search(query, k=k, mode="hybrid").results]
            # The head is what `care-edge search` returns at its default k; the rest is the runtime's depth-k fusion.
            head = [result.key for result in searcher.search(query, mode="hybrid").results]
            assert ranking.tolist()[:DEFAULT_K] == head, query
            assert ranking.tolist() == head + [key for key in shipped if key not in head][: k - len(head)], query
            # The tiny collection has 200 documents: fusing both full rankings (deeper than the runtime) would
            # rank differently for some query, so the equality above also pins the depth.
            deep = reciprocal_rank_fusion([dense.rank([query], None, 1000)[0], lexical.rank([query], None, 1000)[0]],
                                          FUSION_K)[:k]
            deeper_differs |= deep.tolist() != shipped
    assert deeper_differs
