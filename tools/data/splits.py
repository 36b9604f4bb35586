"""Every train/eval split of the project, defined here and nowhere else.

    python -m tools.data.splits [--data-dir DIR]     # print the size of every split

Membership is decided by hashing a stable key with a fixed seed (``sha256(SEED + key) mod 100 < 10`` -> held out),
never by random order, so a split does not move when rows are reordered or other rows are added. Wherever two rows
share a text (the same question with two answers, the same sentence in two pairs), they are grouped first and the
group is held out as a whole, so no text sits on both sides of a dataset's split.

- cMedIR: eval = distinct test queries that do not occur in dev and have a label >= 2 (2,182); train = dev queries
  that do not occur in test. Repeated lines are merged; a (query, title) judged differently on different lines
  keeps the highest label (see ``tools.data.cmedir.cmedir_judgements``).
- Toyhom: 10% of the question/answer groups (keyed by the answer id) held out.
- CHIP-2019: 10% of the groups of pairs connected by a shared question held out.
- KUAKE-QQR: eval = dev without its one "NA" row; train = train.
- ICD-10: 10% of the four-character codes held out: their names (every language, aliases too) are eval queries.
- MedQuAD: 10% of the question/answer groups (keyed by the smallest answer id) held out.
- LiveQA-Med: eval only.

Training data must not contain any eval text, of any dataset: :func:`eval_texts` collects them (normalised by
:func:`normalize_text`), every ``train`` side below is already filtered against it, and :func:`assert_not_eval`
is the check the trainer runs on whatever it finally feeds the model.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable, Hashable, Iterable, Mapping, Sequence, TypeVar

from edge.errors import BadInput
from tools.data.chip import chip_pairs
from tools.data.cmedir import cmedir_judgements
from tools.data.icd10 import IcdEntry, icd_entries
from tools.data.kuake import kuake_pairs
from tools.data.liveqa import LiveqaQuestion, liveqa_judgements, liveqa_questions
from tools.data.medquad import MedquadRow, medquad_rows
from tools.data.records import SentencePair, resolve_data_dir
from tools.data.registry import clear_caches as clear_corpus_caches
from tools.data.toyhom import TOYHOM_EMPTY_ASKS, ToyhomRow, toyhom_rows

SEED = "care-edge/splits/v1"
HELD_OUT_PERCENT = 10
CMEDIR_RELEVANT_LABEL = 2

T = TypeVar("T")


# ------------------------------------------------------------------------------------------------ primitives


def bucket(key: str, seed: str = SEED) -> int:
    """0..99 from sha256(seed + key): the same key always lands in the same bucket."""
    digest = hashlib.sha256(f"{seed}\x1f{key}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % 100


def is_held_out(key: str, percent: int = HELD_OUT_PERCENT, seed: str = SEED) -> bool:
    return bucket(key, seed) < percent


def normalize_text(text: str) -> str:
    """The form texts are compared in: NFKC (full-width -> ASCII), case-folded, whitespace collapsed."""
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def group_keys(items: Sequence[T], nodes: Callable[[T], Iterable[Hashable]], key: Callable[[T], str]) -> list[str]:
    """For each item, the key of its group: items sharing any node (a text, an answer id) are in one group, and a
    group's key is the smallest ``key(item)`` of its members, so it does not depend on item order."""
    parent: dict[Hashable, Hashable] = {}

    def find(node: Hashable) -> Hashable:
        root = node
        while parent.setdefault(root, root) != root:
            root = parent[root]
        while parent[node] != root:  # path compression
            parent[node], node = root, parent[node]
        return root

    item_nodes = []
    for index, item in enumerate(items):
        mine = [("item", index)] + [("node", n) for n in nodes(item)]
        item_nodes.append(mine[0])
        for node in mine[1:]:
            a, b = find(mine[0]), find(node)
            if a != b:
                parent[a] = b
    smallest: dict[Hashable, str] = {}
    for item, node in zip(items, item_nodes):
        root = find(node)
        k = key(item)
        if root not in smallest or k < smallest[root]:
            smallest[root] = k
    return [smallest[find(node)] for node in item_nodes]


def _hold_out_groups(
    items: Sequence[T], nodes: Callable[[T], Iterable[Hashable]], key: Callable[[T], str]
) -> tuple[tuple[T, ...], tuple[T, ...]]:
    """(kept, held out) by hashing each item's group key."""
    keys = group_keys(items, nodes, key)
    kept = tuple(item for item, k in zip(items, keys) if not is_held_out(k))
    held = tuple(item for item, k in zip(items, keys) if is_held_out(k))
    return kept, held


