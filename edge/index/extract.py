"""Text out of a user's files: one :class:`Extracted` per file, or :class:`Skip` with a one-line reason.

A file becomes a list of :class:`Unit` (the whole text; one page of a PDF; one row of a CSV/JSONL file). Each unit
keeps its text and the blocks found in it (paragraphs and headings, with character offsets into the unit's text),
so a passage can say where it came from. Passages never cross units.

Formats: .txt, .md/.markdown, .html/.htm (stdlib html.parser), .pdf (pypdf, pure Python), .docx (the document's
XML read with the standard library: python-docx would add lxml, several MiB, to the binary for the same
paragraph/heading walk), .jsonl and .csv (one row per unit, the text column chosen by the caller).

Plain-text encodings: a byte-order mark (UTF-8/16/32), else strict UTF-8, else UTF-16 without a mark (NUL bytes on
one parity), else strict GB18030 (a superset of GBK and GB2312: the Chinese clinical texts this tool is for),
else bytes that look binary are skipped. A fixed cascade, not statistical guessing: for zh/en files the only
ambiguity that matters is UTF-8 vs GB18030, and strict UTF-8 decoding separates those two.
"""

from __future__ import annotations

import csv
import io
import json
import re
import zipfile
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Callable
from xml.etree import ElementTree

TEXT_SUFFIXES = (".txt", ".text")
MARKDOWN_SUFFIXES = (".md", ".markdown")
HTML_SUFFIXES = (".html", ".htm")
PDF_SUFFIXES = (".pdf",)
DOCX_SUFFIXES = (".docx",)
TABLE_SUFFIXES = (".jsonl", ".csv")
SUPPORTED_SUFFIXES = TEXT_SUFFIXES + MARKDOWN_SUFFIXES + HTML_SUFFIXES + PDF_SUFFIXES + DOCX_SUFFIXES + TABLE_SUFFIXES


class Skip(Exception):
    """A file that yields no passages; ``reason`` is the one line the report shows."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Block:
    """A paragraph (``heading == 0``) or a heading of level 1..6, as ``unit.text[start:end]``."""

    start: int
    end: int
    heading: int = 0


@dataclass
class Unit:
    text: str
    blocks: list[Block] = field(default_factory=list)
    page: int | None = None  # 1-based PDF page
    row: int | None = None  # 1-based data row of a CSV/JSONL file


@dataclass
class Extracted:
    units: list[Unit]
    encoding: str | None = None  # what a plain-text file was decoded as


@dataclass(frozen=True)
class TableOptions:
    """Which field of a CSV/JSONL row is the passage text; an optional title field becomes the row's heading."""

    text_field: str | None = None
    title_field: str | None = None


# --------------------------------------------------------------------------------------------------- decoding

_BOMS = (
    (b"\xef\xbb\xbf", "utf-8-sig"),
    (b"\xff\xfe\x00\x00", "utf-32-le"),
    (b"\x00\x00\xfe\xff", "utf-32-be"),
    (b"\xff\xfe", "utf-16-le"),
    (b"\xfe\xff", "utf-16-be"),
)


def decode_text(data: bytes) -> tuple[str, str]:
    """(text, encoding name) by the cascade in the module docstring; Skip for binary or undecodable bytes."""
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            try:
                return data.decode(encoding).lstrip("\ufeff"), encoding.replace("-sig", "")
            except UnicodeDecodeError:
                raise Skip(f"not valid {encoding} despite its byte-order mark") from None
    sample = data[:65536]
    even_nuls, odd_nuls = sample[0::2].count(0), sample[1::2].count(0)
    # UTF-16 without a mark: its ASCII characters (line breaks, digits, Latin words) put NULs on one parity only.
    if len(data) % 2 == 0 and (even_nuls == 0) != (odd_nuls == 0):
        encoding = "utf-16-le" if odd_nuls else "utf-16-be"
        try:
            text = data.decode(encoding)
        except UnicodeDecodeError:
            text = None
        if text is not None and _control_ratio(text) < 0.01:
            return text, encoding
    if b"\x00" in sample:
        raise Skip("binary content (NUL bytes): not a text file")
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    try:
        text = data.decode("gb18030")
    except UnicodeDecodeError:
        raise Skip("not text: neither UTF-8, UTF-16 nor GB18030") from None
    if _control_ratio(text) > 0.05:
        raise Skip("binary content: not a text file")
    return text, "gb18030"


