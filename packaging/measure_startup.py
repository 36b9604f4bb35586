"""Start-up time of the care-edge binaries: ``python packaging/measure_startup.py [--runs 5] [--json]``.

Measures ``care-edge search QUERY --json -k 10`` from process start to its first line on stdout ("first result") and
to process exit, for the single file (``dist/care-edge``), the onedir build (``dist/care-edge-onedir/care-edge``)
and, as a baseline, ``python -m edge`` on the same index; each is measured when it exists. Medians of ``--runs``.
Every target runs with ``XDG_CACHE_HOME`` set to a scratch directory, so the user's own cache is never used or
touched.

- first (single file only, the one-time cost after installing or upgrading): an empty cache, a fresh ``TMPDIR`` and,
  when allowed (root, writable ``/proc/sys/vm/drop_caches``), the OS page cache dropped: the launcher unpacks its
  payload into the cache, then starts. A PyInstaller onefile (``build.py --pyinstaller-onefile``) pays this at
  every start, so for it "first" is what "cold" and "warm" measure too.
- cold: the cache already filled (by one untimed run), a fresh ``TMPDIR`` and the page cache dropped before each
  run, so the executable, its libraries and the index are read from disk again: a start after a reboot. The output
  says whether the cache was really dropped: without it "cold" only means a fresh ``TMPDIR``.
- warm: one untimed run first, then ``--runs`` runs one after another with everything in the page cache.

"CPU time" is the user + system time of the process and its children: on an idle machine it is close to the wall
time of a warm start; on a busy one (printed: the 1-minute load average) wall times grow and CPU time much less.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

PACKAGING_DIR = Path(__file__).resolve().parent
REPO_ROOT = PACKAGING_DIR.parent
sys.path.insert(0, str(PACKAGING_DIR))
from selfextract import read_layout  # noqa: E402
DROP_CACHES = Path("/proc/sys/vm/drop_caches")
DEFAULT_QUERY = "chest pain when breathing"
RUN_TIMEOUT_S = 120


@dataclass(frozen=True)
class Timing:
    first_result_s: float
    exit_s: float
    cpu_s: float  # user + system time of the process and its children: close to wall time on an idle machine


@dataclass(frozen=True)
class Series:
    target: str
    condition: str  # "first", "cold" or "warm"
    runs: list[Timing]
    page_cache_dropped: bool

    def median(self, field: str) -> float:
        return statistics.median(getattr(run, field) for run in self.runs)

    def to_json(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "condition": self.condition,
            "page_cache_dropped": self.page_cache_dropped,
            "median_first_result_s": round(self.median("first_result_s"), 3),
            "median_exit_s": round(self.median("exit_s"), 3),
            "median_cpu_s": round(self.median("cpu_s"), 3),
            "runs": [asdict(run) for run in self.runs],
        }


class MeasureError(Exception):
    pass


def drop_page_cache() -> bool:
    """Flush dirty pages and drop the page cache; False where this process may not (not root, read-only /proc)."""
    os.sync()
    try:
        DROP_CACHES.write_text("3\n", encoding="ascii")
    except OSError:
        return False
    return True


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def time_one_run(command: Sequence[str], environment: dict[str, str], cwd: Path) -> Timing:
    cpu_before = _children_cpu_s()
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=environment, cwd=cwd)
    if process.stdout is None:
        raise MeasureError("no stdout pipe")
    first_line = process.stdout.readline()
    first_result = time.perf_counter() - started
    _rest, error = process.communicate(timeout=RUN_TIMEOUT_S)
    exited = time.perf_counter() - started
    cpu = _children_cpu_s() - cpu_before  # counted once the process has been waited for
    if process.returncode != 0 or not first_line.strip():
        message = error.decode("utf-8", errors="replace").strip().splitlines()
        raise MeasureError(f"{' '.join(command[:2])} failed (exit {process.returncode}): {message[-1:] or 'no output'}")
    json.loads(first_line)  # a whole JSON result, not a partial line
    return Timing(first_result_s=round(first_result, 4), exit_s=round(exited, 4), cpu_s=round(cpu, 4))


def measure(
    target: str,
    command: Sequence[str],
    base_environment: dict[str, str],
    *,
    runs: int,
    drop_caches: bool,
    first_start: bool = False,
) -> list[Series]:
    series = []
    with tempfile.TemporaryDirectory(prefix="care-edge-startup-") as scratch_name:
        scratch = Path(scratch_name)

        def fresh(name: str, cache: Path) -> dict[str, str]:
            (scratch / name).mkdir()
            return {**base_environment, "TMPDIR": str(scratch / name), "XDG_CACHE_HOME": str(cache)}

        if first_start:
            first_runs, dropped_every_time = [], True
            for number in range(runs):
                environment = fresh(f"first-{number}", scratch / f"first-cache-{number}")
                dropped_every_time &= drop_page_cache() if drop_caches else False
                first_runs.append(time_one_run(command, environment, scratch))
                shutil.rmtree(scratch / f"first-cache-{number}", ignore_errors=True)
            series.append(Series(target, "first", first_runs, dropped_every_time))

        cache = scratch / "cache"
        time_one_run(command, fresh("fill", cache), scratch)  # untimed: fills the cache of a single file
        cold_runs, dropped_every_time = [], True
        for number in range(runs):
            environment = fresh(f"cold-{number}", cache)
            dropped_every_time &= drop_page_cache() if drop_caches else False
            cold_runs.append(time_one_run(command, environment, scratch))
        series.append(Series(target, "cold", cold_runs, dropped_every_time))

        warm_environment = fresh("warm", cache)
        time_one_run(command, warm_environment, scratch)  # untimed: fills the page cache
        warm_runs = [time_one_run(command, warm_environment, scratch) for _ in range(runs)]
        series.append(Series(target, "warm", warm_runs, False))
    return series


def targets(args: argparse.Namespace) -> list[tuple[str, list[str], dict[str, str]]]:
    """(label, command prefix, extra environment) of every target that exists."""
    found: list[tuple[str, list[str], dict[str, str]]] = []
    if args.onefile.is_file():
        label = "onefile" if read_layout(args.onefile) is not None else "pyi-onefile"
        found.append((label, [str(args.onefile)], {}))
    if args.onedir.is_file():
        found.append(("onedir", [str(args.onedir)], {}))
    record = args.onefile.with_name(args.onefile.name + ".build.json")
    if not args.no_python and record.is_file():
        prebuilt = json.loads(record.read_text(encoding="utf-8")).get("prebuilt", "")
        if prebuilt and Path(prebuilt).is_dir():
            python = {"CARE_EDGE_INDEX_DIR": prebuilt, "PYTHONPATH": str(REPO_ROOT)}
            found.append(("python -m edge", [sys.executable, "-m", "edge"], python))
    return found


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="packaging/measure_startup.py", description=__doc__.splitlines()[0])
    parser.add_argument("--onefile", type=Path, default=REPO_ROOT / "dist" / "care-edge")
    parser.add_argument("--onedir", type=Path, default=REPO_ROOT / "dist" / "care-edge-onedir" / "care-edge")
    parser.add_argument("--runs", type=int, default=5, help="timed runs per series (default 5)")
    parser.add_argument("--query", default=DEFAULT_QUERY)
    parser.add_argument("--no-drop-caches", action="store_true", help="cold = fresh TMPDIR only")
    parser.add_argument("--no-python", action="store_true", help="skip the `python -m edge` baseline")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    found = targets(args)
    if not found:
        print(
            f"measure_startup: error: no binary at {args.onefile} or {args.onedir}: run packaging/build.py",
            file=sys.stderr,
        )
        return 2
    base_environment = {key: value for key, value in os.environ.items() if not key.startswith("CARE_EDGE_")}
    load_before = os.getloadavg()
    results: list[Series] = []
    try:
        for label, prefix, extra in found:
            command = [*prefix, "search", args.query, "--json", "-k", "10"]
            results += measure(
                label,
                command,
                {**base_environment, **extra},
                runs=args.runs,
                drop_caches=not args.no_drop_caches,
                first_start=label == "onefile",
            )
    except MeasureError as exc:
        print(f"measure_startup: error: {exc}", file=sys.stderr)
        return 1
    load_after = os.getloadavg()
    report = {
        "query": args.query,
        "runs": args.runs,
        "cpus": os.cpu_count(),
        "load_average_1min": [round(load_before[0], 2), round(load_after[0], 2)],
        "series": [series.to_json() for series in results],
    }
    if args.json:
        print(json.dumps(report, ensure_ascii=False))
        return 0
    print(
        f"care-edge start-up, `search {args.query!r} --json -k 10`, median of {args.runs} runs; "
        f"{os.cpu_count()} CPUs, 1-min load average {load_before[0]:.2f} before, {load_after[0]:.2f} after"
    )
    print(f"{'target':<16}{'condition':<10}{'first result':>14}{'exit':>10}{'CPU time':>10}  notes")
    for series in results:
        note = ""
        if series.condition in ("first", "cold"):
            note = ("empty cache, " if series.condition == "first" else "cache filled, ") if series.target == (
                "onefile"
            ) else ""
            note += "fresh TMPDIR, " + ("page cache dropped" if series.page_cache_dropped else "page cache NOT dropped")
        print(
            f"{series.target:<16}{series.condition:<10}{series.median('first_result_s'):>13.3f}s"
            f"{series.median('exit_s'):>9.3f}s{series.median('cpu_s'):>9.3f}s  {note}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
