"""``care-edge serve``'s JSON API against an in-process server on an ephemeral loopback port: the same answers as
``care-edge search --json``, the CLI's one-line messages as HTTP 400, the code hierarchy, a user's source files,
collections that cannot be opened, and concurrent clients."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import quote, urlencode

import pytest

from edge import QueryEncoder
from serve_support import (RunningServer, build_broken_collection, build_code_collection, build_files_collection,
                           loopback_only_guard, start_server)

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Overrides conftest's guard: the test's own loopback server may be reached, nothing else."""
    loopback_only_guard(monkeypatch, [])


@pytest.fixture(scope="module")
def layout(tiny, tmp_path_factory: pytest.TempPathFactory, build_encoder, build_collection) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("serve")
    index_root = root / "prebuilt_index"
    shutil.copytree(tiny.prebuilt, index_root)
    encoder = QueryEncoder(index_root / "query_encoder")
    build_code_collection(index_root / "codes", encoder)
    build_broken_collection(index_root / "broken", index_root / "tiny")
    # A collection built for another query encoder: listed, with the alignment message, never searched.
    build_collection(index_root / "other-encoder", build_encoder(root / "other-encoder-model", seed=7), count=20)
    user_root = root / "user" / "collections"
    _, files = build_files_collection(user_root / "my-notes", encoder, root / "user" / "documents")
    return {"index_root": index_root, "user_root": user_root, "files": files, "encoder": index_root / "query_encoder"}


@pytest.fixture(scope="module")
def server(layout: dict[str, Any]) -> Iterator[RunningServer]:
    running = start_server(layout["index_root"], layout["encoder"], layout["user_root"])
    yield running
    running.close()


def _search(server: RunningServer, **params: Any) -> tuple[int, Any]:
    return server.get_json("/api/search?" + urlencode(params))


def _assert_one_line_error(status: int, body: Any, expected_status: int, *fragments: str) -> None:
    assert status == expected_status, body
    assert set(body) == {"error"} and "\n" not in body["error"] and "Traceback" not in body["error"], body
    for fragment in fragments:
        assert fragment in body["error"], (fragment, body)


def test_health_and_collections(server: RunningServer) -> None:
    status, health = server.get_json("/api/health")
    assert status == 200 and health["status"] == "ok"
    assert health["query_encoder"] == "tiny-query-encoder"
    assert health["collections"] == {"available": 3, "unavailable": 2}

    status, listing = server.get_json("/api/collections")
    assert status == 200 and listing["default"] == "tiny"
    by_name = {item["name"]: item for item in listing["collections"]}
    assert set(by_name) == {"broken", "codes", "tiny", "my-notes", "other-encoder"}
    assert by_name["codes"]["kind"] == "codes" and by_name["codes"]["documents"] == 7
    assert by_name["my-notes"]["kind"] == "files" and by_name["my-notes"]["origin"] == "user"
    assert by_name["my-notes"]["modes"] == ["dense"]
    assert by_name["tiny"]["modes"] == ["dense", "hybrid"] and by_name["tiny"]["default"] is True
    assert by_name["broken"]["available"] is False and "vectors.usearch" in by_name["broken"]["error"]
    assert by_name["other-encoder"]["available"] is False and "does not match" in by_name["other-encoder"]["error"]
    status, body = _search(server, q="fever", index="other-encoder")
    _assert_one_line_error(status, body, 503, "cannot be searched", "alignment_id")


@pytest.mark.parametrize("mode", ["dense", "hybrid"])
def test_search_answers_what_the_cli_prints(server: RunningServer, run_cli, layout: dict[str, Any], mode: str,
                                           tmp_path: Path) -> None:
    queries = ["asthma inhaler for a child", "头痛 发烧", "fever at night"]
    queries_file = tmp_path / "queries.txt"
    queries_file.write_text("\n".join(queries) + "\n", encoding="utf-8")
    cli = run_cli("search", "--queries-file", queries_file, "--json", "-k", "7", "--mode", mode,
                  prebuilt=layout["index_root"])
    assert cli.returncode == 0, cli.stderr
    expected = cli.json_lines()
    for query, want in zip(queries, expected):
        status, got = _search(server, q=query, k=7, mode=mode, index="tiny")
        assert status == 200, got
        assert set(got) == set(want)
        # Timings differ run to run; everything else is the same call, so the same bytes.
        for response in (got, want):
            assert set(response.pop("timings_ms")) == {"tokenize", "encode", "search", "lexical", "fetch", "total"}
        assert got == want and len(got["results"]) == 7