def _control_ratio(text: str) -> float:
    sample = text[:20000]
    bad = sum(1 for ch in sample if ord(ch) < 32 and ch not in "\t\n\r\f")
    return bad / max(1, len(sample))


def _check_text(text: str) -> None:
    if _control_ratio(text) > 0.05:
        raise Skip("binary content: not a text file")


# --------------------------------------------------------------------------------------------------- blocks

_BLANK_LINES = re.compile(r"\n[ \t\r\f\v]*\n")
_MD_HEADING = re.compile(r"^(#{1,6})[ \t]+(.+?)[ \t#]*$")


def _trimmed(text: str, start: int, end: int) -> tuple[int, int]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def paragraph_blocks(text: str, *, markdown: bool = False) -> list[Block]:
    """Paragraphs separated by blank lines; with ``markdown``, ``#`` lines are headings of their own."""
    blocks: list[Block] = []
    position = 0
    pieces = []
    for match in _BLANK_LINES.finditer(text):
        pieces.append((position, match.start()))
        position = match.end()
    pieces.append((position, len(text)))
    for start, end in pieces:
        if not markdown:
            start, end = _trimmed(text, start, end)
            if end > start:
                blocks.append(Block(start, end))
            continue
        # Markdown: a heading line ends the paragraph it sits in.
        line_start = start
        para_start = start
        for line in text[start:end].splitlines(keepends=True):
            line_end = line_start + len(line)
            heading = _MD_HEADING.match(line.rstrip("\r\n"))
            if heading:
                s, e = _trimmed(text, para_start, line_start)
                if e > s:
                    blocks.append(Block(s, e))
                title_start = line_start + heading.start(2)
                title_end = line_start + heading.end(2)
                blocks.append(Block(title_start, title_end, heading=len(heading.group(1))))
                para_start = line_end
            line_start = line_end
        s, e = _trimmed(text, para_start, end)
        if e > s:
            blocks.append(Block(s, e))
    return blocks


