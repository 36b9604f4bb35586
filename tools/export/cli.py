"""``python -m tools.export``: a transformers encoder folder (``--model``) or a training run's student
(``--student``) -> the runtime's INT8 query-encoder folder (see ``tools.export.query_encoder``)."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path
from typing import Sequence

from edge.errors import BadInput
from tools.export.query_encoder import (
    EXPORT_MAX_TOKENS,
    __doc__ as EXPORT_DOC,
    alignment_of_collection,
    export_query_encoder,
    symmetric_alignment,
)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tools.export", description=(EXPORT_DOC or "").split("\n\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", type=Path, help="transformers folder (+ projection.safetensors)")
    source.add_argument("--student", type=Path, help="a training run (or its model/ folder): aligned to the document "
                        "encoder the run recorded unless --aligned-to names a collection")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--prompt", default="query: ", help="--model only (a student uses e5's \"query: \")")
    parser.add_argument("--max-tokens", type=_positive_int, default=EXPORT_MAX_TOKENS)
    aligned = parser.add_mutually_exclusive_group()
    aligned.add_argument("--aligned-to", type=Path, help="a collection dir whose document encoder this is aligned to")
    aligned.add_argument("--symmetric-passage-prompt", help="--model only, symmetric: documents use this graph with "
                         "this prompt")
    parser.add_argument("--dims", type=_positive_int, help="--student only: export the head's first N outputs "
                        "(Matryoshka: 512, 256)")
    parser.add_argument("--name", default="care-query-encoder")
    parser.add_argument("--base-model", default="multilingual-e5-small", help="--model only")
    return parser


def _export_model(args: argparse.Namespace, command: str) -> dict:
    from tools.models.cache import LICENSES

    if not (args.aligned_to or args.symmetric_passage_prompt):
        raise BadInput("--model needs --aligned-to COLLECTION or --symmetric-passage-prompt PROMPT")
    if args.dims is not None:
        raise BadInput("--dims applies to --student (a trained head); a --model folder is exported whole")
    return export_query_encoder(
        model_dir=args.model,
        out_dir=args.out,
        prompt=args.prompt,
        max_tokens=args.max_tokens,
        alignment=alignment_of_collection(args.aligned_to) if args.aligned_to
        else symmetric_alignment(args.symmetric_passage_prompt, 512),
        name=args.name,
        base_model=args.base_model,
        licenses=[LICENSES["e5-small"]],
        command=command,
    )


def _export_student(args: argparse.Namespace, command: str) -> dict:
    from tools.export.run import document_encoder_of, export_student  # torch: loaded only for a student

    if args.symmetric_passage_prompt:
        raise BadInput("--symmetric-passage-prompt applies to --model; a student is aligned to the LLM")
    if args.aligned_to:
        document_encoder = alignment_of_collection(args.aligned_to)
    else:
        document_encoder = document_encoder_of(args.student)
        if document_encoder is None:
            raise BadInput(f"{args.student} records no document encoder (no run.json): pass --aligned-to")
    return export_student(args.student, args.out, document_encoder, name=args.name, max_tokens=args.max_tokens,
                          dims=args.dims, command=command)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    command = "python -m tools.export " + shlex.join(argv)
    try:
        manifest = _export_student(args, command) if args.student else _export_model(args, command)
    except BadInput as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    print(json.dumps(manifest["created"]["parity"]))
    return 0
