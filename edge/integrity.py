"""Integrity before use: every artifact file is checked against its manifest's sha256 before the runtime parses it.

A full sha256 of the shipped default (a collection and the query encoder, about 80 MB) costs tens to hundreds of
milliseconds, depending on the CPU and how busy it is: too much for every start. So a successful check is
remembered as a *verified stamp* in the user's cache (``$CARE_EDGE_CACHE_DIR``, else ``$XDG_CACHE_HOME/care-edge``,
else ``~/.cache/care-edge``, file ``verified.json``): the file's resolved path, device, inode, size, mtime and ctime,
and the sha256 it had. A later open whose ``stat`` gives the same tuple and whose manifest names the same sha256
skips the hash; any change re-hashes.

Why ctime: ``touch -r`` or ``os.utime`` can put an edited file's mtime back, but nothing short of changing the system
clock sets ctime, which the kernel moves on every write or metadata change. Why the racy window: the kernel stamps
times from a coarse clock (a few milliseconds), so a file written again within the same tick as a check could keep
the stamped tuple; a file whose ctime is less than ``RACY_WINDOW_NS`` older than the start of its hash is verified
but not stamped (the rule git uses for its index), so it is hashed again at the next open.

The cache is an optimisation only: missing, unreadable, corrupt, read-only or concurrently rewritten, it costs a
re-hash and never an error. Whoever can write the user's cache can also write the artifacts it vouches for.
"""

from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from edge.errors import ArtifactError
from edge.files import sha256_file

CACHE_ENV = "CARE_EDGE_CACHE_DIR"
STAMPS_FILE = "verified.json"
STAMPS_FORMAT = "care-edge/verified-stamps/1"
MAX_STAMPS = 256  # oldest dropped first; a user has a few artifacts, tests and tools create many short-lived ones
MAX_STAMPS_BYTES = 1 << 20
RACY_WINDOW_NS = 3_000_000_000
_HASH_CHUNK = 1 << 20


def cache_dir() -> Path | None:
    """Where the stamps live, or None when no location is configured (no HOME): then every open hashes."""
    configured = os.environ.get(CACHE_ENV)
    if configured:
        return Path(configured).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg and os.path.isabs(xdg):
        return Path(xdg) / "care-edge"
    home = os.environ.get("HOME") or os.path.expanduser("~")
    if not home or home == "~":
        return None
    return Path(home) / ".cache" / "care-edge"


def _identity(info: os.stat_result) -> list[int]:
    return [info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns]


