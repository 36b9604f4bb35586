"""Reading a file of queries: one per line, each either plain text or a JSON object with a "query" field."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from edge.errors import BadInput
from edge.integrity import read_regular_file
from edge.text import clean_query

_UTF8_BOM = b"\xef\xbb\xbf"
# Far more queries than anyone searches in one call; the cap keeps a link to /dev/zero from reading without end.
MAX_QUERIES_BYTES = 64 << 20


def read_queries_file(path: str | Path) -> list[str]:
    """The cleaned queries of ``path`` (``-`` reads stdin), in file order.

    Format is detected per line: a line starting with ``{`` must be a JSON object with a string ``query``; any other
    line is the query itself. Invalid UTF-8, a blank line, a bad JSON line or an empty file raise BadInput naming the
    file and the 1-based line number."""
    name = str(path)
    try:
        if name == "-":
            data = sys.stdin.buffer.read(MAX_QUERIES_BYTES + 1)
        else:
            data = read_regular_file(path, MAX_QUERIES_BYTES)
    except OSError as exc:
        raise BadInput(f"cannot read {name}: {exc.strerror or exc}") from None
    if len(data) > MAX_QUERIES_BYTES:
        raise BadInput(f"{name} is larger than {MAX_QUERIES_BYTES} bytes: split it")
    if data.startswith(_UTF8_BOM):
        data = data[len(_UTF8_BOM) :]
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()  # the newline that ends the last line does not start another
    if not lines:
        raise BadInput(f"{name} holds no queries")
    return [_parse_line(raw, number, name) for number, raw in enumerate(lines, start=1)]


def _parse_line(raw: bytes, number: int, name: str) -> str:
    where = f"{name}: line {number}"
    try:
        line = raw.rstrip(b"\r").decode("utf-8")
    except UnicodeDecodeError:
        raise BadInput(f"{where} is not valid UTF-8") from None
    if line.lstrip().startswith("{"):
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise BadInput(f"{where} starts with '{{' but is not valid JSON ({exc.msg})") from None
        if not isinstance(record, dict) or not isinstance(record.get("query"), str):
            raise BadInput(f"{where} is a JSON object without a string \"query\" field")
        line = record["query"]
    return clean_query(line, what=where)
