"""The v1 artifact formats (see README.md, "Formats (v1)"): the one place that reads and writes them.

A collection directory holds ``manifest.json``, ``vectors.usearch``, ``docs.sqlite`` and optionally
``bench_queries.txt``. A query encoder directory holds ``manifest.json``, ``model.onnx``, ``tokenizer.json`` and
``config.json``. The runtime reads through :func:`read_manifest` / :func:`check_files` /
:func:`read_encoder_config`; the offline tools write through :func:`write_collection`,
:func:`write_encoder_config` and :func:`write_query_encoder_manifest`.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import importlib.metadata
import json
import os
import platform
import sqlite3
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from edge.errors import ArtifactError, BadInput
from edge.integrity import read_regular_file
from edge.lexical import KEY_DTYPES, LEXICAL_KIND, TOKENIZER_ID, lexical_description, write_lexical_tables

FORMAT_VERSION = 1
COLLECTION_FORMAT = "care-edge/collection"
QUERY_ENCODER_FORMAT = "care-edge/query-encoder"

MANIFEST_FILE = "manifest.json"
VECTORS_FILE = "vectors.usearch"
DOCS_FILE = "docs.sqlite"
BENCH_QUERIES_FILE = "bench_queries.txt"
MODEL_FILE = "model.onnx"
TOKENIZER_FILE = "tokenizer.json"
CONFIG_FILE = "config.json"

COLLECTION_REQUIRED_FILES = (VECTORS_FILE, DOCS_FILE)
QUERY_ENCODER_REQUIRED_FILES = (MODEL_FILE, TOKENIZER_FILE, CONFIG_FILE)

# The document-encoder fields that decide which vector space a collection lives in.
ALIGNMENT_KEYS = ("kind", "sha256", "prompt", "pooling", "dims", "normalize")

DOCS_TABLE = "docs"
DOCS_COLUMNS = ("key", "id", "text", "meta")
DOCS_TABLE_SQL = (
    "CREATE TABLE docs (key INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, text TEXT NOT NULL, meta TEXT NOT NULL)"
)

INDEX_METRIC = "cos"
INDEX_DTYPES = ("f32", "f16", "bf16", "i8")
DEFAULT_INDEX_PARAMS: dict[str, Any] = {"dtype": "i8", "connectivity": 16, "expansion_add": 128, "expansion_search": 64}

POOLING_MODES = ("in-graph", "mean", "cls")

# Search modes a collection can default to: "dense" (the index alone) or "hybrid" (index + lexical, fused). A
# collection without a lexical table can only be searched densely.
SEARCH_MODES = ("dense", "hybrid")

_HASH_CHUNK = 1 << 20
# Manifests and configs are a few KiB; the cap keeps a link to /dev/zero from reading without end.
MAX_MANIFEST_BYTES = 1 << 20


# --------------------------------------------------------------------------------------------------- hashing


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def file_entry(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The manifest ``files`` entry of one file: ``{"size": bytes, "sha256": hex}``."""
    return {"size": os.path.getsize(path), "sha256": sha256_file(path)}


def canonical_json(value: Any) -> str:
    """Sorted keys, no spaces, UTF-8 kept as is (not \\u-escaped): the form hashed for alignment ids."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def alignment_id(document_encoder: Mapping[str, Any]) -> str:
    """First 16 hex chars of sha256(canonical JSON of the document encoder's {kind, sha256, prompt, pooling, dims,
    normalize}). Two artifacts share a vector space exactly when they carry the same id."""
    missing = [key for key in ALIGNMENT_KEYS if key not in document_encoder]
    if missing:
        raise ArtifactError(f"document encoder description lacks {', '.join(missing)}: cannot compute alignment_id")
    subset = {key: document_encoder[key] for key in ALIGNMENT_KEYS}
    return hashlib.sha256(canonical_json(subset).encode("utf-8")).hexdigest()[:16]


# --------------------------------------------------------------------------------------------------- atomic writes


def _temp_path(final: Path) -> Path:
    # Same directory as the target so os.replace is a rename on one filesystem; the pid keeps concurrent writers apart.
    return final.with_name(f".{final.name}.{os.getpid()}.tmp")


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to a temp file next to ``path``, fsync it, then rename it over ``path``."""
    final = Path(path)
    temp = _temp_path(final)
    try:
        with open(temp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, final)
    finally:
        if temp.exists():
            temp.unlink()


