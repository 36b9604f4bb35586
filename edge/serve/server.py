"""The loopback HTTP server: one page, its static files and the JSON API of :mod:`edge.serve.api`.

The standard library's HTTP server with a fixed pool of connection threads: no dependency added to the binary, and the
objects it serves (Searcher, Collection, QueryEncoder) are thread-safe. Security for a shared workstation:

- bound to 127.0.0.1 unless another ``--host`` is asked for;
- a request whose ``Host`` is not this server's own address (DNS rebinding), or whose ``Origin`` /
  ``Sec-Fetch-Site`` says another site sent it, is refused with 403 before any work is done;
- static files come from a fixed table of the package's ``static/`` folder read at start, looked up by exact name:
  no request path is ever joined to a file-system path;
- limits on URL length, query length, ``k``, concurrent searches, and no request bodies;
- every answer is JSON (or a static file): no traceback, no HTML error page.
"""

from __future__ import annotations

import ipaddress
import json
import shutil
import socket
import socketserver
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from edge.errors import BadInput
from edge.serve import api
from edge.serve.catalog import Catalog

STATIC_DIR = Path(__file__).resolve().parent / "static"
STATIC_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                ".css": "text/css; charset=utf-8", ".png": "image/png", ".svg": "image/svg+xml",
                ".ico": "image/x-icon"}
MAX_URL_CHARS = 4096
MAX_QUERY_FIELDS = 16
SOCKET_TIMEOUT_S = 30
# Browsers open up to 6 connections to a host; a few tabs and the load test fit.
CONNECTION_WORKERS = 16
LOOPBACK_NAMES = ("localhost",)
# The page loads only its own files and talks only to this server.
CONTENT_SECURITY_POLICY = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                           "connect-src 'self'; frame-src 'self'; base-uri 'none'; form-action 'none'; "
                           "frame-ancestors 'self'")
COMMON_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
}


