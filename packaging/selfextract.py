"""The single-file ``care-edge``: a onedir build packed into one executable that unpacks itself once, into a cache.

``python packaging/selfextract.py ONEDIR_FOLDER OUT`` (``build.py`` runs it). The output file is

- a POSIX ``sh`` launcher, padded to ``HEADER_BYTES``, then
- ``SEGMENTS`` gzip-compressed tar archives of the onedir folder (executable, ``_internal/``, ``prebuilt_index/``),
  split by size so that they unpack in parallel, one per CPU.

The launcher names the unpacked copy by the payload's sha256 (``KEY``, content-addressed: another build, e.g. with a
new index, gets another directory) and looks for it in, in order: ``$CARE_EDGE_UNPACK_DIR``,
``$XDG_CACHE_HOME/care-edge/bin``, ``$HOME/.cache/care-edge/bin``, then ``$TMPDIR/care-edge-<uid>`` and
``/tmp/care-edge-<uid>`` (mode 0700, must be owned by the user; used when HOME is unset or not writable). Found, it
``exec``s it: a warm start costs what a onedir start costs. Not found, it unpacks the segments in parallel into a
fresh temporary directory next to the final one, unpacks again, alone, any segment whose tar failed, checks that
every segment reached its end marker, and publishes it with one ``rename`` (atomic: a concurrent or interrupted start never sees a half-written copy;
a concurrent start that loses the race drops its copy and uses the winner's). Needs only ``sh``, ``tail``, ``head``, ``gzip``, ``tar``,
``mktemp`` and ``id``, present on every Linux (coreutils or busybox).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import os
import re
import sys
import tarfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

HEADER_BYTES = 8192
SEGMENTS = 2
GZIP_LEVEL = 6
EXECUTABLE_NAME = "care-edge"
MARKER = ".segment-{}"  # the last member of segment i: present once that segment was unpacked to its end
COMPLETE = ".complete"
KEY_CHARS = 16
FORMAT_LINE = "# care-edge-selfextract v1"
_FIELD = re.compile(r"^(\w+)=(\S*)$")

# One ``sh`` script; @NAME@ fields are filled in by ``launcher()``. Keep it POSIX (dash, busybox ash).
LAUNCHER = r"""#!/bin/sh
# care-edge-selfextract v1
# The single-file care-edge (packaging/selfextract.py): unpacks its onedir build once into a per-user cache
# directory named by the payload's sha256, then runs it from there at every start. Payload after byte @HEADER@.
k=@KEY@
n=@NAME@
c=
case $CARE_EDGE_UNPACK_DIR in /*) c=$CARE_EDGE_UNPACK_DIR;; esac
case $c:$XDG_CACHE_HOME in :/*) c=$XDG_CACHE_HOME/care-edge/bin;; esac
[ -z "$c" ] && [ -n "$HOME" ] && c=$HOME/.cache/care-edge/bin
[ -n "$c" ] && [ -f "$c/$k/@COMPLETE@" ] && exec "$c/$k/$n" "$@"
s="$0"
case $s in */*) ;; *) s=$(command -v -- "$s") ;; esac
unpack() {
  d=$1
  [ -f "$d/$k/@COMPLETE@" ] && return 0
  t=$(mktemp -d "$d/.$k.XXXXXX" 2>/dev/null) || return 1
  @EXTRACT@
  wait
  @RETRY@
  if @CHECK@; then
    rm -f "$t"/@MARKERS_GLOB@ && : > "$t/@COMPLETE@" && { [ -e "$d/$k" ] || mv "$t" "$d/$k" 2>/dev/null; }
  fi
  rm -rf "$t" "$d/$k/${t##*/}" 2>/dev/null
  [ -f "$d/$k/@COMPLETE@" ]
}
if [ -n "$c" ] && mkdir -p "$c" 2>/dev/null && unpack "$c"; then exec "$c/$k/$n" "$@"; fi
u=$(id -u)
for b in "${TMPDIR:-/tmp}" /tmp; do
  f=$b/care-edge-$u
  mkdir -m 700 "$f" 2>/dev/null
  [ -d "$f" ] && [ ! -L "$f" ] && [ -O "$f" ] && chmod 700 "$f" 2>/dev/null || continue
  [ -f "$f/$k/@COMPLETE@" ] && exec "$f/$k/$n" "$@"
  unpack "$f" && exec "$f/$k/$n" "$@"
