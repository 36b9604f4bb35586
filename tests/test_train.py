"""tools.train: unit tests of its parts (fast, need torch) and both stages end to end on a tiny real subset (slow).

The slow tests train a 2-layer student (multilingual-e5-small pruned to the subset's vocabulary) against a real GGUF
teacher, the small Gemma 3 270M (``python -m tools.models fetch --only gemma3-270m,e5-small``), with its own vector
cache in a temp folder: stage I on ~40 real training texts, stage II on ~24 real pairs, then the export, loaded by
the runtime's ``edge.QueryEncoder``.
"""

from __future__ import annotations

import json
import signal
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest

# Torch is the tools extra's: `make test-slow` (and CI) installs it and runs these; `make test` leaves them out.
pytestmark = pytest.mark.needs_tools
torch = pytest.importorskip("torch")

from edge import formats  # noqa: E402
from tools.data import splits  # noqa: E402
from tools.data.records import DEFAULT_DATA_DIR, DataError  # noqa: E402
from tools.data.registry import load_corpus  # noqa: E402
from tools.export import cli as export_cli  # noqa: E402
from tools.train import (  # noqa: E402
    cli as train,
    config as train_config,
    data as train_data,
    losses,
    negatives,
    runs,
    stage1,
    stage2,
    state as train_state,
    student as st,
)
from tools.train.loop import batch_rows, linear_schedule, steps_for  # noqa: E402

needs_data = pytest.mark.skipif(not DEFAULT_DATA_DIR.is_dir(), reason=f"shared data not found at {DEFAULT_DATA_DIR}")


# ------------------------------------------------------------------------------------------------ losses


def _unit(rows: int, dims: int, seed: int) -> torch.Tensor:
    return torch.nn.functional.normalize(torch.randn(rows, dims, generator=torch.Generator().manual_seed(seed)), dim=-1)


def test_squared_distance_is_two_minus_two_cosine() -> None:
    a, b = _unit(5, 16, 0), _unit(5, 16, 1)
    expected = (2 - 2 * (a * b).sum(-1)).mean()
    assert torch.allclose(losses.squared_distance(a, b), expected, atol=1e-6)
    assert float(losses.squared_distance(a, a)) == pytest.approx(0.0, abs=1e-7)


def test_info_nce_matches_cross_entropy_and_masking_removes_a_candidate() -> None:
    q, c = _unit(3, 8, 2), _unit(6, 8, 3)
    target = torch.tensor([0, 1, 2])
    manual = -torch.log_softmax(q @ c.T / 0.05, dim=-1)[torch.arange(3), target].mean()
    assert torch.allclose(losses.info_nce(q, c, target, 0.05), manual, atol=1e-5)
    mask = torch.zeros(3, 6, dtype=torch.bool)
    mask[:, 5] = True  # candidate 5 is a false negative for everyone
    without = -torch.log_softmax(q @ c[:5].T / 0.05, dim=-1)[torch.arange(3), target].mean()
    assert torch.allclose(losses.info_nce(q, c, target, 0.05, mask), without, atol=1e-5)


def test_kl_is_zero_for_the_teacher_itself_and_positive_otherwise() -> None:
    t, c = _unit(4, 8, 4), _unit(10, 8, 5)
    assert float(losses.distribution_kl(t, t, c, 0.02)) == pytest.approx(0.0, abs=1e-6)
    assert float(losses.distribution_kl(_unit(4, 8, 6), t, c, 0.02)) > 0.01
    mask = torch.zeros(4, 10, dtype=torch.bool)
    mask[:, :3] = True
    value = losses.distribution_kl(_unit(4, 8, 6), t, c, 0.02, mask)
    assert torch.isfinite(value)


def test_kl_gradient_flows_to_the_student_only() -> None:
    student = _unit(4, 8, 7).requires_grad_(True)
    teacher = _unit(4, 8, 8).requires_grad_(True)
    losses.distribution_kl(student, teacher, _unit(6, 8, 9), 0.05).backward()
    assert student.grad is not None and float(student.grad.abs().sum()) > 0
    assert teacher.grad is None


def test_score_kl_from_the_teachers_own_cosines_equals_the_vector_form() -> None:
    t, c, s = _unit(4, 8, 12), _unit(10, 8, 13), _unit(4, 8, 14)
    mask = torch.zeros(4, 10, dtype=torch.bool)
    mask[1, 4] = True
    assert torch.allclose(losses.score_kl(s, c, t @ c.T, 0.02, mask), losses.distribution_kl(s, t, c, 0.02, mask))


