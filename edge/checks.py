"""Argument checks shared by the runtime's entry points, each raising :class:`edge.errors.BadInput`."""

from __future__ import annotations

from numbers import Integral

from edge.errors import BadInput


def positive_int(value: object, what: str) -> int:
    """``value`` as an int when it is an integer >= 1 (numpy integers count; booleans do not: ``True`` is not a
    count); otherwise BadInput saying that ``what`` must be a positive integer."""
    if isinstance(value, bool) or not isinstance(value, Integral) or value < 1:
        raise BadInput(f"{what} must be a positive integer, got {value!r}")
    return int(value)


def parse_positive_int(text: str, what: str) -> int:
    """A command-line option's text as a positive integer (see :func:`positive_int`)."""
    try:
        value = int(text)
    except ValueError:
        raise BadInput(f"{what} must be a positive integer, got {text!r}") from None
    return positive_int(value, what)
