"""The ``index`` subcommand of ``care-edge``. Light to import: the indexing machinery loads when it runs."""

from __future__ import annotations

import argparse
import json
import re
import shlex
import sys
from pathlib import Path
from typing import Any

from edge.errors import BadInput

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


def add_index_command(commands: Any) -> None:
    """Register ``index`` on the ``care-edge`` subcommand parser."""
    from edge.index.chunk import DEFAULT_OVERLAP_TOKENS, DEFAULT_PASSAGE_TOKENS

    index = commands.add_parser(
        "index", help="index your own folders (txt, md, html, pdf, docx, jsonl, csv) into a collection",
        description="Walk FOLDERs, extract and chunk their text, embed the passages and write a collection that "
                    "`care-edge search --index NAME` searches. Re-runs are incremental; a killed run resumes.")
    index.add_argument("folders", nargs="+", metavar="FOLDER", help="folders (or single files) to index")
    where = index.add_mutually_exclusive_group(required=True)
    where.add_argument("--into", metavar="NAME", help="collection name, under the user collections folder")
    where.add_argument("--out", metavar="DIR", help="collection path instead (a link to its latest version)")
    index.add_argument("--encoder", default="gguf", metavar="gguf|query",
                       help="document encoder: gguf (EmbeddingGemma, the shipped collections' encoder; default) or "
                            "query (the shipped query encoder: no llama_cpp, much faster, less accurate)")
    index.add_argument("--gguf", metavar="PATH", help="the EmbeddingGemma GGUF (default: $CARE_EDGE_GGUF, then "
                                                      "the model cache ~/.cache/care-edge/models)")
    index.add_argument("--query-encoder", metavar="DIR", help="query encoder for --encoder query (default: shipped)")
    index.add_argument("--text-field", metavar="NAME", help="CSV/JSONL: the column holding the text (default: a "
                                                            "column named text, content, body, answer, ...)")
    index.add_argument("--title-field", metavar="NAME", help="CSV/JSONL: a column used as each row's heading")
    index.add_argument("--passage-tokens", default=str(DEFAULT_PASSAGE_TOKENS),
                       help=f"token budget of a passage (default {DEFAULT_PASSAGE_TOKENS})")
    index.add_argument("--overlap-tokens", default=str(DEFAULT_OVERLAP_TOKENS),
                       help=f"tokens carried over between passages (default {DEFAULT_OVERLAP_TOKENS})")
    index.add_argument("--max-file-mb", default="100", help="skip files larger than this (default 100)")
    index.add_argument("--threads", default=None, help="threads for embedding (default: all cores)")
    index.add_argument("--rebuild", action="store_true", help="forget earlier work and embed everything again")
    index.add_argument("--json", action="store_true", help="JSON lines: one per file event, then the summary")
    index.add_argument("--quiet", action="store_true", help="no progress bar, no per-file lines (summary only)")
    index.set_defaults(handler=cmd_index)


def _int(text: str, option: str, minimum: int) -> int:
    try:
        value = int(text)
    except (TypeError, ValueError):
        raise BadInput(f"{option} must be an integer, got {text!r}") from None
    if value < minimum:
        raise BadInput(f"{option} must be at least {minimum}, got {value}")
    return value


def cmd_index(args: argparse.Namespace) -> int:
    from edge.index.chunk import ChunkSettings
    from edge.index.extract import TableOptions
    from edge.index.run import EXIT_SKIPPED, FileEvent, IndexOptions, index_folders
    from edge.paths import prebuilt_index_dir, resolve_encoder_dir, user_collections_dir

    passage_tokens = _int(args.passage_tokens, "--passage-tokens", 32)
    overlap = _int(args.overlap_tokens, "--overlap-tokens", 0)
    if overlap >= passage_tokens // 2:
        raise BadInput(f"--overlap-tokens must be under half of --passage-tokens ({passage_tokens // 2})")
    if args.encoder not in ("gguf", "query"):
        raise BadInput(f"--encoder must be gguf or query, got {args.encoder!r}")
    if args.into is not None:
        if not _NAME.match(args.into):
            raise BadInput(f"--into takes a plain name (letters, digits, . _ -), got {args.into!r}")
        if (prebuilt_index_dir() / args.into).is_dir():
            raise BadInput(f"--into {args.into}: a shipped collection has that name (search would find it first): "
                           "choose another")
        collection_path = user_collections_dir() / args.into
        name = args.into
    else:
        collection_path = Path(args.out).expanduser().absolute()
        name = collection_path.name
        if not _NAME.match(name):
            raise BadInput(f"--out must end in a plain name (letters, digits, . _ -), got {args.out!r}")
    collection_path.parent.mkdir(parents=True, exist_ok=True)
    options = IndexOptions(
        folders=list(args.folders),
        collection_path=collection_path,
        name=name,
        encoder=args.encoder,
        gguf=args.gguf,
        query_encoder_dir=resolve_encoder_dir(args.query_encoder) if args.encoder == "query" else None,
        chunk=ChunkSettings(passage_tokens, overlap),
        table=TableOptions(args.text_field, args.title_field),
        max_file_bytes=_int(args.max_file_mb, "--max-file-mb", 1) << 20,
        threads=_int(args.threads, "--threads", 1) if args.threads is not None else None,
        rebuild=args.rebuild,
        progress=not (args.quiet or args.json),
        command="care-edge " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
    )

    def emit(event: FileEvent) -> None:
        if args.json:
            sys.stdout.write(json.dumps({"file": event.path, "status": event.status, "reason": event.reason,
                                         "passages": event.passages}, ensure_ascii=False) + "\n")
        elif not args.quiet:
            print(event.line(), file=sys.stderr)

    summary = index_folders(options, emit)
    if args.json:
        sys.stdout.write(json.dumps({"summary": summary.to_json()}, ensure_ascii=False) + "\n")
    else:
        for line in summary.lines():
            print(line)
        print(f"search it: care-edge search --index {name if args.into else collection_path} \"...\"")
    return EXIT_SKIPPED if summary.skipped else 0
