"""A structural check of a saved usearch index (``vectors.usearch``) before usearch maps it.

usearch trusts the file it maps: a neighbour slot past the end of the graph, or a neighbour count above a list's
capacity, sends its search to read outside the mapping and the process dies with SIGSEGV. The sha256 check of
:mod:`edge.integrity` proves the bytes are the ones the manifest names, but a file crafted together with its manifest
would pass it; so the first open of each file content also walks the graph here, and refuses it unless every
neighbour count and slot is in range, every neighbour reaches the level of its list, and the sizes add up to the
file's length exactly.

Layout (usearch 2.x ``index_dense_gt::save``, checked against the shipped files): ``u32 rows, u32 bytes per row`` and
the vectors; a 64-byte head starting ``usearch``; the graph head ``u64 size, connectivity, connectivity_base,
max_level, entry_slot``; ``i16`` level per node; then per node ``u64 key, i16 level``, a level-0 list (``u32
count`` + ``connectivity_base`` ``u32`` slots) and one list per higher level (``u32 count`` + ``connectivity``
slots).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from edge.errors import ArtifactError

_MAGIC = b"usearch"
_DENSE_HEAD = 64
_GRAPH_HEAD = 40
_MAX_CONNECTIVITY = 1 << 12
_MAX_LEVEL = 64


def _u32(data: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Little-endian u32 values at arbitrary (unaligned) byte offsets."""
    return (data[offsets].astype(np.uint64) | data[offsets + 1].astype(np.uint64) << 8
            | data[offsets + 2].astype(np.uint64) << 16 | data[offsets + 3].astype(np.uint64) << 24)


def check_usearch_file(path: str | os.PathLike[str]) -> None:
    """Raise ArtifactError unless ``path`` is a well-formed usearch index whose graph stays inside itself."""
    where = Path(path)
    fix = "re-copy or rebuild the collection"
    try:
        data = np.fromfile(where, dtype=np.uint8)
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"{where} is unreadable ({exc}): {fix}") from None

    def bad(reason: str) -> ArtifactError:
        return ArtifactError(f"{where} is not a well-formed usearch index ({reason}): {fix}")

    length = int(data.size)
    if length < 8:
        raise bad("too short")
    rows, row_bytes = (int(value) for value in _u32(data, np.array([0, 4])))
    offset = 8 + rows * row_bytes
    if offset + _DENSE_HEAD + _GRAPH_HEAD > length:
        raise bad("vectors run past the end of the file")
    if data[offset : offset + len(_MAGIC)].tobytes() != _MAGIC:
        raise bad("no usearch head after the vectors")
    offset += _DENSE_HEAD
    size, connectivity, connectivity_base, max_level, entry = (
        int(value) for value in np.frombuffer(data[offset : offset + _GRAPH_HEAD].tobytes(), dtype="<u8"))
    offset += _GRAPH_HEAD
    if size != rows:
        raise bad(f"graph of {size} nodes for {rows} vectors")
    if not (1 <= connectivity <= _MAX_CONNECTIVITY and 1 <= connectivity_base <= _MAX_CONNECTIVITY):
        raise bad(f"connectivity {connectivity}/{connectivity_base}")
    if max_level > _MAX_LEVEL or (size and entry >= size):
        raise bad(f"max level {max_level}, entry slot {entry}")
    if offset + 2 * size > length:
        raise bad("node levels run past the end of the file")
    levels = np.frombuffer(data[offset : offset + 2 * size].tobytes(), dtype="<i2").astype(np.int64)
    offset += 2 * size
    if size and (levels.min() < 0 or levels.max() > max_level):
        raise bad("a node level outside 0..max_level")
    base_list = 4 + 4 * connectivity_base
    upper_list = 4 + 4 * connectivity
    node_bytes = 10 + base_list + levels * upper_list
    starts = offset + np.concatenate(([0], np.cumsum(node_bytes)[:-1])) if size else np.zeros(0, dtype=np.int64)
    if offset + int(node_bytes.sum()) != length:
        raise bad("graph size does not match the file length")
    if size == 0:
        return
    stored_levels = np.frombuffer(data[(starts[:, None] + np.array([8, 9])).ravel()].tobytes(), dtype="<i2")
    if not np.array_equal(stored_levels.astype(np.int64), levels):
        raise bad("a node's level differs from the level table")
    # Every neighbour list: the level-0 one of each node, then its upper levels.
    uppers = np.repeat(np.arange(size), levels)
    upper_rank = np.arange(uppers.size) - np.repeat(np.cumsum(levels) - levels, levels)
    list_starts = np.concatenate((starts + 10, starts[uppers] + 10 + base_list + upper_rank * upper_list))
    capacities = np.concatenate((np.full(size, connectivity_base), np.full(uppers.size, connectivity)))
    counts = _u32(data, list_starts).astype(np.int64)
    if np.any(counts > capacities):
        raise bad("a neighbour list longer than its capacity")
    slot_lists = np.repeat(np.arange(counts.size), counts)
    slot_rank = np.arange(slot_lists.size) - np.repeat(np.cumsum(counts) - counts, counts)
    slots = _u32(data, list_starts[slot_lists] + 4 + 4 * slot_rank).astype(np.int64)
    if slots.size and int(slots.max()) >= size:
        raise bad("a neighbour slot outside the graph")
    # A neighbour on level l must itself reach level l, or the search reads a list the node does not have.
    list_levels = np.concatenate((np.zeros(size, dtype=np.int64), upper_rank + 1))
    if slots.size and np.any(levels[slots] < list_levels[slot_lists]):
        raise bad("a neighbour on a level its node does not reach")
