"""Build provenance for manifests and reports: the ``created`` block (tool, command line, git revision, UTC time,
package versions). It runs git, so it lives with the offline tools; the runtime's writers take the block from
their caller and never compute it.
"""

from __future__ import annotations

import datetime as _dt
import importlib.metadata
import platform
import subprocess
from pathlib import Path
from typing import Any, Sequence

# Whose numerics can move a measured figure between two machines (INT8 kernels, tokenization, HNSW, GGUF); recorded
# so that a drift between a report and its rerun can be told from a code change.
RECORDED_PACKAGES = ("numpy", "onnxruntime", "tokenizers", "usearch", "llama_cpp_python", "torch")


def package_versions(names: Sequence[str] = RECORDED_PACKAGES) -> dict[str, str]:
    """Installed versions of ``names`` (distribution names), read from package metadata without importing them;
    absent ones are left out."""
    found: dict[str, str] = {"python": platform.python_version()}
    for name in names:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return found


def created_info(tool: str, command: str | None = None) -> dict[str, Any]:
    """The ``created`` block: tool, command line, git revision of the repo (or "unknown"), UTC timestamp, and the
    versions of the packages that shape the numbers."""
    try:
        revision = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        revision = ""
    return {
        "tool": tool,
        "command": command or "",
        "git_revision": revision or "unknown",
        "created_at": _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
        "versions": package_versions(),
    }
