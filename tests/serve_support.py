"""Helpers of the ``care-edge serve`` tests: small collections of each kind the page renders (codes with a hierarchy,
a user's files with recorded sources, a broken one), an in-process server on an ephemeral loopback port, a
``serve`` process (the binary or ``python -m edge``) for the tests that drive it from outside, and raw
HTTP requests (http.client would normalise the paths the traversal tests need to send as they are)."""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import socket
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import pytest

from edge import QueryEncoder, formats, writers
from edge.serve.catalog import Catalog, CollectionRoot
from edge.serve.server import CareEdgeServer, make_server
from tools.provenance import created_info

TINY_LICENSES = [{"name": "tiny synthetic test data", "license": "Apache-2.0"}]

# A slice of ICD-10 with the meta layout of prebuilt_index/icd10 (texts from the tiny encoder's vocabulary).
CODES = [
    ("J45", "asthma", {"en": "Asthma", "zh": "哮喘", "de": "Asthma bronchiale"}),
    ("J45.0", "asthma allergy", {"en": "Predominantly allergic asthma", "zh": "过敏性哮喘"}),
    ("J45.1", "asthma infection", {"en": "Nonallergic asthma", "zh": "非过敏性哮喘"}),
    ("J45.9", "asthma inhaler", {"en": "Asthma, unspecified", "zh": "未特指的哮喘"}),
    ("J46", "severe asthma night", {"en": "Status asthmaticus", "zh": "哮喘持续状态"}),
    ("R50", "fever", {"en": "Fever of other and unknown origin", "zh": "发热"}),
    ("R50.9", "fever mild", {"en": "Fever, unspecified", "zh": "未特指的发热"}),
]


def _write(directory: Path, encoder: QueryEncoder, name: str, ids: list[str], texts: list[str],
           metas: list[dict[str, Any]], *, lexical: bool = True) -> Path:
    writers.write_collection(
        directory, name=name, description=f"{name} test collection", document_encoder=encoder.alignment,
        vectors=encoder.encode(texts).vectors, ids=ids, texts=texts, metas=metas,
        index_params={"dtype": "f32", "connectivity": 8, "expansion_add": 64, "expansion_search": 64},
        licenses=TINY_LICENSES, created=created_info("tests.serve_support"), lexical=lexical,
    )
    return directory


def build_code_collection(directory: Path, encoder: QueryEncoder) -> Path:
    metas = [{"active": True, "aliases": {}, "chapter": "X" if code[0] == "J" else "XVIII",
              "chapter_number": 10 if code[0] == "J" else 18, "code": code, "level": 3 if "." not in code else 4,
              "names": names, "source": "icd10"} for code, _, names in CODES]
    return _write(directory, encoder, "codes", [code for code, _, _ in CODES],
                  [f"{code} | {text} | {names['zh']}" for code, text, names in CODES], metas)


@dataclass(frozen=True)
class SourceFiles:
    text: Path
    html: Path
    gone: Path


def build_files_collection(directory: Path, encoder: QueryEncoder, sources: Path) -> tuple[Path, SourceFiles]:
    """A collection like `care-edge index` writes: passages whose meta holds the source file's absolute path, page,
    headings and character span. One document's file is removed afterwards, one names a data set instead of a file,
    one is an HTML file."""
    sources.mkdir(parents=True, exist_ok=True)
    files = SourceFiles(sources / "asthma-guide.txt", sources / "notes.html", sources / "deleted.txt")
    files.text.write_text("Asthma inhaler dose for a child.\n", encoding="utf-8")
    files.html.write_text("<script>fetch('/api/health')</script>fever notes", encoding="utf-8")
    files.gone.write_text("soon gone", encoding="utf-8")
    rows = [
        ("guide#1", "asthma inhaler dose for a child",
         {"file": str(files.text), "page": 1, "headings": ["Children", "Dosing"], "span": [0, 31]}),
        ("notes#1", "fever headache night", {"file": str(files.html), "headings": ["Notes"], "span": [0, 20]}),
        ("deleted#1", "cough virus vaccine", {"file": str(files.gone), "span": [0, 19]}),
        ("bare#1", "kidney liver stomach", {"source": "synthetic"}),
    ]
    _write(directory, encoder, "files", [row[0] for row in rows], [row[1] for row in rows], [row[2] for row in rows],
           lexical=False)
    files.gone.unlink()
    return directory, files


def build_broken_collection(directory: Path, template: Path) -> Path:
    shutil.copytree(template, directory)
    vectors = directory / formats.VECTORS_FILE
    vectors.write_bytes(vectors.read_bytes()[:64])
    return directory


# --------------------------------------------------------------------------------------------------- server


class RunningServer:
    def __init__(self, server: CareEdgeServer) -> None:
        self.server = server
        self.port = server.port
        self.thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def raw(self, target: str, headers: dict[str, str] | None = None, *, method: str = "GET",
            body: bytes = b"", host: str | None = "default") -> tuple[int, dict[str, str], bytes]:
        """One request exactly as given (target unnormalised); ``host=None`` sends no Host header."""
        lines = [f"{method} {target} HTTP/1.1"]
        if host is not None:
            lines.append(f"Host: {self.host if host == 'default' else host}")
        lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
        lines.append("Connection: close")
        request = ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8") + body
        with socket.create_connection(("127.0.0.1", self.port), timeout=30) as connection:
            connection.sendall(request)
            chunks = []
            while chunk := connection.recv(65536):
                chunks.append(chunk)
        head, _, payload = b"".join(chunks).partition(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        parsed = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            parsed[name.strip().lower()] = value.strip()
        return int(status_line.split()[1]), parsed, payload

    def get_json(self, target: str, headers: dict[str, str] | None = None) -> tuple[int, Any]:
        status, response_headers, payload = self.raw(target, headers)
        assert response_headers["content-type"].startswith("application/json"), response_headers
        return status, json.loads(payload)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.server.catalog.close()


def start_server(index_root: Path, encoder_dir: Path, user_root: Path | None = None, **options: Any) -> RunningServer:
    roots = [CollectionRoot("index", index_root)] + ([CollectionRoot("user", user_root)] if user_root else [])
    catalog = Catalog.load(encoder_dir=str(encoder_dir), roots=roots)
    return RunningServer(make_server(catalog, host="127.0.0.1", port=0, **options))


def loopback_only_guard(monkeypatch: Any, destinations: list[Any]) -> None:
    """Like conftest's network guard, but connections to 127.0.0.1 (this test's own server) are allowed and logged."""
    original_connect = socket.socket.connect

    def connect(self: socket.socket, address: Any) -> Any:
        destinations.append(address)
        if isinstance(address, tuple) and address[0] == "127.0.0.1":
            return original_connect(self, address)
        raise OSError(f"a test tried to connect to {address!r}")

    def create_connection(address: Any, timeout: float | None = None, *args: Any, **kwargs: Any) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if timeout is not None:
            sock.settimeout(timeout)
        connect(sock, address)
        return sock

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket, "create_connection", create_connection)


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