def load_static(directory: Path = STATIC_DIR) -> dict[str, tuple[bytes, str]]:
    """``{url path: (bytes, content type)}`` of the static folder's files; ``/`` is ``index.html``."""
    table: dict[str, tuple[bytes, str]] = {}
    for path in sorted(directory.iterdir()):
        if path.is_file() and not path.name.startswith(".") and path.suffix in STATIC_TYPES:
            table[f"/static/{path.name}"] = (path.read_bytes(), STATIC_TYPES[path.suffix])
    if "/static/index.html" not in table:
        raise FileNotFoundError(f"{directory / 'index.html'} is missing: the package is incomplete")
    table["/"] = table["/static/index.html"]
    return table


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def bind_address(host: str) -> str:
    """``--host`` as an IP literal: a name other than localhost would need a DNS lookup, which this program never
    makes."""
    if host == "localhost":
        return "127.0.0.1"
    try:
        return str(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        raise BadInput(f"--host must be an IP address (or localhost), got {host!r}") from None


class HostPolicy:
    """Which ``Host`` / ``Origin`` values name this server. A DNS-rebinding page reaches the server under the
    attacker's domain name, so names are accepted only when they are loopback names or the ``--host`` given; IP
    literals are accepted when they are the bound address (any address of this machine for a wildcard bind)."""

    def __init__(self, bound: str, port: int, host_argument: str) -> None:
        self.port = port
        self.bound = ipaddress.ip_address(bound)
        self.names = {name.lower() for name in (*LOOPBACK_NAMES, host_argument.strip("[]"))}

    def allows_host(self, value: str | None) -> bool:
        if not value:
            return False
        parsed = urlsplit("//" + value.strip())
        try:
            port = parsed.port
        except ValueError:
            return False
        hostname = (parsed.hostname or "").lower()
        if port != self.port or not hostname:
            return False
        if hostname in self.names:
            return True
        try:
            address = ipaddress.ip_address(hostname)
        except ValueError:
            return False
        if address == self.bound:
            return True
        if self.bound.is_loopback:
            return address.is_loopback
        return self.bound.is_unspecified

    def allows_origin(self, origin: str) -> bool:
        parsed = urlsplit(origin)
        return parsed.scheme == "http" and not parsed.path and self.allows_host(parsed.netloc)


class CareEdgeServer(HTTPServer):
    """Connections are handled by a fixed pool of threads, not a thread per connection: each thread keeps its own
    SQLite connection per collection (the doc store's thread-locals), so a pool keeps their number bounded however
    long the server runs."""

    request_queue_size = 64

    def __init__(self, address: tuple[str, int], catalog: Catalog, *, host_argument: str,
                 max_concurrent_searches: int, quiet: bool = True, connection_workers: int = CONNECTION_WORKERS) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        # Before binding: a failed bind calls server_close, which shuts the pool down.
        self.workers = ThreadPoolExecutor(max_workers=connection_workers, thread_name_prefix="care-edge-serve")
        super().__init__(address, RequestHandler)
        self.catalog = catalog
        self.static = load_static()
        self.policy = HostPolicy(address[0], self.server_address[1], host_argument)
        self.search_slots = threading.BoundedSemaphore(max_concurrent_searches)
        self.quiet = quiet

    def server_bind(self) -> None:
        # HTTPServer.server_bind looks the address up in DNS (getfqdn); this server never resolves names.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def process_request(self, request: Any, client_address: Any) -> None:
        self.workers.submit(self._handle_connection, request, client_address)

    def _handle_connection(self, request: Any, client_address: Any) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:  # noqa: BLE001  (a client that went away mid-answer; one line, never a traceback)
            self.handle_error(request, client_address)
        finally:
            self.shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not self.quiet:
            error = sys.exc_info()[1]
            sys.stderr.write(f"care-edge serve: {client_address[0]}: {type(error).__name__}: {error}\n")

    def server_close(self) -> None:
        super().server_close()
        self.workers.shutdown(wait=False, cancel_futures=True)


class RequestHandler(BaseHTTPRequestHandler):
    server: CareEdgeServer
    server_version = "care-edge"
    sys_version = ""
    protocol_version = "HTTP/1.1"
    # A request line too broken to name a version still gets a status line and headers, not a bare HTTP/0.9 body.
    default_request_version = "HTTP/1.0"
    timeout = SOCKET_TIMEOUT_S

    def version_string(self) -> str:
        return self.server_version

    # ------------------------------------------------------------------------------------------ replies

    def _send(self, status: int, body: bytes, content_type: str, extra: dict[str, str] | None = None,
              *, head: bool = False) -> None:
        self.send_response(status)
        headers = {**COMMON_HEADERS, "Content-Type": content_type, "Content-Length": str(len(body)),
                   "Cache-Control": "no-store"}
        if content_type.startswith("text/html"):
            headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
        headers.update(extra or {})
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _send_json(self, status: int, value: Any, *, head: bool = False) -> None:
        body = (json.dumps(value, ensure_ascii=False) + "\n").encode("utf-8")
        self._send(status, body, "application/json; charset=utf-8", head=head)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """The standard library's errors (bad request line, headers too long, unsupported method) as one JSON line
        instead of an HTML page."""
        self.close_connection = True
        try:
            self._send_json(code, {"error": " ".join((message or self.responses.get(code, ("error",))[0]).split())},
                            head=self.command == "HEAD")
        except OSError:
            pass

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002  (the base class's signature)
        if not self.server.quiet:
            sys.stderr.write(f"care-edge serve: {self.address_string()} {format % args}\n")

    # ------------------------------------------------------------------------------------------ methods

    def do_GET(self) -> None:  # noqa: N802  (http.server's naming)
        self._dispatch(head=False)

    def do_HEAD(self) -> None:  # noqa: N802
        self._dispatch(head=True)

    def _refuse_method(self) -> None:
        self.close_connection = True
        self._send_json(405, {"error": f"method {self.command} is not allowed: only GET and HEAD"})

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _refuse_method  # noqa: N815

    # ------------------------------------------------------------------------------------------ routing

    def _dispatch(self, *, head: bool) -> None:
        refusal = self._refusal()
        if refusal is not None:
            status, message = refusal
            self.close_connection = True
            self._send_json(status, {"error": message}, head=head)
            return
        # Split by hand: urlsplit would read "//name/x" as a host and a path.
        path, _, query = self.path.partition("#")[0].partition("?")
        if path.startswith("/api/"):
            self._api(path, query, head=head)
            return
        static = self.server.static.get(path)
        if static is None:
            self._send_json(404, {"error": f"not found: {path[:100]}"}, head=head)
            return
        body, content_type = static
        self._send(200, body, content_type, head=head)

    def _refusal(self) -> tuple[int, str] | None:
        """Why this request must not be served, before any of its parameters are read."""
        if len(self.path) > MAX_URL_CHARS:
            return 414, f"URL longer than {MAX_URL_CHARS} characters"
        if not self.path.startswith("/"):
            return 400, "request target must be a path"
        if self.headers.get("Content-Length", "0").strip() not in ("", "0") or "Transfer-Encoding" in self.headers:
            return 413, "request bodies are not accepted"
        policy = self.server.policy
        if not policy.allows_host(self.headers.get("Host")):
            return 403, "Host header does not name this server (only its own address is served)"
        origin = self.headers.get("Origin")
        if origin is not None and not policy.allows_origin(origin):
            return 403, "requests from another site are refused"
        # Browsers label every request with who caused it; only this page (or the user typing the address) may call
        # the API, so a page elsewhere cannot even trigger a search with an <img> or <script> tag.
        fetch_site = self.headers.get("Sec-Fetch-Site")
        if self.path.startswith("/api/") and fetch_site not in (None, "same-origin", "none"):
            return 403, "requests from another site are refused"
        return None

    def _api(self, route: str, query: str, *, head: bool) -> None:
        try:
            params = parse_qs(query, keep_blank_values=True, encoding="utf-8", errors="strict",
                              max_num_fields=MAX_QUERY_FIELDS)
        except UnicodeDecodeError:
            self._send_json(400, {"error": "query string is not valid UTF-8"}, head=head)
            return
        except ValueError:
            self._send_json(400, {"error": f"more than {MAX_QUERY_FIELDS} parameters"}, head=head)
            return
        # Searches beyond the number of cores only queue inside onnxruntime; queueing here bounds memory instead.
        with self.server.search_slots:
            reply = api.handle(self.server.catalog, route, params)
        if reply.file is None:
            self._send_json(reply.status, reply.body, head=head)
            return
        self._send_file(reply, head=head)

    def _send_file(self, reply: api.Reply, *, head: bool) -> None:
        assert reply.file is not None
        try:
            handle = reply.file.open("rb")
        except OSError as exc:
            self._send_json(404, {"error": f"source file cannot be read: {exc.strerror or exc}"}, head=head)
            return
        with handle:
            size = reply.file.stat().st_size
            self.send_response(200)
            # A served document must not run script in this origin: sandbox it.
            for name, value in {**COMMON_HEADERS, "Content-Type": reply.content_type, "Content-Length": str(size),
                                "Cache-Control": "no-store", "Content-Security-Policy": "sandbox",
                                **reply.headers}.items():
                self.send_header(name, value)
            self.end_headers()
            if not head:
                shutil.copyfileobj(handle, self.wfile, 1 << 16)


def make_server(catalog: Catalog, *, host: str = "127.0.0.1", port: int = 0, max_concurrent_searches: int = 4,
                quiet: bool = True) -> CareEdgeServer:
    """A server bound to ``host:port`` (port 0: any free port), not yet serving: call ``serve_forever``."""
    address = bind_address(host)
    try:
        return CareEdgeServer((address, port), catalog, host_argument=host,
                              max_concurrent_searches=max_concurrent_searches, quiet=quiet)
    except OSError as exc:
        raise BadInput(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
