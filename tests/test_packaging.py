"""The offline binary (packaging/): what it contains, that it answers like the Python CLI, and that it stays offline.

Fast tests check the packaging helpers (archive check, runtime hooks) without a binary. The ``slow`` tests run a
built binary: ``$CARE_EDGE_BINARY`` or ``dist/care-edge`` (``make package``), and are skipped when there is none.
The bundled index is compared with ``python -m edge`` on the directory named in ``<binary>.build.json``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
PACKAGING_DIR = REPO_ROOT / "packaging"
sys.path.insert(0, str(PACKAGING_DIR))

from archive_report import ArchiveEntry, forbidden_entries, module_name_of  # noqa: E402
from excluded import EXCLUDED_MODULES, INDEX_DEPENDENCIES, is_excluded  # noqa: E402
from selfextract import COMPLETE, pack, read_layout  # noqa: E402

BINARY_ENV = "CARE_EDGE_BINARY"
MAX_ONEFILE_BYTES = 150 * 1024 * 1024
NOBODY = 65534
NETWORK_CALLS = ("socket", "connect", "sendto", "sendmsg")
NETWORK_CALL_LINE = re.compile(r"^\d+\s+(%s)\(" % "|".join(NETWORK_CALLS))
QUERIES = ["chest pain when breathing", "头痛 发烧"]
TIMING_KEYS = {"timings_ms"}
# bench fields that do not depend on timing: equal for the binary and the Python CLI on the same index
BENCH_RECALL_AT_10_FLOOR = 0.98
BENCH_DETERMINISTIC = ("n_queries", "k", "recall_at_10", "truncated_queries", "warmup_queries")

# --------------------------------------------------------------------------------------------------- fast: helpers


def test_exclusions_cover_the_tools_dependencies() -> None:
    for module in ("torch", "transformers", "onnx", "matplotlib", "tools", "torch.nn"):
        assert is_excluded(module), module
    # `care-edge index` ships in the binary unless it is built --search-only.
    for module in ("llama_cpp", "llama_cpp.llama", "pypdf", "tqdm"):
        assert not is_excluded(module) and is_excluded(module, EXCLUDED_MODULES + INDEX_DEPENDENCIES), module
    # Only exact names or their submodules: onnxruntime is not onnx, tokenizers is not tokenizers.tools.
    for module in ("onnxruntime", "onnxruntime.capi", "tokenizers", "usearch.index", "numpy", "edge.cli", "sqlite3"):
        assert not is_excluded(module), module
    assert len(set(EXCLUDED_MODULES)) == len(EXCLUDED_MODULES)


def test_archive_entries_map_to_modules() -> None:
    def entry(name: str, kind: str = "binary") -> ArchiveEntry:
        return ArchiveEntry(name=name, kind=kind, stored_bytes=1, unpacked_bytes=1)

    assert module_name_of(entry("torch/lib/libtorch_cpu.so")) == "torch.lib.libtorch_cpu"
    assert module_name_of(entry("python3.11/lib-dynload/_ssl.cpython-311-x86_64-linux-gnu.so")) == "_ssl"
    assert module_name_of(entry("numpy.libs/libscipy_openblas64_.so")) is None
    assert module_name_of(entry("libpython3.11.so.1.0")) is None
    assert module_name_of(entry("prebuilt_index/tiny/docs.sqlite", "data")) is None
    assert module_name_of(entry("tqdm.std", "module")) == "tqdm.std"

    clean = [entry("onnxruntime/capi/x.so"), entry("edge.cli", "module"), entry("prebuilt_index/onnx/x", "data")]
    assert forbidden_entries(clean) == []
    dirty = clean + [entry("transformers", "module"), entry("torch/lib/libc10.so"), entry("yaml/_yaml.so")]
    assert forbidden_entries(dirty) == ["torch/lib/libc10.so", "transformers", "yaml/_yaml.so"]


def _run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)


def test_tqdm_stand_in_lets_usearch_work_without_tqdm() -> None:
    # A meta-path finder hides the real tqdm, as in the binary; usearch must import and run, progress log included.
    hook = PACKAGING_DIR / "rthooks" / "tqdm_stand_in.py"
    code = f"""
