"""The ``care-edge serve`` subcommand: its arguments, and the handler that opens everything and serves.

Kept apart from :mod:`edge.serve.server` so that building the CLI parser imports no HTTP code: ``search`` starts as
fast as before.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from edge.checks import parse_positive_int
from edge.errors import BadInput

DEFAULT_PORT = 8765


def add_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    serve = commands.add_parser("serve", help="a local search page and JSON API on 127.0.0.1")
    serve.add_argument("--port", default=str(DEFAULT_PORT), help=f"TCP port (default {DEFAULT_PORT}; 0 = any free port)")
    serve.add_argument("--host", default="127.0.0.1",
                       help="address to listen on (default 127.0.0.1, this machine only; anything else is reachable "
                            "by others and prints a warning)")
    serve.add_argument("--open", action="store_true", help="open the page in the default browser")
    serve.add_argument("--encoder", metavar="DIR", help="query encoder directory or name (default: the shipped one)")
    serve.add_argument("--threads", default="1", help="onnxruntime intra-op threads per search (default 1)")
    serve.add_argument("--max-concurrent", default="4", help="searches run at once; more wait (default 4)")
    serve.add_argument("--log", action="store_true", help="log every request on stderr")
    serve.set_defaults(handler=cmd_serve)


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise BadInput(f"--port must be an integer from 0 to 65535, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise BadInput(f"--port must be an integer from 0 to 65535, got {value}")
    return value


def _open_browser(url: str) -> None:
    import webbrowser

    if getattr(sys, "frozen", False):
        # PyInstaller's bootloader points LD_LIBRARY_PATH at the bundle; the user's browser must start with their
        # own. This process has loaded its libraries already, so changing it here affects only what it starts.
        original = os.environ.pop("LD_LIBRARY_PATH_ORIG", None)
        if original is None:
            os.environ.pop("LD_LIBRARY_PATH", None)
        else:
            os.environ["LD_LIBRARY_PATH"] = original
    if not webbrowser.open(url):
        print(f"care-edge: note: no browser could be started: open {url} yourself", file=sys.stderr)


def cmd_serve(args: argparse.Namespace) -> int:
    from edge.serve.catalog import Catalog
    from edge.serve.server import is_loopback, make_server

    port = _port(args.port)
    threads = parse_positive_int(args.threads, "--threads")
    max_concurrent = parse_positive_int(args.max_concurrent, "--max-concurrent")
    started = time.perf_counter()
    catalog = Catalog.load(encoder_dir=args.encoder, threads=threads)
    server = make_server(catalog, host=args.host, port=port, max_concurrent_searches=max_concurrent,
                         quiet=not args.log)
    if not is_loopback(args.host):
        print(f"care-edge: warning: listening on {args.host}: anyone who can reach this machine on port "
              f"{server.port} can search these collections and open their source files", file=sys.stderr)
    host = f"[{server.server_name}]" if ":" in server.server_name else server.server_name
    url = f"http://{'127.0.0.1' if server.policy.bound.is_unspecified else host}:{server.port}/"
    for entry in catalog.entries.values():
        if entry.searcher is None:
            print(f"care-edge: note: collection {entry.name} is not available: {entry.error}", file=sys.stderr)
    ready = len([entry for entry in catalog.entries.values() if entry.searcher is not None])
    print(f"care-edge: serving {ready} collection(s) at {url} (ready in {time.perf_counter() - started:.1f} s; "
          "Ctrl+C stops)", flush=True)
    if args.open:
        _open_browser(url)
    try:
        server.serve_forever(poll_interval=0.5)
    except KeyboardInterrupt:
        print("care-edge: stopped", file=sys.stderr)
    finally:
        server.server_close()
        catalog.close()
    return 0
