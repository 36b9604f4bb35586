"""Build the offline ``care-edge`` binary: ``python packaging/build.py [--onedir|--pyinstaller-onefile] [--prebuilt DIR]``.

Steps: check the runtime dependencies are importable; install PyInstaller into this interpreter when it is missing;
verify every collection of the prebuilt directory (``care-edge info --verify``), so a broken index is never shipped;
run PyInstaller on ``packaging/care-edge.spec``; check the archive holds none of the excluded modules (torch, onnx,
tqdm, ...) and the index; run the binary once; write ``<dist>/<name>.build.json`` (sizes, largest entries, what was
bundled).

Outputs: by default both ``dist/care-edge-onedir/care-edge`` (the onedir build) and ``dist/care-edge``, the single
file: that onedir build packed by ``selfextract.py`` into one executable that unpacks itself once into a per-user
cache and runs from there (see packaging/README.md). ``--onedir`` stops after the onedir build;
``--pyinstaller-onefile`` builds PyInstaller's own onefile instead (unpacks everything at every start; kept for
comparison).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

PACKAGING_DIR = Path(__file__).resolve().parent
REPO_ROOT = PACKAGING_DIR.parent
sys.path.insert(0, str(PACKAGING_DIR))
from archive_report import read_onedir_entries, read_onefile_entries, summarize  # noqa: E402
from selfextract import pack  # noqa: E402

SPEC = PACKAGING_DIR / "care-edge.spec"
# Keep in step with the ``package`` extra of pyproject.toml.
PYINSTALLER_REQUIREMENT = "pyinstaller>=6.10"
RUNTIME_MODULES = ("numpy", "onnxruntime", "tokenizers", "usearch")
MAX_ONEFILE_BYTES = 150 * 1024 * 1024
COLLECTION_FORMAT = "care-edge/collection"
LOG_TAIL_LINES = 25


class BuildError(Exception):
    """A failed step: reported as one line, exit code 1."""


# --------------------------------------------------------------------------------------------------- steps


def check_runtime_importable() -> None:
    missing = []
    for name in RUNTIME_MODULES:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise BuildError(f"{', '.join(missing)} not importable by {sys.executable}: run `make setup-runtime` first")


def ensure_pyinstaller() -> str:
    """PyInstaller's version, installing it into this interpreter first when it is missing."""
    try:
        import PyInstaller
    except ImportError:
        print(f"build: installing {PYINSTALLER_REQUIREMENT} into {sys.prefix}", flush=True)
        completed = subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", PYINSTALLER_REQUIREMENT],
            check=False,
        )
        if completed.returncode != 0:
            raise BuildError(f"could not install {PYINSTALLER_REQUIREMENT} (pip exit code {completed.returncode})")
        importlib.invalidate_caches()
        import PyInstaller
    return str(PyInstaller.__version__)


def collections_in(prebuilt: Path) -> list[str]:
    """Names of the collection directories in a prebuilt directory."""
    names = []
    for child in sorted(prebuilt.iterdir()):
        manifest = child / "manifest.json"
        if not manifest.is_file():
            continue
        try:
            kind = json.loads(manifest.read_text(encoding="utf-8")).get("format")
        except (OSError, ValueError, AttributeError):
            kind = None
        if kind == COLLECTION_FORMAT:
            names.append(child.name)
    return names


def verify_prebuilt(prebuilt: Path) -> list[str]:
    """Run ``care-edge info --verify`` (full sha256, alignment with the default query encoder) on every collection;
    returns their names."""
    if not (prebuilt / "default.json").is_file():
        raise BuildError(f"{prebuilt / 'default.json'} is missing: build the index (make prebuilt) or pass --prebuilt")
    names = collections_in(prebuilt)
    if not names:
        raise BuildError(f"no collection in {prebuilt}")
    environment = {key: value for key, value in os.environ.items() if key != "CARE_EDGE_DEBUG"}
    environment["CARE_EDGE_INDEX_DIR"] = str(prebuilt)
    for name in names:
        completed = subprocess.run(
            [sys.executable, "-m", "edge", "info", "--verify", "--json", "--index", name],
            cwd=REPO_ROOT,
            env=environment,
            capture_output=True,
            text=True,
            check=False,
        )
        if completed.returncode != 0:
            problem = (completed.stderr.strip().splitlines() or ["no message"])[-1]
            raise BuildError(f"prebuilt collection '{name}' does not verify: {problem}")
    return names