class StampCache:
    """The verified stamps of one cache file, read once; :meth:`save` merges and writes them back atomically."""

    def __init__(self, directory: Path | None) -> None:
        self.path = directory / STAMPS_FILE if directory is not None else None
        self.stamps: dict[str, dict[str, Any]] = self._load()
        self.added: dict[str, dict[str, Any]] = {}

    def _load(self) -> dict[str, dict[str, Any]]:
        if self.path is None:
            return {}
        try:
            raw = read_regular_file(self.path, MAX_STAMPS_BYTES)
            data = json.loads(raw.decode("utf-8"))
        except (OSError, ValueError, ArtifactError):
            return {}
        if not isinstance(data, dict) or data.get("format") != STAMPS_FORMAT or not isinstance(data.get("files"), dict):
            return {}
        return {key: value for key, value in data["files"].items() if isinstance(value, dict)}

    def vouches(self, key: str, identity: list[int], sha256: str) -> bool:
        stamp = self.stamps.get(key)
        return bool(stamp) and stamp.get("stat") == identity and stamp.get("sha256") == sha256

    def add(self, key: str, identity: list[int], sha256: str) -> None:
        self.added[key] = {"stat": identity, "sha256": sha256, "at": time.time_ns()}

    def save(self) -> None:
        if self.path is None or not self.added:
            return
        merged = {**self._load(), **self.added}  # another process may have stamped other files meanwhile
        newest = sorted(merged.items(), key=lambda item: item[1].get("at", 0) if isinstance(item[1].get("at"), int)
                        else 0)[-MAX_STAMPS:]
        payload = json.dumps({"format": STAMPS_FORMAT, "files": dict(newest)}, separators=(",", ":")).encode("utf-8")
        temp = self.path.with_name(f".{STAMPS_FILE}.{os.getpid()}.tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(temp, "wb") as handle:
                handle.write(payload)
            os.replace(temp, self.path)
        except OSError:
            pass  # a read-only or full cache only means hashing again next time
        finally:
            try:
                temp.unlink()
            except OSError:
                pass


def verify_files(directory: str | os.PathLike[str], manifest: Mapping[str, Any], names: Iterable[str],
                 structure: Mapping[str, Callable[[Path], None]] | None = None) -> None:
    """Check ``names`` (files listed in ``manifest["files"]``) in ``directory``: a regular file of the listed size
    whose sha256 is the listed one, hashed only when no stamp vouches for it. ``structure`` maps a file name to a
    check of its inner consistency (raising ArtifactError), run with the hash, before the stamp: a stamp vouches for
    both. Raises ArtifactError naming the first bad file and the fix."""
    root = Path(directory)
    cache = StampCache(cache_dir())
    try:
        for name in names:
            _verify_one(root, name, manifest["files"][name], cache, (structure or {}).get(name))
    finally:
        cache.save()


def _verify_one(root: Path, name: str, entry: Mapping[str, Any], cache: StampCache,
                structure: Callable[[Path], None] | None) -> None:
    path = root / name
    where = f"{root}: {name}"
    fix = "re-copy or rebuild this artifact (`care-edge info --verify` lists every bad file)"
    try:
        info = path.stat()
    except FileNotFoundError:
        raise ArtifactError(f"{where}: missing: {fix}") from None
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"{where}: unreadable ({exc}): {fix}") from None
    if not stat.S_ISREG(info.st_mode):
        raise ArtifactError(f"{where}: not a regular file: {fix}")
    if info.st_size != entry["size"]:
        raise ArtifactError(f"{where}: size {info.st_size} bytes, manifest says {entry['size']} (truncated or "
                            f"replaced): {fix}")
    key = str(path.resolve())
    identity = _identity(info)
    expected = str(entry["sha256"]).lower()
    if cache.vouches(key, identity, expected):
        return
    started_ns = time.time_ns()
    try:
        actual = sha256_file(path)
        after = path.stat()
    except OSError as exc:
        raise ArtifactError(f"{where}: unreadable ({exc.strerror or exc}): {fix}") from None
    if actual != expected:
        raise ArtifactError(f"{where}: sha256 differs from the manifest (corrupted or replaced): {fix}")
    if structure is not None:
        structure(path)
    # Stamp only a file that did not change while it was hashed and was last changed well before: see RACY_WINDOW_NS.
    if _identity(after) == identity and info.st_ctime_ns < started_ns - RACY_WINDOW_NS:
        cache.add(key, identity, expected)


def read_regular_file(path: str | os.PathLike[str], limit: int) -> bytes:
    """The bytes of ``path``, which must be a regular file (symbolic links followed) of at most ``limit`` bytes.
    A FIFO, device or directory raises OSError at once instead of blocking or reading without end."""
    # O_NONBLOCK: opening a FIFO that has no writer would otherwise wait forever before fstat could refuse it.
    descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        info = os.fstat(descriptor)
        if not stat.S_ISREG(info.st_mode):
            raise OSError("not a regular file")
        if info.st_size > limit:
            raise OSError(f"larger than {limit} bytes")
        chunks = []
        remaining = limit + 1  # a file growing while read is still cut at the limit
        while remaining > 0:
            chunk = os.read(descriptor, min(remaining, _HASH_CHUNK))
            if not chunk:
                break
            chunks.append(chunk)
            remaining -= len(chunk)
        data = b"".join(chunks)
        if len(data) > limit:
            raise OSError(f"larger than {limit} bytes")
        return data
    finally:
        os.close(descriptor)
