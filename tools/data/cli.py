"""Write a corpus as JSONL.

    python -m tools.data NAME --out FILE.jsonl [--data-dir DIR] [--langs en,zh] [--no-code]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from edge.errors import BadInput
from tools.data.icd10 import DEFAULT_ICD_LANGS, ICD_LANGS
from tools.data.records import DEFAULT_DATA_DIR, write_jsonl
from tools.data.registry import CORPORA, load_corpus


def _parse_langs(value: str) -> tuple[str, ...]:
    langs = tuple(part.strip() for part in value.split(",") if part.strip())
    unknown = [lang for lang in langs if lang not in ICD_LANGS]
    if not langs or unknown:
        raise argparse.ArgumentTypeError(f"expected a comma-separated subset of {','.join(ICD_LANGS)}, got {value!r}")
    return langs


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.data", description="Write a corpus as JSONL.")
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