def test_search_defaults_to_the_default_collection_and_its_mode(server: RunningServer) -> None:
    status, body = _search(server, q="fever")
    assert status == 200 and body["mode"] == "dense" and len(body["results"]) == 10
    assert body["results"][0]["id"].startswith("doc-")


@pytest.mark.parametrize(
    ("params", "fragments"),
    [
        ({}, ["missing parameter 'q'"]),
        ({"q": "   "}, ["query is empty"]),
        ({"q": "\x00\x01"}, ["query is empty"]),
        ({"q": "x" * 1001}, ["longer than 1000 characters"]),
        ({"q": "fever", "k": "0"}, ["-k must be an integer from 1 to 100, got 0"]),
        ({"q": "fever", "k": "101"}, ["got 101"]),
        ({"q": "fever", "k": "ten"}, ["got 'ten'"]),
        ({"q": "fever", "k": "1e3"}, ["-k must be an integer"]),
        ({"q": "fever", "mode": "sparse"}, ["--mode must be one of dense, hybrid, got 'sparse'"]),
        ({"q": "fever", "index": "nope"}, ["unknown collection 'nope'", "tiny"]),
        ({"q": "fever", "index": "../tiny"}, ["unknown collection '../tiny'"]),
        ({"q": "fever", "index": "/etc"}, ["unknown collection '/etc'"]),
        ({"q": "fever", "index": "my-notes", "mode": "hybrid"}, ["no lexical table", "mode=dense"]),
        ({"q": "fever", "limit": "3"}, ["unknown parameter 'limit'"]),
    ],
)
def test_bad_search_parameters_are_400_with_one_line(server: RunningServer, params: dict[str, str],
                                                     fragments: list[str]) -> None:
    status, body = _search(server, **params)
    _assert_one_line_error(status, body, 400, *fragments)


@pytest.mark.parametrize(
    ("target", "fragment"),
    [
        ("/api/search?q=fever&q=cough", "parameter 'q' given 2 times"),
        ("/api/search?q=%ff%fe", "not valid UTF-8"),
        ("/api/search?" + "&".join(f"p{i}=1" for i in range(20)), "more than 16 parameters"),
        ("/api/collections?x=1", "unknown parameter 'x'"),
        ("/api/doc?index=codes", "missing parameter 'id'"),
        ("/api/doc?index=codes&id=" + "A" * 201, "id must be 1 to 200 characters"),
    ],
)
def test_malformed_queries_are_400(server: RunningServer, target: str, fragment: str) -> None:
    status, body = server.get_json(target)
    _assert_one_line_error(status, body, 400, fragment)


def test_a_collection_that_cannot_open_is_503_not_a_traceback(server: RunningServer) -> None:
    status, body = _search(server, q="fever", index="broken")
    _assert_one_line_error(status, body, 503, "collection 'broken' cannot be searched", "vectors.usearch")


def test_unknown_endpoint_is_404_json(server: RunningServer) -> None:
    status, body = server.get_json("/api/secrets")
    _assert_one_line_error(status, body, 404, "no endpoint")