def _stage2_batch(co_weight: float):
    """One stage-II batch whose LLM teacher and co-teacher rank the candidates in opposite orders."""
    student, docs = _unit(3, 8, 15), _unit(6, 8, 16)
    llm_queries = docs[:3] + 0.05  # the LLM teacher prefers each query's own positive
    co_queries, co_docs = _unit(3, 4, 17), _unit(6, 4, 18)
    mask = torch.zeros(3, 6, dtype=torch.bool)
    config = train_config.Stage2Config(student=Path("."), out=Path("."), steps=1, kl_co_weight=co_weight,
                                kl_co_teacher=Path("e5"), align_weight=0.0)
    model = lambda ids, attention: student  # noqa: E731  (the batch's student vectors, as a model would give)
    return stage2.stage2_loss(config), model, ((None, None), llm_queries, docs, mask, (co_queries, co_docs)), \
        (student, llm_queries, co_queries, docs, co_docs)


def test_the_co_teacher_share_moves_the_kl_target_from_the_llm_to_the_co_teacher() -> None:
    loss_llm_only, model, batch, (student, llm_q, co_q, docs, co_docs) = _stage2_batch(0.0)
    _, parts = loss_llm_only(model, batch)
    assert parts["loss_kl"] == pytest.approx(float(losses.distribution_kl(student, llm_q, docs, 0.02)), rel=1e-5)
    loss_co_only, *_ = _stage2_batch(1.0)
    _, parts = loss_co_only(model, batch)
    assert parts["loss_kl"] == pytest.approx(float(losses.score_kl(student, docs, co_q @ co_docs.T, 0.02)), rel=1e-5)
    loss_half, *_ = _stage2_batch(0.5)
    _, parts = loss_half(model, batch)
    fused = 0.5 * llm_q @ docs.T + 0.5 * co_q @ co_docs.T
    assert parts["loss_kl"] == pytest.approx(float(losses.score_kl(student, docs, fused, 0.02)), rel=1e-5)


def test_a_co_teacher_share_outside_zero_to_one_is_refused_in_one_line(tmp_path: Path,
                                                                         capsys: pytest.CaptureFixture) -> None:
    args = ["stage2", "--student", str(tmp_path / "s1"), "--out", str(tmp_path / "s2"), "--steps", "1",
            "--kl-co-teacher", str(tmp_path / "e5"), "--kl-co-weight", "1.5"]
    assert train.main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--kl-co-weight 1.5" in err
    assert not (tmp_path / "s2").exists()  # refused before anything was written


# ------------------------------------------------------------------------------------------------ student head


def test_ridge_projection_recovers_a_linear_map() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((400, 12))
    weight, bias = rng.standard_normal((5, 12)), rng.standard_normal(5)
    fitted_w, fitted_b = st.ridge_projection(x, x @ weight.T + bias, alpha=1e-8)
    assert np.allclose(fitted_w, weight, atol=1e-3) and np.allclose(fitted_b, bias, atol=1e-3)
    shrunk_w, _ = st.ridge_projection(x, x @ weight.T + bias, alpha=10.0)
    assert np.linalg.norm(shrunk_w) < np.linalg.norm(weight)  # the penalty shrinks


def test_a_truncated_head_outputs_the_prefix_of_the_full_head() -> None:
    torch.manual_seed(0)
    model = torch.nn.Module()
    model.projection = torch.nn.Linear(6, 8)
    x = torch.randn(3, 6, generator=torch.Generator().manual_seed(0))
    full = model.projection(x).detach()
    st.truncate_projection(model, 3)
    assert model.projection.out_features == 3
    # A narrower matmul may take another kernel: equal up to float32 rounding, not bit for bit.
    assert torch.allclose(model.projection(x), full[:, :3], rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError):
        st.truncate_projection(model, 4)  # only ever fewer dims