def _unique(items: Iterable[T]) -> tuple[T, ...]:
    return tuple(dict.fromkeys(items))


# ------------------------------------------------------------------------------------------------ cMedIR

Judgements = Mapping[str, Mapping[str, int]]  # query -> {title: label}


@dataclass(frozen=True)
class CmedirSplit:
    train: Judgements
    eval: Judgements


@lru_cache(maxsize=4)
def _cmedir_eval(data_dir: Path) -> Judgements:
    dev, test = cmedir_judgements("dev", data_dir), cmedir_judgements("test", data_dir)
    dev_queries = {normalize_text(q) for q in dev}
    return {
        query: titles
        for query, titles in sorted(test.items())
        if normalize_text(query) not in dev_queries and max(titles.values()) >= CMEDIR_RELEVANT_LABEL
    }


@lru_cache(maxsize=4)
def _cmedir_split(data_dir: Path) -> CmedirSplit:
    dev, test = cmedir_judgements("dev", data_dir), cmedir_judgements("test", data_dir)
    test_queries = {normalize_text(q) for q in test}
    held = eval_texts(data_dir)
    train: dict[str, Mapping[str, int]] = {}
    for query, titles in sorted(dev.items()):
        if normalize_text(query) in test_queries or normalize_text(query) in held:
            continue
        kept = {title: label for title, label in titles.items() if normalize_text(title) not in held}
        if kept:
            train[query] = kept
    return CmedirSplit(train=train, eval=_cmedir_eval(data_dir))


def cmedir_split(data_dir: Path | str | None = None) -> CmedirSplit:
    """eval: the 2,182 test queries absent from dev with a label >= 2, all their judged titles (labels 0..4);
    train: dev queries absent from test (and from every eval set), their judged titles. Do not mutate (cached)."""
    return _cmedir_split(resolve_data_dir(data_dir))


# ------------------------------------------------------------------------------------------------ Toyhom


@dataclass(frozen=True)
class ToyhomSplit:
    train: tuple[ToyhomRow, ...]
    eval: tuple[ToyhomRow, ...]


def _toyhom_texts(row: ToyhomRow) -> list[str]:
    """The patient-side texts of a row that could be used as a query: question, title and (real) description."""
    texts = [row.question, row.title]
    if row.ask not in TOYHOM_EMPTY_ASKS:
        texts.append(row.ask)
    return texts


@lru_cache(maxsize=4)
def _toyhom_parts(data_dir: Path) -> tuple[tuple[ToyhomRow, ...], tuple[ToyhomRow, ...]]:
    rows = [row for row in _unique(toyhom_rows(data_dir)) if row.answer and row.title]
    return _hold_out_groups(
        rows,
        nodes=lambda r: [("a", r.answer_id)] + [("t", normalize_text(t)) for t in _toyhom_texts(r)],
        key=lambda r: r.answer_id,
    )


@lru_cache(maxsize=4)
def _toyhom_split(data_dir: Path) -> ToyhomSplit:
    kept, held_rows = _toyhom_parts(data_dir)
    held = eval_texts(data_dir)
    train = tuple(r for r in kept if not any(normalize_text(t) in held for t in _toyhom_texts(r)))
    return ToyhomSplit(train=train, eval=held_rows)


def toyhom_split(data_dir: Path | str | None = None) -> ToyhomSplit:
    """Distinct Toyhom rows; ~10% of question/answer groups held out (grouped by answer, title and description)."""
    return _toyhom_split(resolve_data_dir(data_dir))


# ------------------------------------------------------------------------------------------------ sentence pairs


@dataclass(frozen=True)
class PairSplit:
    train: tuple[SentencePair, ...]
    eval: tuple[SentencePair, ...]


def _pair_texts(pair: SentencePair) -> tuple[str, str]:
    return pair.text1, pair.text2


def _drop_eval_pairs(pairs: Iterable[SentencePair], held: frozenset[str]) -> tuple[SentencePair, ...]:
    return tuple(p for p in pairs if normalize_text(p.text1) not in held and normalize_text(p.text2) not in held)


@lru_cache(maxsize=4)
def _chip_parts(data_dir: Path) -> tuple[tuple[SentencePair, ...], tuple[SentencePair, ...]]:
    pairs = list(_unique(chip_pairs(data_dir)))
    return _hold_out_groups(
        pairs,
        nodes=lambda p: [normalize_text(t) for t in _pair_texts(p)],
        key=lambda p: "\x1f".join(sorted(normalize_text(t) for t in _pair_texts(p))),
    )


