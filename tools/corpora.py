"""The data layer: parse the raw files under the data directory once, and turn them into corpora.

    python -m tools.corpora NAME --out FILE.jsonl [--data-dir DIR] [--langs en,zh] [--no-code]

A corpus is JSONL of ``{"id": str, "text": str, "meta": {...}}`` (``meta["source"]`` names the dataset). Corpora:

- ``cmed-zh``: the distinct cleaned cMedIR titles of dev and test (``cmedir:<hash>``) plus the distinct Toyhom doctor
  answers (``toyhom:<hash>``, with the department).
- ``icd10``: one document per WHO ICD-10 code (id ``A00``, ``A00.0``), names in every available language in meta,
  text from :func:`icd_text` over the chosen languages.
- ``medquad-en``: the distinct MedQuAD answers (``medquad:<hash>``), first question, focus and type in meta.

The raw loaders (``cmedir_judgements``, ``toyhom_rows``, ``chip_pairs``, ``kuake_pairs``, ``icd_entries``,
``medquad_rows``, ``liveqa_*``) are the only parsers of those files: ``tools.splits`` and ``tools.tasks`` build on
them. They are cached per data directory: treat what they return as read-only.

Document ids are ``<source>:<first 12 hex of sha256(text)>``: independent of file order and of which other
documents exist, so an id survives a data update; uniqueness is checked when a corpus is built.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import os
import re
import sys
import uuid
import xml.etree.ElementTree as ET
import zipfile
from collections import defaultdict
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from edge.errors import BadInput

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA_DIR = REPO_ROOT.parent / "shared" / "data"

ID_HEX_CHARS = 12


class DataError(BadInput):
    """The data directory or one of its files is missing or not in the documented format."""


# ------------------------------------------------------------------------------------------------ documents


@dataclass(frozen=True)
class Document:
    id: str
    text: str
    meta: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps({"id": self.id, "text": self.text, "meta": dict(self.meta)}, ensure_ascii=False)


def stable_id(prefix: str, text: str) -> str:
    """``prefix:<12 hex>`` from the text itself, so the id does not depend on file order."""
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:ID_HEX_CHARS]
    return f"{prefix}:{digest}"


def check_unique_ids(docs: Sequence[Document]) -> None:
    seen: dict[str, str] = {}
    for doc in docs:
        if doc.id in seen:
            raise DataError(f"duplicate document id {doc.id!r} (texts {seen[doc.id][:40]!r} and {doc.text[:40]!r})")
        seen[doc.id] = doc.text


def write_jsonl(docs: Iterable[Document], path: Path | str) -> int:
    """Write documents as JSONL atomically (temp file in the same folder, then rename). Returns the count."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    # Not mkstemp: its 0600 mode would survive the rename; "x" mode respects the umask and never clobbers.
    tmp_name = target.parent / f".{target.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
    count = 0
    try:
        with open(tmp_name, "x", encoding="utf-8", newline="\n") as out:
            for doc in docs:
                out.write(doc.to_json())
                out.write("\n")
                count += 1
        os.replace(tmp_name, target)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return count


def read_jsonl(path: Path | str) -> list[Document]:
    """Read a corpus written by :func:`write_jsonl` (or by hand); every line must carry ``id`` and ``text``."""
    docs: list[Document] = []
    source = Path(path)
    try:
        lines = source.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read corpus {source}: {exc}") from exc
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            doc = Document(id=str(row["id"]), text=str(row["text"]), meta=dict(row.get("meta") or {}))
        except (ValueError, KeyError, TypeError) as exc:
            raise DataError(f"{source}:{number}: not a corpus line ({exc})") from exc
        docs.append(doc)
    return docs


# ------------------------------------------------------------------------------------------------ data dir


def resolve_data_dir(data_dir: Path | str | None = None) -> Path:
    """The data directory as an absolute path (default ``../shared/data`` next to the repository)."""
    path = Path(data_dir) if data_dir is not None else DEFAULT_DATA_DIR
    path = path.expanduser().resolve()
    if not path.is_dir():
        raise DataError(f"data directory {path} not found: pass --data-dir pointing at the shared data folder")
    return path


