"""Writing the v1 artifacts (see :mod:`edge.formats`): a manifest over existing files, a whole collection (usearch
index, docs.sqlite with its lexical tables, bench queries), a query encoder's config.json and manifest. Whoever
writes supplies the ``created`` block: the runtime never records build provenance itself (the offline tools take
theirs from ``tools.provenance``).
"""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from edge.docstore import DOCS_TABLE_SQL
from edge.checks import positive_int
from edge.errors import BadInput
from edge.files import atomic_replace, atomic_write_bytes, atomic_write_json, file_entry, temp_path
from edge.formats import (
    ALIGNMENT_KEYS,
    BENCH_QUERIES_FILE,
    COLLECTION_FORMAT,
    CONFIG_FILE,
    DOCS_FILE,
    FORMAT_VERSION,
    INDEX_DTYPES,
    INDEX_METRIC,
    MANIFEST_FILE,
    QUERY_ENCODER_FORMAT,
    QUERY_ENCODER_REQUIRED_FILES,
    SEARCH_MODES,
    VECTORS_FILE,
    EncoderConfig,
    alignment_id,
    check_plain_name,
    read_encoder_config,
)
from edge.hybrid import (
    DEFAULT_LEXICAL_FIELDS,
    DOCS_NORMS_TABLE,
    TERMS_TABLE,
    Fusion,
    check_lexical_fields,
    lexical_description,
    lexical_texts,
    write_lexical_tables,
)

DEFAULT_INDEX_PARAMS: dict[str, Any] = {"dtype": "i8", "connectivity": 16, "expansion_add": 128, "expansion_search": 64}


def write_manifest(directory: str | os.PathLike[str], manifest: Mapping[str, Any]) -> dict[str, Any]:
    """Fill ``manifest["files"]`` (size + sha256 of every file it names, which must exist in ``directory``) and
    write ``manifest.json`` atomically. Returns the completed manifest."""
    root = Path(directory)
    completed = json.loads(json.dumps(manifest))  # deep copy that also proves the value is JSON-serialisable
    files = completed.get("files")
    if not isinstance(files, dict) or not files:
        raise BadInput("manifest needs a non-empty 'files' object naming the artifact's files")
    for name in files:
        check_plain_name(name)
        path = root / name
        if not path.is_file():
            raise BadInput(f"cannot write manifest: {path} does not exist")
        files[name] = file_entry(path)
    atomic_write_json(root / MANIFEST_FILE, completed)
    return completed


def write_encoder_config(directory: str | os.PathLike[str], config: EncoderConfig) -> None:
    EncoderConfig.from_dict(config.to_dict())  # validate before writing
    atomic_write_json(Path(directory) / CONFIG_FILE, config.to_dict())


def write_query_encoder_manifest(
    directory: str | os.PathLike[str],
    *,
    name: str,
    base_model: str,
    alignment: Mapping[str, Any],
    licenses: Sequence[Mapping[str, Any]],
    created: Mapping[str, Any],
) -> dict[str, Any]:
    """Write the manifest of a query encoder whose model.onnx, tokenizer.json and config.json are already in
    ``directory``. ``alignment`` describes the document encoder it was aligned to (the same keys as a collection's
    ``document_encoder``); its ``alignment_id`` is filled in, or checked when given. Returns the manifest."""
    root = Path(directory)
    for file_name in QUERY_ENCODER_REQUIRED_FILES:
        if not (root / file_name).is_file():
            raise BadInput(f"cannot write query encoder manifest: {root / file_name} does not exist")
    config = read_encoder_config(root)
    completed_alignment = dict(alignment)
    computed = alignment_id(completed_alignment)
    given = completed_alignment.setdefault("alignment_id", computed)
    if given != computed:
        raise BadInput(f"alignment_id {given} given, but the alignment description computes to {computed}")
    if completed_alignment["dims"] != config.dims:
        raise BadInput(f"config.json dims {config.dims} != aligned document encoder dims {completed_alignment['dims']}")
    manifest = {
        "format": QUERY_ENCODER_FORMAT,
        "format_version": FORMAT_VERSION,
        "name": name,
        "base_model": base_model,
        "alignment": completed_alignment,
        "files": {file_name: {} for file_name in QUERY_ENCODER_REQUIRED_FILES},
        "licenses": [dict(item) for item in licenses],
        "created": dict(created),
    }
    return write_manifest(root, manifest)