def run_pyinstaller(prebuilt: Path, *, onedir: bool, name: str, dist: Path, work: Path,
                    search_only: bool = False) -> None:
    work.mkdir(parents=True, exist_ok=True)
    log_path = work / "pyinstaller.log"
    command = [
        sys.executable, "-m", "PyInstaller", "--noconfirm", "--log-level", "WARN",
        "--distpath", str(dist), "--workpath", str(work), str(SPEC),
        "--", "--prebuilt", str(prebuilt), "--name", name,
    ]  # fmt: skip
    if onedir:
        command.append("--onedir")
    if search_only:
        command.append("--search-only")
    with log_path.open("w", encoding="utf-8") as log:
        completed = subprocess.run(command, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT, check=False)
    if completed.returncode != 0:
        tail = log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-LOG_TAIL_LINES:]
        sys.stderr.write("\n".join(tail) + "\n")
        raise BuildError(f"PyInstaller failed (exit code {completed.returncode}); full log: {log_path}")


def run_binary_once(binary: Path, default_collection: str, extra_env: dict[str, str] | None = None) -> None:
    """The binary starts, finds its bundled index and reports the default collection, from a neutral directory."""
    environment = {key: value for key, value in os.environ.items() if not key.startswith("CARE_EDGE_")}
    environment.update(extra_env or {})
    with tempfile.TemporaryDirectory(prefix="care-edge-build-check-") as scratch:
        completed = subprocess.run(
            [str(binary), "info", "--json"], cwd=scratch, env=environment, capture_output=True, text=True, check=False
        )
    if completed.returncode != 0:
        raise BuildError(f"the built binary fails `info`: {completed.stderr.strip()[-500:]}")
    reported = json.loads(completed.stdout)["collection"]["name"]
    if reported != default_collection:
        raise BuildError(f"the built binary reports collection '{reported}', expected '{default_collection}'")


