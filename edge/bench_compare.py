"""``care-edge bench compare A.json B.json [...]``: several bench reports side by side.

Each latency row gives every report's p50, the range of its per-round p50s, and its ratio to the first report. A
difference is called "within spread" when the two reports' per-round p50 ranges overlap: the machines' own drift
from round to round then explains it as well as the change does. Reports from before rounds were recorded (or with
one round) have no range, so for them the question stays open (``None``). Rows of context (CPU, instruction sets,
versions, artifacts, workload) show what differs between the runs; a different workload is pointed out in a note,
since the ratios then compare different work.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

from edge.bench import STAGES
from edge.errors import BadInput
from edge.integrity import read_regular_file
from edge.machine import SOFTWARE_PACKAGES

LATENCY_ROWS = ("end_to_end", *STAGES)
# Higher is better for these; their ratios read the same way as the latencies' (report / first report).
OTHER_ROWS = ("qps_1_thread", "qps_n_threads", "recall_at_10", "peak_rss_mb")
# Workload keys: two reports that differ in any of these did not measure the same work.
# A bench report is a few KiB; anything far larger is not one (and is not read whole into memory).
MAX_REPORT_BYTES = 16 * 1024 * 1024
WORKLOAD_KEYS = ("index", "encoder", "mode", "n_queries", "k", "intra_op_threads", "expansion_search")


def load_report(path: str | Path) -> dict[str, Any]:
    """A bench report written by ``care-edge bench --json`` or ``--out``; BadInput naming the file otherwise."""
    try:
        text = read_regular_file(path, MAX_REPORT_BYTES).decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = (exc.strerror or str(exc)) if isinstance(exc, OSError) else "not UTF-8"
        raise BadInput(f"{path}: cannot read the bench report ({reason})") from None
    try:
        report = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadInput(f"{path}: not JSON ({exc.msg} at line {exc.lineno})") from None
    if isinstance(report, dict) and "ef_curve" in report:
        raise BadInput(f"{path}: an --ef-curve report, not a latency report: compare `care-edge bench --out` files")
    try:
        _p50(report["end_to_end_ms"])
        for stage in STAGES:
            _p50(report["stages_ms"][stage])
    except (KeyError, TypeError, ValueError):
        raise BadInput(f"{path}: not a care-edge bench report (end_to_end_ms / stages_ms p50 missing)") from None
    return report


def _p50(values: Any) -> float:
    p50 = values["p50"]
    if isinstance(p50, bool) or not isinstance(p50, (int, float)):
        raise ValueError("p50 is not a number")
    return float(p50)


def _round_range(report: dict[str, Any], row: str) -> tuple[float, float] | None:
    rounds = report.get("round_p50_ms", {}).get(row)
    if not isinstance(rounds, list) or len(rounds) < 2:
        return None
    return float(min(rounds)), float(max(rounds))


def within_spread(first: tuple[float, float] | None, other: tuple[float, float] | None) -> bool | None:
    """True when two per-round p50 ranges overlap, False when they do not, None when either is unknown."""
    if first is None or other is None:
        return None
    return first[0] <= other[1] and other[0] <= first[1]


def _ratio(value: float | None, first: float | None) -> float | None:
    if value is None or first is None or first == 0:
        return None
    return round(value / first, 3)


def _latency(report: dict[str, Any], row: str) -> float:
    return _p50(report["end_to_end_ms"] if row == "end_to_end" else report["stages_ms"][row])


def _number(report: dict[str, Any], key: str) -> float | None:
    value = report.get(key)
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _context(report: dict[str, Any]) -> dict[str, Any]:
    machine = report.get("machine") or {}
    software = report.get("software") or {}
    index = report.get("index") or {}
    encoder = report.get("encoder") or {}
    isa = machine.get("isa")
    return {
        "cpu_model": machine.get("cpu_model"),
        "logical_cpus": machine.get("logical_cpus"),
        "isa": None if not isinstance(isa, dict) else " ".join(name for name, present in isa.items() if present) or "-",
        "memory_total_mb": machine.get("memory_total_mb"),
        "load_average": machine.get("load_average"),
        "runner": software.get("runner"),
        "python": software.get("python"),
        **{name: software.get(name) for name in SOFTWARE_PACKAGES},
        "index": _artifact(index),
        "encoder": _artifact(encoder),
        "expansion_search": index.get("expansion_search"),
        "mode": report.get("mode"),
        "n_queries": report.get("n_queries"),
        "k": report.get("k"),
        "intra_op_threads": report.get("intra_op_threads"),
        "rounds": report.get("rounds", 1),
    }


def _artifact(described: dict[str, Any]) -> str | None:
    name = described.get("name")
    digest = described.get("sha256")
    if name is None:
        return None
    return f"{name} {digest[:12]}" if isinstance(digest, str) else str(name)


def compare_reports(reports: Sequence[dict[str, Any]], labels: Sequence[str]) -> dict[str, Any]:
    """The comparison of ``reports`` (the first is the reference) as a JSON-ready dict."""
    if len(reports) < 2:
        raise BadInput("bench compare needs at least two reports")
    contexts = [_context(report) for report in reports]
    context = {key: [item[key] for item in contexts] for key in contexts[0]}
    rows = []
    for row in LATENCY_ROWS:
        values = [_latency(report, row) for report in reports]
        if row == "lexical" and not any(values):
            continue  # dense runs only
        ranges = [_round_range(report, row) for report in reports]
        rows.append({
            "metric": row,
            "unit": "ms p50",
            "values": [{"value": value, "round_range": list(spread) if spread else None,
                        "ratio": _ratio(value, values[0]),
                        "within_spread": None if position == 0 else within_spread(ranges[0], spread)}
                       for position, (value, spread) in enumerate(zip(values, ranges))],
        })
    for row in OTHER_ROWS:
        numbers = [_number(report, row) for report in reports]
        rows.append({
            "metric": row,
            "unit": "",
            "values": [{"value": value, "round_range": None, "ratio": _ratio(value, numbers[0]), "within_spread": None}
                       for value in numbers],
        })
    buckets = list(dict.fromkeys(label for report in reports for label in report.get("by_query_tokens", {})))
    for bucket in buckets:
        values = [_bucket_p50(report, bucket) for report in reports]
        rows.append({
            "metric": f"end_to_end {bucket} tokens",
            "unit": "ms p50",
            "values": [{"value": value, "round_range": None, "ratio": _ratio(value, values[0]), "within_spread": None}
                       for value in values],
        })
    differing = [key for key in WORKLOAD_KEYS if len({json.dumps(value) for value in context[key]}) > 1]
    notes = []
    if differing:
        notes.append(f"the reports measured different work ({', '.join(differing)} differ): ratios compare different "
                     "workloads")
    if any(item["rounds"] in (None, 1) for item in contexts):
        notes.append("a report without several rounds has no spread: 'within spread' is unknown for it")
    return {"reports": list(labels), "context": context, "rows": rows, "notes": notes}


def _bucket_p50(report: dict[str, Any], bucket: str) -> float | None:
    found = report.get("by_query_tokens", {}).get(bucket)
    try:
        return _p50(found["end_to_end_ms"])
    except (KeyError, TypeError, ValueError):
        return None


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, list):
        return ", ".join(str(item) for item in value)
    return str(value)


def _number_text(value: float) -> str:
    """Four significant digits below 100 (0.9880 stays a recall, 0.183 a fetch time), one decimal above."""
    return f"{value:.4g}" if abs(value) < 100 else f"{value:.1f}"


def _value_cell(item: dict[str, Any], first: bool) -> str:
    value = item["value"]
    if value is None:
        return "-"
    text = _number_text(value)
    if item["round_range"]:
        low, high = item["round_range"]
        text += f" [{_number_text(low)}-{_number_text(high)}]"
    if not first and item["ratio"] is not None:
        text += f" x{item['ratio']:.2f}"
        if item["within_spread"] is True:
            text += " ~"
        elif item["within_spread"] is False:
            text += " !"
    return text


def format_comparison(comparison: dict[str, Any]) -> str:
    """A plain-text table: context rows, then one row per metric with the per-report cells."""
    labels = comparison["reports"]
    table: list[list[str]] = [["", *labels]]
    table += [[key, *(_cell(value) for value in values)] for key, values in comparison["context"].items()]
    table.append(["", *([""] * len(labels))])
    for row in comparison["rows"]:
        name = f"{row['metric']} ({row['unit']})" if row["unit"] else row["metric"]
        table.append([name, *(_value_cell(item, position == 0) for position, item in enumerate(row["values"]))])
    widths = [max(len(line[column]) for line in table) for column in range(len(table[0]))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip() for line in table]
    lines.append("[a-b]: range of the per-round p50s; xR: ratio to the first report; "
                 "~: within the runs' spread (ranges overlap); !: outside it")
    lines += [f"note: {note}" for note in comparison["notes"]]
    return "\n".join(lines)