def _data_file(data_dir: Path | str | None, relative: str) -> Path:
    path = resolve_data_dir(data_dir) / relative
    if not path.is_file():
        raise DataError(f"missing data file {path} (see the data README for the expected layout)")
    return path


def clean_text(text: str) -> str:
    """Whitespace runs (incl. no-break spaces) to one space, zero-width marks dropped, ends stripped."""
    text = text.replace("\u200b", "").replace("\u200e", "").replace("\u200f", "").replace("\ufeff", "")
    return " ".join(text.split())


def clean_paragraphs(text: str) -> str:
    """Keep line structure but strip each line and drop blank ones (MedQuAD answers carry XML indentation)."""
    lines = (clean_text(line) for line in text.splitlines())
    return "\n".join(line for line in lines if line)


# ------------------------------------------------------------------------------------------------ cMedIR

CMEDIR_SPLITS = ("dev", "test")


def clean_cmedir_title(title: str) -> str:
    """Every cMedIR line appears twice; in the second copy the second title gained a leading ':'. Drop it."""
    return title[1:] if title.startswith(":") else title


@lru_cache(maxsize=8)
def _cmedir_judgements(data_dir: Path, split: str) -> tuple[Mapping[str, Mapping[str, int]], int]:
    path = _data_file(data_dir, f"zh/cmedir/{split}.jsonl")
    merged: dict[str, dict[str, int]] = {}
    conflicts: set[tuple[str, str]] = set()
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                query = str(row["query"])
                judged = merged.setdefault(query, {})
                for doc in row["documents"]:
                    title = clean_cmedir_title(str(doc["title"]))
                    label = int(doc["label"])
                    if title in judged and judged[title] != label:
                        conflicts.add((query, title))
                    # Conflicting judgements (22 pairs over both splits): keep the highest label, as an annotator
                    # did see the title as that relevant, and max is order-independent.
                    judged[title] = max(label, judged.get(title, label))
            except (ValueError, KeyError, TypeError) as exc:
                raise DataError(f"{path}:{number}: not a cMedIR line ({exc})") from exc
    frozen = {query: dict(sorted(titles.items())) for query, titles in merged.items()}
    return frozen, len(conflicts)


def cmedir_judgements(split: str, data_dir: Path | str | None = None) -> Mapping[str, Mapping[str, int]]:
    """cMedIR ``split`` (dev|test) merged: query -> {cleaned title: label 0..4}; repeated lines merged, conflicting
    labels for one (query, title) resolved to the maximum. Do not mutate the result (it is cached)."""
    if split not in CMEDIR_SPLITS:
        raise DataError(f"unknown cMedIR split {split!r}: expected one of {', '.join(CMEDIR_SPLITS)}")
    return _cmedir_judgements(resolve_data_dir(data_dir), split)[0]


def cmedir_conflict_count(split: str, data_dir: Path | str | None = None) -> int:
    """How many (query, title) pairs of ``split`` carry different labels on different lines."""
    cmedir_judgements(split, data_dir)
    return _cmedir_judgements(resolve_data_dir(data_dir), split)[1]


def cmedir_titles(data_dir: Path | str | None = None) -> list[str]:
    """The distinct cleaned titles of dev and test, sorted."""
    titles: set[str] = set()
    for split in CMEDIR_SPLITS:
        for judged in cmedir_judgements(split, data_dir).values():
            titles.update(judged)
    return sorted(titles)


def cmedir_doc_id(title: str) -> str:
    return stable_id("cmedir", title)


# ------------------------------------------------------------------------------------------------ Toyhom

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
    path = _data_file(data_dir, TOYHOM_FILE)
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


# ------------------------------------------------------------------------------------------------ sentence pairs


@dataclass(frozen=True)
class SentencePair:
    text1: str
    text2: str
    label: str
    category: str = ""


