"""tools.data.splits against the real shared data (skipped when ../shared/data is absent)."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from tools.data import splits
from tools.data.cmedir import cmedir_judgements
from tools.data.icd10 import icd_entries
from tools.data.kuake import kuake_pairs
from tools.data.records import DEFAULT_DATA_DIR
from tools.data.splits import EvalLeakError, assert_not_eval, bucket, eval_texts, group_keys, normalize_text

pytestmark = pytest.mark.skipif(not DEFAULT_DATA_DIR.is_dir(), reason=f"shared data not found at {DEFAULT_DATA_DIR}")


def _norm(texts) -> set[str]:
    return {normalize_text(t) for t in texts}


# ------------------------------------------------------------------------------------------------ primitives


def test_bucket_is_stable_and_about_uniform() -> None:
    assert bucket("A00.0") == bucket("A00.0")
    keys = [f"key-{i}" for i in range(1_000)]
    assert sum(bucket(k) != bucket(k, seed="another seed") for k in keys) > 900  # the seed matters
    held = sum(splits.is_held_out(f"key-{i}") for i in range(20_000))
    assert 1_800 < held < 2_200


def test_normalize_text() -> None:
    assert normalize_text("  Ｈｅｌｌｏ\u3000World？ ") == "hello world?"


def test_group_keys_join_shared_nodes_independently_of_order() -> None:
    items = [("a", "x"), ("b", "y"), ("c", "x"), ("d", "z"), ("e", "y")]
    keys = group_keys(items, nodes=lambda item: [item[1]], key=lambda item: item[0])
    assert keys == ["a", "b", "a", "d", "b"]
    shuffled = items[:]
    random.Random(7).shuffle(shuffled)
    again = dict(zip(shuffled, group_keys(shuffled, nodes=lambda item: [item[1]], key=lambda item: item[0])))
    assert again == dict(zip(items, keys))


# ------------------------------------------------------------------------------------------------ cMedIR


def test_cmedir_split_counts_and_no_overlap() -> None:
    split = splits.cmedir_split()
    assert len(split.eval) == 2_182
    assert len(split.train) == 3_205
    test_queries = _norm(cmedir_judgements("test"))
    dev_queries = _norm(cmedir_judgements("dev"))
    assert not _norm(split.train) & test_queries
    assert not _norm(split.eval) & dev_queries
    assert all(max(labels.values()) >= 2 for labels in split.eval.values())


# ------------------------------------------------------------------------------------------------ the rest


def test_toyhom_split_is_grouped_and_about_ten_percent() -> None:
    split = splits.toyhom_split()
    total = len(split.train) + len(split.eval)
    assert 0.05 < len(split.eval) / total < 0.15
    assert not {r.answer for r in split.train} & {r.answer for r in split.eval}
    assert not _norm(r.question for r in split.train) & _norm(r.question for r in split.eval)
    assert not _norm(r.title for r in split.train) & _norm(r.title for r in split.eval)


def test_chip_split_shares_no_sentence() -> None:
    split = splits.chip_split()
    assert 1_000 < len(split.eval) < 4_000 and len(split.train) + len(split.eval) <= 20_000
    train = _norm(t for p in split.train for t in (p.text1, p.text2))
    held = _norm(t for p in split.eval for t in (p.text1, p.text2))
    assert not train & held
    assert set(Counter(p.label for p in split.eval)) == {"0", "1"}


def test_kuake_split() -> None:
    split = splits.kuake_split()
    assert len(split.eval) == 1_599 and {p.label for p in split.eval} == {"0", "1", "2"}
    assert 14_000 < len(split.train) <= 15_000
    dev = _norm(t for p in kuake_pairs("dev") for t in (p.text1, p.text2))
    assert not _norm(t for p in split.train for t in (p.text1, p.text2)) & dev


def test_icd_split_holds_out_only_subcategories() -> None:
    split = splits.icd_split()
    assert len(split.train) + len(split.eval) == 14_416
    assert all(e.level == 4 for e in split.eval)
    four = sum(1 for e in icd_entries() if e.level == 4)
    assert 0.08 < len(split.eval) / four < 0.12
    assert not {e.code for e in split.train} & {e.code for e in split.eval}
    names = splits.icd_train_names()
    assert {code for code, _, _ in names} <= {e.code for e in split.train}
    held = _norm(t for e in split.eval for t in splits.icd_entry_texts(e))
    assert not _norm(name for _, _, name in names) & held


def test_medquad_split_keeps_answers_and_questions_apart() -> None:
    split = splits.medquad_split()
    assert len(split.train) + len(split.eval) == 16_407
    assert 0.05 < len(split.eval) / 16_407 < 0.15
    assert not {r.answer for r in split.train} & {r.answer for r in split.eval}
    assert not _norm(r.question for r in split.train) & _norm(r.question for r in split.eval)


def test_liveqa_is_eval_only() -> None:
    questions = splits.liveqa_eval_questions()
    assert len(questions) == 103
    assert _norm(q.text for q in questions) <= eval_texts()


# ------------------------------------------------------------------------------------------------ eval texts


def test_every_train_side_passes_the_leak_check() -> None:
    assert_not_eval(t for q, titles in splits.cmedir_split().train.items() for t in (q, *titles))
    assert_not_eval(t for r in splits.toyhom_split().train for t in (r.question, r.title, r.ask))
    for split in (splits.chip_split(), splits.kuake_split()):
        assert_not_eval(t for p in split.train for t in (p.text1, p.text2))
    assert_not_eval(name for _, _, name in splits.icd_train_names())
    assert_not_eval(r.question for r in splits.medquad_split().train)


def test_assert_not_eval_names_offenders() -> None:
    query = next(iter(splits.cmedir_split().eval))
    with pytest.raises(EvalLeakError, match="1 training texts are evaluation texts") as error:
        assert_not_eval(["一个不会出现在评测里的句子 xyz", f"  {query} "])
    assert query in str(error.value)
    assert_not_eval(["一个不会出现在评测里的句子 xyz"])
    assert splits.is_eval_text(query.upper())


def test_splits_are_deterministic_across_recomputation() -> None:
    before = (splits.cmedir_split(), splits.toyhom_split(), splits.chip_split(), splits.icd_split())
    before_medquad, before_texts = splits.medquad_split(), eval_texts()
    splits.clear_caches()
    after = (splits.cmedir_split(), splits.toyhom_split(), splits.chip_split(), splits.icd_split())
    assert all(a is not b for a, b in zip(before, after))  # really recomputed
    assert before == after
    assert splits.medquad_split() == before_medquad and eval_texts() == before_texts


def test_split_counts_cli(capsys: pytest.CaptureFixture[str]) -> None:
    assert splits.main([]) == 0
    out = capsys.readouterr().out
    assert "cmedir.eval_queries" in out and "2,182" in out
