"""Errors the runtime reports to a user as one line plus an exit code.

Exit codes: 2 = bad input or usage, 3 = an artifact is missing, corrupt or mismatched, 1 = anything else.
"""

from __future__ import annotations


class CareEdgeError(Exception):
    """An error with a one-line message meant for the user, and the process exit code it maps to."""

    exit_code: int = 1

    def __init__(self, message: str) -> None:
        # Messages end up on one stderr line: fold any newline a wrapped library error carried.
        one_line = " ".join(str(message).split())
        super().__init__(one_line)
        self.message = one_line


class BadInput(CareEdgeError, ValueError):
    """The user (or a calling tool) passed something unusable: empty query, k out of range, unreadable file."""

    exit_code = 2


class ArtifactError(CareEdgeError):
    """A collection or query encoder is missing, corrupt, of an unknown format, or does not match its partner."""

    exit_code = 3
