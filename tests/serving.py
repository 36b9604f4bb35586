"""Starting ``care-edge serve`` as a separate process for the tests that talk to it over HTTP."""

from __future__ import annotations

import contextlib
import re
import subprocess
from pathlib import Path
from typing import Iterator, Mapping, Sequence

import pytest


@contextlib.contextmanager
def serve_process(command: Sequence[str], *, env: Mapping[str, str], what: str,
                  cwd: Path | None = None) -> Iterator[str]:
    """Run ``command serve --port 0`` and yield the URL it prints on its first line; on leaving, stop it and check
    that it printed no traceback. ``what`` names the server in the failure message."""
    process = subprocess.Popen([*command, "serve", "--port", "0"], cwd=cwd, text=True, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, env=dict(env))
    line = process.stdout.readline() if process.stdout else ""
    match = re.search(r"http://127\.0\.0\.1:\d+/", line)
    if not match:
        process.terminate()
        pytest.fail(f"{what} did not start: {line!r} {process.communicate(timeout=30)[1]!r}")
    yield match.group(0)
    process.terminate()
    _, stderr = process.communicate(timeout=30)
    assert "Traceback" not in stderr, stderr
