"""The v1 artifact formats (see README.md, "Formats (v1)"): their names and constants, and the reading and checking
of manifests and encoder configs. Writing lives in :mod:`edge.writers`.

A collection directory holds ``manifest.json``, ``vectors.usearch``, ``docs.sqlite`` and optionally
``bench_queries.txt``. A query encoder directory holds ``manifest.json``, ``model.onnx``, ``tokenizer.json`` and
``config.json``. The runtime reads through :func:`read_manifest` / :func:`check_files` /
:func:`read_encoder_config`.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

from edge.errors import ArtifactError
from edge.files import canonical_json, sha256_file
from edge.integrity import read_regular_file
from edge.hybrid import KEY_DTYPES, LEXICAL_KIND, TOKENIZER_ID, check_lexical_fields, fusion_from_manifest

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

INDEX_METRIC = "cos"
INDEX_DTYPES = ("f32", "f16", "bf16", "i8")

POOLING_MODES = ("in-graph", "mean", "cls")

# Search modes a collection can default to: "dense" (the index alone) or "hybrid" (index + lexical, fused). A
# collection without a lexical table can only be searched densely.
SEARCH_MODES = ("dense", "hybrid")

# Manifests and configs are a few KiB; the cap keeps a link to /dev/zero from reading without end.
MAX_MANIFEST_BYTES = 1 << 20


def alignment_id(document_encoder: Mapping[str, Any]) -> str:
    """First 16 hex chars of sha256(canonical JSON of the document encoder's {kind, sha256, prompt, pooling, dims,
    normalize}). Two artifacts share a vector space exactly when they carry the same id."""
    missing = [key for key in ALIGNMENT_KEYS if key not in document_encoder]
    if missing:
        raise ArtifactError(f"document encoder description lacks {', '.join(missing)}: cannot compute alignment_id")
    subset = {key: document_encoder[key] for key in ALIGNMENT_KEYS}
    return hashlib.sha256(canonical_json(subset).encode("utf-8")).hexdigest()[:16]


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


def check_plain_name(name: object) -> None:
    # Manifests name files inside their own directory only; a path would let a manifest point anywhere.
    if not isinstance(name, str) or not name or name in (".", "..") or "/" in name or "\\" in name or "\x00" in name:
        raise ArtifactError(f"manifest names an invalid file {name!r}: only plain file names are allowed")


def _check_files_table(manifest: Mapping[str, Any], path: Path) -> None:
    files = manifest.get("files")
    if not isinstance(files, dict):
        raise ArtifactError(f"{path}: 'files' is missing or not an object: rebuild the artifact")
    for name, entry in files.items():
        check_plain_name(name)
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


def _check_listed_and_aligned(manifest: Mapping[str, Any], required: Iterable[str], description: Mapping[str, Any],
                              declared: str, path: Path, described: str, artifact: str) -> None:
    """Every required file is listed, and the declared alignment_id is the one ``description`` computes to (an edited
    manifest is refused). ``described`` and ``artifact`` name the description and the artifact in the message."""
    for name in required:
        if name not in manifest["files"]:
            raise ArtifactError(f"{path}: 'files' does not list {name}: rebuild the {artifact}")
    computed = alignment_id(description)
    if computed != declared:
        raise ArtifactError(
            f"{path}: alignment_id {declared} does not match its {described} (computes to {computed}): "
            f"the manifest was edited; rebuild the {artifact}"
        )


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
    _check_listed_and_aligned(manifest, COLLECTION_REQUIRED_FILES, encoder, declared, path, "document_encoder",
                              "collection")
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
    try:
        if "fields" in lexical:  # absent in collections built before fields were recorded: the document text
            check_lexical_fields(lexical["fields"])
        fusion_from_manifest(search.get("fusion"))
    except ValueError as exc:
        raise ArtifactError(f"{path}: {exc}: rebuild the collection") from None


def _check_query_encoder_manifest(manifest: Mapping[str, Any], path: Path) -> None:
    _require(manifest, "name", str, path)
    alignment = _require(manifest, "alignment", dict, path)
    declared = alignment.get("alignment_id")
    if not isinstance(declared, str):
        raise ArtifactError(f"{path}: 'alignment.alignment_id' is missing: rebuild the query encoder")
    _check_listed_and_aligned(manifest, QUERY_ENCODER_REQUIRED_FILES, alignment, declared, path,
                              "alignment description", "query encoder")


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
