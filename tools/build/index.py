"""Build collections: embed a corpus with the document encoder into the vector cache, then write the collection.

    python -m tools.build.index embed --corpus cmed-zh [--shard i/N] [--prompt document|query]
    python -m tools.build.index build --corpus cmed-zh --out prebuilt_index/cmed-zh [--dims 256] [--dtype i8]
    python -m tools.build.index merge-cache SRC_CACHE... [--cache-dir DST]
    python -m tools.build.index seed-cache prebuilt_index/cmed-zh prebuilt_index/icd10   # vectors back from them
    python -m tools.build.index throughput --corpus cmed-zh [--n 96]
    python -m tools.build.index relex --collection prebuilt_index/icd10 --lexical-fields 'text,meta.names.*'

`embed` is the slow step (EmbeddingGemma Q8_0 on 2 cores: about 5-10 documents/s). It cuts the corpus into
deterministic length-bucketed batches and writes a checkpoint shard to the vector cache every `--checkpoint-every`
documents, atomically, so a killed run resumes where it stopped and an uninterrupted, resumed or sharded run
computes every vector in the very same batch. `--shard i/N` takes batches i, i+N, i+2N, ...; N processes (or
machines, each with its own `--cache-dir`) run side by side, `merge-cache` joins their content-addressed shard
files into one cache, and `build` writes the collection. For a cluster, each `embed --shard i/N` is one task for
whatever scheduler the site runs (Ray, Slurm, a CI matrix): the shard outputs need no coordination beyond the final
`merge-cache`.

`build` embeds whatever is still missing, then truncates to `--dims` (Matryoshka, re-normalised) and writes
`manifest.json`, `vectors.usearch` and `docs.sqlite` through `edge.writers.write_collection`.
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from tqdm import tqdm

from edge import formats, writers
from edge.errors import CareEdgeError
from edge.hybrid import DEFAULT_LEXICAL_FIELDS, Fusion, check_lexical_fields, fusion_from_manifest
from edge.index.gguf import EMBEDDINGGEMMA_DOC_PROMPT, EncodedBatch, l2_normalize, plan_batches, truncate_dims
from tools.build.doc_encoder import VectorCache, embed_batches
from tools.provenance import created_info
from tools.data.icd10 import DEFAULT_ICD_LANGS
from tools.data.records import DEFAULT_DATA_DIR, Document, read_jsonl
from tools.data.registry import CORPORA, load_corpus
from tools.models.cache import EMBEDDINGGEMMA_QUERY_PROMPT, LICENSES, ModelCache, cache_root


@dataclass(frozen=True)
class Shard:
    index: int
    count: int

    @classmethod
    def parse(cls, text: str) -> "Shard":
        try:
            i, n = (int(x) for x in text.split("/"))
        except ValueError:
            raise argparse.ArgumentTypeError(f"--shard takes i/N (e.g. 0/4), got {text!r}") from None
        if not (n >= 1 and 0 <= i < n):
            raise argparse.ArgumentTypeError(f"--shard {text}: need 0 <= i < N")
        return cls(i, n)


def open_encoder(spec: str, cache: ModelCache, threads: int | None = None):
    """`embeddinggemma` | `gemma3-270m` (from the models cache) | `gguf:PATH`."""
    from edge.index.gguf import GGUFEncoder

    manifest = cache.read_manifest()["models"]
    if spec in ("embeddinggemma", "gemma3-270m"):
        path = cache.path_of(spec)
        if not path.exists():
            raise SystemExit(f"error: {spec} is not in {cache.root}: run `python -m tools.models fetch --only {spec}`")
        entry = manifest.get(spec, {})
        return GGUFEncoder(path, name=entry.get("name", path.stem), sha256=entry.get("sha256"), n_threads=threads)
    if spec.startswith("gguf:"):
        return GGUFEncoder(Path(spec[5:]), n_threads=threads)
    if spec.startswith("onnx:"):
        from tools.build.doc_encoder import OnnxEncoder

        return OnnxEncoder(Path(spec[5:]), threads=threads)
    raise SystemExit(f"error: unknown encoder {spec!r}: use embeddinggemma, gemma3-270m, gguf:PATH or onnx:DIR")


def prompt_for(which: str, encoder=None) -> str:
    """The document or query prompt of the encoder (a symmetric ONNX encoder declares its own passage prompt)."""
    if which == "document" and getattr(encoder, "prompt", None) is not None:
        return encoder.prompt
    return {"document": EMBEDDINGGEMMA_DOC_PROMPT, "query": EMBEDDINGGEMMA_QUERY_PROMPT, "none": ""}[which]


def embed_texts(
    encoder,
    cache: VectorCache,
    texts: Sequence[str],
    prompt: str,
    *,
    shard: Shard = Shard(0, 1),
    checkpoint_every: int = 256,
    progress: bool = True,
    stop_after_batches: int | None = None,
) -> int:
    """Embed the texts of this shard that the cache lacks. Returns how many were embedded now."""
    unique = sorted(set(texts))
    batches = plan_batches(encoder, unique, prompt)
    mine = [b for k, b in enumerate(batches) if k % shard.count == shard.index]
    todo = [b for b in mine if any(unique[i] not in cache for i in b)]
    total = sum(len(b) for b in mine)
    done_before = total - sum(len(b) for b in todo)
    with tqdm(total=total, initial=done_before, unit="doc", desc=f"embed shard {shard.index}/{shard.count}",
              disable=not progress, smoothing=0.05) as bar:
        return embed_batches(encoder, cache, unique, todo, prompt, tag=f"s{shard.index}of{shard.count}-",
                             checkpoint_every=checkpoint_every, progress=bar, stop_after_batches=stop_after_batches)


def merge_caches(sources: Sequence[Path], destination: Path) -> int:
    """Copy the content-addressed shard files of several vector caches into one. Returns files copied."""
    copied = 0
    for src in sources:
        for shard in sorted(Path(src).glob("vectors/*/shard-*.npz")):
            target = destination / "vectors" / shard.parent.name / shard.name
            if target.exists():
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            info = shard.parent / "cache.json"
            if info.exists() and not (target.parent / "cache.json").exists():
                shutil.copy(info, target.parent / "cache.json")
            tmp = target.with_name(target.name + ".tmp")
            shutil.copy(shard, tmp)
            tmp.replace(target)
            copied += 1
    return copied


def seed_cache(collection_dir: Path, encoder, models_root: Path) -> int:
    """Refill the vector cache from a collection this encoder built at its full dims (the shipped default is), so a
    fresh machine re-embeds none of its documents. Vectors come back through the collection's dtype (f16 rounding
    about 1e-3 relative, i8 about 1e-2), which later builds of the same dtype then reproduce; training seeded from
    i8 vectors is close to, not identical with, training from fresh GGUF vectors. Returns vectors added."""
    from edge.collection import Collection

    with Collection(collection_dir) as collection:
        source = collection.document_encoder
        identity = encoder.identity
        if source.get("kind") != "gguf" or source.get("sha256") != identity["sha256"]:
            raise SystemExit(f"error: {collection_dir} was not built by this document encoder "
                             f"({source.get('name')}, sha256 {str(source.get('sha256'))[:12]}...)")
        if source.get("dims") != identity["full_dims"]:
            raise SystemExit(f"error: {collection_dir} keeps {source.get('dims')} of {identity['full_dims']} dims: "
                             "only a full-dims collection can refill the cache")
        cache = VectorCache(models_root, identity, str(source["prompt"]))
        keys = np.arange(collection.count, dtype=np.uint64)
        texts = [doc.text for doc in collection.fetch(keys.tolist())]
        missing = [i for i, t in enumerate(texts) if t not in cache]
        if not missing:
            return 0
        vectors = np.asarray(collection.index.get(keys[missing]), dtype=np.float32)
        chosen = [texts[i] for i in missing]
        truncated = [encoder.fit(t, str(source["prompt"]))[1] for t in chosen]
        cache.add(chosen, EncodedBatch(l2_normalize(vectors), truncated), tag="seed-")
        return len(chosen)


def build_collection(
    *,
    docs: Sequence[Document],
    encoder,
    cache: VectorCache,
    out: Path,
    name: str,
    description: str,
    licenses: Sequence[dict],
    dims: int,
    index_params: dict,
    bench_queries: Sequence[str] | None,
    command: str,
    prompt: str,
    progress: bool = True,
    lexical: bool = True,
    default_mode: str = "dense",
    lexical_fields: Sequence[str] = DEFAULT_LEXICAL_FIELDS,
    fusion: Fusion | None = None,
) -> dict:
    texts = [d.text for d in docs]
    embed_texts(encoder, cache, texts, prompt, progress=progress)
    vectors, n_truncated = cache.get(texts)
    identity = dict(encoder.identity)
    document_encoder = {
        "name": identity["name"],
        "kind": identity["kind"],
        "sha256": identity["sha256"],
        "prompt": prompt,
        "pooling": identity["pooling"],
        "dims": dims,
        "full_dims": identity["full_dims"],
        "max_tokens": identity["max_tokens"],
        "normalize": True,
    }
    return writers.write_collection(
        out,
        name=name,
        description=description,
        document_encoder=document_encoder,
        vectors=truncate_dims(vectors, dims),
        ids=[d.id for d in docs],
        texts=texts,
        metas=[d.meta for d in docs],
        index_params=index_params,
        licenses=list(licenses),
        created=created_info("tools.build.index", command),
        bench_queries=bench_queries,
        truncated_documents=n_truncated,
        lexical=lexical,
        default_mode=default_mode,
        lexical_fields=lexical_fields,
        fusion=fusion,
    )


BENCH_TASKS = {"cmed-zh": ("cmedir-retrieval", "toyhom-qa"), "cmedir-titles": ("cmedir-retrieval",),
               "icd10": ("icd-coding-zh", "icd-coding-es", "icd-coding-fr", "icd-coding-pt", "icd-coding-de"),
               "medquad-en": ("medquad-qa",)}


def default_bench_queries(corpus: str, data_dir: Path, n: int = 200) -> list[str] | None:
    """Held-out evaluation queries of the corpus's tasks, interleaved: realistic queries for `care-edge bench`
    that no training step has seen."""
    from tools.data.tasks import load_task

    if corpus not in BENCH_TASKS:
        return None
    pools = [sorted(load_task(name, data_dir).queries.items()) for name in BENCH_TASKS[corpus]]
    out: list[str] = []
    for i in range(max(len(p) for p in pools)):
        out += [p[i][1] for p in pools if i < len(p)]
    return [" ".join(q.split()) for q in out[:n]]


def _load_docs(args) -> list[Document]:
    if args.corpus_file:
        return read_jsonl(args.corpus_file)
    langs = tuple(args.icd_langs.split(",")) if args.icd_langs else DEFAULT_ICD_LANGS
    docs = load_corpus(args.corpus, args.data_dir, langs=langs)
    return docs[: args.limit] if args.limit else docs


def _parse_fields(value: str) -> tuple[str, ...]:
    try:
        return check_lexical_fields([part.strip() for part in value.split(",") if part.strip()])
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _parse_fusion(value: str) -> Fusion:
    """``KIND[:DENSE_WEIGHT,LEXICAL_WEIGHT]``, e.g. ``rrf`` (plain RRF), ``rrf:1,0.5``, ``scores:0.7,0.3``."""
    kind, _, weights = value.partition(":")
    block: dict[str, object] = {"kind": kind}
    try:
        if weights:
            dense, lexical = (float(part) for part in weights.split(","))
            block.update(dense_weight=dense, lexical_weight=lexical)
        return fusion_from_manifest(block)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected KIND[:DENSE,LEXICAL] (e.g. scores:0.7,0.3), got {value!r}: "
                                         f"{exc}") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.build.index", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    def corpus_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--corpus", default="cmed-zh", help=f"one of {', '.join(CORPORA)}")
        p.add_argument("--corpus-file", type=Path, help="a JSONL corpus {id,text,meta} instead of a named corpus")
        p.add_argument("--icd-langs", help="icd10 only: languages joined into the document text (default en,zh)")
        p.add_argument("--limit", type=int, help="only the first N documents (tests, quick runs)")
        p.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
        p.add_argument("--encoder", default="embeddinggemma")
        p.add_argument("--prompt", choices=["document", "query", "none"], default="document")
        p.add_argument("--cache-dir", type=Path, help="default: $CARE_EDGE_CACHE or ~/.cache/care-edge")
        p.add_argument("--threads", type=int, help="llama.cpp threads (default: all cores)")

    def lexical_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--lexical-fields", type=_parse_fields, default=DEFAULT_LEXICAL_FIELDS,
                       help="what the BM25 postings index, comma-separated: text, meta.KEY, meta.KEY.* "
                       "(e.g. text,meta.names.* for every language's ICD name; default text)")
        p.add_argument("--fusion", type=_parse_fusion,
                       help="record search.fusion, KIND[:DENSE,LEXICAL]: rrf (k 60) or scores, with the two sides' "
                       "weights (e.g. scores:0.7,0.3; default: none recorded, plain RRF)")

    p = sub.add_parser("embed", help="embed a corpus (or one shard of it) into the vector cache")
    corpus_args(p)
    p.add_argument("--shard", type=Shard.parse, default=Shard(0, 1))
    p.add_argument("--checkpoint-every", type=int, default=256)
    p.add_argument("--texts-file", type=Path, help="plain texts, one per line, instead of a corpus (teacher vectors)")

    p = sub.add_parser("build", help="embed what is missing, then write a collection")
    corpus_args(p)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--name")
    p.add_argument("--dims", type=int, default=768, help="Matryoshka truncation: 768, 512, 256 or 128 for EmbeddingGemma")
    p.add_argument("--dtype", default="f16", choices=["f32", "f16", "bf16", "i8"])
    p.add_argument("--connectivity", type=int, default=16)
    p.add_argument("--expansion-add", type=int, default=128)
    p.add_argument("--expansion-search", type=int, default=64)
    p.add_argument("--bench-queries", type=Path, help="file of queries to ship as bench_queries.txt")
    p.add_argument("--default-mode", choices=formats.SEARCH_MODES, default="dense",
                   help="search mode the runtime uses when none is asked for (choose by measurement: tools.evaluate)")
    p.add_argument("--no-lexical", action="store_true",
                   help="leave out the BM25 postings tables (the collection can then only be searched densely)")
    lexical_args(p)

    p = sub.add_parser("relex", help="rebuild only the lexical side of a collection (postings, search block)")
    p.add_argument("--collection", type=Path, required=True, help="collection folder, rewritten in place")
    p.add_argument("--default-mode", choices=formats.SEARCH_MODES, help="also set the default search mode")
    lexical_args(p)

    p = sub.add_parser("merge-cache", help="join the vector caches of sharded runs")
    p.add_argument("sources", type=Path, nargs="+")
    p.add_argument("--cache-dir", type=Path)

    p = sub.add_parser("seed-cache", help="refill the vector cache from collections built at full dims")
    p.add_argument("collections", type=Path, nargs="+")
    p.add_argument("--encoder", default="embeddinggemma")
    p.add_argument("--cache-dir", type=Path)
    p.add_argument("--threads", type=int)

    p = sub.add_parser("throughput", help="docs/s of batched embedding against a one-text-at-a-time loop")
    corpus_args(p)
    p.add_argument("--n", type=int, default=96)

    args = parser.parse_args(argv)
    models = ModelCache(cache_root(getattr(args, "cache_dir", None)))
    command = "python -m tools.build.index " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))

    if args.command == "merge-cache":
        print(f"copied {merge_caches(args.sources, models.root)} shard files into {models.root}")
        return 0

    if args.command == "relex":
        try:
            manifest = writers.rewrite_lexical(args.collection, fields=args.lexical_fields,
                                               created=created_info("tools.build_index", command),
                                               default_mode=args.default_mode, fusion=args.fusion)
        except CareEdgeError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return exc.exit_code
        print(json.dumps({"collection": str(args.collection), "search": manifest["search"],
                          "files": manifest["files"]}, ensure_ascii=False))
        return 0

    if args.command == "seed-cache":
        encoder = open_encoder(args.encoder, models, args.threads)
        for directory in args.collections:
            print(f"{directory}: {seed_cache(directory, encoder, models.root)} vectors added to the cache")
        return 0

    docs = _load_docs(args)
    encoder = open_encoder(args.encoder, models, args.threads)
    prompt = prompt_for(args.prompt, encoder)

    if args.command == "throughput":
        return report_throughput(encoder, [d.text for d in docs], prompt, args.n)

    cache = VectorCache(models.root, encoder.identity, prompt)
    if args.command == "embed":
        texts = (
            [line.strip() for line in args.texts_file.read_text(encoding="utf-8").splitlines() if line.strip()]
            if args.texts_file
            else [d.text for d in docs]
        )
        start = time.perf_counter()
        n = embed_texts(encoder, cache, texts, prompt, shard=args.shard, checkpoint_every=args.checkpoint_every)
        print(f"embedded {n} texts in {time.perf_counter() - start:.0f} s; cache {cache.dir} holds {len(cache)}")
        return 0

    spec = CORPORA.get(args.corpus)
    bench = default_bench_queries(args.corpus, args.data_dir) if not args.corpus_file else None
    if args.bench_queries:
        bench = [q for q in args.bench_queries.read_text(encoding="utf-8").splitlines() if q.strip()]
    model_license = LICENSES["e5-small"] if encoder.identity["kind"] == "onnx" else LICENSES["embeddinggemma"]
    licenses = [*(spec.licenses if spec else ()), model_license]
    manifest = build_collection(
        docs=docs,
        encoder=encoder,
        cache=cache,
        out=args.out,
        name=args.name or args.out.name,
        description=spec.description if spec else str(args.corpus_file),
        licenses=[dict(x) for x in licenses],
        dims=args.dims,
        index_params={"dtype": args.dtype, "connectivity": args.connectivity,
                      "expansion_add": args.expansion_add, "expansion_search": args.expansion_search},
        bench_queries=bench,
        command=command,
        prompt=prompt,
        lexical=not args.no_lexical,
        default_mode=args.default_mode,
        lexical_fields=args.lexical_fields,
        fusion=args.fusion,
    )
    print(json.dumps({"out": str(args.out), "counts": manifest["counts"], "index": manifest["index"],
                      "search": manifest["search"]}))
    return 0


def report_throughput(encoder, texts: Sequence[str], prompt: str, n: int) -> int:
    """Batched (length-bucketed, BATCH_TOKENS-token batches) against one text at a time, same texts, same run."""
    step = max(1, len(texts) // n)
    sample = list(texts[::step])[:n]
    encoder.embed_batch(sample[:2], prompt)  # warm-up
    start = time.perf_counter()
    for i in plan_batches(encoder, sample, prompt):
        encoder.embed_batch([sample[k] for k in i], prompt)
    batched = len(sample) / (time.perf_counter() - start)
    start = time.perf_counter()
    for text in sample:
        encoder.embed_batch([text], prompt)
    single = len(sample) / (time.perf_counter() - start)
    print(json.dumps({"texts": len(sample), "batched_docs_per_s": round(batched, 2),
                      "single_docs_per_s": round(single, 2), "ratio": round(batched / single, 2)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
