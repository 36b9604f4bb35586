"""tools.data (the dataset parsers and the corpora) against the real shared data (skipped when ../shared/data is absent)."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest

from tools.data.cli import main
from tools.data.cmedir import clean_cmedir_title, cmedir_conflict_count, cmedir_doc_id, cmedir_judgements
from tools.data.icd10 import (
    ICD_LANGS,
    fix_cp1250_mojibake,
    format_icd_code,
    icd_chapter,
    icd_entries,
    icd_text,
    read_po,
)
from tools.data.liveqa import liveqa_answers, liveqa_judgements, liveqa_questions
from tools.data.medquad import medquad_rows
from tools.data.records import DEFAULT_DATA_DIR, DataError, Document, read_jsonl, write_jsonl
from tools.data.registry import load_corpus
from tools.data.toyhom import TOYHOM_FILE, ToyhomRow, toyhom_rows

pytestmark = pytest.mark.skipif(not DEFAULT_DATA_DIR.is_dir(), reason=f"shared data not found at {DEFAULT_DATA_DIR}")

ID_RE = re.compile(r"^(cmedir|toyhom|medquad):[0-9a-f]{12}$")


# ------------------------------------------------------------------------------------------------ cMedIR / cmed-zh


def test_cmed_zh_counts_and_ids() -> None:
    docs = load_corpus("cmed-zh")
    by_source = Counter(doc.meta["source"] for doc in docs)
    assert by_source == {"cmedir": 19_241, "toyhom": 7_244}
    assert len({doc.id for doc in docs}) == len(docs)
    assert all(ID_RE.match(doc.id) for doc in docs)
    assert all(doc.text and doc.text == doc.text.strip() for doc in docs)
    assert not any(doc.text.startswith(":") for doc in docs if doc.meta["source"] == "cmedir")
    departments = {doc.meta["department"] for doc in docs if doc.meta["source"] == "toyhom"}
    assert len(departments) == 11 and "心血管科" in departments


def test_cmedir_duplicate_title_colon_is_stripped() -> None:
    assert clean_cmedir_title(":去除牙结石小妙招`_文档资料库") == "去除牙结石小妙招`_文档资料库"
    assert clean_cmedir_title("丁香园论坛") == "丁香园论坛"
    judged = cmedir_judgements("dev")["牙结石脱落小妙招"]
    assert judged["去除牙结石小妙招_不能不知道的窍门"] == 2 and judged["去除牙结石小妙招`_文档资料库"] == 1
    assert ":去除牙结石小妙招`_文档资料库" not in judged
    assert cmedir_doc_id(clean_cmedir_title(":丁香园论坛")) == cmedir_doc_id("丁香园论坛")


def test_cmedir_merges_repeated_lines_and_takes_max_of_conflicts() -> None:
    raw: dict[tuple[str, str], set[int]] = {}
    with (DEFAULT_DATA_DIR / "zh/cmedir/test.jsonl").open(encoding="utf-8") as lines:
        for line in lines:
            row = json.loads(line)
            for doc in row["documents"]:
                raw.setdefault((row["query"], clean_cmedir_title(doc["title"])), set()).add(int(doc["label"]))
    conflicting = {pair: labels for pair, labels in raw.items() if len(labels) > 1}
    assert len(conflicting) == cmedir_conflict_count("test") > 0
    merged = cmedir_judgements("test")
    for (query, title), labels in conflicting.items():
        assert merged[query][title] == max(labels)
    assert len(merged) == 4_287 and len(cmedir_judgements("dev")) == 4_298


# ------------------------------------------------------------------------------------------------ Toyhom


def test_toyhom_is_decoded_from_gb18030() -> None:
    raw = (DEFAULT_DATA_DIR / TOYHOM_FILE).read_bytes()
    with pytest.raises(UnicodeDecodeError):
        raw.decode("utf-8")
    rows = toyhom_rows()
    assert len(rows) == 7_644
    assert (rows[0].department, rows[0].title) == ("心血管科", "高血压患者能吃党参吗？")
    assert len({row.answer for row in rows}) == 7_244
    assert rows[0].question.startswith("高血压患者能吃党参吗？ 我有高血压")


def test_toyhom_question_skips_placeholder_description() -> None:
    row = ToyhomRow("消化科", "胃痛怎么办", "无", "多喝热水")
    assert row.question == "胃痛怎么办"


# ------------------------------------------------------------------------------------------------ ICD-10


@pytest.mark.parametrize(
    ("raw", "code"),
    [("A000", "A00.0"), ("A00.0", "A00.0"), ("A00", "A00"), ("A17.0+", "A17.0"), ("G01*", "G01"), (" e112 ", "E11.2")],
)
def test_format_icd_code(raw: str, code: str) -> None:
    assert format_icd_code(raw) == code


@pytest.mark.parametrize("raw", ["", "A00-B99", "A0", "1234", "A00.00"])
def test_format_icd_code_rejects_non_codes(raw: str) -> None:
    with pytest.raises(ValueError):
        format_icd_code(raw)


def test_icd_entries_counts_and_code_format() -> None:
    entries = icd_entries()
    assert len(entries) == 14_416
    assert Counter(e.level for e in entries) == {3: 2_053, 4: 12_363}
    assert all(re.fullmatch(r"[A-Z]\d\d(\.[0-9A-Z])?", e.code) for e in entries)
    languages = Counter(lang for e in entries for lang in e.names)
    assert languages["en"] == 14_416 and languages["de"] > 14_000 and languages["zh"] > 14_000
    assert set(languages) == set(ICD_LANGS)


def test_icd_names_from_every_source() -> None:
    by_code = {e.code: e for e in icd_entries()}
    e112 = by_code["E11.2"]
    assert e112.names["en"] == "Type 2 diabetes mellitus: With renal complications"
    assert e112.names["zh"] == "2型糖尿病伴有肾的并发症"  # WHO Chinese, dagger marker of "E11.2+" stripped
    assert e112.aliases["zh"] == ("非胰岛素依赖型糖尿病伴有肾的并发症",)  # gnuhealth zh_CN's older wording
    assert (e112.chapter, e112.chapter_roman) == (4, "IV")
    assert by_code["A00"].names == {
        "en": "Cholera", "es": "Cólera", "fr": "Choléra", "pt": "Cólera", "de": "Cholerainfektion", "zh": "霍乱",
        "it": "Colera",
    }
    # Spanish from CIE-10 where gnuhealth's es.po leaves the code untranslated (O03.8 has an empty msgstr).
    assert by_code["O03.8"].names["es"].startswith("Aborto espontaneo")
    # A fragment shared by many codes is qualified with its category's name.
    assert by_code["W01.6"].names["en"].endswith(": Industrial and construction area")
    assert by_code["W01.6"].names["zh"].endswith("：工业和建筑面积")


def test_icd_chapters_agree_with_gnuhealth_categories() -> None:
    text = (DEFAULT_DATA_DIR / "icd/gnuhealth/diseases_en.xml").read_text(encoding="utf-8")
    records = re.findall(r'<record model="gnuhealth.pathology" id="(\w+)">.*?ref="icdcat(\d+)', text, re.S)
    assert len(records) == 14_416
    by_code = {e.code: e for e in icd_entries()}
    for raw_id, category in records:
        assert by_code[format_icd_code(raw_id)].chapter == int(category), raw_id
    assert icd_chapter("U07.1") == (22, "XXII") and icd_chapter("V01") == (20, "XX")


def test_portuguese_mojibake_is_repaired() -> None:
    assert fix_cp1250_mojibake("Síndrome nefrítica năo especificada") == "Síndrome nefrítica não especificada"
    assert fix_cp1250_mojibake("complicaçőes") == "complicações"
    assert fix_cp1250_mojibake("Cólera") == "Cólera"
    portuguese = [e.names["pt"] for e in icd_entries() if "pt" in e.names]
    assert not any(ch in name for name in portuguese for ch in "ăőęŕ")
    assert sum("ão" in name for name in portuguese) > 1_000


def test_english_copies_are_not_translations() -> None:
    for entry in icd_entries():
        for lang, name in entry.names.items():
            if lang != "en":
                assert name.casefold() != entry.names["en"].casefold(), (entry.code, lang)


def test_read_po_handles_continuations_fuzzy_and_obsolete(tmp_path: Path) -> None:
    po = tmp_path / "x.po"
    po.write_text(
        'msgid ""\nmsgstr ""\n"Content-Type: text/plain; charset=UTF-8\\n"\n\n'
        'msgctxt "model:gnuhealth.pathology,name:A15"\nmsgid ""\n"Respiratory tuberculosis"\nmsgstr ""\n'
        '"Tuberculosis "\n"respiratoria \\"confirmada\\""\n\n'
        '#, fuzzy\nmsgctxt "model:gnuhealth.pathology,name:K644"\nmsgid "Skin tags"\nmsgstr "guess"\n\n'
        'msgctxt "model:gnuhealth.pathology,name:K645"\nmsgid "Thrombosis"\nmsgstr ""\n\n'
        '#~ msgctxt "model:gnuhealth.pathology,name:E100"\n#~ msgid "With coma"\n#~ msgstr "avec coma"\n',
        encoding="utf-8",
    )
    entries = read_po(po)
    assert entries["model:gnuhealth.pathology,name:A15"] == (
        "Respiratory tuberculosis",
        'Tuberculosis respiratoria "confirmada"',
    )
    assert "model:gnuhealth.pathology,name:K644" not in entries
    assert entries["model:gnuhealth.pathology,name:K645"] == ("Thrombosis", "")
    assert "model:gnuhealth.pathology,name:E100" not in entries


def test_icd_text_and_langs_parameter() -> None:
    names = {"en": "Cholera", "zh": "霍乱", "de": "Cholera"}
    assert icd_text(names, ("en", "zh"), code="A00") == "A00 | Cholera | 霍乱"
    assert icd_text(names, ("zh", "de")) == "霍乱 | Cholera"
    assert icd_text(names, ("en", "de")) == "Cholera"
    with pytest.raises(ValueError):
        icd_text(names, ("xx",))
    docs = {d.id: d for d in load_corpus("icd10", langs=("en", "de"), include_code=False)}
    assert len(docs) == 14_416
    assert docs["A00.0"].text.startswith("Cholera due to Vibrio cholerae 01, biovar cholerae | ")
    assert docs["E11.2"].meta["names"]["zh"] == "2型糖尿病伴有肾的并发症"
    assert docs["E11.2"].meta["chapter"] == "IV" and docs["E11.2"].meta["level"] == 4
    default = {d.id: d for d in load_corpus("icd10")}
    assert default["E11.2"].text == "E11.2 | Type 2 diabetes mellitus: With renal complications | 2型糖尿病伴有肾的并发症"


# ------------------------------------------------------------------------------------------------ English


def test_medquad_corpus_dedupes_answers() -> None:
    rows = medquad_rows()
    assert len(rows) == 16_407
    docs = load_corpus("medquad-en")
    assert len(docs) == len({row.answer for row in rows}) < len(rows)
    assert len({doc.id for doc in docs}) == len(docs)
    assert all(doc.meta["question"] and "focus" in doc.meta for doc in docs)


def test_liveqa_judgements_and_answers() -> None:
    questions = liveqa_questions()
    judged = liveqa_judgements()
    answers = liveqa_answers()
    assert len(questions) == 104 and len(judged) == 103
    assert sum(len(grades) for grades in judged.values()) == 2_311  # 2,479 qrels lines, 168 judged twice
    assert len(answers) == 1_935
    assert all(1 <= g <= 4 for grades in judged.values() for g in grades.values())
    # The export's "Question: ...\nURL: ...\nAnswer: " header and its trailing ")" are gone.
    assert not any("\nURL: " in text or "\nAnswer: " in text for text in answers.values())
    assert answers["ADAM_0003147_Sec1"].endswith("and other health problems.")
    assert judged["TQ1"]["ADAM_0002818_Sec2"] == 3  # judged "2-Related" and "3-Incomplete": the higher is kept
    assert questions[0].text == (
        "Noonan syndrome. What are the references with noonan syndrome and polycystic renal disease"
    )


# ------------------------------------------------------------------------------------------------ I/O and CLI


def test_write_jsonl_is_atomic_and_round_trips(tmp_path: Path) -> None:
    target = tmp_path / "out" / "c.jsonl"
    docs = [Document("a:1", "文本", {"source": "x"}), Document("a:2", "two\nlines", {})]
    assert write_jsonl(docs, target) == 2
    assert read_jsonl(target) == docs
    write_jsonl(docs[:1], target)
    assert read_jsonl(target) == docs[:1]
    assert sorted(p.name for p in target.parent.iterdir()) == ["c.jsonl"]


def test_read_jsonl_rejects_bad_lines(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "x"}\n', encoding="utf-8")
    with pytest.raises(DataError, match="bad.jsonl:1"):
        read_jsonl(bad)


def test_cli_writes_icd_corpus(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "icd.jsonl"
    assert main(["icd10", "--out", str(out), "--langs", "en,es", "--data-dir", str(DEFAULT_DATA_DIR)]) == 0
    docs = read_jsonl(out)
    assert len(docs) == 14_416
    assert docs[0].id == "A00" and docs[0].text == "A00 | Cholera | Cólera"
    assert "14416 documents" in capsys.readouterr().out


def test_cli_reports_missing_data_dir_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["cmed-zh", "--out", str(tmp_path / "x.jsonl"), "--data-dir", str(tmp_path / "nope")])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: data directory") and err.count("\n") == 1
    assert not (tmp_path / "x.jsonl").exists()


def test_cli_rejects_unknown_language(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["icd10", "--out", str(tmp_path / "x.jsonl"), "--langs", "en,xx"])
    assert exit_info.value.code == 2


def test_unknown_corpus_is_a_data_error() -> None:
    with pytest.raises(DataError, match="unknown corpus"):
        load_corpus("nope")
