"""The ICD-10 wording-shift tasks, checked on the real data: queries differ from their positives as the task says,
held-out codes never come from the training side, and the counts are what the task descriptions claim."""

from __future__ import annotations

import pytest

from tools.data import icd10 as corpora
from tools.data import splits
from tools.data.icd_wording import (
    CHILDREN_LANGS,
    CHILDREN_MAX_QUERIES,
    PARENT_LANGS,
    PARENT_MAX_QUERIES,
    WORDING_BUILDERS,
    wording_key,
)
from tools.data.records import DEFAULT_DATA_DIR
from tools.data.registry import load_corpus
from tools.data.tasks import ALL_TASKS, load_task

pytestmark = pytest.mark.skipif(not DEFAULT_DATA_DIR.exists(), reason="needs ../shared/data")


@pytest.fixture(scope="module")
def entries() -> dict[str, corpora.IcdEntry]:
    return {entry.code: entry for entry in corpora.icd_entries()}


@pytest.fixture(scope="module")
def split_codes() -> tuple[set[str], set[str]]:
    split = splits.icd_split()
    return {e.code for e in split.train}, {e.code for e in split.eval}


def _names(entry: corpora.IcdEntry) -> set[str]:
    return {wording_key(t) for lang, n in entry.names.items() for t in (n, *entry.aliases.get(lang, ()))}


def test_every_wording_task_is_registered() -> None:
    assert set(WORDING_BUILDERS) <= set(ALL_TASKS)
    assert len(WORDING_BUILDERS) == len(PARENT_LANGS) + len(CHILDREN_LANGS) + 3


def test_wording_key_ignores_case_width_and_punctuation() -> None:
    assert wording_key("（慢性）查加斯病") == wording_key("(慢性)查加斯病")
    assert wording_key("Meningitis debida a adenovirus (G02.0*)") == wording_key("meningitis debida a adenovirus G02.0")
    assert wording_key("Tuberculosis del pulmón") != wording_key("Tuberculosis de pulmón")


@pytest.mark.parametrize("lang", PARENT_LANGS)
def test_parent_task_asks_for_the_category_by_a_held_out_name(lang, entries, split_codes) -> None:
    train, held = split_codes
    task = load_task(f"icd-parent-{lang}")
    expected = PARENT_MAX_QUERIES if lang != "it" else 39  # gnuhealth translates 39 held-out codes into Italian
    assert len(task.queries) == expected
    held_out_texts = splits.eval_texts()
    for code, query in task.queries.items():
        assert code in held and code not in train
        assert task.qrels[code] == {code[:3]: 1}
        assert query == entries[code].names[lang]
        assert splits.normalize_text(query) in held_out_texts  # so no training set holds it
        assert wording_key(query) not in _names(entries[code[:3]])
    # Every held-out subcategory is out of the corpus, every other code is in it.
    assert task.corpus_ids is not None and task.corpus_ids.isdisjoint(held)
    assert len(task.corpus_ids) == len(entries) - len(held)


@pytest.mark.parametrize("lang", CHILDREN_LANGS)
def test_children_task_ranks_a_family_without_its_category(lang, entries) -> None:
    task = load_task(f"icd-children-{lang}")
    assert len(task.queries) == CHILDREN_MAX_QUERIES
    assert task.corpus_ids == frozenset(code for code, e in entries.items() if e.level == 4)
    for code, query in task.queries.items():
        assert entries[code].level == 3 and query == entries[code].names[lang]
        children = {c for c, e in entries.items() if e.parent == code}
        assert set(task.qrels[code]) == children and len(children) >= 2
        assert all(wording_key(query) != wording_key(corpora.icd_text(entries[c].names)) for c in children)


@pytest.mark.parametrize("lang, count", [("zh", 88), ("es", 239)])
def test_edition_task_queries_another_wording_of_a_held_out_code(lang, count, entries, split_codes) -> None:
    train, held = split_codes
    task = load_task(f"icd-edition-{lang}")
    assert len(task.queries) == count
    documents = {d.id: d for d in load_corpus("icd10")}
    for code, query in task.queries.items():
        assert code in held and code not in train and task.qrels[code] == {code: 1}
        assert query in entries[code].aliases[lang]
        # The query differs from the name of the same language, and from everything the document's text holds.
        assert wording_key(query) != wording_key(entries[code].names[lang])
        assert all(wording_key(query) != wording_key(part) for part in documents[code].text.split(" | "))


def test_zero_shot_italian_queries_are_held_out_codes(split_codes) -> None:
    train, held = split_codes
    task = load_task("icd-zeroshot-it")
    assert len(task.queries) == 39 and set(task.queries) <= held and not set(task.queries) & train


@pytest.mark.parametrize("name", ["icd-edition-zh", "icd-edition-es", "icd-zeroshot-it"])
def test_every_shifted_query_is_an_eval_text(name) -> None:
    held = splits.eval_texts()
    assert all(splits.normalize_text(q) in held for q in load_task(name).queries.values())
