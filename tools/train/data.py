"""What the two training stages feed the student, assembled from the ``train`` sides of ``tools.data.splits`` only.

Stage I (alignment) is a list of texts, mostly query-like: cMedIR train queries, KUAKE-QQR and CHIP-2019 train
questions, Toyhom train questions, MedQuAD train questions, ICD-10 train names in every language, plus a few
documents cut to query length. Stage II (retrieval) is a list of (query, positive document) pairs: cMedIR train
query -> a title judged >= 2; KUAKE-QQR label-2 pairs and CHIP-2019 positive pairs (both directions, the partner
question as the document); Toyhom question -> its doctor's answer; MedQuAD train question -> its answer (the
medquad-en document); an ICD-10 train name in es/fr/pt/de/zh -> the code's document as the icd10 corpus writes it.

Every source is capped at ``max_per_source`` items chosen by a seeded hash of the item (so the choice depends on
neither file order nor the other items), texts are de-duplicated across sources (first source wins), and the
result is passed through :func:`tools.data.splits.assert_not_eval` before it is returned.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence, TypeVar

from tools.data import splits
from tools.data.records import DataError, SentencePair, resolve_data_dir
from tools.data.registry import CORPORA, load_corpus

T = TypeVar("T")

STAGE1_SOURCES = ("cmedir", "kuake", "chip", "toyhom", "medquad", "icd", "documents", "titles")
# Sources sampled by their own count (--documents, --titles) rather than capped by --max-per-source.
STAGE1_SAMPLED_SOURCES = ("documents", "titles")
STAGE2_SOURCES = ("cmedir", "kuake", "chip", "toyhom", "medquad", "icd")
STAGE2_ICD_LANGS = ("es", "fr", "pt", "de", "zh")
# Corpora whose documents stage I samples from (ICD documents are name lists: the ICD names already cover them).
STAGE1_DOCUMENT_CORPORA = ("cmed-zh", "medquad-en")
NEGATIVE_CORPORA = ("cmed-zh", "icd10", "medquad-en")


def seeded_order_key(seed: int, key: str) -> bytes:
    return hashlib.sha1(f"{seed}\x1f{key}".encode("utf-8")).digest()


def capped(items: Iterable[T], cap: int | None, seed: int, key: Callable[[T], str]) -> list[T]:
    """At most ``cap`` of ``items`` (all when ``cap`` is None or 0), the ones whose seeded hash is smallest, in their
    original order."""
    items = list(items)
    if not cap or len(items) <= cap:
        return items
    chosen = set(sorted(range(len(items)), key=lambda i: seeded_order_key(seed, key(items[i])))[:cap])
    return [item for i, item in enumerate(items) if i in chosen]


def _cap_of(source: str, default: int | None, source_caps: Mapping[str, int | None] | None) -> int | None:
    """A source's own cap where ``source_caps`` names it (None = no cap), else the common ``max_per_source``."""
    return source_caps[source] if source_caps and source in source_caps else default


def cut_document(text: str, max_chars: int) -> str:
    """A document's head as a query-length text: the first line, cut to ``max_chars``."""
    first = text.strip().splitlines()[0] if text.strip() else ""
    return first[:max_chars].strip()


# ------------------------------------------------------------------------------------------------ stage I


@dataclass(frozen=True)
class Stage1Data:
    texts: list[str]
    sources: list[str]

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = defaultdict(int)
        for source in self.sources:
            out[source] += 1
        return dict(out)


def _pair_texts(pairs: Iterable[SentencePair]) -> list[str]:
    return list(dict.fromkeys(t for p in pairs for t in (p.text1, p.text2)))


def check_sources(sources: Sequence[str], known: Sequence[str], stage: str) -> None:
    unknown = [s for s in sources if s not in known]
    if unknown or not sources:
        raise DataError(
            f"unknown {stage} source(s) {', '.join(unknown) or '(none given)'}: expected some of {', '.join(known)}"
        )


def _document_heads(data_dir: Path, corpus_names: Sequence[str], count: int, document_chars: int,
                    seed: int) -> list[str]:
    """``count`` distinct document heads (:func:`cut_document`) of the named corpora, none an evaluation text."""
    if count <= 0:
        return []
    docs: list[str] = []
    for name in corpus_names:
        docs += [cut_document(d.text, document_chars) for d in load_corpus(name, data_dir)]
    docs = [d for d in dict.fromkeys(docs) if d and not splits.is_eval_text(d, data_dir)]
    return capped(docs, count, seed, key=lambda t: t)