def atomic_write_json(path: str | os.PathLike[str], value: Any) -> None:
    """Pretty JSON (UTF-8, 2-space indent, trailing newline), written atomically."""
    atomic_write_bytes(path, (json.dumps(value, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))


# --------------------------------------------------------------------------------------------------- manifests


def write_manifest(directory: str | os.PathLike[str], manifest: Mapping[str, Any]) -> dict[str, Any]:
    """Fill ``manifest["files"]`` (size + sha256 of every file it names, which must exist in ``directory``) and
    write ``manifest.json`` atomically. Returns the completed manifest."""
    root = Path(directory)
    completed = json.loads(json.dumps(manifest))  # deep copy that also proves the value is JSON-serialisable
    files = completed.get("files")
    if not isinstance(files, dict) or not files:
        raise BadInput("manifest needs a non-empty 'files' object naming the artifact's files")
    for name in files:
        _check_plain_name(name)
        path = root / name
        if not path.is_file():
            raise BadInput(f"cannot write manifest: {path} does not exist")
        files[name] = file_entry(path)
    atomic_write_json(root / MANIFEST_FILE, completed)
    return completed


def read_manifest(directory: str | os.PathLike[str], expected_format: str) -> dict[str, Any]:
    """Read and structurally check ``directory/manifest.json`` of the given format (collection or query encoder).

    Raises ArtifactError for a missing directory or manifest, invalid JSON, an unknown format or format_version,
    missing keys, or an ``alignment_id`` that does not match the document encoder it describes. File sizes and hashes
    are checked separately by :func:`check_files`.
    """
    root = Path(directory)
    what = "collection" if expected_format == COLLECTION_FORMAT else "query encoder"
    if not root.is_dir():
        raise ArtifactError(f"no {what} at {root}: the directory does not exist")
    path = root / MANIFEST_FILE
    try:
        raw = read_regular_file(path, MAX_MANIFEST_BYTES)
    except FileNotFoundError:
        raise ArtifactError(f"no {what} at {root}: {MANIFEST_FILE} is missing") from None
    except OSError as exc:
        raise ArtifactError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        manifest = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"{path} is not valid JSON ({exc}): re-copy or rebuild the {what}") from None
    if not isinstance(manifest, dict):
        raise ArtifactError(f"{path} is not a JSON object: re-copy or rebuild the {what}")

    found_format = manifest.get("format")
    if found_format != expected_format:
        raise ArtifactError(
            f"{path}: format is {found_format!r}, expected {expected_format!r}: point this option at a {what} directory"
        )
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise ArtifactError(
            f"{path}: format_version {version!r} is not supported (this care-edge reads version {FORMAT_VERSION}): "
            f"rebuild the {what} with matching tools or use a matching care-edge"
        )
    _check_files_table(manifest, path)
    if expected_format == COLLECTION_FORMAT:
        _check_collection_manifest(manifest, path)
    else:
        _check_query_encoder_manifest(manifest, path)
    return manifest


def _check_plain_name(name: object) -> None:
    # Manifests name files inside their own directory only; a path would let a manifest point anywhere.
    if not isinstance(name, str) or not name or name in (".", "..") or "/" in name or "\\" in name or "\x00" in name:
        raise ArtifactError(f"manifest names an invalid file {name!r}: only plain file names are allowed")


def _check_files_table(manifest: Mapping[str, Any], path: Path) -> None:
    files = manifest.get("files")
    if not isinstance(files, dict):
        raise ArtifactError(f"{path}: 'files' is missing or not an object: rebuild the artifact")
    for name, entry in files.items():
        _check_plain_name(name)
        if (
            not isinstance(entry, dict)
            or not isinstance(entry.get("size"), int)
            or not isinstance(entry.get("sha256"), str)
            or len(entry["sha256"]) != 64
        ):
            raise ArtifactError(f"{path}: files[{name!r}] needs an integer size and a 64-hex sha256: rebuild the artifact")