def write_collection(
    directory: str | os.PathLike[str],
    *,
    name: str,
    description: str,
    document_encoder: Mapping[str, Any],
    vectors: np.ndarray,
    ids: Sequence[str],
    texts: Sequence[str],
    metas: Sequence[Mapping[str, Any] | None],
    index_params: Mapping[str, Any] | None,
    licenses: Sequence[Mapping[str, Any]],
    created: Mapping[str, Any],
    bench_queries: Sequence[str] | None = None,
    truncated_documents: int = 0,
    build_threads: int = 1,
    lexical: bool = True,
    default_mode: str = "dense",
    lexical_fields: Sequence[str] = DEFAULT_LEXICAL_FIELDS,
    fusion: Fusion | None = None,
) -> dict[str, Any]:
    """Write a complete collection into ``directory`` (created if needed) and return its manifest.

    Row ``k`` of ``vectors`` / ``ids`` / ``texts`` / ``metas`` becomes usearch key ``k`` and docs.sqlite key ``k``.
    ``vectors``: float32 ``[N, dims]``, L2-normalised, ``dims == document_encoder["dims"]``. ``index_params``: any of
    ``dtype`` (f32|f16|bf16|i8), ``connectivity``, ``expansion_add``, ``expansion_search`` (defaults in
    DEFAULT_INDEX_PARAMS). ``truncated_documents``: how many documents the document encoder had to truncate.
    ``build_threads=1`` keeps the index graph reproducible byte for byte; more threads build faster.
    ``lexical``: also write the BM25 postings of :mod:`edge.hybrid` into docs.sqlite, which hybrid search needs.
    ``default_mode``: the search mode (SEARCH_MODES) used when a caller names none; "hybrid" needs ``lexical``.
    ``lexical_fields``: what the postings index per document (``edge.hybrid.lexical_text``: ``text``, ``meta.*``
    paths); ``fusion``: the hybrid fusion recorded as ``search.fusion`` (None: none recorded, plain RRF).
    ``document_encoder`` needs at least the keys of ALIGNMENT_KEYS (README also lists name, full_dims, max_tokens); an
    ``alignment_id`` key in it is checked and dropped (the manifest keeps it at top level).
    Each file is written to a temp name and renamed; the manifest is written last.
    """
    root = Path(directory)
    encoder = dict(document_encoder)
    missing = [key for key in ALIGNMENT_KEYS if key not in encoder]
    if missing:
        raise BadInput(f"document_encoder lacks {', '.join(missing)}")
    # A query encoder's `alignment` block may be passed as is: its alignment_id is checked, not stored twice.
    given_alignment = encoder.pop("alignment_id", None)
    collection_alignment = alignment_id(encoder)
    if given_alignment is not None and given_alignment != collection_alignment:
        raise BadInput(f"document_encoder alignment_id {given_alignment} != computed {collection_alignment}")
    matrix = _checked_vectors(vectors, encoder)
    count = matrix.shape[0]
    if not (len(ids) == len(texts) == len(metas) == count):
        raise BadInput(f"ids ({len(ids)}), texts ({len(texts)}), metas ({len(metas)}) and vectors ({count}) differ in length")
    params = _checked_index_params(index_params)
    if default_mode not in SEARCH_MODES:
        raise BadInput(f"default_mode {default_mode!r} is not one of {', '.join(SEARCH_MODES)}")
    if default_mode == "hybrid" and not lexical:
        raise BadInput("default_mode 'hybrid' needs the lexical table (lexical=True)")
    try:
        fields = check_lexical_fields(list(lexical_fields))
    except ValueError as exc:
        raise BadInput(str(exc)) from None

    root.mkdir(parents=True, exist_ok=True)
    _write_docs_sqlite(root / DOCS_FILE, ids, texts, metas, lexical=lexical, lexical_fields=fields)
    _write_usearch_index(root / VECTORS_FILE, matrix, params, build_threads)
    files: dict[str, dict] = {VECTORS_FILE: {}, DOCS_FILE: {}}
    bench_path = root / BENCH_QUERIES_FILE
    if bench_queries is not None:
        lines = [_checked_bench_query(query) for query in bench_queries]
        atomic_write_bytes(bench_path, ("\n".join(lines) + "\n").encode("utf-8"))
        files[BENCH_QUERIES_FILE] = {}
    elif bench_path.exists():
        bench_path.unlink()  # a stale file from an earlier build would disagree with this manifest

    from edge._native import USEARCH_VERSION  # local: reading manifests must not load the native libraries

    manifest = {
        "format": COLLECTION_FORMAT,
        "format_version": FORMAT_VERSION,
        "name": name,
        "description": description,
        "document_encoder": encoder,
        "alignment_id": collection_alignment,
        "index": {
            "metric": INDEX_METRIC,
            "dtype": params["dtype"],
            "ndim": int(matrix.shape[1]),
            "connectivity": params["connectivity"],
            "expansion_add": params["expansion_add"],
            "expansion_search": params["expansion_search"],
            "usearch_version": USEARCH_VERSION,
        },
        "counts": {"documents": count, "truncated": int(truncated_documents)},
        "search": _search_block(lexical, default_mode, count, fields, fusion),
        "files": files,
        "licenses": [dict(item) for item in licenses],
        "created": dict(created),
    }
    return write_manifest(root, manifest)