@lru_cache(maxsize=4)
def _chip_split(data_dir: Path) -> PairSplit:
    kept, held_pairs = _chip_parts(data_dir)
    return PairSplit(train=_drop_eval_pairs(kept, eval_texts(data_dir)), eval=held_pairs)


def chip_split(data_dir: Path | str | None = None) -> PairSplit:
    """CHIP-2019 pairs; ~10% of the groups of pairs linked by a shared question held out (labels "0"/"1")."""
    return _chip_split(resolve_data_dir(data_dir))


def _kuake_eval(data_dir: Path) -> tuple[SentencePair, ...]:
    return tuple(p for p in kuake_pairs("dev", data_dir) if p.label in ("0", "1", "2"))


@lru_cache(maxsize=4)
def _kuake_split(data_dir: Path) -> PairSplit:
    train = _drop_eval_pairs(kuake_pairs("train", data_dir), eval_texts(data_dir))
    return PairSplit(train=train, eval=_kuake_eval(data_dir))


def kuake_split(data_dir: Path | str | None = None) -> PairSplit:
    """KUAKE-QQR: eval = dev minus the "NA" row (labels "0"/"1"/"2"); train = train minus pairs touching eval texts."""
    return _kuake_split(resolve_data_dir(data_dir))


# ------------------------------------------------------------------------------------------------ ICD-10


@dataclass(frozen=True)
class IcdSplit:
    train: tuple[IcdEntry, ...]
    eval: tuple[IcdEntry, ...]


def icd_entry_texts(entry: IcdEntry) -> list[str]:
    """Every name of a code: each language's name and its aliases."""
    texts = list(entry.names.values())
    for aliases in entry.aliases.values():
        texts.extend(aliases)
    return texts


def _icd_held_out(entry: IcdEntry) -> bool:
    # Only subcategories are held out: a held-out "E11" would take its whole family's anchor with it.
    return entry.level == 4 and is_held_out(entry.code)


@lru_cache(maxsize=4)
def _icd_split(data_dir: Path) -> IcdSplit:
    entries = icd_entries(data_dir)
    return IcdSplit(
        train=tuple(e for e in entries if not _icd_held_out(e)), eval=tuple(e for e in entries if _icd_held_out(e))
    )


def icd_split(data_dir: Path | str | None = None) -> IcdSplit:
    """ICD-10 codes: eval = ~10% of the four-character codes (by hash of the code); train = every other code. A train
    code's names may still equal an eval text ("Other" wordings): use :func:`icd_train_names` for training text."""
    return _icd_split(resolve_data_dir(data_dir))


def icd_train_names(data_dir: Path | str | None = None) -> list[tuple[str, str, str]]:
    """(code, language, name) for every name and alias of the train codes, minus names that are eval texts."""
    resolved = resolve_data_dir(data_dir)
    held = eval_texts(resolved)
    out: list[tuple[str, str, str]] = []
    for entry in icd_split(resolved).train:
        for lang, name in entry.names.items():
            for text in (name, *entry.aliases.get(lang, ())):
                if normalize_text(text) not in held:
                    out.append((entry.code, lang, text))
    return out


# ------------------------------------------------------------------------------------------------ MedQuAD


@dataclass(frozen=True)
class MedquadSplit:
    train: tuple[MedquadRow, ...]
    eval: tuple[MedquadRow, ...]


@lru_cache(maxsize=4)
def _medquad_parts(data_dir: Path) -> tuple[tuple[MedquadRow, ...], tuple[MedquadRow, ...]]:
    rows = list(medquad_rows(data_dir))
    return _hold_out_groups(
        rows, nodes=lambda r: [("a", r.answer_id), ("q", normalize_text(r.question))], key=lambda r: r.answer_id
    )


@lru_cache(maxsize=4)
def _medquad_split(data_dir: Path) -> MedquadSplit:
    kept, held_rows = _medquad_parts(data_dir)
    held = eval_texts(data_dir)
    return MedquadSplit(train=tuple(r for r in kept if normalize_text(r.question) not in held), eval=held_rows)


def medquad_split(data_dir: Path | str | None = None) -> MedquadSplit:
    """MedQuAD rows; ~10% of the groups of rows linked by a shared question or answer held out."""
    return _medquad_split(resolve_data_dir(data_dir))


# ------------------------------------------------------------------------------------------------ LiveQA


def liveqa_eval_questions(data_dir: Path | str | None = None) -> tuple[LiveqaQuestion, ...]:
    """The LiveQA-Med questions that have judged answers (103); eval only, never trained on."""
    judged = liveqa_judgements(data_dir)
    return tuple(q for q in liveqa_questions(data_dir) if q.qid in judged)


