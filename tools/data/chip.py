"""CHIP-2019 question pairs (same intent or not)."""

from __future__ import annotations

import csv
from functools import lru_cache
from pathlib import Path

from tools.data.records import DataError, SentencePair, clean_text, data_file, resolve_data_dir


@lru_cache(maxsize=4)
def _chip_pairs(data_dir: Path) -> tuple[SentencePair, ...]:
    path = data_file(data_dir, "zh/chip2019_qpair/train.csv")
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