def _require(manifest: Mapping[str, Any], key: str, kind: type | tuple[type, ...], path: Path) -> Any:
    value = manifest.get(key)
    if not isinstance(value, kind) or isinstance(value, bool) and kind is int:
        raise ArtifactError(f"{path}: '{key}' is missing or malformed: rebuild the artifact")
    return value


def _check_collection_manifest(manifest: Mapping[str, Any], path: Path) -> None:
    _require(manifest, "name", str, path)
    encoder = _require(manifest, "document_encoder", dict, path)
    declared = _require(manifest, "alignment_id", str, path)
    index = _require(manifest, "index", dict, path)
    counts = _require(manifest, "counts", dict, path)
    if not isinstance(index.get("ndim"), int) or index.get("metric") != INDEX_METRIC:
        raise ArtifactError(f"{path}: 'index' needs an integer ndim and metric {INDEX_METRIC!r}: rebuild the collection")
    if not isinstance(counts.get("documents"), int):
        raise ArtifactError(f"{path}: 'counts.documents' is missing: rebuild the collection")
    for name in COLLECTION_REQUIRED_FILES:
        if name not in manifest["files"]:
            raise ArtifactError(f"{path}: 'files' does not list {name}: rebuild the collection")
    computed = alignment_id(encoder)
    if computed != declared:
        raise ArtifactError(
            f"{path}: alignment_id {declared} does not match its document_encoder (computes to {computed}): "
            "the manifest was edited; rebuild the collection"
        )
    _check_search_block(manifest.get("search"), path)


def _check_search_block(search: object, path: Path) -> None:
    """``search`` is optional (collections built before hybrid search have none: dense only)."""
    if search is None:
        return
    if not isinstance(search, dict) or search.get("default_mode") not in SEARCH_MODES:
        raise ArtifactError(
            f"{path}: 'search.default_mode' must be one of {', '.join(SEARCH_MODES)}: rebuild the collection"
        )
    lexical = search.get("lexical")
    if lexical is None:
        if search["default_mode"] == "hybrid":
            raise ArtifactError(f"{path}: default_mode 'hybrid' but no 'search.lexical' table: rebuild the collection")
        return
    if not isinstance(lexical, dict) or lexical.get("kind") != LEXICAL_KIND:
        raise ArtifactError(f"{path}: 'search.lexical' is not a {LEXICAL_KIND} description: rebuild the collection")
    if lexical.get("key_encoding") not in KEY_DTYPES:
        raise ArtifactError(
            f"{path}: 'search.lexical.key_encoding' {lexical.get('key_encoding')!r} is unknown: rebuild the collection"
        )
    if lexical.get("tokenizer") != TOKENIZER_ID:
        raise ArtifactError(
            f"{path}: lexical table was built with tokenizer {lexical.get('tokenizer')!r}, this care-edge "
            f"tokenises queries with {TOKENIZER_ID!r}: rebuild the collection with matching tools"
        )


def _check_query_encoder_manifest(manifest: Mapping[str, Any], path: Path) -> None:
    _require(manifest, "name", str, path)
    alignment = _require(manifest, "alignment", dict, path)
    declared = alignment.get("alignment_id")
    if not isinstance(declared, str):
        raise ArtifactError(f"{path}: 'alignment.alignment_id' is missing: rebuild the query encoder")
    for name in QUERY_ENCODER_REQUIRED_FILES:
        if name not in manifest["files"]:
            raise ArtifactError(f"{path}: 'files' does not list {name}: rebuild the query encoder")
    computed = alignment_id(alignment)
    if computed != declared:
        raise ArtifactError(
            f"{path}: alignment_id {declared} does not match its alignment description (computes to {computed}): "
            "the manifest was edited; rebuild the query encoder"
        )


