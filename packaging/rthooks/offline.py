"""PyInstaller runtime hook: the binary is offline by construction, so Python code in it cannot reach a network.

Nothing in ``edge`` opens a socket; this makes that a guarantee for the bundled third-party Python code too (usearch
imports ``urllib.request`` for a downloader the runtime never calls). Native code is covered by the packaging tests,
which run the binary under ``unshare -n`` and under ``strace -e trace=network``.
"""

import socket


def _offline(*_args: object, **_kwargs: object) -> None:
    raise OSError("care-edge is an offline program: network access is disabled in this binary")


for _name in ("connect", "connect_ex", "bind", "sendto"):
    setattr(socket.socket, _name, _offline)
socket.create_connection = _offline
socket.getaddrinfo = _offline
socket.gethostbyname = _offline