def _checked_vectors(vectors: np.ndarray, document_encoder: Mapping[str, Any]) -> np.ndarray:
    matrix = np.asarray(vectors)
    if matrix.ndim != 2 or matrix.shape[0] == 0:
        raise BadInput(f"vectors must be a non-empty [N, dims] matrix, got shape {matrix.shape}")
    if matrix.dtype != np.float32:
        raise BadInput(f"vectors must be float32, got {matrix.dtype}")
    dims = document_encoder.get("dims")
    if matrix.shape[1] != dims:
        raise BadInput(f"vectors have {matrix.shape[1]} dims, document_encoder says {dims}")
    if not np.all(np.isfinite(matrix)):
        raise BadInput("vectors contain NaN or infinity")
    norms = np.linalg.norm(matrix, axis=1)
    worst = int(np.argmax(np.abs(norms - 1.0)))
    if abs(norms[worst] - 1.0) > 1e-3:
        raise BadInput(f"vectors must be L2-normalised: row {worst} has norm {norms[worst]:.4f}")
    return np.ascontiguousarray(matrix)


def _checked_index_params(index_params: Mapping[str, Any] | None) -> dict[str, Any]:
    params = {**DEFAULT_INDEX_PARAMS, **dict(index_params or {})}
    unknown = set(params) - set(DEFAULT_INDEX_PARAMS)
    if unknown:
        raise BadInput(f"unknown index_params {sorted(unknown)}: allowed are {sorted(DEFAULT_INDEX_PARAMS)}")
    if params["dtype"] not in INDEX_DTYPES:
        raise BadInput(f"index dtype {params['dtype']!r} is not one of {', '.join(INDEX_DTYPES)}")
    for key in ("connectivity", "expansion_add", "expansion_search"):
        params[key] = positive_int(params[key], f"index_params[{key!r}]")
    return params


def _checked_bench_query(query: str) -> str:
    line = " ".join(str(query).split())
    if not line:
        raise BadInput("bench_queries contains an empty query")
    return line


def _search_block(lexical: bool, default_mode: str, count: int,
                  fields: Sequence[str] = DEFAULT_LEXICAL_FIELDS, fusion: Fusion | None = None) -> dict[str, Any]:
    block: dict[str, Any] = {"default_mode": default_mode}
    if lexical:
        block["lexical"] = lexical_description(count, fields)
        if fusion is not None:
            block["fusion"] = fusion.describe()
    return block


def _write_docs_sqlite(
    path: Path,
    ids: Sequence[str],
    texts: Sequence[str],
    metas: Sequence[Mapping[str, Any] | None],
    *,
    lexical: bool,
    lexical_fields: Sequence[str] = DEFAULT_LEXICAL_FIELDS,
) -> None:
    seen: set[str] = set()
    for row, doc_id in enumerate(ids):
        if not isinstance(doc_id, str) or not doc_id:
            raise BadInput(f"document id at row {row} must be a non-empty string, got {doc_id!r}")
        if doc_id in seen:
            raise BadInput(f"duplicate document id {doc_id!r} at row {row}")
        seen.add(doc_id)
    with atomic_replace(path) as temp:
        connection = sqlite3.connect(temp)
        try:
            # No journal: the file is built once into a temp name and renamed; a crash just leaves the temp behind.
            connection.execute("PRAGMA journal_mode=OFF")
            connection.execute("PRAGMA synchronous=OFF")
            connection.execute(DOCS_TABLE_SQL)
            connection.executemany(
                "INSERT INTO docs (key, id, text, meta) VALUES (?, ?, ?, ?)",
                (
                    (row, doc_id, _checked_text(text, row), _meta_json(meta, row))
                    for row, (doc_id, text, meta) in enumerate(zip(ids, texts, metas))
                ),
            )
            if lexical:
                write_lexical_tables(connection, lexical_texts(texts, metas, lexical_fields))
            connection.commit()
        finally:
            connection.close()


