"""What the integrity check adds to opening the shipped default: ``python packaging/measure_open.py [--runs 5]``.

Opens the default collection and query encoder (``edge.Collection`` + ``edge.QueryEncoder``, what every ``search``
does before its first query) in a fresh process per run, three ways, and prints the median wall and CPU times (the CPU
time of the process, which a busy machine inflates much less than the wall time):

- ``sizes only``: the check replaced by the size comparison the runtime made before it hashed anything;
- ``first open``: an empty verified-stamp cache, so every file is hashed (sha256) in full, as on the first start
  after installing or copying the artifacts;
- ``later opens``: the stamps of the first open in place, so no file is hashed.

Every run uses a scratch stamp cache (``CARE_EDGE_CACHE_DIR``), never the user's. The files are read once, untimed,
first, so the three ways compare with the page cache warm. ``--json`` prints the medians as one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent

# Run in a child: opens the default artifacts and prints {"open_ms", "encoder_load_ms"}.
CHILD = r"""
import json, sys, time
sizes_only = sys.argv[1] == "sizes"
import edge.collection, edge.encoder
from edge import formats as fmt
if sizes_only:
    def sizes(directory, manifest, names, structure=None):
        problems = [p for p in fmt.file_problems(directory, manifest, full_hash=False) if p.split(":")[0] in set(names)]
        if problems:
            raise SystemExit(problems[0])
    edge.collection.verify_files = edge.encoder.verify_files = sizes
from edge.paths import resolve_collection_dir, resolve_encoder_dir
started, started_cpu = time.perf_counter(), time.process_time()
collection = edge.collection.Collection(resolve_collection_dir(None))
opened, opened_cpu = time.perf_counter(), time.process_time()
encoder = edge.encoder.QueryEncoder(resolve_encoder_dir(None))
loaded, loaded_cpu = time.perf_counter(), time.process_time()
print(json.dumps({"open_ms": (opened - started) * 1e3, "encoder_load_ms": (loaded - opened) * 1e3,
                  "open_cpu_ms": (opened_cpu - started_cpu) * 1e3, "encoder_load_cpu_ms": (loaded_cpu - opened_cpu) * 1e3}))
"""


def _run(way: str, cache: Path) -> dict[str, float]:
    env = {**os.environ, "CARE_EDGE_CACHE_DIR": str(cache), "PYTHONPATH": str(REPO_ROOT)}
    output = subprocess.run([sys.executable, "-c", CHILD, way], env=env, cwd=REPO_ROOT, check=True,
                            capture_output=True, text=True).stdout
    return json.loads(output)


def _median(samples: list[dict[str, float]]) -> dict[str, float]:
    keys = ("open_ms", "encoder_load_ms", "open_cpu_ms", "encoder_load_cpu_ms")
    medians = {key: round(statistics.median(sample[key] for sample in samples), 1) for key in keys}
    medians["total_ms"] = round(statistics.median(sample["open_ms"] + sample["encoder_load_ms"] for sample in samples), 1)
    medians["total_cpu_ms"] = round(statistics.median(sample["open_cpu_ms"] + sample["encoder_load_cpu_ms"]
                                                      for sample in samples), 1)
    return medians


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        _run("sizes", root / "warmup")  # untimed: brings the files into the page cache
        results = {
            "sizes only": _median([_run("sizes", root / "unused") for _ in range(args.runs)]),
            "first open": _median([_run("stamps", root / f"empty-{run}") for run in range(args.runs)]),
        }
        _run("stamps", root / "filled")
        results["later opens"] = _median([_run("stamps", root / "filled") for _ in range(args.runs)])
    machine = {"cpu": _cpu_name(), "cpus": os.cpu_count(),
               "load_1min": round(os.getloadavg()[0], 2)}
    if args.json:
        print(json.dumps({"machine": machine, "runs": args.runs, "medians": results}))
        return 0
    print(f"median of {args.runs} runs, {machine['cpu']}, {machine['cpus']} CPUs, load {machine['load_1min']}")
    print(f"{'':<12} {'collection':>11} {'encoder':>9} {'total':>9}   {'CPU time: collection':>20} {'encoder':>9} "
          f"{'total':>9}")
    for way, medians in results.items():
        print(f"{way:<12} {medians['open_ms']:>8.1f} ms {medians['encoder_load_ms']:>6.1f} ms "
              f"{medians['total_ms']:>6.1f} ms   {medians['open_cpu_ms']:>17.1f} ms {medians['encoder_load_cpu_ms']:>6.1f} ms "
              f"{medians['total_cpu_ms']:>6.1f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
