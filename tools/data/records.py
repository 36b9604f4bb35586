"""What every dataset parser shares: the data directory, text cleaning, the corpus record (``Document``, JSONL),
stable ids and the sentence-pair record.

Document ids are ``<source>:<first 12 hex of sha256(text)>``: independent of file order and of which other
documents exist, so an id survives a data update; uniqueness is checked when a corpus is built.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from edge.errors import BadInput

REPO_ROOT = Path(__file__).resolve().parents[2]
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


def data_file(data_dir: Path | str | None, relative: str) -> Path:
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



@dataclass(frozen=True)
class SentencePair:
    text1: str
    text2: str
    label: str
    category: str = ""
