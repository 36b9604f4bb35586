"""Write an evaluation report (``tools.evaluate``) as JSON, a Markdown table and a quality-vs-latency PNG.

All three files are written atomically. The JSON is the record (command, git revision, model hashes, every
metric); the Markdown and the plot are views of it.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Mapping

from edge.files import atomic_write_bytes, atomic_write_json

ICD_AVERAGE = "icd-coding-avg"


def _cell(text: str) -> str:
    """Text safe inside a Markdown table cell (EmbeddingGemma's prompt holds a '|')."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def _num(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _encoder_cell(encoder: Mapping[str, Any] | None) -> str:
    if not encoder:
        return "–"
    name = encoder.get("name", "?")
    sha = str(encoder.get("sha256", ""))[:12]
    prompt = encoder.get("prompt")
    prompt_part = f", prompt `{prompt}`" if prompt else ""
    return f"{name} ({encoder.get('kind', '?')}, sha256 {sha}{prompt_part})"


def _size_cell(size: Mapping[str, int]) -> str:
    return ", ".join(f"{v} {k}" for k, v in size.items())


def render_markdown(report: Mapping[str, Any]) -> str:
    created = report.get("created", {})
    settings = report.get("settings", {})
    systems = list(report["systems"])
    lines = [
        "# care-edge evaluation",
        "",
        f"- command: `{created.get('command', '')}`",
        f"- git revision: `{created.get('git_revision', 'unknown')}`; created {created.get('created_at', '?')}",
        *([f"- versions: {', '.join(f'{k} {v}' for k, v in created['versions'].items())}"]
          if created.get("versions") else []),
        f"- quick: {'yes' if settings.get('quick') else 'no'}; seed {settings.get('seed')}"
        + (f"; not run (cost): {', '.join(settings['skipped'])}" if settings.get("skipped") else ""),
        "",
        "## Systems",
        "",
        "| system | query side | document side | query encode p50 / p90 ms (1 thread) |",
        "|---|---|---|---|",
    ]
    for name, info in report["systems"].items():
        latency = info.get("latency") or {}
        if info.get("kind") == "bm25":
            query_side, doc_side = f"BM25 k1 {info.get('k1')}, b {info.get('b')}: {info.get('tokens')}", "same index"
        elif info.get("kind") == "hybrid":
            query_side, doc_side = " + ".join(info.get("parts", [])), info.get("fusion", "")
        elif info.get("kind") == "shipped":
            query_side = f"{_encoder_cell(info.get('query_encoder'))}; care-edge search, mode {info.get('mode')}"
            doc_side = ", ".join(f"{c['name']} ({c['documents']} docs)" for c in info.get("collections", []))
        else:
            query_side, doc_side = _encoder_cell(info.get("query_encoder")), _encoder_cell(info.get("document_encoder"))
            if info.get("dims"):
                doc_side += f", {info['dims']} dims"
        lines.append(f"| {_cell(name)} | {_cell(query_side)} | {_cell(doc_side)} | {_num(latency.get('p50_ms'), 2)} / "
                     f"{_num(latency.get('p90_ms'), 2)} |")

    header = "| task | metric | size | " + " | ".join(systems) + " |"
    rule = "|---|---|---|" + "---|" * len(systems)
    lines += ["", "## Summary (primary metric per task)", "", header, rule]
    for task_name, task in report["tasks"].items():
        primary = task["primary_metric"]
        cells = [_num((task["metrics"].get(s) or {}).get(primary)) for s in systems]
        lines.append(f"| {task_name} | {primary} | {_size_cell(task['size'])} | " + " | ".join(cells) + " |")
    summary = report.get("summary", {})
    icd = summary.get(ICD_AVERAGE)
    if icd:
        primary = icd["primary_metric"]
        cells = [_num((icd["metrics"].get(s) or {}).get(primary)) for s in systems]
        lines.append(f"| {ICD_AVERAGE} | {primary} | {', '.join(icd['languages'])} | " + " | ".join(cells) + " |")
    quality = summary.get("quality", {})
    if quality:
        cells = [_num(quality["scores"].get(s)) for s in systems]
        lines.append(f"| **quality** | mean of the above over {len(quality['tasks'])} search tasks | | "
                     + " | ".join(cells) + " |")
    cells = [_num((report["systems"][s].get("latency") or {}).get("p50_ms"), 2) for s in systems]
    lines.append("| **query encode p50 ms** | 1 thread, single queries | | " + " | ".join(cells) + " |")

    lines += ["", "## All metrics", "", "| task | metric | " + " | ".join(systems) + " |",
              "|---|---|" + "---|" * len(systems)]
    rows: list[tuple[str, Mapping[str, Any]]] = [(n, t["metrics"]) for n, t in report["tasks"].items()]
    if icd:
        rows.append((ICD_AVERAGE, icd["metrics"]))
    for task_name, per_system in rows:
        names: list[str] = []
        for values in per_system.values():
            for metric in values or {}:
                if metric not in names:
                    names.append(metric)
        for metric in names:
            cells = [_num((per_system.get(s) or {}).get(metric)) for s in systems]
            lines.append(f"| {task_name} | {metric} | " + " | ".join(cells) + " |")
    lines += ["", "– : not applicable (BM25 and the fusion have no vectors for pair, classification and clustering "
              "tasks) or not measured.", ""]
    return "\n".join(lines)


def render_plot(report: Mapping[str, Any]) -> bytes:
    """PNG: one point per system, x = query-encode p50 (ms, log scale), y = the quality score."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    quality = report.get("summary", {}).get("quality", {})
    # A legend rather than labels beside the points: CARE, hybrid and e5 sit within a few ms and points of each
    # other, and labels beside them overprint one another.
    fig, ax = plt.subplots(figsize=(9, 4.5), dpi=120)
    markers = "osD^vP*Xh<>p"
    missing = []
    plotted = 0
    for name, info in report["systems"].items():
        x = (info.get("latency") or {}).get("p50_ms")
        y = (quality.get("scores") or {}).get(name)
        if x is None or y is None:
            missing.append(name)
            continue
        ax.scatter([max(x, 1e-3)], [y], s=45, marker=markers[plotted % len(markers)], alpha=0.85,
                   label=f"{name}: {y:.3f} @ {x:.3g} ms")
        plotted += 1
    ax.set_xscale("log")
    ax.margins(x=0.1, y=0.1)
    if plotted:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    ax.set_xlabel("query encoding p50, ms (1 thread, single queries; log scale)")
    ax.set_ylabel("quality: mean primary metric over search tasks")
    quick = " (quick)" if report.get("settings", {}).get("quick") else ""
    ax.set_title(f"care-edge: quality against query latency{quick}")
    ax.grid(True, which="both", alpha=0.3)
    if missing:
        ax.text(0.01, 0.01, "not plotted (no latency or quality): " + ", ".join(missing), transform=ax.transAxes,
                fontsize=7, va="bottom")
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def write_reports(report: Mapping[str, Any], out_dir: Path, stem: str) -> dict[str, Path]:
    """``<stem>.json``, ``<stem>.md`` and ``<stem>.png`` under ``out_dir``; returns their paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / f"{stem}.json", "markdown": out_dir / f"{stem}.md", "plot": out_dir / f"{stem}.png"}
    atomic_write_json(paths["json"], report)
    atomic_write_bytes(paths["markdown"], render_markdown(report).encode("utf-8"))
    atomic_write_bytes(paths["plot"], render_plot(report))
    return paths


def main(argv: list[str] | None = None) -> int:
    """Re-render the Markdown and PNG views of saved report JSONs (the JSON, the record, is not rewritten)."""
    import argparse
    import json
    import sys

    parser = argparse.ArgumentParser(prog="python -m tools.evaluate.report", description=main.__doc__)
    parser.add_argument("reports", nargs="+", type=Path, help="report JSON files written by tools.evaluate")
    args = parser.parse_args(argv)
    for path in args.reports:
        try:
            report = json.loads(path.read_text(encoding="utf-8"))
            markdown, plot = render_markdown(report).encode("utf-8"), render_plot(report)
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
            print(f"error: {path}: not a readable tools.evaluate report ({type(error).__name__}: {error})",
                  file=sys.stderr)
            return 2
        atomic_write_bytes(path.with_suffix(".md"), markdown)
        atomic_write_bytes(path.with_suffix(".png"), plot)
        print(f"rendered {path.with_suffix('.md')} and {path.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
