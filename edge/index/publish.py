"""State -> a standard v1 collection, swapped in atomically.

The collection path a user names (``--into NAME`` under the user collections folder, or ``--out DIR``) is a
symbolic link to ``.<name>.index/gen-<n>/`` beside it. Each write builds a complete new generation (docs.sqlite with
BM25 postings, vectors.usearch, manifest.json last), then replaces the link with one rename, so a search sees either
the previous collection or the new one, and a run killed while writing leaves the previous one in place.
"""

from __future__ import annotations

import datetime as _dt
import importlib.metadata
import os
import platform
import shutil
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from edge import formats, writers
from edge.errors import ArtifactError, BadInput

WORK_SUFFIX = ".index"
GENERATION_PREFIX = "gen-"
# i8 as the shipped collections (a quarter of f32, measured recall within 1% there); expansion_search 128 since a
# folder's collection is small and recall matters more than the fraction of a millisecond it costs.
INDEX_PARAMS = {"dtype": "i8", "connectivity": 16, "expansion_add": 128, "expansion_search": 128}


def work_dir_for(collection_path: Path) -> Path:
    return collection_path.parent / f".{collection_path.name}{WORK_SUFFIX}"


def check_destination(collection_path: Path) -> None:
    """A destination must be new or a link this tool made: never write over someone's folder."""
    if collection_path.is_symlink():
        target = Path(os.readlink(collection_path))
        if target.parent.name != work_dir_for(collection_path).name:
            raise BadInput(f"{collection_path} is a link this tool did not make: choose another --out")
    elif collection_path.exists():
        raise BadInput(f"{collection_path} already exists and was not made by `care-edge index`: choose another --out")


def current_manifest(collection_path: Path) -> dict[str, Any] | None:
    """The manifest of the collection the link points at, if it is whole."""
    try:
        manifest = formats.read_manifest(collection_path, formats.COLLECTION_FORMAT)
        formats.check_files(collection_path, manifest, full_hash=False)
        return manifest
    except ArtifactError:
        return None


def write_generation(
    collection_path: Path,
    *,
    name: str,
    description: str,
    document_encoder: Mapping[str, Any],
    vectors: np.ndarray,
    ids: Sequence[str],
    texts: Sequence[str],
    metas: Sequence[Mapping[str, Any]],
    licenses: Sequence[Mapping[str, Any]],
    command: str,
    truncated: int,
    extra: Mapping[str, Any],
) -> Path:
    """Write a new generation and point the collection link at it. Returns the generation folder."""
    work = work_dir_for(collection_path)
    work.mkdir(parents=True, exist_ok=True)
    numbers = [int(p.name[len(GENERATION_PREFIX):]) for p in work.glob(f"{GENERATION_PREFIX}*")
               if p.name[len(GENERATION_PREFIX):].isdigit()]
    generation = work / f"{GENERATION_PREFIX}{max(numbers, default=0) + 1:06d}"
    generation.mkdir()
    writers.write_collection(
        generation,
        name=name,
        description=description,
        document_encoder=document_encoder,
        vectors=vectors,
        ids=ids,
        texts=texts,
        metas=metas,
        index_params=INDEX_PARAMS,
        licenses=licenses,
        created={**created_info(command), **extra},
        truncated_documents=truncated,
        build_threads=1,  # the same rows give the same graph, so an incremental and a fresh build search alike
        lexical=True,
        default_mode="dense",  # measured: dense beat hybrid on the folder task for both encoders (docs/index.md)
    )
    _fsync_dir(generation)
    link_tmp = collection_path.parent / f".{collection_path.name}.link.{os.getpid()}"
    if link_tmp.is_symlink() or link_tmp.exists():
        link_tmp.unlink()
    os.symlink(os.path.join(work.name, generation.name), link_tmp)
    os.replace(link_tmp, collection_path)
    _fsync_dir(collection_path.parent)
    remove_stale_generations(collection_path)
    return generation


# Whose versions shape the vectors, the text and the index of a folder's collection.
RECORDED_PACKAGES = ("care-edge", "numpy", "onnxruntime", "tokenizers", "usearch", "llama_cpp_python", "pypdf")


def created_info(command: str) -> dict[str, Any]:
    """The manifest's ``created`` block for a folder's collection: what made it and with which package versions."""
    versions = {"python": platform.python_version()}
    for name in RECORDED_PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return {
        "tool": "care-edge index",
        "command": command,
        "created_at": _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
        "versions": versions,
    }


def remove_stale_generations(collection_path: Path) -> None:
    """Every generation but the one the link points at (left by earlier writes or by a run killed mid-write)."""
    work = work_dir_for(collection_path)
    live = Path(os.readlink(collection_path)).name if collection_path.is_symlink() else None
    for path in work.glob(f"{GENERATION_PREFIX}*"):
        if path.name != live:
            shutil.rmtree(path, ignore_errors=True)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
