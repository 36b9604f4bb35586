"""``care-edge``: search, embed, info, bench, index and serve on the command line.

Every failure is one line on stderr and an exit code: 2 bad input or usage, 3 missing/corrupt/mismatched artifact,
1 anything else (``CARE_EDGE_DEBUG=1`` adds the traceback).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
import traceback
from pathlib import Path
from typing import Any, NoReturn, Sequence

from edge import formats as fmt
from edge.bench import (DEFAULT_ROUNDS, default_threads, ef_curve, format_ef_curve, format_report, parse_expansions,
                         run_bench)
from edge.bench_compare import compare_reports, format_comparison, load_report
from edge.checks import parse_positive_int
from edge.collection import Collection
from edge.encoder import QueryEncoder
from edge.errors import ArtifactError, BadInput, CareEdgeError
from edge.files import atomic_write_json
from edge.formats import SEARCH_MODES
from edge.index.cli import add_index_command
from edge.paths import resolve_collection_dir, resolve_encoder_dir
from edge.queryfile import read_queries_file
from edge.serve.command import add_parser as add_serve_parser
from edge.search import DEFAULT_K, K_MAX, K_MIN, SearchResponse, Searcher, alignment_problem, check_k
from edge.integrity import verify_files
from edge.limits import bench_threads_limit, parse_threads
from edge.text import argv_text, clean_query, one_line

PROG = "care-edge"
DEBUG_ENV = "CARE_EDGE_DEBUG"
BATCH_SIZE = 32


class _OneLineParser(argparse.ArgumentParser):
    """argparse prints usage plus an error on two lines and exits; we want one line and the exit code 2."""

    def error(self, message: str) -> NoReturn:
        raise BadInput(f"{message} (see `{self.prog} --help`)")


# --------------------------------------------------------------------------------------------------- arguments


def _parse_k(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise BadInput(f"-k must be an integer from {K_MIN} to {K_MAX}, got {text!r}") from None
    return check_k(value)


def build_parser() -> argparse.ArgumentParser:
    parser = _OneLineParser(prog=PROG, description="Offline medical semantic search (CARE).")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_OneLineParser, metavar="COMMAND")

    search = commands.add_parser("search", help="search a collection")
    search.add_argument("query", nargs="?", help="the query text")
    search.add_argument("--queries-file", metavar="F", help="one query per line (text or JSON with a 'query' field)")
    _add_index_options(search)
    search.add_argument("-k", default=str(DEFAULT_K), help=f"results per query, {K_MIN}..{K_MAX} (default {DEFAULT_K})")
    search.add_argument("--threads", default="1", help="onnxruntime intra-op threads (default 1)")
    search.add_argument("--mode", choices=SEARCH_MODES, default=None,
                        help="dense (query encoder + index) or hybrid (+ BM25 keyword search, fused); "
                             "default: the collection's default_mode")
    search.add_argument("--json", action="store_true", help="JSON output (one object per line for a queries file)")
    search.set_defaults(handler=cmd_search)

    embed = commands.add_parser("embed", help="embed texts with the query encoder")
    embed.add_argument("texts", nargs="*", metavar="TEXT")
    embed.add_argument("--file", metavar="F", help="one text per line (text or JSON with a 'query' field)")
    embed.add_argument("--encoder", metavar="DIR", help="query encoder directory or name (default: the shipped one)")
    embed.add_argument("--threads", default="1", help="onnxruntime intra-op threads (default 1)")
    embed.add_argument("--json", action="store_true", help="JSON output")
    embed.set_defaults(handler=cmd_embed)

    info = commands.add_parser("info", help="describe a collection and its query encoder")
    _add_index_options(info)
    info.add_argument("--verify", action="store_true", help="check the sha256 of every file")
    info.add_argument("--json", action="store_true", help="JSON output")
    info.set_defaults(handler=cmd_info)

    bench = commands.add_parser("bench", help="latency, throughput, memory and recall")
    _add_index_options(bench)
    bench.add_argument("--queries", metavar="F", help="queries file (default: the collection's bench_queries.txt)")
    bench.add_argument("--threads", default=None, help="concurrent threads for qps_n_threads (default: CPU count)")
    bench.add_argument("--intra-op-threads", default="1",
                       help="onnxruntime intra-op threads of the encoder for every pass (default 1)")
    bench.add_argument("--mode", choices=SEARCH_MODES, default=None,
                       help="search mode of the timed calls (default: the collection's default_mode)")
    bench.add_argument("--rounds", default=str(DEFAULT_ROUNDS),
                       help=f"sequential latency passes over the queries, each p50 kept (default {DEFAULT_ROUNDS})")
    bench.add_argument("--ef-curve", metavar="EF,EF,...",
                       help="instead: recall@10 and search time for each index expansion_search, e.g. 16,32,64,128")
    bench.add_argument("--out", metavar="FILE", help="also write the JSON report to FILE (atomically)")
    bench.add_argument("--json", action="store_true", help="JSON output")
    bench.set_defaults(handler=cmd_bench)
    bench_commands = bench.add_subparsers(dest="bench_command", parser_class=_OneLineParser, metavar="compare")
    compare = bench_commands.add_parser("compare", help="bench reports side by side, ratios to the first")
    compare.add_argument("reports", nargs="+", metavar="REPORT.json")
    compare.add_argument("--json", action="store_true", help="JSON output")
    compare.set_defaults(handler=cmd_bench_compare)
    add_index_command(commands)
    add_serve_parser(commands)
    return parser


def _add_index_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--index", metavar="NAME|DIR", help="collection directory or name under prebuilt_index")
    parser.add_argument("--encoder", metavar="DIR", help="query encoder directory or name (default: the shipped one)")


# --------------------------------------------------------------------------------------------------- output


def _print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, ensure_ascii=False) + "\n")


def _note(message: str) -> None:
    print(f"{PROG}: note: {message}", file=sys.stderr)


def _timing_keys(mode: str) -> tuple[str, ...]:
    return ("tokenize", "encode", "search", "lexical", "fetch") if mode == "hybrid" else (
        "tokenize", "encode", "search", "fetch")


def _format_response(response: SearchResponse) -> str:
    width = shutil.get_terminal_size((100, 24)).columns
    lines = []
    for rank, result in enumerate(response.results, start=1):
        prefix = f"{rank:>3}. {result.score:.4f}  {result.id}  "
        lines.append(prefix + one_line(result.text, max(20, width - len(prefix))))
        if "file" in result.meta:
            lines.append(" " * 5 + one_line(_source_line(result.meta), max(20, width - 5)))
    if not lines:
        lines.append("(no results)")
    timings = response.timings_ms
    lines.append(
        "   "
        + " | ".join(f"{key} {timings[key]:.2f} ms" for key in _timing_keys(response.mode))
        + f" | total {timings['total']:.2f} ms"
    )
    return "\n".join(lines)


def _source_line(meta: dict[str, Any]) -> str:
    """Where a passage of an indexed folder comes from: file, page, heading path, character span."""
    where = [str(meta["file"])]
    if "page" in meta:
        where.append(f"p. {meta['page']}")
    if "row" in meta:
        where.append(f"row {meta['row']}")
    if meta.get("headings"):
        where.append(" > ".join(map(str, meta["headings"])))
    if isinstance(meta.get("span"), list) and len(meta["span"]) == 2:
        where.append(f"chars {meta['span'][0]}-{meta['span'][1]}")
    return "from " + ", ".join(where)


# --------------------------------------------------------------------------------------------------- commands


def _open_searcher(index: str | None, encoder: str | None, threads: int) -> Searcher:
    collection = Collection(resolve_collection_dir(index))
    query_encoder = QueryEncoder(resolve_encoder_dir(encoder), threads=threads)
    return Searcher(collection, query_encoder)


def cmd_search(args: argparse.Namespace) -> int:
    k = _parse_k(args.k)
    threads = parse_threads(args.threads, "--threads")
    if (args.query is None) == (args.queries_file is None):
        raise BadInput("give either a QUERY or --queries-file F (see `care-edge search --help`)")
    # Validate all input before loading anything, so bad input fails fast and with no partial output.
    queries = read_queries_file(args.queries_file) if args.queries_file else [clean_query(argv_text(args.query))]
    searcher = _open_searcher(args.index, args.encoder, threads)
    batch_mode = args.queries_file is not None
    for start in range(0, len(queries), BATCH_SIZE):
        responses = searcher.search_batch(queries[start : start + BATCH_SIZE], k, args.mode)
        for offset, response in enumerate(responses):
            if response.truncated:
                where = f"line {start + offset + 1}: " if batch_mode else ""
                _note(f"{where}query longer than {searcher.encoder.max_tokens} tokens was truncated")
            if args.json:
                _print_json(response.to_json())
            else:
                if batch_mode:
                    print(f"{'' if start + offset == 0 else chr(10)}query {start + offset + 1}: {response.query}")
                print(_format_response(response))
        sys.stdout.flush()
    return 0


def cmd_embed(args: argparse.Namespace) -> int:
    threads = parse_threads(args.threads, "--threads")
    if bool(args.texts) == bool(args.file):
        raise BadInput("give either TEXT arguments or --file F (see `care-edge embed --help`)")
    if args.file:
        texts = read_queries_file(args.file)
    else:
        texts = [clean_query(argv_text(text, what=f"TEXT {number}"), what=f"TEXT {number}")
                 for number, text in enumerate(args.texts, start=1)]
    encoder = QueryEncoder(resolve_encoder_dir(args.encoder), threads=threads)
    result = encoder.encode(texts)
    for number, truncated in enumerate(result.truncated, start=1):
        if truncated:
            _note(f"text {number} longer than {encoder.max_tokens} tokens was truncated")
    if args.json:
        _print_json(
            {
                "model": encoder.name,
                "dim": encoder.dims,
                "vectors": result.vectors.tolist(),
                "truncated": result.truncated,
            }
        )
    else:
        for vector in result.vectors:
            print(" ".join(f"{value:.6f}" for value in vector))
    return 0


def _file_sizes(manifest: dict[str, Any]) -> dict[str, int]:
    return {name: entry["size"] for name, entry in manifest["files"].items()}


def _collection_info(collection: Collection) -> dict[str, Any]:
    manifest = collection.manifest
    files = _file_sizes(manifest)
    return {
        "name": collection.name,
        "description": collection.description,
        "path": str(collection.directory),
        "documents": collection.count,
        "truncated_documents": manifest["counts"].get("truncated", 0),
        "dims": collection.dims,
        "index": manifest["index"],
        "search": manifest.get("search", {"default_mode": "dense"}),
        "document_encoder": manifest["document_encoder"],
        "alignment_id": collection.alignment_id,
        "files": files,
        "total_bytes": sum(files.values()),
        "licenses": manifest.get("licenses", []),
        "created": manifest.get("created", {}),
    }


def _encoder_info(directory: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    files = _file_sizes(manifest)
    try:
        config = fmt.read_encoder_config(directory).to_dict()
    except ArtifactError as exc:
        config = {"error": exc.message}
    return {
        "name": manifest["name"],
        "base_model": manifest.get("base_model", ""),
        "path": str(directory),
        "alignment_id": manifest["alignment"]["alignment_id"],
        "aligned_to": manifest["alignment"].get("name", ""),
        "config": config,
        "files": files,
        "total_bytes": sum(files.values()),
        "licenses": manifest.get("licenses", []),
        "created": manifest.get("created", {}),
    }


def cmd_info(args: argparse.Namespace) -> int:
    collection = Collection(resolve_collection_dir(args.index))
    report: dict[str, Any] = {"collection": _collection_info(collection)}
    problems: list[str] = []
    encoder_manifest: dict[str, Any] | None = None
    try:
        encoder_dir = resolve_encoder_dir(args.encoder)
        encoder_manifest = fmt.read_manifest(encoder_dir, fmt.QUERY_ENCODER_FORMAT)
        report["query_encoder"] = _encoder_info(encoder_dir, encoder_manifest)
        encoder_problems = fmt.file_problems(encoder_dir, encoder_manifest, full_hash=args.verify)
    except ArtifactError as exc:
        report["query_encoder"] = {"error": exc.message}
        problems.append(f"query encoder: {exc.message}")
    else:
        problems += [f"{encoder_dir}/{problem}" for problem in encoder_problems]
    if encoder_manifest is not None:
        mismatch = alignment_problem(collection.manifest, encoder_manifest)
        report["alignment"] = "ok" if mismatch is None else mismatch
        if mismatch:
            problems.append(mismatch)
    report["licenses"] = fmt.licenses_of(
        [collection.manifest] + ([encoder_manifest] if encoder_manifest is not None else [])
    )
    if args.verify:
        problems = [f"{collection.directory}/{problem}" for problem in collection.file_problems(full_hash=True)] + problems
        report["verify"] = {"ok": not problems, "problems": problems}

    if args.json:
        _print_json(report)
    else:
        print(_format_info(report))
    if args.verify and problems:
        raise ArtifactError(f"verify failed: {problems[0]}" + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""))
    if not args.verify and problems:
        _note(problems[0])
    return 0


def _format_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"


def _format_info(report: dict[str, Any]) -> str:
    info = report["collection"]
    encoder = info["document_encoder"]
    index = info["index"]
    lines = [
        f"collection   {info['name']}: {info['description']}",
        f"  path       {info['path']}",
        f"  documents  {info['documents']} ({info['truncated_documents']} truncated by the document encoder)",
        f"  vectors    {info['dims']} dims, {index.get('dtype', '?')}, usearch HNSW M={index.get('connectivity', '?')} "
        f"ef_search={index.get('expansion_search', '?')}",
        f"  built with {encoder.get('name', '?')} ({encoder.get('kind', '?')}, prompt {encoder.get('prompt', '')!r})",
        f"  alignment  {info['alignment_id']}",
        f"  search     default mode {info['search']['default_mode']}; lexical (BM25) table "
        + ("yes" if "lexical" in info["search"] else "no, dense only"),
        f"  size       {_format_size(info['total_bytes'])} ("
        + ", ".join(f"{name} {_format_size(size)}" for name, size in info["files"].items())
        + ")",
    ]
    query_encoder = report.get("query_encoder", {})
    if "error" in query_encoder:
        lines.append(f"query encoder  unavailable: {query_encoder['error']}")
    else:
        lines += [
            f"query encoder  {query_encoder['name']} (from {query_encoder['base_model']})",
            f"  path       {query_encoder['path']}",
            f"  alignment  {query_encoder['alignment_id']} (aligned to {query_encoder['aligned_to']}): "
            f"{'match' if report.get('alignment') == 'ok' else 'MISMATCH'}",
            f"  size       {_format_size(query_encoder['total_bytes'])}",
        ]
    licenses = report.get("licenses", [])
    if licenses:
        lines.append("licences")
        # The JSON keeps every entry (a model's source and use differ per artifact); a reader needs each licence once.
        lines += [f"  {line}" for line in dict.fromkeys(f"{item.get('name', '?')}: {item.get('license', '?')}"
                                                         for item in licenses)]
    if "verify" in report:
        verify = report["verify"]
        lines.append("verify       OK (sha256 of every file matches)" if verify["ok"] else "verify       FAILED")
        lines += [f"  {problem}" for problem in verify["problems"]]
    return "\n".join(lines)


def cmd_bench(args: argparse.Namespace) -> int:
    threads = (default_threads() if args.threads is None
               else parse_threads(args.threads, "--threads", bench_threads_limit()))
    queries = read_queries_file(args.queries) if args.queries else None
    intra_op_threads = parse_threads(args.intra_op_threads, "--intra-op-threads")
    rounds = parse_positive_int(args.rounds, "--rounds")
    expansions = parse_expansions(args.ef_curve) if args.ef_curve is not None else None
    out = _checked_out_path(args.out)
    started = time.perf_counter()
    collection = Collection(resolve_collection_dir(args.index))
    opened = time.perf_counter()
    # Stage latencies are for exactly --intra-op-threads onnxruntime threads (1 unless asked), never "all cores".
    searcher = Searcher(collection, QueryEncoder(resolve_encoder_dir(args.encoder), threads=intra_op_threads))
    open_ms = (opened - started) * 1e3
    encoder_load_ms = (time.perf_counter() - opened) * 1e3
    if queries is None:
        bench_file = searcher.collection.bench_queries_path
        if bench_file is None:
            raise BadInput(f"collection '{searcher.collection.name}' ships no bench_queries.txt: pass --queries F")
        verify_files(searcher.collection.directory, searcher.collection.manifest, [fmt.BENCH_QUERIES_FILE])
        queries = read_queries_file(bench_file)
    if expansions is not None:
        report = ef_curve(searcher, queries, expansions, mode=args.mode, rounds=rounds)
    else:
        report = run_bench(searcher, queries, threads=threads, open_ms=open_ms, encoder_load_ms=encoder_load_ms,
                           intra_op_threads=intra_op_threads, mode=args.mode, rounds=rounds)
    if out is not None:
        atomic_write_json(out, report)
    if args.json:
        _print_json(report)
    else:
        print(format_ef_curve(report) if expansions is not None else format_report(report))
    return 0


def _checked_out_path(out: str | None) -> Path | None:
    """--out FILE, refused before any measuring when its folder is missing or FILE is a folder."""
    if out is None:
        return None
    path = Path(out)
    if path.is_dir() or not path.parent.is_dir():
        raise BadInput(f"--out {out}: {'is a folder' if path.is_dir() else 'its folder does not exist'}")
    return path


def cmd_bench_compare(args: argparse.Namespace) -> int:
    if len(args.reports) < 2:
        raise BadInput("bench compare needs at least two reports (see `care-edge bench compare --help`)")
    reports = [load_report(path) for path in args.reports]
    comparison = compare_reports(reports, args.reports)
    if args.json:
        _print_json(comparison)
    else:
        print(format_comparison(comparison))
    return 0


# --------------------------------------------------------------------------------------------------- entry point


def _utf8_streams() -> None:
    # Results are often Chinese; a legacy console encoding must not turn them into a UnicodeEncodeError.
    for stream, errors in ((sys.stdout, "replace"), (sys.stderr, "backslashreplace")):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            try:
                reconfigure(encoding="utf-8", errors=errors)
            except (ValueError, OSError):
                pass


def main(argv: Sequence[str] | None = None) -> int:
    _utf8_streams()
    debug = os.environ.get(DEBUG_ENV, "") not in ("", "0")
    try:
        args = build_parser().parse_args(argv)
        return int(args.handler(args))
    except CareEdgeError as exc:
        if debug:
            traceback.print_exc()
        print(f"{PROG}: error: {exc.message}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader (e.g. `| head`) went away: stop quietly, and keep the interpreter's final flush from failing.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except Exception as exc:  # last resort: the user gets one line, a developer the traceback on request
        if debug:
            traceback.print_exc()
        message = " ".join(str(exc).split()) or "no details"
        print(
            f"{PROG}: internal error: {type(exc).__name__}: {message} (set {DEBUG_ENV}=1 for the traceback)",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
