"""What a built care-edge binary contains: entries, sizes, and anything that should have been left out.

Reads PyInstaller's own archive format (``PyInstaller.archive.readers``, what ``pyi-archive_viewer`` uses): for a
onefile binary every entry of its embedded archive plus the Python modules of the embedded PYZ; for a onedir build
also the files beside the executable. Needs PyInstaller importable (it is, wherever the binary was built).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))
from excluded import is_excluded  # noqa: E402
from selfextract import EXECUTABLE_NAME, MARKER, read_layout  # noqa: E402

INTERNAL_PREFIX = "_internal/"

PREBUILT_PREFIX = "prebuilt_index/"
# The one entry a onefile start reads in place instead of unpacking (the Python modules); everything else is written
# to the extraction directory at every start.
PYZ_TYPECODE = "z"
PYZ_NAME = "PYZ.pyz"


@dataclass(frozen=True)
class ArchiveEntry:
    name: str  # path inside the bundle ("numpy/_core/x.so", "prebuilt_index/default.json") or dotted module name
    kind: str  # "binary", "data", "module" (inside the PYZ), "pyz", "other"
    stored_bytes: int  # bytes in the file (compressed where the archive compresses it)
    unpacked_bytes: int  # bytes once extracted

    @property
    def extracted_at_start(self) -> bool:
        """True for what a onefile start writes to its extraction directory."""
        return self.kind in ("binary", "data", "other")


_KINDS = {"b": "binary", "x": "data", "z": "pyz", "Z": "pyz", "n": "other", "d": "other", "l": "other"}


def read_onefile_entries(binary: Path) -> list[ArchiveEntry]:
    """Every entry of the archive embedded in a onefile (or onedir) executable, PYZ modules included; for the
    single file of ``selfextract.py``, every file of the onedir build it carries."""
    if read_layout(binary) is not None:
        return read_selfextract_entries(binary)
    from PyInstaller.archive.readers import CArchiveReader

    archive = CArchiveReader(str(binary))
    entries: list[ArchiveEntry] = []
    for name, (_offset, stored, unpacked, _compressed, typecode) in archive.toc.items():
        kind = _KINDS.get(typecode, "script" if typecode in ("s", "m", "M") else "other")
        entries.append(ArchiveEntry(name=name, kind=kind, stored_bytes=stored, unpacked_bytes=unpacked))
        if typecode in ("z", "Z"):
            pyz = archive.open_embedded_archive(name)
            entries += [
                ArchiveEntry(name=module, kind="module", stored_bytes=0, unpacked_bytes=0) for module in pyz.toc
            ]
    return entries


def read_onedir_entries(executable: Path) -> list[ArchiveEntry]:
    """The executable's embedded archive plus every file in its ``_internal`` folder."""
    entries = read_onefile_entries(executable)
    internal = executable.parent / "_internal"
    for path in sorted(internal.rglob("*")):
        if path.is_file() and not path.is_symlink():
            relative = path.relative_to(internal).as_posix()
            kind = "data" if relative.startswith(PREBUILT_PREFIX) else "binary" if ".so" in path.name else "other"
            size = path.stat().st_size
            entries.append(ArchiveEntry(name=relative, kind=kind, stored_bytes=size, unpacked_bytes=size))
    return entries