@lru_cache(maxsize=4)
def _chip_pairs(data_dir: Path) -> tuple[SentencePair, ...]:
    path = _data_file(data_dir, "zh/chip2019_qpair/train.csv")
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        expected = ["question1", "question2", "label", "category"]
        if reader.fieldnames != expected:
            raise DataError(f"{path}: expected columns {expected}, found {reader.fieldnames}")
        return tuple(
            SentencePair(clean_text(r["question1"]), clean_text(r["question2"]), r["label"].strip(), r["category"])
            for r in reader
        )


def chip_pairs(data_dir: Path | str | None = None) -> tuple[SentencePair, ...]:
    """CHIP-2019 question pairs (label "1" = same intent, "0" = not), in file order."""
    return _chip_pairs(resolve_data_dir(data_dir))


KUAKE_SPLITS = ("train", "dev")


@lru_cache(maxsize=8)
def _kuake_pairs(data_dir: Path, split: str) -> tuple[SentencePair, ...]:
    path = _data_file(data_dir, f"zh/kuake_qqr/{split}.json")
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))
        return tuple(
            SentencePair(clean_text(r["query1"]), clean_text(r["query2"]), str(r["label"]).strip(), str(r["id"]))
            for r in rows
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{path}: not a KUAKE-QQR file ({exc})") from exc


def kuake_pairs(split: str, data_dir: Path | str | None = None) -> tuple[SentencePair, ...]:
    """KUAKE-QQR ``split`` (train|dev) as pairs; ``label`` is "0", "1", "2" (or "NA" on one dev row), ``category``
    holds the row id."""
    if split not in KUAKE_SPLITS:
        raise DataError(f"unknown KUAKE-QQR split {split!r}: expected one of {', '.join(KUAKE_SPLITS)}")
    return _kuake_pairs(resolve_data_dir(data_dir), split)


# ------------------------------------------------------------------------------------------------ ICD-10

ICD_LANGS = ("en", "es", "fr", "pt", "de", "zh", "it")
GNUHEALTH_PO_FILES = {"es": "es.po", "fr": "fr.po", "pt": "pt_BR.po", "de": "de.po", "zh": "zh_CN.po", "it": "it_IT.po"}
_ICD_CODE_RE = re.compile(r"^([A-Z])(\d\d)\.?([0-9A-Z])?$")

# The WHO ICD-10 (2019) chapters as ranges of three-character categories; range ends are inclusive.
ICD_CHAPTERS: tuple[tuple[str, str, str], ...] = (
    ("I", "A00", "B99"),
    ("II", "C00", "D48"),
    ("III", "D50", "D89"),
    ("IV", "E00", "E90"),
    ("V", "F00", "F99"),
    ("VI", "G00", "G99"),
    ("VII", "H00", "H59"),
    ("VIII", "H60", "H95"),
    ("IX", "I00", "I99"),
    ("X", "J00", "J99"),
    ("XI", "K00", "K93"),
    ("XII", "L00", "L99"),
    ("XIII", "M00", "M99"),
    ("XIV", "N00", "N99"),
    ("XV", "O00", "O99"),
    ("XVI", "P00", "P96"),
    ("XVII", "Q00", "Q99"),
    ("XVIII", "R00", "R99"),
    ("XIX", "S00", "T98"),
    ("XX", "V01", "Y98"),
    ("XXI", "Z00", "Z99"),
    ("XXII", "U00", "U99"),
)


def format_icd_code(raw: str) -> str:
    """``A000`` / ``A00.0`` / ``A17.0+`` / ``G01*`` -> ``A00.0`` / ``A17.0`` / ``G01``: the code as ICD-10 writes it,
    dagger (+) and asterisk (*) markers stripped. Raises ValueError for anything else (ranges, blanks)."""
    stripped = raw.strip().rstrip("+*†").strip().upper()
    match = _ICD_CODE_RE.match(stripped)
    if not match:
        raise ValueError(f"not an ICD-10 code: {raw!r}")
    letter, digits, sub = match.groups()
    return f"{letter}{digits}.{sub}" if sub else f"{letter}{digits}"


def icd_chapter(code: str) -> tuple[int, str]:
    """(chapter number 1..22, roman numeral) of an ICD-10 code, from the WHO chapter ranges."""
    category = format_icd_code(code)[:3]
    for number, (roman, first, last) in enumerate(ICD_CHAPTERS, 1):
        if first <= category <= last:
            return number, roman
    raise ValueError(f"ICD-10 code {code!r} falls in no WHO chapter")


@dataclass(frozen=True)
class IcdEntry:
    code: str  # "A00" or "A00.0"
    names: Mapping[str, str]  # lang -> preferred name
    aliases: Mapping[str, tuple[str, ...]]  # lang -> other wordings of the same code (other sources)
    chapter: int
    chapter_roman: str
    active: bool  # gnuhealth marks withdrawn codes inactive (e.g. U06 Zika): kept, flagged

    @property
    def level(self) -> int:
        """3 for a category (``E11``), 4 for a subcategory (``E11.2``)."""
        return 3 if len(self.code) == 3 else 4

    @property
    def parent(self) -> str | None:
        return self.code[:3] if self.level == 4 else None


_PO_KEYWORDS = frozenset({"msgctxt", "msgid", "msgstr"})
_PO_ESCAPES = {"n": "\n", "t": "\t", '"': '"', "\\": "\\", "r": "\r"}


def _po_unescape(text: str) -> str:
    if "\\" not in text:
        return text
    return re.sub(r"\\(.)", lambda m: _PO_ESCAPES.get(m.group(1), m.group(1)), text)


def read_po(path: Path) -> dict[str, tuple[str, str]]:
    """gettext .po -> {msgctxt: (msgid, msgstr)}. Obsolete (``#~``) and fuzzy entries are skipped, as gettext does:
    here the obsolete ones translate old, often fragmentary msgids ("Farm", "Other") of a code."""
    entries: dict[str, tuple[str, str]] = {}
    current: dict[str, str] = {}
    fuzzy = False  # set by a "#, fuzzy" comment, applies to the entry that follows it
    key: str | None = None

    def flush() -> None:
        nonlocal current, fuzzy, key
        if "msgctxt" in current and not fuzzy:
            entries[_po_unescape(current["msgctxt"])] = (
                _po_unescape(current.get("msgid", "")),
                _po_unescape(current.get("msgstr", "")),
            )
        current, fuzzy, key = {}, False, None

    with path.open(encoding="utf-8") as lines:
        for number, raw in enumerate(lines, 1):
            line = raw.strip()
            if not line:
                continue
            if line[0] == '"' and key is not None and len(line) >= 2 and line[-1] == '"':
                current[key] += line[1:-1]  # a continuation of the previous keyword's string
                continue
            if line[0] == "#":
                # Comments open the next entry; "#~" lines are obsolete entries and are dropped whole.
                if current:
                    flush()
                if line.startswith("#,") and "fuzzy" in line:
                    fuzzy = True
                continue
            keyword, _, value = line.partition(" ")
            if keyword not in _PO_KEYWORDS or len(value) < 2 or value[0] != '"' or value[-1] != '"':
                raise DataError(f"{path}:{number}: not a .po line: {line[:60]!r}")
            if current and (keyword == "msgctxt" or keyword in current):
                flush()
            current[keyword] = value[1:-1]
            key = keyword
    if current:
        flush()
    return entries


# Code points that Windows-1250 puts where Windows-1252 has Portuguese letters (ă for ã, ő for õ, ę for ê, ŕ for à):
# pt_BR.po holds ~2,600 such letters from a mis-decoded import. None of them is Portuguese.
_CP1250_MOJIBAKE = frozenset("ăĂőŐęĘŕŔşŞţŢĺĹ")


# Per character, as a name can mix repaired letters with correct ones that Windows-1250 lacks ("à ingestăo").
_CP1250_REPAIR = str.maketrans({char: char.encode("cp1250").decode("cp1252") for char in _CP1250_MOJIBAKE})


def fix_cp1250_mojibake(text: str) -> str:
    """Repair Portuguese text that was Windows-1252 read as Windows-1250 (``năo`` -> ``não``); else unchanged."""
    return text.translate(_CP1250_REPAIR)


def clean_icd_name(name: str) -> str:
    """Whitespace-clean an ICD name, drop the quotes a CSV export left around some zh_who descriptions, and write
    the French files' "parent | child" separator as "parent: child" (" | " separates the names in a document)."""
    name = clean_text(name)
    if len(name) >= 2 and name[0] == name[-1] == '"':
        name = clean_text(name[1:-1])
    return name.replace(" | ", ": ").replace("|", ": ")


def _qualifier(lang: str) -> str:
    return "：" if lang == "zh" else ": "


def _qualify_fragments(entries: list[IcdEntry]) -> list[IcdEntry]:
    """Many subcategory names only make sense under their category: W01.6 and W07.6 are both "Industrial and
    construction area" (the place of a fall). A subcategory name that codes of another category also carry is
    written "<category name>: <name>", as gnuhealth already does for "Type 2 diabetes mellitus: With coma"."""
    parents: dict[tuple[str, str], set[str]] = defaultdict(set)
    for entry in entries:
        for lang, name in entry.names.items():
            for text in (name, *entry.aliases.get(lang, ())):
                parents[(lang, text.casefold())].add(entry.parent or entry.code)
    shared = {key for key, owners in parents.items() if len(owners) > 1}
    by_code = {entry.code: entry for entry in entries}

    def qualify(entry: IcdEntry, lang: str, text: str) -> str:
        if (lang, text.casefold()) not in shared:
            return text
        parent_name = by_code[entry.code[:3]].names.get(lang) if entry.code[:3] in by_code else None
        if not parent_name or text.casefold().startswith(parent_name.casefold()):
            return text
        return f"{parent_name}{_qualifier(lang)}{text}"

    out = []
    for entry in entries:
        if entry.level != 4 or not any(
            (lang, text.casefold()) in shared
            for lang, name in entry.names.items()
            for text in (name, *entry.aliases.get(lang, ()))
        ):
            out.append(entry)
            continue
        names = {lang: qualify(entry, lang, name) for lang, name in entry.names.items()}
        aliases = {
            lang: tuple(dict.fromkeys(a for a in (qualify(entry, lang, x) for x in alts) if a != names.get(lang)))
            for lang, alts in entry.aliases.items()
        }
        aliases = {lang: alts for lang, alts in aliases.items() if alts}
        out.append(IcdEntry(entry.code, names, aliases, entry.chapter, entry.chapter_roman, entry.active))
    return out


def _read_gnuhealth_english(path: Path) -> dict[str, tuple[str, bool]]:
    """code -> (English name, active) from the Tryton XML; ids like ``A000`` and codes like ``A00.0`` must agree."""
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as exc:
        raise DataError(f"{path}: not XML ({exc})") from exc
    out: dict[str, tuple[str, bool]] = {}
    for record in root.iter("record"):
        if record.get("model") != "gnuhealth.pathology":
            continue
        fields = {f.get("name"): (f.text or "") for f in record.findall("field")}
        try:
            code = format_icd_code(fields.get("code", ""))
            if format_icd_code(record.get("id", "")) != code:
                raise ValueError(f"record id {record.get('id')!r} disagrees with code {fields.get('code')!r}")
        except ValueError as exc:
            raise DataError(f"{path}: {exc}") from exc
        out[code] = (clean_icd_name(fields.get("name", "")), fields.get("active", "True").strip() != "False")
    return out


def _read_gnuhealth_translations(path: Path, lang: str) -> dict[str, str]:
    prefix = "model:gnuhealth.pathology,name:"
    out: dict[str, str] = {}
    for context, (_msgid, msgstr) in read_po(path).items():
        if not context.startswith(prefix) or not msgstr.strip():
            continue
        name = clean_icd_name(msgstr)
        if lang == "pt":
            name = fix_cp1250_mojibake(name)
        out[format_icd_code(context[len(prefix) :])] = name
    return out


def _read_zh_who(path: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    with path.open(encoding="utf-8", newline="") as handle:
        for number, line in enumerate(handle, 1):
            parts = line.rstrip("\r\n").split("\t")
            if number == 1 or not line.strip():
                continue
            if len(parts) != 3:
                raise DataError(f"{path}:{number}: expected 3 tab-separated fields")
            try:
                out[format_icd_code(parts[1])] = clean_icd_name(parts[2])
            except ValueError as exc:
                raise DataError(f"{path}:{number}: {exc}") from exc
    return out


def _read_es_cie(path: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    with path.open(encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            code = (row.get("code") or "").strip()
            if "-" in code:  # chapter and block ranges such as "A00-B99"
                continue
            try:
                out[format_icd_code(code)] = clean_icd_name(row.get("description") or "")
            except ValueError as exc:
                raise DataError(f"{path}: {exc}") from exc
    return out


@lru_cache(maxsize=4)
def _icd_entries(data_dir: Path) -> tuple[IcdEntry, ...]:
    english = _read_gnuhealth_english(_data_file(data_dir, "icd/gnuhealth/diseases_en.xml"))
    gnuhealth = {
        lang: _read_gnuhealth_translations(_data_file(data_dir, f"icd/gnuhealth/{name}"), lang)
        for lang, name in GNUHEALTH_PO_FILES.items()
    }
    # Second sources: the WHO Chinese edition and the Spanish CIE-10. The WHO Chinese wording is preferred over
    # gnuhealth's zh_CN, which keeps superseded terms ("非胰岛素依赖型糖尿病" where WHO now writes "2型糖尿病");
    # CIE-10 only fills the Spanish names gnuhealth lacks. The other wording of a code becomes an alias.
    second = {
        "zh": _read_zh_who(_data_file(data_dir, "icd/zh_who/icd10-disease.txt")),
        "es": _read_es_cie(_data_file(data_dir, "icd/es_cie/cie-10.csv")),
    }
    entries = []
    for code in sorted(english):
        english_name, active = english[code]
        names: dict[str, str] = {"en": english_name} if english_name else {}
        aliases: dict[str, tuple[str, ...]] = {}
        for lang in ICD_LANGS[1:]:
            candidates = [gnuhealth[lang].get(code, "")]
            if lang == "zh":
                candidates.insert(0, second[lang].get(code, ""))
            elif lang in second:
                candidates.append(second[lang].get(code, ""))
            # A "translation" that is the English name copied over (536 in pt_BR) is untranslated: as a query it
            # would test English, not the language.
            kept: list[str] = []
            for candidate in candidates:
                if candidate and candidate.casefold() != english_name.casefold() and candidate not in kept:
                    kept.append(candidate)
            if kept:
                names[lang] = kept[0]
                if len(kept) > 1:
                    aliases[lang] = tuple(kept[1:])
        try:
            number, roman = icd_chapter(code)
        except ValueError as exc:
            raise DataError(str(exc)) from exc
        entries.append(IcdEntry(code, names, aliases, number, roman, active))
    return tuple(_qualify_fragments(entries))


def icd_entries(data_dir: Path | str | None = None) -> tuple[IcdEntry, ...]:
    """Every WHO ICD-10 code of gnuhealth's diseases_en.xml (14,416), sorted by code, with its names:
    en from the XML; es, fr, pt, de, it from the gnuhealth .po files (es from CIE-10 where gnuhealth lacks it); zh from
    the WHO Chinese edition, else gnuhealth's zh_CN. A second source's different wording is kept as an alias. A
    subcategory name shared with another category's code is prefixed with its category's name (see
    ``_qualify_fragments``); a "translation" equal to the English name is dropped."""
    return _icd_entries(resolve_data_dir(data_dir))


DEFAULT_ICD_LANGS = ("en", "zh")
ICD_TEXT_SEPARATOR = " | "


def icd_text(names: Mapping[str, str], langs: Sequence[str] = DEFAULT_ICD_LANGS, code: str | None = None) -> str:
    """The text embedded for one ICD code: ``"E11.2 | <en name> | <zh name>"``. Languages without a name are
    skipped, identical names are written once. The code leads when given: it costs the embedder a few tokens and lets
    a user who types a code land on it (the index's own text is also what a result shows)."""
    unknown = [lang for lang in langs if lang not in ICD_LANGS]
    if unknown:
        raise ValueError(f"unknown ICD language(s) {unknown}: expected some of {', '.join(ICD_LANGS)}")
    parts: list[str] = [code] if code else []
    for lang in langs:
        name = names.get(lang)
        if name and name not in parts:
            parts.append(name)
    return ICD_TEXT_SEPARATOR.join(parts)


# ------------------------------------------------------------------------------------------------ MedQuAD


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
    path = _data_file(data_dir, "en/medquad.jsonl")
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


# ------------------------------------------------------------------------------------------------ LiveQA

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
    path = _data_file(data_dir, LIVEQA_QUESTIONS)
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
    path = _data_file(data_dir, LIVEQA_ZIP)
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


# ------------------------------------------------------------------------------------------------ corpora


def cmedir_documents(data_dir: Path | str | None = None) -> list[Document]:
    """The 19,241 distinct cleaned cMedIR titles of dev and test."""
    return [Document(cmedir_doc_id(t), t, {"source": "cmedir"}) for t in cmedir_titles(data_dir)]


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


def cmed_zh_documents(data_dir: Path | str | None = None) -> list[Document]:
    docs = cmedir_documents(data_dir) + toyhom_documents(data_dir)
    check_unique_ids(docs)
    return docs


def icd10_documents(
    data_dir: Path | str | None = None, langs: Sequence[str] = DEFAULT_ICD_LANGS, include_code: bool = True
) -> list[Document]:
    """One document per ICD-10 code; ``text`` = :func:`icd_text` over ``langs``; every language's name in meta."""
    docs = []
    for entry in icd_entries(data_dir):
        meta = {
            "source": "icd10",
            "code": entry.code,
            "names": dict(entry.names),
            "aliases": {lang: list(names) for lang, names in entry.aliases.items()},
            "chapter": entry.chapter_roman,
            "chapter_number": entry.chapter,
            "level": entry.level,
            "active": entry.active,
        }
        docs.append(Document(entry.code, icd_text(entry.names, langs, entry.code if include_code else None), meta))
    return docs


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
        _cmedir_judgements,
        _toyhom_rows,
        _chip_pairs,
        _kuake_pairs,
        _icd_entries,
        _medquad_rows,
        _liveqa_questions,
        _liveqa_judged,
    ):
        cached.cache_clear()


def _parse_langs(value: str) -> tuple[str, ...]:
    langs = tuple(part.strip() for part in value.split(",") if part.strip())
    unknown = [lang for lang in langs if lang not in ICD_LANGS]
    if not langs or unknown:
        raise argparse.ArgumentTypeError(f"expected a comma-separated subset of {','.join(ICD_LANGS)}, got {value!r}")
    return langs


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.corpora", description="Write a corpus as JSONL.")
    parser.add_argument("name", choices=sorted(CORPORA), help="corpus to build")
    parser.add_argument("--out", required=True, type=Path, help="output .jsonl file (written atomically)")
    parser.add_argument("--data-dir", type=Path, default=None, help=f"data folder (default {DEFAULT_DATA_DIR})")
    parser.add_argument(
        "--langs", type=_parse_langs, default=DEFAULT_ICD_LANGS, help="icd10 only: languages joined into the text"
    )
    parser.add_argument("--no-code", action="store_true", help="icd10 only: leave the code out of the text")
    args = parser.parse_args(argv)
    try:
        docs = load_corpus(args.name, args.data_dir, langs=args.langs, include_code=not args.no_code)
        count = write_jsonl(docs, args.out)
    except BadInput as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:
        print(f"error: cannot write {args.out}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    print(f"{args.name}: {count} documents -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
