"""edge.usearch_file: the structural check of a saved usearch index, on well-formed and crafted files."""

from __future__ import annotations

import shutil
import struct
from pathlib import Path

import numpy as np
import pytest

from edge import formats as fmt
from edge.errors import ArtifactError
from edge.usearch_file import check_usearch_file

REPO_ROOT = Path(__file__).resolve().parent.parent
PREBUILT = REPO_ROOT / "prebuilt_index"


class Layout:
    """Where the parts of a saved index are, read the way edge.usearch_file reads them."""

    def __init__(self, path: Path) -> None:
        data = path.read_bytes()
        rows, row_bytes = struct.unpack_from("<II", data, 0)
        head = 8 + rows * row_bytes + 64
        self.size, self.connectivity, self.connectivity_base, self.max_level, self.entry = struct.unpack_from(
            "<5Q", data, head)
        self.graph_head = head
        levels_at = head + 40
        self.levels = np.frombuffer(data[levels_at : levels_at + 2 * self.size], dtype="<i2").astype(int)
        node_bytes = 10 + (4 + 4 * self.connectivity_base) + self.levels * (4 + 4 * self.connectivity)
        self.starts = levels_at + 2 * self.size + np.concatenate(([0], np.cumsum(node_bytes)[:-1]))

    def base_list(self, node: int) -> int:
        return int(self.starts[node]) + 10

    def upper_list(self, node: int, level: int) -> int:
        return self.base_list(node) + 4 + 4 * self.connectivity_base + (level - 1) * (4 + 4 * self.connectivity)


def _write_u32(path: Path, offset: int, value: int) -> None:
    with open(path, "r+b") as handle:
        handle.seek(offset)
        handle.write(struct.pack("<I", value))


@pytest.fixture()
def index_copy(tiny, tmp_path: Path) -> Path:
    path = tmp_path / fmt.VECTORS_FILE
    shutil.copyfile(tiny.collection / fmt.VECTORS_FILE, path)
    return path


def test_well_formed_indexes_pass(index_copy: Path) -> None:
    check_usearch_file(index_copy)
    for name in ("cmed-zh", "icd10"):
        shipped = PREBUILT / name / fmt.VECTORS_FILE
        if shipped.is_file():
            check_usearch_file(shipped)


def test_slot_outside_the_graph(index_copy: Path) -> None:
    layout = Layout(index_copy)
    _write_u32(index_copy, layout.base_list(3) + 4, layout.size)
    with pytest.raises(ArtifactError, match="a neighbour slot outside the graph"):
        check_usearch_file(index_copy)


def test_list_longer_than_its_capacity(index_copy: Path) -> None:
    layout = Layout(index_copy)
    _write_u32(index_copy, layout.base_list(5), layout.connectivity_base + 1)
    with pytest.raises(ArtifactError, match="longer than its capacity"):
        check_usearch_file(index_copy)


def test_neighbour_below_the_level_of_its_list(index_copy: Path) -> None:
    layout = Layout(index_copy)
    upper = int(np.flatnonzero(layout.levels >= 1)[0])
    ground = int(np.flatnonzero(layout.levels == 0)[0])
    _write_u32(index_copy, layout.upper_list(upper, 1), 1)
    _write_u32(index_copy, layout.upper_list(upper, 1) + 4, ground)
    with pytest.raises(ArtifactError, match="a level its node does not reach"):
        check_usearch_file(index_copy)


@pytest.mark.parametrize("damage", ["truncated", "appended", "no head", "entry slot", "level table", "empty"])
def test_inconsistent_sizes_and_heads(index_copy: Path, damage: str) -> None:
    layout = Layout(index_copy)
    data = bytearray(index_copy.read_bytes())
    if damage == "truncated":
        data = data[:-3]
    elif damage == "appended":
        data += b"\0" * 4
    elif damage == "no head":
        data[layout.graph_head - 64] ^= 0xFF
    elif damage == "entry slot":
        struct.pack_into("<Q", data, layout.graph_head + 32, layout.size)
    elif damage == "level table":
        struct.pack_into("<h", data, layout.graph_head + 40, layout.max_level + 1)
    else:
        data = bytearray()
    index_copy.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="not a well-formed usearch index"):
        check_usearch_file(index_copy)