def test_code_view_walks_the_hierarchy(server: RunningServer) -> None:
    status, body = server.get_json("/api/doc?index=codes&id=J45.0")
    assert status == 200
    assert body["document"]["meta"]["names"]["zh"] == "过敏性哮喘"
    assert body["parent"]["id"] == "J45"
    assert body["children"] == []

    status, body = server.get_json("/api/doc?index=codes&id=J45")
    assert body["parent"] is None
    # J46 shares no prefix with J45; J45.0/.1/.9 are its children, in code order.
    assert [child["id"] for child in body["children"]] == ["J45.0", "J45.1", "J45.9"]

    status, body = server.get_json("/api/doc?index=codes&id=" + quote("J99"))
    _assert_one_line_error(status, body, 404, "no document 'J99' in collection 'codes'")


def test_plain_documents_have_no_hierarchy(server: RunningServer) -> None:
    status, body = server.get_json("/api/doc?index=tiny&id=doc-0001")
    assert status == 200 and body["parent"] is None and body["children"] == []


def test_source_file_is_served_from_the_recorded_path_only(server: RunningServer, layout: dict[str, Any]) -> None:
    status, headers, payload = server.raw("/api/file?index=my-notes&id=" + quote("guide#1"))
    assert status == 200 and payload == layout["files"].text.read_bytes()
    assert headers["content-type"] == "text/plain; charset=utf-8"
    assert headers["content-security-policy"] == "sandbox"

    # An HTML source must not run script in the page's origin: plain text, sandboxed.
    status, headers, payload = server.raw("/api/file?index=my-notes&id=" + quote("notes#1"))
    assert status == 200 and b"<script>" in payload
    assert headers["content-type"].startswith("text/plain") and headers["content-security-policy"] == "sandbox"

    status, body = server.get_json("/api/file?index=my-notes&id=" + quote("deleted#1"))
    _assert_one_line_error(status, body, 404, "no longer at")
    status, body = server.get_json("/api/file?index=my-notes&id=" + quote("bare#1"))
    _assert_one_line_error(status, body, 404, "records no source file")
    # Only ids name files: a path in the id is just an unknown id.
    status, body = server.get_json("/api/file?index=my-notes&id=" + quote("/etc/passwd"))
    _assert_one_line_error(status, body, 404, "no document '/etc/passwd'")
    # The shipped collections record a source name, not a file.
    status, body = server.get_json("/api/file?index=codes&id=J45")
    _assert_one_line_error(status, body, 404, "records no source file")


def test_concurrent_clients_get_the_sequential_answers(server: RunningServer) -> None:
    queries = ["asthma inhaler", "fever at night", "头痛 发烧", "chest pain", "blood pressure", "cough virus"] * 4

    def answer(query: str) -> tuple[int, list[str]]:
        status, body = _search(server, q=query, k=5, index="tiny", mode="hybrid")
        return status, [result["id"] for result in body["results"]]

    sequential = [answer(query) for query in queries]
    with ThreadPoolExecutor(max_workers=8) as pool:
        concurrent = list(pool.map(answer, queries))
    assert concurrent == sequential and all(status == 200 for status, _ in sequential)


# --------------------------------------------------------------------------------------------------- the command


def _serve_command(*args: str, index_dir: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "edge", "serve", *args], cwd=REPO_ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={"PATH": "/usr/bin:/bin", "CARE_EDGE_INDEX_DIR": str(index_dir), "HOME": str(index_dir)})


def _first_line(process: subprocess.Popen[str]) -> str:
    """The command's first stdout line; the process is stopped (and its stderr shown) when it is not the URL."""
    line = process.stdout.readline() if process.stdout else ""
    if "serving" not in line:
        process.terminate()
        pytest.fail(f"no URL line: {line!r} {process.communicate(timeout=30)[1]!r}")
    return line


