"""A labelled folder to measure ``care-edge index`` on: MedQuAD answers written out as files of mixed formats, their
questions as queries, and the file-level retrieval metrics of a collection built from it.

    python -m edge.index.bench folder --data-dir ../shared/data --out /tmp/medquad-folder [--files 600]
    python -m edge.index.bench subset --folder /tmp/medquad-folder --out /tmp/medquad-100 --files 100
    python -m edge.index.bench eval --folder /tmp/medquad-folder --index COLLECTION_DIR [--mode dense]
    python -m edge.index.bench sweep --folder /tmp/medquad-folder --work /tmp/sweep --settings 128/0,256/32,...

``folder`` picks topics (a MedQuAD source's focus) with at least 4 answers of 60 words or more, spread over every
source, up to 6 answers per topic and one per distinct question (the files of a topic compete for its questions),
and writes each answer as one file: ``# focus`` then the answer's paragraphs, as .md, .txt, .html,
.docx or .pdf in turn (DOCX and PDF written with the standard library: a Word-like document.xml, a PDF text layer
in Helvetica). ``eval`` searches every question and scores the files of the hits (a file counts once, at its best
passage): MRR@10 and Recall@1/@10. ``sweep`` indexes the folder with the fast path (``--encoder query``) at several
passage budgets/overlaps and evaluates each.
"""

from __future__ import annotations

import argparse
import html
import json
import re
import sys
import textwrap
import time
import zipfile
from pathlib import Path
from typing import Any, Sequence

FORMATS = (".md", ".txt", ".html", ".docx", ".pdf")
MIN_WORDS = 60
MIN_PER_TOPIC = 4
MAX_PER_TOPIC = 6


def _paragraphs(answer: str) -> list[str]:
    lines = [" ".join(line.split()) for line in answer.splitlines()]
    return [line for line in lines if line]


def write_docx(path: Path, title: str, paragraphs: Sequence[str]) -> None:
    """A minimal WordprocessingML package: a Title paragraph then body paragraphs."""
    def para(text: str, style: str | None = None) -> str:
        props = f'<w:pPr><w:pStyle w:val="{style}"/></w:pPr>' if style else ""
        return f'<w:p>{props}<w:r><w:t xml:space="preserve">{html.escape(text)}</w:t></w:r></w:p>'

    body = para(title, "Heading1") + "".join(para(p) for p in paragraphs)
    document = ('<?xml version="1.0" encoding="UTF-8" standalone="yes"?><w:document xmlns:w='
                '"http://schemas.openxmlformats.org/wordprocessingml/2006/main"><w:body>' + body + "</w:body></w:document>")
    content_types = ('<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats.org/package/'
                     '2006/content-types"><Default Extension="rels" ContentType="application/vnd.openxmlformats-'
                     'package.relationships+xml"/><Default Extension="xml" ContentType="application/xml"/><Override '
                     'PartName="/word/document.xml" ContentType="application/vnd.openxmlformats-officedocument.'
                     'wordprocessingml.document.main+xml"/></Types>')
    rels = ('<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats.org/package/'
            '2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/'
            'relationships/officeDocument" Target="word/document.xml"/></Relationships>')
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", content_types)
        archive.writestr("_rels/.rels", rels)
        archive.writestr("word/document.xml", document)