class _UnitBuilder:
    """Collects blocks as text is appended, joining them with blank lines."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.length = 0
        self.blocks: list[Block] = []

    def add(self, text: str, heading: int = 0) -> None:
        text = text.strip()
        if not text:
            return
        if self.parts:
            self.parts.append("\n\n")
            self.length += 2
        self.blocks.append(Block(self.length, self.length + len(text), heading))
        self.parts.append(text)
        self.length += len(text)

    def unit(self, **where: int | None) -> Unit:
        return Unit("".join(self.parts), self.blocks, **where)


# --------------------------------------------------------------------------------------------------- formats


def extract_plain(data: bytes, *, markdown: bool = False) -> Extracted:
    text, encoding = decode_text(data)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    _check_text(text)
    return Extracted([Unit(text, paragraph_blocks(text, markdown=markdown))], encoding)


class _HTMLText(HTMLParser):
    _SKIP = {"script", "style", "noscript", "template", "head", "svg"}
    _BLOCKS = {"p", "div", "li", "tr", "td", "th", "br", "section", "article", "blockquote", "pre", "dd", "dt",
               "table", "ul", "ol", "header", "footer", "main", "nav", "aside", "figcaption", "caption", "hr"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.builder = _UnitBuilder()
        self._buffer: list[str] = []
        self._heading = 0
        self._skip_depth = 0

    def _flush(self) -> None:
        text = " ".join("".join(self._buffer).split())
        self._buffer = []
        self.builder.add(text, self._heading)

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag in self._SKIP:
            self._skip_depth += 1
        elif re.fullmatch(r"h[1-6]", tag):
            self._flush()
            self._heading = int(tag[1])
        elif tag in self._BLOCKS:
            self._flush()

    def handle_endtag(self, tag: str) -> None:
        if tag in self._SKIP:
            self._skip_depth = max(0, self._skip_depth - 1)
        elif re.fullmatch(r"h[1-6]", tag):
            self._flush()
            self._heading = 0
        elif tag in self._BLOCKS:
            self._flush()

    def handle_data(self, data: str) -> None:
        if not self._skip_depth:
            self._buffer.append(data)


def extract_html(data: bytes) -> Extracted:
    text, encoding = decode_text(data)
    parser = _HTMLText()
    parser.feed(text)
    parser.close()
    parser._flush()
    return Extracted([parser.builder.unit()], encoding)


def extract_pdf(path: Path) -> Extracted:
    try:
        from pypdf import PdfReader
        from pypdf.errors import PyPdfError
    except ImportError:
        raise Skip("PDF support needs pypdf: pip install 'care-edge[index]'") from None
    import logging

    logging.getLogger("pypdf").setLevel(logging.ERROR)  # pypdf warns on stderr about every odd object
    try:
        reader = PdfReader(str(path), strict=False)
        if reader.is_encrypted:
            try:
                opened = reader.decrypt("")  # owner-password-only PDFs open with an empty user password
            except Exception:  # noqa: BLE001 - pypdf raises several types for unsupported crypto
                opened = 0
            if not opened:
                raise Skip("encrypted PDF (needs a password)")
        units = []
        for number, page in enumerate(reader.pages, start=1):
            text = (page.extract_text() or "").replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "")
            if text.strip():
                units.append(Unit(text, paragraph_blocks(text), page=number))
    except Skip:
        raise
    except (PyPdfError, ValueError, KeyError, TypeError, AttributeError, IndexError, OSError, RecursionError,
            AssertionError, ZeroDivisionError) as exc:
        raise Skip(f"corrupt PDF ({type(exc).__name__}: {' '.join(str(exc).split())[:120]})") from None
    if not units:
        raise Skip("no text: OCR not supported (scanned PDF without a text layer)")
    return Extracted(units)


_W = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"
_DOCX_HEADING = re.compile(r"^(?:heading|berschrift|titre|titolo|título)\s*([1-9])$", re.IGNORECASE)


def extract_docx(path: Path) -> Extracted:
    try:
        with zipfile.ZipFile(path) as archive:
            document = archive.read("word/document.xml")
            styles = archive.read("word/styles.xml") if "word/styles.xml" in archive.namelist() else b""
    except (zipfile.BadZipFile, KeyError, OSError, EOFError) as exc:
        raise Skip(f"corrupt DOCX ({type(exc).__name__})") from None
    try:
        root = ElementTree.fromstring(document)
        heading_styles = _docx_heading_styles(styles)
    except ElementTree.ParseError as exc:
        raise Skip(f"corrupt DOCX (bad XML: {exc})") from None
    body = root.find(f"{_W}body")
    builder = _UnitBuilder()
    if body is not None:
        for element in body:
            if element.tag == f"{_W}p":
                style = element.find(f"{_W}pPr/{_W}pStyle")
                level = heading_styles.get(style.get(f"{_W}val", "") if style is not None else "", 0)
                builder.add(_docx_paragraph_text(element), level)
            elif element.tag == f"{_W}tbl":
                for row in element.iter(f"{_W}tr"):
                    cells = [" ".join(_docx_paragraph_text(p) for p in cell.iter(f"{_W}p"))
                             for cell in row.iter(f"{_W}tc")]
                    builder.add(" | ".join(c for c in cells if c.strip()))
    unit = builder.unit()
    return Extracted([unit] if unit.blocks else [])


def _docx_paragraph_text(paragraph: ElementTree.Element) -> str:
    parts = []
    for node in paragraph.iter():
        if node.tag == f"{_W}t" and node.text:
            parts.append(node.text)
        elif node.tag == f"{_W}tab":
            parts.append("\t")
        elif node.tag in (f"{_W}br", f"{_W}cr"):
            parts.append("\n")
    return "".join(parts)


def _docx_heading_styles(styles: bytes) -> dict[str, int]:
    """Style id -> heading level (Title = 1, Heading N = N + 1: Word's Title sits above its Heading 1), from the
    style names Word writes in any language UI."""
    levels: dict[str, int] = {"Title": 1}
    levels.update({f"Heading{n}": n + 1 for n in range(1, 9)})
    if not styles:
        return levels
    for style in ElementTree.fromstring(styles).iter(f"{_W}style"):
        style_id = style.get(f"{_W}styleId", "")
        name = style.find(f"{_W}name")
        label = name.get(f"{_W}val", "") if name is not None else ""
        match = _DOCX_HEADING.match(label.strip())
        if match:
            levels[style_id] = int(match.group(1)) + 1
        elif label.strip().lower() == "title":
            levels[style_id] = 1
    return levels


def extract_table(path: Path, data: bytes, options: TableOptions) -> Extracted:
    """One unit per row: the text field, under the title field as its heading when one is named."""
    text, encoding = decode_text(data)
    if path.suffix.lower() == ".jsonl":
        rows = _jsonl_rows(text)
    else:
        rows = _csv_rows(text)
    units: list[Unit] = []
    text_field = options.text_field
    for number, row in rows:
        if text_field is None:
            text_field = _default_text_field(row)
            if text_field is None:
                raise Skip(f"no text column (fields: {', '.join(list(row)[:8])}): pass --text-field NAME")
        if text_field not in row:
            raise Skip(f"row {number} has no field {text_field!r} (fields: {', '.join(list(row)[:8])})")
        builder = _UnitBuilder()
        if options.title_field and isinstance(row.get(options.title_field), str):
            builder.add(row[options.title_field], heading=1)
        value = row[text_field]
        builder.add(value if isinstance(value, str) else json.dumps(value, ensure_ascii=False))
        if builder.blocks and any(b.heading == 0 for b in builder.blocks):
            units.append(builder.unit(row=number))
    return Extracted(units, encoding)


_TEXT_FIELD_NAMES = ("text", "content", "body", "answer", "description", "passage")


def _default_text_field(row: dict) -> str | None:
    lowered = {str(k).lower(): k for k in row}
    for name in _TEXT_FIELD_NAMES:
        if name in lowered:
            return lowered[name]
    return None


def _jsonl_rows(text: str):
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise Skip(f"line {number} is not JSON ({exc.msg})") from None
        if not isinstance(row, dict):
            raise Skip(f"line {number} is not a JSON object")
        yield number, row


def _csv_rows(text: str):
    try:
        reader = csv.DictReader(io.StringIO(text, newline=""))
        for number, row in enumerate(reader, start=1):
            yield number, {k: v for k, v in row.items() if k is not None}
    except csv.Error as exc:
        raise Skip(f"malformed CSV ({exc})") from None


# --------------------------------------------------------------------------------------------------- dispatch


def extract_file(path: Path, data: Callable[[], bytes], table: TableOptions = TableOptions()) -> Extracted:
    """Extract ``path`` by its suffix; ``data`` reads its bytes (already size-capped by the caller)."""
    suffix = path.suffix.lower()
    if suffix in TEXT_SUFFIXES:
        return extract_plain(data())
    if suffix in MARKDOWN_SUFFIXES:
        return extract_plain(data(), markdown=True)
    if suffix in HTML_SUFFIXES:
        return extract_html(data())
    if suffix in PDF_SUFFIXES:
        return extract_pdf(path)
    if suffix in DOCX_SUFFIXES:
        return extract_docx(path)
    if suffix in TABLE_SUFFIXES:
        return extract_table(path, data(), table)
    raise Skip(f"unsupported file type {suffix or '(none)'}")
