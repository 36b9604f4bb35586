"""WHO ICD-10: codes, chapters and names in every available language (GNU Health .po files, the Chinese WHO
list, CIE-10), and the ``icd10`` corpus built from them.
"""

from __future__ import annotations

import csv
import re
import xml.etree.ElementTree as ET
from collections import defaultdict
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Mapping, Sequence

from tools.data.records import DataError, Document, clean_text, data_file, resolve_data_dir

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
    english = _read_gnuhealth_english(data_file(data_dir, "icd/gnuhealth/diseases_en.xml"))
    gnuhealth = {
        lang: _read_gnuhealth_translations(data_file(data_dir, f"icd/gnuhealth/{name}"), lang)
        for lang, name in GNUHEALTH_PO_FILES.items()
    }
    # Second sources: the WHO Chinese edition and the Spanish CIE-10. The WHO Chinese wording is preferred over
    # gnuhealth's zh_CN, which keeps superseded terms ("非胰岛素依赖型糖尿病" where WHO now writes "2型糖尿病");
    # CIE-10 only fills the Spanish names gnuhealth lacks. The other wording of a code becomes an alias.
    second = {
        "zh": _read_zh_who(data_file(data_dir, "icd/zh_who/icd10-disease.txt")),
        "es": _read_es_cie(data_file(data_dir, "icd/es_cie/cie-10.csv")),
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
