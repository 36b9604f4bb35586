"""The files under the folders a user names: supported types only, symlinks followed once, loops cut.

Hidden files and folders (a leading dot: .git, editor swap files, the index's own work folder) are left out.
A folder that cannot be listed is reported, not fatal.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Sequence

from edge.errors import BadInput
from edge.index.extract import SUPPORTED_SUFFIXES


@dataclass
class WalkResult:
    files: list[str] = field(default_factory=list)  # absolute paths, sorted, unique
    unreadable: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    ignored: dict[str, int] = field(default_factory=dict)  # unsupported suffix -> count


def walk_folders(folders: Sequence[str | os.PathLike[str]]) -> WalkResult:
    result = WalkResult()
    seen_dirs: set[tuple[int, int]] = set()
    seen_files: set[str] = set()

    def add_file(path: str) -> None:
        suffix = os.path.splitext(path)[1].lower()
        if suffix not in SUPPORTED_SUFFIXES:
            result.ignored[suffix or "(none)"] = result.ignored.get(suffix or "(none)", 0) + 1
            return
        if path not in seen_files:
            seen_files.add(path)
            result.files.append(path)

    for folder in folders:
        root = os.path.abspath(os.path.expanduser(os.fspath(folder)))
        if os.path.isfile(root):
            add_file(root)
            continue
        if not os.path.isdir(root):
            raise BadInput(f"{folder} is not a folder or file")

        def on_error(error: OSError) -> None:
            result.unreadable.append((str(error.filename), f"unreadable folder ({error.strerror})"))

        for directory, dirs, files in os.walk(root, onerror=on_error, followlinks=True):
            try:
                info = os.stat(directory)
            except OSError as exc:
                result.unreadable.append((directory, f"unreadable folder ({exc.strerror})"))
                dirs[:] = []
                continue
            key = (info.st_dev, info.st_ino)
            if key in seen_dirs:  # a symlink loop, or a folder reached twice: walk it once
                dirs[:] = []
                continue
            seen_dirs.add(key)
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in sorted(files):
                if name.startswith("."):
                    continue
                path = os.path.join(directory, name)
                if os.path.islink(path) and not os.path.exists(path):
                    result.unreadable.append((path, "broken symlink"))
                    continue
                add_file(path)
    result.files.sort()
    return result
