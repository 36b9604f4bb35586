"""PyInstaller runtime hook, run before any bundled module: make the binary offline by construction.

1. onnxruntime (1.31 on Linux) ships Microsoft 1DS telemetry: at import and per session it queues events (process
   info, session creation, run counts, a persistent device id) in ``~/.cache/Microsoft/DeveloperTools/.onnxruntime/``
   for upload over HTTPS to Microsoft's collector. ``ORT_DISABLE_TELEMETRY=1``, set before onnxruntime loads, stops
   all of it: nothing is written to HOME and no upload is ever attempted. It is forced, not defaulted: this binary
   is offline by contract.
2. No Python code in the binary can open a network connection, and the only socket it may listen on is loopback
   (``care-edge serve``, 127.0.0.1 or ::1): nothing in ``edge`` does, and this makes it a
   guarantee for the bundled third-party code too (usearch imports ``urllib.request`` for a downloader the runtime
   never calls). Native code is covered by tests that run the binary under ``unshare -n`` and ``strace``.
"""

import ipaddress
import os
import socket

os.environ["ORT_DISABLE_TELEMETRY"] = "1"


def _offline(*_args: object, **_kwargs: object) -> None:
    raise OSError("care-edge is an offline program: network access is disabled in this binary")


_bind = socket.socket.bind


def _loopback_bind(self: socket.socket, address: object) -> None:
    """``care-edge serve`` listens on this machine's loopback address; nothing in the binary may listen elsewhere."""
    host = address[0] if isinstance(address, tuple) and address else None
    try:
        loopback = isinstance(host, str) and ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if self.family not in (socket.AF_INET, socket.AF_INET6) or not loopback:
        raise OSError("this binary listens on the loopback address (127.0.0.1 or ::1) only")
    _bind(self, address)


for _name in ("connect", "connect_ex", "sendto"):
    setattr(socket.socket, _name, _offline)
socket.socket.bind = _loopback_bind
socket.create_connection = _offline
socket.getaddrinfo = _offline
socket.gethostbyname = _offline
