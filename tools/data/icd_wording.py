"""ICD-10 wording-shift tasks: queries worded otherwise than any text of their positive document.

The ``icd-coding-<lang>`` tasks ask for a held-out code by its own name in one language, a name that sits in the
code's document or next to it. A user rarely types that exact name: a clinician writes a more specific description
than the category they want, or another edition's wording of it. These tasks measure that shift, all over the
``icd10`` corpus, all from ``../shared/data``:

- ``icd-parent-<lang>`` (specific -> parent): a held-out four-character code's name; the four-character documents
  of the held-out codes are left out of the corpus, so the right answer is the code's three-character category.
  Names equal to one of the category's own names (in any language) are left out: they would not be more specific.
- ``icd-children-<lang>`` (the reverse): a three-character category's name, with every category document left out
  of the corpus; its four-character children are the relevant documents. Category names are training texts (only
  four-character codes are held out, see ``tools.data.splits``): this probe measures how the space orders a family,
  not generalisation to unseen wordings.
- ``icd-edition-zh``: the gnuhealth ``zh_CN`` wording of a held-out code where it differs from the WHO Chinese
  edition's wording, which is the Chinese name in the code's document text. ``icd-edition-es``: the CIE-10
  wording (``icd/es_cie``) where it differs from the gnuhealth ``es`` name. "Differs" ignores case, width,
  punctuation and spacing (``wording_key``), so "（慢性）" against "(慢性)" is no shift.
- ``icd-zeroshot-it``: the Italian name of a held-out code -> the code's document. Italian never appears in any
  retrieval training pair (stage-II ICD pairs are es/fr/pt/de/zh).

English is a query language here (``icd-parent-en``, ``icd-children-en``), not only document text: the stage-II
training pairs of the student never query in English.

Every query of the parent, edition and zero-shot tasks is a name of a held-out code, so it is in
``tools.data.splits.eval_texts`` and no training set contains it. Query counts are capped per task (a fixed hash order
of the code, not random draws) because the LLM teacher embeds each query with the GGUF (about 0.12 s per query on
2 cores): the caps keep a whole run of every system under an hour.
"""

from __future__ import annotations

import hashlib
import unicodedata
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from tools.data.icd10 import IcdEntry, icd_entries
from tools.data.splits import icd_split, normalize_text

# A builder returns the keyword arguments of a ``tools.data.tasks.Task``, which that module builds and registers:
# the tasks module imports this one, never the reverse.
TaskSpec = dict[str, Any]

PARENT_LANGS = ("en", "es", "fr", "pt", "de", "zh", "it")
CHILDREN_LANGS = ("en", "es", "fr", "pt", "de", "zh")
EDITION_LANGS = ("zh", "es")
ZERO_SHOT_LANG = "it"
PARENT_MAX_QUERIES = 200
CHILDREN_MAX_QUERIES = 100
# Ranking metrics of every wording task: R@1/R@5 as the ICD coding tasks report them, and the usual four.
WORDING_METRICS = ("recall@1", "recall@5", "mrr@10", "ndcg@10", "recall@10", "recall@100")
CAP_SEED = "care-edge/icd-wording/v1"
EDITION_SOURCES = {"zh": ("WHO Chinese edition (icd/zh_who)", "gnuhealth zh_CN"),
                   "es": ("gnuhealth es", "CIE-10 (icd/es_cie)")}


def wording_key(text: str) -> str:
    """The form in which two wordings count as the same: NFKC, case-folded, letters and digits only."""
    return "".join(ch for ch in unicodedata.normalize("NFKC", text).casefold() if ch.isalnum())


def _capped(codes: Iterable[str], limit: int) -> list[str]:
    """At most ``limit`` codes, chosen by a fixed hash of the code (stable when other codes come or go), sorted."""
    ordered = sorted(codes, key=lambda code: hashlib.sha256(f"{CAP_SEED}\x1f{code}".encode()).hexdigest())
    return sorted(ordered[:limit])


def _all_wordings(entry: IcdEntry) -> set[str]:
    return {wording_key(text) for lang, name in entry.names.items() for text in (name, *entry.aliases.get(lang, ()))}


def _owners(entries: Iterable[IcdEntry], lang: str) -> dict[str, set[str]]:
    """normalised name or alias in ``lang`` -> the codes that carry it."""
    owners: dict[str, set[str]] = defaultdict(set)
    for entry in entries:
        if lang in entry.names:
            for text in (entry.names[lang], *entry.aliases.get(lang, ())):
                owners[normalize_text(text)].add(entry.code)
    return owners


def _retrieval(name: str, lang: str, description: str, queries: Mapping[str, str],
               qrels: Mapping[str, Mapping[str, int]], corpus_ids: frozenset[str] | None = None) -> TaskSpec:
    return dict(name=name, language=lang, kind="retrieval", description=description, metrics=WORDING_METRICS,
                queries=dict(queries), qrels={q: dict(j) for q, j in qrels.items()}, corpus="icd10",
                corpus_ids=corpus_ids)


