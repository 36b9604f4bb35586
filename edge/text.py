"""Query text sanitising: what reaches the tokenizer is printable, single-spaced and non-empty."""

from __future__ import annotations

import os
import unicodedata

from edge.errors import BadInput

# Far beyond any query encoder's token budget; cutting here keeps a pasted megabyte from stalling the tokenizer.
MAX_QUERY_CHARS = 16_384
# Raw characters looked at before cleaning: room for the whitespace and controls that cleaning removes.
_RAW_CHARS = 4 * MAX_QUERY_CHARS


def clean_query(text: str, *, what: str = "query") -> str:
    """Drop control characters (tabs and line breaks become spaces), NUL and other C0/C1 controls, and collapse runs of
    whitespace to one space. Raises BadInput for text that is empty afterwards or holds lone surrogates (bytes that
    were not valid UTF-8 on the command line)."""
    if not isinstance(text, str):
        raise BadInput(f"{what} must be text, got {type(text).__name__}")
    kept: list[str] = []
    # Only the first MAX_QUERY_CHARS reach the encoder: cleaning a pasted megabyte in full would cost memory for
    # nothing, and the cut text is what the response echoes.
    for char in text[: _RAW_CHARS]:
        category = unicodedata.category(char)
        if category == "Cs":
            raise BadInput(f"{what} is not valid UTF-8")
        if category == "Cc":
            # \t \n \r and friends separate words; other controls (NUL, ESC, DEL, C1) are noise.
            kept.append(" " if char.isspace() else "")
        elif category == "Cf":
            kept.append("")  # zero-width spaces and joiners, byte-order marks, bidi marks: invisible, not text
        else:
            kept.append(char)
    cleaned = " ".join("".join(kept).split())
    if not cleaned:
        raise BadInput(f"{what} is empty")
    # One character more than the encoder keeps, so that the encoder still flags the query as truncated.
    return cleaned[: MAX_QUERY_CHARS + 1]


def argv_text(text: str, *, what: str = "query") -> str:
    """A command-line argument as the UTF-8 text the user typed. Python decodes argv with the locale's encoding; under
    a C/POSIX locale bytes above 0x7f arrive as surrogate escapes, which are undone here."""
    try:
        return os.fsencode(text).decode("utf-8")
    except UnicodeError:
        raise BadInput(f"{what} is not valid UTF-8") from None


def cap_chars(text: str, limit: int = MAX_QUERY_CHARS) -> tuple[str, bool]:
    """``text`` cut to ``limit`` characters, and whether it was cut."""
    if len(text) <= limit:
        return text, False
    return text[:limit], True


def one_line(text: str, width: int) -> str:
    """Whitespace collapsed and shortened to ``width`` characters with an ellipsis, for terminal listings."""
    flat = " ".join(text.split())
    if len(flat) <= width:
        return flat
    return flat[: max(0, width - 1)] + "…"
