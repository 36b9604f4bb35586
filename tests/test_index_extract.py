"""Extraction and chunking of real small files of every supported format, and of the bad ones users' folders hold."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from index_docs import (
    AMOXICILLIN, AMOXICILLIN_DOSE, DIABETES_ZH, GLAUCOMA, HYPERTENSION_ZH, write_docx, write_encrypted_pdf, write_pdf,
)

from edge.index.chunk import ChunkSettings, chunk_units
from edge.index.extract import Skip, TableOptions, decode_text, extract_file


def extract(path: Path, table: TableOptions = TableOptions()):
    return extract_file(path, path.read_bytes, table)


def words(text: str) -> int:
    """A stand-in token count (one per word or CJK character) for chunking tests."""
    return sum(len(w) if any("\u4e00" <= ch <= "\u9fff" for ch in w) else 1 for w in text.split())


def test_markdown_headings_become_heading_paths(tmp_path):
    path = tmp_path / "amox.md"
    path.write_text(f"# Amoxicillin\n\n{AMOXICILLIN}\n\n## Dosage\n\n{AMOXICILLIN_DOSE}\n", encoding="utf-8")
    passages = chunk_units(extract(path).units, ChunkSettings(256, 32), words)
    assert [p.headings for p in passages] == [("Amoxicillin",), ("Amoxicillin", "Dosage")]
    assert passages[1].text == f"Amoxicillin > Dosage\n{AMOXICILLIN_DOSE}"
    text = path.read_text(encoding="utf-8")
    start, end = passages[1].meta()["span"]
    assert text[start:end] == AMOXICILLIN_DOSE  # the span points back into the file's text


@pytest.mark.parametrize("encoding", ["gb18030", "gbk", "utf-16", "utf-16-le", "utf-8-sig", "utf-8"])
def test_text_encodings_are_detected(tmp_path, encoding):
    path = tmp_path / "zh.txt"
    path.write_bytes(f"{HYPERTENSION_ZH}\n\n{DIABETES_ZH}\n".encode(encoding))
    extracted = extract(path)
    assert extracted.units[0].text.strip().splitlines()[0] == HYPERTENSION_ZH
    assert [extracted.units[0].text[b.start:b.end] for b in extracted.units[0].blocks] == [HYPERTENSION_ZH, DIABETES_ZH]


def test_binary_named_txt_is_skipped(tmp_path):
    path = tmp_path / "photo.txt"
    path.write_bytes(bytes(range(256)) * 64)
    with pytest.raises(Skip, match="binary"):
        extract(path)
    with pytest.raises(Skip):
        decode_text(b"\x89PNG\r\n\x1a\n" + bytes([0x81, 0x30, 0xff, 0x01, 0x02]) * 200)


def test_html_drops_scripts_and_keeps_headings(tmp_path):
    path = tmp_path / "page.html"
    path.write_text(
        "<html><head><title>t</title><style>p{}</style></head><body><script>var x = 'no';</script>"
        f"<h1>Glaucoma</h1><p>{GLAUCOMA}</p><h2>Treatment</h2><ul><li>Eye drops</li><li>Laser &amp; surgery</li></ul>"
        "</body></html>", encoding="utf-8")
    passages = chunk_units(extract(path).units, ChunkSettings(256, 0), words)
    assert passages[0].headings == ("Glaucoma",) and GLAUCOMA in passages[0].text
    assert passages[1].headings == ("Glaucoma", "Treatment") and "Laser & surgery" in passages[1].text
    assert all("var x" not in p.text for p in passages)


def test_docx_paragraphs_headings_and_tables(tmp_path):
    path = write_docx(tmp_path / "formulary.docx", [("Amoxicillin", [AMOXICILLIN, AMOXICILLIN_DOSE]),
                                                    ("Glaucoma", [GLAUCOMA])],
                      table=[["Drug", "Dose"], ["Timolol", "1 drop twice daily"]])
    passages = chunk_units(extract(path).units, ChunkSettings(256, 0), words)
    assert passages[0].headings == ("Formulary", "Amoxicillin")
    assert AMOXICILLIN in passages[0].text and AMOXICILLIN_DOSE in passages[0].text
    assert passages[-1].headings == ("Formulary", "Glaucoma")
    assert "Timolol | 1 drop twice daily" in passages[-1].text


def test_pdf_pages_are_kept(tmp_path):
    path = write_pdf(tmp_path / "leaflet.pdf", [["Amoxicillin leaflet", AMOXICILLIN[:90]], [AMOXICILLIN_DOSE[:90]]])
    passages = chunk_units(extract(path).units, ChunkSettings(256, 0), words)
    assert [p.page for p in passages] == [1, 2]
    assert "Amoxicillin leaflet" in passages[0].text and "Adults take 500 mg" in passages[1].text


def test_pdf_problems_are_skipped_with_a_reason(tmp_path):
    plain = write_pdf(tmp_path / "plain.pdf", [["Glaucoma damages the optic nerve."]])
    with pytest.raises(Skip, match="encrypted"):
        extract(write_encrypted_pdf(tmp_path / "locked.pdf", plain))
    with pytest.raises(Skip, match="no text: OCR not supported"):
        extract(write_pdf(tmp_path / "scan.pdf", [[]]))
    broken = tmp_path / "broken.pdf"
    broken.write_bytes(plain.read_bytes()[:200])
    with pytest.raises(Skip, match="corrupt PDF|no text"):
        extract(broken)
    garbage = tmp_path / "garbage.pdf"
    garbage.write_bytes(b"this is not a pdf at all\n" * 20)
    with pytest.raises(Skip, match="corrupt PDF"):
        extract(garbage)


def test_corrupt_docx_is_skipped(tmp_path):
    path = tmp_path / "bad.docx"
    path.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(Skip, match="corrupt DOCX"):
        extract(path)


def test_csv_in_gb18030_with_a_chosen_column(tmp_path):
    path = tmp_path / "answers.csv"
    rows = "department,title,answer\n内科,高血压饮食,{}\n内科,糖尿病,{}\n".format(HYPERTENSION_ZH, DIABETES_ZH)
    path.write_bytes(rows.encode("gb18030"))
    extracted = extract(path, TableOptions(text_field="answer", title_field="title"))
    passages = chunk_units(extracted.units, ChunkSettings(256, 0), words)
    assert [(p.row, p.headings) for p in passages] == [(1, ("高血压饮食",)), (2, ("糖尿病",))]
    assert passages[0].text == f"高血压饮食\n{HYPERTENSION_ZH}"
    with pytest.raises(Skip, match="no field 'missing'"):
        extract(path, TableOptions(text_field="missing"))


def test_jsonl_default_text_field_and_bad_lines(tmp_path):
    path = tmp_path / "list.jsonl"
    path.write_text("\n".join(json.dumps({"id": i, "text": t}) for i, t in enumerate([GLAUCOMA, AMOXICILLIN])),
                    encoding="utf-8")
    assert [u.row for u in extract(path).units] == [1, 2]
    path.write_text('{"text": "ok"}\nnot json\n', encoding="utf-8")
    with pytest.raises(Skip, match="line 2 is not JSON"):
        extract(path)
    nocol = tmp_path / "nocol.csv"
    nocol.write_text("drug,dose\nTimolol,1 drop\n", encoding="utf-8")
    with pytest.raises(Skip, match="--text-field"):
        extract(nocol)


def test_long_paragraphs_split_within_budget_with_overlap(tmp_path):
    sentences = [f"Sentence number {i} talks about dose {i} mg of the drug." for i in range(60)]
    path = tmp_path / "long.txt"
    path.write_text(" ".join(sentences), encoding="utf-8")
    unit = extract(path).units[0]
    passages = chunk_units([unit], ChunkSettings(64, 16), words)
    assert len(passages) > 5
    assert all(words(p.text) <= 64 for p in passages)
    for first, second in zip(passages, passages[1:]):
        assert second.start < first.end  # the overlap: the next passage starts inside the previous one
        assert second.start > first.start  # and still moves forward
    assert passages[0].start == 0 and passages[-1].end == len(unit.text.rstrip())
    no_overlap = chunk_units([unit], ChunkSettings(64, 0), words)
    assert all(b.start >= a.end for a, b in zip(no_overlap, no_overlap[1:]))


def test_a_sentence_longer_than_the_budget_is_cut_by_characters():
    from edge.index.extract import Block, Unit

    text = "x" * 1000
    passages = chunk_units([Unit(text, [Block(0, 1000)])], ChunkSettings(64, 0), lambda t: len(t) // 10 + 1)
    assert "".join(p.text for p in passages) == text
    assert all(len(p.text) // 10 + 1 <= 64 for p in passages)