import sys
class HideTqdm:
    def find_spec(self, name, path=None, target=None):
        if name == "tqdm" or name.startswith("tqdm."):
            raise ImportError("tqdm is not bundled")
sys.meta_path.insert(0, HideTqdm())
exec(compile(open({str(hook)!r}).read(), "tqdm_stand_in", "exec"))
import onnxruntime, numpy as np
from usearch.index import Index
index = Index(ndim=4, metric="cos")
index.add(np.arange(3), np.eye(3, 4, dtype=np.float32), log=True)
print(int(index.search(np.eye(1, 4, dtype=np.float32)[0], 1, log=True).keys[0]), sys.modules["tqdm"].tqdm.__name__)
"""
    completed = _run_python(code)
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.split() == ["0", "_SilentProgress"]
    assert completed.stderr == ""  # silent: no progress bar drawn


def test_offline_hook_disables_sockets_and_onnxruntime_telemetry(tmp_path: Path) -> None:
    hook = PACKAGING_DIR / "rthooks" / "offline.py"
    code = f"""
import os, socket
exec(compile(open({str(hook)!r}).read(), "offline", "exec"))
assert os.environ["ORT_DISABLE_TELEMETRY"] == "1"
for attempt in (lambda: socket.create_connection(("127.0.0.1", 9)), lambda: socket.getaddrinfo("localhost", 80),
                lambda: socket.socket().connect(("127.0.0.1", 9))):
    try:
        attempt()
    except OSError as exc:
        assert "offline" in str(exc), exc
    else:
        raise SystemExit("a connection attempt did not fail")