def stage1_source_texts(
    data_dir: Path | str | None,
    documents: int,
    document_chars: int,
    seed: int = 0,
    sources: Sequence[str] = STAGE1_SOURCES,
    titles: int = 0,
) -> dict[str, list[str]]:
    """Every candidate text of stage I for each of ``sources``, before capping (documents and titles already
    sampled)."""
    check_sources(sources, STAGE1_SOURCES, "stage-I")
    resolved = resolve_data_dir(data_dir)
    loaders: dict[str, Callable[[], list[str]]] = {
        "cmedir": lambda: list(splits.cmedir_split(resolved).train),
        "kuake": lambda: _pair_texts(splits.kuake_split(resolved).train),
        "chip": lambda: _pair_texts(splits.chip_split(resolved).train),
        "toyhom": lambda: list(dict.fromkeys(r.question for r in splits.toyhom_split(resolved).train)),
        "medquad": lambda: list(dict.fromkeys(r.question for r in splits.medquad_split(resolved).train)),
        "icd": lambda: list(dict.fromkeys(name for _, _, name in splits.icd_train_names(resolved))),
        "documents": lambda: _document_heads(resolved, STAGE1_DOCUMENT_CORPORA, documents, document_chars, seed),
        # cMedIR titles are what cMedIR queries are scored against: aligning the student on them (with the LLM's
        # query prompt, as for every stage-I text) lifts cMedIR after stage II (prebuilt_index/reports/probe-stage1-lt).
        "titles": lambda: _document_heads(resolved, ("cmedir-titles",), titles, document_chars, seed),
    }
    return {source: loaders[source]() for source in STAGE1_SOURCES if source in sources}


def stage1_data(
    data_dir: Path | str | None = None,
    *,
    max_per_source: int | None = 20000,
    documents: int = 5000,
    document_chars: int = 96,
    seed: int = 0,
    extra_texts: Sequence[str] = (),
    sources: Sequence[str] = STAGE1_SOURCES,
    source_caps: Mapping[str, int | None] | None = None,
    titles: int = 0,
) -> Stage1Data:
    """The stage-I texts: ``documents`` heads of the cmed-zh and medquad-en documents and ``titles`` heads of the cMedIR
    titles (both uncapped by ``max_per_source``) among the other sources' capped texts. ``extra_texts`` (a user's
    own unlabeled queries) are added uncapped, as source "extra"."""
    if source_caps:
        check_sources(list(source_caps), STAGE1_SOURCES, "stage-I")
        sampled = [s for s in source_caps if s in STAGE1_SAMPLED_SOURCES]
        if sampled:
            raise DataError(f"stage-I source {sampled[0]!r} takes no cap: its count is --{sampled[0]}")
    by_source = stage1_source_texts(data_dir, documents, document_chars, seed, sources, titles)
    texts: dict[str, str] = {}
    for source, candidates in by_source.items():
        cap = None if source in STAGE1_SAMPLED_SOURCES else _cap_of(source, max_per_source, source_caps)
        for text in capped(candidates, cap, seed, key=lambda t: t):
            if text.strip():
                texts.setdefault(text, source)
    for text in extra_texts:
        if text.strip():
            texts.setdefault(text, "extra")
    splits.assert_not_eval(texts, data_dir, what="stage-I training texts")
    return Stage1Data(texts=list(texts), sources=list(texts.values()))


def unlabeled_queries(
    data_dir: Path | str | None, caps: Mapping[str, int | None], seed: int = 0
) -> dict[str, list[str]]:
    """Stage I's query-like training texts of each source in ``caps`` (no documents), capped as stage I caps them
    (None = all), so that the same cap and seed pick texts whose teacher vectors stage I has already cached."""
    check_sources(list(caps), [s for s in STAGE1_SOURCES if s not in STAGE1_SAMPLED_SOURCES], "LLM-labelled")
    by_source = stage1_source_texts(data_dir, 0, 1, seed, list(caps))
    return {source: [t for t in capped(texts, caps[source], seed, key=lambda t: t) if t.strip()]
            for source, texts in by_source.items()}


# ------------------------------------------------------------------------------------------------ stage II


@dataclass(frozen=True)
class Pair:
    query: str
    document: str  # the positive's text, exactly as its collection embeds it
    source: str


@dataclass(frozen=True)
class Stage2Data:
    pairs: list[Pair]
    documents: list[str]  # every positive document, then the extra negative-pool documents; no repeats
    positive_rows: list[int]  # pairs[i].document == documents[positive_rows[i]]
    positives_of: Mapping[str, frozenset[int]]  # query -> every document row that is a positive of it

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = defaultdict(int)
        for pair in self.pairs:
            out[pair.source] += 1
        return dict(out)

    @property
    def queries(self) -> list[str]:
        return list(dict.fromkeys(p.query for p in self.pairs))


def _both_ways(pairs: Iterable[SentencePair], label: str, source: str) -> list[Pair]:
    out = []
    for p in pairs:
        if p.label == label and p.text1 != p.text2:
            out += [Pair(p.text1, p.text2, source), Pair(p.text2, p.text1, source)]
    return out


