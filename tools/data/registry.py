"""The corpora: which documents each holds, their licences, and :func:`load_corpus`.

A corpus is JSONL of ``{"id": str, "text": str, "meta": {...}}`` (``meta["source"]`` names the dataset). Corpora:

- ``cmed-zh``: the distinct cleaned cMedIR titles of dev and test (``cmedir:<hash>``) plus the distinct Toyhom doctor
  answers (``toyhom:<hash>``, with the department).
- ``icd10``: one document per WHO ICD-10 code (id ``A00``, ``A00.0``), names in every available language in meta,
  text from :func:`icd_text` over the chosen languages.
- ``medquad-en``: the distinct MedQuAD answers (``medquad:<hash>``), first question, focus and type in meta.

The raw loaders (``cmedir_judgements``, ``toyhom_rows``, ``chip_pairs``, ``kuake_pairs``, ``icd_entries``,
``medquad_rows``, ``liveqa_*``), one module per dataset, are the only parsers of those files: ``tools.data.splits`` and
``tools.data.tasks`` build on them. They are cached per data directory: treat what they return as read-only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

from tools.data import chip, cmedir, icd10, kuake, liveqa, medquad, toyhom
from tools.data.cmedir import cmedir_documents
from tools.data.icd10 import DEFAULT_ICD_LANGS, icd10_documents
from tools.data.medquad import medquad_documents
from tools.data.records import DataError, Document, check_unique_ids
from tools.data.toyhom import toyhom_documents


def cmed_zh_documents(data_dir: Path | str | None = None) -> list[Document]:
    docs = cmedir_documents(data_dir) + toyhom_documents(data_dir)
    check_unique_ids(docs)
    return docs


@dataclass(frozen=True)
class CorpusSpec:
    name: str
    language: str
    description: str
    licenses: tuple[Mapping[str, str], ...]


CORPORA: Mapping[str, CorpusSpec] = {
    # The title half of cmed-zh on its own: cMedIR's search corpus, and a negative pool for training that needs no
    # Toyhom answer vectors (those are the costly part of embedding cmed-zh with the GGUF).
    "cmedir-titles": CorpusSpec(
        "cmedir-titles",
        "zh",
        "cMedIR titles (zh)",
        ({"name": "cMedIR (ChineseBLUE)", "license": "Apache-2.0"},),
    ),
    "cmed-zh": CorpusSpec(
        "cmed-zh",
        "zh",
        "cMedIR titles + Toyhom doctor answers (zh)",
        (
            {"name": "cMedIR (ChineseBLUE)", "license": "Apache-2.0"},
            {"name": "Toyhom Chinese-medical-dialogue-data", "license": "MIT"},
        ),
    ),
    "icd10": CorpusSpec(
        "icd10",
        "multi",
        "WHO ICD-10 codes with names in en, es, fr, pt, de, zh, it",
        (
            {"name": "GNU Health ICD-10", "license": "GPL-3.0-or-later"},
            {"name": "ICD-10 Chinese (tumashu/gnuhealth-zh_CN)", "license": "none stated"},
            {"name": "CIE-10 (cluster311/cie10)", "license": "MIT"},
        ),
    ),
    "medquad-en": CorpusSpec(
        "medquad-en", "en", "MedQuAD answers from NIH sites (en)", ({"name": "MedQuAD", "license": "CC BY 4.0"},)
    ),
}


def load_corpus(
    name: str,
    data_dir: Path | str | None = None,
    *,
    langs: Sequence[str] = DEFAULT_ICD_LANGS,
    include_code: bool = True,
) -> list[Document]:
    """Documents of corpus ``name``; ``langs`` and ``include_code`` only shape ``icd10``."""
    if name == "cmed-zh":
        return cmed_zh_documents(data_dir)
    if name == "cmedir-titles":
        return cmedir_documents(data_dir)
    if name == "icd10":
        return icd10_documents(data_dir, langs, include_code)
    if name == "medquad-en":
        return medquad_documents(data_dir)
    raise DataError(f"unknown corpus {name!r}: expected one of {', '.join(CORPORA)}")


def clear_caches() -> None:
    """Forget every parsed file (tests use it to prove that a second parse gives the same result)."""
    for cached in (
        cmedir._cmedir_judgements,
        toyhom._toyhom_rows,
        chip._chip_pairs,
        kuake._kuake_pairs,
        icd10._icd_entries,
        medquad._medquad_rows,
        liveqa._liveqa_questions,
        liveqa._liveqa_judged,
    ):
        cached.cache_clear()