import onnxruntime
print("ok")
"""
    environment = {**os.environ, "HOME": str(tmp_path), "XDG_CACHE_HOME": str(tmp_path / "cache")}
    completed = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=environment, timeout=120, check=False
    )
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == "ok"
    assert list(tmp_path.iterdir()) == [], "onnxruntime wrote to HOME despite ORT_DISABLE_TELEMETRY"


# --------------------------------------------------------------------------------------------------- fast: launcher


def _fake_onedir(folder: Path) -> Path:
    """A stand-in onedir build: an executable ``care-edge`` that prints where it runs from and its arguments, plus
    data files (one large and incompressible, so both segments hold something) and a symbolic link."""
    (folder / "_internal" / "prebuilt_index").mkdir(parents=True)
    executable = folder / "care-edge"
    executable.write_text('#!/bin/sh\necho "$(dirname "$0")" "$@"\n', encoding="utf-8")
    executable.chmod(0o755)
    (folder / "_internal" / "prebuilt_index" / "default.json").write_text('{"collection": "x"}\n', encoding="utf-8")
    (folder / "_internal" / "big.bin").write_bytes(np.random.default_rng(0).bytes(300_000))
    (folder / "_internal" / "link.json").symlink_to("prebuilt_index/default.json")
    return folder


def _launch(single: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(single), *args], capture_output=True, text=True, env=env, timeout=60, check=False)


def _launcher_env(**extra: str) -> dict[str, str]:
    environment = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    environment.update(extra)
    return environment


def test_single_file_unpacks_once_into_the_cache_and_reuses_it(tmp_path: Path) -> None:
    single = tmp_path / "care-edge"
    layout = pack(_fake_onedir(tmp_path / "onedir"), single)
    assert read_layout(single) == dataclass_replace_segments(layout)
    assert len(layout.segments) == 2 and all(segment.members for segment in layout.segments)
    cache = tmp_path / "cache"
    first = _launch(single, _launcher_env(XDG_CACHE_HOME=str(cache), HOME=str(tmp_path / "home")), "search", "a b")
    assert first.returncode == 0 and first.stderr == "", first.stderr
    unpacked = cache / "care-edge" / "bin" / layout.key
    assert first.stdout.split() == [str(unpacked), "search", "a", "b"]
    assert (unpacked / COMPLETE).is_file() and (unpacked / "_internal" / "link.json").is_symlink()
    assert (unpacked / "_internal" / "big.bin").read_bytes() == (tmp_path / "onedir/_internal/big.bin").read_bytes()
    assert sorted(path.name for path in (cache / "care-edge" / "bin").iterdir()) == [layout.key]  # no leftovers
    assert not (tmp_path / "home").exists()
    # Reused: a start after the payload has gone still runs (it never reads the payload again).
    marker = unpacked / "_internal" / "prebuilt_index" / "default.json"
    before = marker.stat().st_mtime_ns
    again = _launch(single, _launcher_env(XDG_CACHE_HOME=str(cache)), "info")
    assert again.stdout.split() == [str(unpacked), "info"] and marker.stat().st_mtime_ns == before
    # Without XDG_CACHE_HOME: $HOME/.cache.
    home = tmp_path / "home2"
    home.mkdir()
    from_home = _launch(single, _launcher_env(HOME=str(home)), "info")
    assert from_home.stdout.split()[0] == str(home / ".cache" / "care-edge" / "bin" / layout.key)


def dataclass_replace_segments(layout):  # read_layout knows offsets and lengths, not sizes or member counts
    import dataclasses

    return dataclasses.replace(
        layout,
        segments=[dataclasses.replace(segment, unpacked_bytes=0, members=0) for segment in layout.segments],
    )


def test_single_file_without_home_uses_a_private_temporary_cache(tmp_path: Path) -> None:
    single = tmp_path / "care-edge"
    layout = pack(_fake_onedir(tmp_path / "onedir"), single)
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    not_a_directory = tmp_path / "home-is-a-file"  # HOME set but unusable (even for root)
    not_a_directory.write_text("", encoding="utf-8")
    for environment in (_launcher_env(TMPDIR=str(scratch)), _launcher_env(TMPDIR=str(scratch), HOME=str(not_a_directory))):
        result = _launch(single, environment, "info")
        private = scratch / f"care-edge-{os.getuid()}"
        assert result.returncode == 0 and result.stdout.split() == [str(private / layout.key), "info"], result.stderr
        assert stat.S_IMODE(private.stat().st_mode) == 0o700
    # A directory of that name owned by someone else, or a link, is never used.
    if os.geteuid() == 0:
        other = tmp_path / "tmp-other"
        other.mkdir()
        planted = other / f"care-edge-{os.getuid()}"
        planted.symlink_to(scratch)
        result = _launch(single, _launcher_env(TMPDIR=str(other)), "info")
        shutil.rmtree(f"/tmp/care-edge-{os.getuid()}/{layout.key}", ignore_errors=True)  # this test's copy only
        assert result.stdout.split()[0] == f"/tmp/care-edge-{os.getuid()}/{layout.key}"


def test_single_file_concurrent_first_starts_share_one_copy(tmp_path: Path) -> None:
    single = tmp_path / "care-edge"
    layout = pack(_fake_onedir(tmp_path / "onedir"), single)
    environment = _launcher_env(XDG_CACHE_HOME=str(tmp_path / "cache"))
    processes = [
        subprocess.Popen([str(single), "info"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=environment)
        for _ in range(4)
    ]
    for process in processes:
        out, err = process.communicate(timeout=60)
        assert process.returncode == 0 and out.split()[1:] == [b"info"], err
    root = tmp_path / "cache" / "care-edge" / "bin"
    assert [path.name for path in root.iterdir()] == [layout.key]
    assert sorted(path.name for path in (root / layout.key).iterdir()) == [COMPLETE, "_internal", "care-edge"]


def test_truncated_single_file_is_one_line_error_and_leaves_nothing(tmp_path: Path) -> None:
    single = tmp_path / "care-edge"
    pack(_fake_onedir(tmp_path / "onedir"), single)
    data = single.read_bytes()
    single.write_bytes(data[: len(data) - 1000])
    cache = tmp_path / "cache"
    result = _launch(single, _launcher_env(XDG_CACHE_HOME=str(cache), TMPDIR=str(tmp_path / "none")), "info")
    assert result.returncode == 1 and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot unpack" in lines[0], result.stderr
    assert list((cache / "care-edge" / "bin").iterdir()) == []


# --------------------------------------------------------------------------------------------------- slow: binary


@dataclass(frozen=True)
class Run:
    returncode: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        assert self.returncode == 0, self.stderr
        return json.loads(self.stdout)

    def one_line_error(self, exit_code: int, *fragments: str) -> str:
        assert self.returncode == exit_code, (self.returncode, self.stderr)
        assert "Traceback" not in self.stderr, self.stderr
        lines = [line for line in self.stderr.splitlines() if line.strip()]
        assert len(lines) == 1, self.stderr
        for fragment in fragments:
            assert fragment in lines[0], (fragment, lines[0])
        return lines[0]


@pytest.fixture(scope="module")
def binary() -> Path:
    path = Path(os.environ.get(BINARY_ENV, REPO_ROOT / "dist" / "care-edge"))
    if not path.is_file():
        pytest.skip(f"no binary at {path}: run `make package` (or set {BINARY_ENV})")
    return path


@pytest.fixture(scope="module")
def bundled_prebuilt(binary: Path) -> Path:
    """The directory the binary bundled, from its build record."""
    record = binary.with_name(binary.name + ".build.json")
    if not record.is_file():
        pytest.skip(f"no build record {record}: build with packaging/build.py")
    prebuilt = Path(json.loads(record.read_text(encoding="utf-8"))["prebuilt"])
    if not prebuilt.is_dir():
        pytest.skip(f"the bundled directory {prebuilt} is gone")
    return prebuilt


def _clean_environment(**extra: str) -> dict[str, str]:
    environment = {key: value for key, value in os.environ.items() if not key.startswith(("CARE_EDGE_", "ORT_"))}
    environment.update(extra)
    return environment


def run_binary(
    binary: Path,
    *args: str | os.PathLike[str],
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    prefix: tuple[str, ...] = (),
    as_nobody: bool = False,
) -> Run:
    def drop_privileges() -> None:
        os.setgroups([])
        os.setgid(NOBODY)
        os.setuid(NOBODY)

    completed = subprocess.run(
        [*prefix, str(binary), *map(str, args)],
        capture_output=True,
        env=env if env is not None else _clean_environment(),
        cwd=cwd if cwd is not None else Path(tempfile.gettempdir()),
        preexec_fn=drop_privileges if as_nobody else None,
        timeout=300,
        check=False,
    )
    return Run(
        completed.returncode,
        completed.stdout.decode("utf-8", errors="replace"),
        completed.stderr.decode("utf-8", errors="replace"),
    )


def _without(value: Any, keys: set[str]) -> Any:
    """``value`` with every dict entry named in ``keys`` removed, at any depth."""
    if isinstance(value, dict):
        return {key: _without(item, keys) for key, item in value.items() if key not in keys}
    if isinstance(value, list):
        return [_without(item, keys) for item in value]
    return value


def _key_paths(value: Any, prefix: str = "") -> set[str]:
    if isinstance(value, dict):
        paths = set()
        for key, item in value.items():
            paths |= {f"{prefix}{key}"} | _key_paths(item, f"{prefix}{key}.")
        return paths
    return set()


@pytest.mark.slow
def test_archive_is_small_and_leaves_out_the_tools(binary: Path) -> None:
    from archive_report import read_onefile_entries, summarize

    entries = read_onefile_entries(binary)
    report = summarize(entries, binary, onefile=True)
    assert report["forbidden"] == []
    assert report["size_on_disk_bytes"] <= MAX_ONEFILE_BYTES
    names = {entry.name for entry in entries}
    assert "prebuilt_index/default.json" in names
    assert {"edge.cli", "edge.search", "onnxruntime", "usearch.index", "tokenizers"} <= names
    # The search path keeps the silent tqdm stand-in; the real tqdm is bundled for `care-edge index` only.
    assert {"edge.index.run", "llama_cpp", "pypdf"} <= names


@pytest.mark.slow
@pytest.mark.parametrize("query", QUERIES)
def test_bundled_search_matches_the_python_cli(binary: Path, bundled_prebuilt: Path, run_cli, query: str) -> None:
    frozen = run_binary(binary, "search", query, "--json", "-k", "10").json()
    python = run_cli("search", query, "--json", "-k", "10", prebuilt=bundled_prebuilt, timeout=300).json()
    assert frozen["results"], "the bundled default returned nothing"
    assert _without(frozen, TIMING_KEYS) == _without(python, TIMING_KEYS)
    assert frozen["timings_ms"].keys() == python["timings_ms"].keys()


@pytest.mark.slow
def test_bundled_bench_matches_the_python_cli(binary: Path, bundled_prebuilt: Path, run_cli) -> None:
    frozen = run_binary(binary, "bench", "--json").json()
    python = run_cli("bench", "--json", prebuilt=bundled_prebuilt, timeout=600).json()
    assert _key_paths(frozen) == _key_paths(python)
    for key in BENCH_DETERMINISTIC:
        assert frozen.get(key) == python.get(key), key
    assert frozen["index"]["name"] == python["index"]["name"]
    assert frozen["encoder"]["name"] == python["encoder"]["name"]
    assert frozen["n_queries"] > 0 and frozen["qps_1_thread"] > 0
    # ANN recall@10 against exact search on the bundled default's bench queries: 0.988 for the shipped cmed-zh
    # (`care-edge bench --json`, 200 queries, hybrid). Below the bar, the bundled index is not the one measured.
    assert frozen["recall_at_10"] >= BENCH_RECALL_AT_10_FLOOR, frozen["recall_at_10"]
    # Benchmark mode: the two runs say how they ran, and agree on the machine and the artifacts they measured.
    assert (frozen["software"]["runner"], python["software"]["runner"]) == ("binary", "python")
    assert frozen["machine"]["isa"] == python["machine"]["isa"]
    assert frozen["machine"]["cpu_model"] == python["machine"]["cpu_model"]
    assert frozen["index"]["sha256"] == python["index"]["sha256"]
    assert frozen["software"]["onnxruntime"] == python["software"]["onnxruntime"]


@pytest.mark.slow
def test_serves_an_index_folder_given_by_path_like_the_python_cli(
    binary: Path, tiny_copy, run_cli, tmp_path: Path
) -> None:
    index = ["--index", str(tiny_copy.collection), "--encoder", str(tiny_copy.encoder)]
    for query in QUERIES:
        frozen = run_binary(binary, "search", query, "--json", "-k", "5", *index, cwd=tmp_path).json()
        python = run_cli("search", query, "--json", "-k", "5", *index).json()
        assert frozen["results"] and _without(frozen, TIMING_KEYS) == _without(python, TIMING_KEYS)

    texts = ["fever cough", "头痛"]
    frozen = run_binary(binary, "embed", *texts, "--json", "--encoder", str(tiny_copy.encoder), cwd=tmp_path).json()
    python = run_cli("embed", *texts, "--json", "--encoder", str(tiny_copy.encoder)).json()
    assert {key: frozen[key] for key in ("model", "dim", "truncated")} == {
        key: python[key] for key in ("model", "dim", "truncated")
    }
    np.testing.assert_allclose(np.array(frozen["vectors"]), np.array(python["vectors"]), rtol=0, atol=1e-6)

    frozen = run_binary(binary, "info", "--verify", "--json", *index, cwd=tmp_path).json()
    python = run_cli("info", "--verify", "--json", *index).json()
    assert frozen == python and frozen["verify"]["ok"]

    frozen = run_binary(binary, "bench", "--json", *index, cwd=tmp_path).json()
    python = run_cli("bench", "--json", *index).json()
    assert _key_paths(frozen) == _key_paths(python)
    assert [frozen.get(key) for key in BENCH_DETERMINISTIC] == [python.get(key) for key in BENCH_DETERMINISTIC]


@pytest.mark.slow
def test_runs_without_a_network(binary: Path) -> None:
    if shutil.which("unshare") is None or subprocess.run(["unshare", "-n", "true"], check=False).returncode != 0:
        pytest.skip("cannot make a network namespace here (unshare -n)")
    result = run_binary(binary, "search", QUERIES[0], "--json", "-k", "3", prefix=("unshare", "-n"))
    assert len(result.json()["results"]) == 3


@pytest.mark.slow
def test_opens_no_socket_and_writes_nothing_to_home(binary: Path, tmp_path: Path) -> None:
    if shutil.which("strace") is None:
        pytest.skip("strace is not installed")
    home = tmp_path / "home"
    home.mkdir()
    trace = tmp_path / "trace.txt"
    strace = ("strace", "-f", "-qq", "-e", "signal=none", "-e", f"trace={','.join(NETWORK_CALLS)}", "-o", str(trace))
    result = run_binary(
        binary,
        *("search", QUERIES[1], "--json", "-k", "3"),
        prefix=strace,
        env=_clean_environment(HOME=str(home), XDG_CACHE_HOME=str(home / ".cache")),
    )
    if result.returncode != 0 and "ptrace" in result.stderr:
        pytest.skip(f"strace cannot trace here: {result.stderr.strip()}")
    assert len(result.json()["results"]) == 3
    calls = [line for line in trace.read_text(encoding="utf-8").splitlines() if NETWORK_CALL_LINE.match(line)]
    assert calls == [], calls
    # What it may write there: the single file's unpacked copy (XDG_CACHE_HOME/care-edge/bin/<key>) and the stamps
    # of artifacts whose sha256 it verified (XDG_CACHE_HOME/care-edge/verified.json). Nothing else.
    written = {path.relative_to(home).as_posix() for path in home.rglob("*") if "/bin/" not in path.as_posix()}
    allowed = {".cache", ".cache/care-edge", ".cache/care-edge/bin", ".cache/care-edge/verified.json"}
    assert written <= allowed, f"the binary wrote to HOME (onnxruntime telemetry?): {sorted(written - allowed)}"
    if read_layout(binary) is not None:
        assert ".cache/care-edge/bin" in written


@pytest.fixture()
def read_only_directory() -> Iterator[Path]:
    """A world-readable directory nobody may write to (made outside pytest's private tmp tree, so ``nobody`` can
    enter it)."""
    directory = Path(tempfile.mkdtemp(prefix="care-edge-ro-"))
    directory.chmod(stat.S_IRUSR | stat.S_IXUSR | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)
    try:
        yield directory
    finally:
        directory.chmod(stat.S_IRWXU)
        shutil.rmtree(directory)


def _reachable_by_nobody(path: Path) -> bool:
    return all(parent.stat().st_mode & stat.S_IXOTH for parent in path.resolve().parents) and bool(
        path.stat().st_mode & stat.S_IXOTH and path.stat().st_mode & stat.S_IROTH
    )


@pytest.mark.slow
def test_works_from_a_read_only_directory_without_home(binary: Path, read_only_directory: Path,
                                                      request: pytest.FixtureRequest) -> None:
    as_nobody = os.geteuid() == 0  # root writes anywhere: only another user sees the permission
    if as_nobody and not _reachable_by_nobody(binary):
        if read_layout(binary) is None:
            pytest.skip(f"{binary} is not readable by an unprivileged user")
        # A clone in a private folder (mktemp -d is 0700): the single file runs the same from a readable copy.
        shared = Path(tempfile.mkdtemp(prefix="care-edge-bin."))
        request.addfinalizer(lambda: shutil.rmtree(shared, ignore_errors=True))
        shared.chmod(0o755)
        binary = Path(shutil.copy2(binary, shared / binary.name))
        binary.chmod(0o755)
    environment = {key: value for key, value in _clean_environment().items() if key not in ("HOME", "XDG_CACHE_HOME")}
    environment["TMPDIR"] = tempfile.gettempdir()
    result = run_binary(
        binary, "search", QUERIES[0], "--json", "-k", "3", env=environment, cwd=read_only_directory, as_nobody=as_nobody
    )
    assert len(result.json()["results"]) == 3
    assert result.stderr == ""
    assert list(read_only_directory.iterdir()) == []


@pytest.mark.slow
def test_missing_index_is_one_line_error(binary: Path, tmp_path: Path) -> None:
    run_binary(binary, "search", "fever", "--index", str(tmp_path / "nowhere")).one_line_error(3, "no collection at")
    empty = tmp_path / "empty"
    empty.mkdir()
    run_binary(
        binary, "search", "fever", env=_clean_environment(CARE_EDGE_INDEX_DIR=str(empty))
    ).one_line_error(3, "no default collection")


@pytest.mark.slow
def test_corrupt_index_is_one_line_error(binary: Path, tiny_copy) -> None:
    index = ["--index", str(tiny_copy.collection), "--encoder", str(tiny_copy.encoder)]
    vectors = tiny_copy.collection / "vectors.usearch"
    vectors.write_bytes(vectors.read_bytes()[:1000])
    run_binary(binary, "search", "fever", *index).one_line_error(3, "vectors.usearch")

    model = tiny_copy.encoder / "model.onnx"
    data = bytearray(model.read_bytes())
    data[64:512] = b"\xff" * (512 - 64)  # same size: only loading it can tell
    model.write_bytes(bytes(data))
    run_binary(binary, "embed", "fever", "--encoder", str(tiny_copy.encoder)).one_line_error(3, "model.onnx")

    (tiny_copy.prebuilt / "default.json").write_text("{not json", encoding="utf-8")
    run_binary(
        binary, "search", "fever", env=_clean_environment(CARE_EDGE_INDEX_DIR=str(tiny_copy.prebuilt))
    ).one_line_error(3, "default.json")


@pytest.mark.slow
def test_binary_indexes_a_folder_and_searches_it(binary: Path, tmp_path: Path) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "amox.md").write_text("# Amoxicillin\n\n## Dosage\n\nAdults take 500 mg every 8 hours.\n", encoding="utf-8")
    (folder / "photo.txt").write_bytes(bytes(range(256)) * 8)
    env = dict(os.environ, CARE_EDGE_COLLECTIONS_DIR=str(tmp_path / "collections"), XDG_CACHE_HOME=str(tmp_path))
    done = subprocess.run([str(binary), "index", str(folder), "--into", "mine", "--encoder", "query", "--json"],
                          env=env, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 4, done.stderr  # written, one file skipped
    summary = json.loads(done.stdout.splitlines()[-1])["summary"]
    assert summary["indexed"] == 1 and summary["skipped_reasons"] == {"binary content": 1}
    found = subprocess.run([str(binary), "search", "amoxicillin dose", "--index", "mine", "--json"],
                           env=env, capture_output=True, text=True, timeout=120, check=False)
    assert found.returncode == 0, found.stderr
    meta = json.loads(found.stdout)["results"][0]["meta"]
    assert meta["file"] == str(folder / "amox.md") and meta["headings"] == ["Amoxicillin", "Dosage"]