def _cmedir_pairs(data_dir: Path) -> list[Pair]:
    return [
        Pair(query, title, "cmedir")
        for query, titles in splits.cmedir_split(data_dir).train.items()
        for title, label in titles.items()
        if label >= splits.CMEDIR_RELEVANT_LABEL
    ]


def _icd_pairs(data_dir: Path) -> list[Pair]:
    documents = {d.id: d.text for d in load_corpus("icd10", data_dir)}
    return [
        Pair(name, documents[code], "icd")
        for code, lang, name in splits.icd_train_names(data_dir)
        if lang in STAGE2_ICD_LANGS and code in documents
    ]


def stage2_source_pairs(data_dir: Path | str | None, sources: Sequence[str] = STAGE2_SOURCES) -> dict[str, list[Pair]]:
    """Every candidate pair of stage II for each of ``sources``, before capping."""
    check_sources(sources, STAGE2_SOURCES, "stage-II")
    resolved = resolve_data_dir(data_dir)
    loaders: dict[str, Callable[[], list[Pair]]] = {
        "cmedir": lambda: _cmedir_pairs(resolved),
        "kuake": lambda: _both_ways(splits.kuake_split(resolved).train, "2", "kuake"),
        "chip": lambda: _both_ways(splits.chip_split(resolved).train, "1", "chip"),
        "toyhom": lambda: [Pair(r.question, r.answer, "toyhom") for r in splits.toyhom_split(resolved).train],
        # The answer is the medquad-en document's text as is (medquad_documents), so its teacher vector is
        # the one a MedQuAD collection holds. Held-out groups share no answer with train rows (tools.data.splits).
        "medquad": lambda: [Pair(r.question, r.answer, "medquad") for r in splits.medquad_split(resolved).train],
        "icd": lambda: _icd_pairs(resolved),
    }
    return {source: loaders[source]() for source in STAGE2_SOURCES if source in sources}


def negative_pool_documents(
    data_dir: Path | str | None, corpus_names: Sequence[str], max_documents: int | None, seed: int
) -> list[str]:
    """Documents of the named corpora (as ``tools.build.index`` embeds them) that hard negatives may come from."""
    unknown = [n for n in corpus_names if n not in CORPORA]
    if unknown:
        raise DataError(
            f"unknown corpus {unknown[0]!r} for negatives: expected some of {', '.join(CORPORA)}"
        )
    texts: list[str] = []
    for name in corpus_names:
        texts += [d.text for d in load_corpus(name, data_dir)]
    return capped(list(dict.fromkeys(texts)), max_documents, seed, key=lambda t: t)


def stage2_data(
    data_dir: Path | str | None = None,
    *,
    max_per_source: int | None = 20000,
    negative_corpora: Sequence[str] = NEGATIVE_CORPORA,
    max_negative_documents: int | None = None,
    seed: int = 0,
    sources: Sequence[str] = STAGE2_SOURCES,
    source_caps: Mapping[str, int | None] | None = None,
    extra_pairs: Sequence[Pair] = (),
) -> Stage2Data:
    """The stage-II pairs and the document pool (positives first, then the negative corpora's documents).
    ``extra_pairs`` (LLM-labelled ones, see ``tools.train.llm_labels``) join uncapped after the labelled sources."""
    if source_caps:
        check_sources(list(source_caps), STAGE2_SOURCES, "stage-II")
    by_source = stage2_source_pairs(data_dir, sources)
    pairs: list[Pair] = []
    seen: set[tuple[str, str]] = set()
    capped_pairs = [
        pair
        for source, candidates in by_source.items()
        for pair in capped(candidates, _cap_of(source, max_per_source, source_caps), seed,
                           key=lambda p: f"{p.query}\x1f{p.document}")
    ]
    for pair in capped_pairs + list(extra_pairs):
        if pair.query.strip() and pair.document.strip() and (pair.query, pair.document) not in seen:
            seen.add((pair.query, pair.document))
            pairs.append(pair)
    splits.assert_not_eval([p.query for p in pairs], data_dir, what="stage-II training queries")
    splits.assert_not_eval([p.document for p in pairs], data_dir, what="stage-II positive documents")

    row_of: dict[str, int] = {}
    for text in [p.document for p in pairs] + negative_pool_documents(
        data_dir, negative_corpora, max_negative_documents, seed
    ):
        row_of.setdefault(text, len(row_of))
    positives: dict[str, set[int]] = defaultdict(set)
    for pair in pairs:
        positives[pair.query].add(row_of[pair.document])
    return Stage2Data(
        pairs=pairs,
        documents=list(row_of),
        positive_rows=[row_of[p.document] for p in pairs],
        positives_of={q: frozenset(rows) for q, rows in positives.items()},
    )