def file_problems(directory: str | os.PathLike[str], manifest: Mapping[str, Any], full_hash: bool) -> list[str]:
    """Every mismatch between the files listed in the manifest and the directory, as ``"<file>: <problem>"``.
    Sizes are always compared; sha256 only when ``full_hash`` (it reads every byte)."""
    root = Path(directory)
    problems: list[str] = []
    for name, entry in manifest["files"].items():
        path = root / name
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            problems.append(f"{name}: missing")
            continue
        if size != entry["size"]:
            problems.append(f"{name}: size {size} bytes, manifest says {entry['size']} (truncated or replaced)")
            continue
        if full_hash and sha256_file(path) != entry["sha256"]:
            problems.append(f"{name}: sha256 differs from the manifest (corrupted or replaced)")
    return problems


def check_files(directory: str | os.PathLike[str], manifest: Mapping[str, Any], full_hash: bool) -> None:
    """Raise ArtifactError naming the first bad file (see :func:`file_problems`)."""
    problems = file_problems(directory, manifest, full_hash)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise ArtifactError(f"{directory}: {problems[0]}{more}: re-copy or rebuild this artifact")


# Whose numerics can move a measured figure between two machines (INT8 kernels, tokenization, HNSW, GGUF); recorded
# so that a drift between a report and its rerun can be told from a code change.
RECORDED_PACKAGES = ("numpy", "onnxruntime", "tokenizers", "usearch", "llama_cpp_python", "torch")


def package_versions(names: Sequence[str] = RECORDED_PACKAGES) -> dict[str, str]:
    """Installed versions of ``names`` (distribution names), read from package metadata without importing them;
    absent ones are left out."""
    found: dict[str, str] = {"python": platform.python_version()}
    for name in names:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return found


def created_info(tool: str, command: str | None = None) -> dict[str, Any]:
    """The ``created`` block: tool, command line, git revision of the repo (or "unknown"), UTC timestamp, and the
    versions of the packages that shape the numbers."""
    try:
        revision = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        revision = ""
    return {
        "tool": tool,
        "command": command or "",
        "git_revision": revision or "unknown",
        "created_at": _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
        "versions": package_versions(),
    }


# --------------------------------------------------------------------------------------------------- encoder config


@dataclass(frozen=True)
class EncoderConfig:
    """A query encoder's ``config.json``.

    ``pooling``: ``"in-graph"`` (graph output ``output`` is already ``[batch, dims]``), or ``"mean"`` / ``"cls"`` over a
    ``[batch, seq, dims]`` output (a plain exported BERT, output ``last_hidden_state``). ``normalize``: L2-normalise
    the pooled vector at run time (harmless when the graph already did).
    """

    prompt: str
    max_tokens: int
    pooling: str
    dims: int
    normalize: bool
    output: str

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any], source: str = CONFIG_FILE) -> "EncoderConfig":
        if not isinstance(raw, Mapping):
            raise ArtifactError(f"{source} is not a JSON object: rebuild the query encoder")
        pooling = raw.get("pooling", "in-graph")
        if pooling not in POOLING_MODES:
            raise ArtifactError(f"{source}: pooling {pooling!r} is not one of {', '.join(POOLING_MODES)}")
        output = raw.get("output", "embedding" if pooling == "in-graph" else "last_hidden_state")
        prompt = raw.get("prompt", "")
        max_tokens = raw.get("max_tokens")
        dims = raw.get("dims")
        normalize = raw.get("normalize", True)
        if not isinstance(prompt, str) or not isinstance(output, str) or not output:
            raise ArtifactError(f"{source}: 'prompt' and 'output' must be strings")
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 2:
            raise ArtifactError(f"{source}: 'max_tokens' must be an integer >= 2")
        if isinstance(dims, bool) or not isinstance(dims, int) or dims < 1:
            raise ArtifactError(f"{source}: 'dims' must be a positive integer")
        if not isinstance(normalize, bool):
            raise ArtifactError(f"{source}: 'normalize' must be true or false")
        return cls(prompt=prompt, max_tokens=max_tokens, pooling=pooling, dims=dims, normalize=normalize, output=output)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def read_encoder_config(directory: str | os.PathLike[str]) -> EncoderConfig:
    path = Path(directory) / CONFIG_FILE
    try:
        raw = json.loads(read_regular_file(path, MAX_MANIFEST_BYTES).decode("utf-8"))
    except FileNotFoundError:
        raise ArtifactError(f"{path} is missing: re-copy or rebuild the query encoder") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"{path} is unreadable ({exc}): re-copy or rebuild the query encoder") from None
    return EncoderConfig.from_dict(raw, str(path))