def test_serve_command_prints_its_loopback_url_and_serves(layout: dict[str, Any]) -> None:
    process = _serve_command("--port", "0", index_dir=layout["index_root"])
    try:
        line = _first_line(process)
        # The index folder's collections that open (the user folder is the runtime's own, not this test's).
        assert "serving 2 collection(s) at http://127.0.0.1:" in line, line
        server_stub = RunningServer.__new__(RunningServer)
        server_stub.port = int(line.split("http://127.0.0.1:")[1].split("/")[0])
        status, body = server_stub.get_json("/api/health")
        assert status == 200 and body["status"] == "ok"
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=30)
    assert "note: collection broken is not available" in stderr
    assert "Traceback" not in stderr


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("--port", "http"), "--port must be an integer from 0 to 65535, got 'http'"),
        (("--port", "70000"), "got 70000"),
        (("--host", "example.com"), "--host must be an IP address (or localhost), got 'example.com'"),
        (("--threads", "0"), "--threads must be a positive integer"),
    ],
)
def test_serve_command_bad_arguments_exit_2_with_one_line(layout: dict[str, Any], args: tuple[str, ...],
                                                          fragment: str) -> None:
    process = _serve_command(*args, index_dir=layout["index_root"])
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 2, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and fragment in lines[0], stderr


def test_serve_command_on_a_busy_port_exits_2(layout: dict[str, Any], server: RunningServer) -> None:
    process = _serve_command("--port", str(server.port), index_dir=layout["index_root"])
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 2 and f"cannot listen on 127.0.0.1:{server.port}" in stderr, stderr


def test_serve_command_warns_when_not_loopback(layout: dict[str, Any]) -> None:
    process = _serve_command("--port", "0", "--host", "0.0.0.0", index_dir=layout["index_root"])
    try:
        _first_line(process)
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=30)
    assert "warning: listening on 0.0.0.0: anyone who can reach this machine" in stderr


def test_load_test_clients_and_cli_comparison(server: RunningServer, layout: dict[str, Any],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from edge.serve.loadtest import compare_with_cli, run_clients

    work = [("tiny", mode, query) for mode in ("dense", "hybrid") for query in ("fever at night", "头痛 发烧", "asthma")]
    report = run_clients(f"http://{server.host}/", work, clients=2, seconds=1.0)
    assert report["errors"] == 0 and report["requests"] > len(work)
    assert 0 < report["latency_ms"]["p50"] <= report["latency_ms"]["p99"]
    assert set(report["answers"]) == set(work)
    monkeypatch.setenv("CARE_EDGE_INDEX_DIR", str(layout["index_root"]))
    same = compare_with_cli([sys.executable, "-m", "edge"], report["answers"], sample=3)
    assert same == {"compared": 3, "mismatches": 0, "mismatch_examples": []}
    # A changed answer is caught.
    key = sorted(report["answers"])[0]
    report["answers"][key] = {**report["answers"][key], "results": report["answers"][key]["results"][::-1]}
    assert compare_with_cli([sys.executable, "-m", "edge"], report["answers"], sample=6)["mismatches"] == 1


def test_connection_threads_stay_bounded(server: RunningServer) -> None:
    import threading

    # Each request below is a new connection; a thread per connection would also mean a SQLite connection each.
    for _ in range(40):
        assert server.get_json("/api/search?q=fever&k=1")[0] == 200
    workers = [thread for thread in threading.enumerate() if thread.name.startswith("care-edge-serve")]
    assert 0 < len(workers) <= 16


def test_serve_open_starts_the_browser_on_its_url(layout: dict[str, Any], tmp_path: Path) -> None:
    opened = tmp_path / "opened.txt"
    browser = tmp_path / "browser.sh"
    browser.write_text(f'#!/bin/sh\necho "$1" > {opened}\n', encoding="utf-8")
    browser.chmod(0o755)
    process = subprocess.Popen([sys.executable, "-m", "edge", "serve", "--port", "0", "--open"], cwd=REPO_ROOT,
                               text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               env={"PATH": "/usr/bin:/bin", "CARE_EDGE_INDEX_DIR": str(layout["index_root"]),
                                    "HOME": str(tmp_path), "BROWSER": str(browser)})
    try:
        line = _first_line(process)
        url = line.split(" at ")[1].split()[0]
        for _ in range(100):
            if opened.exists() and opened.read_text(encoding="utf-8").strip():
                break
            time.sleep(0.1)
        assert opened.read_text(encoding="utf-8").strip() == url
    finally:
        process.terminate()
        process.communicate(timeout=30)
