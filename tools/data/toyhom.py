"""Toyhom Chinese medical dialogue data: the internal-medicine CSV (GB18030) of questions and doctor answers."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from tools.data.records import DataError, Document, clean_text, data_file, resolve_data_dir, stable_id

TOYHOM_FILE = "zh/toyhom/neike_sample_gb18030.csv"
# Patients who had nothing to add wrote "无" ("none") in the description field.
TOYHOM_EMPTY_ASKS = frozenset({"", "无"})


@dataclass(frozen=True)
class ToyhomRow:
    department: str
    title: str
    ask: str
    answer: str

    @property
    def question(self) -> str:
        """The patient's question as a user would type it: the title, then the description when it adds one."""
        if self.ask in TOYHOM_EMPTY_ASKS or self.ask == self.title:
            return self.title
        return f"{self.title} {self.ask}"

    @property
    def answer_id(self) -> str:
        return toyhom_doc_id(self.answer)


def toyhom_doc_id(answer: str) -> str:
    return stable_id("toyhom", answer)


@lru_cache(maxsize=4)
def _toyhom_rows(data_dir: Path) -> tuple[ToyhomRow, ...]:
    path = data_file(data_dir, TOYHOM_FILE)
    try:
        text = path.read_bytes().decode("gb18030")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path} is not GB18030 text ({exc})") from exc
    reader = csv.DictReader(io.StringIO(text, newline=""))
    expected = ["department", "title", "ask", "answer"]
    if reader.fieldnames != expected:
        raise DataError(f"{path}: expected columns {expected}, found {reader.fieldnames}")
    rows = []
    for row in reader:
        rows.append(ToyhomRow(*(clean_text(row[name] or "") for name in expected)))
    return tuple(rows)


def toyhom_rows(data_dir: Path | str | None = None) -> tuple[ToyhomRow, ...]:
    """Every row of the Toyhom internal-medicine CSV (GB18030), fields whitespace-cleaned, in file order (7,644 rows,
    378 of them exact repeats)."""
    return _toyhom_rows(resolve_data_dir(data_dir))


def toyhom_documents(data_dir: Path | str | None = None) -> list[Document]:
    """The distinct Toyhom doctor answers (7,244), each with the department it was given in."""
    departments: dict[str, str] = {}
    for row in toyhom_rows(data_dir):
        if row.answer:
            departments.setdefault(row.answer, row.department)
    return [
        Document(toyhom_doc_id(answer), answer, {"source": "toyhom", "department": departments[answer]})
        for answer in sorted(departments)
    ]
