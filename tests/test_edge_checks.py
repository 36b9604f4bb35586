"""edge.checks: the one positive-integer check behind --threads, -k of Collection searches and index parameters."""

from __future__ import annotations

import numpy as np
import pytest

from edge.checks import parse_positive_int, positive_int
from edge.errors import BadInput


@pytest.mark.parametrize("value", [1, 7, np.int64(3), np.uint16(2)])
def test_positive_int_accepts_integers_from_one(value) -> None:
    assert positive_int(value, "--threads") == int(value) and type(positive_int(value, "--threads")) is int


@pytest.mark.parametrize("value", [0, -2, True, False, 1.0, "3", None])
def test_positive_int_refuses_the_rest(value) -> None:
    with pytest.raises(BadInput, match=r"^--threads must be a positive integer, got "):
        positive_int(value, "--threads")


def test_parse_positive_int_reads_option_text() -> None:
    assert parse_positive_int("4", "--threads") == 4
    with pytest.raises(BadInput, match=r"^--threads must be a positive integer, got 'four'$"):
        parse_positive_int("four", "--threads")
    with pytest.raises(BadInput, match=r"^--threads must be a positive integer, got 0$"):
        parse_positive_int("0", "--threads")
