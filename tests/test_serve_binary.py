"""``care-edge serve`` from the single-file binary: the page and the API answer offline, and the binary's offline
hook lets it listen on loopback only. The hook test is fast; the binary tests run with ``make package-smoke``."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest
from serve_support import serve_process

REPO_ROOT = Path(__file__).resolve().parent.parent
BINARY = Path(os.environ.get("CARE_EDGE_BINARY", REPO_ROOT / "dist" / "care-edge"))
HOOK = REPO_ROOT / "packaging" / "rthooks" / "offline.py"


def test_offline_hook_allows_a_loopback_listener_only() -> None:
    code = f"""
import socket
exec(compile(open({str(HOOK)!r}).read(), "offline", "exec"))
listener = socket.socket()
listener.bind(("127.0.0.1", 0))
listener.close()
for family, address in ((socket.AF_INET, ("0.0.0.0", 0)), (socket.AF_INET, ("192.0.2.1", 0)),
                        (socket.AF_INET, ("localhost", 0)), (socket.AF_INET6, ("::", 0))):
    try:
        socket.socket(family).bind(address)
    except OSError as exc:
        assert "loopback" in str(exc), exc
    else:
        raise SystemExit(f"bind to {{address}} was allowed")
try:
    socket.socket().connect(("127.0.0.1", 9))
except OSError as exc:
    assert "offline" in str(exc)
print("ok")
"""
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert completed.returncode == 0 and completed.stdout.strip() == "ok", completed.stderr


@pytest.fixture(scope="module")
def served_binary(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if not BINARY.is_file():
        pytest.skip(f"no binary at {BINARY}: run `make package`")
    home = tmp_path_factory.mktemp("home")
    environment = {"PATH": "/usr/bin:/bin", "HOME": str(home), "XDG_CACHE_HOME": str(home / ".cache")}
    with serve_process([str(BINARY)], env=environment, what="the binary's serve") as url:
        yield url


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Overrides conftest's guard: only connections to 127.0.0.1 (the binary's server) are allowed."""
    original = socket.socket.connect

    def connect(self: socket.socket, address: object) -> object:
        if isinstance(address, tuple) and address[0] == "127.0.0.1":
            return original(self, address)
        raise OSError(f"a test tried to connect to {address!r}")

    monkeypatch.setattr(socket.socket, "connect", connect)


@pytest.mark.slow
def test_binary_serves_the_page_and_answers(served_binary: str) -> None:
    with urllib.request.urlopen(served_binary, timeout=60) as reply:
        page = reply.read().decode("utf-8")
    assert '<script src="/static/app.js"' in page
    for name in ("app.js", "style.css"):
        with urllib.request.urlopen(f"{served_binary}static/{name}", timeout=60) as reply:
            assert reply.read() == (REPO_ROOT / "edge" / "serve" / "static" / name).read_bytes()
    query = urllib.parse.quote("胸痛 呼吸困难")
    with urllib.request.urlopen(f"{served_binary}api/search?q={query}&k=5", timeout=60) as reply:
        body = json.loads(reply.read())
    assert len(body["results"]) == 5 and body["timings_ms"]["total"] > 0


@pytest.mark.slow
def test_binary_refuses_a_non_loopback_host(tmp_path: Path) -> None:
    if not BINARY.is_file():
        pytest.skip(f"no binary at {BINARY}: run `make package`")
    completed = subprocess.run([str(BINARY), "serve", "--host", "0.0.0.0", "--port", "0"], capture_output=True,
                               text=True, timeout=120, check=False,
                               env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "XDG_CACHE_HOME": str(tmp_path)})
    assert completed.returncode == 2, completed.stderr
    assert "cannot listen on 0.0.0.0:0: this binary listens on the loopback address" in completed.stderr
