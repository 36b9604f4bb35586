"""Adversarial cases as tests: corrupted artifacts, bad queries, hostile environments, and one query one
answer. docs/reliability.md lists every case with its test.

Each corruption keeps the file's size (XOR in place, or an edit of the same length), so only the content check can
see it. The tiny prebuilt directory of conftest runs in the fast tier; the same cases on a copy of the shipped
``prebuilt_index/`` (at the offsets where they once crashed or lied) are slow-marked.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import sys
from pathlib import Path

import numpy as np
import pytest

from edge import formats as fmt
from edge.files import file_entry
from edge.collection import Collection
from edge.encoder import QueryEncoder
from edge.limits import machine_cpus
from edge.text import MAX_QUERY_CHARS

REPO_ROOT = Path(__file__).resolve().parent.parent
PREBUILT = REPO_ROOT / "prebuilt_index"
SHIPPED = (PREBUILT / "default.json").is_file()
needs_shipped = pytest.mark.skipif(not SHIPPED, reason="no shipped default (prebuilt_index/default.json)")


def flip(path: Path, offset: int, length: int = 1, seed: int = 0) -> None:
    """XOR ``length`` bytes of ``path`` from ``offset`` with non-zero random bytes: same size, other content."""
    rng = np.random.default_rng(seed)
    with open(path, "r+b") as handle:
        handle.seek(offset)
        data = np.frombuffer(handle.read(length), dtype=np.uint8)
        handle.seek(offset)
        handle.write((data ^ rng.integers(1, 256, size=data.size, dtype=np.uint8)).tobytes())


def replace_same_size(path: Path, old: bytes, new: bytes) -> None:
    assert len(old) == len(new)
    data = path.read_bytes()
    assert old in data, old
    path.write_bytes(data.replace(old, new, 1))


def swap_vocabulary_entries(path: Path) -> None:
    """Swap two vocabulary entries of the same byte length in tokenizer.json (WordPiece dict or Unigram list)."""
    data = path.read_bytes()
    vocab = json.loads(data)["model"]["vocab"]
    tokens = list(vocab) if isinstance(vocab, dict) else [piece for piece, _ in vocab]
    by_length: dict[int, list[str]] = {}
    for token in tokens[10:]:
        by_length.setdefault(len(json.dumps(token, ensure_ascii=False).encode()), []).append(token)
    first, second = next(group for group in by_length.values() if len(group) >= 2)[:2]
    a, b = (json.dumps(token, ensure_ascii=False).encode() for token in (first, second))
    marker = b"\x00"
    swapped = data.replace(a, marker, 1).replace(b, a, 1).replace(marker, b, 1)
    assert len(swapped) == len(data) and swapped != data
    path.write_bytes(swapped)


@pytest.fixture()
def cli_in_process(tiny, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
    """``cli_in_process(*args, prebuilt=None) -> CliResult`` through ``edge.cli.main`` in this process: for the
    cases that fail before any native code runs, at a fraction of a subprocess's cost."""
    from conftest import CliResult
    from edge import cli

    monkeypatch.delenv("CARE_EDGE_DEBUG", raising=False)

    def run(*args: str | Path, prebuilt: Path | None = None) -> CliResult:
        monkeypatch.setenv("CARE_EDGE_INDEX_DIR", str(prebuilt if prebuilt is not None else tiny.prebuilt))
        code = cli.main([str(arg) for arg in args])
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run


def rewrite_manifest(directory: Path, change) -> None:
    path = directory / fmt.MANIFEST_FILE
    manifest = json.loads(path.read_text(encoding="utf-8"))
    change(manifest)
    path.write_text(json.dumps(manifest), encoding="utf-8")


# --------------------------------------------------------------------------------------------------- corrupted artifacts