def icd_parent_task(lang: str, data_dir: Path) -> TaskSpec:
    entries = icd_entries(data_dir)
    by_code = {entry.code: entry for entry in entries}
    held = [entry for entry in icd_split(data_dir).eval if lang in entry.names]
    owners = _owners(entries, lang)
    candidates: dict[str, str] = {}
    seen: set[str] = set()
    dropped = {"same as the category": 0, "shared by other categories": 0, "repeated": 0}
    for entry in held:
        name = entry.names[lang]
        parent = by_code[str(entry.parent)]
        if wording_key(name) in _all_wordings(parent):
            dropped["same as the category"] += 1
        elif len({code[:3] for code in owners[normalize_text(name)]}) > 1:
            dropped["shared by other categories"] += 1
        elif normalize_text(name) in seen:
            dropped["repeated"] += 1
        else:
            seen.add(normalize_text(name))
            candidates[entry.code] = name
    chosen = _capped(candidates, PARENT_MAX_QUERIES)
    held_codes = {entry.code for entry in icd_split(data_dir).eval}
    left_out = ", ".join(f"{n} {why}" for why, n in dropped.items() if n)
    return _retrieval(
        f"icd-parent-{lang}", lang,
        f"specific -> parent: the {lang} name of a held-out four-character code, whose document (and every other "
        f"held-out code's) is left out of icd10; relevant = its three-character category. {len(chosen)} of "
        f"{len(candidates)} names (fixed hash order){'; left out: ' + left_out if left_out else ''}",
        {code: candidates[code] for code in chosen},
        {code: {code[:3]: 1} for code in chosen},
        frozenset(code for code in by_code if code not in held_codes),
    )


def icd_children_task(lang: str, data_dir: Path) -> TaskSpec:
    entries = icd_entries(data_dir)
    children: dict[str, list[str]] = defaultdict(list)
    for entry in entries:
        if entry.level == 4:
            children[str(entry.parent)].append(entry.code)
    owners = _owners([e for e in entries if e.level == 3], lang)
    candidates = {
        entry.code: entry.names[lang]
        for entry in entries
        if entry.level == 3 and lang in entry.names and len(children[entry.code]) >= 2
        and len(owners[normalize_text(entry.names[lang])]) == 1
    }
    chosen = _capped(candidates, CHILDREN_MAX_QUERIES)
    return _retrieval(
        f"icd-children-{lang}", lang,
        f"parent -> children: the {lang} name of a three-character category with >= 2 subcategories, every "
        f"category's document left out of icd10; relevant = its four-character children. {len(chosen)} of "
        f"{len(candidates)} categories (fixed hash order). Category names are training texts",
        {code: candidates[code] for code in chosen},
        {code: {child: 1 for child in children[code]} for code in chosen},
        frozenset(entry.code for entry in entries if entry.level == 4),
    )


def icd_edition_task(lang: str, data_dir: Path) -> TaskSpec:
    entries = icd_entries(data_dir)
    owners = _owners(entries, lang)
    document_source, query_source = EDITION_SOURCES[lang]
    queries: dict[str, str] = {}
    ambiguous = 0
    for entry in icd_split(data_dir).eval:
        if lang not in entry.names:
            continue
        for alias in entry.aliases.get(lang, ()):
            if wording_key(alias) == wording_key(entry.names[lang]):
                continue
            if owners[normalize_text(alias)] != {entry.code}:
                ambiguous += 1
                continue
            queries.setdefault(entry.code, alias)
    return _retrieval(
        f"icd-edition-{lang}", lang,
        f"another edition's wording: the {query_source} name of a held-out code where it differs (beyond case, "
        f"width and punctuation) from the {document_source} name -> the code's document in icd10 "
        f"({ambiguous} wordings shared with another code left out)",
        queries, {code: {code: 1} for code in queries},
    )


def icd_zero_shot_task(lang: str, data_dir: Path) -> TaskSpec:
    owners = _owners(icd_entries(data_dir), lang)
    queries = {
        entry.code: entry.names[lang]
        for entry in icd_split(data_dir).eval
        if lang in entry.names and owners[normalize_text(entry.names[lang])] == {entry.code}
    }
    return _retrieval(
        f"icd-zeroshot-{lang}", lang,
        f"zero-shot language: the {lang} name of a held-out four-character code -> its document in icd10 "
        f"({lang} is in no retrieval training pair)",
        queries, {code: {code: 1} for code in queries},
    )


def _bind(build: Callable[[str, Path], TaskSpec], lang: str) -> Callable[[Path], TaskSpec]:
    return lambda data_dir: build(lang, data_dir)


WORDING_BUILDERS: dict[str, Callable[[Path], TaskSpec]] = {
    **{f"icd-parent-{lang}": _bind(icd_parent_task, lang) for lang in PARENT_LANGS},
    **{f"icd-children-{lang}": _bind(icd_children_task, lang) for lang in CHILDREN_LANGS},
    **{f"icd-edition-{lang}": _bind(icd_edition_task, lang) for lang in EDITION_LANGS},
    f"icd-zeroshot-{ZERO_SHOT_LANG}": _bind(icd_zero_shot_task, ZERO_SHOT_LANG),
}
