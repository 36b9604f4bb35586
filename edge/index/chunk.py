"""Units of extracted text -> passages that fit the document encoder.

A passage gathers consecutive paragraphs of one section (the blocks between two headings) of one unit (a page, a
row, a whole file) until the token budget is reached; the next passage starts with up to ``overlap`` tokens of the
previous one's last paragraphs, so a fact on a boundary is whole in one of them. A paragraph longer than the budget
is split at sentence ends (then at any character). The section's heading path is the passage's first line: it is
what says "Dosage" belongs to "Amoxicillin". Budget and overlap were chosen by a retrieval measurement
(docs/index.md).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from edge.index.extract import Block, Unit

DEFAULT_PASSAGE_TOKENS = 256
DEFAULT_OVERLAP_TOKENS = 32
HEADING_SEPARATOR = " > "

_SENTENCE_END = re.compile(r"(?<=[.!?;。！？；])[\"'”’)）]*\s*|\n+")


@dataclass(frozen=True)
class ChunkSettings:
    passage_tokens: int = DEFAULT_PASSAGE_TOKENS
    overlap_tokens: int = DEFAULT_OVERLAP_TOKENS

    def to_json(self) -> dict[str, int]:
        return {"passage_tokens": self.passage_tokens, "overlap_tokens": self.overlap_tokens}


@dataclass(frozen=True)
class Passage:
    text: str  # heading path line (if any) + the unit's text[start:end]
    start: int
    end: int
    headings: tuple[str, ...]
    page: int | None
    row: int | None

    def meta(self) -> dict[str, Any]:
        """Where the passage is: ``span`` is [start, end) in the extracted text of its page, row or file."""
        meta: dict[str, Any] = {"span": [self.start, self.end]}
        if self.headings:
            meta["headings"] = list(self.headings)
        if self.page is not None:
            meta["page"] = self.page
        if self.row is not None:
            meta["row"] = self.row
        return meta


@dataclass(frozen=True)
class _Piece:
    start: int
    end: int
    tokens: int


def _split_long(text: str, block: Block, budget: int, count: Callable[[str], int]) -> list[_Piece]:
    """A block over budget, cut at sentence ends; a sentence still over budget is cut by characters."""
    pieces: list[_Piece] = []
    position = block.start
    bounds = [m.end() + block.start for m in _SENTENCE_END.finditer(text[block.start:block.end])]
    bounds = [b for b in bounds if block.start < b < block.end] + [block.end]
    for bound in bounds:
        if bound <= position:
            continue
        tokens = count(text[position:bound])
        if tokens <= budget:
            pieces.append(_Piece(position, bound, tokens))
        else:
            pieces.extend(_split_chars(text, position, bound, budget, count))
        position = bound
    return pieces


def _split_chars(text: str, start: int, end: int, budget: int, count: Callable[[str], int]) -> list[_Piece]:
    pieces = []
    while start < end:
        lo, hi = start + 1, end  # the longest prefix within budget (at least one character)
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if count(text[start:mid]) <= budget:
                lo = mid
            else:
                hi = mid - 1
        pieces.append(_Piece(start, lo, count(text[start:lo])))
        start = lo
    return pieces


def chunk_unit(unit: Unit, settings: ChunkSettings, count: Callable[[str], int]) -> list[Passage]:
    """Passages of one unit; ``count`` gives a text's token count in the document encoder's tokenizer."""
    passages: list[Passage] = []
    stack: list[tuple[int, str]] = []  # (level, heading text)
    current: list[_Piece] = []
    text = unit.text

    def headings() -> tuple[str, ...]:
        return tuple(title for _, title in stack)

    def emit(pieces: Sequence[_Piece]) -> None:
        start, end = pieces[0].start, pieces[-1].end
        path = headings()
        body = text[start:end].strip()
        prefix = HEADING_SEPARATOR.join(path) + "\n" if path else ""
        passages.append(Passage(prefix + body, start, end, path, unit.page, unit.row))

    def budget() -> int:
        path = headings()
        prefix_tokens = count(HEADING_SEPARATOR.join(path)) if path else 0
        # The heading line takes at most half the budget; a pathological heading cannot starve its passages.
        return max(settings.passage_tokens // 2, settings.passage_tokens - prefix_tokens)

    def flush(keep_overlap: bool) -> None:
        nonlocal current
        if not current:
            return
        emit(current)
        carried: list[_Piece] = []
        if keep_overlap and settings.overlap_tokens > 0:
            total = 0
            for piece in reversed(current[1:] if len(current) > 1 else []):
                if total + piece.tokens > settings.overlap_tokens:
                    break
                carried.insert(0, piece)
                total += piece.tokens
        current = carried

    for block in unit.blocks:
        if block.heading:
            flush(keep_overlap=False)
            current = []
            while stack and stack[-1][0] >= block.heading:
                stack.pop()
            stack.append((block.heading, " ".join(text[block.start:block.end].split())))
            continue
        limit = budget()
        tokens = count(text[block.start:block.end])
        pieces = [_Piece(block.start, block.end, tokens)] if tokens <= limit else _split_long(text, block, limit, count)
        for piece in pieces:
            used = sum(p.tokens for p in current)
            if current and used + piece.tokens > limit:
                flush(keep_overlap=True)
                # A carried overlap that leaves no room for the new piece is dropped.
                while current and sum(p.tokens for p in current) + piece.tokens > limit:
                    current.pop(0)
            current.append(piece)
    flush(keep_overlap=False)
    return passages


def chunk_units(units: Sequence[Unit], settings: ChunkSettings, count: Callable[[str], int]) -> list[Passage]:
    passages: list[Passage] = []
    for unit in units:
        passages.extend(chunk_unit(unit, settings, count))
    return passages