def _corrupt(case: str, collection: Path, encoder: Path) -> str:
    """Apply one of the same-size corruptions; returns the file name the error must name."""
    vectors, docs = collection / fmt.VECTORS_FILE, collection / fmt.DOCS_FILE
    model, tokenizer = encoder / fmt.MODEL_FILE, encoder / fmt.TOKENIZER_FILE
    if case == "usearch byte":
        flip(vectors, vectors.stat().st_size * 2 // 3)
        return fmt.VECTORS_FILE
    if case == "usearch range":
        size = vectors.stat().st_size
        flip(vectors, size // 4, min(1 << 20, size // 2))
        return fmt.VECTORS_FILE
    if case == "document text":
        replace_same_size(docs, b"fever", b"fewer")
        return fmt.DOCS_FILE
    if case == "lexical rows deleted":
        size = docs.stat().st_size
        with sqlite3.connect(docs) as connection:
            connection.execute("DELETE FROM lexical_terms")
        assert docs.stat().st_size == size
        return fmt.DOCS_FILE
    if case == "graph range":
        flip(model, model.stat().st_size // 4, min(1 << 16, model.stat().st_size // 2))
        return fmt.MODEL_FILE
    if case == "vocabulary swap":
        swap_vocabulary_entries(tokenizer)
        return fmt.TOKENIZER_FILE
    raise ValueError(case)


CORRUPTIONS = ["usearch byte", "usearch range", "document text", "lexical rows deleted", "graph range",
               "vocabulary swap"]


@pytest.mark.parametrize("case", CORRUPTIONS)
def test_same_size_corruption_is_exit_3(run_cli, tiny_copy, case: str) -> None:
    name = _corrupt(case, tiny_copy.collection, tiny_copy.encoder)
    run_cli("search", "fever", "--mode", "hybrid", prebuilt=tiny_copy.prebuilt).assert_error(
        3, f"{name}: sha256 differs", "re-copy or rebuild")


@pytest.fixture(scope="module")
def shipped_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A writable copy of the shipped prebuilt_index (reports left out)."""
    target = tmp_path_factory.mktemp("shipped") / "prebuilt_index"
    shutil.copytree(PREBUILT, target, ignore=shutil.ignore_patterns("reports"))
    return target


@pytest.fixture()
def restore_shipped(shipped_copy: Path):
    """Each test corrupts one file of the shared copy; put every file back afterwards."""
    yield shipped_copy
    for source in PREBUILT.rglob("*"):
        if source.is_file() and "reports" not in source.parts:
            target = shipped_copy / source.relative_to(PREBUILT)
            if target.read_bytes() != source.read_bytes():
                shutil.copyfile(source, target)


# Offsets of vectors.usearch where one flipped byte once crashed usearch's search (exit 139).
CRASH_OFFSETS = [("cmed-zh", 20_925_856), ("icd10", 11_274_127), ("icd10", 11_375_419), ("icd10", 11_704_307),
                 ("icd10", 11_319_527)]


@pytest.mark.slow
@needs_shipped
@pytest.mark.parametrize(("collection", "offset"), CRASH_OFFSETS)
def test_shipped_usearch_byte_that_crashed_is_exit_3(run_cli, restore_shipped: Path, collection: str,
                                                    offset: int) -> None:
    queries = restore_shipped / collection / fmt.BENCH_QUERIES_FILE
    for seed in range(3):
        flip(restore_shipped / collection / fmt.VECTORS_FILE, offset, seed=seed)
        run_cli("search", "--queries-file", queries, "--index", collection, "--json", prebuilt=restore_shipped,
                timeout=300).assert_error(3, "vectors.usearch: sha256 differs")
        shutil.copyfile(PREBUILT / collection / fmt.VECTORS_FILE, restore_shipped / collection / fmt.VECTORS_FILE)


@pytest.mark.slow
@needs_shipped
@pytest.mark.parametrize("case", CORRUPTIONS)
def test_shipped_same_size_corruption_is_exit_3(run_cli, restore_shipped: Path, case: str) -> None:
    collection = restore_shipped / "cmed-zh"
    if case == "document text":
        replace_same_size(collection / fmt.DOCS_FILE, "高嘌呤".encode(), "低嘌呤".encode())
        name = fmt.DOCS_FILE
    else:
        name = _corrupt(case, collection, restore_shipped / "query_encoder")
    run_cli("search", "痛风 饮食", "--index", "cmed-zh", prebuilt=restore_shipped, timeout=300).assert_error(
        3, f"{name}: sha256 differs")


def test_one_error_line_for_a_graph_that_cannot_load(run_cli, tiny_copy) -> None:
    """A graph whose bytes match a re-written manifest but do not parse is still exit 3 (not 1), one line."""
    model = tiny_copy.encoder / fmt.MODEL_FILE
    model.write_bytes(b"\x08" * model.stat().st_size)
    rewrite_manifest(tiny_copy.encoder, lambda m: m["files"][fmt.MODEL_FILE].update(file_entry(model)))
    run_cli("search", "fever", prebuilt=tiny_copy.prebuilt).assert_error(3, "model.onnx")


# --------------------------------------------------------------------------------------------------- one query, one answer


def _real_texts() -> list[str]:
    cmed = (PREBUILT / "cmed-zh" / fmt.BENCH_QUERIES_FILE).read_text(encoding="utf-8").splitlines()
    icd = (PREBUILT / "icd10" / fmt.BENCH_QUERIES_FILE).read_text(encoding="utf-8").splitlines()
    return [text for text in cmed[:25] + icd[:25] if text.strip()]


@needs_shipped
def test_a_text_embeds_the_same_alone_and_in_any_batch() -> None:
    encoder = QueryEncoder(PREBUILT / "query_encoder")
    collection = Collection(PREBUILT / "cmed-zh")
    texts = _real_texts()
    assert len(texts) == 50
    alone = np.concatenate([encoder.encode([text]).vectors for text in texts])
    # Batches of mixed lengths: each text beside short and long neighbours (a long one is cut at max_tokens).
    long_text = "，".join(texts)
    rng = np.random.default_rng(0)
    batched = np.zeros_like(alone)
    order = rng.permutation(len(texts))
    start = 0
    while start < len(order):
        size = int(rng.integers(2, 9))
        chunk = [int(index) for index in order[start : start + size]]
        vectors = encoder.encode([texts[index] for index in chunk] + [long_text, "痛"]).vectors
        batched[chunk] = vectors[: len(chunk)]
        start += size
    cosines = (alone * batched).sum(axis=1)
    assert cosines.min() >= 0.99999, cosines.min()
    top_alone = [hits.keys.tolist() for hits in collection.search_vectors(alone, 10)]
    top_batched = [hits.keys.tolist() for hits in collection.search_vectors(batched, 10)]
    assert top_alone == top_batched


@needs_shipped
def test_search_alone_and_in_a_queries_file_agree(run_cli, tmp_path: Path) -> None:
    query = "支气管炎可以吃猴枣散吗"
    fourth = (PREBUILT / "cmed-zh" / fmt.BENCH_QUERIES_FILE).read_text(encoding="utf-8").splitlines()[3]
    queries = tmp_path / "queries.txt"
    queries.write_text(f"{query}\n{fourth}\n", encoding="utf-8")
    alone = run_cli("search", query, "--index", "cmed-zh", "--mode", "dense", "-k", "10", "--json",
                    prebuilt=PREBUILT, timeout=300)
    batch = run_cli("search", "--queries-file", queries, "--index", "cmed-zh", "--mode", "dense", "-k", "10",
                    "--json", prebuilt=PREBUILT, timeout=300)
    assert alone.returncode == 0 and batch.returncode == 0, (alone.stderr, batch.stderr)
    ids_alone = [result["id"] for result in alone.json()["results"]]
    ids_batch = [result["id"] for result in batch.json_lines()[0]["results"]]
    assert ids_alone == ids_batch


def test_embed_alone_and_in_a_file_agree(run_cli, tiny, tmp_path: Path) -> None:
    texts = ["fever", "what is the dose for a child with fever and cough at night", "头痛"]
    batch_file = tmp_path / "texts.txt"
    batch_file.write_text("\n".join(texts) + "\n", encoding="utf-8")
    batch = run_cli("embed", "--file", batch_file, "--json").json()["vectors"]
    for text, vector in zip(texts, batch):
        assert run_cli("embed", text, "--json").json()["vectors"][0] == vector


# --------------------------------------------------------------------------------------------------- bad queries


def test_zero_width_only_query_is_empty(run_cli, cli_in_process, tmp_path: Path) -> None:
    run_cli("search", "\u200b\u200c\u200d\u2060").assert_error(2, "query is empty")
    queries = tmp_path / "queries.txt"
    queries.write_text("fever\n\u200b\ufeff\u200d\n", encoding="utf-8")
    cli_in_process("search", "--queries-file", queries).assert_error(2, "line 2 is empty")


def test_huge_single_line_query_is_echoed_cut(run_cli, tmp_path: Path) -> None:
    queries = tmp_path / "queries.txt"
    queries.write_text("fever " * (10_000_000 // 6) + "\n", encoding="utf-8")  # one 10 MB line
    usage = tmp_path / "rusage"
    # Runs the CLI in a child of a small wrapper that records the child's peak memory.
    wrapper = ("import resource, subprocess, sys; code = subprocess.call(sys.argv[2:]); "
               "open(sys.argv[1], 'w').write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)); "
               "sys.exit(code)")
    result = run_cli("search", "--queries-file", queries, "--json", prefix=(sys.executable, "-c", wrapper, usage))
    assert result.returncode == 0, result.stderr
    (response,) = result.json_lines()
    assert response["truncated"] is True
    assert len(response["query"]) <= MAX_QUERY_CHARS + 1
    assert len(result.stdout) < 200_000
    peak_mib = int(usage.read_text()) / 1024
    assert peak_mib < 400, f"peak RSS {peak_mib:.0f} MiB for a 10 MB query"


def test_query_arguments_are_utf8_under_a_c_locale(run_cli) -> None:
    env = {"LC_ALL": "C", "LANG": "C", "PYTHONUTF8": "0", "PYTHONCOERCECLOCALE": "0", "PYTHONIOENCODING": ""}
    result = run_cli("search", "头痛", "--json", env=env)
    assert result.returncode == 0, result.stderr
    assert result.json()["query"] == "头痛"
    embedded = run_cli("embed", "头痛", "--json", env=env)
    assert embedded.returncode == 0, embedded.stderr
    assert embedded.json()["vectors"] == run_cli("embed", "头痛", "--json").json()["vectors"]


def test_invalid_utf8_argument_is_exit_2(run_cli) -> None:
    result = run_cli("search", os.fsdecode(b"\xff\xfe fever"))
    result.assert_error(2, "query is not valid UTF-8")


# --------------------------------------------------------------------------------------------------- limits


@pytest.mark.parametrize("threads", ["1000000000", pytest.param("2000", marks=pytest.mark.slow),
                                     pytest.param(str(machine_cpus() + 1), marks=pytest.mark.slow)])
def test_intra_op_threads_are_bounded(run_cli, cli_in_process, threads: str) -> None:
    run_cli("search", "fever", "--threads", threads).assert_error(2, "--threads must be at most", "this machine's CPUs")
    cli_in_process("embed", "fever", "--threads", threads).assert_error(2, "--threads must be at most")
    cli_in_process("bench", "--intra-op-threads", threads).assert_error(2, "--intra-op-threads must be at most")


def test_bench_threads_are_bounded(cli_in_process) -> None:
    cli_in_process("bench", "--threads", "100000").assert_error(2, "--threads must be at most")


@pytest.mark.parametrize("value", [-5, 10**12, "abc"] + [pytest.param(value, marks=pytest.mark.slow)
                                                           for value in (0, 1.5, True, None)])
def test_bad_expansion_search_is_exit_3(cli_in_process, tiny_copy, value) -> None:
    rewrite_manifest(tiny_copy.collection, lambda m: m["index"].update(expansion_search=value))
    cli_in_process("search", "fever", prebuilt=tiny_copy.prebuilt).assert_error(3, "index.expansion_search must be")


@pytest.mark.parametrize("name", ["docs\x00.sqlite", "../docs.sqlite"] + [pytest.param(name, marks=pytest.mark.slow)
                                                                       for name in ("\x00", "/etc/passwd")])
def test_manifest_file_names_must_be_plain(cli_in_process, tiny_copy, name: str) -> None:
    rewrite_manifest(tiny_copy.collection, lambda m: m["files"].update({name: {"size": 1, "sha256": "0" * 64}}))
    cli_in_process("search", "fever", prebuilt=tiny_copy.prebuilt).assert_error(
        3, "only plain file names are allowed")


# --------------------------------------------------------------------------------------------------- special files


SPECIAL_FILE_CASES = [(target, kind) for target in ("collection manifest", "encoder manifest", "encoder config",
                                                     "default.json") for kind in ("/dev/zero", "fifo", "directory")]
# Each target and each kind once in the fast tier; every pair in the slow one.
FAST_SPECIAL_FILE_CASES = [("collection manifest", "/dev/zero"), ("encoder manifest", "fifo"),
                           ("encoder config", "directory"), ("default.json", "fifo")]


@pytest.mark.parametrize(("target", "kind"), [
    case if case in FAST_SPECIAL_FILE_CASES else pytest.param(*case, marks=pytest.mark.slow)
    for case in SPECIAL_FILE_CASES])
def test_special_files_in_place_of_artifacts(run_cli, tiny_copy, tmp_path: Path, kind: str, target: str) -> None:
    path = {
        "collection manifest": tiny_copy.collection / fmt.MANIFEST_FILE,
        "encoder manifest": tiny_copy.encoder / fmt.MANIFEST_FILE,
        "encoder config": tiny_copy.encoder / fmt.CONFIG_FILE,
        "default.json": tiny_copy.prebuilt / "default.json",
    }[target]
    path.unlink()
    if kind == "/dev/zero":
        path.symlink_to("/dev/zero")
    elif kind == "fifo":
        os.mkfifo(path)
    else:
        path.mkdir()
    run_cli("search", "fever", prebuilt=tiny_copy.prebuilt, timeout=30).assert_error(3)
    info = run_cli("info", prebuilt=tiny_copy.prebuilt, timeout=30)
    if target.startswith("encoder"):  # info describes the collection and notes what is wrong with the encoder
        assert info.returncode == 0 and len(info.stderr.splitlines()) == 1, info.stderr
        assert "note:" in info.stderr
    else:
        info.assert_error(3)


@pytest.mark.parametrize("kind", ["/dev/zero", "fifo", "directory"])
def test_special_files_as_queries_file(run_cli, cli_in_process, tmp_path: Path, kind: str) -> None:
    path = tmp_path / "queries"
    if kind == "/dev/zero":
        path.symlink_to("/dev/zero")
    elif kind == "fifo":
        os.mkfifo(path)
    else:
        path.mkdir()
    run_cli("search", "--queries-file", path, timeout=30).assert_error(2, "not a regular file")
    cli_in_process("embed", "--file", path).assert_error(2, "not a regular file")


def test_endless_stdin_is_cut(run_cli) -> None:
    from edge.queryfile import MAX_QUERIES_BYTES

    result = run_cli("search", "--queries-file", "-", prefix=("sh", "-c", 'head -c 80000000 /dev/zero | "$@"', "sh"),
                     timeout=60)
    result.assert_error(2, f"larger than {MAX_QUERIES_BYTES} bytes")


# --------------------------------------------------------------------------------------------------- optional parts


def test_missing_bench_queries_only_matters_to_bench(run_cli, tiny_copy, tmp_path: Path) -> None:
    (tiny_copy.collection / fmt.BENCH_QUERIES_FILE).unlink()
    result = run_cli("search", "fever", "--json", prebuilt=tiny_copy.prebuilt)
    assert result.returncode == 0, result.stderr
    run_cli("bench", prebuilt=tiny_copy.prebuilt).assert_error(3, "bench_queries.txt: missing")
    queries = tmp_path / "queries.txt"
    queries.write_text("fever\ncough\n", encoding="utf-8")
    bench = run_cli("bench", "--queries", queries, "--threads", "1", "--json", prebuilt=tiny_copy.prebuilt)
    assert bench.returncode == 0, bench.stderr


def test_corrupt_bench_queries_stops_bench_only(run_cli, tiny_copy) -> None:
    flip(tiny_copy.collection / fmt.BENCH_QUERIES_FILE, 3)
    assert run_cli("search", "fever", prebuilt=tiny_copy.prebuilt).returncode == 0
    run_cli("bench", prebuilt=tiny_copy.prebuilt).assert_error(3, "bench_queries.txt: sha256 differs")


def test_dropped_lexical_tables_block_only_hybrid(run_cli, tiny_copy) -> None:
    docs = tiny_copy.collection / fmt.DOCS_FILE
    with sqlite3.connect(docs) as connection:
        connection.execute("DROP TABLE lexical_terms")
    rewrite_manifest(tiny_copy.collection, lambda m: m["files"][fmt.DOCS_FILE].update(file_entry(docs)))
    dense = run_cli("search", "fever", "--mode", "dense", "--json", prebuilt=tiny_copy.prebuilt)
    assert dense.returncode == 0, dense.stderr
    assert dense.json()["results"]
    run_cli("search", "fever", "--mode", "hybrid", prebuilt=tiny_copy.prebuilt).assert_error(
        3, "no lexical_terms table")
