"""``care-edge serve`` on a shared workstation: only its own Host and Origin are served (DNS rebinding, other sites),
no file outside the package's static folder is reachable by any spelling of a path, and requests are bounded."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Iterator

import pytest

from edge import QueryEncoder
from edge.serve.server import STATIC_DIR, HostPolicy
from serve_support import RunningServer, build_files_collection, loopback_only_guard, start_server

SECRET = "root:x:0:0 care-edge-secret-marker"


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    loopback_only_guard(monkeypatch, [])


@pytest.fixture(scope="module")
def server(tiny, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    root = tmp_path_factory.mktemp("serve-security")
    index_root = root / "prebuilt_index"
    shutil.copytree(tiny.prebuilt, index_root)
    # Files a traversal would be after: one beside the collections, one at the file-system root of the layout.
    (index_root / "secret.txt").write_text(SECRET, encoding="utf-8")
    (root / "secret.txt").write_text(SECRET, encoding="utf-8")
    build_files_collection(root / "user" / "notes", QueryEncoder(index_root / "query_encoder"), root / "documents")
    running = start_server(index_root, index_root / "query_encoder", root / "user")
    running.secret_root = root  # type: ignore[attr-defined]
    yield running
    running.close()


# --------------------------------------------------------------------------------------------------- Host / Origin


@pytest.mark.parametrize("host", ["127.0.0.1:{port}", "localhost:{port}", "LOCALHOST:{port}"])
def test_own_host_names_are_served(server: RunningServer, host: str) -> None:
    status, _, _ = server.raw("/api/health", host=host.format(port=server.port))
    assert status == 200


@pytest.mark.parametrize(
    "host",
    [
        "attacker.example:{port}",  # DNS rebinding: the attacker's name resolved to 127.0.0.1
        "127.0.0.1.attacker.example:{port}",
        "localhost.attacker.example:{port}",
        "127.0.0.1:{other}",  # another port is another origin
        "127.0.0.1",  # no port
        "10.1.2.3:{port}",  # an address this server is not bound to
        "127.0.0.1:{port}@attacker.example",
        "",
    ],
)
def test_foreign_host_is_refused_before_any_work(server: RunningServer, host: str) -> None:
    target = "/api/search?q=fever"
    status, headers, payload = server.raw(target, host=host.format(port=server.port, other=server.port + 1))
    assert status == 403, payload
    assert headers["content-type"].startswith("application/json") and b"Host header" in payload
    status, _, payload = server.raw("/", host=host.format(port=server.port, other=server.port + 1))
    assert status == 403 and b"<html" not in payload


def test_missing_host_is_refused(server: RunningServer) -> None:
    status, _, _ = server.raw("/api/health", host=None)
    assert status in (400, 403)


@pytest.mark.parametrize("origin", ["http://attacker.example", "http://attacker.example:{port}", "null",
                                    "https://127.0.0.1:{port}", "http://127.0.0.1:{other}", "file://"])
def test_foreign_origin_is_refused(server: RunningServer, origin: str) -> None:
    origin = origin.format(port=server.port, other=server.port + 1)
    status, headers, payload = server.raw("/api/search?q=fever", {"Origin": origin})
    assert status == 403 and b"another site" in payload
    assert "access-control-allow-origin" not in headers


def test_own_origin_is_served_without_cors_headers(server: RunningServer) -> None:
    status, headers, _ = server.raw("/api/search?q=fever", {"Origin": f"http://127.0.0.1:{server.port}",
                                                             "Sec-Fetch-Site": "same-origin"})
    assert status == 200
    # No CORS grant at all: a page elsewhere can never read an answer.
    assert not any(name.startswith("access-control-") for name in headers)
    assert headers["cross-origin-resource-policy"] == "same-origin"


@pytest.mark.parametrize("site", ["cross-site", "same-site"])
def test_api_refuses_requests_another_site_caused(server: RunningServer, site: str) -> None:
    # <img src="http://127.0.0.1:PORT/api/search?q=..."> on another page sends no Origin, but Sec-Fetch-Site.
    status, _, payload = server.raw("/api/search?q=fever", {"Sec-Fetch-Site": site})
    assert status == 403 and b"another site" in payload


def test_page_carries_a_strict_content_security_policy(server: RunningServer) -> None:
    status, headers, payload = server.raw("/")
    assert status == 200 and b'<script src="/static/app.js"' in payload
    policy = headers["content-security-policy"]
    assert "default-src 'none'" in policy and "connect-src 'self'" in policy and "script-src 'self'" in policy
    assert headers["x-content-type-options"] == "nosniff"


def test_host_policy_for_a_wildcard_bind() -> None:
    policy = HostPolicy("0.0.0.0", 8765, "0.0.0.0")
    assert policy.allows_host("192.168.1.20:8765") and policy.allows_host("localhost:8765")
    # A name is how rebinding arrives: still refused on a wildcard bind.
    assert not policy.allows_host("attacker.example:8765") and not policy.allows_host("192.168.1.20:80")


# --------------------------------------------------------------------------------------------------- static files


@pytest.mark.parametrize(
    "target",
    [
        "/static/../secret.txt",
        "/static/../../secret.txt",
        "/../secret.txt",
        "/static/%2e%2e/%2e%2e/secret.txt",
        "/static/%2E%2E%2Fsecret.txt",
        "/static/..%2f..%2fsecret.txt",
        "/static/%252e%252e/secret.txt",
        "/static/..\\..\\secret.txt",
        "/static//etc/passwd",
        "//etc/passwd",
        "//localhost/static/app.js",
        "/etc/passwd",
        "/static/%2Fetc%2Fpasswd",
        "/static/app.js%00.html",
        "/static/./app.js/../../secret.txt",
        "/static/.",
        "/static/",
        "/prebuilt_index/default.json",
        "/secret.txt",
        "/static/server.py",
        "/static/../server.py",
        "/static/%2e%2e/server.py",
    ],
)
def test_no_path_reaches_a_file_outside_the_static_table(server: RunningServer, target: str) -> None:
    status, headers, payload = server.raw(target)
    assert status in (400, 404), (target, status)
    assert headers["content-type"].startswith("application/json")
    assert b"care-edge-secret-marker" not in payload and b"root:" not in payload and b"import" not in payload


def test_absolute_form_and_non_path_targets_are_refused(server: RunningServer) -> None:
    for target in (f"http://127.0.0.1:{server.port}/etc/passwd", "file:///etc/passwd", "*"):
        status, _, payload = server.raw(target)
        assert status == 400 and b"must be a path" in payload, target


def test_static_table_is_exactly_the_package_folder(server: RunningServer) -> None:
    names = sorted(path.name for path in STATIC_DIR.iterdir() if path.is_file())
    assert names == ["app.js", "index.html", "style.css"]
    for name in names:
        status, headers, payload = server.raw(f"/static/{name}")
        assert status == 200 and payload == (STATIC_DIR / name).read_bytes()
    assert server.raw("/static/app.js")[1]["content-type"] == "text/javascript; charset=utf-8"


def test_source_files_are_served_by_document_id_only(server: RunningServer) -> None:
    root: Path = server.secret_root  # type: ignore[attr-defined]
    for params in (f"index=notes&id={root / 'secret.txt'}", "index=notes&id=../secret.txt",
                   f"index=notes&path={root / 'secret.txt'}", "index=../prebuilt_index&id=secret.txt"):
        status, _, payload = server.raw(f"/api/file?{params}")
        assert status in (400, 404) and b"care-edge-secret-marker" not in payload, params


# --------------------------------------------------------------------------------------------------- limits


def test_long_url_is_414(server: RunningServer) -> None:
    status, _, payload = server.raw("/api/search?q=" + "a" * 5000)
    assert status == 414 and b"URL longer than 4096" in payload


def test_request_bodies_and_other_methods_are_refused(server: RunningServer) -> None:
    status, _, payload = server.raw("/api/search?q=fever", {"Content-Length": "5"}, body=b"hello")
    assert status == 413 and b"bodies" in payload
    for method in ("POST", "PUT", "DELETE", "OPTIONS", "PATCH"):
        status, _, payload = server.raw("/api/search?q=fever", method=method)
        assert status == 405 and b"only GET and HEAD" in payload, method
    status, _, payload = server.raw("/api/search?q=fever", method="TRACE")
    assert status == 501 and payload.startswith(b'{"error"')


def test_head_answers_headers_only(server: RunningServer) -> None:
    status, headers, payload = server.raw("/", method="HEAD")
    assert status == 200 and payload == b"" and int(headers["content-length"]) > 0


def test_oversized_header_is_a_json_error(server: RunningServer) -> None:
    status, _, payload = server.raw("/api/health", {"X-Filler": "a" * 70000})
    assert status == 431 and payload.startswith(b'{"error"')


def test_malformed_request_line_is_a_json_error(server: RunningServer) -> None:
    import socket

    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as connection:
        connection.sendall(b"GARBAGE\r\n\r\n")
        reply = b""
        while chunk := connection.recv(65536):  # the server closes after an error
            reply += chunk
    assert reply.startswith(b"HTTP/1.") and b" 400 " in reply.split(b"\r\n")[0] and b'{"error"' in reply
    assert b"Traceback" not in reply and b"<html" not in reply.lower()


def test_server_binds_loopback_by_default(server: RunningServer) -> None:
    assert server.server.server_address[0] == "127.0.0.1"


def test_every_answer_is_json_or_a_static_file(server: RunningServer) -> None:
    targets: list[Any] = ["/api/nope", "/nope", "/api/search", "/api/search?q=%ff", "/api/doc?id=x&index=tiny"]
    for target in targets:
        status, headers, payload = server.raw(target)
        assert headers["content-type"].startswith("application/json"), target
        assert b"Traceback" not in payload and payload.count(b"\n") == 1, target