def write_pdf(path: Path, title: str, paragraphs: Sequence[str], lines_per_page: int = 48) -> None:
    """A PDF with a Helvetica text layer: wrapped lines, a blank line between paragraphs, paginated."""
    lines = [title, ""]
    for paragraph in paragraphs:
        lines += textwrap.wrap(paragraph, 95) + [""]
    pages = [lines[i:i + lines_per_page] for i in range(0, len(lines), lines_per_page)]
    objects: list[bytes] = [b"<< /Type /Catalog /Pages 2 0 R >>", b"",
                            b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>"]
    page_ids = []
    for page in pages:
        page_id = len(objects) + 1
        page_ids.append(page_id)
        objects.append(f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 3 0 R >> >> "
                       f"/Contents {page_id + 1} 0 R >>".encode())
        ops = ["BT", "/F1 10 Tf", "14 TL", "60 750 Td"]
        for line in page:
            safe = line.encode("cp1252", "replace").decode("cp1252")
            safe = safe.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
            ops.append(f"({safe}) Tj T*")
        ops.append("ET")
        stream = "\n".join(ops).encode("cp1252", "replace")
        objects.append(b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream")
    kids = " ".join(f"{i} 0 R" for i in page_ids)
    objects[1] = f"<< /Type /Pages /Kids [{kids}] /Count {len(page_ids)} >>".encode()
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    path.write_bytes(bytes(out))


def write_file(path: Path, title: str, paragraphs: Sequence[str]) -> None:
    suffix = path.suffix
    if suffix == ".md":
        path.write_text(f"# {title}\n\n" + "\n\n".join(paragraphs) + "\n", encoding="utf-8")
    elif suffix == ".txt":
        path.write_text(f"{title}\n\n" + "\n\n".join(paragraphs) + "\n", encoding="utf-8")
    elif suffix == ".html":
        body = "".join(f"<p>{html.escape(p)}</p>" for p in paragraphs)
        path.write_text(f"<html><body><h1>{html.escape(title)}</h1>{body}</body></html>", encoding="utf-8")
    elif suffix == ".docx":
        write_docx(path, title, paragraphs)
    else:
        write_pdf(path, title, paragraphs)


def make_folder(data_dir: Path, out: Path, n_files: int) -> dict[str, Any]:
    rows = [json.loads(line) for line in (data_dir / "en" / "medquad.jsonl").read_text(encoding="utf-8").splitlines()]
    # Topics (a source's focus) with several long answers: the files of one topic compete for its questions, as
    # the sections of a folder of guidelines on related subjects do.
    groups: dict[tuple[str, str], list[dict]] = {}
    for row in rows:
        if len(row["answer"].split()) >= MIN_WORDS and row["question"].strip():
            groups.setdefault((row["collection"], row["focus"]), []).append(row)
    topics = sorted(key for key, members in groups.items() if len(members) >= MIN_PER_TOPIC)
    step = max(1, len(topics) * MAX_PER_TOPIC // (n_files * 2))
    seen: set[str] = set()
    chosen: list[dict] = []
    for key in topics[::step]:
        for row in sorted(groups[key], key=lambda r: r["id"])[:MAX_PER_TOPIC]:
            question = " ".join(row["question"].split()).lower()
            if question not in seen and len(chosen) < n_files:
                seen.add(question)
                chosen.append(row)
    files = out / "files"
    files.mkdir(parents=True, exist_ok=True)
    queries = []
    for i, row in enumerate(chosen):
        name = re.sub(r"[^A-Za-z0-9]+", "-", f"{row['id']}-{row['focus']}")[:80].strip("-")
        path = files / f"{name}{FORMATS[i % len(FORMATS)]}"
        write_file(path, " ".join(row["focus"].split()), _paragraphs(row["answer"]))
        queries.append({"query": " ".join(row["question"].split()), "file": str(path.resolve())})
    (out / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries), encoding="utf-8")
    words = sum(len(r["answer"].split()) for r in chosen)
    return {"files": len(chosen), "answer_words": words, "formats": list(FORMATS)}


def make_subset(folder: Path, out: Path, n_files: int) -> dict[str, Any]:
    """The first ``n_files`` files of a bench folder in name order (whole topics, mostly) and their queries."""
    import shutil

    names = sorted(p.name for p in (folder / "files").iterdir())[:n_files]
    (out / "files").mkdir(parents=True, exist_ok=True)
    for name in names:
        shutil.copy2(folder / "files" / name, out / "files" / name)
    kept = set(names)
    queries = []
    for line in (folder / "queries.jsonl").read_text(encoding="utf-8").splitlines():
        query = json.loads(line)
        if Path(query["file"]).name in kept:
            queries.append({**query, "file": str((out / "files" / Path(query["file"]).name).resolve())})
    (out / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries), encoding="utf-8")
    return {"files": len(names), "queries": len(queries)}


def evaluate(folder: Path, index: Path, mode: str, encoder_dir: Path | None = None) -> dict[str, Any]:
    from edge.collection import Collection
    from edge.encoder import QueryEncoder
    from edge.paths import resolve_encoder_dir
    from edge.search import Searcher

    queries = [json.loads(line) for line in (folder / "queries.jsonl").read_text(encoding="utf-8").splitlines()]
    with Collection(index) as collection:
        searcher = Searcher(collection, QueryEncoder(resolve_encoder_dir(str(encoder_dir) if encoder_dir else None)))
        rr, r1, r10 = 0.0, 0, 0
        for start in range(0, len(queries), 32):
            chunk = queries[start:start + 32]
            for query, response in zip(chunk, searcher.search_batch([q["query"] for q in chunk], k=50, mode=mode)):
                ranked: list[str] = []
                for result in response.results:
                    source = str(result.meta.get("file"))
                    if source not in ranked:
                        ranked.append(source)
                ranked = ranked[:10]
                if query["file"] in ranked:
                    rank = ranked.index(query["file"]) + 1
                    rr += 1.0 / rank
                    r1 += rank == 1
                    r10 += 1
        n = len(queries)
        return {"queries": n, "mode": mode, "passages": collection.count, "mrr@10": round(rr / n, 4),
                "recall@1": round(r1 / n, 4), "recall@10": round(r10 / n, 4)}


def sweep(folder: Path, work: Path, settings: Sequence[tuple[int, int]], encoder: str, gguf: str | None) -> list[dict]:
    from edge.index.chunk import ChunkSettings
    from edge.index.run import IndexOptions, index_folders
    from edge.paths import resolve_encoder_dir

    rows = []
    for tokens, overlap in settings:
        out = work / f"{encoder}-{tokens}-{overlap}"
        options = IndexOptions(folders=[str(folder / "files")], collection_path=out, name=out.name, encoder=encoder,
                               gguf=gguf, query_encoder_dir=resolve_encoder_dir(None) if encoder == "query" else None,
                               chunk=ChunkSettings(tokens, overlap), progress=False)
        started = time.perf_counter()
        summary = index_folders(options, lambda event: None)
        row = {"encoder": encoder, "passage_tokens": tokens, "overlap_tokens": overlap,
               "passages": summary.passages_total, "index_s": round(time.perf_counter() - started, 1),
               "passages_per_s": summary.passages_per_s}
        for mode in ("dense", "hybrid"):
            metrics = evaluate(folder, out, mode)
            row[mode] = {k: metrics[k] for k in ("mrr@10", "recall@1", "recall@10")}
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m edge.index.bench", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("folder")
    p.add_argument("--data-dir", type=Path, default=Path("../shared/data"))
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--files", type=int, default=600)
    p = sub.add_parser("subset")
    p.add_argument("--folder", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--files", type=int, default=100)
    p = sub.add_parser("eval")
    p.add_argument("--folder", type=Path, required=True)
    p.add_argument("--index", type=Path, required=True)
    p.add_argument("--mode", choices=("dense", "hybrid"), default="dense")
    p.add_argument("--encoder", type=Path, help="query encoder directory (default: the shipped one)")
    p = sub.add_parser("sweep")
    p.add_argument("--folder", type=Path, required=True)
    p.add_argument("--work", type=Path, required=True)
    p.add_argument("--settings", default="128/16,256/0,256/32,384/32,480/32",
                   help="passage_tokens/overlap_tokens pairs, comma-separated")
    p.add_argument("--encoder", choices=("query", "gguf"), default="query")
    p.add_argument("--gguf")
    args = parser.parse_args(argv)
    if args.command == "folder":
        print(json.dumps(make_folder(args.data_dir, args.out, args.files)))
    elif args.command == "subset":
        print(json.dumps(make_subset(args.folder, args.out, args.files)))
    elif args.command == "eval":
        print(json.dumps(evaluate(args.folder, args.index, args.mode, args.encoder)))
    else:
        args.work.mkdir(parents=True, exist_ok=True)
        settings = [tuple(int(x) for x in s.split("/")) for s in args.settings.split(",")]
        sweep(args.folder, args.work, settings, args.encoder, args.gguf)
    return 0


if __name__ == "__main__":
    sys.exit(main())
