"""No byte pattern in any artifact crashes ``care-edge`` or changes its answer silently.

Random single bytes and ranges of every file of the tiny prebuilt directory (collection, query encoder, default.json)
are XOR-ed in place, one case at a time, and a hybrid search over several queries is run after each. Every case must
end in exit 0 with exactly the results of the untouched files, or exit 3 with one line on stderr: never a signal, a
hang, a traceback or exit 1. The cases run in one child process (tests/fuzz_worker.py) for speed; a case that kills
the child is recorded from the child's last ``begin`` line, and a new child goes on after it.

Fast tier: FAST_CASES seeded cases; ``-m slow``: SLOW_CASES more, from another seed.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from edge import formats as fmt
from edge.files import file_entry

REPO_ROOT = Path(__file__).resolve().parent.parent
WORKER = Path(__file__).resolve().parent / "fuzz_worker.py"
FAST_CASES = 300
SLOW_CASES = 3000
FAST_CRAFTED_CASES = 60
SLOW_CRAFTED_CASES = 1500
CASE_TIMEOUT_S = 30.0
QUERIES = ["fever cough", "头痛 发烧", "what is the dose for a child", "chest pain blood pressure"]


def artifact_files(prebuilt: Path, collection: str, encoder: str) -> list[str]:
    """Every file a search may read, relative to ``prebuilt``."""
    files = ["default.json"]
    for directory in (collection, encoder):
        files += sorted(f"{directory}/{path.name}" for path in (prebuilt / directory).iterdir() if path.is_file())
    return files


def make_cases(prebuilt: Path, files: list[str], count: int, seed: int) -> list[dict[str, Any]]:
    """``count`` corruptions spread evenly over ``files``: half single bytes, half ranges of 2 bytes to 64 KiB."""
    rng = random.Random(seed)
    cases = []
    for number in range(count):
        name = files[number % len(files)]
        size = (prebuilt / name).stat().st_size
        length = 1 if number % 2 == 0 else rng.randint(2, max(2, min(size, 1 << 16)))
        length = min(length, size)
        offset = rng.randrange(0, size - length + 1)
        pattern = [rng.randrange(1, 256)] + [rng.randrange(0, 256) for _ in range(length - 1)]
        rng.shuffle(pattern)  # at least one non-zero byte, anywhere in the range
        cases.append({"file": name, "offset": offset, "xor": pattern})
    return cases


def run_campaign(prebuilt: Path, argv: list[str], cases: list[dict[str, Any]], env: dict[str, str],
                 resign: bool = False) -> dict[int, dict]:
    """Outcome of every case (and of case -1, the baseline): ``{"code", "out", "err"}``, with ``code`` negative for a
    signal and None for a hang."""
    plan_path = prebuilt.parent / "fuzz-plan.json"
    outcomes: dict[int, dict] = {}
    start = 0
    while start < len(cases) or -1 not in outcomes:
        plan_path.write_text(json.dumps({"prebuilt": str(prebuilt), "argv": argv, "cases": cases, "start": start,
                                         "resign": resign}))
        process = subprocess.Popen([sys.executable, str(WORKER), str(plan_path)], stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, env=env, cwd=REPO_ROOT, text=True)
        begun: int | None = None
        try:
            stdout, stderr = process.communicate(timeout=CASE_TIMEOUT_S * max(1, len(cases) - start))
        except subprocess.TimeoutExpired:
            process.kill()
            stdout, stderr = process.communicate()
        for line in stdout.splitlines():
            record = json.loads(line)
            if "begin" in record:
                begun = record["begin"]
            else:
                outcomes[record["case"]] = record
                begun = None
        if begun is None:
            assert process.returncode == 0, f"fuzz worker failed outside any case: {stderr[-2000:]}"
            break
        # The child died (or hung) inside case `begun`: the file may still be corrupted, so restore it.
        code = process.returncode if process.returncode and process.returncode < 0 else None
        outcomes[begun] = {"case": begun, "code": code, "out": "", "err": stderr[-2000:]}
        if begun >= 0:
            _restore_case(prebuilt, cases[begun])
            if resign:  # the crashed case may have left its manifest vouching for the corrupted bytes
                _restore_manifest(prebuilt / cases[begun]["file"])
        start = begun + 1
    return outcomes


def _restore_case(prebuilt: Path, case: dict[str, Any]) -> None:
    path = prebuilt / case["file"]
    with open(path, "r+b") as handle:
        handle.seek(case["offset"])
        current = handle.read(len(case["xor"]))
        handle.seek(case["offset"])
        handle.write(bytes(a ^ b for a, b in zip(current, case["xor"])))


def _restore_manifest(path: Path) -> None:
    manifest = path.parent / fmt.MANIFEST_FILE
    data = json.loads(manifest.read_text(encoding="utf-8"))
    data["files"][path.name] = file_entry(path)
    manifest.write_text(json.dumps(data), encoding="utf-8")


def _results(stdout: str) -> list[Any]:
    """The answers of a --json search, without the timings."""
    return [{key: value for key, value in json.loads(line).items() if key != "timings_ms"}
            for line in stdout.splitlines() if line.strip()]


def _tuning_only_change(prebuilt: Path, case: dict[str, Any], original: bytes) -> bool:
    """A manifest flip that yields another valid manifest whose only change is index.expansion_search: a search
    setting a user may edit, which legitimately changes approximate results."""
    if not case["file"].endswith(fmt.MANIFEST_FILE):
        return False
    data = bytearray(original)
    for position, value in enumerate(case["xor"]):
        data[case["offset"] + position] ^= value
    try:
        before, after = json.loads(original), json.loads(bytes(data))
        before["index"].pop("expansion_search")
        after["index"].pop("expansion_search")
    except (ValueError, KeyError, TypeError, AttributeError):
        return False
    return before == after


def check_campaign(prebuilt: Path, cases: list[dict[str, Any]], outcomes: dict[int, dict]) -> list[str]:
    baseline = outcomes[-1]
    assert baseline["code"] == 0, baseline["err"]
    expected = _results(baseline["out"])
    originals = {name: (prebuilt / name).read_bytes() for name in {case["file"] for case in cases}}
    failures = []
    for number, case in enumerate(cases):
        outcome = outcomes.get(number)
        where = f"case {number}: {case['file']} offset {case['offset']} length {len(case['xor'])}"
        if outcome is None:
            failures.append(f"{where}: no outcome")
        elif outcome["code"] is None or outcome["code"] < 0:
            failures.append(f"{where}: killed by signal {outcome['code']} or hung: {outcome['err'][-300:]}")
        elif outcome["code"] == 0:
            if _results(outcome["out"]) != expected and not _tuning_only_change(prebuilt, case, originals[case["file"]]):
                failures.append(f"{where}: exit 0 with different results")
        elif outcome["code"] == 3:
            lines = [line for line in outcome["err"].splitlines() if line.strip()]
            if len(lines) != 1 or not lines[0].startswith("care-edge: error: ") or "Traceback" in outcome["err"]:
                failures.append(f"{where}: exit 3 without exactly one error line: {outcome['err'][-300:]!r}")
        else:
            failures.append(f"{where}: exit {outcome['code']}: {outcome['err'][-300:]!r}")
    return failures


def _campaign(tiny_copy, socket_guard_dir: Path, stamp_cache_dir: Path, count: int, seed: int) -> None:
    prebuilt = tiny_copy.prebuilt
    queries = prebuilt.parent / "queries.txt"
    queries.write_text("\n".join(QUERIES) + "\n", encoding="utf-8")
    argv = ["search", "--queries-file", str(queries), "--json", "-k", "5", "--mode", "hybrid"]
    files = artifact_files(prebuilt, tiny_copy.collection.name, tiny_copy.encoder.name)
    cases = make_cases(prebuilt, files, count, seed)
    env = {key: value for key, value in os.environ.items() if key != "CARE_EDGE_DEBUG"}
    env["PYTHONPATH"] = os.pathsep.join([str(socket_guard_dir), str(REPO_ROOT)])
    env["CARE_EDGE_CACHE_DIR"] = str(stamp_cache_dir)
    outcomes = run_campaign(prebuilt, argv, cases, env)
    failures = check_campaign(prebuilt, cases, outcomes)
    codes = [outcomes[number]["code"] for number in range(len(cases))]
    assert not failures, f"{len(failures)} of {len(cases)} cases failed:\n" + "\n".join(failures[:20])
    # The campaign must reach the files' contents, not only trip over the manifests.
    assert codes.count(3) > len(cases) // 2, codes


def test_random_corruption_never_crashes_or_lies(tiny_copy, socket_guard_dir, stamp_cache_dir) -> None:
    _campaign(tiny_copy, socket_guard_dir, stamp_cache_dir, FAST_CASES, seed=20261205)


@pytest.mark.slow
def test_random_corruption_never_crashes_or_lies_long(tiny_copy, socket_guard_dir, stamp_cache_dir) -> None:
    _campaign(tiny_copy, socket_guard_dir, stamp_cache_dir, SLOW_CASES, seed=7)


def _crafted_campaign(tiny_copy, socket_guard_dir: Path, count: int, seed: int) -> None:
    """Corrupt ``vectors.usearch`` and re-sign its manifest, so the sha256 check passes: usearch must still never
    crash, because the structural check (edge/usearch_file.py) refuses a graph that points outside itself. Exit 0
    may return other results here: the vectors themselves changed."""
    prebuilt = tiny_copy.prebuilt
    queries = prebuilt.parent / "queries.txt"
    queries.write_text("\n".join(QUERIES) + "\n", encoding="utf-8")
    argv = ["search", "--queries-file", str(queries), "--json", "-k", "5", "--mode", "dense"]
    cases = make_cases(prebuilt, [f"{tiny_copy.collection.name}/{fmt.VECTORS_FILE}"], count, seed)
    env = {key: value for key, value in os.environ.items() if key != "CARE_EDGE_DEBUG"}
    env["PYTHONPATH"] = os.pathsep.join([str(socket_guard_dir), str(REPO_ROOT)])
    outcomes = run_campaign(prebuilt, argv, cases, env, resign=True)
    failures = []
    for number, case in enumerate(cases):
        outcome = outcomes.get(number, {"code": None, "err": "no outcome"})
        lines = [line for line in outcome["err"].splitlines() if line.strip()]
        if outcome["code"] == 3 and len(lines) == 1 and lines[0].startswith("care-edge: error: "):
            continue
        if outcome["code"] == 0:
            continue
        failures.append(f"case {number}: offset {case['offset']} length {len(case['xor'])}: exit {outcome['code']}: "
                        f"{outcome['err'][-300:]!r}")
    assert not failures, f"{len(failures)} of {len(cases)} crafted cases failed:\n" + "\n".join(failures[:20])


def test_crafted_index_never_crashes(tiny_copy, socket_guard_dir) -> None:
    _crafted_campaign(tiny_copy, socket_guard_dir, FAST_CRAFTED_CASES, seed=11)


@pytest.mark.slow
def test_crafted_index_never_crashes_long(tiny_copy, socket_guard_dir) -> None:
    _crafted_campaign(tiny_copy, socket_guard_dir, SLOW_CRAFTED_CASES, seed=12)