def read_selfextract_entries(binary: Path) -> list[ArchiveEntry]:
    """The files a ``selfextract.py`` single file unpacks (names relative to ``_internal/``, as in a onedir build),
    plus the entries and PYZ modules embedded in its executable. ``stored_bytes`` of a file is its share of its
    segment's compressed size (gzip compresses a whole segment, not file by file)."""
    import gzip
    import io
    import tarfile
    import tempfile

    layout = read_layout(binary)
    assert layout is not None
    entries: list[ArchiveEntry] = []
    markers = {MARKER.format(number) for number in range(len(layout.segments))}
    with binary.open("rb") as handle, tempfile.TemporaryDirectory(prefix="care-edge-archive-") as scratch:
        for segment in layout.segments:
            handle.seek(segment.offset)
            raw = gzip.decompress(handle.read(segment.length))
            ratio = segment.length / max(len(raw), 1)
            with tarfile.open(fileobj=io.BytesIO(raw)) as archive:
                for member in archive.getmembers():
                    if not member.isreg() or member.name in markers:
                        continue
                    if member.name == EXECUTABLE_NAME:
                        executable = Path(scratch) / EXECUTABLE_NAME
                        extracted = archive.extractfile(member)
                        assert extracted is not None
                        executable.write_bytes(extracted.read())
                        entries += read_onefile_entries(executable)
                        continue
                    name = member.name.removeprefix(INTERNAL_PREFIX)
                    kind = "data" if name.startswith(PREBUILT_PREFIX) else "binary" if ".so" in name else "other"
                    stored = round(member.size * ratio)
                    entries.append(ArchiveEntry(name=name, kind=kind, stored_bytes=stored, unpacked_bytes=member.size))
    return entries


def module_name_of(entry: ArchiveEntry) -> str | None:
    """The importable name an entry belongs to (``numpy._core`` for ``numpy/_core/x.so``); None for bundle files
    such as the shipped index."""
    if entry.kind == "module":
        return entry.name
    if entry.name.startswith(PREBUILT_PREFIX):
        return None
    path = PurePosixPath(entry.name)
    if "lib-dynload" in path.parts:  # stdlib extension modules: "_ssl.cpython-311-x86_64-linux-gnu.so" is "_ssl"
        return path.name.split(".", 1)[0]
    if len(path.parts) == 1:  # a shared library at the top level (libpython, libssl): not a module
        return None
    package_parts = [part for part in path.parts[:-1] if not part.endswith((".libs", ".dist-info"))]
    if not package_parts:
        return None
    return ".".join(package_parts + [path.name.split(".", 1)[0]])


def forbidden_entries(entries: Sequence[ArchiveEntry]) -> list[str]:
    """Names of entries that belong to an excluded module (see ``excluded.py``); empty when the build is clean."""
    found = []
    for entry in entries:
        module = module_name_of(entry)
        if module is not None and is_excluded(module):
            found.append(entry.name)
    return sorted(set(found))


def summarize(entries: Sequence[ArchiveEntry], binary: Path, *, onefile: bool, largest: int = 12) -> dict[str, Any]:
    """A JSON-ready summary: size on disk, what a onefile start unpacks, the shipped index's share, the largest
    entries, and the forbidden ones (should be none)."""
    files = [entry for entry in entries if entry.extracted_at_start]
    index_entries = [entry for entry in entries if entry.name.startswith(PREBUILT_PREFIX)]
    biggest = sorted(files, key=lambda entry: entry.unpacked_bytes, reverse=True)[:largest]
    if onefile:
        size_on_disk = binary.stat().st_size
    else:
        # Symbolic links (PyInstaller links libraries into _internal) would count their target twice.
        size_on_disk = sum(
            path.stat().st_size for path in binary.parent.rglob("*") if path.is_file() and not path.is_symlink()
        )
    return {
        "binary": str(binary),
        "mode": ("selfextract" if read_layout(binary) is not None else "onefile") if onefile else "onedir",
        "size_on_disk_bytes": size_on_disk,
        "entries": len(entries),
        "python_modules": sum(1 for entry in entries if entry.kind == "module"),
        # onefile: written to a fresh extraction directory at every start; onedir: already on disk.
        "unpacked_at_start_bytes": sum(entry.unpacked_bytes for entry in files) if onefile else 0,
        "index_stored_bytes": sum(entry.stored_bytes for entry in index_entries),
        "index_unpacked_bytes": sum(entry.unpacked_bytes for entry in index_entries),
        "largest": [
            {"name": entry.name, "stored_bytes": entry.stored_bytes, "unpacked_bytes": entry.unpacked_bytes}
            for entry in biggest
        ],
        "forbidden": forbidden_entries(entries),
    }