done
echo "$n: error: cannot unpack into ${c:-\$HOME/.cache/care-edge/bin} or \$TMPDIR/care-edge-$u (not writable, or disk full): set XDG_CACHE_HOME or TMPDIR to a writable directory" >&2
exit 1
"""


@dataclass(frozen=True)
class Segment:
    offset: int  # from the start of the file
    length: int
    unpacked_bytes: int
    members: int


@dataclass(frozen=True)
class Layout:
    key: str
    header_bytes: int
    segments: list[Segment]


def _files_of(folder: Path) -> list[tuple[str, Path]]:
    """(archive name, path) of every file and symbolic link under ``folder``, sorted."""
    found = []
    for path in sorted(folder.rglob("*")):
        if path.is_symlink() or path.is_file():
            found.append((path.relative_to(folder).as_posix(), path))
    return found


def _split(files: list[tuple[str, Path]], parts: int) -> list[list[tuple[str, Path]]]:
    """Greedy balance by size, largest first, so that the parts take about as long to unpack."""
    groups: list[list[tuple[str, Path]]] = [[] for _ in range(parts)]
    sizes = [0] * parts
    for name, path in sorted(files, key=lambda item: -(0 if item[1].is_symlink() else item[1].stat().st_size)):
        smallest = sizes.index(min(sizes))
        groups[smallest].append((name, path))
        sizes[smallest] += 0 if path.is_symlink() else path.stat().st_size
    return [sorted(group) for group in groups]


def _tar_gz(files: list[tuple[str, Path]], marker: str) -> tuple[bytes, int]:
    """A deterministic .tar.gz of ``files`` (uid/gid 0, mtime 0 for the marker), ``marker`` last; and its unpacked
    size."""
    raw = io.BytesIO()
    unpacked = 0
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as archive:
        for name, path in files:
            info = archive.gettarinfo(str(path), arcname=name)
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            if info.isreg():
                unpacked += info.size
                with path.open("rb") as handle:
                    archive.addfile(info, handle)
            else:
                archive.addfile(info)
        end = tarfile.TarInfo(marker)
        end.mode = 0o644
        archive.addfile(end, io.BytesIO(b""))
    return gzip.compress(raw.getvalue(), compresslevel=GZIP_LEVEL, mtime=0), unpacked


def launcher(key: str, segments: Sequence[Segment], name: str = EXECUTABLE_NAME) -> bytes:
    # Parallel tars race to create the same parent directories, and GNU tar can then drop a member (seen: a symbolic
    # link) yet still reach the end marker. So a segment whose tar failed loses its marker, and is unpacked again,
    # alone, once the others are done.
    extract, retry, check = [], [], []
    for number, segment in enumerate(segments):
        pipeline = f'tail -c +{segment.offset + 1} "$s" | head -c {segment.length} | gzip -dc | tar -xof - -C "$t"'
        marker = f'"$t/{MARKER.format(number)}"'
        extract.append(f"({pipeline} || rm -f {marker}) >/dev/null 2>&1 &")
        retry.append(f"[ -f {marker} ] || ({pipeline}) >/dev/null 2>&1")
        check.append(f"[ -f {marker} ]")
    text = (
        LAUNCHER.replace("@EXTRACT@", "\n  ".join(extract))
        .replace("@RETRY@", "\n  ".join(retry))
        .replace("@CHECK@", " && ".join(check))
        .replace("@MARKERS_GLOB@", ".segment-*")
        .replace("@COMPLETE@", COMPLETE)
        .replace("@KEY@", key)
        .replace("@NAME@", name)
        .replace("@HEADER@", str(HEADER_BYTES))
    )
    encoded = text.encode("ascii")
    if len(encoded) >= HEADER_BYTES:
        raise ValueError(f"launcher is {len(encoded)} bytes, over the {HEADER_BYTES}-byte header")
    # `exit` ends the script before the padding; the padding is a comment line, never read by sh.
    return encoded + b"#" * (HEADER_BYTES - len(encoded) - 1) + b"\n"


def pack(onedir: Path, out: Path, *, segments: int = SEGMENTS) -> Layout:
    """Write the single file ``out`` from the onedir folder (the one holding ``care-edge`` and ``_internal/``)."""
    if not (onedir / EXECUTABLE_NAME).is_file():
        raise FileNotFoundError(f"{onedir / EXECUTABLE_NAME} is missing: build the onedir first")
    groups = _split(_files_of(onedir), segments)
    with ThreadPoolExecutor(max_workers=segments) as pool:  # zlib releases the GIL
        blobs = list(pool.map(lambda item: _tar_gz(item[1], MARKER.format(item[0])), enumerate(groups)))
    digest = hashlib.sha256()
    for blob, _ in blobs:
        digest.update(hashlib.sha256(blob).digest())
    key = digest.hexdigest()[:KEY_CHARS]
    layout_segments, offset = [], HEADER_BYTES
    for (blob, unpacked), group in zip(blobs, groups):
        layout_segments.append(Segment(offset=offset, length=len(blob), unpacked_bytes=unpacked, members=len(group)))
        offset += len(blob)
    header = launcher(key, layout_segments)
    temporary = out.with_name(out.name + ".tmp")
    with temporary.open("wb") as handle:
        handle.write(header)
        for blob, _ in blobs:
            handle.write(blob)
    temporary.chmod(0o755)
    os.replace(temporary, out)
    return Layout(key=key, header_bytes=HEADER_BYTES, segments=layout_segments)


def read_layout(binary: Path) -> Layout | None:
    """The layout of a single file written by :func:`pack`; None for any other file (e.g. a PyInstaller onefile)."""
    with binary.open("rb") as handle:
        header = handle.read(HEADER_BYTES)
    if len(header) < HEADER_BYTES or FORMAT_LINE.encode() not in header.split(b"\n", 2)[1]:
        return None
    text = header.decode("ascii", errors="replace")
    key = next(m.group(2) for line in text.splitlines() if (m := _FIELD.match(line)) and m.group(1) == "k")
    # Each segment's pipeline appears twice (the parallel unpack and its serial retry).
    spans = dict.fromkeys(
        (int(m.group(1)) - 1, int(m.group(2))) for m in re.finditer(r"tail -c \+(\d+) \"\$s\" \| head -c (\d+)", text)
    )
    segments = [Segment(offset=offset, length=length, unpacked_bytes=0, members=0) for offset, length in spans]
    return Layout(key=key, header_bytes=HEADER_BYTES, segments=segments)


def extract_to(binary: Path, destination: Path) -> Layout:
    """Unpack a single file's payload with Python's tarfile (for inspection; the launcher does it with tar)."""
    layout = read_layout(binary)
    if layout is None:
        raise ValueError(f"{binary} is not a care-edge single file")
    with binary.open("rb") as handle:
        for segment in layout.segments:
            handle.seek(segment.offset)
            with tarfile.open(fileobj=io.BytesIO(gzip.decompress(handle.read(segment.length)))) as archive:
                archive.extractall(destination, filter="tar" if hasattr(tarfile, "tar_filter") else None)
    return layout


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="packaging/selfextract.py", description=__doc__.splitlines()[0])
    parser.add_argument("onedir", type=Path, help="the onedir folder (holds care-edge and _internal/)")
    parser.add_argument("out", type=Path, help="the single file to write")
    parser.add_argument("--segments", type=int, default=SEGMENTS)
    args = parser.parse_args(argv)
    layout = pack(args.onedir, args.out, segments=args.segments)
    print(f"{args.out}: {args.out.stat().st_size / 2**20:.1f} MiB, key {layout.key}, {len(layout.segments)} segments")
    return 0


if __name__ == "__main__":
    sys.exit(main())