def write_json_atomically(path: Path, value: Any) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(value, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(temporary, path)


# --------------------------------------------------------------------------------------------------- main


def check_entries(entries: list[Any], report: dict[str, Any], binary: Path, *, single_file: bool) -> None:
    if report["forbidden"]:
        shown = ", ".join(report["forbidden"][:5])
        raise BuildError(f"the archive holds excluded modules ({len(report['forbidden'])}): {shown}")
    if not any(entry.name == "prebuilt_index/default.json" for entry in entries):
        raise BuildError("the archive holds no prebuilt_index/default.json")
    if single_file and report["size_on_disk_bytes"] > MAX_ONEFILE_BYTES:
        raise BuildError(f"{binary} is {report['size_on_disk_bytes'] / 2**20:.1f} MiB, over the 150 MiB budget")


def build(
    prebuilt: Path, *, mode: str, name: str, dist: Path, work: Path, verify: bool, search_only: bool = False
) -> dict[str, Any]:
    """``mode``: "selfextract" (default: onedir + single file), "onedir" or "pyinstaller-onefile". Returns the report
    of the last binary built."""
    started = time.perf_counter()
    check_runtime_importable()
    pyinstaller_version = ensure_pyinstaller()
    collections = verify_prebuilt(prebuilt) if verify else collections_in(prebuilt)
    default_collection = json.loads((prebuilt / "default.json").read_text(encoding="utf-8"))["collection"]
    onedir = mode != "pyinstaller-onefile"
    run_pyinstaller(prebuilt, onedir=onedir, name=name, dist=dist, work=work / ("onedir" if onedir else "onefile"),
                    search_only=search_only)
    extra = {
        "prebuilt": str(prebuilt),
        "collections": collections,
        "default_collection": default_collection,
        "pyinstaller": pyinstaller_version,
        "index_command": not search_only,
        "python": platform.python_version(),
        "platform": f"{platform.system()}-{platform.machine()}",
    }

    binary = dist / f"{name}-onedir" / name if onedir else dist / name
    entries = read_onedir_entries(binary) if onedir else read_onefile_entries(binary)
    report = summarize(entries, binary, onefile=not onedir)
    check_entries(entries, report, binary, single_file=not onedir)
    run_binary_once(binary, default_collection)
    report.update(extra, build_seconds=round(time.perf_counter() - started, 1))
    write_json_atomically(dist / (f"{name}-onedir.build.json" if onedir else f"{name}.build.json"), report)
    if mode != "selfextract":
        return report

    single = dist / name
    layout = pack(binary.parent, single)
    entries = read_onefile_entries(single)
    report = summarize(entries, single, onefile=True)
    check_entries(entries, report, single, single_file=True)
    with tempfile.TemporaryDirectory(prefix="care-edge-build-cache-") as cache:
        run_binary_once(single, default_collection, extra_env={"XDG_CACHE_HOME": cache})
    report.update(
        extra,
        mode="selfextract",
        cache_key=layout.key,
        # Unpacked once per user and build (then reused), not at every start.
        unpacked_at_start_bytes=0,
        unpacked_at_first_start_bytes=sum(segment.unpacked_bytes for segment in layout.segments),
        build_seconds=round(time.perf_counter() - started, 1),
    )
    write_json_atomically(dist / f"{name}.build.json", report)
    return report


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="packaging/build.py", description=__doc__.splitlines()[0])
    parser.add_argument("--prebuilt", type=Path, default=REPO_ROOT / "prebuilt_index", help="index directory to bundle")
    modes = parser.add_mutually_exclusive_group()
    modes.add_argument("--onedir", action="store_true", help="build only the folder, not the single file")
    modes.add_argument(
        "--pyinstaller-onefile", action="store_true", help="PyInstaller's onefile (unpacks at every start)"
    )
    parser.add_argument("--name", default="care-edge", help="executable name (default care-edge)")
    parser.add_argument("--dist", type=Path, default=REPO_ROOT / "dist", help="output directory (default dist/)")
    parser.add_argument("--work", type=Path, default=REPO_ROOT / "build" / "pyinstaller", help="PyInstaller work dir")
    parser.add_argument("--no-verify", action="store_true", help="skip the sha256 check of the prebuilt directory")
    parser.add_argument("--search-only", action="store_true",
                        help="leave out `care-edge index` (llama-cpp-python, pypdf, tqdm): a smaller binary")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        report = build(
            args.prebuilt.resolve(),
            mode="onedir" if args.onedir else "pyinstaller-onefile" if args.pyinstaller_onefile else "selfextract",
            name=args.name,
            dist=args.dist.resolve(),
            work=args.work.resolve(),
            verify=not args.no_verify,
            search_only=args.search_only,
        )
    except BuildError as exc:
        print(f"build: error: {exc}", file=sys.stderr)
        return 1
    mib = 2**20
    print(
        f"build: {report['binary']} ({report['mode']}): {report['size_on_disk_bytes'] / mib:.1f} MiB on disk, "
        f"index {report['index_unpacked_bytes'] / mib:.1f} MiB ({', '.join(report['collections'])}), "
        + (
            f"unpacks {report['unpacked_at_start_bytes'] / mib:.1f} MiB at every start, "
            if report["mode"] == "onefile"
            else f"unpacks {report['unpacked_at_first_start_bytes'] / mib:.1f} MiB once (cache key "
            f"{report['cache_key']}), "
            if report["mode"] == "selfextract"
            else ""
        )
        + f"no excluded module; built in {report['build_seconds']:.0f} s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
