"""Print one sha256 over everything the binary is built from: ``edge/``, ``packaging/``, ``prebuilt_index/`` and
``pyproject.toml`` (paths and contents; caches skipped). ``make package`` records it beside the binary and
``make package-smoke`` rebuilds when it differs, so a stale ``dist/care-edge`` is never the one tested.

    python packaging/sources_digest.py            # the digest of this checkout
    python packaging/sources_digest.py --check F  # exit 0 when F holds that digest, 1 otherwise
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path
from typing import Iterator, Sequence

REPO_ROOT = Path(__file__).resolve().parent.parent
SOURCES = ("edge", "packaging", "prebuilt_index", "pyproject.toml")
SKIPPED_PARTS = frozenset({"__pycache__", ".pytest_cache"})
SKIPPED_SUFFIXES = (".pyc", ".tmp")
CHUNK = 1 << 20


def source_files(root: Path = REPO_ROOT) -> Iterator[Path]:
    for name in SOURCES:
        path = root / name
        candidates = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
        for file in candidates:
            relative = file.relative_to(root)
            if SKIPPED_PARTS.isdisjoint(relative.parts) and not file.name.endswith(SKIPPED_SUFFIXES):
                yield file


def sources_digest(root: Path = REPO_ROOT) -> str:
    digest = hashlib.sha256()
    for file in source_files(root):
        digest.update(file.relative_to(root).as_posix().encode("utf-8") + b"\0")
        with open(file, "rb") as handle:
            while chunk := handle.read(CHUNK):
                digest.update(chunk)
        digest.update(b"\0")
    return digest.hexdigest()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python packaging/sources_digest.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", type=Path, help="a recorded digest file to compare with")
    args = parser.parse_args(argv)
    current = sources_digest()
    if args.check is None:
        print(current)
        return 0
    try:
        recorded = args.check.read_text(encoding="utf-8").strip()
    except OSError:
        return 1
    return 0 if recorded == current else 1


if __name__ == "__main__":
    sys.exit(main())