def _checked_text(text: object, row: int) -> str:
    if not isinstance(text, str):
        raise BadInput(f"document text at row {row} must be a string, got {type(text).__name__}")
    return text


def _meta_json(meta: Mapping[str, Any] | None, row: int) -> str:
    if meta is None:
        return "{}"
    if not isinstance(meta, Mapping):
        raise BadInput(f"document meta at row {row} must be an object, got {type(meta).__name__}")
    return json.dumps(dict(meta), ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def _write_usearch_index(path: Path, matrix: np.ndarray, params: Mapping[str, Any], build_threads: int) -> None:
    from edge._native import Index  # local: reading manifests must not load the native libraries

    index = Index(
        ndim=matrix.shape[1],
        metric=INDEX_METRIC,
        dtype=params["dtype"],
        connectivity=params["connectivity"],
        expansion_add=params["expansion_add"],
        expansion_search=params["expansion_search"],
    )
    index.add(np.arange(matrix.shape[0], dtype=np.uint64), matrix, threads=max(1, int(build_threads)))
    temp = temp_path(path)
    try:
        index.save(str(temp))
        os.replace(temp, path)
    finally:
        if temp.exists():
            temp.unlink()


def rewrite_lexical(
    directory: str | os.PathLike[str],
    *,
    fields: Sequence[str],
    created: Mapping[str, Any],
    default_mode: str | None = None,
    fusion: Fusion | None = None,
) -> dict[str, Any]:
    """Rebuild only the lexical side of the collection in ``directory``: its docs.sqlite postings over ``fields``
    (``edge.hybrid.lexical_text``), and its manifest's ``search`` block (``default_mode`` and ``fusion`` when given,
    else kept) and file hashes. Documents and vectors stay byte for byte; ``created`` is recorded as
    ``search.lexical.created``. docs.sqlite is rebuilt in a temp copy and renamed, then the manifest is written."""
    from edge.formats import read_manifest  # the reader checks the manifest before anything is rewritten

    root = Path(directory)
    manifest = read_manifest(root, COLLECTION_FORMAT)
    try:
        checked = check_lexical_fields(list(fields))
    except ValueError as exc:
        raise BadInput(str(exc)) from None
    search = dict(manifest.get("search") or {"default_mode": "dense"})
    mode = search["default_mode"] if default_mode is None else default_mode
    if mode not in SEARCH_MODES:
        raise BadInput(f"default_mode {mode!r} is not one of {', '.join(SEARCH_MODES)}")
    path = root / DOCS_FILE
    with atomic_replace(path) as temp:
        source = sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True)
        try:
            target = sqlite3.connect(temp)
            source.backup(target)
        finally:
            source.close()
        try:
            rows = target.execute("SELECT text, meta FROM docs ORDER BY key").fetchall()
            texts = [row[0] for row in rows]
            metas = [json.loads(row[1]) for row in rows]
            if len(rows) != manifest["counts"]["documents"]:
                raise BadInput(f"{path} holds {len(rows)} documents, the manifest {manifest['counts']['documents']}")
            with target:
                for table in (TERMS_TABLE, DOCS_NORMS_TABLE):
                    target.execute(f"DROP TABLE IF EXISTS {table}")
                write_lexical_tables(target, lexical_texts(texts, metas, checked))
            target.execute("VACUUM")
        finally:
            target.close()
    lexical = {**lexical_description(len(texts), checked), "created": dict(created)}
    search.update(default_mode=mode, lexical=lexical)
    if fusion is not None:
        search["fusion"] = fusion.describe()
    return write_manifest(root, {**manifest, "search": search})
