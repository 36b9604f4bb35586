"""tools.data.tasks against the real shared data (skipped when ../shared/data is absent)."""

from __future__ import annotations

from collections import Counter

import pytest

from tools.data import splits
from tools.data.records import DEFAULT_DATA_DIR, DataError
from tools.data.registry import load_corpus
from tools.data.splits import eval_texts, normalize_text
from tools.data.tasks import ALL_TASKS, TASK_KINDS, LabeledText, Task, load_task
from tools.data.icd_wording import WORDING_BUILDERS

pytestmark = pytest.mark.skipif(not DEFAULT_DATA_DIR.is_dir(), reason=f"shared data not found at {DEFAULT_DATA_DIR}")

REQUIRED = {
    "cmedir-retrieval",
    "toyhom-qa",
    "cmedir-rerank",
    "liveqa-rerank",
    "kuake-qqr-sts",
    "chip-sts",
    "icd-coding-es",
    "icd-coding-fr",
    "icd-coding-pt",
    "icd-coding-de",
    "icd-coding-zh",
    "medquad-qa",
    "chip-pairclass",
    "toyhom-dept",
    "icd-chapter-cluster",
}


def _corpus_ids(name: str, source: str | None = None) -> set[str]:
    return {d.id for d in load_corpus(name) if source is None or d.meta["source"] == source}


def test_all_tasks_load() -> None:
    assert set(ALL_TASKS) == REQUIRED | set(WORDING_BUILDERS)  # the wording tasks: tests/test_icd_wording.py
    for name in ALL_TASKS:
        task = load_task(name)
        assert task.name == name and task.kind in TASK_KINDS and task.metrics and task.description


@pytest.mark.parametrize("name", sorted(REQUIRED))
def test_every_eval_text_is_held_out(name: str) -> None:
    task = load_task(name)
    held = eval_texts()
    texts = list(task.queries.values())
    texts += [t for p in task.pairs for t in (p.text1, p.text2)]
    texts += [item.text for item in task.test]
    assert texts
    assert all(normalize_text(t) in held for t in texts)
    # Classification training texts are the other side of the split.
    assert not {normalize_text(item.text) for item in task.train} & held


def test_cmedir_retrieval() -> None:
    task = load_task("cmedir-retrieval")
    assert (task.language, task.kind, task.corpus, task.corpus_sources) == ("zh", "retrieval", "cmed-zh", ("cmedir",))
    assert len(task.queries) == 2_182 and task.relevant_gain == 2
    titles = _corpus_ids("cmed-zh", "cmedir")
    assert all(doc in titles for judged in task.qrels.values() for doc in judged)
    assert all(max(judged.values()) >= 2 for judged in task.qrels.values())
    assert {g for judged in task.qrels.values() for g in judged.values()} <= {0, 1, 2, 3, 4}


def test_cmedir_rerank_has_mixed_candidates() -> None:
    task = load_task("cmedir-rerank")
    assert 100 < len(task.queries) < 2_182
    for qid, judged in task.qrels.items():
        assert len(task.candidates[qid]) >= 4
        assert max(judged.values()) >= 2 > min(judged.values())
    assert set(task.queries) <= set(load_task("cmedir-retrieval").queries)


def test_toyhom_qa_points_at_cmed_zh_answers() -> None:
    task = load_task("toyhom-qa")
    answers = _corpus_ids("cmed-zh", "toyhom")
    assert len(task.queries) == len(splits.toyhom_split().eval)
    assert all(set(judged) <= answers for judged in task.qrels.values())


def test_liveqa_rerank() -> None:
    task = load_task("liveqa-rerank")
    assert len(task.queries) == 103 and task.language == "en"
    assert sum(len(c) for c in task.candidates.values()) == 2_311
    assert {g for judged in task.qrels.values() for g in judged.values()} == {0, 1, 2, 3}
    assert all(task.documents[d] for c in task.candidates.values() for d in c)


def test_sts_and_pairclass() -> None:
    kuake = load_task("kuake-qqr-sts")
    assert len(kuake.pairs) == 1_599 and Counter(p.score for p in kuake.pairs) == {0.0: 1_006, 1.0: 260, 2.0: 333}
    chip_sts, chip_pairs = load_task("chip-sts"), load_task("chip-pairclass")
    assert chip_sts.pairs == chip_pairs.pairs
    expected = [(p.text1, p.text2, float(p.label)) for p in splits.chip_split().eval]
    assert [(p.text1, p.text2, p.score) for p in chip_sts.pairs] == expected
    assert {p.score for p in chip_pairs.pairs} == {0.0, 1.0}


@pytest.mark.parametrize("lang", ["es", "fr", "pt", "de", "zh"])
def test_icd_coding(lang: str) -> None:
    task = load_task(f"icd-coding-{lang}")
    assert task.language == lang and task.corpus == "icd10"
    held_codes = {e.code: e for e in splits.icd_split().eval}
    assert len(task.queries) > 500
    for code, text in task.queries.items():
        assert task.qrels[code] == {code: 1}
        assert held_codes[code].names[lang] == text
    assert set(task.queries) <= _corpus_ids("icd10")


def test_medquad_qa() -> None:
    task = load_task("medquad-qa")
    answers = _corpus_ids("medquad-en")
    assert len(task.queries) > 500
    assert all(judged and set(judged) <= answers for judged in task.qrels.values())
    # The answer pool is the held-out questions' answers: every judged one, nothing else.
    assert task.corpus_ids == {doc for judged in task.qrels.values() for doc in judged}
    assert len(task.corpus_ids) < len(answers) // 5


def test_toyhom_dept_and_icd_clusters() -> None:
    dept = load_task("toyhom-dept")
    assert len({item.label for item in dept.train}) == 11
    assert not {item.text for item in dept.train} & {item.text for item in dept.test}
    clusters = load_task("icd-chapter-cluster")
    assert len({item.label for item in clusters.test}) >= 20
    assert len(clusters.test) == len({normalize_text(item.text) for item in clusters.test})


def test_unknown_task_and_invalid_task() -> None:
    with pytest.raises(DataError, match="unknown task"):
        load_task("nope")
    with pytest.raises(ValueError, match="every query needs qrels"):
        Task("x", "zh", "retrieval", "d", ("ndcg@10",), queries={"q": "text"}, corpus="cmed-zh")
    with pytest.raises(ValueError, match="classification needs"):
        Task("x", "zh", "classification", "d", ("accuracy",), test=(LabeledText("a", "b"),))
