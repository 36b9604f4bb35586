"""cMedIR (ChineseBLUE): relevance judgements of dev and test, and the cleaned titles they point at."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Mapping

from tools.data.records import DataError, Document, data_file, resolve_data_dir, stable_id

CMEDIR_SPLITS = ("dev", "test")


def clean_cmedir_title(title: str) -> str:
    """Every cMedIR line appears twice; in the second copy the second title gained a leading ':'. Drop it."""
    return title[1:] if title.startswith(":") else title


@lru_cache(maxsize=8)
def _cmedir_judgements(data_dir: Path, split: str) -> tuple[Mapping[str, Mapping[str, int]], int]:
    path = data_file(data_dir, f"zh/cmedir/{split}.jsonl")
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


def cmedir_documents(data_dir: Path | str | None = None) -> list[Document]:
    """The 19,241 distinct cleaned cMedIR titles of dev and test."""
    return [Document(cmedir_doc_id(t), t, {"source": "cmedir"}) for t in cmedir_titles(data_dir)]
