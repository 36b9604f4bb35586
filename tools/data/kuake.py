"""KUAKE-QQR query pairs (graded intent match), train and dev."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from tools.data.records import DataError, SentencePair, clean_text, data_file, resolve_data_dir

KUAKE_SPLITS = ("train", "dev")


@lru_cache(maxsize=8)
def _kuake_pairs(data_dir: Path, split: str) -> tuple[SentencePair, ...]:
    path = data_file(data_dir, f"zh/kuake_qqr/{split}.json")
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
