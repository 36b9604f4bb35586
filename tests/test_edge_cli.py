"""The care-edge command line: output shapes, batch mode, exit codes, one-line errors, no network.

Subprocess runs (``run_cli``) check what a user sees (exit code, stderr, no traceback); in-process ``main()`` runs
cover the rest quickly.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edge import cli
from edge import formats, writers
from edge.bench import STAGES

SEARCH_KEYS = {"query", "mode", "results", "timings_ms", "truncated"}
RESULT_KEYS = {"id", "score", "text", "meta"}
TIMING_KEYS = {"tokenize", "encode", "search", "lexical", "fetch", "total"}


@pytest.fixture()
def in_process(tiny, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
    """``in_process(*args) -> (exit_code, stdout, stderr)`` via ``edge.cli.main`` against the tiny prebuilt dir."""
    monkeypatch.setenv("CARE_EDGE_INDEX_DIR", str(tiny.prebuilt))
    monkeypatch.delenv("CARE_EDGE_DEBUG", raising=False)

    def run(*args: str | Path) -> tuple[int, str, str]:
        code = cli.main([str(arg) for arg in args])
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


# --------------------------------------------------------------------------------------------------- search


def test_search_json_uses_the_default_collection(run_cli, tiny) -> None:
    result = run_cli("search", tiny.texts[42] + "\x01\x7f", "--json", "-k", "4")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    payload = result.json()
    assert set(payload) == SEARCH_KEYS
    assert payload["query"] == tiny.texts[42]  # control characters stripped
    assert payload["truncated"] is False
    assert set(payload["timings_ms"]) == TIMING_KEYS
    assert len(payload["results"]) == 4
    assert all(set(item) == RESULT_KEYS for item in payload["results"])
    assert payload["results"][0]["id"] == tiny.ids[42]
    assert payload["results"][0]["meta"] == {"row": 42, "source": "synthetic"}


def test_search_human_output(in_process, tiny) -> None:
    code, out, err = in_process("search", tiny.texts[7], "-k", "3", "--index", tiny.collection, "--encoder", tiny.encoder)
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert len(lines) == 4
    assert lines[0].split()[:3] == ["1.", lines[0].split()[1], tiny.ids[7]]
    assert float(lines[0].split()[1]) > 0.9
    assert "tokenize" in lines[-1] and "total" in lines[-1] and "ms" in lines[-1]


def test_index_by_name_and_by_directory(in_process, tiny) -> None:
    by_name = json.loads(in_process("search", "fever", "--index", "tiny", "--json")[1])
    by_dir = json.loads(in_process("search", "fever", "--index", tiny.collection, "--json")[1])
    assert [r["id"] for r in by_name["results"]] == [r["id"] for r in by_dir["results"]]


def test_long_query_is_truncated_with_a_note(run_cli) -> None:
    result = run_cli("search", " ".join(["fever cough"] * 30), "--json")
    assert result.returncode == 0
    assert result.json()["truncated"] is True
    assert "truncated" in result.stderr and "Traceback" not in result.stderr


def test_batch_mode_plain_and_jsonl(run_cli, tiny, tmp_path: Path) -> None:
    queries = tmp_path / "queries.txt"
    lines = [
        tiny.texts[3],
        json.dumps({"query": tiny.texts[9], "id": "q2"}, ensure_ascii=False),
        "头痛 发烧",
        json.dumps({"query": tiny.texts[11]}),
    ]
    queries.write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = run_cli("search", "--queries-file", queries, "--json", "-k", "2")
    assert result.returncode == 0, result.stderr
    records = result.json_lines()
    assert [r["query"] for r in records] == [tiny.texts[3], tiny.texts[9], "头痛 发烧", tiny.texts[11]]
    assert [r["results"][0]["id"] for r in records[:2]] == [tiny.ids[3], tiny.ids[9]]
    assert records[3]["results"][0]["id"] == tiny.ids[11]
    assert all(set(r) == SEARCH_KEYS and len(r["results"]) == 2 for r in records)


def test_batch_mode_invalid_utf8_names_the_line(run_cli, tmp_path: Path) -> None:
    queries = tmp_path / "bad.txt"
    queries.write_bytes(b"fever\ncough\nhead\xff\xfeache\nrash\n")
    result = run_cli("search", "--queries-file", queries, "--json")
    result.assert_error(2, "line 3", "not valid UTF-8")
    assert result.stdout == ""


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (b"fever\n\ncough\n", "line 2 is empty"),
        (b"fever\n  \t \n", "line 2 is empty"),
        (b'fever\n{"q": "x"}\n', 'line 2 is a JSON object without a string "query" field'),
        (b'{"query": "x"\n', "line 1 starts with '{' but is not valid JSON"),
        (b"", "holds no queries"),
    ],
)
def test_batch_mode_bad_lines(in_process, tmp_path: Path, content: bytes, fragment: str) -> None:
    queries = tmp_path / "queries.txt"
    queries.write_bytes(content)
    code, out, err = in_process("search", "--queries-file", queries, "--json")
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and fragment in err, err


def test_search_argument_errors(in_process) -> None:
    for args, fragment in [
        (("search",), "give either a QUERY or --queries-file"),
        (("search", "fever", "-k", "abc"), "-k must be an integer from 1 to 1000"),
        (("search", "fever", "--threads", "0"), "--threads must be a positive integer"),
        (("search", "fever", "--bogus"), "unrecognized arguments: --bogus"),
        (("frobnicate",), "invalid choice"),
    ]:
        code, out, err = in_process(*args)
        assert code == 2 and out == "", args
        assert len(err.strip().splitlines()) == 1 and fragment in err, (args, err)


# --------------------------------------------------------------------------------------------------- exit codes in a real process


def test_empty_query_exit_2(run_cli) -> None:
    run_cli("search", " \t ").assert_error(2, "query is empty")


@pytest.mark.parametrize("k", ["0", "1001", "-3"])
def test_k_out_of_range_exit_2(run_cli, k: str) -> None:
    run_cli("search", "fever", "-k", k).assert_error(2, "-k must be an integer from 1 to 1000")


def test_missing_index_exit_3(run_cli, tmp_path: Path) -> None:
    run_cli("search", "fever", "--index", "no_such_collection").assert_error(
        3, "no collection at", "no_such_collection", "make prebuilt", "--index DIR"
    )
    empty = tmp_path / "empty_prebuilt"
    empty.mkdir()
    run_cli("search", "fever", prebuilt=empty).assert_error(3, "default.json is missing", "make prebuilt")


def test_corrupt_vectors_exit_3(run_cli, tiny_copy) -> None:
    path = tiny_copy.collection / formats.VECTORS_FILE
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    run_cli("search", "fever", prebuilt=tiny_copy.prebuilt).assert_error(3, "vectors.usearch: size")
    manifest = json.loads((tiny_copy.collection / formats.MANIFEST_FILE).read_text(encoding="utf-8"))
    writers.write_manifest(tiny_copy.collection, manifest)  # now the size and hash match: the graph check refuses it
    run_cli("search", "fever", prebuilt=tiny_copy.prebuilt).assert_error(3, "vectors.usearch is not a well-formed usearch index")


def test_corrupt_docs_exit_3(run_cli, tiny_copy) -> None:
    path = tiny_copy.collection / formats.DOCS_FILE
    path.write_bytes(b"\0" * path.stat().st_size)
    manifest = json.loads((tiny_copy.collection / formats.MANIFEST_FILE).read_text(encoding="utf-8"))
    writers.write_manifest(tiny_copy.collection, manifest)
    run_cli("search", "fever", prebuilt=tiny_copy.prebuilt).assert_error(3, "docs.sqlite")


def test_alignment_mismatch_exit_3(run_cli, tiny, tmp_path: Path, build_encoder) -> None:
    other = build_encoder(
        tmp_path / "other",
        alignment={"name": "gemma", "kind": "gguf", "sha256": "ef" * 32, "prompt": "", "pooling": "mean", "dims": 32,
                   "normalize": True},
    )
    line = run_cli("search", "fever", "--encoder", other).assert_error(3, "does not match collection 'tiny'", "--encoder DIR")
    collection_id = formats.read_manifest(tiny.collection, formats.COLLECTION_FORMAT)["alignment_id"]
    assert collection_id in line


def test_unknown_format_version_exit_3(run_cli, tiny_copy) -> None:
    path = tiny_copy.collection / formats.MANIFEST_FILE
    manifest = json.loads(path.read_text(encoding="utf-8"))
    path.write_text(json.dumps({**manifest, "format_version": 99}), encoding="utf-8")
    run_cli("info", prebuilt=tiny_copy.prebuilt).assert_error(3, "format_version 99 is not supported")


def test_unexpected_errors_are_one_line_unless_debugging(in_process, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    from edge.search import Searcher

    def explode(self, queries, k=10, mode=None):
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr(Searcher, "search_batch", explode)
    code, out, err = in_process("search", "fever")
    assert code == 1 and out == ""
    assert err.strip().splitlines() == [
        "care-edge: internal error: RuntimeError: boom second line (set CARE_EDGE_DEBUG=1 for the traceback)"
    ]
    monkeypatch.setenv("CARE_EDGE_DEBUG", "1")
    code, out, err = in_process("search", "fever")
    assert code == 1 and "Traceback" in err


# --------------------------------------------------------------------------------------------------- embed / info / bench


def test_embed_json(run_cli, tiny, tmp_path: Path) -> None:
    result = run_cli("embed", "fever", "头痛", "--json")
    assert result.returncode == 0, result.stderr
    payload = result.json()
    assert {"model", "dim", "vectors"} <= set(payload)
    assert payload["model"] == "tiny-query-encoder" and payload["dim"] == 32
    assert len(payload["vectors"]) == 2 and all(len(v) == 32 for v in payload["vectors"])
    texts = tmp_path / "texts.txt"
    texts.write_text("fever\n头痛\n", encoding="utf-8")
    from_file = run_cli("embed", "--file", texts, "--json", "--encoder", tiny.encoder).json()
    np.testing.assert_allclose(from_file["vectors"], payload["vectors"], atol=1e-6)


def test_embed_plain_and_errors(in_process) -> None:
    code, out, err = in_process("embed", "fever", "cough")
    assert code == 0 and len(out.splitlines()) == 2 and len(out.splitlines()[0].split()) == 32
    code, out, err = in_process("embed", "fever", "\x00")
    assert code == 2 and "TEXT 2 is empty" in err
    code, out, err = in_process("embed")
    assert code == 2 and "give either TEXT arguments or --file F" in err


def test_info_json_and_verify_ok(in_process, tiny) -> None:
    code, out, err = in_process("info", "--json", "--verify")
    assert code == 0, err
    info = json.loads(out)
    assert set(info) == {"collection", "query_encoder", "alignment", "licenses", "verify"}
    assert info["verify"] == {"ok": True, "problems": []}
    assert info["alignment"] == "ok"
    collection = info["collection"]
    assert collection["name"] == "tiny" and collection["documents"] == 200 and collection["dims"] == 32
    assert collection["files"][formats.DOCS_FILE] == (tiny.collection / formats.DOCS_FILE).stat().st_size
    assert collection["total_bytes"] == sum(collection["files"].values())
    assert info["query_encoder"]["name"] == "tiny-query-encoder"
    assert info["query_encoder"]["config"]["max_tokens"] == 16
    assert info["licenses"] == [{"name": "tiny synthetic test data", "license": "Apache-2.0"}]
    code, out, err = in_process("info", "--verify")
    assert code == 0 and "verify       OK" in out and "documents  200" in out


def test_info_verify_names_the_bad_file(run_cli, tiny_copy) -> None:
    path = tiny_copy.encoder / formats.TOKENIZER_FILE
    data = path.read_bytes()
    path.write_bytes(data.replace(b"fever", b"fevor"))
    assert len(path.read_bytes()) == len(data)
    plain = run_cli("info", prebuilt=tiny_copy.prebuilt)
    assert plain.returncode == 0  # sizes match: only --verify reads every byte
    verified = run_cli("info", "--verify", prebuilt=tiny_copy.prebuilt)
    verified.assert_error(3, "verify failed", "tokenizer.json", "sha256")
    assert "FAILED" in verified.stdout


def test_bench_json(run_cli, tiny) -> None:
    result = run_cli("bench", "--json", "--threads", "2", "--intra-op-threads", "2")
    assert result.returncode == 0, result.stderr
    report = result.json()
    assert set(report) == {
        "index", "encoder", "n_queries", "threads", "intra_op_threads", "k", "mode", "open_ms", "encoder_load_ms", "end_to_end_ms", "stages_ms", "qps_1_thread", "qps_n_threads",
        "recall_at_10", "peak_rss_mb", "truncated_queries", "warmup_queries",
        # added with benchmark mode (docs/BENCHMARKS.md, "Bench JSON keys"); the keys above keep their meaning
        "rounds", "round_p50_ms", "round_spread_pct", "by_query_tokens", "created_at", "argv", "machine", "software",
    }
    assert {key: report["index"][key] for key in ("name", "path")} == {"name": "tiny", "path": str(tiny.collection)}
    assert report["encoder"]["name"] == "tiny-query-encoder"
    assert report["n_queries"] == len(tiny.bench_queries) and report["threads"] == 2
    assert report["intra_op_threads"] == 2
    assert report["mode"] == "dense"  # the tiny collection's default_mode
    assert set(report["stages_ms"]) == set(STAGES)
    assert report["stages_ms"]["lexical"]["p99"] == 0.0
    for values in [*report["stages_ms"].values(), report["end_to_end_ms"]]:
        assert set(values) == {"p50", "p95", "p99"}
        assert 0 <= values["p50"] <= values["p95"] <= values["p99"]
    assert report["qps_1_thread"] > 0 and report["qps_n_threads"] > 0 and report["open_ms"] > 0
    assert 0.8 <= report["recall_at_10"] <= 1.0
    assert report["peak_rss_mb"] > 10


def test_bench_with_queries_file_and_human_output(in_process, tmp_path: Path) -> None:
    queries = tmp_path / "q.txt"
    queries.write_text("fever\ncough\n", encoding="utf-8")
    code, out, err = in_process("bench", "--queries", queries, "--threads", "1")
    assert code == 0, err
    assert "queries  2" in out and "recall@10" in out and "end_to_end" in out and "mode dense" in out


def test_bench_hybrid_mode(run_cli) -> None:
    result = run_cli("bench", "--json", "--threads", "1", "--mode", "hybrid")
    assert result.returncode == 0, result.stderr
    report = result.json()
    assert report["mode"] == "hybrid"
    assert report["stages_ms"]["lexical"]["p50"] > 0


def test_search_modes_on_the_command_line(run_cli, in_process, tiny) -> None:
    hybrid = run_cli("search", "fever cough", "--mode", "hybrid", "--json", "-k", "4")
    assert hybrid.returncode == 0, hybrid.stderr
    payload = hybrid.json()
    assert payload["mode"] == "hybrid" and len(payload["results"]) == 4
    assert payload["timings_ms"]["lexical"] > 0
    code, out, err = in_process("search", "fever cough", "--mode", "hybrid")
    assert code == 0 and "lexical" in out
    code, out, err = in_process("search", "fever cough")
    assert code == 0 and "lexical" not in out  # dense mode prints no lexical stage
    run_cli("search", "fever", "--mode", "sparse").assert_error(2, "--mode", "sparse")


# --------------------------------------------------------------------------------------------------- no network


def test_socket_guard_is_armed_in_subprocesses(socket_guard_dir: Path) -> None:
    env = {"PYTHONPATH": str(socket_guard_dir), "PATH": "/usr/bin:/bin"}
    probe = "import socket\ntry:\n    socket.create_connection(('127.0.0.1', 9))\nexcept OSError as e:\n    print(e)\n"
    completed = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, check=True)
    assert "network access is forbidden" in completed.stdout


def _unshare_works() -> bool:
    unshare = shutil.which("unshare")
    if unshare is None:
        return False
    return subprocess.run([unshare, "-n", "true"], capture_output=True, check=False).returncode == 0


def test_cli_runs_without_a_network(run_cli, tiny) -> None:
    """With no network namespace (or, where unshare is unavailable, with sockets disabled) search still works."""
    prefix = ("unshare", "-n") if _unshare_works() else ()
    result = run_cli("search", tiny.texts[0], "--json", prefix=prefix)
    assert result.returncode == 0, result.stderr
    assert result.json()["results"][0]["id"] == tiny.ids[0]


# --------------------------------------------------------------------------------------------------- runtime imports


def _python(code: str) -> subprocess.CompletedProcess[str]:
    env = {"PYTHONPATH": str(Path(cli.__file__).resolve().parent.parent), "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False)


def test_runtime_imports_only_its_declared_dependencies() -> None:
    code = (
        "import sys, edge.cli, edge.bench\n"
        "banned = ('torch', 'llama_cpp', 'tools', 'transformers', 'onnx', 'gguf', 'sentencepiece')\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & set(banned)))\n"
    )
    completed = _python(code)
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == "[]"


def test_wrong_native_import_order_is_an_error_not_a_crash() -> None:
    completed = _python("import usearch\ntry:\n    import edge.collection\nexcept ImportError as e:\n    print(e)\n")
    assert completed.returncode == 0, completed.stderr  # a segfault would be -11
    assert "import edge._native (or onnxruntime) before usearch" in completed.stdout