def write_encoder_config(directory: str | os.PathLike[str], config: EncoderConfig) -> None:
    EncoderConfig.from_dict(config.to_dict())  # validate before writing
    atomic_write_json(Path(directory) / CONFIG_FILE, config.to_dict())


# --------------------------------------------------------------------------------------------------- writers


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
) -> dict[str, Any]:
    """Write a complete collection into ``directory`` (created if needed) and return its manifest.

    Row ``k`` of ``vectors`` / ``ids`` / ``texts`` / ``metas`` becomes usearch key ``k`` and docs.sqlite key ``k``.
    ``vectors``: float32 ``[N, dims]``, L2-normalised, ``dims == document_encoder["dims"]``. ``index_params``: any of
    ``dtype`` (f32|f16|bf16|i8), ``connectivity``, ``expansion_add``, ``expansion_search`` (defaults in
    DEFAULT_INDEX_PARAMS). ``truncated_documents``: how many documents the document encoder had to truncate.
    ``build_threads=1`` keeps the index graph reproducible byte for byte; more threads build faster.
    ``lexical``: also write the BM25 postings of :mod:`edge.lexical` into docs.sqlite, which hybrid search needs.
    ``default_mode``: the search mode (SEARCH_MODES) used when a caller names none; "hybrid" needs ``lexical``.
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

    root.mkdir(parents=True, exist_ok=True)
    _write_docs_sqlite(root / DOCS_FILE, ids, texts, metas, lexical=lexical)
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
        "search": _search_block(lexical, default_mode, count),
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
        value = params[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise BadInput(f"index_params[{key!r}] must be a positive integer, got {value!r}")
    return params


def _checked_bench_query(query: str) -> str:
    line = " ".join(str(query).split())
    if not line:
        raise BadInput("bench_queries contains an empty query")
    return line


def _search_block(lexical: bool, default_mode: str, count: int) -> dict[str, Any]:
    block: dict[str, Any] = {"default_mode": default_mode}
    if lexical:
        block["lexical"] = lexical_description(count)
    return block


def _write_docs_sqlite(
    path: Path,
    ids: Sequence[str],
    texts: Sequence[str],
    metas: Sequence[Mapping[str, Any] | None],
    *,
    lexical: bool,
) -> None:
    seen: set[str] = set()
    for row, doc_id in enumerate(ids):
        if not isinstance(doc_id, str) or not doc_id:
            raise BadInput(f"document id at row {row} must be a non-empty string, got {doc_id!r}")
        if doc_id in seen:
            raise BadInput(f"duplicate document id {doc_id!r} at row {row}")
        seen.add(doc_id)
    temp = _temp_path(path)
    if temp.exists():
        temp.unlink()
    try:
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
                write_lexical_tables(connection, texts)
            connection.commit()
        finally:
            connection.close()
        with open(temp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(temp, path)
    finally:
        if temp.exists():
            temp.unlink()


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
    temp = _temp_path(path)
    try:
        index.save(str(temp))
        os.replace(temp, path)
    finally:
        if temp.exists():
            temp.unlink()


def licenses_of(manifests: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The union of the ``licenses`` lists of several manifests, first occurrence kept, order preserved."""
    seen: set[str] = set()
    merged: list[dict[str, Any]] = []
    for manifest in manifests:
        for item in manifest.get("licenses", []) or []:
            key = canonical_json(item)
            if key not in seen:
                seen.add(key)
                merged.append(dict(item))
    return merged