def test_the_export_cli_refuses_options_of_the_other_source_in_one_line(tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    out = str(tmp_path / "out")
    cases = [
        (["--model", str(tmp_path), "--out", out], "--aligned-to"),
        (["--model", str(tmp_path), "--out", out, "--aligned-to", str(tmp_path), "--dims", "8"], "--dims"),
        (["--student", str(tmp_path), "--out", out, "--symmetric-passage-prompt", "passage: "], "--model"),
        (["--student", str(tmp_path), "--out", out], "not a student folder"),
    ]
    for args, fragment in cases:
        assert export_cli.main(args) == 2, args
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("error: ") and fragment in err, (args, err)
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------------------------ negatives


def test_mining_stays_in_the_band_and_never_returns_an_excluded_document() -> None:
    docs = _unit(60, 16, 10).numpy()
    queries = docs[:5] + 0.01  # each query sits on top of document i
    ranked = negatives.top_ranked(queries, docs, 60)
    assert list(ranked[:, 0]) == [0, 1, 2, 3, 4]
    excluded = [frozenset({i, int(ranked[i, 3])}) for i in range(5)]  # own doc + the doc at rank 4
    mined = negatives.mine(queries, docs, [0, 1, 2, 3, 4], excluded, count=4, band=(4, 12), seed=0)
    assert mined.rows.shape == (5, 4) and mined.topped_up == 0
    for i in range(5):
        band = set(ranked[i, 3:12].tolist())
        assert set(mined.rows[i].tolist()) <= band - excluded[i]
        assert len(set(mined.rows[i].tolist())) == 4
    again = negatives.mine(queries, docs, [0, 1, 2, 3, 4], excluded, count=4, band=(4, 12), seed=0)
    assert np.array_equal(again.rows, mined.rows)


def test_mining_tops_up_a_thin_band_at_random() -> None:
    docs = _unit(20, 8, 11).numpy()
    ranked = negatives.top_ranked(docs[:1], docs, 20)[0]
    banned = frozenset(ranked[3:8].tolist())  # ranks 4-8 of the band 4-10: two documents are left in it
    mined = negatives.mine(docs[:1], docs, [0], [banned], count=5, band=(4, 10), seed=1)
    assert mined.topped_up == 3 and not set(mined.rows[0].tolist()) & banned
    assert set(ranked[8:10].tolist()) <= set(mined.rows[0].tolist())
    assert len(set(mined.rows[0].tolist())) == 5
    with pytest.raises(ValueError, match="rank"):
        negatives.parse_rank_band("40:4")


# ------------------------------------------------------------------------------------------------ data order, logs


def test_batches_cover_each_row_once_per_epoch_and_depend_only_on_the_step() -> None:
    n, batch = 50, 8
    per_epoch = n // batch
    first_epoch = np.concatenate([batch_rows(n, batch, step, seed=3) for step in range(per_epoch)])
    assert len(set(first_epoch.tolist())) == per_epoch * batch
    assert np.array_equal(batch_rows(n, batch, 9, seed=3), batch_rows(n, batch, 9, seed=3))
    assert not np.array_equal(batch_rows(n, batch, per_epoch, seed=3), batch_rows(n, batch, 0, seed=3))
    assert steps_for(n, batch, None, 2.0) == 2 * per_epoch and steps_for(n, batch, 7, None) == 7


def test_linear_schedule_warms_up_then_decays_to_zero() -> None:
    factor = linear_schedule(total=100, warmup=10)
    assert factor(0) == pytest.approx(0.1) and factor(9) == pytest.approx(1.0)
    assert factor(55) == pytest.approx(0.5) and factor(100) == 0.0


def test_a_finished_run_is_reused_only_for_the_same_recipe(tmp_path: Path) -> None:
    from edge.errors import BadInput

    config = train_config.Stage1Config(student=tmp_path / "e5", out=tmp_path / "run", steps=5, resume=True, titles=10)
    (config.out / st.MODEL_SUBDIR).mkdir(parents=True)
    recorded = train_config.jsonable(config)
    del recorded["titles"]  # a run from before the setting existed: read as its default, 0
    train_state.update_run(config.out, stage="stage1", status="complete", config=recorded, document_encoder={})
    with pytest.raises(BadInput, match=r"other settings \(titles\)"):
        runs.already_complete(config, "stage1")
    untitled = train_config.Stage1Config(student=tmp_path / "e5", out=tmp_path / "run", steps=5, resume=True)
    assert runs.already_complete(untitled, "stage1") is not None
    # How it is run (threads, logging) is not the recipe; the learning rate is.
    assert runs.already_complete(replace(untitled, threads=1, log_every=3), "stage1") is not None
    with pytest.raises(BadInput, match=r"\(lr\)"):
        runs.already_complete(replace(untitled, lr=1e-4), "stage1")


def test_capped_choice_does_not_depend_on_order() -> None:
    items = [f"text {i}" for i in range(100)]
    chosen = train_data.capped(items, 10, seed=1, key=lambda t: t)
    assert len(chosen) == 10
    assert set(train_data.capped(items[::-1], 10, seed=1, key=lambda t: t)) == set(chosen)
    assert set(train_data.capped(items, 10, seed=2, key=lambda t: t)) != set(chosen)
    assert train_data.capped(items, None, seed=1, key=lambda t: t) == items


def test_a_source_cap_overrides_the_common_cap_for_that_source_only() -> None:
    sources = ("kuake", "chip")
    common = train_data.stage2_data(max_per_source=6, negative_corpora=(), sources=sources).counts()
    assert common == {"kuake": 6, "chip": 6}
    counts = train_data.stage2_data(max_per_source=6, negative_corpora=(), sources=sources,
                                    source_caps={"chip": 10}).counts()
    assert counts == {"kuake": 6, "chip": 10}
    assert train.build_parser().parse_args(["teacher", "stage2", "--source-caps", "chip=10,kuake=0"]).source_caps \
        == (("chip", 10), ("kuake", None))
    with pytest.raises(DataError, match="unknown"):
        train_data.stage2_data(max_per_source=6, negative_corpora=(), sources=sources, source_caps={"chipp": 1})


@needs_data
def test_stage1_titles_are_cmedir_title_heads_sampled_by_their_own_count() -> None:
    data = train_data.stage1_data(max_per_source=5, documents=0, document_chars=24, titles=30,
                                  sources=("kuake", "titles"))
    by_source = {s: [t for t, src in zip(data.texts, data.sources) if src == s] for s in set(data.sources)}
    assert len(by_source["kuake"]) == 5 and len(by_source["titles"]) == 30  # --max-per-source does not cap titles
    heads = {train_data.cut_document(d.text, 24) for d in load_corpus("cmedir-titles")}
    assert set(by_source["titles"]) <= heads
    assert not any(splits.is_eval_text(t) for t in by_source["titles"])
    with pytest.raises(DataError, match="--titles"):
        train_data.stage1_data(max_per_source=5, titles=30, sources=("titles",), source_caps={"titles": 3})


@needs_data
def test_medquad_pairs_point_at_medquad_documents_and_never_at_a_held_out_answer() -> None:
    pairs = train_data.stage2_data(max_per_source=40, negative_corpora=(), sources=("medquad",))
    assert pairs.counts() == {"medquad": 40}
    documents = {d.text for d in load_corpus("medquad-en")}
    held_answers = {r.answer for r in splits.medquad_split().eval}
    assert held_answers and all(p.document in documents for p in pairs.pairs)
    assert not {p.document for p in pairs.pairs} & held_answers


def test_llm_labelling_pairs_each_query_with_its_top_document_and_drops_weak_or_own_text_labels() -> None:
    from tools.train.llm_labels import top_document_pairs

    axes = np.eye(8, dtype=np.float32)
    docs = axes[:6]
    documents = ["d0", "d1", "d2", "q-self", "d4", "d5"]
    queries = ["qa", "q-self", "qb"]
    query_vectors = np.stack([axes[1], axes[3] * 0.9 + axes[5] * 0.4, axes[7]])  # "qb" is orthogonal to every doc
    query_vectors /= np.linalg.norm(query_vectors, axis=1, keepdims=True)
    labelled = top_document_pairs(queries, query_vectors, documents, docs, source="kuake", min_score=0.3)
    by_query = {p.query: p for p in labelled.pairs}
    assert by_query["qa"].document == "d1" and by_query["qa"].source == "llm-kuake"
    assert by_query["q-self"].document == "d5"  # its own text ranks first and is skipped
    assert "qb" not in by_query and labelled.below_min_score == 1 and labelled.offered == 3
    with pytest.raises(ValueError, match="one vector"):
        top_document_pairs(queries, query_vectors[:2], documents, docs, source="kuake")


@needs_data
def test_llm_labelled_pairs_join_stage2_and_evaluation_texts_are_refused() -> None:
    caps = {"kuake": 5, "toyhom": 3}
    pools = train_data.unlabeled_queries(None, caps, seed=0)
    assert {s: len(v) for s, v in pools.items()} == caps
    assert train_data.unlabeled_queries(None, caps, seed=0) == pools  # the same texts every time
    extra = [train_data.Pair(q, "糖尿病吃什么好", "llm-kuake") for q in pools["kuake"]]
    data = train_data.stage2_data(max_per_source=4, negative_corpora=(), sources=("chip",), extra_pairs=extra)
    assert data.counts() == {"chip": 4, "llm-kuake": 5}
    assert all(data.documents[r] == "糖尿病吃什么好" for p, r in zip(data.pairs, data.positive_rows)
               if p.source == "llm-kuake")
    leak = next(iter(splits.cmedir_split().eval))  # a cMedIR test query
    with pytest.raises(splits.EvalLeakError):
        train_data.stage2_data(max_per_source=4, negative_corpora=(), sources=("chip",),
                               extra_pairs=[train_data.Pair(leak, "糖尿病吃什么好", "llm-kuake")])
    with pytest.raises(DataError, match="unknown"):
        train_data.unlabeled_queries(None, {"documents": 3}, seed=0)
    args = train.build_parser().parse_args(["teacher", "stage2", "--llm-labelled", "kuake=4000,toyhom=0"])
    assert args.llm_labelled == (("kuake", 4000), ("toyhom", None))


@needs_data
def test_stage2_labels_unlabeled_queries_with_the_teachers_top_document() -> None:
    class HashTeacher:  # deterministic unit vectors per text, in place of the GGUF
        def vectors(self, texts, side, dims, missing="embed", progress=True, what=""):
            rows = [np.random.default_rng(abs(hash((side, t))) % 2**32).standard_normal(dims) for t in texts]
            out = np.asarray(rows, dtype=np.float32)
            return out / np.linalg.norm(out, axis=1, keepdims=True)

    config = train_config.Stage2Config(student=Path("."), out=Path("."), llm_labelled=(("chip", 20),),
                                llm_labelled_min_score=-1.0)
    pairs, report = stage2._llm_labelled_pairs(config, HashTeacher(), 16)
    titles = {d.text for d in load_corpus("cmedir-titles")}
    assert len(pairs) == 20 and report["chip"]["kept"] == 20 and report["corpus"] == "cmedir-titles"
    assert all(p.document in titles and p.source == "llm-chip" for p in pairs)
    assert stage2._llm_labelled_pairs(train_config.Stage2Config(student=Path("."), out=Path(".")), HashTeacher(), 16) \
        == ([], {})

    class EvalTitleTeacher(HashTeacher):  # every query sits on the titles that are also evaluation queries
        def vectors(self, texts, side, dims, missing="embed", progress=True, what=""):
            out = super().vectors(texts, side, dims)
            on_axis = [side == "query" or splits.is_eval_text(t) for t in texts]
            out[on_axis] = np.eye(dims, dtype=np.float32)[0]
            return out

    leaky = [t for t in titles if splits.is_eval_text(t)]
    assert leaky  # e.g. a KUAKE test question that is also a cMedIR title
    pairs, _ = stage2._llm_labelled_pairs(config, EvalTitleTeacher(), 16)
    assert len(pairs) == 20 and not any(splits.is_eval_text(p.document) for p in pairs)


def test_step_log_is_cut_back_to_the_checkpoint(tmp_path: Path) -> None:
    log = train_state.StepLog(tmp_path / "train_log.jsonl")
    for step in range(1, 8):
        log.append({"stage": "stage1", "step": step, "loss": 1.0 / step})
    log.truncate_after("stage1", 4)
    assert [r["step"] for r in train_state.read_log(log.path)] == [1, 2, 3, 4]
    assert train_state.plot_loss_curve(log.path, tmp_path / "curve.png")
    assert (tmp_path / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ------------------------------------------------------------------------------------------------ end to end (slow)

DIMS = 256
STAGE2_SOURCES = "cmedir,kuake,chip,icd"  # Toyhom answers are long: on 2 cores the teacher would take minutes


@dataclass(frozen=True)
class Pipeline:
    root: Path
    student: Path  # the pruned 12-layer e5 folder
    stage1: Path
    stage2: Path
    encoder_dir: Path
    teacher_args: list[str]


def _stage1_args(student: Path, out: Path, teacher_args: list[str]) -> list[str]:
    return ["stage1", "--student", str(student), "--out", str(out), *teacher_args, "--layers", "2", "--dims",
            str(DIMS), "--steps", "12", "--batch-size", "8", "--max-tokens", "24", "--max-per-source", "6",
            "--documents", "6", "--ridge-sample", "12", "--lr", "1e-3", "--no-dropout", "--checkpoint-every", "4",
            "--log-every", "1", "--no-progress"]


def _stage2_args(student: Path, out: Path, teacher_args: list[str]) -> list[str]:
    # One batch holds all 24 pairs: each step sees the same data, so the loss curve is not batch-to-batch noise.
    return ["stage2", "--student", str(student), "--out", str(out), *teacher_args, "--sources", STAGE2_SOURCES,
            "--negative-corpora", "none", "--steps", "10", "--batch-size", "24", "--max-per-source", "6",
            "--lr", "5e-4", "--no-dropout", "--checkpoint-every", "5", "--log-every", "1", "--no-progress"]


def _stage2_data() -> train_data.Stage2Data:
    return train_data.stage2_data(max_per_source=6, negative_corpora=(), sources=STAGE2_SOURCES.split(","))


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Pipeline:
    from tools.build.vocab import prune_model_dir
    from tools.export.query_encoder import PARITY_TEXTS
    from tools.models.cache import ModelCache, cache_root

    models = ModelCache(cache_root())
    for path in (models.gemma3_270m_gguf, models.e5_dir / "model.safetensors"):
        if not path.exists():
            pytest.fail(f"{path} missing: run `python -m tools.models fetch --only gemma3-270m,e5-small`")
    root = tmp_path_factory.mktemp("train")
    texts = train_data.stage1_data(max_per_source=6, documents=6).texts
    pairs = _stage2_data()
    vocabulary = [*texts, *(p.query for p in pairs.pairs), *pairs.documents, *PARITY_TEXTS]
    student = root / "e5-tiny"
    prune_model_dir(models.e5_dir, student, vocabulary)
    teacher_args = ["--encoder", f"gguf:{models.gemma3_270m_gguf}", "--cache-dir", str(root / "cache")]

    assert train.main(_stage1_args(student, root / "s1", teacher_args)) == 0
    assert train.main(_stage2_args(root / "s1", root / "s2", teacher_args)) == 0
    assert export_cli.main(["--student", str(root / "s2"), "--out", str(root / "query_encoder")]) == 0
    return Pipeline(root, student, root / "s1", root / "s2", root / "query_encoder", teacher_args)


def _losses(run_dir: Path, stage: str) -> list[float]:
    rows = [r for r in train_state.read_log(run_dir / train_state.LOG_FILE) if r["stage"] == stage]
    assert [r["step"] for r in rows] == list(range(1, len(rows) + 1))  # every step once, in order
    return [r["loss"] for r in rows]


@pytest.mark.slow
@needs_data
def test_stage1_writes_a_student_folder_and_its_loss_falls(pipeline: Pipeline) -> None:
    values = _losses(pipeline.stage1, "stage1")
    assert len(values) == 12 and all(np.isfinite(values))
    assert np.mean(values[-3:]) < 0.8 * np.mean(values[:3]), values
    run = train_state.read_run(pipeline.stage1)
    assert run["status"] == "complete" and run["steps"] == 12
    assert {"data_s", "teacher_s", "init_s", "train_s", "save_s"} <= set(run["timings"])
    assert run["projection"]["init"] == "ridge" and run["data"]["texts"] >= 30
    assert run["document_encoder"]["dims"] == DIMS and run["document_encoder"]["full_dims"] >= DIMS
    model_dir = pipeline.stage1 / "model"
    for name in ("model.safetensors", "config.json", "tokenizer.json", "projection.safetensors"):
        assert (model_dir / name).is_file(), name
    assert json.loads((model_dir / "config.json").read_text())["num_hidden_layers"] == 2
    model = st.load_student(model_dir)
    assert st.layer_count(model) == 2 and st.output_dims(model) == DIMS
    assert (pipeline.stage1 / train_state.CURVE_FILE).read_bytes()[:4] == b"\x89PNG"
    assert (pipeline.stage1 / train_state.CHECKPOINT_FILE).is_file()


@pytest.mark.slow
@needs_data
def test_stage2_mines_clean_negatives_and_its_loss_falls(pipeline: Pipeline) -> None:
    values = _losses(pipeline.stage2, "stage2")
    assert len(values) == 10 and all(np.isfinite(values))
    assert np.mean(values[-3:]) < np.mean(values[:3]), values
    run = train_state.read_run(pipeline.stage2)
    assert run["status"] == "complete" and run["mining"]["reused"] is False
    assert set(run["data"]["by_source"]) == set(STAGE2_SOURCES.split(","))
    data = _stage2_data()
    assert run["data"]["pairs"] == len(data.pairs)
    with np.load(pipeline.stage2 / "negatives.npz") as saved:
        rows = saved["rows"]
    assert rows.shape == (len(data.pairs), 7)
    for pair, mined in zip(data.pairs, rows):
        assert not set(mined.tolist()) & data.positives_of[pair.query]
        assert pair.query not in {data.documents[r] for r in mined}


@pytest.mark.slow
@needs_data
def test_export_loads_in_the_runtime_and_matches_the_student(pipeline: Pipeline) -> None:
    from edge.encoder import QueryEncoder

    encoder = QueryEncoder(pipeline.encoder_dir)
    texts = ["胸痛伴呼吸困难是什么原因", "What are the symptoms of glaucoma?"]
    vectors = encoder.encode(texts).vectors
    assert vectors.shape == (2, DIMS)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-3)
    model_dir = pipeline.stage2 / "model"
    tokenize = st.StudentTokenizer(model_dir / "tokenizer.json", 64, train_config.STUDENT_PROMPT)
    reference = st.encode(st.load_student(model_dir), tokenize, texts)
    assert np.min(np.sum(vectors * reference, axis=1)) > 0.95  # INT8 graph vs the torch student
    document_encoder = train_state.read_run(pipeline.stage2)["document_encoder"]
    assert encoder.manifest["alignment"]["alignment_id"] == formats.alignment_id(document_encoder)
    assert encoder.config.prompt == "query: " and encoder.config.dims == DIMS


@pytest.mark.slow
@needs_data
def test_a_matryoshka_export_is_the_prefix_of_the_student_aligned_at_fewer_dims(pipeline: Pipeline) -> None:
    from edge.encoder import QueryEncoder

    half = DIMS // 2
    out = pipeline.root / "query_encoder_half"
    assert export_cli.main(["--student", str(pipeline.stage2), "--out", str(out), "--dims", str(half)]) == 0
    encoder = QueryEncoder(out)
    texts = ["胸痛伴呼吸困难是什么原因", "What are the symptoms of glaucoma?"]
    vectors = encoder.encode(texts).vectors
    model_dir = pipeline.stage2 / "model"
    tokenize = st.StudentTokenizer(model_dir / "tokenizer.json", 64, train_config.STUDENT_PROMPT)
    prefix = st.encode(st.load_student(model_dir), tokenize, texts)[:, :half]
    prefix /= np.linalg.norm(prefix, axis=1, keepdims=True)
    assert vectors.shape == (2, half) and np.min(np.sum(vectors * prefix, axis=1)) > 0.95
    document_encoder = {**train_state.read_run(pipeline.stage2)["document_encoder"], "dims": half}
    assert encoder.manifest["alignment"]["alignment_id"] == formats.alignment_id(document_encoder)
    assert export_cli.main(["--student", str(pipeline.stage2), "--out", str(pipeline.root / "x"),
                       "--dims", str(DIMS * 2)]) != 0  # only ever fewer dims


@pytest.mark.slow
@needs_data
def test_an_interrupted_run_resumes_to_the_uninterrupted_result(
    pipeline: Pipeline, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    make_loss = stage1.stage1_loss

    def interrupting(config):  # SIGINT arrives during the 5th step of this process
        inner, calls = make_loss(config), {"n": 0}

        def loss_of(model, batch):
            calls["n"] += 1
            if calls["n"] == 5:
                signal.raise_signal(signal.SIGINT)
            return inner(model, batch)

        return loss_of

    out = tmp_path / "s1"
    args = _stage1_args(pipeline.student, out, pipeline.teacher_args)
    monkeypatch.setattr(stage1, "stage1_loss", interrupting)
    assert train.main(args) == 130
    assert "--resume" in capsys.readouterr().err
    assert train_state.load_checkpoint(out / train_state.CHECKPOINT_FILE)["step"] == 5
    assert train.main(args) == 2  # a checkpoint is there: refuse to start over it without --resume
    monkeypatch.setattr(stage1, "stage1_loss", make_loss)
    assert train.main([*args, "--resume"]) == 0
    assert len(_losses(out, "stage1")) == 12
    resumed = st.load_student(out / "model").state_dict()
    straight = st.load_student(pipeline.stage1 / "model").state_dict()
    assert resumed.keys() == straight.keys()
    for key in straight:
        assert torch.allclose(resumed[key], straight[key], atol=1e-5), key
    assert train.main([*args, "--resume"]) == 0  # complete: nothing to do


@pytest.mark.slow
@needs_data
def test_the_trainer_refuses_evaluation_texts(
    pipeline: Pipeline, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    eval_query = next(iter(splits.cmedir_split().eval))
    with pytest.raises(splits.EvalLeakError):
        train_data.stage1_data(max_per_source=6, documents=6, extra_texts=[eval_query])
    extra = tmp_path / "extra.txt"
    extra.write_text(f"糖尿病的早期症状\n{eval_query}\n", encoding="utf-8")
    out = tmp_path / "leak"
    code = train.main([*_stage1_args(pipeline.student, out, pipeline.teacher_args), "--extra-texts", str(extra)])
    assert code == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and "evaluation texts" in lines[0] and "Traceback" not in lines[0]
    assert not (out / "model").exists() and not (out / train_state.CHECKPOINT_FILE).exists()


@pytest.mark.slow
@needs_data
def test_stage2_with_a_co_teacher_distils_the_fused_target_and_records_it(pipeline: Pipeline,
                                                                          tmp_path: Path) -> None:
    from conftest import build_encoder_dir

    co_dir = build_encoder_dir(tmp_path / "co", name="tiny-co-teacher")  # symmetric: aligned to its own graph
    out = tmp_path / "s2co"
    args = _stage2_args(pipeline.stage1, out, pipeline.teacher_args)
    args[args.index("--steps") + 1] = "4"
    assert train.main([*args, "--teacher-missing", "error", "--kl-co-teacher", str(co_dir),
                       "--kl-co-weight", "0.5"]) == 0
    run = train_state.read_run(out)
    assert run["status"] == "complete" and run["kl_co_teacher"]["name"] == "tiny-co-teacher"
    assert run["kl_co_teacher"]["weight"] == 0.5
    kl = [r["loss_kl"] for r in train_state.read_log(out / train_state.LOG_FILE) if r["stage"] == "stage2"]
    assert len(kl) == 4 and all(np.isfinite(kl))
    # Its first step starts from the same student and batch as the plain run's: only the KL target differs.
    plain = [r["loss_kl"] for r in train_state.read_log(pipeline.stage2 / train_state.LOG_FILE)
             if r["stage"] == "stage2"]
    assert kl[0] != pytest.approx(plain[0], rel=1e-3)


@pytest.mark.slow
@needs_data
def test_stage2_needs_a_stage1_student(pipeline: Pipeline, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    code = train.main(_stage2_args(pipeline.student, tmp_path / "s2", pipeline.teacher_args))
    assert code == 2
    assert "no projection head" in capsys.readouterr().err


@pytest.mark.slow
@needs_data
def test_all_chains_both_stages_from_cached_teacher_vectors_then_the_export_reads_the_run(
    pipeline: Pipeline, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from edge.encoder import QueryEncoder

    out = tmp_path / "run"
    args = ["all", "--student", str(pipeline.student), "--out", str(out), *pipeline.teacher_args, "--layers", "2",
            "--dims", str(DIMS), "--stage1-steps", "2", "--stage2-steps", "2", "--batch-size", "8",
            "--max-per-source", "6", "--documents", "6", "--stage2-sources", STAGE2_SOURCES,
            "--negative-corpora", "none", "--no-progress", "--teacher-missing", "error"]
    assert train.main(args) == 0  # same texts as the fixture's runs: every teacher vector is already cached
    for stage in ("stage1", "stage2"):
        assert train_state.read_run(out / stage)["status"] == "complete"
    assert export_cli.main(["--student", str(out / "stage2"), "--out", str(out / "query_encoder")]) == 0
    assert QueryEncoder(out / "query_encoder").encode(["发烧咳嗽"]).vectors.shape == (1, DIMS)
    capsys.readouterr()
    assert train.main(args) == 2  # complete runs are only reused on --resume
    assert "--resume" in capsys.readouterr().err
    fresh = ["stage1", "--student", str(pipeline.student), "--out", str(tmp_path / "fresh"), *pipeline.teacher_args,
             "--steps", "1", "--max-per-source", "7", "--documents", "0", "--teacher-missing", "error"]
    assert train.main(fresh) == 2  # a seventh text per source has no cached vector
    assert "have no query-prompt vector" in capsys.readouterr().err
