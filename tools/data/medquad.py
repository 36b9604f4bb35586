"""MedQuAD (NIH question-answer pairs, en) and the ``medquad-en`` corpus of its distinct answers."""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from tools.data.records import (
    DataError,
    Document,
    check_unique_ids,
    clean_paragraphs,
    clean_text,
    data_file,
    resolve_data_dir,
    stable_id,
)


@dataclass(frozen=True)
class MedquadRow:
    id: str
    collection: str
    source: str
    url: str
    focus: str
    qtype: str
    question: str
    answer: str

    @property
    def answer_id(self) -> str:
        return medquad_doc_id(self.answer)


def medquad_doc_id(answer: str) -> str:
    return stable_id("medquad", answer)


@lru_cache(maxsize=4)
def _medquad_rows(data_dir: Path) -> tuple[MedquadRow, ...]:
    path = data_file(data_dir, "en/medquad.jsonl")
    rows = []
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                r = json.loads(line)
                rows.append(
                    MedquadRow(
                        id=str(r["id"]),
                        collection=str(r.get("collection", "")),
                        source=str(r.get("source", "")),
                        url=str(r.get("url", "")),
                        focus=clean_text(str(r.get("focus") or "")),
                        qtype=str(r.get("qtype", "")),
                        question=clean_text(str(r["question"])),
                        answer=clean_paragraphs(str(r["answer"])),
                    )
                )
            except (ValueError, KeyError, TypeError) as exc:
                raise DataError(f"{path}:{number}: not a MedQuAD line ({exc})") from exc
    return tuple(row for row in rows if row.answer and row.question)


def medquad_rows(data_dir: Path | str | None = None) -> tuple[MedquadRow, ...]:
    """MedQuAD question-answer pairs (16,407), question whitespace-cleaned, answer with blank lines and XML
    indentation removed, in file order."""
    return _medquad_rows(resolve_data_dir(data_dir))


def medquad_documents(data_dir: Path | str | None = None) -> list[Document]:
    """The distinct MedQuAD answers; meta keeps the first question asked of it (file order), its focus and type."""
    first: dict[str, MedquadRow] = {}
    questions: dict[str, list[str]] = defaultdict(list)
    for row in medquad_rows(data_dir):
        first.setdefault(row.answer, row)
        if row.question not in questions[row.answer]:
            questions[row.answer].append(row.question)
    docs = []
    for answer in sorted(first):
        row = first[answer]
        meta = {
            "source": "medquad",
            "question": row.question,
            "focus": row.focus,
            "qtype": row.qtype,
            "url": row.url,
            "site": row.source,
            "question_count": len(questions[answer]),
        }
        docs.append(Document(medquad_doc_id(answer), answer, meta))
    check_unique_ids(docs)
    return docs
