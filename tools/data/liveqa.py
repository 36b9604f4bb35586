"""TREC LiveQA medical: test questions and the judged answers (graded 1-4)."""

from __future__ import annotations

import csv
import io
import re
import xml.etree.ElementTree as ET
import zipfile
from collections import defaultdict
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Mapping

from tools.data.records import DataError, clean_paragraphs, clean_text, data_file, resolve_data_dir

LIVEQA_ZIP = "en/liveqa/liveqa_judged.zip"
LIVEQA_QUESTIONS = "en/liveqa/test_questions.xml"
# The qrels file grades each answer "1-Incorrect", "2-Related", "3-Incomplete" or "4-Excellent".
LIVEQA_GRADES = {"1-Incorrect": 1, "2-Related": 2, "3-Incomplete": 3, "4-Excellent": 4}


@dataclass(frozen=True)
class LiveqaQuestion:
    qid: str  # "TQ1" in the XML; the qrels file numbers the same question "1"
    subject: str
    message: str
    paraphrase: str
    summary: str

    @property
    def text(self) -> str:
        """The consumer's original question (subject, then message): what a real user typed."""
        if not self.subject or self.message.casefold().startswith(self.subject.casefold()):
            return self.message or self.subject
        return f"{self.subject}. {self.message}" if self.message else self.subject


@lru_cache(maxsize=4)
def _liveqa_questions(data_dir: Path) -> tuple[LiveqaQuestion, ...]:
    path = data_file(data_dir, LIVEQA_QUESTIONS)
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as exc:
        raise DataError(f"{path}: not XML ({exc})") from exc
    questions = []
    for node in root.iter("NLM-QUESTION"):
        original = node.find("Original-Question")
        questions.append(
            LiveqaQuestion(
                qid=str(node.get("qid")),
                subject=clean_text(original.findtext("SUBJECT") or "") if original is not None else "",
                message=clean_text(original.findtext("MESSAGE") or "") if original is not None else "",
                paraphrase=clean_text(node.findtext("NIST-PARAPHRASE") or ""),
                summary=clean_text(node.findtext("NLM-Summary") or ""),
            )
        )
    return tuple(questions)


def liveqa_questions(data_dir: Path | str | None = None) -> tuple[LiveqaQuestion, ...]:
    """The 104 TREC 2017 LiveQA-Med test questions."""
    return _liveqa_questions(resolve_data_dir(data_dir))


def _zip_member(archive: zipfile.ZipFile, suffix: str, path: Path) -> str:
    names = [n for n in archive.namelist() if n.endswith(suffix) and "__MACOSX" not in n]
    if len(names) != 1:
        raise DataError(f"{path}: expected one member ending {suffix!r}, found {len(names)}")
    return archive.read(names[0]).decode("utf-8")


_LIVEQA_ANSWER_RE = re.compile(r"^Question: (.*?)\nURL: (.*?)\nAnswer: (.*)$", re.S)


@lru_cache(maxsize=4)
def _liveqa_judged(data_dir: Path) -> tuple[Mapping[str, Mapping[str, int]], Mapping[str, str]]:
    path = data_file(data_dir, LIVEQA_ZIP)
    with zipfile.ZipFile(path) as archive:
        qrels_text = _zip_member(archive, "_Judged-Answers.txt", path)
        answers_text = _zip_member(archive, "Answers-retrieved-from-MedQuAD.csv", path)
    judged: dict[str, dict[str, int]] = defaultdict(dict)
    for number, line in enumerate(qrels_text.splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 3 or parts[1] not in LIVEQA_GRADES:
            raise DataError(f"{path} qrels line {number}: expected 'QNUM GRADE ANSWER_ID', got {line!r}")
        qid = f"TQ{parts[0]}"
        answer = parts[2].removesuffix(".txt")
        # 168 (question, answer) pairs were judged twice with different grades: keep the higher, as for cMedIR.
        judged[qid][answer] = max(LIVEQA_GRADES[parts[1]], judged[qid].get(answer, 0))
    answers: dict[str, str] = {}
    for row in csv.DictReader(io.StringIO(answers_text, newline="")):
        match = _LIVEQA_ANSWER_RE.match(row["Answer"].replace("\r\n", "\n"))
        if not match:
            raise DataError(f"{path}: answer {row['AnswerID']} is not 'Question/URL/Answer' text")
        body = match.group(3).rstrip()
        # Every answer of the export ends with a stray ")" that closes nothing.
        body = body[:-1] if body.endswith(")") else body
        answers[row["AnswerID"].removesuffix(".txt")] = clean_paragraphs(body)
    missing = {a for grades in judged.values() for a in grades} - set(answers)
    if missing:
        raise DataError(f"{path}: {len(missing)} judged answers have no text, e.g. {sorted(missing)[:3]}")
    return {q: dict(sorted(a.items())) for q, a in sorted(judged.items())}, answers


def liveqa_judgements(data_dir: Path | str | None = None) -> Mapping[str, Mapping[str, int]]:
    """question id (``TQ1``) -> {answer id (``ADAM_0003147_Sec1``): grade 1..4}; repeated judgements -> max."""
    return _liveqa_judged(resolve_data_dir(data_dir))[0]


def liveqa_answers(data_dir: Path | str | None = None) -> Mapping[str, str]:
    """answer id -> answer text (the MedQuAD answer, without the export's Question/URL header)."""
    return _liveqa_judged(resolve_data_dir(data_dir))[1]
