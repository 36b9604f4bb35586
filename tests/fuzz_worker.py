"""The child process of the artifact fuzz test (tests/test_fuzz_artifacts.py): applies one corruption at a time to a
prebuilt directory, runs ``care-edge`` in this process, restores the file, and reports each case as a JSON line.

``python tests/fuzz_worker.py PLAN.json``. The plan: ``{"prebuilt": dir, "argv": [...], "cases": [{"file": path
relative to prebuilt, "offset": int, "xor": [ints]}], "start": first case, "resign": bool}``; with ``resign`` the
manifest next to the corrupted file is rewritten to list its new size and sha256 for the duration of the case. Output, flushed line by line:
``{"begin": i}`` before case i and ``{"case": i, "code": exit code, "out": stdout, "err": stderr}`` after it (case -1
is the untouched baseline). A case that kills the process (a signal) ends the output after its ``begin`` line: the
parent records it and starts a new worker after it.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import io
import json
import os
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from edge import cli  # noqa: E402


def _run(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(argv)
    gc.collect()  # closes the doc store connections and index maps of this run before the next case
    return code, out.getvalue(), err.getvalue()


def _xor_in_place(path: Path, offset: int, pattern: bytes) -> bytes:
    """XOR ``pattern`` into ``path`` at ``offset`` (same size); returns the bytes it replaced."""
    with open(path, "r+b") as handle:
        handle.seek(offset)
        original = handle.read(len(pattern))
        handle.seek(offset)
        handle.write(bytes(a ^ b for a, b in zip(original, pattern)))
    return original


def _restore(path: Path, offset: int, original: bytes) -> None:
    with open(path, "r+b") as handle:
        handle.seek(offset)
        handle.write(original)


def _resign(manifest: Path, path: Path) -> None:
    """Make the manifest vouch for the corrupted file: a crafted artifact, which only structural checks can stop."""
    data = json.loads(manifest.read_text(encoding="utf-8"))
    data["files"][path.name] = {"size": path.stat().st_size, "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
    manifest.write_text(json.dumps(data), encoding="utf-8")


def _emit(record: dict) -> None:
    sys.__stdout__.write(json.dumps(record) + "\n")
    sys.__stdout__.flush()


def main() -> int:
    plan = json.loads(Path(sys.argv[1]).read_text(encoding="utf-8"))
    prebuilt = Path(plan["prebuilt"])
    os.environ["CARE_EDGE_INDEX_DIR"] = str(prebuilt)
    argv = list(plan["argv"])
    if plan.get("start", 0) == 0:
        _emit({"begin": -1})
        code, out, err = _run(argv)
        _emit({"case": -1, "code": code, "out": out, "err": err})
    for number in range(plan.get("start", 0), len(plan["cases"])):
        case = plan["cases"][number]
        path = prebuilt / case["file"]
        _emit({"begin": number})
        original = _xor_in_place(path, case["offset"], bytes(case["xor"]))
        manifest = path.parent / "manifest.json"
        signed = manifest.read_bytes() if plan.get("resign") else None
        try:
            if signed is not None:
                _resign(manifest, path)
            code, out, err = _run(argv)
        finally:
            _restore(path, case["offset"], original)
            if signed is not None:
                manifest.write_bytes(signed)
        _emit({"case": number, "code": code, "out": out, "err": err})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