def _liveqa_texts(question: LiveqaQuestion) -> list[str]:
    return [t for t in (question.text, question.message, question.paraphrase, question.summary) if t]


# ------------------------------------------------------------------------------------------------ eval texts


class EvalLeakError(ValueError):
    """Training data contains a text that some evaluation uses as a query or sentence."""


@lru_cache(maxsize=4)
def _eval_texts(data_dir: Path) -> frozenset[str]:
    texts: list[str] = list(_cmedir_eval(data_dir))
    for row in _toyhom_parts(data_dir)[1]:
        texts.extend(_toyhom_texts(row))
    for pair in _chip_parts(data_dir)[1]:
        texts.extend(_pair_texts(pair))
    # All of KUAKE dev, the dropped "NA" row included: it is the benchmark's dev set either way.
    for pair in kuake_pairs("dev", data_dir):
        texts.extend(_pair_texts(pair))
    for entry in _icd_split(data_dir).eval:
        texts.extend(icd_entry_texts(entry))
    for row in _medquad_parts(data_dir)[1]:
        texts.append(row.question)
    for question in liveqa_eval_questions(data_dir):
        texts.extend(_liveqa_texts(question))
    return frozenset(normalize_text(t) for t in texts if t.strip())


def eval_texts(data_dir: Path | str | None = None) -> frozenset[str]:
    """Every text some evaluation task uses as a query, an STS/pair sentence, a classification test text or a
    clustering item, normalised with :func:`normalize_text`."""
    return _eval_texts(resolve_data_dir(data_dir))


def is_eval_text(text: str, data_dir: Path | str | None = None) -> bool:
    return normalize_text(text) in eval_texts(data_dir)


def assert_not_eval(texts: Iterable[str], data_dir: Path | str | None = None, what: str = "training texts") -> None:
    """Raise :class:`EvalLeakError` naming a few offenders if any of ``texts`` is an eval text."""
    held = eval_texts(data_dir)
    offending = list(dict.fromkeys(t for t in texts if normalize_text(t) in held))
    if offending:
        shown = "; ".join(repr(t[:60]) for t in offending[:5])
        raise EvalLeakError(f"{len(offending)} {what} are evaluation texts (held out by tools.data.splits), e.g. {shown}")


def clear_caches() -> None:
    """Forget every computed split and every parsed file."""
    for cached in (
        _cmedir_eval,
        _cmedir_split,
        _toyhom_parts,
        _toyhom_split,
        _chip_parts,
        _chip_split,
        _kuake_split,
        _icd_split,
        _medquad_parts,
        _medquad_split,
        _eval_texts,
    ):
        cached.cache_clear()
    clear_corpus_caches()


# ------------------------------------------------------------------------------------------------ summary


def split_counts(data_dir: Path | str | None = None) -> dict[str, int]:
    """The size of every split (queries, rows, pairs or codes), for reports and sanity checks."""
    resolved = resolve_data_dir(data_dir)
    cmedir, toyhom, chip = cmedir_split(resolved), toyhom_split(resolved), chip_split(resolved)
    kuake, icd, medquad = kuake_split(resolved), icd_split(resolved), medquad_split(resolved)
    return {
        "cmedir.train_queries": len(cmedir.train),
        "cmedir.eval_queries": len(cmedir.eval),
        "toyhom.train_rows": len(toyhom.train),
        "toyhom.eval_rows": len(toyhom.eval),
        "chip.train_pairs": len(chip.train),
        "chip.eval_pairs": len(chip.eval),
        "kuake.train_pairs": len(kuake.train),
        "kuake.eval_pairs": len(kuake.eval),
        "icd.train_codes": len(icd.train),
        "icd.eval_codes": len(icd.eval),
        "icd.train_names": len(icd_train_names(resolved)),
        "medquad.train_rows": len(medquad.train),
        "medquad.eval_rows": len(medquad.eval),
        "liveqa.eval_questions": len(liveqa_eval_questions(resolved)),
        "eval_texts": len(eval_texts(resolved)),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.data.splits", description="Print the size of every split.")
    parser.add_argument("--data-dir", type=Path, default=None, help="data folder (default ../shared/data)")
    args = parser.parse_args(argv)
    try:
        counts = split_counts(args.data_dir)
    except BadInput as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    width = max(len(name) for name in counts)
    for name, count in counts.items():
        print(f"{name:<{width}}  {count:>7,}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
